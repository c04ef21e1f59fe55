// Metrics must match scikit-learn and the exact FPR95 code of CLIPN, MCM and OpenOOD, since the
// extension's tables are compared against numbers those codebases produced.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nativeKernels } from '../../extension/engine/analysis/native-kernels';
import { ScoreSorter } from '../../extension/engine/analysis/score-sort';
import {
  auroc,
  auprIn,
  auprOut,
  computeMetrics,
  detectionMetrics,
  detectionMetricsOfSorted,
  fpr95FirstAtLeast,
  fpr95Interpolated,
  fpr95Nearest,
  idAccuracy,
  MetricsError,
  rocCurve,
  type ScoreArray,
} from '../../extension/engine/metrics';
import { runPythonJson } from './helpers/python';

const TOL = 1e-9;

/** Deterministic normal samples (Box-Muller over a 32-bit LCG) so failures reproduce. */
function normals(n: number, mean: number, seed: number): number[] {
  let s = seed >>> 0;
  const uni = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(mean + Math.sqrt(-2 * Math.log(uni())) * Math.cos(2 * Math.PI * uni()));
  return out;
}

const range = (n: number, f: (i: number) => number): number[] => Array.from({ length: n }, (_, i) => f(i));

const CASES: Record<string, { id: number[]; ood: number[] }> = {
  random: { id: normals(2000, 1, 1), ood: normals(3000, 0, 2) },
  heavyTies: {
    id: normals(500, 0.6, 3).map((v) => Math.round(v * 10) / 10),
    ood: normals(700, 0.2, 4).map((v) => Math.round(v * 10) / 10),
  },
  constant: { id: range(40, () => 0.5), ood: range(60, () => 0.5) },
  separated: { id: range(100, (i) => 1 + i / 100), ood: range(80, (i) => i / 80) },
  reversed: { id: range(100, (i) => i / 100), ood: range(80, (i) => 1 + i / 80) },
  fewId: { id: normals(5, 1, 5), ood: normals(3000, 0, 6) },
  fewOod: { id: normals(3000, 1, 7), ood: normals(7, 0, 8) },
  oneVsOneAbove: { id: [0.9], ood: [0.1] },
  oneVsOneTied: { id: [0.3], ood: [0.3] },
  oneVsOneBelow: { id: [0.1], ood: [0.9] },
  // 19 of 20 ID scores above a run of OOD-only thresholds: several ROC points have TPR
  // exactly 0.95, exercising the duplicate-x rule of the interpolation.
  exactTpr95: { id: range(20, (i) => i + 1), ood: [1.2, 1.4, 1.6, 1.8, 0.5, 10.5, 1.6] },
  // 50 ID scores: TPR 0.94 and 0.96 are equally far from 0.95 in doubles, and OOD scores
  // sit around them, so MCM's tie-breaking (lowest threshold wins) decides the answer.
  equidistant: { id: range(50, (i) => i), ood: [2.5, 1.5, 0.5, -1, 30.5, 45.5, 2.7, 1.2] },
  // Every score shared by one ID and one OOD sample: sklearn drops all intermediate points.
  diagonal: { id: range(100, (i) => i), ood: range(100, (i) => i) },
  signedZero: { id: [0, -0, 1, -0, 2], ood: [-0, 0, -1, 0.5] },
};

interface Reference {
  auroc: number;
  interp: number;
  clipn: number;
  mcm: number;
  openood: number;
  apIn: number;
  apOut: number;
  fpr: number[];
  tpr: number[];
  thr: number[];
  fprDrop: number[];
  tprDrop: number[];
}

