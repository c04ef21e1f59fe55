// Small JPEG thumbnails for hover cards and galleries. Outputs travel inside the notebook, so
// thumbnails are tiny (64 px, quality 70: about 1-2 KB each) and stop at a byte budget; an
// image that cannot be read simply has none (the figure still shows its point and path).
import sharp from 'sharp';

export interface Thumbnails {
  /** Concatenated JPEGs; image i is data[offsets[i] .. offsets[i + 1]) (empty: none). */
  data: Uint8Array;
  offsets: Int32Array;
  /** How many images got one. */
  made: number;
}

export interface ThumbnailOptions {
  size?: number;
  quality?: number;
  /** Stop making thumbnails once this many bytes are used (default 600 KB). */
  budgetBytes?: number;
  concurrency?: number;
  signal?: AbortSignal;
}

export async function thumbnail(file: string, size = 64, quality = 70): Promise<Uint8Array | undefined> {
  try {
    const buf = await sharp(file, { failOn: 'none' })
      .rotate()
      .resize(size, size, { fit: 'inside', withoutEnlargement: true })
      .flatten({ background: '#ffffff' })
      .jpeg({ quality })
      .toBuffer();
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch {
    return undefined;
  }
}

/** Thumbnails for `files` in order, until the budget is spent. */
export async function makeThumbnails(files: readonly string[], opts: ThumbnailOptions = {}): Promise<Thumbnails> {
  const budget = opts.budgetBytes ?? 600 * 1024;
  const parts: Array<Uint8Array | undefined> = new Array(files.length);
  const concurrency = Math.max(1, opts.concurrency ?? 4);
  let used = 0;
  // Batches decode in parallel, but the budget is spent in file order, so the same files
  // always get the same thumbnails (outputs are reproducible).
  outer: for (let start = 0; start < files.length; start += concurrency) {
    opts.signal?.throwIfAborted();
    const batch = await Promise.all(files.slice(start, start + concurrency).map((f) => thumbnail(f, opts.size, opts.quality)));
    for (let k = 0; k < batch.length; k++) {
      const t = batch[k];
      if (!t) continue;
      if (used + t.length > budget) break outer;
      parts[start + k] = t;
      used += t.length;
    }
  }
  const offsets = new Int32Array(files.length + 1);
  for (let i = 0; i < files.length; i++) offsets[i + 1] = offsets[i] + (parts[i]?.length ?? 0);
  const data = new Uint8Array(offsets[files.length]);
  let made = 0;
  parts.forEach((p, i) => {
    if (p) {
      data.set(p, offsets[i]);
      made++;
    }
  });
  return { data, offsets, made };
}
