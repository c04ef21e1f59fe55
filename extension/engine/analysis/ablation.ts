// Per-prompt ablation of CLIPN's "no" prompt pool (issue "analyses", item 3): CTW and ATD metrics
// of each prompt alone, of the pool without each prompt, and of a greedy forward selection, each
// with its change against the full pool. Cached image features in; only text is encoded.
//
//   ablateNoPool(input: AblationInput): Promise<AblationResult>
//
// A variant is a subset S of the pool, built as prompts.ts builds it:
//  - learned prompts: the no tower fed the yes templates with prompt_weights uniform over S
//    (promptWeights.subset through noFeaturesForMixes), ensembled per class;
//  - hand-written templates: each template's per-class no feature normalised, summed over S,
//    normalised (ensembleByClass with keep = S, reproduced bit for bit from one encoding).
// The yes side (logits, predicted class j*, softmax p) is shared by all variants, so ID accuracy
// does not depend on the no side: it is reported once, not per variant.
//
// Scores are scores.ts's at scale 100. CTW = sigmoid(L_j* - Lno_j*) is formed exactly as scores.ts
// forms it (float64 dot products rounded to float32 logits): bit-identical to scoreFeatures on the
// same features. ATD = sum_j p_j sigmoid(L_j - Lno_j): the j* term the same exact way, the other
// classes' terms from an onnxruntime graph (one float32 GEMM of K variants' class features against
// an image chunk baked into the session, then the sums), whose ~1e-5 logit error (scoring-graph.ts)
// leaves ATD within ~1e-5 relative of scores.ts (far less where the j* term dominates): metrics
// agree (tests: to 1e-9) unless an ID and an OOD score are that close. Above 0.5, ATD is taken as
// 1 - p_ood with p_ood summed alike, which keeps its digits near 1. Memory: the images and the
// off-j* softmax live in the sessions (N x (D + C) floats); intermediates hold chunkElements.
//
// No "linear trick" (per-template logits cached, subsets summed without a GEMM): ATD needs all
// N x C no-logits of each variant, the sigmoid pass over them costs about what the GEMM would
// save, and the cache would hold T x N x C floats (0.5 GB at 128 templates x 10k images x 100
// classes). Each variant costs a [C, D] ensemble plus its share of one batched GEMM.
//
// Greedy: from the empty set, each step scores S + u for every u outside S (one batched text pass
// for learned prompts) and keeps the best objective, the first pool position on ties. Step 1 is
// always taken, later ones only when strictly better; it stops at greedySteps or an exhausted
// pool. Each learned-prompt subset costs C x (yes templates) no-tower forwards: that dominates.
import { OrtBackend } from '../backend';
import type { GraphSession } from '../backend';
import { promptWeights } from '../encoder';
import type { ClipnModel, PromptMix } from '../encoder';
import { computeMetrics, idAccuracy } from '../metrics';
import { DataType, GraphBuilder } from '../onnx-graph';
import { checkTemplates, classPrompts, defaultTemplates, ensembleByClass, noFeaturesForMixes } from '../prompts';
import { createScores, matmulTransposed } from '../scores';

export type AblationPool =
  /** The model's learned "no" prompts; `indices` picks the pool (default all). */
  | { kind: 'learned'; indices?: readonly number[] }
  /** Hand-written "no" templates with `{}`: no tower without learned prompts (default), as handcraftedAblation. */
  | { kind: 'templates'; templates: readonly string[]; tower?: 'no' | 'yes'; mix?: PromptMix };

/** AUROC is maximised, FPR95 minimised. */
export interface AblationObjective { score: 'ctw' | 'atd'; metric: 'auroc' | 'fpr95' }
/** fpr95: CLIPN's, on the linearly interpolated ROC curve. */
export interface ScoreMetrics { auroc: number; fpr95: number; auprIn: number; auprOut: number }
export interface VariantMetrics { ctw: ScoreMetrics; atd: ScoreMetrics }

export interface AblationRow {
  /** Pool position (index into AblationResult.prompts). */
  prompt: number;
  label: string;
  metrics: VariantMetrics;
  /** metrics minus the full pool's (AUROC up: better; FPR95 up: worse). */
  change: VariantMetrics;
}

export interface GreedyStep extends Omit<AblationRow, 'prompt'> {
  step: number;
  added: number;
  /** Pool positions chosen so far, ascending. */
  prompts: number[];
  objective: number;
}

