// Seeded randomness: the same seed gives the same numbers on every machine (xorshift32), so
// figures, benchmarks and tests built on random data are reproducible.

/** Uniform numbers in (0, 1). */
export function uniform(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
}

/** Standard normal numbers (Box-Muller, both values of each pair used). */
export function gaussian(seed: number): () => number {
  const u = uniform(seed);
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const v = spare;
      spare = undefined;
      return v;
    }
    const r = Math.sqrt(-2 * Math.log(u()));
    const t = 2 * Math.PI * u();
    spare = r * Math.sin(t);
    return r * Math.cos(t);
  };
}

/** `rows` x `dim` row-major matrix of L2-normalised rows drawn from `next`. */
export function normalisedRows(rows: number, dim: number, next: () => number): Float32Array {
  const a = new Float32Array(rows * dim);
  for (let i = 0; i < rows; i++) {
    let s = 0;
    for (let k = 0; k < dim; k++) {
      const v = next();
      a[i * dim + k] = v;
      s += v * v;
    }
    const inv = 1 / Math.sqrt(s);
    for (let k = 0; k < dim; k++) a[i * dim + k] *= inv;
  }
  return a;
}
