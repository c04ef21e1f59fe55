// PCA, the yes/no text geometry and the image geometry, checked against numpy (float64 on the
// same float32 inputs) and against scores.ts on the same features.
//
// Tolerances: PCA axes 1e-6 (up to sign; our sign rule is checked on its own), explained
// variance ratios 1e-6, coordinates 1e-5 (absolute, coordinates are O(1)); cosines and the
// similarity matrix 1e-6. The solver stops at residuals ~1e-11 of the top eigenvalue and the
// test spectra have relative gaps >= 1e-2, so errors are ~1e-9 and these bounds are loose
// enough to be stable yet far below anything visible. Predictions and CTW decisions must equal
// scoreFeatures' exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { firstComponents, pca, principalAxes, projectRows, PcaError, type Pca } from '../../extension/engine/analysis/pca';
import { GeometryError, imageGeometry, textGeometry } from '../../extension/engine/analysis/geometry';
import { computeLogits, scoreFeatures, ScoresError } from '../../extension/engine/scores';
import type { FeatureMatrix } from '../../extension/engine/prompts';
import { ClipnModel } from '../../extension/engine/encoder';
import { learnedPromptAblation } from '../../extension/engine/prompts';
import { gaussian, normalisedRows } from '../../extension/engine/random';
import { DEFAULT_MODEL_DIR, defaultModelPresent } from './helpers/models';
import { runPythonJson } from './helpers/python';
import { maxAbsDiff } from './helpers/arrays';

const AXIS_TOL = 1e-6;
const RATIO_TOL = 1e-6;
const COORD_TOL = 1e-5;
const COS_TOL = 1e-6;

/** Rows with variances scales[j]^2 along directions mixed by two Householder reflections. */
function structured(n: number, scales: number[], seed: number, offset = 0.3): Float32Array {
  const d = scales.length;
  const g = gaussian(seed);
  const reflectors = [0, 1].map(() => {
    const u = Float64Array.from({ length: d }, g);
    const norm = Math.hypot(...u);
    return u.map((v) => v / norm);
  });
  const x = new Float32Array(n * d);
  const row = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) row[j] = g() * scales[j];
    for (const u of reflectors) {
      const c = 2 * row.reduce((s, v, j) => s + v * u[j], 0);
      for (let j = 0; j < d; j++) row[j] -= c * u[j];
    }
    for (let j = 0; j < d; j++) x[i * d + j] = row[j] + offset * (1 + (j % 3));
  }
  return x;
}

interface PcaRef { axes: number[][]; ratio: number[]; variance: number[]; coords: number[][]; mean: number[]; total: number }

const PCA_PY = `
import json, sys
import numpy as np
out = []
for c in json.load(sys.stdin):
    n, d, k = c['n'], c['d'], c['k']
    X = np.array(c['x'], dtype=np.float64).reshape(n, d)
    Xc = X - X.mean(axis=0)
    _, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    dof = max(n - 1, 1)
    var = np.zeros(k); var[:min(k, len(S))] = (S**2 / dof)[:k]
    total = (Xc**2).sum() / dof
    axes = Vt[:k]
    out.append({'axes': axes.tolist(), 'ratio': (var / total).tolist(), 'variance': var.tolist(),
                'coords': (Xc @ axes.T).tolist(), 'mean': X.mean(axis=0).tolist(), 'total': total})
print(json.dumps(out))
`;

function pcaReference(cases: { x: Float32Array; n: number; d: number; k: number }[]): PcaRef[] {
  return runPythonJson<PcaRef[]>(PCA_PY, cases.map((c) => ({ ...c, x: Array.from(c.x) })));
}

