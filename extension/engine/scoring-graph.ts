// CLIPN scoring as a small ONNX graph built at run time and executed by onnxruntime, so the
// feature x text product runs on MLAS's GEMM (tens of GFLOP/s on 2 cores, against ~1 GMAC/s
// for the plain-TS matmul in scores.ts) and the softmax/exp passes on its vectorised kernels.
// The maths is scores.ts's (the spec's "Inference" section); scores.ts stays the reference and
// the fallback when onnxruntime cannot run the graph.
//
// Graph (N = images in a chunk, C = classes, D = feature dim; s = scale, f = 1/(s T)):
//   L, Lno - L = Gemm(F, G, alpha = s, transB), Gemm(F, Gno - G, ...)  [N, C] each
//                (or one Gemm against [G; Gno - G] and a Split: `fused`)
//   j*         = ArgMax(L) (first index on ties)                   [N, 1]
//   P          = Softmax(L)                                        p_j
//   den        = 1 + Exp(Lno - L)                                  1 / p_yes_j
//   atd        = sum_j P / den ;  pMax = P[j*]
//   msp        = f = 1: pMax ; else Softmax(f L)[j*]
//   out        = Concat(j*, L[j*], msp, atd, pMax, p_yes[j*] [, 1/den] [, P])   [N, K]
// The caller then recomputes L[j*] and Lno[j*] exactly (float64 dot products of two rows) and
// derives d*, CTW = sigmoid(d*), MaxLogit = f L[j*], Energy = f L[j*] + log(1/msp) from them,
// correcting the normalisers and ATD's j* term for the GEMM's error at j*.
// Everything is packed into one float32 output so one run returns all of it (j* < 2^24 is
// exact in float32). Rows are processed in chunks so memory stays bounded.
import * as crypto from 'node:crypto';
import { OrtBackend } from './backend';
import type { GraphSession, TensorData } from './backend';
import { DataType, GraphBuilder } from './onnx-graph';
import type { ValueInfo } from './onnx-graph';
import { createScores, scoreFeatures, ScoresError, validateFeatureInput } from './scores';
import type { FeatureInput, FeatureScoreOptions, ImageScores, ScoreOptions } from './scores';

const DEFAULT_SCALE = 100;
/** Rows per graph run: 1024 x 1000 classes keeps each [N, C] intermediate at 4 MB (L3-sized). */
export const DEFAULT_GRAPH_CHUNK_ROWS = 1024;

/** Per-image columns of the packed output, in order. */
export const SCORE_COLUMNS = ['predicted', 'lStar', 'msp', 'atd', 'pMax', 'pYesStar'] as const;
const K0 = SCORE_COLUMNS.length;

export interface ScoringGraphSpec {
  classes: number;
  dim: number;
  /** s in logits = s cos (default 100). */
  scale?: number;
  /** T of the softmax baselines on cos/T (default 1). */
  temperature?: number;
  /** Append the N x C matrix of p_yes to each output row. */
  keepPYes?: boolean;
  /** Append the N x C softmax matrix p (of the scale-s logits) to each output row. */
  keepP?: boolean;
  /**
   * One Gemm against [G; Gno - G] then a Split (true), or one Gemm per text matrix (false, the
   * default: no [N, 2C] intermediate to split; the two measured within noise of each other in
   * CPU time on the 2-core EPYC).
   */
  fused?: boolean;
  /**
   * The text features baked into the graph as initializers (onnxruntime prepacks them once
   * per session; measured 10-25% less CPU time than feeding them with every chunk). Without
   * it the graph takes inputs text_yes [C, D] and text_no [C, D].
   */
  text?: { yes: Float32Array; no: Float32Array };
}

export interface ScoringGraph {
  model: Uint8Array;
  /** Output row width: 6 score columns (SCORE_COLUMNS) + C (p_yes, if kept) + C (p, if kept). */
  width: number;
  /** Graph input names; textYes/textNo are absent when the text is baked in. */
  inputs: { image: string; textYes?: string; textNo?: string };
  output: string;
}

