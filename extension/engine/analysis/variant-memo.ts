// Results of ablation variants remembered between runs. A researcher edits one template of a
// 128-template pool and runs the cell again: every variant without that template (127 of the
// "alone" rows, most greedy candidates) has the same features and the same images, so its metrics
// are the ones computed last time. Entries are keyed by digests of the exact bits that decide a
// result (images, yes features, the variant's no features), never by names, so a changed input
// can only miss, not return a stale value. Bounded by entries; the least recently used go first.
import { createHash } from 'node:crypto';

export class VariantMemo<T> {
  private readonly entries = new Map<string, T>();

  constructor(private readonly maxEntries = 100_000) {}

  get(key: string): T | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  set(key: string, value: T): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.maxEntries) {
      for (const k of this.entries.keys()) {
        this.entries.delete(k);
        if (this.entries.size <= this.maxEntries) break;
      }
    }
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}

/** SHA-256 (base64) of typed arrays' bytes and strings, each part length-prefixed. */
export function digest(...parts: ReadonlyArray<ArrayBufferView | string>): string {
  const h = createHash('sha256');
  for (const p of parts) {
    const bytes = typeof p === 'string' ? Buffer.from(p, 'utf8') : new Uint8Array(p.buffer, p.byteOffset, p.byteLength);
    h.update(`${typeof p === 'string' ? 's' : 'b'}${bytes.byteLength}:`);
    h.update(bytes);
  }
  return h.digest('base64');
}
