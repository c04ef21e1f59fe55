// Per-image OOD scores from CLIPN features, following the spec's "Inference" section (and the
// official zero_shot_infer.py). The feature x text product is a pluggable step: scoreFromLogits
// works on precomputed logits so a faster backend (e.g. onnxruntime) can replace the plain-TS
// matmul below without touching the scoring math.

/** out[i*cols + j] = alpha * dot(a_i, b_j) for row-major a (rows x dim) and b (cols x dim). */
export type MatmulFn = (
  a: Float32Array, rows: number,
  b: Float32Array, cols: number,
  dim: number, alpha: number,
  out: Float32Array,
) => void;

export interface ScoreOptions {
  /**
   * s in logits = s * cos. CLIPN evaluates with exp(logit_scale) = 100; CTW and ATD always use
   * these logits. When calling scoreFromLogits it must be the scale the logits were made with.
   */
  scale?: number;
  /**
   * T of the softmax-family baselines, applied to cosines: MSP = max softmax(cos/T),
   * MaxLogit = max cos/T, Energy = logsumexp(cos/T). Default 1 is MCM's setting; CLIPN's
   * baselines use T = 0.01 (i.e. cos/T = the scale-100 logits, matching its code exactly).
   */
  temperature?: number;
  /** Also return the n x classes matrix of p_yes (row-major, float32 to halve the memory). */
  keepPYes?: boolean;
}

/** Reasons a score is mathematically meaningless for this input (scores are still returned). */
export interface DegenerateFlags {
  atd?: string;
  msp?: string;
}

export interface ImageScores {
  n: number;
  classes: number;
  /** argmax_j logits_j (first index on ties, like numpy/torch argmax). */
  predicted: Int32Array;
  msp: Float64Array;
  maxLogit: Float64Array;
  energy: Float64Array;
  /** CTW ID score p_yes at the predicted class. */
  ctw: Float64Array;
  /** ATD ID score 1 - p_ood = sum_j p_yes_j p_j. */
  atd: Float64Array;
  /** 1 where CTW calls the image OOD (p_no > p_yes at the predicted class). */
  ctwIsOod: Uint8Array;
  /** 1 where ATD calls the image OOD (p_ood larger than every softmax class probability). */
  atdIsOod: Uint8Array;
  pYes?: Float32Array;
  degenerate: DegenerateFlags;
}

export class ScoresError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScoresError';
  }
}

const DEFAULT_SCALE = 100;
// Tiles of 4 image rows x 4 text rows reuse every loaded element four times; the blocks keep a
// slab of text rows hot in L1/L2 while image rows stream past (measured best on 2-core EPYC).
const ROW_BLOCK = 64;
const COL_BLOCK = 64;

/**
 * Plain-TypeScript A * B^T. Both operands are read along contiguous rows (dot-product form),
 * 4x4 register-tiled with 16 double accumulators, so products are summed in float64 and
 * rounded to float32 once.
 */
export const matmulTransposed: MatmulFn = (a, rows, b, cols, dim, alpha, out) => {
  if (a.length < rows * dim || b.length < cols * dim || out.length < rows * cols) {
    throw new ScoresError(`matmul: operand sizes do not match ${rows}x${dim} * (${cols}x${dim})^T`);
  }
  const rows4 = rows - (rows % 4);
  const cols4 = cols - (cols % 4);
  for (let i0 = 0; i0 < rows4; i0 += ROW_BLOCK) {
    const i1 = Math.min(rows4, i0 + ROW_BLOCK);
    for (let j0 = 0; j0 < cols4; j0 += COL_BLOCK) {
      tile4x4(a, i0, i1, b, j0, Math.min(cols4, j0 + COL_BLOCK), cols, dim, alpha, out);
    }
  }
  // Ragged edges (rows or columns not a multiple of 4) take the simple path.
  for (let i = 0; i < rows; i++) {
    for (let j = i < rows4 ? cols4 : 0; j < cols; j++) {
      let s = 0;
      const ao = i * dim;
      const bo = j * dim;
      for (let k = 0; k < dim; k++) s += a[ao + k] * b[bo + k];
      out[i * cols + j] = alpha * s;
    }
  }
};

