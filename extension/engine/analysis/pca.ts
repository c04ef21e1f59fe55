// Deterministic PCA of row vectors, exact to rounding. The top eigenpairs of the centred
// scatter matrix S = sum_i (x_i - mean)(x_i - mean)^T come from a block Krylov method with
// Rayleigh-Ritz, run until the residuals are at rounding level: S is never formed (each product
// costs O(n * d), reading the rows once per block), and unlike plain power iteration it does not
// stall on close eigenvalues, so axes and variances match numpy's eigh/SVD. Small d decomposes S
// fully (cyclic Jacobi), which also serves the Rayleigh-Ritz step.
import { gaussian } from '../random';

export interface Pca {
  rows: number;
  dim: number;
  /** Number of components. */
  k: number;
  mean: Float64Array;
  /** k unit vectors of length dim, by decreasing variance; each one's largest-|.| entry is positive. */
  axes: Float64Array[];
  /** rows x k row-major: (x_i - mean) . axes[c]. */
  coords: Float64Array;
  /** Variance along each axis (sample covariance eigenvalues, divisor rows - 1 as numpy/sklearn). */
  variance: Float64Array;
  /** variance / totalVariance (0 when the data has no variance at all). */
  explainedVarianceRatio: Float64Array;
  /** Trace of the sample covariance. */
  totalVariance: number;
}

export class PcaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PcaError';
  }
}

type Rows = Float32Array | Float64Array;
/** S v for each v of a block. */
type Operator = (block: Float64Array[]) => Float64Array[];

/** PCA of row-major x [rows, dim] to k components (k <= dim). */
export function pca(x: Rows, rows: number, dim: number, k = 2): Pca {
  if (!Number.isInteger(rows) || rows < 1) throw new PcaError(`PCA needs at least one row (got ${rows})`);
  if (!Number.isInteger(dim) || dim < 1) throw new PcaError(`PCA needs a positive dimension (got ${dim})`);
  if (!Number.isInteger(k) || k < 1 || k > dim) throw new PcaError(`components must be an integer in 1..${dim} (got ${k})`);
  if (x.length !== rows * dim) throw new PcaError(`data: expected ${rows} x ${dim} = ${rows * dim} values, got ${x.length}`);
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) throw new PcaError(`data: value ${i} (row ${Math.floor(i / dim)}) is not finite (${x[i]})`);
  }
  const mean = new Float64Array(dim);
  for (let i = 0; i < rows; i++) for (let j = 0, o = i * dim; j < dim; j++) mean[j] += x[o + j];
  for (let j = 0; j < dim; j++) mean[j] /= rows;
  let trace = 0;
  for (let i = 0; i < x.length; i++) trace += (x[i] - mean[i % dim]) ** 2;

  const top = topEigen((block) => scatterTimes(x, rows, dim, mean, block), dim, k);
  // Directions with no variance are arbitrary: complete the basis deterministically instead.
  const negligible = Math.max(top.values[0], 0) * dim * 8 * Number.EPSILON;
  const axes: Float64Array[] = [];
  const variance = new Float64Array(k);
  for (let c = 0; c < k; c++) {
    const significant = top.values[c] > negligible;
    axes.push(fixSign(significant ? top.vectors[c] : completeBasis(axes, dim)));
    variance[c] = significant ? top.values[c] / Math.max(rows - 1, 1) : 0;
  }
  const totalVariance = trace / Math.max(rows - 1, 1);
  const explainedVarianceRatio = variance.map((v) => (totalVariance > 0 ? v / totalVariance : 0));
  const result: Pca = { rows, dim, k, mean, axes, coords: new Float64Array(0), variance, explainedVarianceRatio, totalVariance };
  result.coords = projectRows(result, x, rows);
  return result;
}

/** Coordinates of other rows (same dim) on a fitted PCA's axes: rows x k row-major. */
export function projectRows(p: Pca, x: Rows, rows: number): Float64Array {
  const { dim, k, mean, axes } = p;
  if (x.length !== rows * dim) throw new PcaError(`rows to project: expected ${rows} x ${dim} values, got ${x.length}`);
  const out = new Float64Array(rows * k);
  const centred = new Float64Array(dim);
  for (let i = 0; i < rows; i++) {
    for (let j = 0, o = i * dim; j < dim; j++) centred[j] = x[o + j] - mean[j];
    for (let c = 0; c < k; c++) out[i * k + c] = dot(centred, axes[c]);
  }
  return out;
}

/** The first k components of a fitted PCA (the same as fitting with k, without refitting). */
export function firstComponents(p: Pca, k: number): Pca {
  if (!Number.isInteger(k) || k < 1 || k > p.k) throw new PcaError(`components must be an integer in 1..${p.k} (got ${k})`);
  const coords = new Float64Array(p.rows * k);
  for (let i = 0; i < p.rows; i++) for (let c = 0; c < k; c++) coords[i * k + c] = p.coords[i * p.k + c];
  return {
    ...p, k, coords, axes: p.axes.slice(0, k),
    variance: p.variance.slice(0, k), explainedVarianceRatio: p.explainedVarianceRatio.slice(0, k),
  };
}

