// The ONNX encoder (checked by the Python onnx package's own parser and checker) and the scoring
// graph (checked against scores.ts's plain-TS reference path on random normalised features).
//
// Tolerances. Both paths round the logits to float32, but onnxruntime's GEMM also accumulates
// the 512-term dot products in float32 (scores.ts sums in float64 and rounds once), so its
// logits are off by up to ~2e-5 at |logit| ~ 20. The graph path recomputes the two logits at
// the predicted class exactly and corrects the softmax normalisers for them, so the per-image
// scores (MSP, MaxLogit, Energy, CTW, ATD) agree to 1e-5 relative. The optional full matrices
// (p_yes, p) carry the GEMM's error directly: 5e-5 relative. Decisions (predicted class, CTW
// and ATD OOD calls) must be identical except where the reference's own margin is within that
// noise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OrtBackend } from '../../extension/engine/backend';
import { DataType, GraphBuilder, ProtoWriter, encodeModel, OnnxGraphError } from '../../extension/engine/onnx-graph';
import { buildScoringGraph, scoreFeaturesGraph, scoreImageFeatures, SCORE_COLUMNS } from '../../extension/engine/scoring-graph';
import type { GraphScoreOptions } from '../../extension/engine/scoring-graph';
import { computeLogits, scoreFeatures, ScoresError } from '../../extension/engine/scores';
import type { FeatureInput, ImageScores } from '../../extension/engine/scores';
import { runPythonJson } from './helpers/python';
import { gaussian, normalisedRows } from '../../extension/engine/random';

// ---------------------------------------------------------------------------------------------
// Wire format and ModelProto encoding.

