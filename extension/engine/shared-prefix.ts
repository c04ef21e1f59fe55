// Template prompts share their beginning: "a photo of no {}." filled with a hundred class names
// is a hundred texts whose first tokens (SOT a photo of no) are the same, and the text towers are
// causal, so those tokens' states do not depend on the class. With a model's text_no_kv graph
// (models/FORMAT.md) each beginning runs once per prompt mix ("a past": every layer's keys and
// values), and each text runs only on its own tokens, attending to its past: for a 128-template
// pool three quarters of the tokens, for the learned-prompt ablation's templates about half.
//
// Where a text splits is canonical: after the tokens it shares with its template's words before
// `{}` ([SOT] + tokens("a photo of no")), never later than before EOT. Every op of the graph
// treats rows independently (pasts are gathered per row), so a text's feature depends on its
// ids, split and prompt mix only, never on what it was batched with: the model's memo keeps
// such rows under their own keys (text-memo.ts sharedPrefixKey), apart from whole-text rows.
import type { GraphSession, TensorData } from './backend';
import type { ClipTokenizer } from './tokenizer';

/** The graph's inputs and outputs (FORMAT.md). */
export const KV_INPUTS = ['input_ids', 'prompt_weights', 'past_keys', 'past_values', 'past_index'] as const;
const EMBEDS = 'embeds';
const PRESENT = ['present_keys', 'present_values'] as const;
/** Bound on one prefix run's pasts (floats): ViT-B/16's tower at P = 20 holds ~130 pasts. */
const MAX_PAST_FLOATS = 16 * 1024 * 1024;

export interface KvShape {
  layers: number;
  heads: number;
  /** width / heads */
  headWidth: number;
  /** learned prompts (prompt_weights' width) */
  prompts: number;
  embedDim: number;
}

/** What encodeSharedPrefix runs: the graph's session, or the native tower (native-kv-tower.ts). */
export type KvRunner = Pick<GraphSession, 'file' | 'runOutputs'>;

/** One text to encode: its ids (SOT..EOT), where it splits, its prompt mix and its past's name. */
export interface SharedPrefixRow {
  ids: readonly number[];
  split: number;
  weights: Float32Array;
  /** Rows with equal `past` share the beginning ids[0..split) and the weights. */
  past: string;
}

/** What encodeSharedPrefix checks between graph runs: an AbortSignal, or a worker's shared flag. */
export interface Cancellation { throwIfAborted(): void }

/** The number of leading ids a text shares with its template's beginning, 1 .. ids.length - 1. */
export function splitPoint(ids: readonly number[], beginning: readonly number[]): number {
  let split = 0;
  while (split < ids.length - 1 && split < beginning.length && ids[split] === beginning[split]) split++;
  // SOT always matches; a text of SOT + EOT alone still runs EOT as its own token.
  return Math.max(1, split);
}

/**
 * The rows of encodeClassPromptsNo's missing texts: row i is text i % filled.length (classPrompts'
 * order, template i % beginnings.length) under mix floor(i / filled.length). Each text is
 * tokenised once whatever its mixes (`textIds`: text i's ids from SOT to EOT, filled-tokens.ts);
 * texts of one template and mix that split alike share a past.
 */
export function classTemplateRows(
  tokenizer: ClipTokenizer,
  filled: readonly string[],
  beginnings: readonly string[],
  weights: readonly Float32Array[],
  missing: readonly number[],
  textIds: (text: number) => number[],
): SharedPrefixRow[] {
  const perMix = filled.length;
  const beginningIds = beginnings.map((b) => [tokenizer.sot, ...tokenizer.encode(b)]);
  const own = new Map<number, { ids: number[]; split: number }>();
  return missing.map((i) => {
    const [m, text, k] = [Math.floor(i / perMix), i % perMix, i % beginnings.length];
    let split = own.get(text);
    if (!split) {
      const ids = textIds(text);
      split = { ids, split: splitPoint(ids, beginningIds[k]) };
      own.set(text, split);
    }
    return { ids: split.ids, split: split.split, weights: weights[m], past: `${m} ${k} ${split.split}` };
  });
}

/**
 * The distinct rows among `rows`: equal ids and split under the same prompt-mix weights (the same
 * Float32Array, as classTemplateRows hands out one per mix) give the same feature, as every op of
 * the graph treats a row on its own. Texts cut at the context length repeat: a long template's
 * class name, or its end, can fall past the cut (template-cuts.ts). At the default model's 16
 * tokens 28 of the ablation bench's 128 templates lose the whole class name and others part of
 * it: 31% of its 12,800 rows repeat. `of[u]` lists the positions in `rows` that distinct row u
 * stands for, first the one it was taken from.
 */
export function distinctRows(rows: readonly SharedPrefixRow[]): { rows: SharedPrefixRow[]; of: number[][] } {
  const mixes = new Map<Float32Array, number>();
  // Rows by a hash of (mix, split, ids), compared in full within a bucket (half the time of joined-string keys).
  const buckets = new Map<number, number[]>();
  const out: SharedPrefixRow[] = [];
  const of: number[][] = [];
  rows.forEach((row, i) => {
    const mix = mixes.get(row.weights) ?? (mixes.set(row.weights, mixes.size), mixes.size - 1);
    let h = Math.imul(2166136261 ^ mix, 16777619) ^ row.split;
    for (const id of row.ids) h = Math.imul(h, 16777619) ^ id;
    const bucket = buckets.get(h);
    const u = bucket?.find((v) => sameRow(out[v], row));
    if (u !== undefined) of[u].push(i);
    else {
      if (bucket) bucket.push(out.length);
      else buckets.set(h, [out.length]);
      out.push(row);
      of.push([i]);
    }
  });
  return { rows: out, of };
}

