// The int8 dynamically quantised image encoder (models/clipn/quantize.py, `export --int8`) run
// by onnxruntime-node: the contrib DynamicQuantizeMatMul graph and the standard-op
// (MatMulInteger) variant both load and run, and their features stay at cosine >= 0.99 to the
// fp32 graph's on the micro model. Graph structure is tested in test/models/test_quantize.py.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { OrtBackend } from '../../extension/engine/backend';
import { ClipnModel } from '../../extension/engine/encoder';
import { loadManifest, ManifestError, validateManifest } from '../../extension/engine/manifest';
import { readNpy } from '../../extension/engine/npy';
import { PYTHON, REPO_ROOT } from './helpers/python';
import { exportMicro } from './helpers/models';
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
});