function dotArr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function assertMatchesNumpy(p: Pca, ref: PcaRef, what: string): void {
  assert.ok(maxAbsDiff(p.mean, ref.mean) < 1e-12, `${what}: mean`);
  assert.ok(Math.abs(p.totalVariance - ref.total) <= 1e-12 * ref.total, `${what}: total variance ${p.totalVariance} vs ${ref.total}`);
  for (let c = 0; c < p.k; c++) {
    const sign = Math.sign(dotArr(p.axes[c], ref.axes[c]));
    const flipped = ref.axes[c].map((v) => v * sign);
    assert.ok(maxAbsDiff(p.axes[c], flipped) < AXIS_TOL, `${what}: axis ${c} differs by ${maxAbsDiff(p.axes[c], flipped)}`);
    const coords = Array.from({ length: p.rows }, (_, i) => p.coords[i * p.k + c]);
    const refCoords = ref.coords.map((r) => r[c] * sign);
    assert.ok(maxAbsDiff(coords, refCoords) < COORD_TOL, `${what}: coords ${c} differ by ${maxAbsDiff(coords, refCoords)}`);
    // Our sign rule: the largest-|.| component is positive.
    let big = 0;
    p.axes[c].forEach((v, j) => { if (Math.abs(v) > Math.abs(p.axes[c][big])) big = j; });
    assert.ok(p.axes[c][big] > 0, `${what}: axis ${c} sign`);
  }
  assert.ok(maxAbsDiff(p.explainedVarianceRatio, ref.ratio) < RATIO_TOL, `${what}: ratios ${Array.from(p.explainedVarianceRatio)} vs ${ref.ratio}`);
  p.variance.forEach((v, c) => assert.ok(Math.abs(v - ref.variance[c]) <= 1e-9 * ref.variance[0], `${what}: variance ${c}`));
}

test('pca matches numpy SVD: Krylov path, n < d, small-d dense path, text-like unit rows', () => {
  const decay = (d: number, r: number) => Array.from({ length: d }, (_, j) => 3 * r ** j + 0.05);
  const g = gaussian(11);
  const unit = normalisedRows(600, 96, () => g() + 0.4);
  const cases = [
    { name: 'n 400, d 64', x: structured(400, decay(64, 0.85), 1), n: 400, d: 64, k: 3 },
    { name: 'n 30 < d 200', x: structured(30, decay(200, 0.8), 2), n: 30, d: 200, k: 3 },
    { name: 'd 12 (dense)', x: structured(500, decay(12, 0.7), 3), n: 500, d: 12, k: 3 },
    { name: 'n 1500, d 256', x: structured(1500, decay(256, 0.9), 4), n: 1500, d: 256, k: 2 },
    { name: 'unit rows', x: unit, n: 600, d: 96, k: 3 },
  ];
  const refs = pcaReference(cases);
  cases.forEach((c, i) => assertMatchesNumpy(pca(c.x, c.n, c.d, c.k), refs[i], c.name));
});

test('pca: a repeated top eigenvalue gives an orthonormal basis of its eigenspace', () => {
  // Variance 2*9/7 along e0 and e1 (equal), less along e2 and e3, in 60 dims (Krylov path).
  const d = 60;
  const rows: number[][] = [];
  for (const [axis, a] of [[0, 3], [1, 3], [2, 1], [3, 0.5]] as const) {
    for (const s of [-1, 1]) {
      const r = new Array<number>(d).fill(0);
      r[axis] = s * a;
      rows.push(r);
    }
  }
  const x = Float32Array.from(rows.flat());
  const p = pca(x, rows.length, d, 3);
  const [u, v, w] = p.axes;
  assert.ok(Math.abs(u[0] ** 2 + u[1] ** 2 - 1) < 1e-9 && Math.abs(v[0] ** 2 + v[1] ** 2 - 1) < 1e-9, 'top two axes span e0, e1');
  assert.ok(Math.abs(dotArr(u, v)) < 1e-9);
  assert.ok(Math.abs(w[2] - 1) < 1e-9, `third axis is e2: ${Array.from(w.slice(0, 4))}`);
  const total = (2 * 9 + 2 * 9 + 2 * 1 + 2 * 0.25);
  assert.ok(maxAbsDiff(p.explainedVarianceRatio, [18 / total, 18 / total, 2 / total]) < 1e-12);
});

