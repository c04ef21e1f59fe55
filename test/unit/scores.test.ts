// Every score and decision is compared with a float64 numpy implementation of the spec's
// formulas, run at test time on the same float32 features.
//
// Tolerance: 1e-5 relative (+1e-12 absolute) when scores come from float32 features through the
// TS matmul. The logits are stored as float32 (the numpy reference keeps them in float64), so
// each carries up to ~half an ulp of a value below 64, i.e. <= 4e-6 absolute, and that error
// enters the exponentials directly as a relative error. Scores computed from float64 logits
// supplied by numpy must agree to 1e-12 relative.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  computeLogits,
  matmulTransposed,
  scoreFeatures,
  scoreFromLogits,
  ScoresError,
  type ImageScores,
  type MatmulFn,
} from '../../extension/engine/scores';
import { runPythonJson } from './helpers/python';

interface Config { seed: number; n: number; dim: number; classes: number }

interface Baselines { msp: number[]; maxLogit: number[]; energy: number[] }

interface Reference {
  image: number[];
  textYes: number[];
  textNo: number[];
  logits: number[];
  logitsNo: number[];
  predicted: number[];
  top2Gap: number[];
  ctw: number[];
  ctwIsOod: number[];
  ctwMargin: number[];
  atd: number[];
  atdIsOod: number[];
  atdMargin: number[];
  atdScale: number[];
  pYes: number[];
  t1: Baselines;
  t001: Baselines;
}

const REFERENCE_PY = `
import json, sys
import numpy as np
from scipy.special import logsumexp, softmax

def normalised(rng, rows, dim):
    x = rng.standard_normal((rows, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

out = []
for cfg in json.load(sys.stdin):
    rng = np.random.default_rng(cfg["seed"])
    n, dim, c = cfg["n"], cfg["dim"], cfg["classes"]
    f, g, gno = normalised(rng, n, dim), normalised(rng, c, dim), normalised(rng, c, dim)
    # Mix part of the yes feature into the no feature so p_yes and p_no both win sometimes.
    gno = gno * 0.6 + g * 0.4
    gno = (gno / np.linalg.norm(gno.astype(np.float64), axis=1, keepdims=True)).astype(np.float32)
    F, G, GN = f.astype(np.float64), g.astype(np.float64), gno.astype(np.float64)
    cos, cos_no = F @ G.T, F @ GN.T
    L, LN = 100 * cos, 100 * cos_no                      # spec: logits at scale 100
    p = softmax(L, axis=1)
    pyes = 1 / (1 + np.exp(-(L - LN)))                   # softmax([l, l_no])[0]
    pred = L.argmax(1)
    rows = np.arange(n)
    ctw = pyes[rows, pred]
    atd = (pyes * p).sum(1)
    pood = 1 - atd
    srt = np.sort(L, axis=1)
    gap = srt[:, -1] - srt[:, -2] if c > 1 else np.full(n, np.inf)
    def baselines(T):
        u = cos / T
        return {"msp": softmax(u, axis=1).max(1).tolist(), "maxLogit": u.max(1).tolist(),
                "energy": logsumexp(u, axis=1).tolist()}
    out.append({
        "image": f.ravel().tolist(), "textYes": g.ravel().tolist(), "textNo": gno.ravel().tolist(),
        "logits": L.ravel().tolist(), "logitsNo": LN.ravel().tolist(),
        "predicted": pred.tolist(), "top2Gap": [min(v, 1e300) for v in gap.tolist()],
        "ctw": ctw.tolist(), "ctwIsOod": ((1 - ctw) > ctw).astype(int).tolist(),
        "ctwMargin": np.abs(L - LN)[rows, pred].tolist(),
        "atd": atd.tolist(), "atdIsOod": (pood > p.max(1)).astype(int).tolist(),
        "atdMargin": np.abs(pood - p.max(1)).tolist(),
        # How far rounding of atd and p_max can move p_ood - p_max (used to skip near-ties).
        "atdScale": (atd + p.max(1) * (1 - p.max(1))).tolist(),
        "pYes": pyes.ravel().tolist(),
        "t1": baselines(1.0), "t001": baselines(0.01),
    })
print(json.dumps(out))
`;

