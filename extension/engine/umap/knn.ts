// Exact cosine k-nearest neighbours for UMAP, replacing umap-js's NN-descent (an approximate
// search that took 18 s of its 42 s fit on 10,000 x 512 here). All n x n similarities of the
// L2-normalised rows come from one onnxruntime graph, a matrix product (Gemm) + TopK, run on
// query chunks of `chunkRows` rows against all n, so memory stays at chunkRows x n floats.
//
// The GEMM accumulates in float32 (errors ~1e-7 on cosines), which can swap near-equal
// neighbours. So TopK returns a few more candidates than needed (REFINE_EXTRA) and the final
// k are chosen by exact float64 distances, ordered by (distance, index) with the point itself
// first: the result is the brute-force double-precision answer, with a deterministic tie order
// that does not depend on the provider's TopK. (The one exception: more than REFINE_EXTRA
// points tied at the k-th distance, e.g. 9+ copies of one row; which of them make the cut
// then follows the provider's TopK, deterministically for a given provider.)
import { OrtBackend } from '../backend';
import type { GraphSession } from '../backend';
import { DataType, GraphBuilder } from '../onnx-graph';

/** Candidates beyond k re-ranked exactly (float32 GEMM noise only reorders near-ties). */
const REFINE_EXTRA = 8;
/** 1024 query rows x 10,000 points = 40 MB of similarities per run. */
export const DEFAULT_KNN_CHUNK_ROWS = 1024;
/** Row indices travel as float32 in the packed output: exact below 2^24. */
const MAX_ROWS = 1 << 24;

export interface KnnOptions {
  /** onnxruntime execution providers, tried in order (default: the backend's default list). */
  providers?: readonly string[];
  /** A backend to run on instead of one made from `providers`. */
  backend?: OrtBackend;
  chunkRows?: number;
  signal?: AbortSignal;
}

export interface KnnResult {
  /** n x k row-major; row i starts with i itself. */
  indices: Int32Array;
  /** n x k cosine distances 1 - cos, ascending per row; 0 for the point itself. */
  distances: Float32Array;
  k: number;
  /** The execution provider that ran the similarity graph. */
  provider: string;
}

export class KnnError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KnnError';
  }
}

/**
 * Q [N, D] x X [M, D]^T (Gemm, transB: the normalised rows serve as both operands, no
 * transposed copy) -> TopK over M. Values and indices are packed into one float32 output
 * [N, 2K] (backend.ts hands back float32 outputs only) so each chunk is one run.
 */
export function buildKnnGraph(): Uint8Array {
  const g = new GraphBuilder('cosine_knn');
  const sims = g.op1('Gemm', ['queries', 'points'], { transB: 1 });
  const [values, indices] = g.op('TopK', [sims, 'k'], { axis: 1, largest: 1, sorted: 1 }, { outputs: 2 });
  const idx = g.op1('Cast', [indices], { to: DataType.FLOAT });
  g.op1('Concat', [values, idx], { axis: 1 }, 'topk');
  return g.build(
    [
      { name: 'queries', elemType: DataType.FLOAT, shape: ['N', 'D'] },
      { name: 'points', elemType: DataType.FLOAT, shape: ['M', 'D'] },
      { name: 'k', elemType: DataType.INT64, shape: [1] },
    ],
    [{ name: 'topk', elemType: DataType.FLOAT, shape: ['N', 'K2'] }],
  );
}

// One backend per provider list, one session per backend: WebGPU probing alone costs ~0.7 s
// where no adapter exists, so it is paid once per process.
const backends = new Map<string, OrtBackend>();
const sessions = new WeakMap<OrtBackend, Promise<GraphSession>>();

function backendFor(opts: KnnOptions): OrtBackend {
  if (opts.backend) return opts.backend;
  const key = opts.providers ? opts.providers.join(',') : '<default>';
  let b = backends.get(key);
  if (!b) {
    b = new OrtBackend(opts.providers ? { executionProviders: opts.providers } : {});
    backends.set(key, b);
  }
  return b;
}

function knnSession(backend: OrtBackend): Promise<GraphSession> {
  let s = sessions.get(backend);
  if (!s) {
    s = backend.sessionFromBuffer('umap-knn', buildKnnGraph());
    s.catch(() => sessions.delete(backend));
    sessions.set(backend, s);
  }
  return s;
}

/**
 * Dot product of rows i and j in float64, four partial sums (~1.5x faster than one in V8).
 * Squared norms use the same function, so a row and its exact copy give dot === |x|^2.
 */
function dotRows(x: Float32Array, d: number, i: number, j: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let a = i * d;
  let b = j * d;
  const end = a + d;
  for (const e4 = end - 3; a < e4; a += 4, b += 4) {
    s0 += x[a] * x[b];
    s1 += x[a + 1] * x[b + 1];
    s2 += x[a + 2] * x[b + 2];
    s3 += x[a + 3] * x[b + 3];
  }
  for (; a < end; a++, b++) s0 += x[a] * x[b];
  return (s0 + s1) + (s2 + s3);
}