test('pca: rank-deficient and constant data give zero variance and a completed orthonormal basis', () => {
  const two = Float32Array.from([1, 2, 3, 4, 5, 3, 2, 1, 0, -1]);
  const p = pca(two, 2, 5, 2);
  assert.ok(Math.abs(p.explainedVarianceRatio[0] - 1) < 1e-12 && p.explainedVarianceRatio[1] === 0);
  assert.ok(Math.abs(dotArr(p.axes[0], p.axes[1])) < 1e-12 && Math.abs(dotArr(p.axes[1], p.axes[1]) - 1) < 1e-12);
  // The two points sit symmetrically about the mean on the first axis, at 0 on the second.
  assert.ok(Math.abs(p.coords[0] + p.coords[2]) < 1e-12 && Math.abs(p.coords[1]) < 1e-12 && Math.abs(p.coords[3]) < 1e-12);
  const flat = pca(new Float32Array(4 * 3).fill(0.5), 4, 3, 2);
  assert.deepEqual(Array.from(flat.explainedVarianceRatio), [0, 0]);
  assert.deepEqual(flat.axes.map((a) => Array.from(a)), [[1, 0, 0], [0, 1, 0]]);
  assert.ok(flat.coords.every((c) => c === 0));
  const one = pca(Float32Array.from([1, 2, 3]), 1, 3, 2);
  assert.ok(one.coords.every((c) => c === 0) && one.totalVariance === 0);
});

test('pca is deterministic, principalAxes and projectRows agree with it, bad input is refused', () => {
  const x = structured(200, Array.from({ length: 80 }, (_, j) => 1 / (1 + j)), 9);
  const a = pca(x, 200, 80, 3);
  const b = pca(x, 200, 80, 3);
  assert.deepEqual(a, b);
  const pa = principalAxes(x, 200, 80, 3);
  assert.deepEqual(pa.axes, a.axes);
  assert.deepEqual(projectRows(a, x, 200), a.coords);
  const two = pca(x, 200, 80, 2);
  const cut = firstComponents(a, 2);
  assert.ok(maxAbsDiff(cut.coords, two.coords) < 1e-9 && maxAbsDiff(cut.explainedVarianceRatio, two.explainedVarianceRatio) < 1e-12);
  cut.axes.forEach((v, c) => assert.ok(maxAbsDiff(v, two.axes[c]) < 1e-9));
  assert.throws(() => firstComponents(a, 4), /components must be an integer in 1\.\.3/);
  assert.throws(() => pca(x, 200, 80, 81), PcaError);
  assert.throws(() => pca(x, 200, 80, 0), /components must be an integer in 1\.\.80/);
  assert.throws(() => pca(x, 201, 80, 2), /expected 201 x 80/);
  assert.throws(() => pca(new Float32Array(0), 0, 4), /at least one row/);
  const bad = Float32Array.from(x);
  bad[85] = NaN;
  assert.throws(() => pca(bad, 200, 80, 2), /value 85 \(row 1\) is not finite/);
  assert.throws(() => projectRows(a, x, 3), /rows to project: expected 3 x 80/);
});

// ------------------------------------------------------------------------------------------

function matrix(data: Float32Array, dim: number): FeatureMatrix {
  return { data, dims: [data.length / dim, dim] };
}

/** "No" features at a chosen angle from yes: normalise(alpha * yes + noise). */
function opposite(yes: Float32Array, dim: number, alpha: number, seed: number): Float32Array {
  const g = gaussian(seed);
  const noise = normalisedRows(yes.length / dim, dim, g);
  const raw = yes.map((v, i) => alpha * v + noise[i]);
  return normalisedRows(yes.length / dim, dim, ((i) => () => raw[i++])(0));
}

interface TextRef { pair: number[]; templatePair: number[][]; learnedPair: number[][]; sim: number[][] }

