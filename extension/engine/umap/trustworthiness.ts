// Trustworthiness of a low-dimensional layout, as sklearn.manifold.trustworthiness defines it
// (Venna & Kaski 2001; euclidean in both spaces):
//
//   T(k) = 1 - 2 / (n k (2n - 3k - 1)) * sum_i sum_{j in N_k^low(i)} max(0, r(i, j) - k)
//
// where r(i, j) is j's rank (1-based, self excluded) among i's neighbours in the original space
// and N_k^low(i) are i's k nearest neighbours in the layout. Distances are float64 on the
// coordinates as given. Ties in the original space are ranked by index (sklearn's argsort order
// is unspecified there; continuous data has none). O(n^2 d) time: for large n, evaluate on a
// fixed random subset (subsetRows).

export class TrustworthinessError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrustworthinessError';
  }
}

/** Squared euclidean distance of rows i and j of a row-major matrix. */
function sqDist(x: ArrayLike<number>, d: number, i: number, j: number): number {
  let s = 0;
  for (let a = i * d, b = j * d, e = a + d; a < e; a++, b++) {
    const t = x[a] - x[b];
    s += t * t;
  }
  return s;
}

/** Indices of the k nearest rows to row i (self excluded), ties to the lower index. */
function nearest(y: ArrayLike<number>, n: number, d: number, i: number, k: number, idx: Int32Array, dist: Float64Array): void {
  let m = 0;
  for (let j = 0; j < n; j++) {
    if (j === i) continue;
    const v = sqDist(y, d, i, j);
    if (m === k && v >= dist[k - 1]) continue;
    let p = m < k ? m++ : k - 1;
    while (p > 0 && dist[p - 1] > v) {
      dist[p] = dist[p - 1];
      idx[p] = idx[p - 1];
      p--;
    }
    dist[p] = v;
    idx[p] = j;
  }
}

/**
 * sklearn.manifold.trustworthiness(X, Y, n_neighbors=k): X is n x dx, Y is n x dy, both
 * row-major. Requires k < n / 2 (as sklearn does).
 */
export function trustworthiness(x: ArrayLike<number>, dx: number, y: ArrayLike<number>, dy: number, n: number, k = 15): number {
  return trustworthinessOfLayouts(x, dx, [y], dy, n, k)[0];
}

/** trustworthiness() of several layouts of the same points, sharing the O(n^2 dx) part. */
export function trustworthinessOfLayouts(x: ArrayLike<number>, dx: number, layouts: readonly ArrayLike<number>[], dy: number, n: number, k = 15): number[] {
  if (!Number.isInteger(n) || n < 1) throw new TrustworthinessError(`need at least one point (got ${n})`);
  if (x.length !== n * dx) throw new TrustworthinessError(`expected ${n} x ${dx} values, got ${x.length}`);
  for (const y of layouts) {
    if (y.length !== n * dy) throw new TrustworthinessError(`expected ${n} x ${dy} layout values, got ${y.length}`);
  }
  if (!Number.isInteger(k) || k < 1 || k >= n / 2) throw new TrustworthinessError(`k (${k}) must be a positive integer below n / 2 (${n / 2})`);
  const idx = new Int32Array(k);
  const dist = new Float64Array(k);
  const row = new Float64Array(n);
  const penalty = layouts.map(() => 0);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) row[j] = j === i ? Infinity : sqDist(x, dx, i, j);
    layouts.forEach((y, which) => {
      nearest(y, n, dy, i, k, idx, dist);
      for (let q = 0; q < k; q++) {
        const j = idx[q];
        const v = row[j];
        // rank = 1 + points strictly closer + tied points with a lower index
        let rank = 1;
        for (let l = 0; l < n; l++) {
          const w = row[l];
          if (w < v || (w === v && l < j)) rank++;
        }
        if (rank > k) penalty[which] += rank - k;
      }
    });
  }
  return penalty.map((p) => 1 - p * (2 / (n * k * (2 * n - 3 * k - 1))));
}

/** Rows `rows` of an n x d row-major matrix, as a new Float64Array. */
export function subsetRows(x: ArrayLike<number>, d: number, rows: ArrayLike<number>): Float64Array {
  const out = new Float64Array(rows.length * d);
  for (let r = 0; r < rows.length; r++) {
    for (let c = 0, o = rows[r] * d; c < d; c++) out[r * d + c] = x[o + c];
  }
  return out;
}

/** `m` distinct indices in [0, n), ascending, drawn with `random` (partial Fisher-Yates). */
export function randomSubset(n: number, m: number, random: () => number): Int32Array {
  if (m > n) throw new TrustworthinessError(`cannot draw ${m} of ${n} points`);
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = 0; i < m; i++) {
    const j = i + Math.floor(random() * (n - i));
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm.slice(0, m).sort();
}
