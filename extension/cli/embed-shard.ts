// `clipn embed`: fills the embedding cache with one shard of an image set, so a batch scheduler
// can spread a large set over jobs (`--shard i/n`, one per job) and a later `clipn eval` on the
// same cache encodes nothing. The split is by sorted path, into contiguous blocks, so every job
// computes the same partition without talking to the others; the cache's lock lets the jobs
// write to one cache folder at the same time.
import { loadDataset } from '../engine/datasets';
import type { DatasetItem, ImageDataset } from '../engine/datasets';
import { embedImageSet } from '../engine/embed';
import type { EmbedResult } from '../engine/embed';
import { EmbeddingCache } from '../engine/embedding-cache';
import type { ClipnModel, ImagePrecision } from '../engine/encoder';
import { progressLine } from './common';

export interface EmbedShardOptions {
  model: ClipnModel;
  images: string;
  cacheRoot: string;
  shard: { index: number; count: number };
  /** Images per encoder run; undefined: chosen by the provider (encoder.ts imageBatchFor). */
  batchSize?: number;
  precision: ImagePrecision;
  cwd?: string;
}

export interface EmbedShardReport {
  set: ImageDataset;
  /** The items of this shard, in sorted-path order. */
  items: DatasetItem[];
  result: EmbedResult;
  cacheDir: string;
}

/** Items of shard `index` of `count`: contiguous blocks of the path-sorted list. */
export function shardItems<T extends { path: string }>(items: readonly T[], index: number, count: number): T[] {
  const sorted = [...items].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const from = Math.floor((index * sorted.length) / count);
  const to = Math.floor(((index + 1) * sorted.length) / count);
  return sorted.slice(from, to);
}

export async function runEmbedShard(opts: EmbedShardOptions): Promise<EmbedShardReport> {
  // No hashing here: each job hashes only its own shard (in embedImageSet).
  const set = await loadDataset(opts.images, { role: 'ood', hash: false, cwd: opts.cwd });
  const items = shardItems(set.items, opts.shard.index, opts.shard.count);
  const cache = EmbeddingCache.forModel(opts.cacheRoot, opts.model.manifest, opts.precision);
  const label = `shard ${opts.shard.index}/${opts.shard.count}`;
  const result =
    items.length === 0
      ? { features: new Float32Array(0), dims: [0, opts.model.embedDim] as [number, number], indices: [], hashes: [], encoded: 0, fromCache: 0, failures: [], provider: 'none', cacheWarnings: [] }
      : await embedImageSet(opts.model, { items }, { cache, batchSize: opts.batchSize, precision: opts.precision, onProgress: progressLine(label) });
  return { set, items, result, cacheDir: cache.dir };
}