const TEXT_PY = `
import json, sys
import numpy as np
c = json.load(sys.stdin)
C, d = c['C'], c['d']
M = lambda v: np.array(v, dtype=np.float64).reshape(C, d)
def cos(a, b):
    return (a @ b.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))
yes, no = M(c['yes']), M(c['no'])
pair = lambda a, b: np.diag(cos(a, b)).tolist()
print(json.dumps({'pair': pair(yes, no), 'sim': cos(yes, no).tolist(),
  'templatePair': [pair(M(t['yes']), M(t['no'])) for t in c['templates']],
  'learnedPair': [pair(yes, M(l)) for l in c['learned']]}))
`;

test('textGeometry: pair cosines, yes-vs-no matrix and the joint PCA match numpy', () => {
  const C = 7;
  const d = 32;
  const g = gaussian(21);
  const yes = normalisedRows(C, d, () => g() + 0.5);
  const no = opposite(yes, d, -0.6, 22);
  const templates = [0, 1, 2].map((t) => {
    const ty = opposite(yes, d, 3, 30 + t);
    return { yes: matrix(ty, d), no: matrix(opposite(ty, d, -0.2 * t, 40 + t), d) };
  });
  const learned = [0, 1, 2, 3].map((p) => matrix(opposite(yes, d, -0.3 * p, 50 + p), d));
  const geo = textGeometry({ yes: matrix(yes, d), no: matrix(no, d), templates, learnedNo: learned });
  const ref = runPythonJson<TextRef>(TEXT_PY, {
    C, d, yes: Array.from(yes), no: Array.from(no),
    templates: templates.map((t) => ({ yes: Array.from(t.yes.data), no: Array.from(t.no.data) })),
    learned: learned.map((l) => Array.from(l.data)),
  });
  assert.ok(maxAbsDiff(geo.pairCos, ref.pair) < COS_TOL);
  assert.ok(maxAbsDiff(geo.similarity, ref.sim.flat()) < COS_TOL);
  assert.equal(geo.templatePairCos.length, 3);
  geo.templatePairCos.forEach((row, t) => assert.ok(maxAbsDiff(row, ref.templatePair[t]) < COS_TOL, `template ${t}`));
  assert.equal(geo.learnedPairCos.length, 4);
  geo.learnedPairCos.forEach((row, p) => assert.ok(maxAbsDiff(row, ref.learnedPair[p]) < COS_TOL, `learned ${p}`));
  // The diagonal of the matrix is the ensemble pair cosine.
  for (let c = 0; c < C; c++) assert.equal(geo.similarity[c * C + c], geo.pairCos[c]);

  const both = new Float32Array(2 * C * d);
  both.set(yes);
  both.set(no, C * d);
  const [r2, r3] = pcaReference([{ x: both, n: 2 * C, d, k: 2 }, { x: both, n: 2 * C, d, k: 3 }]);
  assertMatchesNumpy(geo.pca2, r2, 'text PCA 2-D');
  assertMatchesNumpy(geo.pca3!, r3, 'text PCA 3-D');
  assert.deepEqual(geo.pairs, Array.from({ length: C }, (_, c) => [c, C + c]));
  // pairs name the rows: the no row of class 3 is the projection of no_3.
  const no3 = projectRows(geo.pca2, no.subarray(3 * d, 4 * d), 1);
  const row = geo.pairs[3][1];
  assert.ok(maxAbsDiff(no3, geo.pca2.coords.subarray(row * 2, row * 2 + 2)) < 1e-12);
});