test('varints and field encodings follow the protobuf wire format', () => {
  const bytes = (f: (w: ProtoWriter) => void) => {
    const w = new ProtoWriter(1);
    f(w);
    return [...w.finish()];
  };
  assert.deepEqual(bytes((w) => w.varint(0)), [0]);
  assert.deepEqual(bytes((w) => w.varint(1)), [1]);
  assert.deepEqual(bytes((w) => w.varint(300)), [0xac, 0x02]);
  assert.deepEqual(bytes((w) => w.varint(2 ** 53 - 1)), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]);
  // int64 -1 is ten bytes of two's complement, as protobuf writes negative int32/int64.
  assert.deepEqual(bytes((w) => w.intField(1, -1)), [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
  assert.deepEqual(bytes((w) => w.floatField(2, 1)), [0x15, 0x00, 0x00, 0x80, 0x3f]);
  assert.deepEqual(bytes((w) => w.stringField(3, 'ab')), [0x1a, 0x02, 0x61, 0x62]);
  assert.deepEqual(bytes((w) => w.messageField(4, (m) => m.intField(1, 150))), [0x22, 0x03, 0x08, 0x96, 0x01]);
  assert.throws(() => new ProtoWriter().varint(0.5), RangeError);
});

const DECODE_PY = `
import base64, json, sys
import onnx
from onnx import helper, numpy_helper
out = []
for b64 in json.load(sys.stdin):
    m = onnx.load_from_string(base64.b64decode(b64))
    onnx.checker.check_model(m, full_check=True)
    dims = lambda v: [d.dim_param if d.HasField("dim_param") else d.dim_value for d in v.type.tensor_type.shape.dim]
    out.append({
        "ir": m.ir_version,
        "opsets": [[o.domain, o.version] for o in m.opset_import],
        "inputs": [[v.name, v.type.tensor_type.elem_type, dims(v)] for v in m.graph.input],
        "outputs": [[v.name, v.type.tensor_type.elem_type, dims(v)] for v in m.graph.output],
        "nodes": [[n.op_type, list(n.input), list(n.output), {a.name: helper.get_attribute_value(a) if a.type != onnx.AttributeProto.TENSOR else numpy_helper.to_array(a.t).tolist() for a in n.attribute}] for n in m.graph.node],
        "inits": {t.name: [list(t.dims), t.data_type, numpy_helper.to_array(t).ravel().tolist()] for t in m.graph.initializer},
    })
print(json.dumps(out))
`;

interface Decoded {
  ir: number;
  opsets: [string, number][];
  inputs: [string, number, (number | string)[]][];
  outputs: [string, number, (number | string)[]][];
  nodes: [string, string[], string[], Record<string, unknown>][];
  inits: Record<string, [number[], number, number[]]>;
}

function decode(models: Uint8Array[]): Decoded[] {
  return runPythonJson<Decoded[]>(DECODE_PY, models.map((m) => Buffer.from(m).toString('base64')));
}

test('encodeModel writes a ModelProto that the onnx package parses and checks', () => {
  const g = new GraphBuilder('demo');
  const axes = g.int64s([1], [1], 'axes');
  const w = g.floats([1.5, -2, 0.25, 3, 4, 5], [2, 3], 'w');
  const y = g.op1('Gemm', ['x', w], { alpha: { float: 2 }, beta: 0.5, transB: 0 });
  g.op1('ReduceSum', [y, axes], { keepdims: 1 }, 'sum');
  g.op1('Transpose', [y], { perm: { ints: [1, 0] } }, 'yt');
  g.op1('LeakyRelu', [y], { alpha: { float: 0.125 } }, 'lr');
  g.op1('Cast', [y], { to: DataType.INT64 }, 'yi');
  g.op1('Constant', [], { value: { tensor: { dims: [2], elemType: DataType.INT64, data: BigInt64Array.from([-3n, 2n ** 40n]) } } }, 'k');
  const model = g.build(
    [{ name: 'x', elemType: DataType.FLOAT, shape: ['batch', 2] }],
    [
      { name: 'sum', elemType: DataType.FLOAT, shape: ['batch', 1] },
      { name: 'yt', elemType: DataType.FLOAT, shape: [3, 'batch'] },
      { name: 'lr', elemType: DataType.FLOAT, shape: ['batch', 3] },
      { name: 'yi', elemType: DataType.INT64, shape: ['batch', 3] },
      { name: 'k', elemType: DataType.INT64, shape: [2] },
    ],
  );
  const [d] = decode([model]);
  assert.equal(d.ir, 8);
  assert.deepEqual(d.opsets, [['', 17]]);
  assert.deepEqual(d.inputs, [['x', 1, ['batch', 2]]]);
  assert.deepEqual(d.outputs[0], ['sum', 1, ['batch', 1]]);
  assert.deepEqual(d.outputs[1], ['yt', 1, [3, 'batch']]);
  assert.deepEqual(d.outputs[4], ['k', 7, [2]]);
  assert.deepEqual(d.inits[w], [[2, 3], 1, [1.5, -2, 0.25, 3, 4, 5]]);
  assert.deepEqual(d.inits[axes], [[1], 7, [1]]);
  const byOp = Object.fromEntries(d.nodes.map((n) => [n[0], n]));
  assert.deepEqual(byOp.Gemm[3], { alpha: 2, beta: 0.5, transB: 0 });
  assert.deepEqual(byOp.Gemm[1], ['x', w]);
  assert.deepEqual(byOp.Transpose[3], { perm: [1, 0] });
  assert.deepEqual(byOp.LeakyRelu[3], { alpha: 0.125 });
  assert.deepEqual(byOp.Cast[3], { to: 7 });
  assert.deepEqual(byOp.Constant[3], { value: [-3, 2 ** 40] });
});

test('encodeModel rejects graphs that read undefined values or mismatched tensor data', () => {
  const spec = (nodes: { op: string; inputs: string[]; outputs: string[] }[]) => ({
    graph: { name: 'bad', nodes, inputs: [{ name: 'x', elemType: DataType.FLOAT }], outputs: [{ name: 'y', elemType: DataType.FLOAT }] },
  });
  assert.throws(() => encodeModel(spec([{ op: 'Relu', inputs: ['z'], outputs: ['y'] }])), /reads "z" before anything produces it/);
  assert.throws(() => encodeModel(spec([{ op: 'Relu', inputs: ['x'], outputs: ['t'] }])), /output "y" is never produced/);
  assert.throws(
    () => encodeModel(spec([{ op: 'Relu', inputs: ['x'], outputs: ['y'] }, { op: 'Relu', inputs: ['x'], outputs: ['y'] }])),
    /produced twice/,
  );
  const g = new GraphBuilder('t');
  g.initializers.push({ name: 'w', dims: [2, 2], elemType: DataType.FLOAT, data: new Float32Array(3) });
  g.op1('Add', ['x', 'w'], {}, 'y');
  assert.throws(() => g.build([{ name: 'x', elemType: DataType.FLOAT }], [{ name: 'y', elemType: DataType.FLOAT }]), OnnxGraphError);
});

test('scoring graphs pass the onnx checker in every variant', () => {
  const c = 3;
  const d = 4;
  const text = { yes: new Float32Array(c * d).fill(0.5), no: new Float32Array(c * d).fill(-0.5) };
  const variants = [
    buildScoringGraph({ classes: c, dim: d }),
    buildScoringGraph({ classes: c, dim: d, fused: true, temperature: 0.01 }),
    buildScoringGraph({ classes: c, dim: d, text, keepPYes: true, keepP: true }),
    buildScoringGraph({ classes: c, dim: d, text, fused: true, scale: 50 }),
  ];
  const decoded = decode(variants.map((v) => v.model));
  assert.deepEqual(decoded[0].inputs, [['image', 1, ['N', d]], ['text_yes', 1, [c, d]], ['text_no', 1, [c, d]]]);
  assert.deepEqual(decoded[0].outputs, [['scores', 1, ['N', SCORE_COLUMNS.length]]]);
  assert.deepEqual(decoded[2].inputs, [['image', 1, ['N', d]]]);
  assert.deepEqual(decoded[2].outputs, [['scores', 1, ['N', SCORE_COLUMNS.length + 2 * c]]]);
  assert.equal(variants[2].width, SCORE_COLUMNS.length + 2 * c);
  assert.ok(decoded[1].nodes.some((n) => n[0] === 'Split'));
  assert.equal(decoded[0].nodes.filter((n) => n[0] === 'Gemm').length, 2);
  assert.equal(decoded[3].nodes.filter((n) => n[0] === 'Gemm').length, 1);
  // T = 0.01 with scale 100: the baselines reuse the CTW softmax (no second Softmax).
  assert.equal(decoded[1].nodes.filter((n) => n[0] === 'Softmax').length, 1);
  assert.equal(decoded[0].nodes.filter((n) => n[0] === 'Softmax').length, 2);
});

// ---------------------------------------------------------------------------------------------
// Graph path against the plain-TS reference.

/** Random features; the no features are partly the yes ones so both CTW outcomes occur. */
function randomInput(seed: number, n: number, classes: number, dim: number): FeatureInput {
  const next = gaussian(seed);
  const image = normalisedRows(n, dim, next);
  const textYes = normalisedRows(classes, dim, next);
  const noise = normalisedRows(classes, dim, next);
  const textNo = new Float32Array(classes * dim);
  for (let j = 0; j < classes; j++) {
    let s = 0;
    for (let k = 0; k < dim; k++) {
      const v = 0.7 * textYes[j * dim + k] + 0.7 * noise[j * dim + k];
      textNo[j * dim + k] = v;
      s += v * v;
    }
    for (let k = 0; k < dim; k++) textNo[j * dim + k] /= Math.sqrt(s);
  }
  return { image, n, dim, textYes, textNo, classes };
}

const REL = 1e-5;

const REL_MATRIX = 5e-5;

function assertRelClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, abs = 1e-12, rel = REL): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]) / (Math.abs(want[i]) + abs / rel);
    if (!(err <= worst)) {
      worst = err;
      at = i;
    }
  }
  assert.ok(worst <= rel, `${what}: relative error ${worst} at ${at} (got ${got[at]}, want ${want[at]})`);
}

