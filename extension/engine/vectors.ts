// Small vector helpers shared by the engine, its tests and the benchmarks.

/** Cosine similarity of each row pair of two row-major [n, d] matrices. */
export function rowCosines(a: ArrayLike<number>, b: ArrayLike<number>, d: number): number[] {
  if (a.length !== b.length || a.length % d !== 0) {
    throw new Error(`rowCosines: matrices of ${a.length} and ${b.length} values do not both split into rows of ${d}`);
  }
  const out: number[] = [];
  for (let r = 0; r < a.length / d; r++) {
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (let j = r * d; j < (r + 1) * d; j++) {
      dot += a[j] * b[j];
      na += a[j] * a[j];
      nb += b[j] * b[j];
    }
    out.push(dot / Math.sqrt(na * nb));
  }
  return out;
}

/** The smallest row cosine (1 for empty input). */
export function minRowCosine(a: ArrayLike<number>, b: ArrayLike<number>, d: number): number {
  return rowCosines(a, b, d).reduce((m, c) => Math.min(m, c), 1);
}