/** The top-k principal axes of row-major x [n, d] (deterministic); kept for the embed cell. */
export function principalAxes(x: Float32Array, n: number, d: number, k = 2): { mean: Float64Array; axes: Float64Array[] } {
  const p = pca(x, n, d, k);
  return { mean: p.mean, axes: p.axes };
}

/**
 * S v for each v of the block, reading every row once per block. Rows go four at a time, so
 * each load of v and each load/store of S v serves four rows.
 */
function scatterTimes(x: Rows, rows: number, dim: number, mean: Float64Array, block: Float64Array[]): Float64Array[] {
  const out = block.map(() => new Float64Array(dim));
  const c = new Float64Array(4 * dim);
  for (let i0 = 0; i0 < rows; i0 += 4) {
    const live = Math.min(4, rows - i0);
    c.fill(0); // rows past the end stay zero and add nothing
    for (let r = 0; r < live; r++) for (let j = 0, o = (i0 + r) * dim; j < dim; j++) c[r * dim + j] = x[o + j] - mean[j];
    for (let b = 0; b < block.length; b++) {
      const v = block[b];
      let t0 = 0, t1 = 0, t2 = 0, t3 = 0;
      for (let j = 0; j < dim; j++) {
        const vj = v[j];
        t0 += c[j] * vj;
        t1 += c[dim + j] * vj;
        t2 += c[2 * dim + j] * vj;
        t3 += c[3 * dim + j] * vj;
      }
      const w = out[b];
      for (let j = 0; j < dim; j++) w[j] += t0 * c[j] + t1 * c[dim + j] + t2 * c[2 * dim + j] + t3 * c[3 * dim + j];
    }
  }
  return out;
}

interface TopEigen {
  /** Largest first; k of them (zeros past the rank). */
  values: Float64Array;
  /** Unit eigenvectors of `values`. */
  vectors: Float64Array[];
}

// Up to this size S is formed and decomposed fully (cheaper than building a Krylov basis).
const DENSE_UP_TO = 48;
// Ritz pairs are accepted when ||S x - theta x|| <= RESIDUAL_TOL * theta_max: the axis error is
// then at most that over the relative eigen-gap, far below what a figure or a test can see.
const RESIDUAL_TOL = 1e-11;
const KRYLOV_SEED = 0x9e3779b9;

/**
 * Top-k eigenpairs of the symmetric m x m operator. Block Krylov: a block of k + 4 vectors from
 * a seeded Gaussian start, each new block S * (previous block) fully re-orthogonalised against
 * the basis, Rayleigh-Ritz on a geometric schedule. The block covers repeated eigenvalues up to
 * its size; once the basis is invariant (every new vector dependent) or spans all m dimensions
 * the Ritz pairs are exact.
 */
function topEigen(apply: Operator, m: number, k: number): TopEigen {
  if (m <= DENSE_UP_TO) {
    const cols = apply(Array.from({ length: m }, (_, j) => Float64Array.from({ length: m }, (_, i) => (i === j ? 1 : 0))));
    const s = new Float64Array(m * m);
    for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) s[i * m + j] = (cols[j][i] + cols[i][j]) / 2;
    const full = symmetricEigen(s, m);
    const order = descending(full.values).slice(0, k);
    return { values: Float64Array.from(order, (i) => full.values[i]), vectors: order.map((i) => full.vectors.slice(i * m, i * m + m)) };
  }
  const next = gaussian(KRYLOV_SEED);
  const basis: Float64Array[] = [];
  const images: Float64Array[] = []; // S * basis[i]
  let block: Float64Array[] = Array.from({ length: Math.min(m, k + 4) }, () => Float64Array.from({ length: m }, next));
  let lastRitz = 0;
  for (;;) {
    block = orthonormalise(block, basis);
    basis.push(...block);
    images.push(...apply(block));
    const complete = block.length === 0 || basis.length >= m;
    if (complete || basis.length >= Math.max(3 * (k + 4), 1.25 * lastRitz)) {
      lastRitz = basis.length;
      const ritz = rayleighRitz(basis, images, m, k);
      if (complete || ritz.residual <= RESIDUAL_TOL * Math.abs(ritz.values[0])) return ritz;
    }
    block = images.slice(basis.length - block.length).map((v) => Float64Array.from(v));
  }
}

function descending(values: Float64Array): number[] {
  // Ties keep the lower index, so equal spectra give the same pick every run.
  return Array.from(values, (_, i) => i).sort((a, b) => values[b] - values[a] || a - b);
}

function dot(a: Float64Array, b: Float64Array): number {
  let t = 0;
  for (let j = 0; j < a.length; j++) t += a[j] * b[j];
  return t;
}

/** Gram-Schmidt (two passes) against `basis` and each other; near-dependent vectors dropped. */
function orthonormalise(block: Float64Array[], basis: Float64Array[]): Float64Array[] {
  const kept: Float64Array[] = [];
  for (const v of block) {
    const before = Math.sqrt(dot(v, v));
    for (let pass = 0; pass < 2; pass++) {
      for (const q of basis.concat(kept)) {
        const c = dot(v, q);
        for (let j = 0; j < v.length; j++) v[j] -= c * q[j];
      }
    }
    const after = Math.sqrt(dot(v, v));
    if (after > 1e-10 * before) kept.push(normalise(v));
  }
  return kept;
}

