// The native text tower (native/text-tower.cc through engine/native-kv-tower.ts) against the
// onnxruntime session of the same text_no_kv graph it replaces:
//  - the ONNX reader against Python's onnx package on the default model's graph (every float
//    initializer's name, dims and values; the node sequence);
//  - features within 1e-6 (max abs, unit vectors) and presents within 1e-6 relative of
//    onnxruntime's on the default model's template rows (all split lengths, several mixes), and
//    on the micro model (width 32, 2 heads) with GELU (2 blocks) and QuickGELU (1 block); a row's bits
//    independent of its batch (the text memo's premise);
//  - the engine's choice: the tower where it agrees on the probe, onnxruntime with the reason
//    otherwise (nativeText: false, a tower computing something else, a graph of another kind);
//  - bad calls: a token id outside the vocabulary, sizes that do not match, are errors.
// The PyTorch parity of the same features is shared-prefix.test.ts's (it runs whichever the
// engine chose: the tower wherever this test does not skip).
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { nativeKernels } from '../../extension/engine/analysis/native-kernels';
import { OrtBackend } from '../../extension/engine/backend';
import type { GraphSession } from '../../extension/engine/backend';
import { ClipnModel, promptWeights } from '../../extension/engine/encoder';
import { filledTokens } from '../../extension/engine/filled-tokens';
import { kvTowerWeights, NativeKvTower, nativeKvRunner, probeDifference, PROBE_TOLERANCE } from '../../extension/engine/native-kv-tower';
import { readOnnxGraph } from '../../extension/engine/onnx-reader';
import { classPrompts } from '../../extension/engine/prompts';
import { classTemplateRows, distinctRows, encodeSharedPrefix } from '../../extension/engine/shared-prefix';
import type { KvRunner, KvShape, SharedPrefixRow } from '../../extension/engine/shared-prefix';
import { maxAbsDiff } from './helpers/arrays';
import { DEFAULT_MODEL_DIR, exportMicro } from './helpers/models';
import { PYTHON, REPO_ROOT, runPythonJson } from './helpers/python';

const KV_FILE = path.join(DEFAULT_MODEL_DIR, 'text_no_kv.onnx');
const SHAPE: KvShape = { layers: 3, heads: 4, headWidth: 32, prompts: 16, embedDim: 128 };
const skip = !nativeKernels() && 'the native module is not built or this CPU lacks AVX2/FMA (native-kernels.test.ts checks where it must be)';
const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

const TEMPLATES = ['a photo of no {}.', '{} in this photo.', 'a {}.', 'there is nothing at all like a {} in this close-up photo.', 'not a {}, no.'];
const CLASSES = ['circle', 'red square', 'x', 'star on a long blue background', 'dog'];

/** Every template x class text of `model` under `mixes` as shared-prefix rows (the engine's own split). */
function templateRows(model: ClipnModel, mixes: Float32Array[]): SharedPrefixRow[] {
  const filled = classPrompts(CLASSES, TEMPLATES);
  const tokens = filledTokens(model.tokenizer, CLASSES, TEMPLATES);
  const beginnings = TEMPLATES.map((t) => t.slice(0, t.indexOf('{}')));
  const all = Array.from({ length: mixes.length * filled.length }, (_, i) => i);
  const rows = classTemplateRows(model.tokenizer, filled, beginnings, mixes, all, (text) => tokens.ids(Math.floor(text / TEMPLATES.length), text % TEMPLATES.length));
  return distinctRows(rows).rows;
}

async function features(runner: KvRunner, shape: KvShape, rows: readonly SharedPrefixRow[], batchSize: number): Promise<Float32Array> {
  const out = new Float32Array(rows.length * shape.embedDim);
  await encodeSharedPrefix(runner, shape, rows, batchSize, (batch, embeds) => batch.forEach((r, b) => out.set(embeds.subarray(b * shape.embedDim, (b + 1) * shape.embedDim), r * shape.embedDim)));
  return out;
}