const REFERENCE_PY = `
import json, sys
import numpy as np
from sklearn import metrics
from scipy import interpolate

def mcm_fpr(y_true, y_score, recall_level=0.95):
    # MCM utils/detection_util.py fpr_and_fdr_at_recall, verbatim logic.
    y_true = (y_true == 1.)
    desc = np.argsort(y_score, kind="mergesort")[::-1]
    y_score = y_score[desc]; y_true = y_true[desc]
    distinct = np.where(np.diff(y_score))[0]
    idxs = np.r_[distinct, y_true.size - 1]
    tps = np.cumsum(y_true, dtype=np.float64)[idxs]
    fps = 1 + idxs - tps
    recall = tps / tps[-1]
    last_ind = tps.searchsorted(tps[-1])
    sl = slice(last_ind, None, -1)
    recall, fps = np.r_[recall[sl], 1], np.r_[fps[sl], 0]
    cutoff = np.argmin(np.abs(recall - recall_level))
    return fps[cutoff] / np.sum(np.logical_not(y_true))

out = {}
for name, c in json.load(sys.stdin).items():
    idc = np.array(c["id"], np.float64); oodc = np.array(c["ood"], np.float64)
    conf = np.concatenate([idc, oodc])
    y = np.concatenate([np.ones_like(idc), np.zeros_like(oodc)])
    fpr, tpr, thr = metrics.roc_curve(y, conf, drop_intermediate=False)
    fd, td, _ = metrics.roc_curve(y, conf)
    out[name] = {
        "auroc": metrics.roc_auc_score(y, conf),
        "interp": float(np.interp(0.95, tpr, fpr)),
        "clipn": float(interpolate.interp1d(td, fd)(0.95)),   # CLIPN cal_auc_fpr
        "mcm": float(mcm_fpr(y, conf)),
        "openood": float(fd[np.argmax(td >= 0.95)]),
        "apIn": metrics.average_precision_score(y, conf),
        "apOut": metrics.average_precision_score(1 - y, -conf),
        "fpr": fpr.tolist(), "tpr": tpr.tolist(), "thr": thr[1:].tolist(),
        "fprDrop": fd.tolist(), "tprDrop": td.tolist(),
    }
print(json.dumps(out))
`;

let reference: Record<string, Reference> | undefined;
function ref(): Record<string, Reference> {
  reference ??= runPythonJson<Record<string, Reference>>(REFERENCE_PY, CASES);
  return reference;
}

function close(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= TOL, `${what}: got ${actual}, sklearn ${expected}`);
}

for (const [name, c] of Object.entries(CASES)) {
  test(`metrics match scikit-learn: ${name} (${c.id.length} ID vs ${c.ood.length} OOD)`, () => {
    const r = ref()[name];
    const m = computeMetrics(c.id, c.ood);
    close(m.auroc, r.auroc, 'auroc');
    close(m.fpr95.interpolated, r.interp, 'fpr95 interpolated vs np.interp');
    close(m.fpr95.interpolated, r.clipn, 'fpr95 interpolated vs CLIPN interp1d');
    close(m.fpr95.nearest, r.mcm, 'fpr95 nearest vs MCM');
    close(m.auprIn, r.apIn, 'aupr-in');
    close(m.auprOut, r.apOut, 'aupr-out');
    // The single-metric entry points agree with computeMetrics.
    assert.equal(auroc(c.id, c.ood), m.auroc);
    assert.equal(fpr95Interpolated(c.id, c.ood), m.fpr95.interpolated);
    assert.equal(fpr95Nearest(c.id, c.ood), m.fpr95.nearest);
    assert.equal(auprIn(c.id, c.ood), m.auprIn);
    assert.equal(auprOut(c.id, c.ood), m.auprOut);
    close(fpr95FirstAtLeast(c.id, c.ood), r.openood, 'fpr95 first >= 0.95 vs OpenOOD');

    // ROC points are identical (same double divisions), not merely close.
    const roc = rocCurve(c.id, c.ood);
    assert.deepEqual(Array.from(roc.fpr), r.fpr);
    assert.deepEqual(Array.from(roc.tpr), r.tpr);
    assert.equal(roc.thresholds[0], Infinity);
    assert.deepEqual(Array.from(roc.thresholds.subarray(1)).map((v) => (v === 0 ? 0 : v)), r.thr.map((v) => (v === 0 ? 0 : v)));
    const dropped = rocCurve(c.id, c.ood, { dropIntermediate: true });
    assert.deepEqual(Array.from(dropped.fpr), r.fprDrop);
    assert.deepEqual(Array.from(dropped.tpr), r.tprDrop);
  });
}

