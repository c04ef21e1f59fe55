// The int8 dynamically quantised image encoder (models/clipn/quantize.py, `export --int8`) run
// by onnxruntime-node: the contrib DynamicQuantizeMatMul graph and the standard-op
// (MatMulInteger) variant both load and run, and their features stay at cosine >= 0.99 to the
// fp32 graph's on the micro model. Graph structure is tested in test/models/test_quantize.py.
// Then the `int8` precision through the engine, the embedding cache (int8 features are never
// served for fp32 and vice versa) and the kernel's model cell (fallback to fp32 when a model
// has no int8 graph, said in the cell's output).
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { OrtBackend } from '../../extension/engine/backend';
import { loadDataset } from '../../extension/engine/datasets';
import { embedImageSet } from '../../extension/engine/embed';
import { cacheDirName, cacheKeyFor, EmbeddingCache, EmbeddingCacheError } from '../../extension/engine/embedding-cache';
import { availablePrecision, ClipnModel, IMAGE_PRECISIONS } from '../../extension/engine/encoder';
import { sha256File } from '../../extension/engine/file-hashes';
import { loadManifest, ManifestError, validateManifest } from '../../extension/engine/manifest';
import { embedSet } from '../../extension/kernel/cells/common';
import { executeCell } from '../../extension/kernel/execute';
import { KernelState } from '../../extension/kernel/state';
import type { DatasetValue, ModelValue, RunContext } from '../../extension/kernel/state';
import type { KernelSettings } from '../../extension/protocol';
import { parseCell } from '../../extension/language/validate';
import { readNpy } from '../../extension/engine/npy';
import { PYTHON, REPO_ROOT } from './helpers/python';
import { DEFAULT_MODEL_DIR, exportMicro } from './helpers/models';
import { rowCosines } from '../../extension/engine/vectors';

// The shared micro model carries the int8 graph (export_model(..., int8=True)); this adds the
// MatMulInteger variant of the same quantisation, to compare the two operator choices.
const QUANTIZE_STANDARD = `
import sys
from clipn.quantize import quantize_file
quantize_file(sys.argv[1], sys.argv[2], op="matmulinteger")
`;