export interface AblationProgress { phase: 'text' | 'variants' | 'greedy'; done: number; total: number }

export interface AblationInput {
  model: ClipnModel;
  classes: readonly string[];
  /** Yes templates, also the no tower's texts for learned prompts (default the model's). */
  yesTemplates?: readonly string[];
  /** [idN, D] and [oodN, D] L2-normalised image features. */
  idFeatures: Float32Array;
  idN: number;
  oodFeatures: Float32Array;
  oodN: number;
  /** Class index per ID image, for idAccuracy only. */
  idLabels?: ArrayLike<number>;
  pool: AblationPool;
  /** Default ATD AUROC (CTW AUROC with a single ID class). */
  objective?: AblationObjective;
  /** At most this many greedy steps (default 8, as the notebook cell; 0: none). */
  greedySteps?: number;
  /** Prompts per text-encoder run (default 2048, measured fastest on the 2-core machine). */
  textBatchSize?: number;
  /** Runs the ATD graph (default: a CPU-only backend of its own, released at the end). */
  backend?: OrtBackend;
  /** Elements per ATD graph intermediate, K variants x C x image rows (default 2^22): bounds memory. */
  chunkElements?: number;
  signal?: AbortSignal;
  onProgress?: (p: AblationProgress) => void;
}

export interface AblationResult {
  kind: AblationPool['kind'];
  /** Pool labels: "learned #3" or the template. */
  prompts: string[];
  objective: AblationObjective;
  full: VariantMetrics;
  alone: AblationRow[];
  /** Empty for a one-prompt pool. */
  leaveOneOut: AblationRow[];
  greedy: { steps: GreedyStep[]; best?: { prompts: number[]; metrics: VariantMetrics }; stopped: 'no-improvement' | 'max-steps' | 'pool-exhausted' | 'off' };
  /** The same for every variant (predictions come from the yes side); only with idLabels. */
  idAccuracy?: number;
  degenerate: { atd?: string };
  notes: string[];
  counts: { textPrompts: number; variantsScored: number };
  /** Wall seconds: all text encoding; yes logits + graph session; scoring the rows; greedy scoring; total. */
  seconds: { text: number; setup: number; rows: number; greedy: number; total: number };
}

export class AblationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AblationError';
  }
}

/** CLIPN's inference scale (scores.ts's default). */
const SCALE = 100;
const DEFAULT_GREEDY_STEPS = 8;
/** Variants per scoring batch, and elements per graph intermediate (K x C x image rows). */
const VARIANTS_PER_BATCH = 16;
const CHUNK_ELEMENTS = 1 << 22;
/** Bound on exp()'s argument in the graph: keeps [p sigmoid(d)] e^-d finite (error <= p e^-85). */
const CLIP = 85;

// ---------------------------------------------------------------------------------------------
// Input checks: every message names the field.

function checkImages(x: Float32Array, n: number, d: number, field: string, count: string): void {
  if (!Number.isInteger(n) || n < 1) throw new AblationError(`${count} is ${n}: ${field} needs at least one image`);
  if (!(x instanceof Float32Array) || x.length !== n * d) throw new AblationError(`${field} has ${x?.length} values, expected ${count} ${n} x ${d} (the model's embed dim)`);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let k = i * d; k < (i + 1) * d; k++) s += x[k] * x[k];
    if (!(Math.abs(Math.sqrt(s) - 1) <= 1e-2)) throw new AblationError(`${field} row ${i} has L2 norm ${Math.sqrt(s)}; image features must be L2-normalised`);
  }
}

function poolPositions(pool: AblationPool, model: ClipnModel): number[] {
  if (pool?.kind === 'templates') {
    if (!Array.isArray(pool.templates) || pool.templates.length === 0) throw new AblationError('pool.templates is empty: give at least one "no" template such as "a photo of no {}."');
    checkTemplates(pool.templates, 'pool.templates: "no" template');
    return pool.templates.map((_, i) => i);
  }
  if (pool?.kind !== 'learned') throw new AblationError(`pool.kind must be "learned" or "templates" (got ${JSON.stringify((pool as { kind?: unknown })?.kind)})`);
  const p = model.numPrompts;
  if (!(p >= 1)) throw new AblationError('pool is "learned" but this model has no learned "no" prompts');
  const indices = pool.indices ?? Array.from({ length: p }, (_, i) => i);
  if (indices.length === 0) throw new AblationError('pool.indices is empty: name at least one learned prompt');
  for (const i of indices) {
    if (!Number.isInteger(i) || i < 0 || i >= p) throw new AblationError(`pool.indices: learned prompt ${i} does not exist (this model has ${p}: 0..${p - 1})`);
  }
  if (new Set(indices).size !== indices.length) throw new AblationError(`pool.indices names a prompt twice (${indices.join(', ')})`);
  return [...indices];
}

