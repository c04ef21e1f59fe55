// UMAP's fuzzy simplicial set from a kNN graph, with umap-js 1.4's maths (smoothKNNDistance,
// computeMembershipStrengths, fuzzySimplicialSet, makeEpochsPerSample) on typed arrays: umap-js
// keeps the graph in a Map keyed by "row:col" strings and spent 7.5 s of its fit on 10,000
// points building it; this is CSR throughout.
//
// The kNN rows are umap-js's layout: k entries per point, the point itself included (at
// distance 0), ascending distances.

/** umap-js / umap-learn constants. */
const SMOOTH_K_TOLERANCE = 1e-5;
const MIN_K_DIST_SCALE = 1e-3;
const SMOOTH_K_ITERATIONS = 64;

export interface SmoothKnn {
  sigmas: Float64Array;
  rhos: Float64Array;
}

/** A symmetric sparse matrix in CSR form, zero entries dropped, columns ascending per row. */
export interface CsrGraph {
  n: number;
  rowPtr: Int32Array;
  cols: Int32Array;
  vals: Float64Array;
}

/**
 * Per point: rho, the distance to the nearest neighbour at distance > 0 (interpolated for
 * fractional local connectivity), and sigma, found by binary search so that
 * sum_j exp(-(d_j - rho) / sigma) over the neighbours after the first equals log2(k).
 */
export function smoothKnnDistances(distances: Float32Array, n: number, k: number, localConnectivity = 1): SmoothKnn {
  const target = Math.log(k) / Math.log(2);
  const rhos = new Float64Array(n);
  const sigmas = new Float64Array(n);
  let meanOfMeans = -1; // computed on first need, as umap-js computes it per such row
  const rowMean = (i: number) => {
    let s = 0;
    for (let j = i * k, e = j + k; j < e; j++) s += distances[j];
    return s / k;
  };
  const index = Math.floor(localConnectivity);
  const interpolation = localConnectivity - index;
  for (let i = 0; i < n; i++) {
    const row = i * k;
    // Non-zero distances in row order (ascending, so the first `index` of them are the smallest).
    let nonZero = 0;
    let first = -1;
    let maxNonZero = 0;
    let atIndexMinus1 = 0;
    let atIndex = 0;
    for (let j = 0; j < k; j++) {
      const dj = distances[row + j];
      if (dj > 0) {
        if (first < 0) first = dj;
        if (nonZero === index - 1) atIndexMinus1 = dj;
        if (nonZero === index) atIndex = dj;
        if (dj > maxNonZero) maxNonZero = dj;
        nonZero++;
      }
    }
    let rho = 0;
    if (nonZero >= localConnectivity) {
      if (index > 0) {
        rho = atIndexMinus1;
        if (interpolation > SMOOTH_K_TOLERANCE) rho += interpolation * (atIndex - atIndexMinus1);
      } else {
        rho = interpolation * first;
      }
    } else if (nonZero > 0) {
      rho = maxNonZero;
    }
    rhos[i] = rho;
    let lo = 0;
    let hi = Infinity;
    let mid = 1;
    for (let it = 0; it < SMOOTH_K_ITERATIONS; it++) {
      let psum = 0;
      for (let j = 1; j < k; j++) {
        const dd = distances[row + j] - rho;
        psum += dd > 0 ? Math.exp(-(dd / mid)) : 1;
      }
      if (Math.abs(psum - target) < SMOOTH_K_TOLERANCE) break;
      if (psum > target) {
        hi = mid;
        mid = (lo + hi) / 2;
      } else {
        lo = mid;
        mid = hi === Infinity ? mid * 2 : (lo + hi) / 2;
      }
    }
    let sigma = mid;
    if (rho > 0) {
      const floor = MIN_K_DIST_SCALE * rowMean(i);
      if (sigma < floor) sigma = floor;
    } else {
      if (meanOfMeans < 0) {
        let s = 0;
        for (let r = 0; r < n; r++) s += rowMean(r);
        meanOfMeans = s / n;
      }
      if (sigma < MIN_K_DIST_SCALE * meanOfMeans) sigma = MIN_K_DIST_SCALE * meanOfMeans;
    }
    sigmas[i] = sigma;
  }
  return { sigmas, rhos };
}

/** Directed membership strengths, n x k like the kNN: 0 for the point itself. */
export function membershipStrengths(indices: Int32Array, distances: Float32Array, n: number, k: number, s: SmoothKnn): Float64Array {
  const vals = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let j = i * k, e = j + k; j < e; j++) {
      if (indices[j] === i) vals[j] = 0;
      else if (distances[j] - s.rhos[i] <= 0) vals[j] = 1;
      else vals[j] = Math.exp(-((distances[j] - s.rhos[i]) / s.sigmas[i]));
    }
  }
  return vals;
}

/**
 * Fuzzy union of the directed graph A and its transpose: mix (A + A^T - A o A^T) +
 * (1 - mix) A o A^T (umap-js's setOpMixRatio, 1 = union). Returned as symmetric CSR.
 */
