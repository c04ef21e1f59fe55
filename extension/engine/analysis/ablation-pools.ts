// The "no" pool of an ablation as features: the [C, D] no features of any subset of pool
// positions, built as prompts.ts builds them, with the text encoding timed and counted.
//  - hand-written templates: the pool encoded once; a subset's per-class features are its
//    templates' unit features summed in float64 in ensembleByClass's order and normalised;
//  - learned prompts: the no tower fed the yes templates with prompt_weights uniform over the
//    subset (noFeaturesForMixes), one pass per call for the subsets not held.
import { promptWeights } from '../encoder';
import type { ClipnModel } from '../encoder';
import { classPrompts, noFeaturesForMixes } from '../prompts';
import type { AblationPool, AblationProgress } from './ablation';

/** Variants per scoring batch (the learned pool holds the last two batches' features). */
export const VARIANTS_PER_BATCH = 16;
/** Largest table of running template sums kept (bytes). */
const PREFIX_BYTES = 64 * 1024 * 1024;

export interface PoolFeatures {
  labels: string[];
  features(subsets: readonly number[][]): Promise<Float32Array[]>;
}

export interface TextContext {
  model: ClipnModel;
  classes: readonly string[];
  yesTemplates: readonly string[];
  batchSize: number;
  signal?: AbortSignal;
  onProgress?: (p: AblationProgress) => void;
  spent: { seconds: number; prompts: number };
}

export const key = (subset: readonly number[]) => subset.join();
export const unique = (subsets: readonly number[][]) => [...new Map(subsets.map((s) => [key(s), s])).values()];

export async function encoded<T>(ctx: TextContext, prompts: number, f: (opts: { batchSize: number; signal?: AbortSignal; onProgress: (p: { done: number; total: number }) => void }) => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const out = await f({ batchSize: ctx.batchSize, signal: ctx.signal, onProgress: ({ done, total }) => ctx.onProgress?.({ phase: 'text', done, total }) });
  ctx.spent.seconds += (performance.now() - t0) / 1000;
  ctx.spent.prompts += prompts;
  return out;
}

/** The pool encoded once; subsets summed from float64 unit rows in ensembleByClass's order. */
export async function templatePool(ctx: TextContext, pool: Extract<AblationPool, { kind: 'templates' }>): Promise<PoolFeatures> {
  const { model, classes } = ctx;
  const [t, c, d] = [pool.templates.length, classes.length, model.embedDim];
  const raw = (await encoded(ctx, c * t, (o) => (pool.tower === 'yes'
    ? model.encodeTexts(classPrompts(classes, pool.templates), o)
    : model.encodeClassPromptsNo(classes, pool.templates, [pool.mix ?? promptWeights.none()], o)))).data;
  const unit = new Float64Array(c * t * d);
  for (let r = 0; r < c * t; r++) {
    let norm = 0;
    for (let j = r * d; j < (r + 1) * d; j++) norm += raw[j] * raw[j];
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let j = r * d; j < (r + 1) * d; j++) unit[j] = raw[j] * inv;
  }
  // Running sums over pool positions 0..m-1 per class, in ensembleByClass's order: a subset that
  // starts 0, 1, ..., m-1 (every leave-one-out after the first) continues from sum m, with the
  // same additions in the same order, so half the work gives the same bits. Skipped when large.
  const prefixes = (t + 1) * c * d * 8 <= PREFIX_BYTES ? new Float64Array((t + 1) * c * d) : undefined;
  if (prefixes) {
    for (let m = 1; m <= t; m++) {
      for (let k = 0; k < c; k++) {
        const [to, from, u] = [(m * c + k) * d, ((m - 1) * c + k) * d, (k * t + m - 1) * d];
        for (let j = 0; j < d; j++) prefixes[to + j] = prefixes[from + j] + unit[u + j];
      }
    }
  }
  const acc = new Float64Array(d);
  const ensemble = (subset: readonly number[]): Float32Array => {
    const out = new Float32Array(c * d);
    let m = 0;
    if (prefixes) while (m < subset.length && subset[m] === m) m++;
    const n = subset.length;
    const d4 = d - (d % 4);
    for (let k = 0; k < c; k++) {
      if (prefixes) for (let j = 0, a = (m * c + k) * d; j < d; j++) acc[j] = prefixes[a + j];
      else acc.fill(0);
      // Each element's additions in subset order (the bits of ensembleByClass); four elements per
      // step only lets the CPU overlap independent sums (~3x faster than one at a time).
      for (let q = prefixes ? m : 0; q < n; q++) {
        const b = (k * t + subset[q]) * d;
        let j = 0;
        for (; j < d4; j += 4) {
          acc[j] += unit[b + j];
          acc[j + 1] += unit[b + j + 1];
          acc[j + 2] += unit[b + j + 2];
          acc[j + 3] += unit[b + j + 3];
        }
        for (; j < d; j++) acc[j] += unit[b + j];
      }
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
export function learnedPool(ctx: TextContext, indices: readonly number[]): PoolFeatures {
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