/** Every input check, before any text is encoded; returns the resolved options. */
function validate(input: AblationInput) {
  const { model, classes, idN, oodN } = input;
  if (!model || typeof model.embedDim !== 'number') throw new AblationError('model is missing: load one with ClipnModel.load');
  if (!Array.isArray(classes) || classes.length === 0) throw new AblationError('classes is empty: give the in-distribution class names');
  classes.forEach((name, i) => {
    if (typeof name !== 'string' || name.trim() === '') throw new AblationError(`classes[${i}] is an empty name`);
  });
  const yesTemplates = input.yesTemplates ?? defaultTemplates(model.manifest);
  if (yesTemplates.length === 0) throw new AblationError('yesTemplates is empty: give at least one template such as "a photo of a {}."');
  checkTemplates(yesTemplates, 'yesTemplates: template');
  checkImages(input.idFeatures, idN, model.embedDim, 'idFeatures', 'idN');
  checkImages(input.oodFeatures, oodN, model.embedDim, 'oodFeatures', 'oodN');
  if (input.idLabels && input.idLabels.length !== idN) throw new AblationError(`idLabels has ${input.idLabels.length} labels for idN = ${idN} images`);
  const positions = poolPositions(input.pool, model);
  const objective = input.objective ?? { score: classes.length === 1 ? 'ctw' : 'atd', metric: 'auroc' };
  if (!['ctw', 'atd'].includes(objective.score) || !['auroc', 'fpr95'].includes(objective.metric)) {
    throw new AblationError(`objective must be {score: "ctw" | "atd", metric: "auroc" | "fpr95"} (got ${JSON.stringify(objective)})`);
  }
  const maxSteps = input.greedySteps ?? DEFAULT_GREEDY_STEPS;
  if (!Number.isInteger(maxSteps) || maxSteps < 0) throw new AblationError(`greedySteps must be a non-negative integer (got ${maxSteps})`);
  const batchSize = input.textBatchSize ?? 2048;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new AblationError(`textBatchSize must be a positive integer (got ${batchSize})`);
  const chunkElements = input.chunkElements ?? CHUNK_ELEMENTS;
  if (!Number.isInteger(chunkElements) || chunkElements < 1) throw new AblationError(`chunkElements must be a positive integer (got ${chunkElements})`);
  return { yesTemplates, positions, objective, maxSteps, batchSize, chunkElements };
}

// ---------------------------------------------------------------------------------------------
// Pool features: the [C, D] no features of subsets of pool positions.

interface PoolFeatures {
  labels: string[];
  features(subsets: readonly number[][]): Promise<Float32Array[]>;
}

interface TextContext {
  model: ClipnModel;
  classes: readonly string[];
  yesTemplates: readonly string[];
  batchSize: number;
  signal?: AbortSignal;
  onProgress?: (p: AblationProgress) => void;
  spent: { seconds: number; prompts: number };
}

const key = (subset: readonly number[]) => subset.join();
const unique = (subsets: readonly number[][]) => [...new Map(subsets.map((s) => [key(s), s])).values()];

async function encoded<T>(ctx: TextContext, prompts: number, f: (opts: { batchSize: number; signal?: AbortSignal; onProgress: (p: { done: number; total: number }) => void }) => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const out = await f({ batchSize: ctx.batchSize, signal: ctx.signal, onProgress: ({ done, total }) => ctx.onProgress?.({ phase: 'text', done, total }) });
  ctx.spent.seconds += (performance.now() - t0) / 1000;
  ctx.spent.prompts += prompts;
  return out;
}