test('hand-checked values for the edge cases', () => {
  const constant = computeMetrics(CASES.constant.id, CASES.constant.ood);
  assert.equal(constant.auroc, 0.5);
  assert.equal(constant.fpr95.nearest, 1);
  close(constant.fpr95.interpolated, 0.95, 'constant interpolated');
  close(constant.auprIn, 0.4, 'constant aupr-in');
  const sep = computeMetrics(CASES.separated.id, CASES.separated.ood);
  assert.deepEqual(sep, { auroc: 1, fpr95: { interpolated: 0, nearest: 0 }, auprIn: 1, auprOut: 1 });
  assert.equal(computeMetrics(CASES.reversed.id, CASES.reversed.ood).auroc, 0);
  // The three FPR95 conventions really differ on the diagonal case.
  assert.equal(fpr95Nearest(CASES.diagonal.id, CASES.diagonal.ood), 0.95);
  assert.equal(fpr95FirstAtLeast(CASES.diagonal.id, CASES.diagonal.ood), 1);
  const eq = computeMetrics(CASES.equidistant.id, CASES.equidistant.ood);
  assert.deepEqual(eq.fpr95, { interpolated: 0.5, nearest: 0.75 });
  assert.equal(fpr95FirstAtLeast(CASES.exactTpr95.id, CASES.exactTpr95.ood), 1 / 7);
  assert.equal(fpr95Nearest(CASES.exactTpr95.id, CASES.exactTpr95.ood), 6 / 7);
});

test('float32 inputs give the same result as their float64 values', () => {
  const id = Float32Array.from(CASES.random.id);
  const ood = Float32Array.from(CASES.random.ood);
  assert.deepEqual(computeMetrics(id, ood), computeMetrics(Array.from(id), Array.from(ood)));
});

test('empty or non-finite score sets are rejected with a clear error', () => {
  assert.throws(() => computeMetrics([], [1]), (e: unknown) => e instanceof MetricsError && /ID score set is empty/.test(e.message));
  assert.throws(() => computeMetrics([1], new Float64Array(0)), /OOD score set is empty/);
  assert.throws(() => auroc([1, NaN], [0]), /ID score 1 is not finite/);
  assert.throws(() => auroc([1], [Infinity]), /OOD score 0 is not finite/);
});

test('idAccuracy matches sklearn accuracy_score and validates lengths', () => {
  const pred = Int32Array.from([0, 1, 2, 2, 1, 0, 3]);
  const labels = [0, 1, 1, 2, 1, 3, 3];
  const expected = runPythonJson<number>(
    'import json,sys; from sklearn.metrics import accuracy_score as a; d=json.load(sys.stdin); print(a(d[1], d[0]))',
    [Array.from(pred), labels],
  );
  assert.equal(idAccuracy(pred, labels), expected);
  assert.throws(() => idAccuracy([1], [1, 2]), /1 predictions but 2 labels/);
  assert.throws(() => idAccuracy([], []), /no samples/);
});

const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v));
/** Score sets like the ablation's: probabilities piling up at exactly 1 and near 0, and the big random pair. */
const LEAN_CASES: Record<string, { id: number[]; ood: number[] }> = {
  ...CASES,
  probabilities: { id: normals(3000, 0, 21).map((v) => sigmoid(40 + 30 * v)), ood: normals(1500, 0, 22).map((v) => sigmoid(-5 + 30 * v)) },
  nearOne: { id: normals(700, 0, 23).map((v) => 1 - 1e-9 * Math.abs(v)), ood: normals(300, 0, 24).map((v) => 1 - 1e-9 * Math.abs(v + 1)) },
  largeRandom: { id: normals(7000, 0.5, 25), ood: normals(3000, 0, 26) },
};

/** The sorters to check: the native kernels' where they run (native-kernels.ts), and this module's own. */
const SORTERS = (): Array<[string, ScoreSorter]> => [['', new ScoreSorter(null)], ...(nativeKernels() ? [[' (native)', new ScoreSorter()] as [string, ScoreSorter]] : [])];