describe('int8 image encoder on onnxruntime-node', () => {
  let work: string;
  let folder: string;
  let standard: string;
  const backend = new OrtBackend({ executionProviders: ['cpu'] });

  before(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-int8-'));
    folder = exportMicro().folder;
    standard = path.join(work, 'image_encoder.matmulinteger.onnx');
    const r = spawnSync(PYTHON, ['-c', QUANTIZE_STANDARD, path.join(folder, 'image_encoder.onnx'), standard], {
      encoding: 'utf8',
      env: { ...process.env, PYTHONPATH: path.join(REPO_ROOT, 'models'), PYTHONWARNINGS: 'ignore' },
    });
    assert.equal(r.status, 0, `MatMulInteger quantisation failed: ${r.stderr}`);
  });

  after(async () => {
    await backend.dispose();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('the manifest lists image_int8 and the loader resolves and verifies it', async () => {
    const m = await loadManifest(folder, { verify: 'full' });
    assert.equal(m.manifest.graphs.image_int8, 'image_encoder.int8.onnx');
    assert.equal(m.graphs.image_int8, path.join(folder, 'image_encoder.int8.onnx'));
    assert.equal(m.verification, 'hashed');
    // A manifest naming an int8 graph that is not among the hashed files is refused.
    const raw = JSON.parse(fs.readFileSync(path.join(folder, 'clipn.json'), 'utf8'));
    raw.graphs.image_int8 = 'elsewhere.onnx';
    const bad = path.join(work, 'bad');
    fs.cpSync(folder, bad, { recursive: true });
    fs.writeFileSync(path.join(bad, 'clipn.json'), JSON.stringify(raw));
    await assert.rejects(loadManifest(bad), (e: Error) => e instanceof ManifestError && /graphs\.image_int8.*not listed in "files"/.test(e.message));
    raw.graphs.image_int8 = 42;
    assert.throws(() => validateManifest(raw, 'clipn.json'), /graphs\.image_int8" must be a non-empty string/);
  });

  test('int8 features are at cosine >= 0.99 to fp32 (fixture pixels and random pixels)', async () => {
    const m = await loadManifest(folder);
    const fp32 = await backend.session('image', m.graphs.image);
    const int8 = await backend.session('image_int8', m.graphs.image_int8!);
    const contribStandard = await backend.session('image_int8_std', standard);
    assert.deepEqual(int8.inputNames, fp32.inputNames);
    assert.deepEqual(int8.outputNames, fp32.outputNames);
    const fixture = readNpy(path.join(folder, 'parity', 'pixel_values.npy'));
    const size = m.manifest.preprocess.size;
    let seed = 99;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff) * 4 - 2;
    const random = Float32Array.from({ length: 5 * 3 * size * size }, rand);
    const d = m.manifest.embed_dim;
    for (const [label, data, dims] of [
      ['fixture', fixture.data as Float32Array, fixture.shape],
      ['random', random, [5, 3, size, size]],
    ] as const) {
      const feeds = { pixel_values: { type: 'float32' as const, data, dims } };
      const a = await fp32.run(feeds);
      const b = await int8.run(feeds);
      const c = await contribStandard.run(feeds);
      assert.deepEqual(b.dims, a.dims);
      for (const cos of rowCosines(a.data, b.data, d)) assert.ok(cos >= 0.99, `${label}: int8 cosine ${cos} < 0.99`);
      for (const cos of rowCosines(a.data, c.data, d)) assert.ok(cos >= 0.99, `${label}: MatMulInteger variant cosine ${cos} < 0.99`);
      // Same quantisation maths in both forms.
      for (const cos of rowCosines(b.data, c.data, d)) assert.ok(cos >= 0.999, `${label}: contrib vs standard cosine ${cos}`);
      // Outputs stay L2-normalised (the normalisation is float32 in both graphs).
      for (let r = 0; r < dims[0]; r++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += b.data[r * d + j] ** 2;
        assert.ok(Math.abs(Math.sqrt(s) - 1) < 1e-4);
      }
    }
  });

  test('ClipnModel loads a folder with an int8 graph and still encodes with fp32', async () => {
    const model = await ClipnModel.load(folder, { backend: { executionProviders: ['cpu'] } });
    try {
      const fixture = readNpy(path.join(folder, 'parity', 'pixel_values.npy'));
      const e = await model.encodePixels(fixture.data as Float32Array, fixture.shape);
      const want = readNpy(path.join(folder, 'parity', 'image_embeds.npy')).data as Float32Array;
      for (const cos of rowCosines(e.data, want, model.embedDim)) assert.ok(cos > 0.99999);
    } finally {
      await model.dispose();
    }
  });

  // ---------------------------------------------------------------------------------------------
  // The `int8` precision through the engine, the cache and the kernel.

  /** Eight sample images (4 ID classes' first files, 4 OOD), enough to see rows and cache hits. */
  async function someImages(): Promise<Array<{ path: string }>> {
    const root = path.join(REPO_ROOT, 'samples', 'images');
    const id = await loadDataset(path.join(root, 'id'), { hash: false });
    const ood = await loadDataset(path.join(root, 'ood'), { hash: false });
    return [...id.items.slice(0, 4), ...ood.items.slice(0, 4)].map((it) => ({ path: it.path }));
  }

  const bitwiseEqual = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

  test('precision int8 runs the image_int8 graph (encodePixels and encodeImages)', async () => {
    const m = await loadManifest(folder);
    const model = await ClipnModel.load(folder, { backend: { executionProviders: ['cpu'] } });
    try {
      const fixture = readNpy(path.join(folder, 'parity', 'pixel_values.npy'));
      const pixels = fixture.data as Float32Array;
      const direct = await (await backend.session('image_int8_direct', m.graphs.image_int8!)).run({ pixel_values: { type: 'float32', data: pixels, dims: fixture.shape } });
      const viaModel = await model.encodePixels(pixels, fixture.shape, 'int8');
      assert.ok(bitwiseEqual(viaModel.data, direct.data), 'encodePixels(int8) is the int8 graph run on the same pixels');
      const fp32 = await model.encodePixels(pixels, fixture.shape, 'fp32');
      assert.ok(!bitwiseEqual(viaModel.data, fp32.data), 'int8 and fp32 graphs give different features');

      const files = (await someImages()).map((i) => i.path);
      const a = await model.encodeImages(files, { precision: 'int8' });
      const b = await model.encodeImages(files, { precision: 'fp32' });
      assert.deepEqual(a.failures, []);
      for (const cos of rowCosines(a.data, b.data, model.embedDim)) assert.ok(cos >= 0.99 && cos < 1 - 1e-9, `int8 vs fp32 image cosine ${cos}`);
    } finally {
      await model.dispose();
    }
  });

  test('the cache key differs per precision: int8 features are never served for fp32, nor fp32 for int8', async () => {
    const m = (await loadManifest(folder)).manifest;
    const keys = IMAGE_PRECISIONS.map((p) => cacheKeyFor(m, p));
    assert.deepEqual(keys.map((k) => k.variant), ['fp32', 'fp16', 'int8']);
    assert.equal(keys[2].graph_sha256, await sha256File(path.join(folder, 'image_encoder.int8.onnx')));
    assert.equal(keys[0].graph_sha256, await sha256File(path.join(folder, 'image_encoder.onnx')));
    assert.equal(new Set(keys.map(cacheDirName)).size, 3, 'one cache folder per precision');
    // The variant alone separates keys too (a graph file shared by two variants still gets two folders).
    assert.notEqual(cacheDirName({ ...keys[0], variant: 'int8' }), cacheDirName(keys[0]));

    const root = path.join(work, 'cache');
    const model = await ClipnModel.load(folder, { backend: { executionProviders: ['cpu'] } });
    try {
      const input = { items: await someImages() };
      const n = input.items.length;
      const int8Cache = EmbeddingCache.forModel(root, m, 'int8');
      const fp32Cache = EmbeddingCache.forModel(root, m, 'fp32');
      assert.notEqual(int8Cache.dir, fp32Cache.dir);
      const int8First = await embedImageSet(model, input, { cache: int8Cache, precision: 'int8' });
      assert.deepEqual([int8First.encoded, int8First.fromCache], [n, 0]);
      // The same images at fp32 on the same cache root: nothing comes from the int8 entries.
      const fp32Cached = await embedImageSet(model, input, { cache: fp32Cache, precision: 'fp32' });
      assert.deepEqual([fp32Cached.encoded, fp32Cached.fromCache], [n, 0]);
      const fp32Plain = await embedImageSet(model, input, { precision: 'fp32' });
      assert.ok(bitwiseEqual(fp32Cached.features, fp32Plain.features), 'fp32 through the cache = fp32 encoded now');
      assert.ok(!bitwiseEqual(fp32Cached.features, int8First.features));
      // Each precision's second run is served from its own entries, unchanged.
      const int8Again = await embedImageSet(model, input, { cache: EmbeddingCache.forModel(root, m, 'int8'), precision: 'int8' });
      assert.deepEqual([int8Again.encoded, int8Again.fromCache], [0, n]);
      assert.ok(bitwiseEqual(int8Again.features, int8First.features));
      // A cache opened for one precision refuses the other.
      await assert.rejects(embedImageSet(model, input, { cache: int8Cache, precision: 'fp32' }), (e: Error) => e instanceof EmbeddingCacheError && /\(fp32\)/.test(e.message));
      await assert.rejects(embedImageSet(model, input, { cache: fp32Cache, precision: 'int8' }), (e: Error) => e instanceof EmbeddingCacheError && /\(int8\)/.test(e.message));
      // A model without the int8 graph has no int8 key.
      const plain = (await loadManifest(DEFAULT_MODEL_DIR)).manifest;
      assert.equal(plain.graphs.image_int8, undefined);
      assert.throws(() => cacheKeyFor(plain, 'int8'), /has no int8 image graph/);
      assert.equal(availablePrecision(plain, 'int8'), 'fp32');
      assert.equal(availablePrecision(m, 'int8'), 'int8');
    } finally {
      await model.dispose();
    }
  });

  test('kernel: `precision: int8` runs int8 where the model has the graph, and falls back to fp32 with a note where not', async () => {
    const state = new KernelState();
    const cacheFolder = path.join(work, 'kernel-cache');
    const settings: KernelSettings = { modelFolder: folder, providers: ['cpu'], batchSize: 8, threads: 1, cacheFolder };
    let n = 0;
    const run = async (source: string) => {
      const o = await executeCell(state, { source, baseDir: path.join(REPO_ROOT, 'samples'), cellNumber: ++n, settings, signal: new AbortController().signal, progress: () => undefined });
      if (!o.ok) throw new Error(`cell ${n} failed: ${o.message}`);
      return o.payload;
    };
    const row = (v: Awaited<ReturnType<typeof run>>, key: string) => {
      const kv = v.blocks.find((b) => b.type === 'keyvalue') as { rows: string[][] } | undefined;
      return kv?.rows.find((r) => r[0] === key)?.[1];
    };
    try {
      assert.deepEqual(parseCell('model:\n  precision: int8\n').diagnostics, []);
      assert.match(parseCell('model:\n  precision: int4\n').diagnostics.map((d) => d.message).join('\n'), /fp32, fp16, int8/);

      const withInt8 = await run(`model:\n  name: q\n  folder: ${JSON.stringify(folder)}\n  precision: int8\n`);
      assert.equal(row(withInt8, 'image precision'), 'int8');
      assert.ok(!withInt8.notes.some((t) => /image graph/.test(t)), withInt8.notes.join('\n'));
      const without = await run(`model:\n  name: d\n  folder: ${JSON.stringify(DEFAULT_MODEL_DIR)}\n  precision: int8\n`);
      assert.equal(row(without, 'image precision'), 'fp32');
      assert.ok(without.notes.some((t) => /no int8 image graph.*encoded with fp32/.test(t)), without.notes.join('\n'));
      const plainFp32 = await run(`model:\n  name: f\n  folder: ${JSON.stringify(folder)}\n`);
      assert.equal(row(plainFp32, 'image precision'), 'fp32');

      // The kernel embeds with the precision it reported, through that precision's cache.
      await run('dataset:\n  name: s\n  role: ood\n  folder: images/ood\n  limit: 6\n');
      const q = state.defs.get('q')!.value as ModelValue;
      const f = state.defs.get('f')!.value as ModelValue;
      const set = state.defs.get('s')!.value as DatasetValue;
      assert.notEqual(q.key, f.key);
      assert.equal(state.cache(q, cacheFolder)!.key.variant, 'int8');
      assert.equal(state.cache(f, cacheFolder)!.key.variant, 'fp32');
      const ctx: RunContext = { state, settings, baseDir: REPO_ROOT, cellNumber: ++n, signal: new AbortController().signal, progress: () => undefined };
      const kInt8 = await embedSet(ctx, q, set);
      const kFp32 = await embedSet(ctx, f, set);
      assert.deepEqual([kInt8.encoded, kFp32.encoded], [6, 6], 'the fp32 model finds no int8 rows in the cache');
      const want = await embedImageSet(q.model, { items: set.dataset.items }, { precision: 'int8' });
      assert.ok(bitwiseEqual(kInt8.features, want.features), 'kernel int8 rows = engine int8 rows');
      assert.ok(!bitwiseEqual(kFp32.features, kInt8.features));
    } finally {
      await state.dispose();
    }
  });
});