/** The pool encoded once; subsets summed from float64 unit rows in ensembleByClass's order. */
async function templatePool(ctx: TextContext, pool: Extract<AblationPool, { kind: 'templates' }>): Promise<PoolFeatures> {
  const { model, classes } = ctx;
  const [t, c, d] = [pool.templates.length, classes.length, model.embedDim];
  const prompts = classPrompts(classes, pool.templates);
  const raw = (await encoded(ctx, prompts.length, (o) => (pool.tower === 'yes' ? model.encodeTexts(prompts, o) : model.encodeTextsNo(prompts, pool.mix ?? promptWeights.none(), o)))).data;
  const unit = new Float64Array(c * t * d);
  for (let r = 0; r < c * t; r++) {
    let norm = 0;
    for (let j = r * d; j < (r + 1) * d; j++) norm += raw[j] * raw[j];
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let j = r * d; j < (r + 1) * d; j++) unit[j] = raw[j] * inv;
  }
  const acc = new Float64Array(d);
  const ensemble = (subset: readonly number[]): Float32Array => {
    const out = new Float32Array(c * d);
    for (let k = 0; k < c; k++) {
      acc.fill(0);
      for (const s of subset) for (let j = 0, b = (k * t + s) * d; j < d; j++) acc[j] += unit[b + j];
      let norm = 0;
      for (let j = 0; j < d; j++) norm += acc[j] * acc[j];
      const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
      for (let j = 0; j < d; j++) out[k * d + j] = acc[j] * inv;
    }
    return out;
  };
  return { labels: [...pool.templates], features: async (subsets) => subsets.map(ensemble) };
}

/**
 * Learned-prompt subsets: one no-tower pass per call for the subsets not held. The last few are
 * held (a greedy step's chosen subset is scored again); metrics are remembered by the Evaluator.
 */