interface Margins {
  top2Gap: Float64Array;
  /** Softmax probability of the predicted class (the scale-s logits). */
  pMax: Float64Array;
}

function margins(input: FeatureInput, scale: number): Margins {
  const { image, n, dim, textYes, classes: c } = input;
  const logits = computeLogits(image, n, dim, textYes, c, scale);
  const top2Gap = new Float64Array(n);
  const pMax = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let a = -Infinity;
    let b = -Infinity;
    for (let j = 0; j < c; j++) {
      const v = logits[i * c + j];
      if (v > a) {
        b = a;
        a = v;
      } else if (v > b) b = v;
    }
    top2Gap[i] = a - b;
    let z = 0;
    for (let j = 0; j < c; j++) z += Math.exp(logits[i * c + j] - a);
    pMax[i] = 1 / z;
  }
  return { top2Gap, pMax };
}

/** Compares all scores and decisions; returns how many decisions differed at near-ties. */
function compareScores(got: ImageScores, ref: ImageScores, input: FeatureInput, scale: number, what: string): number {
  assert.equal(got.n, ref.n);
  assert.equal(got.classes, ref.classes);
  assert.deepEqual(got.degenerate, ref.degenerate, `${what}: degenerate flags`);
  for (const k of ['msp', 'maxLogit', 'energy', 'ctw', 'atd'] as const) assertRelClose(got[k], ref[k], `${what}: ${k}`);
  if (ref.pYes) assertRelClose(got.pYes!, ref.pYes, `${what}: pYes`, 1e-30, REL_MATRIX);
  const { top2Gap, pMax } = margins(input, scale);
  let nearTies = 0;
  for (let i = 0; i < ref.n; i++) {
    if (got.predicted[i] !== ref.predicted[i]) {
      assert.ok(top2Gap[i] <= 1e-5 * scale, `${what}: image ${i} predicted ${got.predicted[i]} vs ${ref.predicted[i]} with a top-2 gap of ${top2Gap[i]}`);
      nearTies++;
      continue;
    }
    if (got.ctwIsOod[i] !== ref.ctwIsOod[i]) {
      // ctw = sigmoid(d*): a flip needs |d*| within the logit noise, i.e. ctw within 1e-5 of 0.5.
      assert.ok(Math.abs(ref.ctw[i] - 0.5) <= 1e-5, `${what}: image ${i} CTW decision differs at ctw ${ref.ctw[i]}`);
      nearTies++;
    }
    if (got.atdIsOod[i] !== ref.atdIsOod[i]) {
      const margin = 1 - ref.atd[i] - pMax[i];
      assert.ok(Math.abs(margin) <= 1e-5, `${what}: image ${i} ATD decision differs with margin ${margin}`);
      nearTies++;
    }
  }
  return nearTies;
}

