// The per-class "no" features of any subset of a hand-written template pool, bit for bit as
// ensembleByClass(features, d, c, t, subset) forms them: each template's unit feature summed in
// float64 in subset order, normalised, rounded to float32.
//
// Two shortcuts keep the bits:
//  - Running sums over pool positions 0..m-1: a subset that starts 0, 1, ..., m-1 continues
//    from sum m with the same additions in the same order.
//  - A subset missing few positions (a leave-one-out) starts from the whole pool's sum and
//    subtracts the missing units. Those are other float64 operations, so their result can differ
//    from the in-order sum in the last float64 bits; it is kept only where a rigorous bound on
//    that difference (after normalising) cannot move any element across a float32 rounding
//    boundary, so both round to the same float32. Otherwise that class is summed in order (3.7% of
//    the class rows of the ablation bench's 128 leave-one-outs: 465 of 12,600).
//
// The bound, per class, with u = 2^-53, t templates, r missing, A_j = sum over all templates of
// |unit_j|: in-order and whole-pool sums are each within t u A_j of the exact sum, the r
// subtractions add r u (|total| + A_j) <= 2 r u A_j, so the two unnormalised sums differ by at most
// delta_j = (2t + 3r + 4) u A_j. Normalising vectors a, a' that differ by delta changes element j
// by at most (delta_j + |delta|) / |a'|; each side's own rounding of the norm, square root,
// reciprocal and product is within (d/2 + 5) u |y_j|. Twice the sum of these is the margin checked.

/** Largest table of running sums kept (bytes). */
const PREFIX_BYTES = 64 * 1024 * 1024;
const U = 2 ** -53;

export class TemplateEnsembles {
  /** Class rows whose whole-pool-minus-missing sum failed the rounding check (summed in order instead). */
  fallbacks = 0;
  /** [c][t][d] unit features, float64. */
  private readonly unit: Float64Array;
  /** [(t + 1)][c][d]: sums over positions 0..m-1 in order; absent when too large. */
  private readonly prefixes?: Float64Array;
  /** [c][d]: per element, the sum over all templates of |unit|; and per class its Euclidean norm. */
  private readonly absSums?: Float64Array;
  private readonly absNorms?: Float64Array;
  private readonly acc: Float64Array;

  /**
   * raw: [c][t][d] features (classPrompts' order). `boundScale` multiplies the rounding check's
   * margin (tests raise it to exercise the fallback; 1 is the proven bound).
   */
  constructor(raw: Float32Array, private readonly c: number, private readonly t: number, private readonly d: number, private readonly boundScale = 1) {
    if (raw.length !== c * t * d) throw new Error(`template ensembles: ${raw.length} values are not ${c} classes x ${t} templates x ${d}`);
    this.acc = new Float64Array(d);
    const unit = (this.unit = new Float64Array(c * t * d));
    for (let r = 0; r < c * t; r++) {
      let norm = 0;
      for (let j = r * d; j < (r + 1) * d; j++) norm += raw[j] * raw[j];
      const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
      for (let j = r * d; j < (r + 1) * d; j++) unit[j] = raw[j] * inv;
    }
    if ((t + 1) * c * d * 8 > PREFIX_BYTES) return;
    const prefixes = (this.prefixes = new Float64Array((t + 1) * c * d));
    for (let m = 1; m <= t; m++) {
      for (let k = 0; k < c; k++) {
        const [to, from, u] = [(m * c + k) * d, ((m - 1) * c + k) * d, (k * t + m - 1) * d];
        for (let j = 0; j < d; j++) prefixes[to + j] = prefixes[from + j] + unit[u + j];
      }
    }
    const absSums = (this.absSums = new Float64Array(c * d));
    const absNorms = (this.absNorms = new Float64Array(c));
    for (let k = 0; k < c; k++) {
      for (let q = 0; q < t; q++) for (let j = 0, b = (k * t + q) * d; j < d; j++) absSums[k * d + j] += Math.abs(unit[b + j]);
      let s = 0;
      for (let j = 0; j < d; j++) s += absSums[k * d + j] ** 2;
      absNorms[k] = Math.sqrt(s);
    }
  }