test('the ONNX reader gives Python onnx\'s initializers (names, dims, values) and node sequence', () => {
  const graph = readOnnxGraph(fs.readFileSync(KV_FILE));
  const ref = runPythonJson<{ inits: Array<[string, number[], number, number]>; ops: string[] }>(
    `
import json, sys
import onnx
from onnx import numpy_helper
m = onnx.load(json.load(sys.stdin))
inits = [[t.name, list(t.dims), float(numpy_helper.to_array(t).astype("float64").sum()), float(abs(numpy_helper.to_array(t).astype("float64")).max())]
         for t in m.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
print(json.dumps({"inits": inits, "ops": [n.op_type for n in m.graph.node]}))
`,
    KV_FILE,
  );
  assert.deepEqual(graph.nodes.map((n) => n.opType), ref.ops);
  assert.deepEqual([...graph.initializers.keys()], ref.inits.map(([name]) => name));
  for (const [name, dims, sum, max] of ref.inits) {
    const t = graph.initializers.get(name)!;
    assert.deepEqual(t.dims, dims, name);
    let s = 0;
    let m = 0;
    for (const v of t.data) (s += v), (m = Math.max(m, Math.abs(v)));
    // Summed in float64 over the same float32 values, in the same order: equal to rounding of the sums.
    assert.ok(Math.abs(s - sum) <= 1e-9 * Math.max(1, Math.abs(sum)) && m === max, `${name}: sum ${s} vs ${sum}, max ${m} vs ${max}`);
  }
});

test('the default model\'s graph gives the tiny tower\'s sizes; graphs of other kinds are refused with the reason', () => {
  const { config, weights } = kvTowerWeights(readOnnxGraph(fs.readFileSync(KV_FILE)), 4);
  assert.deepEqual([...config], [3, 128, 4, 512, 656, 16, 16, 128, 0]);
  const perLayer = 2 * 128 + 3 * (128 * 128 + 128) + 128 * 128 + 128 + 2 * 128 + 128 * 512 + 512 + 512 * 128 + 128;
  assert.equal(weights.length, 656 * 128 + 16 * 128 + 16 * 16 * 128 + 3 * perLayer + 2 * 128 + 128 * 128);
  assert.throws(() => kvTowerWeights(readOnnxGraph(fs.readFileSync(path.join(DEFAULT_MODEL_DIR, 'text_no_encoder.onnx'))), 4), /weighted node \d+ \(.*\): expected/);
  assert.throws(() => kvTowerWeights(readOnnxGraph(fs.readFileSync(path.join(DEFAULT_MODEL_DIR, 'image_encoder.onnx'))), 4), /expected|does not begin/);
});

