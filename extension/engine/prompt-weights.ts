// Mixing weights for the learned "no" prompts (FORMAT.md: the no tower's input offset is
// sum_k w[b,k] prompt_no[k]): named mixes (one prompt, the mean, a subset, none, explicit
// weights) and the [B, P] prompt_weights matrix the text_no graph takes.

export type PromptMix =
  | { kind: 'single'; index: number }
  | { kind: 'mean' }
  | { kind: 'subset'; indices: number[] }
  | { kind: 'none' }
  | { kind: 'weights'; values: number[] };

export const promptWeights = {
  /** Learned prompt i alone (one-hot). */
  single: (index: number): PromptMix => ({ kind: 'single', index }),
  /** Mean of all learned prompts: the paper's evaluation. */
  mean: (): PromptMix => ({ kind: 'mean' }),
  /** Uniform mean over a subset (e.g. all but one, for leave-one-out ablations). */
  subset: (indices: readonly number[]): PromptMix => ({ kind: 'subset', indices: [...indices] }),
  /** No learned prompt: the bare "no" tower (how hand-crafted "no" texts are encoded). */
  none: (): PromptMix => ({ kind: 'none' }),
  /** Explicit weights, one per learned prompt. */
  weights: (values: readonly number[]): PromptMix => ({ kind: 'weights', values: [...values] }),
};

/** One [P] row for a mix; errors name the mix and the model's prompt count. */
export function mixRow(mix: PromptMix, numPrompts: number): Float32Array {
  const row = new Float32Array(numPrompts);
  const checkIndex = (i: number) => {
    if (!Number.isInteger(i) || i < 0 || i >= numPrompts) {
      throw new Error(`learned "no" prompt ${i} does not exist: this model has ${numPrompts} (0..${numPrompts - 1})`);
    }
  };
  switch (mix.kind) {
    case 'single':
      checkIndex(mix.index);
      row[mix.index] = 1;
      break;
    case 'mean':
      row.fill(1 / numPrompts);
      break;
    case 'subset': {
      const unique = [...new Set(mix.indices)];
      if (unique.length === 0) throw new Error('a subset of learned "no" prompts must name at least one prompt');
      unique.forEach(checkIndex);
      for (const i of unique) row[i] = 1 / unique.length;
      break;
    }
    case 'none':
      break;
    case 'weights':
      if (mix.values.length !== numPrompts || !mix.values.every(Number.isFinite)) {
        throw new Error(`prompt weights need ${numPrompts} finite numbers (one per learned prompt), got ${mix.values.length}`);
      }
      row.set(mix.values);
      break;
  }
  return row;
}

/** A mix for every row, one mix for all rows, or a ready [B, P] matrix. */
export type PromptWeightsInput = PromptMix | readonly PromptMix[] | Float32Array;

/** Resolves any weights input to a [n, P] matrix, checking its size against P learned prompts. */
export function weightMatrix(weights: PromptWeightsInput, n: number, p: number): Float32Array {
  if (weights instanceof Float32Array) {
    if (weights.length !== n * p) {
      throw new Error(`text_no graph: prompt_weights has ${weights.length} values, expected ${n} rows x ${p} learned prompts = ${n * p}`);
    }
    return weights;
  }
  const out = new Float32Array(n * p);
  if (Array.isArray(weights)) {
    if (weights.length !== n) throw new Error(`text_no graph: ${weights.length} prompt mixes for ${n} prompts; give one per prompt or a single mix`);
    (weights as PromptMix[]).forEach((mix, i) => out.set(mixRow(mix, p), i * p));
  } else {
    const row = mixRow(weights as PromptMix, p);
    for (let i = 0; i < n; i++) out.set(row, i * p);
  }
  return out;
}
