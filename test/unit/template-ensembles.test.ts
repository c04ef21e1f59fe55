// Subset features of a hand-written template pool (template-ensembles.ts): bit for bit
// ensembleByClass's, whether a row is summed in order, continued from a running sum, or formed as
// the whole pool's sum minus the missing templates; and the rounding margin that decides the
// last is an upper bound on how far it can drift from the in-order sum.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { roundingMargin, TemplateEnsembles } from '../../extension/engine/analysis/template-ensembles';
import { ensembleByClass } from '../../extension/engine/prompts';
import { gaussian, uniform } from '../../extension/engine/random';

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/**
 * [c][t][d] features like a real pool's: each class's templates share a direction (cosines
 * ~0.8, so a whole-pool sum is large and a leave-one-out barely moves it), with some rows of
 * other scales.
 */
function poolFeatures(c: number, t: number, d: number, seed: number): Float32Array {
  const next = gaussian(seed);
  const out = new Float32Array(c * t * d);
  for (let k = 0; k < c; k++) {
    const shared = Array.from({ length: d }, () => next());
    for (let q = 0; q < t; q++) {
      const scale = q % 7 === 3 ? 1e-3 : q % 11 === 5 ? 40 : 1;
      for (let j = 0; j < d; j++) out[(k * t + q) * d + j] = scale * (2 * shared[j] + next());
    }
  }
  return out;
}

const all = (t: number) => Array.from({ length: t }, (_, i) => i);
const without = (t: number, ...gone: number[]) => all(t).filter((i) => !gone.includes(i));

function subsetsFor(t: number): number[][] {
  const pick = uniform(t);
  const out: number[][] = [all(t), ...all(t).map((i) => [i]), ...all(t).map((i) => without(t, i))];
  for (let i = 0; i + 1 < t; i += 3) out.push(without(t, i, i + 1), [i, i + 1]);
  for (let i = 0; i + 2 < t; i += 5) out.push(without(t, i, t - 1, Math.floor(t / 2)));
  for (let n = 0; n < 12; n++) out.push(all(t).filter(() => pick() < 0.7));
  return out.filter((s) => s.length > 0);
}

describe('template pool ensembles', () => {
  test('every subset equals ensembleByClass bit for bit (pools of 1, 2, 5, 40 and 128 templates)', () => {
    for (const [c, t, d] of [[3, 1, 16], [4, 2, 16], [5, 5, 24], [6, 40, 32], [8, 128, 64]]) {
      const raw = poolFeatures(c, t, d, 100 + t);
      const ensembles = new TemplateEnsembles(raw, c, t, d);
      const subsets = subsetsFor(t);
      for (const s of subsets) {
        const want = ensembleByClass(raw, d, c, t, s).data;
        assert.ok(bits(ensembles.features(s)).equals(bits(want)), `t ${t}, subset [${s.join(',')}]`);
      }
      // The whole-pool shortcut served most rows of the large pools (fallbacks are rare).
      if (t >= 40) assert.ok(ensembles.fallbacks < 0.05 * c * t, `t ${t}: ${ensembles.fallbacks} fallbacks`);
    }
  });

  test('subsets out of pool order are summed in their own order, as ensembleByClass does', () => {
    const [c, t, d] = [4, 9, 16];
    const raw = poolFeatures(c, t, d, 5);
    const ensembles = new TemplateEnsembles(raw, c, t, d);
    for (const s of [[3, 1, 2], [8, 7, 6, 5, 4, 3, 2, 1], [0, 2, 1, 3, 4, 5, 6, 7], [4, 4, 5]]) {
      assert.ok(bits(ensembles.features(s)).equals(bits(ensembleByClass(raw, d, c, t, s).data)), `[${s.join(',')}]`);
    }
  });

  test('with the margin inflated every shortcut row falls back, and the bits still match', () => {
    const [c, t, d] = [5, 30, 32];
    const raw = poolFeatures(c, t, d, 9);
    const ensembles = new TemplateEnsembles(raw, c, t, d, 1e9);
    const loo = all(t).map((i) => without(t, i));
    for (const s of loo) assert.ok(bits(ensembles.features(s)).equals(bits(ensembleByClass(raw, d, c, t, s).data)));
    // Leaving out one of the last two templates continues the running sums instead (as cheap).
    assert.equal(ensembles.fallbacks, c * (t - 2));
  });

  test('the rounding margin bounds the float64 drift of whole-pool-minus-missing from the in-order sum', () => {
    const [c, t, d] = [12, 128, 64];
    const raw = poolFeatures(c, t, d, 77);
    let drifted = 0;
    let worst = 0;
    for (let k = 0; k < c; k++) {
      const unit = all(t).map((q) => {
        const row = raw.subarray((k * t + q) * d, (k * t + q + 1) * d);
        let norm = 0;
        for (let j = 0; j < d; j++) norm += row[j] * row[j];
        return Float64Array.from(row, (v) => v * (1 / Math.sqrt(norm)));
      });
      const absSum = new Float64Array(d);
      unit.forEach((u) => u.forEach((v, j) => (absSum[j] += Math.abs(v))));
      const absNorm = Math.sqrt(absSum.reduce((s, v) => s + v * v, 0));
      const total = new Float64Array(d);
      unit.forEach((u) => u.forEach((v, j) => (total[j] += v)));
      for (const gone of [[0], [17], [t - 2], [3, 90], [1, 50, 100]]) {
        const seq = new Float64Array(d);
        for (let q = 0; q < t; q++) if (!gone.includes(q)) unit[q].forEach((v, j) => (seq[j] += v));
        const alt = Float64Array.from(total);
        for (const q of gone) unit[q].forEach((v, j) => (alt[j] -= v));
        const invSeq = 1 / Math.sqrt(seq.reduce((s, v) => s + v * v, 0));
        const invAlt = 1 / Math.sqrt(alt.reduce((s, v) => s + v * v, 0));
        for (let j = 0; j < d; j++) {
          const [x, y] = [seq[j] * invSeq, alt[j] * invAlt];
          const margin = roundingMargin(t, gone.length, d, absSum[j], absNorm, invAlt, y);
          if (x !== y) drifted++;
          worst = Math.max(worst, Math.abs(x - y) / margin);
          assert.ok(Math.abs(x - y) <= margin, `class ${k}, missing [${gone.join(',')}], element ${j}: drift ${Math.abs(x - y)} > margin ${margin}`);
        }
      }
    }
    // The two sums do differ in float64 (else this checks nothing), by well under the margin: it
    // is a worst case, and the largest drift seen here is ~0.4% of it (deterministic: seeded data,
    // IEEE float64). Requiring 50x room also fails a margin that lost its factor of t (0.038 when
    // checked by editing it), not only one the drift exceeds.
    assert.ok(drifted > 100, `${drifted} elements drifted`);
    assert.ok(worst < 0.02, `largest drift / margin ${worst}`);
  });

  test('a feature count that does not match c x t x d is an error naming the shape', () => {
    assert.throws(() => new TemplateEnsembles(new Float32Array(10), 2, 3, 4), /10 values are not 2 classes x 3 templates x 4/);
  });
});