describe('the native tower against onnxruntime on the default model', { skip }, () => {
  let backend: OrtBackend;
  let session: GraphSession;
  let model: ClipnModel;
  let tower: NativeKvTower;
  before(async () => {
    backend = new OrtBackend({ executionProviders: ['cpu'], intraOpNumThreads: 1 });
    session = await backend.session('text_no_kv', KV_FILE);
    model = await ClipnModel.load(DEFAULT_MODEL_DIR, { backend: { executionProviders: ['cpu'] }, textMemoBytes: 0, textWorkers: 0 });
    tower = NativeKvTower.load(KV_FILE, SHAPE);
  });
  after(async () => {
    await backend?.dispose();
    await model?.dispose();
  });

  test('features within 1e-6 of onnxruntime\'s for every split and mix, bit for bit the same in any batch', async () => {
    const mixes = [promptWeights.mean(), promptWeights.none(), promptWeights.single(5), promptWeights.subset([1, 4, 9])].map((m) => model.weightMatrix(m, 1));
    const rows = templateRows(model, mixes);
    assert.ok(new Set(rows.map((r) => r.split)).size >= 3, 'several split lengths');
    const reference = await features(session, SHAPE, rows, 64);
    const got = await features(tower, SHAPE, rows, 64);
    const diff = maxAbsDiff(got, reference);
    assert.ok(diff <= 1e-6, `max abs ${diff}`);
    assert.ok(diff > 0, 'the tower is a computation of its own (equal bits everywhere would mean onnxruntime ran)');
    for (const batch of [1, 7, 512]) assert.ok(bytes(await features(tower, SHAPE, rows, batch)).equals(bytes(got)), `batch ${batch}`);
  });

  test('the probe: within 1e-6 here; a tower computing something else (QuickGELU for GELU) is far outside the tolerance', async () => {
    assert.ok((await probeDifference(tower, session, SHAPE, 656)) <= 1e-6);
    const weights = kvTowerWeights(readOnnxGraph(fs.readFileSync(KV_FILE)), 4);
    weights.config[8] = 1;
    const wrong = NativeKvTower.fromWeights(KV_FILE, SHAPE, weights);
    assert.ok((await probeDifference(wrong, session, SHAPE, 656)) > 100 * PROBE_TOLERANCE);
    const choice = await nativeKvRunner(session, SHAPE, 656);
    assert.deepEqual({ native: choice.native, tower: choice.runner instanceof NativeKvTower }, { native: true, tower: true });
  });

  test('the engine runs the tower, or onnxruntime with nativeText: false, and says which', async () => {
    const got = await model.encodeClassPromptsNo(CLASSES, TEMPLATES, [promptWeights.mean()]);
    assert.deepEqual(await model.textTower(), { native: true, why: undefined });
    const off = await ClipnModel.load(DEFAULT_MODEL_DIR, { backend: { executionProviders: ['cpu'] }, textMemoBytes: 0, textWorkers: 0, nativeText: false });
    try {
      assert.equal(await off.textTower(), undefined, 'nothing chosen before the first shared-beginnings text');
      const ort = await off.encodeClassPromptsNo(CLASSES, TEMPLATES, [promptWeights.mean()]);
      assert.deepEqual(await off.textTower(), { native: false, why: 'nativeText: false' });
      const diff = maxAbsDiff(got.data, ort.data);
      assert.ok(diff <= 1e-6 && diff > 0, `max abs ${diff}`);
    } finally {
      await off.dispose();
    }
  });

  test('presents (a beginning\'s keys and values) within 1e-6 relative of onnxruntime\'s', async () => {
    const ids = BigInt64Array.from([49406, 320, 1125, 539, 49406, 320, 10, 11].map((v) => BigInt(v % 656)));
    const feeds = {
      input_ids: { type: 'int64' as const, data: ids, dims: [2, 4] },
      prompt_weights: { type: 'float32' as const, data: new Float32Array(32).map((_, i) => ((i * 7) % 5) / 10), dims: [2, 16] },
      past_keys: { type: 'float32' as const, data: new Float32Array(0), dims: [3, 1, 4, 0, 32] },
      past_values: { type: 'float32' as const, data: new Float32Array(0), dims: [3, 1, 4, 0, 32] },
      past_index: { type: 'int64' as const, data: new BigInt64Array(2), dims: [2] },
    };
    const names = ['present_keys', 'present_values'];
    const [a, b] = [await tower.runOutputs(feeds, names), await session.runOutputs(feeds, names)];
    for (const name of names) {
      assert.deepEqual(a[name].dims, b[name].dims);
      const scale = b[name].data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      assert.ok(maxAbsDiff(a[name].data, b[name].data) <= 1e-6 * scale, name);
    }
  });

  test('bad calls are errors, not crashes: a token outside the vocabulary, sizes that do not match, an unknown output', async () => {
    const feeds = (id: bigint, mixLength = 16) => ({
      input_ids: { type: 'int64' as const, data: BigInt64Array.from([0n, id]), dims: [1, 2] },
      prompt_weights: { type: 'float32' as const, data: new Float32Array(mixLength), dims: [1, 16] },
      past_keys: { type: 'float32' as const, data: new Float32Array(0), dims: [3, 1, 4, 0, 32] },
      past_values: { type: 'float32' as const, data: new Float32Array(0), dims: [3, 1, 4, 0, 32] },
      past_index: { type: 'int64' as const, data: new BigInt64Array(1), dims: [1] },
    });
    await assert.rejects(tower.runOutputs(feeds(656n), ['embeds']), /a token id outside the vocabulary/);
    await assert.rejects(tower.runOutputs(feeds(-1n), ['embeds']), /a token id outside the vocabulary/);
    await assert.rejects(tower.runOutputs(feeds(5n, 15), ['embeds']), /array sizes do not match/);
    await assert.rejects(tower.runOutputs(feeds(5n), ['logits']), /no output named "logits"/);
    assert.equal((await tower.runOutputs(feeds(655n), ['embeds'])).embeds.data.length, 128);
  });
});

