// The ablation's variants scored (ablation.ts): Evaluator hands subsets of the pool to the scoring
// workers in batches, taking what the variant memo holds, and greedySelection runs the forward
// selection on it.
import { key, unique, VARIANTS_PER_BATCH } from './ablation-pools';
import type { PoolFeatures } from './ablation-pools';
import type { AblationObjective, AblationProgress, GreedyStep } from './ablation';
import { digest } from './variant-memo';
import type { VariantMemo } from './variant-memo';
import type { VariantMetrics, Want } from './variant-math';
import type { VariantScorer } from './variant-scorer';

/** Batches whose values the scoring workers may still be computing while the next is built. */
const MAX_BATCHES_IN_FLIGHT = 4;

export type AblationMemo = VariantMemo<VariantMetrics | number>;

/**
 * Metrics of subsets of the pool, scored in batches, remembered per subset for this run and,
 * with a memo, per variant features across runs (variant-memo.ts).
 */
export class Evaluator {
  private readonly known = new Map<string, VariantMetrics>();
  fromMemo = 0;

  constructor(private readonly scorer: VariantScorer, private readonly pool: PoolFeatures,
    private readonly memo: { memo: AblationMemo; context: string } | undefined, private readonly signal?: AbortSignal) {}

  /**
   * Values for `todo` (distinct subsets): from the memo where the variant's features were scored
   * before, else scored in batches; `want` (named by `tag` in the memo) is what a value is. The
   * scorer's workers compute a batch's values while this thread builds the next batch's features.
   */
  private async run<T extends VariantMetrics | number>(todo: number[][], want: Want, tag: string,
    recall: (key: (tag: string) => string) => T | undefined, keep: (s: number[], v: T) => void,
    progress?: (done: number, total: number) => void): Promise<void> {
    const inFlight: Array<Promise<void>> = [];
    let done = 0;
    const advance = (count: number) => {
      done += count;
      progress?.(done, todo.length);
    };
    for (let b = 0; b < todo.length; b += VARIANTS_PER_BATCH) {
      this.signal?.throwIfAborted();
      const batch = todo.slice(b, b + VARIANTS_PER_BATCH);
      const features = await this.pool.features(batch);
      const memo = this.memo;
      const variantKeys = memo ? features.map((f) => digest(f)) : [];
      const keyOf = (i: number) => (t: string) => `${memo!.context}|${t}|${variantKeys[i]}`;
      const missing: number[] = [];
      batch.forEach((s, i) => {
        const hit = memo ? recall(keyOf(i)) : undefined;
        if (hit === undefined) missing.push(i);
        else (keep(s, hit), this.fromMemo++);
      });
      if (missing.length === 0) {
        advance(batch.length);
        continue;
      }
      const landed = this.scorer.score(missing.map((i) => features[i]), want).then((vs) => {
        missing.forEach((i, m) => {
          keep(batch[i], vs[m] as T);
          memo?.memo.set(keyOf(i)(tag), vs[m]);
        });
        advance(batch.length);
      });
      landed.catch(() => undefined); // awaited below; an early failure must not count as unhandled
      inFlight.push(landed);
      if (inFlight.length > MAX_BATCHES_IN_FLIGHT) await inFlight.shift();
    }
    await Promise.all(inFlight);
  }

  async metrics(subsets: readonly number[][], progress?: (done: number, total: number) => void): Promise<VariantMetrics[]> {
    const todo = unique(subsets.filter((s) => !this.known.has(key(s))));
    await this.run<VariantMetrics>(todo, { kind: 'metrics' }, 'metrics',
      (k) => this.memo!.memo.get(k('metrics')) as VariantMetrics | undefined, (s, v) => this.known.set(key(s), v), progress);
    return subsets.map((s) => this.known.get(key(s))!);
  }

  /** The objective alone: one metric of one score per candidate (CTW needs no graph pass). */
  async objective(subsets: readonly number[][], o: AblationObjective): Promise<number[]> {
    const values = new Map<string, number>();
    for (const s of subsets) if (this.known.has(key(s))) values.set(key(s), this.known.get(key(s))![o.score][o.metric]);
    const todo = unique(subsets.filter((s) => !values.has(key(s))));
    const tag = `${o.score}.${o.metric}`;
    await this.run<number>(todo, { kind: 'objective', score: o.score, metric: o.metric }, tag,
      (k) => {
        const full = this.memo!.memo.get(k('metrics')) as VariantMetrics | undefined;
        return full ? full[o.score][o.metric] : (this.memo!.memo.get(k(tag)) as number | undefined);
      },
      (s, v) => values.set(key(s), v));
    return subsets.map((s) => values.get(key(s))!);
  }
}

export async function greedySelection(evaluator: Evaluator, p: number, maxSteps: number, o: AblationObjective, onProgress?: (p: AblationProgress) => void) {
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