const CONFIGS: Config[] = [
  { seed: 1, n: 64, dim: 32, classes: 10 },
  { seed: 2, n: 51, dim: 24, classes: 37 }, // ragged: neither count is a multiple of 4
  { seed: 3, n: 9, dim: 16, classes: 1 }, // degenerate single ID class
];

let cached: Reference[] | undefined;
const reference = (): Reference[] => (cached ??= runPythonJson<Reference[]>(REFERENCE_PY, CONFIGS));

function assertClose(actual: ArrayLike<number>, expected: number[], rel: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const tol = rel * Math.abs(expected[i]) + 1e-12;
    assert.ok(Math.abs(actual[i] - expected[i]) <= tol, `${what}[${i}]: got ${actual[i]}, numpy ${expected[i]}`);
  }
}

/** Decisions are compared where the reference is not within rounding of its boundary. */
function assertDecisions(
  actual: ArrayLike<number>, expected: number[], margin: number[], min: (i: number) => number, what: string,
): void {
  let compared = 0;
  for (let i = 0; i < expected.length; i++) {
    if (margin[i] <= min(i)) continue;
    compared++;
    assert.equal(actual[i], expected[i], `${what}[${i}] (margin ${margin[i]})`);
  }
  assert.ok(compared >= expected.length - 1, `${what}: too many samples at the decision boundary`);
}

function checkAgainst(s: ImageScores, r: Reference, rel: number, baselines: Baselines, label: string): void {
  assertClose(s.ctw, r.ctw, rel, `${label} ctw`);
  assertClose(s.atd, r.atd, rel, `${label} atd`);
  assertClose(s.msp, baselines.msp, rel, `${label} msp`);
  assertClose(s.maxLogit, baselines.maxLogit, rel, `${label} maxLogit`);
  assertClose(s.energy, baselines.energy, rel, `${label} energy`);
  // Logit errors are ~1e-5 absolute for float32 logits at scale 100 and ~1e-13 for float64.
  const logitTol = rel > 1e-9 ? 1e-3 : 1e-10;
  assertDecisions(s.predicted, r.predicted, r.top2Gap, () => logitTol, `${label} predicted`);
  assertDecisions(s.ctwIsOod, r.ctwIsOod, r.ctwMargin, () => logitTol, `${label} ctwIsOod`);
  assertDecisions(s.atdIsOod, r.atdIsOod, r.atdMargin, (i) => 4 * rel * r.atdScale[i] + 1e-15, `${label} atdIsOod`);
}

CONFIGS.forEach((cfg, k) => {
  const name = `${cfg.n} images x ${cfg.classes} classes x ${cfg.dim} dims`;

  test(`scoreFeatures matches numpy (${name}), float32 features, rel tol 1e-5`, () => {
    const r = reference()[k];
    const input = {
      image: Float32Array.from(r.image), n: cfg.n, dim: cfg.dim,
      textYes: Float32Array.from(r.textYes), textNo: Float32Array.from(r.textNo), classes: cfg.classes,
    };
    const mcm = scoreFeatures(input, { keepPYes: true });
    checkAgainst(mcm, r, 1e-5, r.t1, 'T=1');
    assertClose(mcm.pYes as Float32Array, r.pYes, 1e-5, 'pYes');
    const clipn = scoreFeatures(input, { temperature: 0.01, chunkRows: 7 });
    checkAgainst(clipn, r, 1e-5, r.t001, 'T=0.01');
    // Chunking only changes the memory footprint, never a value.
    assert.deepEqual(scoreFeatures(input, { chunkRows: 5, keepPYes: true }), mcm);
    if (cfg.classes > 1) {
      assert.ok(r.ctwIsOod.includes(0) && r.ctwIsOod.includes(1), 'CTW decisions should be mixed');
      assert.ok(r.atdIsOod.includes(0) && r.atdIsOod.includes(1), 'ATD decisions should be mixed');
      assert.deepEqual(mcm.degenerate, {});
    }
  });

  test(`scoreFromLogits on numpy's float64 logits matches to 1e-12 (${name})`, () => {
    const r = reference()[k];
    const s = scoreFromLogits(Float64Array.from(r.logits), Float64Array.from(r.logitsNo), cfg.n, cfg.classes, { keepPYes: true });
    checkAgainst(s, r, 1e-12, r.t1, 'T=1');
    assert.deepEqual(Array.from(s.predicted), r.predicted);
    assert.deepEqual(Array.from(s.ctwIsOod), r.ctwIsOod);
    assert.deepEqual(Array.from(s.atdIsOod), r.atdIsOod);
    assertClose(scoreFromLogits(Float64Array.from(r.logits), Float64Array.from(r.logitsNo), cfg.n, cfg.classes, { temperature: 0.01 }).energy, r.t001.energy, 1e-12, 'energy T=0.01');
  });
});