test('detectionMetrics and detectionMetricsOfSorted give computeMetrics\' numbers bit for bit', () => {
  for (const [name, c] of Object.entries(LEAN_CASES)) {
    const m = computeMetrics(c.id, c.ood);
    const want = { auroc: m.auroc, fpr95: m.fpr95.interpolated, auprIn: m.auprIn, auprOut: m.auprOut };
    // deepStrictEqual compares numbers with Object.is: every bit, -0 included.
    assert.deepStrictEqual(detectionMetrics(c.id, c.ood), want, name);
    for (const [how, sorter] of SORTERS()) {
      const sorted = detectionMetricsOfSorted(Float64Array.from(sorter.sort(Float64Array.from(c.id), 'ID')), sorter.sort(Float64Array.from(c.ood), 'OOD'));
      assert.deepStrictEqual(sorted, want, `${name}, sorted by ScoreSorter${how}`);
    }
  }
  assert.throws(() => detectionMetrics([], [1]), /ID score set is empty/);
  assert.throws(() => detectionMetricsOfSorted(new Float64Array(1), new Float64Array(0)), /OOD score set is empty/);
});

test('ScoreSorter sorts as Float64Array.prototype.sort does: probabilities, ties, clusters finer than float32, any finite values', () => {
  const next = normals(60_000, 0, 31);
  let at = 0;
  const fill = (n: number, f: (v: number) => number) => Float64Array.from({ length: n }, () => f(next[at++ % next.length]));
  const sets: Record<string, Float64Array> = {
    probabilities: fill(10_000, (v) => sigmoid(20 * v)),
    ties: fill(5000, (v) => Math.round(Math.abs(v) * 4) / 16),
    signedZeros: Float64Array.from([0, -0, 0.5, -0, 1, 0, 1e-300, 1]),
    nearOne: fill(4000, (v) => 1 - 1e-12 * Math.abs(v)),
    // Distinct values float32 cannot tell apart: the insertion pass's budget runs out, the native sort finishes.
    cluster: fill(3000, (v) => 0.3 + 1e-13 * v),
    outsideUnit: fill(3000, (v) => 1e3 * v),
    one: Float64Array.from([0.25]),
  };
  for (const [how, sorter] of SORTERS()) {
    for (const [name, scores] of Object.entries(sets)) {
      const want = Array.from(scores.slice().sort(), (v) => (v === 0 ? 0 : v));
      assert.deepStrictEqual(Array.from(sorter.sort(scores, 'ID')), want, `${name}${how}`);
    }
    // A share of a larger shared buffer, as the scoring workers hand over.
    const shared = new Float64Array(new SharedArrayBuffer(8 * 12)).map((_, i) => ((i * 7) % 12) / 11);
    assert.deepStrictEqual(Array.from(sorter.sort(shared.subarray(2, 10), 'ID')), Array.from(shared.slice(2, 10).sort()), `shared buffer${how}`);
    assert.throws(() => sorter.sort(Float64Array.from([0.1, 0.2, 0.3, NaN]), 'ID'), /ID score 3 is not finite \(NaN\)/);
    assert.throws(() => sorter.sort(Float64Array.from([0.1, -Infinity]), 'OOD'), /OOD score 1 is not finite \(-Infinity\)/);
    assert.throws(() => sorter.sort(new Float64Array(0), 'OOD'), /OOD score set is empty/);
  }
});

test('50,000 ID + 50,000 OOD scores take well under 100 ms', () => {
  const id: ScoreArray = Float64Array.from(normals(50_000, 1, 11));
  const ood: ScoreArray = Float64Array.from(normals(50_000, 0, 12));
  computeMetrics(id, ood); // warm up the JIT
  let best = Infinity;
  for (let k = 0; k < 3; k++) {
    const t0 = process.hrtime.bigint();
    computeMetrics(id, ood);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
  }
  assert.ok(best < 100, `computeMetrics took ${best.toFixed(1)} ms`);
  console.log(`# computeMetrics on 100k scores: ${best.toFixed(1)} ms (best of 3)`);
});