describe('the native tower on the micro model (width 32, 2 heads): GELU with 2 blocks, QuickGELU with 1', { skip }, () => {
  const folders: Record<string, string> = {};
  before(() => {
    const micro = exportMicro();
    folders.gelu = micro.folder;
    // The micro architecture with QuickGELU and a text tower of one block (only the last, EOT-only
    // block), exported by the real exporter.
    const out = path.join(micro.workDir, 'micro-quick');
    if (!fs.existsSync(path.join(out, 'clipn.json'))) {
      const script = `
import sys
from pathlib import Path
import torch
from clipn.config import get_config
from clipn.model import CLIPN
from clipn.tokenizer import ClipTokenizer
from clipn.export import export_model
merges = Path(sys.argv[1])
from dataclasses import replace
torch.manual_seed(1)
config = get_config("micro", "quick_gelu").with_vocab(ClipTokenizer(merges).vocab_size)
model = CLIPN(replace(config, text=replace(config.text, layers=1)))
with torch.no_grad():
    model.prompt_no.normal_(0.0, 0.5)
export_model(model, merges, Path(sys.argv[2]), "micro-quick", fp16=False, int8=False, templates=["a photo of a {}."])
`;
      const run = spawnSync(PYTHON, ['-c', script, path.join(micro.workDir, 'merges.txt'), out], {
        encoding: 'utf8', env: { ...process.env, PYTHONPATH: path.join(REPO_ROOT, 'models'), PYTHONWARNINGS: 'ignore' },
      });
      if (run.status !== 0) throw new Error(`QuickGELU micro export failed: ${run.stderr}`);
    }
    folders.quick = out;
  });

  for (const kind of ['gelu', 'quick'] as const) {
    test(`${kind}: the tower's features within 1e-6 of onnxruntime's, and the engine picks it`, async () => {
      const model = await ClipnModel.load(folders[kind], { backend: { executionProviders: ['cpu'] }, textMemoBytes: 0, textWorkers: 0 });
      const backend = new OrtBackend({ executionProviders: ['cpu'], intraOpNumThreads: 1 });
      try {
        const { layers, heads, width } = model.manifest.architecture.text;
        const shape = { layers, heads, headWidth: width / heads, prompts: model.numPrompts, embedDim: model.embedDim };
        const file = path.join(folders[kind], model.modelFolder.manifest.graphs.text_no_kv!);
        const { config } = kvTowerWeights(readOnnxGraph(fs.readFileSync(file)), heads);
        assert.deepEqual([config[0], config[8]], kind === 'quick' ? [1, 1] : [2, 0], 'blocks and activation read from the graph');
        const session = await backend.session('text_no_kv', file);
        const mixes = [promptWeights.mean(), promptWeights.single(2), promptWeights.subset([0, 3])].map((m) => model.weightMatrix(m, 1));
        const rows = templateRows(model, mixes);
        const diff = maxAbsDiff(await features(NativeKvTower.load(file, shape), shape, rows, 16), await features(session, shape, rows, 16));
        assert.ok(diff <= 1e-6, `max abs ${diff}`);
        await model.encodeClassPromptsNo(['dog'], ['a photo of a {}.'], [promptWeights.mean()]);
        assert.equal((await model.textTower())?.native, true);
      } finally {
        await backend.dispose();
        await model.dispose();
      }
    });
  }
});

test('without the native module the engine says so and runs onnxruntime', { skip: !skip && 'the module runs here (the other tests cover it)' }, async () => {
  const model = await ClipnModel.load(DEFAULT_MODEL_DIR, { backend: { executionProviders: ['cpu'] }, textMemoBytes: 0, textWorkers: 0 });
  try {
    await model.encodeClassPromptsNo(['dog'], ['a photo of no {}.'], [promptWeights.mean()]);
    const tower = await model.textTower();
    assert.equal(tower?.native, false);
    assert.match(tower?.why ?? '', /native module/);
  } finally {
    await model.dispose();
  }
});