test('the single-class case is flagged degenerate, with scores still returned', () => {
  const r = reference()[2];
  const s = scoreFromLogits(Float64Array.from(r.logits), Float64Array.from(r.logitsNo), 9, 1);
  assert.match(s.degenerate.atd ?? '', /one ID class/);
  assert.match(s.degenerate.msp ?? '', /always 1/);
  assert.deepEqual(Array.from(s.atd), Array.from(s.ctw)); // ATD collapses to CTW
  assert.deepEqual(Array.from(s.atdIsOod), new Array(9).fill(0)); // and never says OOD
  assert.deepEqual(Array.from(s.msp), new Array(9).fill(1));
});

test('hand-worked 2 images x 2 classes', () => {
  const ln3 = Math.log(3);
  // Image 0: p = [3/4, 1/4], p_yes = [3/4, 1/2] -> CTW ID (0.75), ATD 11/16 (p_ood 5/16 < 3/4) ID.
  // Image 1: p = [1/4, 3/4], p_yes = [1/2, 1/4] -> CTW OOD (0.25), ATD 5/16 (p_ood 11/16 < 3/4) ID.
  const s = scoreFromLogits(
    Float64Array.from([ln3, 0, 0, ln3]),
    Float64Array.from([0, 0, 0, 2 * ln3]),
    2, 2, { scale: 1, temperature: 1 },
  );
  assert.deepEqual(Array.from(s.predicted), [0, 1]);
  assertClose(s.ctw, [0.75, 0.25], 1e-15, 'ctw');
  assert.deepEqual(Array.from(s.ctwIsOod), [0, 1]);
  assertClose(s.atd, [11 / 16, 5 / 16], 1e-15, 'atd');
  assert.deepEqual(Array.from(s.atdIsOod), [0, 0]);
  assertClose(s.msp, [0.75, 0.75], 1e-15, 'msp');
  assertClose(s.maxLogit, [ln3, ln3], 1e-15, 'maxLogit');
  assertClose(s.energy, [Math.log(4), Math.log(4)], 1e-15, 'energy');
  assert.deepEqual(s.degenerate, {});

  // Image 0: tied logits, p = [1/2, 1/2], p_yes = [1/4, 1/4]: argmax takes the first class,
  // CTW OOD (0.25), ATD 1/4 so p_ood = 3/4 > 1/2: OOD.
  // Image 1: p = [3/4, 1/4], p_yes = [1/4, 3/4]: CTW OOD, ATD 3/16 + 3/16 = 3/8, p_ood 5/8 < 3/4: ID.
  const t = scoreFromLogits(
    Float64Array.from([0, 0, ln3, 0]),
    Float64Array.from([ln3, ln3, 2 * ln3, -ln3]),
    2, 2, { scale: 1, temperature: 0.5 },
  );
  assert.deepEqual(Array.from(t.predicted), [0, 0]);
  assertClose(t.ctw, [0.25, 0.25], 1e-15, 'ctw');
  assert.deepEqual(Array.from(t.ctwIsOod), [1, 1]);
  assertClose(t.atd, [0.25, 3 / 8], 1e-15, 'atd');
  assert.deepEqual(Array.from(t.atdIsOod), [1, 0]);
  // Baselines at T = 0.5 see doubled logits: softmax([2 ln 3, 0]) = [9/10, 1/10].
  assertClose(t.msp, [0.5, 0.9], 1e-15, 'msp');
  assertClose(t.maxLogit, [0, 2 * ln3], 1e-15, 'maxLogit');
  assertClose(t.energy, [Math.log(2), Math.log(10)], 1e-15, 'energy');
});