function learnedPool(ctx: TextContext, indices: readonly number[]): PoolFeatures {
  const seen = new Map<string, Float32Array>();
  return {
    labels: indices.map((i) => `learned #${i}`),
    features: async (subsets) => {
      const missing = unique(subsets.filter((s) => !seen.has(key(s))));
      if (missing.length > 0) {
        const mixes = missing.map((s) => promptWeights.subset(s.map((p) => indices[p])));
        const n = missing.length * ctx.classes.length * ctx.yesTemplates.length;
        const feats = await encoded(ctx, n, (o) => noFeaturesForMixes(ctx.model, ctx.classes, mixes, { ...o, templates: ctx.yesTemplates }));
        missing.forEach((s, m) => seen.set(key(s), feats[m].data));
      }
      const out = subsets.map((s) => seen.get(key(s))!);
      for (const k of seen.keys()) if (seen.size > 2 * VARIANTS_PER_BATCH) seen.delete(k);
      return out;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Scoring variants against the fixed images and yes side.

/**
 * For K variants and a chunk of R images baked in (onnxruntime prepacks them once per session),
 * the sums over classes c != j* of p_c sigmoid(d_c) and of p_c sigmoid(-d_c): [2K, R]. The GEMM
 * is taken against Gno - G, which gives Lno - L = -d directly (as scoring-graph.ts).
 */
function buildRestGraph(images: Float32Array, rows: number, dim: number, pRestT: Float32Array, classes: number): Uint8Array {
  const g = new GraphBuilder('clipn_ablation_atd');
  const x = g.floats(images, [rows, dim], 'images');
  const negD = g.op1('Reshape', [g.op1('Gemm', ['no_minus_yes', x], { alpha: { float: SCALE }, transB: 1 }), g.int64s([-1, classes, rows])]);
  // Not onnxruntime's Sigmoid: its absolute error (~1e-7) ruins small probabilities (scoring-graph.ts).
  const e = g.op1('Exp', [g.op1('Clip', [negD, '', g.floats([CLIP], [], 'hi')])]);
  const yes = g.op1('Div', [g.floats(pRestT, [1, classes, rows], 'p_rest'), g.op1('Add', [e, g.floats([1], [], 'one')])]);
  const axes = g.int64s([1]);
  g.op1('Concat', [yes, g.op1('Mul', [yes, e])].map((v) => g.op1('ReduceSum', [v, axes], { keepdims: 0 })), { axis: 0 }, 'sums');
  const F = DataType.FLOAT;
  return g.build([{ name: 'no_minus_yes', elemType: F, shape: ['kc', dim] }], [{ name: 'sums', elemType: F, shape: ['k2', rows] }]);
}

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

class VariantScorer {
  scored = 0;
  /** Per image: j* and L_j* as scores.ts forms them, and the softmax probability at j*. */
  readonly predicted: Int32Array;
  private readonly lyStar: Float32Array;
  private readonly pStar: Float64Array;
  /** Image chunks with their ATD graph sessions (the chunk's images and off-j* softmax baked in). */
  private readonly chunks: Array<{ start: number; rows: number; session: Promise<GraphSession> }> = [];

  constructor(private readonly x: Float32Array, private readonly n: number, private readonly d: number,
    private readonly yes: Float32Array, private readonly c: number, backend: OrtBackend, private readonly chunkElements: number) {
    this.predicted = new Int32Array(n);
    this.lyStar = new Float32Array(n);
    this.pStar = new Float64Array(n);
    const rows = Math.max(1, Math.min(n, Math.floor(chunkElements / c)));
    const l = new Float32Array(rows * c);
    for (let start = 0; start < n; start += rows) {
      const r = Math.min(rows, n - start);
      matmulTransposed(x.subarray(start * d, (start + r) * d), r, yes, c, d, SCALE, l);
      const pT = new Float32Array(c * r); // [C, R]: the layout of the graph's sums
      for (let i = 0, o = 0; i < r; i++, o += c) {
        let jStar = 0;
        for (let j = 1; j < c; j++) if (l[o + j] > l[o + jStar]) jStar = j;
        let z = 0;
        for (let j = 0; j < c; j++) z += Math.exp(l[o + j] - l[o + jStar]);
        for (let j = 0; j < c; j++) if (j !== jStar) pT[j * r + i] = Math.exp(l[o + j] - l[o + jStar]) / z;
        [this.predicted[start + i], this.lyStar[start + i], this.pStar[start + i]] = [jStar, l[o + jStar], 1 / z];
      }
      const session = backend.sessionFromBuffer('ablation_atd', buildRestGraph(x.subarray(start * d, (start + r) * d), r, d, pT, c));
      session.catch(() => undefined); // awaited (and its error thrown) in score()
      this.chunks.push({ start, rows: r, session });
    }
  }

  /** d* = L_j* - Lno_j*, both logits as scores.ts forms them; four variants share each image row. */
  private margins(variants: readonly Float32Array[]): Float64Array[] {
    const { x, n, d } = this;
    const k = variants.length;
    const out = variants.map(() => new Float64Array(n));
    // Groups of four (the last padded with repeats), so four independent sums share each x load.
    const groups = Array.from({ length: Math.ceil(k / 4) }, (_, q) => [0, 1, 2, 3].map((u) => variants[Math.min(4 * q + u, k - 1)]));
    for (let i = 0; i < n; i++) {
      const xo = i * d;
      const go = this.predicted[i] * d;
      const ly = this.lyStar[i];
      for (let q = 0; q < groups.length; q++) {
        const g = groups[q];
        const g0 = g[0], g1 = g[1], g2 = g[2], g3 = g[3];
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let t = 0; t < d; t++) {
          const xv = x[xo + t];
          s0 += xv * g0[go + t];
          s1 += xv * g1[go + t];
          s2 += xv * g2[go + t];
          s3 += xv * g3[go + t];
        }
        const v = 4 * q;
        out[v][i] = ly - Math.fround(SCALE * s0);
        if (v + 1 < k) out[v + 1][i] = ly - Math.fround(SCALE * s1);
        if (v + 2 < k) out[v + 2][i] = ly - Math.fround(SCALE * s2);
        if (v + 3 < k) out[v + 3][i] = ly - Math.fround(SCALE * s3);
      }
    }
    return out;
  }

  /** Per-image CTW (and ATD) scores for each variant's [C, D] no features. */
  async score(variants: readonly Float32Array[], withAtd: boolean): Promise<Array<{ ctw: Float64Array; atd?: Float64Array }>> {
    const { n, d, c } = this;
    const k = variants.length;
    this.scored += k;
    const dStar = this.margins(variants);
    if (!withAtd) return dStar.map((ds) => ({ ctw: ds.map(sigmoid) }));
    const text = new Float32Array(k * c * d);
    variants.forEach((g, v) => {
      for (let j = 0; j < c * d; j++) text[v * c * d + j] = g[j] - this.yes[j];
    });
    const atd = variants.map(() => new Float64Array(n));
    for (const { start, rows, session } of this.chunks) {
      const per = Math.max(1, Math.floor(this.chunkElements / (c * rows)));
      for (let v0 = 0; v0 < k; v0 += per) {
        const m = Math.min(per, k - v0);
        const { data } = await (await session).run({ no_minus_yes: { type: 'float32', data: text.subarray(v0 * c * d, (v0 + m) * c * d), dims: [m * c, d] } }, 'sums');
        for (let v = 0; v < m; v++) {
          const [a, ds] = [atd[v0 + v], dStar[v0 + v]];
          for (let i = 0, row = start; i < rows; i++, row++) {
            const yesSum = data[v * rows + i] + this.pStar[row] / (1 + Math.exp(-ds[row]));
            a[row] = yesSum <= 0.5 ? yesSum : 1 - (data[(m + v) * rows + i] + this.pStar[row] / (1 + Math.exp(ds[row])));
          }
        }
      }
    }
    return dStar.map((ds, v) => ({ ctw: ds.map(sigmoid), atd: atd[v] }));
  }
}

// ---------------------------------------------------------------------------------------------

function summary(scores: Float64Array, nId: number): ScoreMetrics {
  const m = computeMetrics(scores.subarray(0, nId), scores.subarray(nId));
  return { auroc: m.auroc, fpr95: m.fpr95.interpolated, auprIn: m.auprIn, auprOut: m.auprOut };
}

function difference(a: VariantMetrics, b: VariantMetrics): VariantMetrics {
  const diff = (x: ScoreMetrics, y: ScoreMetrics): ScoreMetrics => ({ auroc: x.auroc - y.auroc, fpr95: x.fpr95 - y.fpr95, auprIn: x.auprIn - y.auprIn, auprOut: x.auprOut - y.auprOut });
  return { ctw: diff(a.ctw, b.ctw), atd: diff(a.atd, b.atd) };
}

/** Metrics of subsets of the pool, scored in batches and remembered per subset. */
class Evaluator {
  private readonly known = new Map<string, VariantMetrics>();

  constructor(private readonly scorer: VariantScorer, private readonly pool: PoolFeatures, private readonly idN: number, private readonly signal?: AbortSignal) {}

  private async batches(todo: number[][], withAtd: boolean, each: (s: number[], scores: { ctw: Float64Array; atd?: Float64Array }) => void, progress?: (done: number, total: number) => void) {
    for (let b = 0; b < todo.length; b += VARIANTS_PER_BATCH) {
      this.signal?.throwIfAborted();
      const batch = todo.slice(b, b + VARIANTS_PER_BATCH);
      const scores = await this.scorer.score(await this.pool.features(batch), withAtd);
      batch.forEach((s, i) => each(s, scores[i]));
      progress?.(Math.min(b + VARIANTS_PER_BATCH, todo.length), todo.length);
    }
  }

  async metrics(subsets: readonly number[][], progress?: (done: number, total: number) => void): Promise<VariantMetrics[]> {
    const todo = unique(subsets.filter((s) => !this.known.has(key(s))));
    await this.batches(todo, true, (s, sc) => this.known.set(key(s), { ctw: summary(sc.ctw, this.idN), atd: summary(sc.atd!, this.idN) }), progress);
    return subsets.map((s) => this.known.get(key(s))!);
  }

  /** The objective alone: one metric of one score per candidate (CTW needs no graph pass). */
  async objective(subsets: readonly number[][], o: AblationObjective): Promise<number[]> {
    const values = new Map<string, number>();
    for (const s of subsets) if (this.known.has(key(s))) values.set(key(s), this.known.get(key(s))![o.score][o.metric]);
    const todo = unique(subsets.filter((s) => !values.has(key(s))));
    await this.batches(todo, o.score === 'atd', (s, sc) => values.set(key(s), summary(sc[o.score]!, this.idN)[o.metric]));
    return subsets.map((s) => values.get(key(s))!);
  }
}

async function greedySelection(evaluator: Evaluator, p: number, maxSteps: number, o: AblationObjective, onProgress?: (p: AblationProgress) => void) {
  const steps: Array<Omit<GreedyStep, 'label' | 'change'>> = [];
  const better = (a: number, b: number) => (o.metric === 'auroc' ? a > b : a < b);
  let chosen: number[] = [];
  while (steps.length < maxSteps && chosen.length < p) {
    const candidates = Array.from({ length: p }, (_, u) => u).filter((u) => !chosen.includes(u));
    const subsets = candidates.map((u) => [...chosen, u].sort((a, b) => a - b));
    const values = await evaluator.objective(subsets, o);
    let best = 0;
    for (let i = 1; i < values.length; i++) if (better(values[i], values[best])) best = i;
    if (steps.length > 0 && !better(values[best], steps[steps.length - 1].objective)) return { steps, stopped: 'no-improvement' as const };
    chosen = subsets[best];
    const [metrics] = await evaluator.metrics([chosen]);
    steps.push({ step: steps.length + 1, added: candidates[best], prompts: chosen, objective: values[best], metrics });
    onProgress?.({ phase: 'greedy', done: steps.length, total: Math.min(maxSteps, p) });
  }
  return { steps, stopped: maxSteps === 0 ? ('off' as const) : chosen.length === p ? ('pool-exhausted' as const) : ('max-steps' as const) };
}

/** Ablation of a "no" prompt pool; see the module comment. */
export async function ablateNoPool(input: AblationInput): Promise<AblationResult> {
  const t0 = performance.now();
  const { yesTemplates, positions, objective, maxSteps, batchSize, chunkElements } = validate(input);
  const { model, classes, idN, oodN } = input;
  const [c, d] = [classes.length, model.embedDim];
  const degenerate = { atd: createScores(0, c).degenerate.atd };
  const notes = degenerate.atd ? [`ATD is degenerate: ${degenerate.atd}.${input.objective ? '' : ' The greedy objective defaults to CTW AUROC.'}`] : [];

  const ctx: TextContext = { model, classes, yesTemplates, batchSize, signal: input.signal, onProgress: input.onProgress, spent: { seconds: 0, prompts: 0 } };
  const yesPrompts = classPrompts(classes, yesTemplates);
  const yesRaw = await encoded(ctx, yesPrompts.length, (o) => model.encodeTexts(yesPrompts, o));
  const yes = ensembleByClass(yesRaw.data, d, c, yesTemplates.length).data;
  const pool = input.pool.kind === 'templates' ? await templatePool(ctx, input.pool) : learnedPool(ctx, positions);

  const tSetup = performance.now();
  const images = new Float32Array((idN + oodN) * d);
  images.set(input.idFeatures);
  images.set(input.oodFeatures, idN * d);
  const backend = input.backend ?? new OrtBackend({ executionProviders: ['cpu'] });
  try {
    const scorer = new VariantScorer(images, idN + oodN, d, yes, c, backend, chunkElements);
    const accuracy = input.idLabels ? idAccuracy(scorer.predicted.subarray(0, idN), input.idLabels) : undefined;
    if (accuracy !== undefined) notes.push(`ID accuracy ${(100 * accuracy).toFixed(2)}% for every variant: the predicted class comes from the yes side only`);
    const evaluator = new Evaluator(scorer, pool, idN, input.signal);
    const setup = (performance.now() - tSetup) / 1000;
    /** A phase's wall seconds without the text encoding inside it. */
    const phase = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
      const [w0, text0] = [performance.now(), ctx.spent.seconds];
      const out = await f();
      return [out, (performance.now() - w0) / 1000 - (ctx.spent.seconds - text0)];
    };

    const p = positions.length;
    const all = positions.map((_, i) => i);
    const rowSubsets = [all, ...all.map((i) => [i]), ...(p > 1 ? all.map((i) => all.filter((j) => j !== i)) : [])];
    const [[full, ...rest], rows] = await phase(() => evaluator.metrics(rowSubsets, (done, total) => input.onProgress?.({ phase: 'variants', done, total })));
    const row = (prompt: number, metrics: VariantMetrics): AblationRow => ({ prompt, label: pool.labels[prompt], metrics, change: difference(metrics, full) });
    const [greedy, greedySeconds] = await phase(() => greedySelection(evaluator, p, maxSteps, objective, input.onProgress));
    const steps = greedy.steps.map((s) => ({ ...s, label: pool.labels[s.added], change: difference(s.metrics, full) }));
    const last = steps[steps.length - 1];
    return {
      kind: input.pool.kind,
      prompts: pool.labels,
      objective,
      full,
      alone: rest.slice(0, p).map((m, i) => row(i, m)),
      leaveOneOut: rest.slice(p).map((m, i) => row(i, m)),
      greedy: { steps, best: last && { prompts: last.prompts, metrics: last.metrics }, stopped: greedy.stopped },
      idAccuracy: accuracy,
      degenerate,
      notes,
      counts: { textPrompts: ctx.spent.prompts, variantsScored: scorer.scored },
      seconds: { text: ctx.spent.seconds, setup, rows, greedy: greedySeconds, total: (performance.now() - t0) / 1000 },
    };
  } finally {
    if (!input.backend) await backend.dispose();
  }
}