function tile4x4(
  a: Float32Array, i0: number, i1: number,
  b: Float32Array, j0: number, j1: number,
  cols: number, dim: number, alpha: number, out: Float32Array,
): void {
  for (let i = i0; i < i1; i += 4) {
    const a0 = i * dim, a1 = a0 + dim, a2 = a1 + dim, a3 = a2 + dim;
    for (let j = j0; j < j1; j += 4) {
      const b0 = j * dim, b1 = b0 + dim, b2 = b1 + dim, b3 = b2 + dim;
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      let s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
      for (let k = 0; k < dim; k++) {
        const y0 = b[b0 + k], y1 = b[b1 + k], y2 = b[b2 + k], y3 = b[b3 + k];
        let x = a[a0 + k];
        s00 += x * y0; s01 += x * y1; s02 += x * y2; s03 += x * y3;
        x = a[a1 + k];
        s10 += x * y0; s11 += x * y1; s12 += x * y2; s13 += x * y3;
        x = a[a2 + k];
        s20 += x * y0; s21 += x * y1; s22 += x * y2; s23 += x * y3;
        x = a[a3 + k];
        s30 += x * y0; s31 += x * y1; s32 += x * y2; s33 += x * y3;
      }
      let o = i * cols + j;
      out[o] = alpha * s00; out[o + 1] = alpha * s01; out[o + 2] = alpha * s02; out[o + 3] = alpha * s03;
      o += cols;
      out[o] = alpha * s10; out[o + 1] = alpha * s11; out[o + 2] = alpha * s12; out[o + 3] = alpha * s13;
      o += cols;
      out[o] = alpha * s20; out[o + 1] = alpha * s21; out[o + 2] = alpha * s22; out[o + 3] = alpha * s23;
      o += cols;
      out[o] = alpha * s30; out[o + 1] = alpha * s31; out[o + 2] = alpha * s32; out[o + 3] = alpha * s33;
    }
  }
}

function resolve(opts: ScoreOptions): { scale: number; baselineFactor: number } {
  const scale = opts.scale ?? DEFAULT_SCALE;
  const t = opts.temperature ?? 1;
  if (!(scale > 0) || !(t > 0)) throw new ScoresError(`scale and temperature must be positive (got ${scale}, ${t})`);
  // Baselines see cos/T = logits / (scale * T); when that factor is 1 the softmax over the
  // logits already computed for CTW/ATD is reused instead of a second pass of exps.
  return { scale, baselineFactor: 1 / (scale * t) };
}

/** Empty result arrays for n images, to be filled by scoreRowsInto (possibly chunk by chunk). */
export function createScores(n: number, classes: number, opts: ScoreOptions = {}): ImageScores {
  if (!Number.isInteger(n) || n < 0) throw new ScoresError(`image count must be a non-negative integer (got ${n})`);
  if (!Number.isInteger(classes) || classes < 1) throw new ScoresError(`need at least one ID class (got ${classes})`);
  const degenerate: DegenerateFlags = {};
  if (classes === 1) {
    degenerate.atd =
      'only one ID class: its softmax probability p_1 is always 1, so the ATD score 1 - p_ood ' +
      'equals p_yes_1 (the CTW score) and p_ood can never exceed p_1 (ATD never flags OOD)';
    degenerate.msp = 'only one ID class: the maximum softmax probability is always 1';
  }
  return {
    n,
    classes,
    predicted: new Int32Array(n),
    msp: new Float64Array(n),
    maxLogit: new Float64Array(n),
    energy: new Float64Array(n),
    ctw: new Float64Array(n),
    atd: new Float64Array(n),
    ctwIsOod: new Uint8Array(n),
    atdIsOod: new Uint8Array(n),
    pYes: opts.keepPYes ? new Float32Array(n * classes) : undefined,
    degenerate,
  };
}

/**
 * p_yes = softmax([z, z_no])[0] = sigmoid(z - z_no). In float64 with IEEE infinities this form
 * is stable for every d: for d << 0, exp(-d) overflows to Infinity and the result is the
 * correct limit 0 (no NaN), and elsewhere the relative error stays within a few ulps. The
 * usual two-branch variant gives the same values but its data-dependent branch mispredicts on
 * real logits and cost ~25% of the scoring time in measurements.
 */
