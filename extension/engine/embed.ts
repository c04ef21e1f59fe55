// Image-set embedding through the on-disk cache: hash every file (streamed), take what the
// cache has, encode only the rest with the model (each distinct image once, even when a set
// lists it twice), store those, and return the features in dataset order. Encoding is done in
// chunks that are stored as they finish, so an interrupted run keeps its finished chunks.
import type { ProviderReport } from './backend';
import { cacheKeyFor, canonicalJson, EmbeddingCacheError } from './embedding-cache';
import type { EmbeddingCache } from './embedding-cache';
import type { ClipnModel, ImageFailure, ImagePrecision } from './encoder';
import { sha256File } from './file-hashes';

export interface EmbedProgress {
  phase: 'hashing' | 'encoding';
  /** Items handled so far in this phase (hashing: files read; encoding: rows ready or failed). */
  done: number;
  total: number;
  encoded: number;
  fromCache: number;
  itemsPerSecond: number;
}

export interface EmbedOptions {
  /** Where embeddings are looked up and stored; without it every image is encoded. */
  cache?: EmbeddingCache;
  /** Images per graph run (default: imageBatchFor the provider, encoder.ts). */
  batchSize?: number;
  /** Images decoded at once (default 2). */
  concurrency?: number;
  /** Graph variant (default fp32); must match the cache's key. */
  precision?: ImagePrecision;
  /** Images encoded between cache writes (default 1024). */
  flushEvery?: number;
  onProgress?: (p: EmbedProgress) => void;
  signal?: AbortSignal;
}

/** What embedImageSet needs of a dataset: the files, and their hashes when already known. */
export interface EmbedInput {
  items: ReadonlyArray<{ path: string; sha256?: string }>;
}

export interface EmbedResult {
  /** Row-major [rows, dim], L2-normalised; one row per item that could be embedded, in dataset order. */
  features: Float32Array;
  dims: [number, number];
  /** Dataset item index of each row (failed items have none). */
  indices: number[];
  /** sha256 of each row's image. */
  hashes: string[];
  /** Distinct images run through the model (and embedded) in this call. */
  encoded: number;
  /** Items whose row came from the cache. */
  fromCache: number;
  /** Items that could not be read or decoded (index = dataset item index). */
  failures: ImageFailure[];
  /** Provider of the image graph, or 'cache' when nothing had to be encoded. */
  provider: string;
  providerReport?: ProviderReport;
  /** Problems the cache found and repaired (corrupt shards, damaged index). */
  cacheWarnings: string[];
}

function rate(done: number, start: number): number {
  const s = (performance.now() - start) / 1000;
  return s > 0 ? done / s : 0;
}

async function hashItems(input: EmbedInput, opts: EmbedOptions, failures: ImageFailure[]): Promise<Array<string | undefined>> {
  const items = input.items;
  const hashes = items.map((it) => it.sha256);
  const todo = hashes.flatMap((h, i) => (h === undefined ? [i] : []));
  const start = performance.now();
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < todo.length) {
      opts.signal?.throwIfAborted();
      const i = todo[next++];
      try {
        hashes[i] = await sha256File(items[i].path);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        failures.push({ file: items[i].path, index: i, reason: e.code === 'ENOENT' ? 'file not found' : `cannot read file (${e.message})` });
      }
      done++;
      if (done % 256 === 0 || done === todo.length) {
        opts.onProgress?.({ phase: 'hashing', done, total: todo.length, encoded: 0, fromCache: 0, itemsPerSecond: rate(done, start) });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, todo.length) }, worker));
  return hashes;
}

/** Embeds every image of `dataset`, encoding only what the cache lacks. */
export async function embedImageSet(model: ClipnModel, dataset: EmbedInput, opts: EmbedOptions = {}): Promise<EmbedResult> {
  const precision = opts.precision ?? 'fp32';
  const cache = opts.cache;
  if (cache && canonicalJson(cache.key) !== canonicalJson(cacheKeyFor(model.manifest, precision))) {
    throw new EmbeddingCacheError(`${cache.dir}: this cache belongs to another image graph or preprocessing than model "${model.manifest.name}" (${precision})`);
  }
  const flushEvery = opts.flushEvery ?? 1024;
  if (!Number.isInteger(flushEvery) || flushEvery < 1) throw new Error(`embedImageSet: flushEvery must be a positive integer, got ${flushEvery}`);
  const items = dataset.items;
  const d = model.embedDim;
  const failures: ImageFailure[] = [];
  const warningsBefore = cache?.warnings.length ?? 0;
  const hashes = await hashItems(dataset, opts, failures);
  opts.signal?.throwIfAborted();

  // Distinct hashes, each with the first item that has it (the file to encode).
  const firstItem = new Map<string, number>();
  hashes.forEach((h, i) => {
    if (h !== undefined && !firstItem.has(h)) firstItem.set(h, i);
  });
  const rows = new Map<string, Float32Array>();
  let missing = [...firstItem.keys()];
  if (cache) {
    const hit = cache.lookup(missing);
    for (const [h, row] of hit.found) rows.set(h, row);
    missing = hit.missing;
  }
  const fromCacheHashes = new Set(rows.keys());

  const decodeFailed = new Map<string, string>();
  let provider = 'cache';
  let providerReport: ProviderReport | undefined;
  let encoded = 0;
  const start = performance.now();
  const total = items.length;
  const cachedItems = hashes.filter((h) => h !== undefined && fromCacheHashes.has(h)).length;
  for (let c = 0; c < missing.length; c += flushEvery) {
    opts.signal?.throwIfAborted();
    const chunk = missing.slice(c, c + flushEvery);
    const out = await model.encodeImages(
      chunk.map((h) => items[firstItem.get(h)!].path),
      {
        batchSize: opts.batchSize,
        concurrency: opts.concurrency,
        precision,
        signal: opts.signal,
        onProgress: (p) => {
          const done = cachedItems + c + p.done;
          opts.onProgress?.({ phase: 'encoding', done, total, encoded: encoded + p.done, fromCache: cachedItems, itemsPerSecond: rate(c + p.done, start) });
        },
      },
    );
    provider = out.provider;
    providerReport = out.providerReport;
    const good: string[] = out.indices.map((k) => chunk[k]);
    good.forEach((h, r) => rows.set(h, out.data.subarray(r * d, (r + 1) * d)));
    for (const f of out.failures) decodeFailed.set(chunk[f.index], f.reason);
    if (cache && good.length > 0) cache.store(good, out.data.subarray(0, good.length * d));
    encoded += good.length;
  }

  const indices: number[] = [];
  const rowHashes: string[] = [];
  hashes.forEach((h, i) => {
    if (h === undefined) return; // already a failure from hashing
    const reason = decodeFailed.get(h);
    if (reason !== undefined) failures.push({ file: items[i].path, index: i, reason });
    else if (rows.has(h)) {
      indices.push(i);
      rowHashes.push(h);
    }
  });
  failures.sort((a, b) => a.index - b.index);
  const features = new Float32Array(indices.length * d);
  rowHashes.forEach((h, r) => features.set(rows.get(h)!, r * d));
  return {
    features,
    dims: [indices.length, d],
    indices,
    hashes: rowHashes,
    encoded,
    fromCache: cachedItems,
    failures,
    provider,
    providerReport,
    cacheWarnings: cache ? cache.warnings.slice(warningsBefore) : [],
  };
}