  /** [c, d] float32: ensembleByClass(raw, d, c, t, subset).data. */
  features(subset: readonly number[]): Float32Array {
    const { c, t, d } = this;
    const out = new Float32Array(c * d);
    let m = 0;
    if (this.prefixes) while (m < subset.length && subset[m] === m) m++;
    const missing = this.prefixes ? missingPositions(subset, t) : undefined;
    const complement = missing !== undefined && missing.length > 0 && missing.length < subset.length - m;
    for (let k = 0; k < c; k++) {
      if (complement && this.fromWholePool(k, missing, out)) continue;
      if (complement) this.fallbacks++;
      this.inOrder(k, subset, m, out);
    }
    return out;
  }

  /** Class k's row summed in subset order (from running sum m where there are running sums). */
  private inOrder(k: number, subset: readonly number[], m: number, out: Float32Array): void {
    const { t, d, unit, prefixes, acc } = this;
    if (prefixes) for (let j = 0, a = (m * this.c + k) * d; j < d; j++) acc[j] = prefixes[a + j];
    else acc.fill(0);
    const d4 = d - (d % 4);
    // Each element's additions in subset order (the bits of ensembleByClass); four elements per
    // step only lets the CPU overlap independent sums (~3x faster than one at a time).
    for (let q = prefixes ? m : 0; q < subset.length; q++) {
      const b = (k * t + subset[q]) * d;
      let j = 0;
      for (; j < d4; j += 4) {
        acc[j] += unit[b + j];
        acc[j + 1] += unit[b + j + 1];
        acc[j + 2] += unit[b + j + 2];
        acc[j + 3] += unit[b + j + 3];
      }
      for (; j < d; j++) acc[j] += unit[b + j];
    }
    let norm = 0;
    for (let j = 0; j < d; j++) norm += acc[j] * acc[j];
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let j = 0; j < d; j++) out[k * d + j] = acc[j] * inv;
  }

  /** Class k's row as the whole pool's sum minus the missing units, if provably the same float32s (see the module comment). */
  private fromWholePool(k: number, missing: readonly number[], out: Float32Array): boolean {
    const { c, t, d, unit, acc } = this;
    const prefixes = this.prefixes!, absSums = this.absSums!;
    for (let j = 0, a = (t * c + k) * d; j < d; j++) acc[j] = prefixes[a + j];
    for (const q of missing) for (let j = 0, b = (k * t + q) * d; j < d; j++) acc[j] -= unit[b + j];
    let norm = 0;
    for (let j = 0; j < d; j++) norm += acc[j] * acc[j];
    const length = Math.sqrt(norm);
    const coef = (2 * t + 3 * missing.length + 4) * U;
    const deltaNorm = coef * this.absNorms![k];
    // Near-zero sums: normalising would amplify the difference without bound.
    if (!(length > 4 * deltaNorm)) return false;
    const inv = 1 / length;
    const scale = 2 * this.boundScale;
    for (let j = 0; j < d; j++) {
      const x = acc[j] * inv;
      const bound = scale * roundingMargin(t, missing.length, d, absSums[k * d + j], this.absNorms![k], inv, x);
      if (Math.fround(x - bound) !== Math.fround(x + bound)) return false;
      out[k * d + j] = x;
    }
    return true;
  }
}

/**
 * The module comment's bound on |in-order element - whole-pool-minus-missing element| (float64,
 * before rounding to float32) for t templates, r missing, dimension d: absSum = A_j, absNorm =
 * |A|, inverseLength = 1 / |a'| and value = the element as computed from a'.
 */
export function roundingMargin(t: number, r: number, d: number, absSum: number, absNorm: number, inverseLength: number, value: number): number {
  const coef = (2 * t + 3 * r + 4) * U;
  return 1.01 * coef * (absSum + absNorm) * inverseLength + 2.02 * (d / 2 + 5) * U * Math.abs(value);
}

/** Positions 0..t-1 absent from a strictly ascending subset; undefined when it is not one. */
function missingPositions(subset: readonly number[], t: number): number[] | undefined {
  const out: number[] = [];
  let next = 0;
  for (const p of subset) {
    if (!Number.isInteger(p) || p < next || p >= t) return undefined;
    while (next < p) out.push(next++);
    next = p + 1;
  }
  while (next < t) out.push(next++);
  return out;
}