test('graph scores equal the TS reference on random normalised features (1e-5 relative)', async () => {
  const input = randomInput(7, 1200, 400, 512);
  const opts = [
    { label: 'T=1 (MCM)', o: {} },
    { label: 'T=0.01 (CLIPN)', o: { temperature: 0.01 } },
    { label: 'scale 50, T=0.5', o: { scale: 50, temperature: 0.5 } },
  ];
  let ties = 0;
  for (const { label, o } of opts) {
    const ref = scoreFeatures(input, { ...o, keepPYes: true });
    for (const variant of [{}, { fused: true }, { textAsInitializers: false }, { textAsInitializers: false, fused: true }, { chunkRows: 333 }]) {
      const got = await scoreImageFeatures(input, { ...o, ...variant, keepPYes: true, engine: 'onnx' });
      assert.equal(got.engine, 'onnx');
      ties += compareScores(got, ref, input, o.scale ?? 100, `${label} ${JSON.stringify(variant)}`);
    }
  }
  assert.ok(ties <= 5, `${ties} near-tie decision differences`);
});

test('keepP returns the softmax of the scale-s logits; p_yes and p are optional', async () => {
  const input = randomInput(11, 130, 37, 512);
  const got = await scoreImageFeatures(input, { keepP: true, chunkRows: 50, engine: 'onnx' });
  assert.equal(got.pYes, undefined);
  const logits = computeLogits(input.image, input.n, input.dim, input.textYes, input.classes, 100);
  const c = input.classes;
  const want = new Float64Array(input.n * c);
  for (let i = 0; i < input.n; i++) {
    let m = -Infinity;
    for (let j = 0; j < c; j++) m = Math.max(m, logits[i * c + j]);
    let z = 0;
    for (let j = 0; j < c; j++) z += Math.exp(logits[i * c + j] - m);
    for (let j = 0; j < c; j++) want[i * c + j] = Math.exp(logits[i * c + j] - m) / z;
  }
  assertRelClose(got.p!, want, 'p', 1e-30, REL_MATRIX);
  const both = await scoreImageFeatures(input, { keepP: true, keepPYes: true, engine: 'onnx' });
  assert.deepEqual(both.p, got.p);
  assertRelClose(both.pYes!, scoreFeatures(input, { keepPYes: true }).pYes!, 'pYes', 1e-30, REL_MATRIX);
});

