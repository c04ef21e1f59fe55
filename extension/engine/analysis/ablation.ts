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
// classes' terms from one float32 GEMM of K variants' class features against the images and then
// the sums: fused in the native kernel where it is built (atd-native.ts), else an onnxruntime
// graph over tiles of images (atd-graph.ts). Their ~1e-5 logit error (scoring-graph.ts) leaves
// ATD within ~1e-5 relative of scores.ts (far less where the j* term dominates): metrics agree
// (tests: to 1e-9) unless an ID and an OOD score are that close. Above 0.5, ATD is taken as 1 - p_ood with
// p_ood summed alike, which keeps its digits near 1. The metrics are computeMetrics' to the bit
// (metrics.ts detectionMetricsOfSorted). Memory: the scoring workers hold the images, float64
// copies and the off-j* softmax (N x (3D + C) floats in all), each graph run chunkElements per
// worker, and each batch in flight its scores (2 x K x N doubles).
//
// No "linear trick" (per-template logits cached, subsets summed without a GEMM): ATD needs all
// N x C no-logits of each variant, and the cache would hold T x N x C floats (0.5 GB at 128
// templates x 10k images x 100 classes). Measured on the 2-core machine: forming 16 variants'
// no-logits for a 327-row tile from two cached tables each (one JS pass) plus the elementwise
// graph took 3.5-4.7 ms, the GEMM graph 2.7-3.3 ms (its GEMM, K = 128, runs near the core's FMA
// peak; the tables' memory traffic does not). Each variant costs a [C, D] ensemble plus its
// share of one batched GEMM.
//
// Greedy: from the empty set, each step scores S + u for every u outside S (one batched text pass
// for learned prompts) and keeps the best objective, the first pool position on ties. Step 1 is
// always taken, later ones only when strictly better; it stops at greedySteps or an exhausted
// pool. Each learned-prompt subset costs C x (yes templates) no-tower forwards: that dominates.
//
// Pieces: ablation-pools.ts builds variants' features, ablation-evaluator.ts batches them and runs
// the greedy selection, variant-scorer.ts scores them in worker threads (ablation-worker.ts,
// variant-math.ts, atd-graph.ts) and keeps its workers for the next run on the same images
// (releaseAblationScorers frees them at once), variant-memo.ts remembers variants' metrics across
// runs (input.memo; a kernel keeps one).
import * as os from 'node:os';
import type { ClipnModel, PromptMix } from '../encoder';
import { idAccuracy } from '../metrics';
import { checkTemplates, classPrompts, defaultTemplates, ensembleByClass } from '../prompts';
import { createScores } from '../scores';
import { noteOnCutTemplates } from '../template-cuts';
import { Evaluator, greedySelection } from './ablation-evaluator';
import type { AblationMemo } from './ablation-evaluator';
import { encoded, learnedPool, templatePool, VARIANTS_PER_BATCH } from './ablation-pools';
import type { TextContext } from './ablation-pools';
import { nativeKernels } from './native-kernels';
import { digest } from './variant-memo';
import { SCALE } from './variant-math';
import type { ScoreMetrics, VariantMetrics } from './variant-math';
import { CHUNK_ELEMENTS, keepScorer, takeKeptScorer, VariantScorer } from './variant-scorer';
export { releaseAblationScorers } from './variant-scorer';
export type { AblationMemo } from './ablation-evaluator';

export type AblationPool =
  /** The model's learned "no" prompts; `indices` picks the pool (default all). */
  | { kind: 'learned'; indices?: readonly number[] }
  /** Hand-written "no" templates with `{}`: no tower without learned prompts (default), as handcraftedAblation. */
  | { kind: 'templates'; templates: readonly string[]; tower?: 'no' | 'yes'; mix?: PromptMix };

/** AUROC is maximised, FPR95 minimised. */
export interface AblationObjective { score: 'ctw' | 'atd'; metric: 'auroc' | 'fpr95' }
/** ScoreMetrics.fpr95 is CLIPN's, on the linearly interpolated ROC curve. */
export type { ScoreMetrics, VariantMetrics } from './variant-math';

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
  /**
   * Prompts per text-encoder run (default 512: with the model's text workers, one intra-op thread
   * each, 256-512 ran ~15% faster than 2048 on the 2-core machine, whose L2 holds a 512-row run).
   */
  textBatchSize?: number;
  /** onnxruntime providers for the ATD graph, tried in order in each scoring worker (default ['cpu']). */
  executionProviders?: readonly string[];
  /**
   * With 'cpu' first among the providers, the ATD sums by the native kernel where it is built and
   * the CPU has AVX2/FMA (atd-native.ts, native-kernels.ts; default true). false: always the
   * onnxruntime graph.
   */
  nativeAtd?: boolean;
  /** Scoring worker threads, each with a share of the images (default: the cores, at most 8). */
  scoringWorkers?: number;
  /** Elements per ATD graph intermediate, variants x C x image rows (default 2^19): bounds memory per worker. */
  chunkElements?: number;
  /**
   * Variants' metrics remembered across runs (a kernel keeps one): a variant whose features,
   * images and yes side are unchanged is not scored again. Default none.
   */
  memo?: AblationMemo;
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
  /** variantsScored: computed in this run; variantsFromMemo: taken from `memo`. */
  counts: { textPrompts: number; variantsScored: number; variantsFromMemo: number };
  /** Wall seconds: all text encoding; the wait for the scoring workers' start after the pool's text (they start beside it; ~0 with the last run's kept scorer); scoring the rows; greedy scoring; total. */
  seconds: { text: number; setup: number; rows: number; greedy: number; total: number };
}