/** Builds the scoring graph as an ONNX model (opset 17). */
export function buildScoringGraph(spec: ScoringGraphSpec): ScoringGraph {
  const { classes: c, dim: d } = spec;
  if (!Number.isInteger(c) || c < 1) throw new ScoresError(`need at least one ID class (got ${c})`);
  if (!Number.isInteger(d) || d < 1) throw new ScoresError(`feature dim must be a positive integer (got ${d})`);
  const scale = spec.scale ?? DEFAULT_SCALE;
  const t = spec.temperature ?? 1;
  if (!(scale > 0) || !(t > 0)) throw new ScoresError(`scale and temperature must be positive (got ${scale}, ${t})`);
  const factor = 1 / (scale * t);
  const g = new GraphBuilder('clipn_scores');
  const F = 'image';
  const inputs: ScoringGraph['inputs'] = { image: F };
  const graphInputs: ValueInfo[] = [{ name: F, elemType: DataType.FLOAT, shape: ['N', d] }];
  const alpha = { float: scale };
  const fused = spec.fused ?? false;

  let G: string;
  let GD: string;
  let both: string | undefined;
  if (spec.text) {
    const { yes, no } = spec.text;
    if (yes.length !== c * d || no.length !== c * d) {
      throw new ScoresError(`text features: expected ${c} x ${d} values each, got ${yes.length} (yes) and ${no.length} (no)`);
    }
    // The second product is taken against Gno - G: it yields Lno - L directly (one pass fewer
    // than forming Lno and subtracting, and without the cancellation of two rounded logits).
    const diff = new Float32Array(c * d);
    for (let i = 0; i < diff.length; i++) diff[i] = no[i] - yes[i];
    if (fused) {
      const cat = new Float32Array(2 * c * d);
      cat.set(yes);
      cat.set(diff, c * d);
      both = g.floats(cat, [2 * c, d], 'text');
    }
    G = fused ? '' : g.floats(yes, [c, d], 'text_yes');
    GD = fused ? '' : g.floats(diff, [c, d], 'text_no_minus_yes');
  } else {
    G = inputs.textYes = 'text_yes';
    inputs.textNo = 'text_no';
    graphInputs.push({ name: G, elemType: DataType.FLOAT, shape: [c, d] }, { name: 'text_no', elemType: DataType.FLOAT, shape: [c, d] });
    GD = g.op1('Sub', ['text_no', G]);
    if (fused) both = g.op1('Concat', [G, GD], { axis: 0 });
  }
  let L: string;
  let negD: string; // Lno - L = -d
  if (both) {
    const y = g.op1('Gemm', [F, both], { alpha, transB: 1 });
    [L, negD] = g.op('Split', [y, g.int64s([c, c])], { axis: 1 }, { outputs: 2 });
  } else {
    L = g.op1('Gemm', [F, G], { alpha, transB: 1 });
    negD = g.op1('Gemm', [F, GD], { alpha, transB: 1 });
  }
  const jStar = g.op1('ArgMax', [L], { axis: 1, keepdims: 1, select_last_index: 0 });
  const at = (x: string) => g.op1('GatherElements', [x, jStar], { axis: 1 });
  const P = g.op1('Softmax', [L], { axis: 1 });
  // p_yes = 1 / (1 + exp(Lno - L)). Not onnxruntime's Sigmoid: MLAS evaluates it with a
  // rational approximation whose error is absolute (~1e-7), i.e. relative errors of 1e-4 at
  // p_yes ~ 1e-3 and far worse below (measured); Exp is accurate to an ulp.
  const den = g.op1('Add', [g.op1('Exp', [negD]), g.floats([1], [], 'one')]);
  const atd = g.op1('ReduceSum', [g.op1('Div', [P, den]), g.int64s([1])], { keepdims: 1 });
  const pMax = at(P);
  const lStar = at(L);
  // The baseline softmax at j* (msp); the argmax is preserved by a positive factor f.
  const msp = factor === 1 ? pMax : at(g.op1('Softmax', [g.op1('Mul', [L, g.floats([factor], [], 'factor')])], { axis: 1 }));
  const pred = g.op1('Cast', [jStar], { to: DataType.FLOAT });
  const columns = [pred, lStar, msp, atd, pMax, g.op1('Reciprocal', [at(den)])];
  if (spec.keepPYes) columns.push(g.op1('Reciprocal', [den]));
  if (spec.keepP) columns.push(P);
  const width = K0 + (spec.keepPYes ? c : 0) + (spec.keepP ? c : 0);
  g.op1('Concat', columns, { axis: 1 }, 'scores');
  const model = g.build(graphInputs, [{ name: 'scores', elemType: DataType.FLOAT, shape: ['N', width] }]);
  return { model, width, inputs, output: 'scores' };
}

// ---------------------------------------------------------------------------------------------
// Sessions: one per (backend, graph shape/options), created on first use.

let defaultBackend: OrtBackend | undefined;

/**
 * The backend used when the caller passes none: CPU only. Probing WebGPU costs ~0.7 s where no
 * adapter exists (backend.ts), a third of the 2 s budget for scoring 50k x 1k images. Pass a
 * backend (e.g. the model's) to use its provider order and remembered provider failures.
 */
function getDefaultBackend(): OrtBackend {
  defaultBackend ??= new OrtBackend({ executionProviders: ['cpu'] });
  return defaultBackend;
}

type CachedGraph = { session: GraphSession; graph: ScoringGraph };
const sessionCache = new WeakMap<OrtBackend, Map<string, Promise<CachedGraph>>>();
/** Sessions kept per backend (each with baked-in text holds 2 x C x D floats, prepacked). */
const MAX_CACHED_SESSIONS = 4;