/** Squared norms in float64 (also the exact-distance denominators). */
function squaredNorms(x: Float32Array, n: number, d: number): Float64Array {
  const sq = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const s = dotRows(x, d, i, i);
    if (!Number.isFinite(s)) throw new KnnError(`row ${i} has a non-finite value`);
    sq[i] = s;
  }
  return sq;
}

/** The L2-normalised rows (zero rows stay zero). */
function normalisedRows(x: Float32Array, n: number, d: number, sq: Float64Array): Float32Array {
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const inv = sq[i] > 0 ? 1 / Math.sqrt(sq[i]) : 0;
    for (let o = i * d, e = o + d; o < e; o++) out[o] = x[o] * inv;
  }
  return out;
}

/**
 * 1 - cos in float64, umap-js's `cosine` conventions for zero rows (both zero: 0, one: 1).
 * dot / sqrt(|x|^2 |y|^2) rather than dot / (|x| |y|): for identical rows sqrt(s * s) = s
 * exactly (and a row scaled by a power of two keeps exact products), so duplicates are at
 * distance exactly 0, like the point itself.
 */
export function exactCosineDistance(x: Float32Array, d: number, sq: Float64Array, i: number, j: number): number {
  if (sq[i] === 0 || sq[j] === 0) return sq[i] === 0 && sq[j] === 0 ? 0 : 1;
  const dist = 1 - dotRows(x, d, i, j) / Math.sqrt(sq[i] * sq[j]);
  return dist > 0 ? dist : 0;
}

/**
 * Exact cosine kNN of the n rows of `x` (n x d, row-major), the point itself first.
 * Rows need not be normalised; non-finite values are rejected.
 */
export async function cosineKnn(x: Float32Array, n: number, d: number, k: number, opts: KnnOptions = {}): Promise<KnnResult> {
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(d) || d < 1) throw new KnnError(`need n >= 1 rows of d >= 1 values (got ${n} x ${d})`);
  if (x.length !== n * d) throw new KnnError(`expected ${n} x ${d} = ${n * d} values, got ${x.length}`);
  if (n >= MAX_ROWS) throw new KnnError(`at most ${MAX_ROWS - 1} rows (got ${n})`);
  if (!Number.isInteger(k) || k < 1 || k > n) throw new KnnError(`k must be an integer in [1, ${n}] (got ${k})`);
  const chunk = Math.max(1, Math.min(n, Math.floor(opts.chunkRows ?? DEFAULT_KNN_CHUNK_ROWS)));
  const sq = squaredNorms(x, n, d);
  const session = await knnSession(backendFor(opts));
  const points = normalisedRows(x, n, d, sq);
  const kc = Math.min(n, k + REFINE_EXTRA);
  const indices = new Int32Array(n * k);
  const distances = new Float32Array(n * k);
  // Per-row scratch: candidates sorted by (distance, index) by insertion (kc + 1 entries).
  const candIdx = new Int32Array(kc + 1);
  const candDist = new Float64Array(kc + 1);
  for (let r0 = 0; r0 < n; r0 += chunk) {
    opts.signal?.throwIfAborted();
    const rows = Math.min(chunk, n - r0);
    const res = await session.run({
      queries: { type: 'float32', data: points.subarray(r0 * d, (r0 + rows) * d), dims: [rows, d] },
      points: { type: 'float32', data: points, dims: [n, d] },
      k: { type: 'int64', data: BigInt64Array.of(BigInt(kc)), dims: [1] },
    }, 'topk');
    if (res.dims[0] !== rows || res.dims[1] !== 2 * kc) {
      throw new KnnError(`kNN graph returned [${res.dims.join(', ')}], expected [${rows}, ${2 * kc}]`);
    }
    const y = res.data;
    for (let r = 0; r < rows; r++) {
      const i = r0 + r;
      // The point itself leads whatever its computed distance (ties with duplicates included).
      candIdx[0] = i;
      candDist[0] = -1;
      let m = 1;
      for (let c = 0, o = r * 2 * kc + kc; c < kc; c++) {
        const j = y[o + c];
        if (j === i) continue;
        const dist = exactCosineDistance(x, d, sq, i, j);
        let p = m++;
        while (p > 1 && (candDist[p - 1] > dist || (candDist[p - 1] === dist && candIdx[p - 1] > j))) {
          candDist[p] = candDist[p - 1];
          candIdx[p] = candIdx[p - 1];
          p--;
        }
        candDist[p] = dist;
        candIdx[p] = j;
      }
      if (m < k) throw new KnnError(`kNN graph returned ${m} distinct candidates for row ${i}, need ${k}`);
      const o = i * k;
      indices[o] = i;
      distances[o] = 0;
      for (let c = 1; c < k; c++) {
        indices[o + c] = candIdx[c];
        distances[o + c] = candDist[c];
      }
    }
  }
  return { indices, distances, k, provider: session.provider };
}