test('textGeometry on the bundled model: the prompt ablation features plug in and match numpy', { skip: !defaultModelPresent() && 'models/default is not built' }, async () => {
  const model = await ClipnModel.load(DEFAULT_MODEL_DIR, { backend: { executionProviders: ['cpu'] } });
  const ab = await learnedPromptAblation(model, ['cat', 'dog', 'car', 'tree', 'house', 'boat'], { templates: ['a photo of a {}.', 'a sketch of the {}.'] })
    .finally(() => model.dispose());
  const geo = textGeometry({ yes: ab.yes, no: ab.mean, learnedNo: ab.single });
  const [C, d] = ab.yes.dims;
  const ref = runPythonJson<TextRef>(TEXT_PY, {
    C, d, yes: Array.from(ab.yes.data), no: Array.from(ab.mean.data), templates: [], learned: ab.single.map((f) => Array.from(f.data)),
  });
  assert.equal(geo.learnedPairCos.length, model.numPrompts);
  geo.learnedPairCos.forEach((row, p) => assert.ok(maxAbsDiff(row, ref.learnedPair[p]) < COS_TOL, `learned prompt ${p}`));
  assert.ok(maxAbsDiff(geo.similarity, ref.sim.flat()) < COS_TOL);
  const both = new Float32Array(2 * C * d);
  both.set(ab.yes.data);
  both.set(ab.mean.data, C * d);
  const [r3] = pcaReference([{ x: both, n: 2 * C, d, k: 3 }]);
  assertMatchesNumpy(geo.pca3!, r3, 'bundled model text PCA');
});

test('textGeometry: one class works (2 rows, rank 1); errors name the argument', () => {
  const d = 8;
  const g = gaussian(5);
  const yes = normalisedRows(1, d, g);
  const no = opposite(yes, d, -1, 6);
  const geo = textGeometry({ yes: matrix(yes, d), no: matrix(no, d) });
  assert.equal(geo.similarity.length, 1);
  assert.ok(Math.abs(geo.pca2.explainedVarianceRatio[0] - 1) < 1e-12 && geo.pca2.explainedVarianceRatio[1] === 0);
  assert.deepEqual(geo.templatePairCos, []);

  const three = normalisedRows(3, d, g);
  const four = normalisedRows(4, d, g);
  assert.throws(() => textGeometry({ yes: matrix(three, d), no: matrix(four, d) }), (e: Error) => e instanceof GeometryError && /^no: 4 x 8 does not match yes: 3 x 8/.test(e.message));
  assert.throws(() => textGeometry({ yes: { data: new Float32Array(0), dims: [0, d] }, no: matrix(three, d) }), /GeometryError: yes: no classes/);
  assert.throws(() => textGeometry({ yes: matrix(three, d), no: matrix(three, d), templates: [{ yes: matrix(three, d), no: matrix(normalisedRows(3, 4, g), 4) }] }), /GeometryError: templates\[0\]\.no: 3 x 4 does not match/);
  const scaled = three.map((v, i) => (i >= 2 * d ? v * 1.5 : v));
  assert.throws(() => textGeometry({ yes: matrix(three, d), no: matrix(three, d), learnedNo: [matrix(three, d), matrix(scaled, d)] }), /GeometryError: learnedNo\[1\]: row 2 has L2 norm 1\.5/);
  assert.throws(() => textGeometry({ yes: { data: three, dims: [4, d] }, no: matrix(three, d) }), /GeometryError: yes: dims say 4 x 8 = 32 values, data holds 24/);
});

const IMAGE_PY = `
import json, sys
import numpy as np
c = json.load(sys.stdin)
n, C, d = c['n'], c['C'], c['d']
X = np.array(c['image'], dtype=np.float64).reshape(n, d)
Y = np.array(c['yes'], dtype=np.float64).reshape(C, d)
N = np.array(c['no'], dtype=np.float64).reshape(C, d)
p = np.array(c['predicted'])
cy, cn = X @ Y.T, X @ N.T
srt = np.sort(cy, axis=1)
print(json.dumps({'cosYes': cy[np.arange(n), p].tolist(), 'cosNo': cn[np.arange(n), p].tolist(),
  'argmax': cy.argmax(axis=1).tolist(), 'gap': (srt[:, -1] - srt[:, -2]).tolist()}))
`;

