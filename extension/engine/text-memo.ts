// Text features are cheap but not free: a 128-template "no" pool over 100 classes is 12,800
// texts, about 2-3 s on two cores for the tiny model. A kernel keeps its models between cells,
// so each model remembers the rows it encoded (keyed by tower, text and prompt weights) and an
// edited pool re-encodes only the texts that changed. On CPU onnxruntime gives a row the same
// bits whatever batch it ran in (checked in the tests), so a remembered row is the row a fresh
// run would produce. Bounded by bytes; the oldest rows go first.
import type { ProviderReport } from './backend';
import type { EncodeProgress } from './encoder-pipeline';

export class TextFeatureMemo {
  private readonly rows = new Map<string, Float32Array>();
  private bytes = 0;

  constructor(private readonly maxBytes = 128 * 1024 * 1024) {}

  get(key: string): Float32Array | undefined {
    return this.rows.get(key);
  }

  set(key: string, row: Float32Array): void {
    if (this.maxBytes <= 0 || this.rows.has(key)) return;
    // Copy: callers' batch buffers must not stay alive through the memo.
    this.rows.set(key, row.slice());
    this.bytes += row.byteLength;
    if (this.bytes > this.maxBytes) {
      for (const [k, v] of this.rows) {
        this.rows.delete(k);
        this.bytes -= v.byteLength;
        if (this.bytes <= this.maxBytes * 0.9) break;
      }
    }
  }

  get size(): number {
    return this.rows.size;
  }

  clear(): void {
    this.rows.clear();
    this.bytes = 0;
  }
}

/** The memo key of one text: the tower, the text, and for the no tower its prompt-weight row. */
export function textKey(tower: 'yes' | 'no', text: string, weights?: Float32Array): string {
  if (!weights) return `${tower}\u0000${text}`;
  return `${tower}\u0000${text}\u0000${Array.from(weights).join(',')}`;
}

/**
 * The memo key of a no-tower text encoded after its template's shared beginning
 * (shared-prefix.ts): rows of their own, as they differ from the whole text's in the last bits.
 * The split follows from the text and the beginning; `mixKey` is textKey('no', '', weights).
 */
export function sharedPrefixKey(text: string, mixKey: string, beginning: string): string {
  return `${mixKey}\u0000${text}\u0000after\u0000${beginning}`;
}

/** Which provider computed a batch of rows. */
export interface RowsSource { provider: string; providerReport: ProviderReport }
/** Encodes the rows at indices `missing`, handing each batch's features [rows, D] to `store`. */
export type EncodeMissing = (missing: number[], store: (rows: readonly number[], data: Float32Array, from: RowsSource) => void) => Promise<void>;

/**
 * Rows [keys.length, d] from the memo, the rows it does not hold (each distinct key once) from
 * `encodeMissing`, remembered as they come; progress counts the rows encoded. `last`: the source
 * of the last batch encoded (none when every row came from the memo).
 */
export async function memoRows(
  memo: TextFeatureMemo,
  keys: readonly string[],
  d: number,
  encodeMissing: EncodeMissing,
  onProgress?: (p: EncodeProgress) => void,
): Promise<{ data: Float32Array; last?: RowsSource; fromMemo: number }> {
  const firstOf = new Map<string, number>();
  const missing: number[] = [];
  keys.forEach((k, i) => {
    if (!memo.get(k) && !firstOf.has(k)) (firstOf.set(k, i), missing.push(i));
  });
  const start = performance.now();
  const fresh = new Map<string, Float32Array>();
  let last: RowsSource | undefined;
  let done = 0;
  await encodeMissing(missing, (rows, data, from) => {
    rows.forEach((i, r) => {
      const v = data.subarray(r * d, (r + 1) * d);
      fresh.set(keys[i], v);
      memo.set(keys[i], v);
    });
    last = from;
    done += rows.length;
    const seconds = (performance.now() - start) / 1000;
    onProgress?.({ done, total: missing.length, itemsPerSecond: seconds > 0 ? done / seconds : 0 });
  });
  const data = new Float32Array(keys.length * d);
  // A row evicted from a small memo meanwhile is still in `fresh`.
  keys.forEach((k, i) => data.set(fresh.get(k) ?? memo.get(k)!, i * d));
  return { data, last, fromMemo: keys.length - missing.length };
}