function sigmoid(d: number): number {
  return 1 / (1 + Math.exp(-d));
}

/**
 * Scores rows [firstRow, firstRow + rowCount) of `out` from a chunk of logits whose row 0 is
 * image firstRow. All arithmetic is float64 whatever the logits' precision.
 */
export function scoreRowsInto(
  out: ImageScores,
  logits: Float32Array | Float64Array,
  logitsNo: Float32Array | Float64Array,
  firstRow: number,
  rowCount: number,
  opts: ScoreOptions = {},
): void {
  const c = out.classes;
  if (logits.length < rowCount * c || logitsNo.length < rowCount * c) {
    throw new ScoresError(`logits hold fewer than ${rowCount} x ${c} values`);
  }
  if (firstRow < 0 || firstRow + rowCount > out.n) {
    throw new ScoresError(`rows ${firstRow}..${firstRow + rowCount} outside 0..${out.n}`);
  }
  const { baselineFactor } = resolve(opts);
  const reuse = baselineFactor === 1;
  const pYes = out.pYes;
  for (let r = 0; r < rowCount; r++) {
    const o = r * c;
    const row = firstRow + r;
    let m = logits[o];
    let jStar = 0;
    for (let j = 1; j < c; j++) {
      if (logits[o + j] > m) {
        m = logits[o + j];
        jStar = j;
      }
    }
    // z: softmax normaliser (over exp(z - m)); s: sum_j p_yes_j exp(z_j - m).
    let z = 0;
    let s = 0;
    for (let j = 0; j < c; j++) {
      const zj = logits[o + j];
      const e = Math.exp(zj - m);
      const py = sigmoid(zj - logitsNo[o + j]);
      z += e;
      s += py * e;
      if (pYes) pYes[row * c + j] = py;
    }
    const pMax = 1 / z; // softmax probability of the predicted class: exp(0) / z
    const atd = s / z;
    out.predicted[row] = jStar;
    out.atd[row] = atd;
    // p_ood = 1 - atd; OOD when it beats every p_j, i.e. the largest one.
    out.atdIsOod[row] = 1 - atd > pMax ? 1 : 0;
    const dStar = logits[o + jStar] - logitsNo[o + jStar];
    out.ctw[row] = sigmoid(dStar);
    // p_no > p_yes  <=>  z_no > z: decided on the logits so rounding of the sigmoid near 0.5
    // cannot flip it.
    out.ctwIsOod[row] = dStar < 0 ? 1 : 0;
    if (reuse) {
      out.msp[row] = pMax;
      out.maxLogit[row] = m;
      out.energy[row] = m + Math.log(z);
    } else {
      const mu = m * baselineFactor; // the max is preserved by a positive factor
      let zb = 0;
      for (let j = 0; j < c; j++) zb += Math.exp(logits[o + j] * baselineFactor - mu);
      out.msp[row] = 1 / zb;
      out.maxLogit[row] = mu;
      out.energy[row] = mu + Math.log(zb);
    }
  }
}

/** Scores n images from full n x classes logit matrices (row-major). */
export function scoreFromLogits(
  logits: Float32Array | Float64Array,
  logitsNo: Float32Array | Float64Array,
  n: number,
  classes: number,
  opts: ScoreOptions = {},
): ImageScores {
  const out = createScores(n, classes, opts);
  if (logits.length !== n * classes || logitsNo.length !== n * classes) {
    throw new ScoresError(
      `expected ${n} x ${classes} = ${n * classes} logits, got ${logits.length} (yes) and ${logitsNo.length} (no)`,
    );
  }
  scoreRowsInto(out, logits, logitsNo, 0, n, opts);
  return out;
}

export interface FeatureInput {
  /** n x dim image features, L2-normalised rows. */
  image: Float32Array;
  n: number;
  dim: number;
  /** classes x dim "yes" and "no" text features, L2-normalised rows. */
  textYes: Float32Array;
  textNo: Float32Array;
  classes: number;
}

