// Geometry of CLIPN's yes/no text features and of images against them. Text side: how far each
// class's "no" feature sits from its "yes" feature (per ensemble, per template, per learned
// prompt), the yes-vs-no similarity matrix, and a joint 2-D/3-D PCA of all yes and no features.
// Image side: each image's cosine to the yes and no features of its predicted class. CTW calls
// an image OOD when p_no > p_yes at the predicted class, i.e. s cos_no > s cos_yes (spec
// "Inference"), so in the (cos yes, cos no) plane its boundary is the line cos_no = cos_yes.
import type { FeatureMatrix } from '../prompts';
import { forEachLogitChunk, validateFeatureInput, type FeatureInput, type FeatureScoreOptions } from '../scores';
import { firstComponents, pca, type Pca } from './pca';

export class GeometryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GeometryError';
  }
}

export interface TextGeometryInput {
  /** [C, d] yes-tower class features (the template ensemble), L2-normalised rows. */
  yes: FeatureMatrix;
  /** [C, d] no-tower class features, L2-normalised rows. */
  no: FeatureMatrix;
  /** Per template: that template's own yes and no class features. */
  templates?: readonly { yes: FeatureMatrix; no: FeatureMatrix }[];
  /** Per learned "no" prompt: its no class features, paired with the ensemble `yes`. */
  learnedNo?: readonly FeatureMatrix[];
}

export interface TextGeometry {
  classes: number;
  dim: number;
  /** pairCos[c] = cos(yes_c, no_c) for the ensembles. */
  pairCos: Float64Array;
  /** templatePairCos[t][c] = cos(yes_c, no_c) with template t's features. */
  templatePairCos: Float64Array[];
  /** learnedPairCos[p][c] = cos(yes_c, no_c of learned prompt p). */
  learnedPairCos: Float64Array[];
  /** C x C row-major: similarity[i * C + j] = cos(yes_i, no_j). */
  similarity: Float64Array;
  /** PCA of the 2C rows yes_0..yes_{C-1}, no_0..no_{C-1} (coords row r is that feature). */
  pca2: Pca;
  /** The same in 3-D (null when dim < 3); pca2 is its first two components. */
  pca3: Pca | null;
  /** pairs[c] = [coords row of yes_c, coords row of no_c], to link each class's two points. */
  pairs: [number, number][];
}

export interface GeometryOptions {
  /** Reject rows whose L2 norm is off by more than this (default 1e-2, as scoring does). */
  normTolerance?: number;
}

/** The yes/no text geometry of the ID classes. */
export function textGeometry(input: TextGeometryInput, opts: GeometryOptions = {}): TextGeometry {
  const tol = opts.normTolerance ?? 1e-2;
  const [classes, dim] = checkFeatures(input.yes, 'yes', tol);
  checkFeatures(input.no, 'no', tol, [classes, dim], 'yes');
  const templates = input.templates ?? [];
  templates.forEach((t, i) => {
    checkFeatures(t.yes, `templates[${i}].yes`, tol, [classes, dim], 'yes');
    checkFeatures(t.no, `templates[${i}].no`, tol, [classes, dim], 'yes');
  });
  const learned = input.learnedNo ?? [];
  learned.forEach((f, i) => checkFeatures(f, `learnedNo[${i}]`, tol, [classes, dim], 'yes'));

  const yes = input.yes.data;
  const no = input.no.data;
  const similarity = new Float64Array(classes * classes);
  for (let i = 0; i < classes; i++) for (let j = 0; j < classes; j++) similarity[i * classes + j] = cosine(yes, i, no, j, dim);
  const both = new Float32Array(2 * classes * dim);
  both.set(yes, 0);
  both.set(no, classes * dim);
  const joint = pca(both, 2 * classes, dim, Math.min(3, dim));
  return {
    classes,
    dim,
    pairCos: pairCosines(yes, no, classes, dim),
    templatePairCos: templates.map((t) => pairCosines(t.yes.data, t.no.data, classes, dim)),
    learnedPairCos: learned.map((f) => pairCosines(yes, f.data, classes, dim)),
    similarity,
    pca2: firstComponents(joint, Math.min(2, dim)),
    pca3: dim >= 3 ? joint : null,
    pairs: Array.from({ length: classes }, (_, c): [number, number] => [c, classes + c]),
  };
}