test('one class, ragged chunks and large logits behave as in the reference', async () => {
  const one = randomInput(3, 10, 1, 16);
  const got = await scoreImageFeatures(one, { chunkRows: 3, engine: 'onnx' });
  compareScores(got, scoreFeatures(one), one, 100, 'one class');
  assert.match(got.degenerate.atd!, /only one ID class/);
  assert.deepEqual([...got.predicted], new Array(10).fill(0));
  // Identical yes/no features: p_yes = 0.5 exactly, CTW decides "ID" (d* = 0 is not < 0).
  const same = randomInput(5, 20, 6, 32);
  same.textNo = same.textYes;
  const s = await scoreImageFeatures(same, { engine: 'onnx' });
  assert.ok(s.ctw.every((v) => v === 0.5));
  assert.ok(s.ctwIsOod.every((v) => v === 0));
  // An image equal to a class feature: logits up to 100, a near one-hot softmax.
  const peaked = randomInput(9, 8, 20, 32);
  peaked.image.set(peaked.textYes.subarray(0, 8 * 32));
  const ref = scoreFeatures(peaked, { temperature: 0.01 });
  const p = await scoreImageFeatures(peaked, { temperature: 0.01, engine: 'onnx' });
  compareScores(p, ref, peaked, 100, 'peaked');
  assert.deepEqual([...p.predicted], [0, 1, 2, 3, 4, 5, 6, 7]);
});

test('scoreImageFeatures: graph by default, TS on request, TS fallback when onnxruntime fails', async () => {
  const input = randomInput(1, 40, 9, 32);
  const ref = scoreFeatures(input);
  const auto = await scoreImageFeatures(input);
  assert.equal(auto.engine, 'onnx');
  assert.equal(auto.fallbackReason, undefined);
  const ts = await scoreImageFeatures(input, { engine: 'ts' });
  assert.equal(ts.engine, 'ts');
  assert.deepEqual({ ...ts, engine: undefined }, { ...ref, engine: undefined });
  // A backend whose only provider cannot exist on this platform: the graph path fails.
  const broken = new OrtBackend({ executionProviders: ['dml'] });
  const fb = await scoreImageFeatures(input, { backend: broken });
  assert.equal(fb.engine, 'ts');
  assert.match(fb.fallbackReason!, /no execution provider could run it/);
  assert.deepEqual(fb.msp, ref.msp);
  await assert.rejects(scoreImageFeatures(input, { backend: broken, engine: 'onnx' }), /no execution provider/);
  await broken.dispose();
  // A caller's backend is used (and its sessions released with it).
  const own = new OrtBackend({ executionProviders: ['cpu'] });
  const mine = await scoreImageFeatures(input, { backend: own });
  assert.equal(mine.engine, 'onnx');
  assert.deepEqual(mine.msp, auto.msp);
  await own.dispose();
  await assert.rejects(scoreFeaturesGraph(input, { backend: own }), /disposed/);
});

test('invalid inputs throw ScoresError on every path (no fallback hides them)', async () => {
  const input = randomInput(2, 4, 3, 8);
  const bad: Array<[Partial<FeatureInput>, GraphScoreOptions, RegExp]> = [
    [{ image: new Float32Array(4 * 8).fill(1) }, {}, /L2 norm/],
    [{ textNo: new Float32Array(5) }, {}, /no text features: expected 3 x 8/],
    [{ classes: 0, textYes: new Float32Array(0), textNo: new Float32Array(0) }, {}, /at least one ID class/],
    [{}, { temperature: 0 }, /must be positive/],
  ];
  for (const [patch, o, re] of bad) {
    for (const engine of ['auto', 'onnx', 'ts'] as const) {
      await assert.rejects(scoreImageFeatures({ ...input, ...patch }, { ...o, engine }), (e: Error) => e instanceof ScoresError && re.test(e.message));
    }
  }
  const empty = await scoreImageFeatures({ ...input, n: 0, image: new Float32Array(0) });
  assert.equal(empty.ctw.length, 0);
});