export interface FeatureScoreOptions extends ScoreOptions {
  matmul?: MatmulFn;
  /** Images per matmul chunk: bounds memory to 2 x chunkRows x classes floats. */
  chunkRows?: number;
  /** Reject rows whose L2 norm is off by more than this (default 1e-2; Infinity disables). */
  normTolerance?: number;
}

function checkNormalised(x: Float32Array, rows: number, dim: number, what: string, tol: number): void {
  if (!Number.isFinite(tol)) return;
  for (let i = 0; i < rows; i++) {
    let s = 0;
    for (let k = i * dim, end = k + dim; k < end; k++) s += x[k] * x[k];
    const norm = Math.sqrt(s);
    if (!(Math.abs(norm - 1) <= tol)) {
      throw new ScoresError(`${what} row ${i} has L2 norm ${norm}; features must be L2-normalised`);
    }
  }
}

/** Logits for all images against all classes with the pluggable product. */
export function computeLogits(
  features: Float32Array, n: number, dim: number,
  text: Float32Array, classes: number,
  scale = DEFAULT_SCALE, matmul: MatmulFn = matmulTransposed,
): Float32Array {
  const out = new Float32Array(n * classes);
  matmul(features, n, text, classes, dim, scale, out);
  return out;
}

/** The input checks of every scoring path (TS and ONNX graph), so all reject the same inputs. */
export function validateFeatureInput(input: FeatureInput, opts: FeatureScoreOptions = {}): void {
  const { image, n, dim, textYes, textNo, classes } = input;
  if (!Number.isInteger(n) || n < 0) throw new ScoresError(`image count must be a non-negative integer (got ${n})`);
  if (!Number.isInteger(classes) || classes < 1) throw new ScoresError(`need at least one ID class (got ${classes})`);
  if (image.length !== n * dim) throw new ScoresError(`image features: expected ${n} x ${dim}, got ${image.length} values`);
  for (const [t, what] of [[textYes, 'yes'], [textNo, 'no']] as const) {
    if (t.length !== classes * dim) {
      throw new ScoresError(`${what} text features: expected ${classes} x ${dim}, got ${t.length} values`);
    }
  }
  const tol = opts.normTolerance ?? 1e-2;
  checkNormalised(image, n, dim, 'image feature', tol);
  checkNormalised(textYes, classes, dim, 'yes text feature', tol);
  checkNormalised(textNo, classes, dim, 'no text feature', tol);
  resolve(opts);
}

/** Features in, scores out: the products are computed chunk by chunk and scored as they come. */
/**
 * The scale-s yes and no logits of the images (float32, row-major [rows, classes]), a chunk of
 * rows at a time; the buffers are reused between calls of `fn`. Everything that must agree
 * with the scores bit for bit (predictions, CTW decisions) reads its logits from here.
 */
export function forEachLogitChunk(
  input: FeatureInput,
  opts: Pick<FeatureScoreOptions, 'matmul' | 'chunkRows'> & { scale: number },
  fn: (yes: Float32Array, no: Float32Array, firstRow: number, rows: number) => void,
): void {
  const { image, n, dim, textYes, textNo, classes } = input;
  const matmul = opts.matmul ?? matmulTransposed;
  const chunk = Math.max(1, Math.min(n, opts.chunkRows ?? 256));
  const yes = new Float32Array(chunk * classes);
  const no = new Float32Array(chunk * classes);
  for (let r0 = 0; r0 < n; r0 += chunk) {
    const rows = Math.min(chunk, n - r0);
    const slab = image.subarray(r0 * dim, (r0 + rows) * dim);
    matmul(slab, rows, textYes, classes, dim, opts.scale, yes);
    matmul(slab, rows, textNo, classes, dim, opts.scale, no);
    fn(yes, no, r0, rows);
  }
}

export function scoreFeatures(input: FeatureInput, opts: FeatureScoreOptions = {}): ImageScores {
  validateFeatureInput(input, opts);
  const { scale } = resolve(opts);
  const out = createScores(input.n, input.classes, opts);
  forEachLogitChunk(input, { ...opts, scale }, (yes, no, r0, rows) => scoreRowsInto(out, yes, no, r0, rows, opts));
  return out;
}