export class AblationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AblationError';
  }
}

const DEFAULT_GREEDY_STEPS = 8;
const MAX_WORKERS = 8;

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
  const batchSize = input.textBatchSize ?? 512;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new AblationError(`textBatchSize must be a positive integer (got ${batchSize})`);
  const chunkElements = input.chunkElements ?? CHUNK_ELEMENTS;
  if (!Number.isInteger(chunkElements) || chunkElements < 1) throw new AblationError(`chunkElements must be a positive integer (got ${chunkElements})`);
  const workers = input.scoringWorkers ?? Math.min(MAX_WORKERS, os.availableParallelism());
  if (!Number.isInteger(workers) || workers < 1) throw new AblationError(`scoringWorkers must be a positive integer (got ${workers})`);
  const providers = input.executionProviders ?? ['cpu'];
  if (!Array.isArray(providers) || providers.length === 0) throw new AblationError('executionProviders is empty: give e.g. ["cpu"]');
  const nativeAtd = input.nativeAtd !== false && providers[0] === 'cpu' && nativeKernels() !== undefined;
  return { yesTemplates, positions, objective, maxSteps, batchSize, chunkElements, workers, providers, nativeAtd };
}

// ---------------------------------------------------------------------------------------------

function difference(a: VariantMetrics, b: VariantMetrics): VariantMetrics {
  const diff = (x: ScoreMetrics, y: ScoreMetrics): ScoreMetrics => ({ auroc: x.auroc - y.auroc, fpr95: x.fpr95 - y.fpr95, auprIn: x.auprIn - y.auprIn, auprOut: x.auprOut - y.auprOut });
  return { ctw: diff(a.ctw, b.ctw), atd: diff(a.atd, b.atd) };
}

/** Ablation of a "no" prompt pool; see the module comment. */
export async function ablateNoPool(input: AblationInput): Promise<AblationResult> {
  const t0 = performance.now();
  const { yesTemplates, positions, objective, maxSteps, batchSize, chunkElements, workers, providers, nativeAtd } = validate(input);
  const { model, classes, idN, oodN } = input;
  const [c, d] = [classes.length, model.embedDim];
  const degenerate = { atd: createScores(0, c).degenerate.atd };
  const notes = degenerate.atd ? [`ATD is degenerate: ${degenerate.atd}.${input.objective ? '' : ' The greedy objective defaults to CTW AUROC.'}`] : [];
  const cutNote = (templates: readonly string[], what: string) => noteOnCutTemplates(model.tokenizer, classes, templates, what);
  notes.push(...[input.pool.kind === 'templates' && cutNote(input.pool.templates, 'pool templates'), cutNote(yesTemplates, '"yes" templates')].filter((n): n is string => !!n));

  const ctx: TextContext = { model, classes, yesTemplates, batchSize, signal: input.signal, onProgress: input.onProgress, spent: { seconds: 0, prompts: 0 } };
  const yesPrompts = classPrompts(classes, yesTemplates);
  const yesRaw = await encoded(ctx, yesPrompts.length, (o) => model.encodeTexts(yesPrompts, o));
  const yes = ensembleByClass(yesRaw.data, d, c, yesTemplates.length).data;
  const images = new Float32Array((idN + oodN) * d);
  images.set(input.idFeatures);
  images.set(input.oodFeatures, idN * d);
  // How the ATD sums are computed is part of the context: another provider, or the native kernel, gives other float32 sums.
  const context = digest(images, yes, `idN ${idN} scale ${SCALE}`, `providers ${providers.join()}${nativeAtd ? ' native atd' : ''}`);
  const scorerKey = `${context}|chunk ${chunkElements} batch ${VARIANTS_PER_BATCH} workers ${workers}`;
  // Started before the pool's text encoding, which runs in the model's text workers (or the
  // calling thread's session) meanwhile: the scorer's setup is mostly its workers' start.
  const starting = takeKeptScorer(scorerKey) ?? VariantScorer.create({
    x: images, n: idN + oodN, d, idN, yes, c, executionProviders: providers, nativeAtd, chunkElements, batchVariants: VARIANTS_PER_BATCH, workers,
  });
  Promise.resolve(starting).catch(() => undefined); // awaited below, or closed in finally
  let scorer: VariantScorer | undefined;
  let finished = false;
  let setup = 0;
  try {
    const pool = input.pool.kind === 'templates' ? await templatePool(ctx, input.pool) : learnedPool(ctx, positions);
    const tSetup = performance.now();
    scorer = await starting;
    setup = (performance.now() - tSetup) / 1000;
    const scored0 = scorer.scored;
    const accuracy = input.idLabels ? idAccuracy(scorer.predicted.subarray(0, idN), input.idLabels) : undefined;
    if (accuracy !== undefined) notes.push(`ID accuracy ${(100 * accuracy).toFixed(2)}% for every variant: the predicted class comes from the yes side only`);
    const memo = input.memo && { memo: input.memo, context };
    const evaluator = new Evaluator(scorer, pool, memo, input.signal);
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
    finished = true;
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
      counts: { textPrompts: ctx.spent.prompts, variantsScored: scorer.scored - scored0, variantsFromMemo: evaluator.fromMemo },
      seconds: { text: ctx.spent.seconds, setup, rows, greedy: greedySeconds, total: (performance.now() - t0) / 1000 },
    };
  } finally {
    // A run that failed or was aborted may leave batches in the workers: that scorer is not reused.
    if (scorer && finished) keepScorer(scorerKey, scorer);
    else if (scorer) await scorer.close();
    else await Promise.resolve(starting).then((s) => s.close(), () => undefined);
  }
}