/** The top-k Ritz pairs of the basis (fewer basis vectors than k: the rest are zero). */
function rayleighRitz(basis: Float64Array[], images: Float64Array[], m: number, k: number): TopEigen & { residual: number } {
  const p = basis.length;
  const h = new Float64Array(p * p);
  for (let i = 0; i < p; i++) {
    for (let j = i; j < p; j++) {
      const v = (dot(basis[i], images[j]) + dot(basis[j], images[i])) / 2;
      h[i * p + j] = v;
      h[j * p + i] = v;
    }
  }
  const small = symmetricEigen(h, p);
  const order = descending(small.values).slice(0, k);
  let residual = 0;
  const values = new Float64Array(k);
  const vectors = order.map((idx, c) => {
    const x = new Float64Array(m);
    const sx = new Float64Array(m);
    for (let i = 0; i < p; i++) {
      const y = small.vectors[idx * p + i];
      for (let j = 0; j < m; j++) {
        x[j] += y * basis[i][j];
        sx[j] += y * images[i][j];
      }
    }
    values[c] = small.values[idx];
    let r = 0;
    for (let j = 0; j < m; j++) r += (sx[j] - values[c] * x[j]) ** 2;
    residual = Math.max(residual, Math.sqrt(r));
    return normalise(x);
  });
  return { values, vectors, residual };
}

function normalise(v: Float64Array): Float64Array {
  const inv = 1 / Math.sqrt(dot(v, v));
  for (let j = 0; j < v.length; j++) v[j] *= inv;
  return v;
}

/** Sign convention: the largest-|.| component positive (first on ties), so figures do not flip. */
function fixSign(v: Float64Array): Float64Array {
  let big = 0;
  for (let j = 1; j < v.length; j++) if (Math.abs(v[j]) > Math.abs(v[big])) big = j;
  if (v[big] < 0) for (let j = 0; j < v.length; j++) v[j] = -v[j];
  return v;
}

/** The first standard basis vector, orthogonalised against `axes`, that keeps most of its length. */
function completeBasis(axes: Float64Array[], dim: number): Float64Array {
  for (let e = 0; e < dim; e++) {
    const v = new Float64Array(dim);
    v[e] = 1;
    // After projection v[e] = |v|^2: keep a vector that retains most of its length.
    const [u] = orthonormalise([v], axes);
    if (u && u[e] > 0.5) return u;
  }
  throw new PcaError('could not complete the basis'); // unreachable while axes.length < dim
}

/**
 * All eigenpairs of the symmetric n x n matrix a (row-major, overwritten) by cyclic Jacobi
 * rotations, which are accurate to rounding and short; they only ever see the small
 * Rayleigh-Ritz matrices or a d <= DENSE_UP_TO covariance. Row i of `vectors` belongs to values[i].
 */
function symmetricEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const w = new Float64Array(n * n);
  for (let i = 0; i < n; i++) w[i * n + i] = 1;
  // Off-diagonal entries this small change nothing at double precision: zeroed, not rotated.
  const tiny = 1e-18 * Math.sqrt(a.reduce((t, v) => t + v * v, 0));
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += Math.abs(a[p * n + q]);
    if (off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        const app = a[p * n + p];
        const aqq = a[q * n + q];
        const g = 100 * Math.abs(apq);
        // Numerical Recipes' rule: after a few sweeps, drop entries below both diagonals' ulp.
        if (Math.abs(apq) <= tiny || (sweep > 3 && Math.abs(app) + g === Math.abs(app) && Math.abs(aqq) + g === Math.abs(aqq))) {
          a[p * n + q] = 0;
          a[q * n + p] = 0;
          continue;
        }
        const theta = (aqq - app) / (2 * apq);
        const t = Number.isFinite(theta * theta) ? Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1)) : 1 / (2 * theta);
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        // A <- J^T A J (rows/columns p and q; symmetric, so both written from one pass) and
        // W <- J^T W, with J the rotation by (c, s) in the (p, q) plane.
        for (let k = 0; k < n; k++) {
          if (k === p || k === q) continue;
          const kp = a[k * n + p];
          const kq = a[k * n + q];
          const np = c * kp - s * kq;
          const nq = s * kp + c * kq;
          a[k * n + p] = np;
          a[p * n + k] = np;
          a[k * n + q] = nq;
          a[q * n + k] = nq;
        }
        for (let k = 0; k < n; k++) {
          const pk = w[p * n + k];
          const qk = w[q * n + k];
          w[p * n + k] = c * pk - s * qk;
          w[q * n + k] = s * pk + c * qk;
        }
        a[p * n + p] = app - t * apq;
        a[q * n + q] = aqq + t * apq;
        a[p * n + q] = 0;
        a[q * n + p] = 0;
      }
    }
  }
  return { values: Float64Array.from({ length: n }, (_, i) => a[i * n + i]), vectors: w };
}