export function fuzzyUnion(indices: Int32Array, strengths: Float64Array, n: number, k: number, setOpMixRatio = 1): CsrGraph {
  // Each non-zero a_ij lands in row i (as A) and row j (as A^T): count, then scatter.
  const count = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) {
    for (let j = i * k, e = j + k; j < e; j++) {
      if (strengths[j] === 0) continue;
      count[i + 1]++;
      count[indices[j] + 1]++;
    }
  }
  for (let i = 0; i < n; i++) count[i + 1] += count[i];
  const total = count[n];
  const cols = new Int32Array(total);
  const a = new Float64Array(total); // A's value at (row, col), 0 if this slot came from A^T
  const at = new Float64Array(total); // A^T's value at (row, col)
  const fill = count.slice(0, n);
  for (let i = 0; i < n; i++) {
    for (let j = i * k, e = j + k; j < e; j++) {
      const v = strengths[j];
      if (v === 0) continue;
      const c = indices[j];
      let p = fill[i]++;
      cols[p] = c;
      a[p] = v;
      p = fill[c]++;
      cols[p] = i;
      at[p] = v;
    }
  }
  // Sort each row's slots by column (insertion sort: rows hold ~k to a few k slots), then merge
  // the (at most two) slots of one column.
  const rowPtr = new Int32Array(n + 1);
  const outCols = new Int32Array(total);
  const outVals = new Float64Array(total);
  let out = 0;
  for (let i = 0; i < n; i++) {
    const s = count[i];
    const e = count[i + 1];
    for (let p = s + 1; p < e; p++) {
      const c = cols[p];
      const va = a[p];
      const vt = at[p];
      let q = p;
      while (q > s && cols[q - 1] > c) {
        cols[q] = cols[q - 1];
        a[q] = a[q - 1];
        at[q] = at[q - 1];
        q--;
      }
      cols[q] = c;
      a[q] = va;
      at[q] = vt;
    }
    for (let p = s; p < e; ) {
      const c = cols[p];
      let va = a[p];
      let vt = at[p];
      p++;
      if (p < e && cols[p] === c) {
        va += a[p];
        vt += at[p];
        p++;
      }
      const prod = va * vt;
      const v = setOpMixRatio * (va + vt - prod) + (1 - setOpMixRatio) * prod;
      if (v !== 0) {
        outCols[out] = c;
        outVals[out++] = v;
      }
    }
    rowPtr[i + 1] = out;
  }
  return { n, rowPtr, cols: outCols.slice(0, out), vals: outVals.slice(0, out) };
}

/** The whole graph step: smooth distances, strengths, fuzzy union. */
export function fuzzySimplicialSet(indices: Int32Array, distances: Float32Array, n: number, k: number, opts: { localConnectivity?: number; setOpMixRatio?: number } = {}): CsrGraph {
  const smooth = smoothKnnDistances(distances, n, k, opts.localConnectivity ?? 1);
  return fuzzyUnion(indices, membershipStrengths(indices, distances, n, k, smooth), n, k, opts.setOpMixRatio ?? 1);
}

/** umap-js's default epoch count by dataset size. */
export function defaultEpochs(n: number): number {
  return n <= 2500 ? 500 : n <= 5000 ? 400 : n <= 7500 ? 300 : 200;
}

/** The edges SGD samples: CSR order, weights below max / nEpochs dropped (never sampled). */
export interface LayoutEdges {
  /** The moved point of each edge (the column, as umap-js's head). */
  head: Int32Array;
  /** The other end (the row, as umap-js's tail). */
  tail: Int32Array;
  /** Epochs between two samples of the edge: max weight / weight. */
  epochsPerSample: Float64Array;
}

export function layoutEdges(graph: CsrGraph, nEpochs: number): LayoutEdges {
  let max = 0;
  for (let p = 0; p < graph.vals.length; p++) if (graph.vals[p] > max) max = graph.vals[p];
  const cut = max / nEpochs;
  let m = 0;
  for (let p = 0; p < graph.vals.length; p++) if (graph.vals[p] >= cut) m++;
  const head = new Int32Array(m);
  const tail = new Int32Array(m);
  const weights = new Float64Array(m);
  let e = 0;
  let kept = 0;
  for (let i = 0; i < graph.n; i++) {
    for (let p = graph.rowPtr[i]; p < graph.rowPtr[i + 1]; p++) {
      const w = graph.vals[p];
      if (w < cut) continue;
      head[e] = graph.cols[p];
      tail[e] = i;
      weights[e++] = w;
      if (w > kept) kept = w;
    }
  }
  const epochsPerSample = new Float64Array(m);
  for (let p = 0; p < m; p++) {
    const samples = (weights[p] / kept) * nEpochs;
    epochsPerSample[p] = samples > 0 ? nEpochs / samples : -1;
  }
  return { head, tail, epochsPerSample };
}