/** Content hash of the text features: a session is reused only for identical values. */
function textDigest(text: { yes: Float32Array; no: Float32Array }): string {
  const h = crypto.createHash('sha1');
  for (const t of [text.yes, text.no]) h.update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
  return h.digest('hex');
}

function specKey(s: ScoringGraphSpec): string {
  return JSON.stringify([
    s.classes, s.dim, s.scale ?? DEFAULT_SCALE, s.temperature ?? 1, !!s.keepPYes, !!s.keepP, s.fused ?? false,
    s.text ? textDigest(s.text) : null,
  ]);
}

/**
 * The session for a scoring graph on `backend`, cached per backend and spec (text content
 * included): the least recently used of more than MAX_CACHED_SESSIONS is released.
 */
export function scoringSession(spec: ScoringGraphSpec, backend: OrtBackend = getDefaultBackend()): Promise<CachedGraph> {
  let map = sessionCache.get(backend);
  if (!map) {
    map = new Map();
    sessionCache.set(backend, map);
  }
  const cache = map;
  const key = specKey(spec);
  let pending = cache.get(key);
  if (pending) {
    cache.delete(key); // re-insert: Map order is the recency order
  } else {
    const graph = buildScoringGraph(spec);
    pending = backend.sessionFromBuffer('scores', graph.model).then((session) => ({ session, graph }));
    pending.catch(() => cache.delete(key));
    while (cache.size >= MAX_CACHED_SESSIONS) {
      const [oldKey, old] = cache.entries().next().value as [string, Promise<CachedGraph>];
      cache.delete(oldKey);
      old.then((o) => o.session.release(), () => undefined);
    }
  }
  cache.set(key, pending);
  return pending;
}

/** Drops a spec's cached session without releasing it. */
function forgetScoringSession(spec: ScoringGraphSpec, backend: OrtBackend = getDefaultBackend()): void {
  sessionCache.get(backend)?.delete(specKey(spec));
}

// ---------------------------------------------------------------------------------------------
// Scoring.

export interface GraphScoreOptions extends FeatureScoreOptions {
  /** 'auto' (default): the ONNX graph, the TS reference if onnxruntime fails; 'onnx': graph or throw; 'ts': reference. */
  engine?: 'auto' | 'onnx' | 'ts';
  /** Backend for the graph session (default: a shared CPU-only one). */
  backend?: OrtBackend;
  /** Also return the n x classes softmax matrix p (float32). */
  keepP?: boolean;
  /** See ScoringGraphSpec.fused. */
  fused?: boolean;
  /** Bake the text features into the graph (default true; see ScoringGraphSpec.text). */
  textAsInitializers?: boolean;
}

export interface EngineScores extends ImageScores {
  /** n x classes softmax probabilities of the scale-s logits, when keepP was set (graph path). */
  p?: Float32Array;
  /** Which path computed the scores. */
  engine: 'onnx' | 'ts';
  /** Why the graph path was not used, when engine is 'ts' under 'auto'. */
  fallbackReason?: string;
}

