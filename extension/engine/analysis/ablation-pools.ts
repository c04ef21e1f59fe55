// The "no" pool of an ablation as features: the [C, D] no features of any subset of pool
// positions, built as prompts.ts builds them, with the text encoding timed and counted.
//  - hand-written templates: the pool encoded once; a subset's per-class features are
//    ensembleByClass's bits (template-ensembles.ts);
//  - learned prompts: the no tower fed the yes templates with prompt_weights uniform over the
//    subset (noFeaturesForMixes), one pass per call for the subsets not held.
import { promptWeights } from '../encoder';
import type { ClipnModel } from '../encoder';
import { classPrompts, noFeaturesForMixes } from '../prompts';
import type { AblationPool, AblationProgress } from './ablation';
import { TemplateEnsembles } from './template-ensembles';

/** Variants per scoring batch (the learned pool holds the last two batches' features). */
export const VARIANTS_PER_BATCH = 16;

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

/** The pool encoded once; subsets' features as ensembleByClass forms them (template-ensembles.ts). */
export async function templatePool(ctx: TextContext, pool: Extract<AblationPool, { kind: 'templates' }>): Promise<PoolFeatures> {
  const { model, classes } = ctx;
  const [t, c, d] = [pool.templates.length, classes.length, model.embedDim];
  const raw = (await encoded(ctx, c * t, (o) => (pool.tower === 'yes'
    ? model.encodeTexts(classPrompts(classes, pool.templates), o)
    : model.encodeClassPromptsNo(classes, pool.templates, [pool.mix ?? promptWeights.none()], o)))).data;
  const ensembles = new TemplateEnsembles(raw, c, t, d);
  return { labels: [...pool.templates], features: async (subsets) => subsets.map((s) => ensembles.features(s)) };
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