test('imageGeometry agrees with scoreFeatures exactly and with numpy cosines, near-ties included', () => {
  const C = 9;
  const d = 32;
  const g = gaussian(77);
  const yes = normalisedRows(C, d, g);
  // Classes 0-2: no features a hair from yes (cos_yes - cos_no ~ 1e-7, inside float32 rounding
  // of the scale-100 logits); class 8 duplicates class 7's yes feature (argmax ties). Every
  // fifth image is pure noise, so CTW calls a fair share OOD.
  const no = opposite(yes, d, 0.3, 78);
  const near = opposite(yes.subarray(0, 3 * d), d, 3e6, 79);
  no.set(near, 0);
  yes.set(yes.subarray(7 * d, 8 * d), 8 * d);
  const n = 600;
  const centres = normalisedRows(n, d, g);
  const image = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const c = i % C;
    const raw = Array.from({ length: d }, (_, j) => (i % 5 === 0 ? 0 : 4) * yes[c * d + j] + 0.3 * centres[i * d + j]);
    image.set(normalisedRows(1, d, ((k) => () => raw[k++])(0)), i * d);
  }
  const input = { image, n, dim: d, textYes: yes, textNo: no, classes: C };
  const geo = imageGeometry(input, { chunkRows: 64 });
  const scored = scoreFeatures(input);
  assert.deepEqual(geo.predicted, scored.predicted);
  assert.deepEqual(geo.ctwIsOod, scored.ctwIsOod);
  assert.ok(geo.predicted.some((p) => p === 7) && !geo.predicted.some((p) => p === 8), 'argmax ties keep the first class');
  const ood = geo.ctwIsOod.reduce((a, b) => a + b, 0);
  assert.ok(ood > 20 && ood < n - 20, `both decisions present: ${ood} OOD`);
  // Near-ties where the float64 cosines and the float32 logits disagree on the side of the line:
  // there the decision must still be the scored one.
  const flips = Array.from(geo.ctwIsOod).filter((o, i) => o !== (geo.cosNo[i] > geo.cosYes[i] ? 1 : 0)).length;
  assert.ok(flips > 10, `near-ties exercised: ${flips}`);

  const ref = runPythonJson<{ cosYes: number[]; cosNo: number[]; argmax: number[]; gap: number[] }>(IMAGE_PY, {
    n, C, d, image: Array.from(image), yes: Array.from(yes), no: Array.from(no), predicted: Array.from(geo.predicted),
  });
  assert.ok(maxAbsDiff(geo.cosYes, ref.cosYes) < COS_TOL && maxAbsDiff(geo.cosNo, ref.cosNo) < COS_TOL);
  ref.argmax.forEach((a, i) => {
    if (ref.gap[i] > 1e-6) assert.equal(geo.predicted[i], a, `image ${i}`);
  });
  // Away from the boundary line the decision is simply cos_no > cos_yes, and the plotted cosine
  // is the one the yes logit was made from.
  const logits = computeLogits(image, n, d, yes, C);
  for (let i = 0; i < n; i++) {
    if (Math.abs(geo.cosNo[i] - geo.cosYes[i]) > 1e-6) assert.equal(geo.ctwIsOod[i], geo.cosNo[i] > geo.cosYes[i] ? 1 : 0);
    assert.equal(Math.fround(100 * geo.cosYes[i]), logits[i * C + geo.predicted[i]]);
  }
});

test('imageGeometry refuses mismatched or non-normalised input with the scoring checks', () => {
  const d = 8;
  const g = gaussian(3);
  const yes = normalisedRows(3, d, g);
  const image = normalisedRows(5, d, g);
  assert.throws(() => imageGeometry({ image, n: 5, dim: d, textYes: yes, textNo: yes.subarray(0, 2 * d), classes: 3 }), (e: Error) => e instanceof ScoresError && /no text features: expected 3 x 8/.test(e.message));
  assert.throws(() => imageGeometry({ image: image.map((v) => v * 2), n: 5, dim: d, textYes: yes, textNo: yes, classes: 3 }), /image feature row 0 has L2 norm 1\.99/);
  assert.throws(() => imageGeometry({ image, n: 5, dim: d, textYes: new Float32Array(0), textNo: new Float32Array(0), classes: 0 }), /at least one ID class/);
});