test('extreme logits give the limiting probabilities, never NaN or Infinity', () => {
  // d = +1600 and -900: exp(-d) underflows to 0 or overflows to Infinity inside the sigmoid.
  const s = scoreFromLogits(Float64Array.from([800, 0]), Float64Array.from([-800, 900]), 1, 2, { keepPYes: true });
  assert.deepEqual(Array.from(s.pYes as Float32Array), [1, 0]);
  assert.equal(s.ctw[0], 1);
  assert.equal(s.atd[0], 1);
  // T = 1 acts on cosines (logits / 100): logsumexp([8, 0]) = 8 + log1p(e^-8).
  assert.ok(Math.abs(s.energy[0] - (8 + Math.log1p(Math.exp(-8)))) < 1e-14);
  for (const v of [s.msp[0], s.maxLogit[0], s.energy[0]]) assert.ok(Number.isFinite(v));
  const t = scoreFromLogits(Float64Array.from([800, 0]), Float64Array.from([-800, 900]), 1, 2, { temperature: 0.01 });
  assert.equal(t.energy[0], 800);
  assert.equal(t.msp[0], 1);
});

test('the matmul is pluggable and the TS kernel matches a float64 product', () => {
  const rows = 7, cols = 9, dim = 13; // ragged in every direction
  const a = Float32Array.from({ length: rows * dim }, (_, i) => Math.sin(i * 1.3));
  const b = Float32Array.from({ length: cols * dim }, (_, i) => Math.cos(i * 0.7));
  const got = computeLogits(a, rows, dim, b, cols, 2.5);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let k = 0; k < dim; k++) s += a[i * dim + k] * b[j * dim + k];
      assert.equal(got[i * cols + j], Math.fround(2.5 * s));
    }
  }
  const r = reference()[0];
  let calls = 0;
  const counting: MatmulFn = (...args) => {
    calls++;
    matmulTransposed(...args);
  };
  const input = {
    image: Float32Array.from(r.image), n: 64, dim: 32,
    textYes: Float32Array.from(r.textYes), textNo: Float32Array.from(r.textNo), classes: 10,
  };
  assert.deepEqual(scoreFeatures(input, { matmul: counting, chunkRows: 32 }), scoreFeatures(input));
  assert.equal(calls, 4); // two chunks x (yes, no)
});

test('bad inputs are rejected with clear errors', () => {
  const f = Float32Array.from([1, 0, 0, 1]);
  assert.throws(() => scoreFromLogits(new Float32Array(6), new Float32Array(6), 2, 2), /expected 2 x 2 = 4 logits, got 6/);
  assert.throws(() => scoreFromLogits(new Float32Array(0), new Float32Array(0), 0, 0), /at least one ID class/);
  assert.throws(() => scoreFromLogits(new Float32Array(2), new Float32Array(2), 1, 2, { temperature: 0 }), ScoresError);
  assert.throws(
    () => scoreFeatures({ image: Float32Array.from([3, 0]), n: 1, dim: 2, textYes: f, textNo: f, classes: 2 }),
    /image feature row 0 has L2 norm 3/,
  );
  assert.throws(
    () => scoreFeatures({ image: f, n: 2, dim: 2, textYes: f, textNo: new Float32Array(3), classes: 2 }),
    /no text features: expected 2 x 2, got 3/,
  );
  assert.equal(scoreFromLogits(new Float32Array(0), new Float32Array(0), 0, 3).ctw.length, 0);
});