/** Scores through the ONNX graph (no fallback). Inputs are assumed validated. */
export async function scoreFeaturesGraph(input: FeatureInput, opts: GraphScoreOptions = {}): Promise<EngineScores> {
  const { image, n, dim, textYes, textNo, classes: c } = input;
  const baked = opts.textAsInitializers ?? true;
  const spec: ScoringGraphSpec = {
    classes: c, dim, scale: opts.scale, temperature: opts.temperature, keepPYes: opts.keepPYes, keepP: opts.keepP,
    fused: opts.fused, text: baked ? { yes: textYes, no: textNo } : undefined,
  };
  let { session, graph } = await scoringSession(spec, opts.backend);
  const scale = opts.scale ?? DEFAULT_SCALE;
  const factor = 1 / (scale * (opts.temperature ?? 1));
  const out: EngineScores = { ...createScores(n, c, opts as ScoreOptions), engine: 'onnx' };
  const p = opts.keepP ? new Float32Array(n * c) : undefined;
  if (p) out.p = p;
  const chunk = Math.max(1, Math.min(n, opts.chunkRows ?? DEFAULT_GRAPH_CHUNK_ROWS));
  const w = graph.width;
  const feeds: Record<string, TensorData> = {};
  if (graph.inputs.textYes) feeds[graph.inputs.textYes] = { type: 'float32', data: textYes, dims: [c, dim] };
  if (graph.inputs.textNo) feeds[graph.inputs.textNo] = { type: 'float32', data: textNo, dims: [c, dim] };
  let retried = false;
  for (let r0 = 0; r0 < n; r0 += chunk) {
    const rows = Math.min(chunk, n - r0);
    feeds[graph.inputs.image] = { type: 'float32', data: image.subarray(r0 * dim, (r0 + rows) * dim), dims: [rows, dim] };
    let res;
    try {
      res = await session.run(feeds, graph.output);
    } catch (err) {
      // A cached session released behind the cache's back (its backend was disposed, a caller
      // released it, or the LRU evicted it mid-call): forget it and open a new one, once.
      if (retried || !/session was released/.test(String((err as Error)?.message))) throw err;
      retried = true;
      forgetScoringSession(spec, opts.backend);
      ({ session, graph } = await scoringSession(spec, opts.backend));
      res = await session.run(feeds, graph.output);
    }
    const y = res.data;
    if (res.dims[0] !== rows || res.dims[1] !== w) {
      throw new ScoresError(`scoring graph returned [${res.dims.join(', ')}], expected [${rows}, ${w}]`);
    }
    for (let r = 0; r < rows; r++) {
      const o = r * w;
      const i = r0 + r;
      const j = y[o];
      // Refine at the predicted class: the two logits exactly as scores.ts forms them (float64
      // dot product, rounded to float32 once). onnxruntime's GEMM accumulates in float32 and is
      // off by ~1e-5 at |logit| ~ 20; this makes d*, CTW and MaxLogit exact and corrects the
      // softmax normalisers for the error of their common shift L[j*] (2 x D MACs per image).
      const f0 = i * dim;
      const g0 = j * dim;
      let sy = 0;
      let sn = 0;
      for (let k = 0; k < dim; k++) {
        const x = image[f0 + k];
        sy += x * textYes[g0 + k];
        sn += x * textNo[g0 + k];
      }
      const ly = Math.fround(scale * sy);
      const dStar = ly - Math.fround(scale * sn);
      const shift = ly - y[o + 1]; // exact L[j*] - onnxruntime's
      // Z = sum_j exp(f (L_j - L[j*])) = 1 + (1/p[j*] - 1); moving L[j*] by `shift` scales the rest.
      const zb = 1 + (1 / y[o + 2] - 1) * Math.exp(-factor * shift);
      // ATD = (p_yes* + S) / (1 + Z') with S, Z' the sums over the other classes: they scale by
      // exp(-shift), and p_yes* is replaced by its exact value.
      const zRest = 1 / y[o + 4] - 1;
      const sRest = y[o + 3] * (1 + zRest) - y[o + 5];
      const e = Math.exp(-shift);
      const pYesStar = 1 / (1 + Math.exp(-dStar));
      const atd = (pYesStar + sRest * e) / (1 + zRest * e);
      out.predicted[i] = j;
      out.msp[i] = 1 / zb;
      out.maxLogit[i] = ly * factor;
      out.energy[i] = ly * factor + Math.log(zb);
      out.ctw[i] = pYesStar;
      out.atd[i] = atd;
      // Decisions as scores.ts makes them: CTW on the logit margin's sign, ATD on
      // p_ood = 1 - atd against the largest class probability 1 / (1 + Z').
      out.ctwIsOod[i] = dStar < 0 ? 1 : 0;
      out.atdIsOod[i] = 1 - atd > 1 / (1 + zRest * e) ? 1 : 0;
    }
    let col = K0;
    if (out.pYes) {
      for (let r = 0; r < rows; r++) out.pYes.set(y.subarray(r * w + col, r * w + col + c), (r0 + r) * c);
      col += c;
    }
    if (p) {
      for (let r = 0; r < rows; r++) p.set(y.subarray(r * w + col, r * w + col + c), (r0 + r) * c);
    }
  }
  return out;
}

/**
 * The engine's scoring entry point: features in, per-image scores out. Uses the ONNX graph by
 * default and falls back to scores.ts's plain-TS path when onnxruntime cannot create or run
 * the graph (the reason is returned in fallbackReason). Invalid inputs throw ScoresError on
 * either path. `keepP` needs the graph path (the reference path does not produce p).
 */
export async function scoreImageFeatures(input: FeatureInput, opts: GraphScoreOptions = {}): Promise<EngineScores> {
  validateFeatureInput(input, opts);
  const engine = opts.engine ?? 'auto';
  if (engine === 'ts') return { ...scoreFeatures(input, { ...opts, normTolerance: Infinity }), engine: 'ts' };
  if (input.n === 0) return { ...createScores(0, input.classes, opts), engine: 'onnx', ...(opts.keepP ? { p: new Float32Array(0) } : {}) };
  try {
    return await scoreFeaturesGraph(input, opts);
  } catch (err) {
    if (engine === 'onnx' || err instanceof ScoresError) throw err;
    const reason = String((err as Error)?.message ?? err);
    return { ...scoreFeatures(input, { ...opts, normTolerance: Infinity }), engine: 'ts', fallbackReason: reason };
  }
}