export interface ImageGeometry {
  n: number;
  /** argmax_j of the yes logits (first index on ties), as scoring predicts. */
  predicted: Int32Array;
  /** cos(image, yes_predicted): the float64 dot product the yes logit is made from. */
  cosYes: Float64Array;
  /** cos(image, no_predicted). */
  cosNo: Float64Array;
  /** 1 where CTW calls the image OOD (s cos_no > s cos_yes at the predicted class). */
  ctwIsOod: Uint8Array;
}

export type ImageGeometryOptions = Pick<FeatureScoreOptions, 'scale' | 'matmul' | 'chunkRows' | 'normTolerance'>;

/**
 * Each image against the yes and no features of its predicted class. The prediction and the
 * CTW decision are taken on the same float32 logits, with the same product and the same
 * comparisons, as scores.ts scoreFeatures, so they agree with its `predicted` and `ctwIsOod`
 * bit for bit; cosYes/cosNo are the exact float64 cosines (with a point within float32
 * rounding of the line cos_no = cos_yes, the decision is the scored one).
 */
export function imageGeometry(input: FeatureInput, opts: ImageGeometryOptions = {}): ImageGeometry {
  validateFeatureInput(input, opts);
  const { image, n, dim, textYes, textNo, classes } = input;
  const out: ImageGeometry = {
    n,
    predicted: new Int32Array(n),
    cosYes: new Float64Array(n),
    cosNo: new Float64Array(n),
    ctwIsOod: new Uint8Array(n),
  };
  forEachLogitChunk(input, { ...opts, scale: opts.scale ?? 100 }, (logits, logitsNo, r0, rows) => {
    for (let r = 0; r < rows; r++) {
      const o = r * classes;
      let best = 0;
      for (let j = 1; j < classes; j++) if (logits[o + j] > logits[o + best]) best = j;
      const row = r0 + r;
      out.predicted[row] = best;
      out.ctwIsOod[row] = logits[o + best] - logitsNo[o + best] < 0 ? 1 : 0;
      out.cosYes[row] = rowDot(image, row, textYes, best, dim);
      out.cosNo[row] = rowDot(image, row, textNo, best, dim);
    }
  });
  return out;
}

function checkFeatures(
  f: FeatureMatrix, what: string, tol: number,
  expected?: [number, number], expectedWhat?: string,
): [number, number] {
  const [rows, dim] = f.dims;
  if (!Number.isInteger(rows) || !Number.isInteger(dim) || dim < 1) throw new GeometryError(`${what}: dims ${JSON.stringify(f.dims)} are not [classes, dim]`);
  if (rows < 1) throw new GeometryError(`${what}: no classes (0 rows); give at least one ID class`);
  if (f.data.length !== rows * dim) throw new GeometryError(`${what}: dims say ${rows} x ${dim} = ${rows * dim} values, data holds ${f.data.length}`);
  if (expected && (rows !== expected[0] || dim !== expected[1])) {
    throw new GeometryError(`${what}: ${rows} x ${dim} does not match ${expectedWhat}: ${expected[0]} x ${expected[1]} (classes x dim)`);
  }
  if (Number.isFinite(tol)) {
    for (let i = 0; i < rows; i++) {
      const norm = Math.sqrt(rowDot(f.data, i, f.data, i, dim));
      if (!(Math.abs(norm - 1) <= tol)) throw new GeometryError(`${what}: row ${i} has L2 norm ${norm}; features must be L2-normalised`);
    }
  }
  return [rows, dim];
}

/** Summed in float64 in index order, exactly as the scoring matmul sums each logit. */
function rowDot(a: Float32Array, i: number, b: Float32Array, j: number, dim: number): number {
  let s = 0;
  for (let k = 0, ao = i * dim, bo = j * dim; k < dim; k++) s += a[ao + k] * b[bo + k];
  return s;
}

/** Exact cosine (normalised rows pass the tolerance check, not to the last ulp). */
function cosine(a: Float32Array, i: number, b: Float32Array, j: number, dim: number): number {
  return rowDot(a, i, b, j, dim) / Math.sqrt(rowDot(a, i, a, i, dim) * rowDot(b, j, b, j, dim));
}

function pairCosines(yes: Float32Array, no: Float32Array, classes: number, dim: number): Float64Array {
  return Float64Array.from({ length: classes }, (_, c) => cosine(yes, c, no, c, dim));
}