function sameRow(a: SharedPrefixRow, b: SharedPrefixRow): boolean {
  if (a.weights !== b.weights || a.split !== b.split || a.ids.length !== b.ids.length) return false;
  for (let k = 0; k < a.ids.length; k++) if (a.ids[k] !== b.ids[k]) return false;
  return true;
}

/** A batch of distinct rows' features [batch.length, d] for every row they stand for: the positions and [positions, d]. */
export function spreadRows(batch: readonly number[], embeds: Float32Array, d: number, of: readonly number[][]): { rows: number[]; data: Float32Array } {
  const rows = batch.flatMap((u) => of[u]);
  if (rows.length === batch.length) return { rows, data: embeds };
  const data = new Float32Array(rows.length * d);
  let at = 0;
  batch.forEach((u, b) => {
    for (let k = 0; k < of[u].length; k++, at++) data.set(embeds.subarray(b * d, (b + 1) * d), at * d);
  });
  return { rows, data };
}

function groupBy<T, K>(items: readonly T[], key: (item: T) => K): Map<K, T[]> {
  const out = new Map<K, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = out.get(k);
    if (list) list.push(item);
    else out.set(k, [item]);
  }
  return out;
}

/**
 * [rows, length] int64 ids from each row's ids[from, from + length). Token ids are small
 * non-negative integers: on little-endian machines (all onnxruntime-node targets) they are written
 * as the low 32 bits of each element, without making a BigInt per id.
 */
function idsTensor(rows: ReadonlyArray<readonly number[]>, from: number, length: number): TensorData {
  const data = new BigInt64Array(rows.length * length);
  if (LITTLE_ENDIAN) {
    const words = new Int32Array(data.buffer);
    rows.forEach((ids, r) => {
      for (let k = 0; k < length; k++) words[2 * (r * length + k)] = ids[from + k];
    });
  } else {
    rows.forEach((ids, r) => {
      for (let k = 0; k < length; k++) data[r * length + k] = BigInt(ids[from + k]);
    });
  }
  return { type: 'int64', data, dims: [rows.length, length] };
}
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const int64 = (values: readonly number[], dims: number[]): TensorData => ({ type: 'int64', data: BigInt64Array.from(values, (v) => BigInt(v)), dims });

/**
 * Encodes `rows` through the kv graph: per split length, the pasts in runs of at most
 * `batchSize` (and MAX_PAST_FLOATS), then their texts grouped by own length in batches of at
 * most `batchSize`. `store(rowIndices, embeds)` receives each batch's features [rows, D].
 */
export async function encodeSharedPrefix(
  session: KvRunner,
  shape: KvShape,
  rows: readonly SharedPrefixRow[],
  batchSize: number,
  store: (rowIndices: number[], embeds: Float32Array) => void,
  signal?: Cancellation,
): Promise<void> {
  const { layers, heads, headWidth, prompts, embedDim } = shape;
  const empty: TensorData = { type: 'float32', data: new Float32Array(0), dims: [layers, 1, heads, 0, headWidth] };
  const indices = rows.map((_, i) => i);
  for (const [p, atSplit] of [...groupBy(indices, (i) => rows[i].split)].sort((a, b) => a[0] - b[0])) {
    const pasts = [...groupBy(atSplit, (i) => rows[i].past).values()];
    const perRun = Math.max(1, Math.min(batchSize, Math.floor(MAX_PAST_FLOATS / (layers * p * heads * headWidth))));
    for (let g0 = 0; g0 < pasts.length; g0 += perRun) {
      signal?.throwIfAborted();
      const run = pasts.slice(g0, g0 + perRun);
      const first = run.map((members) => rows[members[0]]);
      const weights = new Float32Array(run.length * prompts);
      first.forEach((r, g) => weights.set(r.weights, g * prompts));
      const beginning = await session.runOutputs({
        input_ids: idsTensor(first.map((r) => r.ids), 0, p),
        prompt_weights: { type: 'float32', data: weights, dims: [run.length, prompts] },
        past_keys: empty,
        past_values: empty,
        past_index: int64(new Array<number>(run.length).fill(0), [run.length]),
      }, PRESENT);
      const [keys, values] = PRESENT.map((name): TensorData => ({ type: 'float32', data: beginning[name].data, dims: beginning[name].dims }));
      const members = run.flatMap((m, g) => m.map((i) => ({ i, g })));
      for (const [s, sameLength] of [...groupBy(members, (m) => rows[m.i].ids.length - p)].sort((a, b) => a[0] - b[0])) {
        for (let b0 = 0; b0 < sameLength.length; b0 += batchSize) {
          signal?.throwIfAborted();
          const batch = sameLength.slice(b0, b0 + batchSize);
          const w = new Float32Array(batch.length * prompts);
          batch.forEach((m, b) => w.set(rows[m.i].weights, b * prompts));
          const out = await session.runOutputs({
            input_ids: idsTensor(batch.map((m) => rows[m.i].ids), p, s),
            prompt_weights: { type: 'float32', data: w, dims: [batch.length, prompts] },
            past_keys: keys,
            past_values: values,
            past_index: int64(batch.map((m) => m.g), [batch.length]),
          }, [EMBEDS]);
          const embeds = out[EMBEDS];
          if (embeds.dims.length !== 2 || embeds.dims[0] !== batch.length || embeds.dims[1] !== embedDim) {
            throw new Error(`text_no_kv graph ${session.file}: embeds dims [${embeds.dims.join(', ')}], expected [${batch.length}, ${embedDim}] (embed_dim)`);
          }
          store(batch.map((m) => m.i), embeds.data);
        }
      }
    }
  }
}
