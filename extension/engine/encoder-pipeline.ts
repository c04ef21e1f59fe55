// The image encoding pipeline: while onnxruntime runs batch k, batch k+1 is being read and
// decoded. ORT's run() occupies the JS thread (see backend.ts), but file reads and sharp's
// decoding happen on libuv/vips threads, so starting batch k+1's preprocessing before awaiting
// batch k keeps the decoder busy during inference. One bad file becomes a failure record, never
// an exception; cancellation is checked between batches and while waiting for a batch.
// With a PreprocessPool (preprocess-pool.ts) the decode + resample of batch k+1 runs in worker
// threads instead, while the main thread runs batch k's graph; the pixels are identical.
import { ImagePreprocessError, preprocessInto } from './preprocess';
import type { ImageInput, PreprocessConfig } from './preprocess';
import type { PreprocessJob, PreprocessPool } from './preprocess-pool';

export interface EncodeProgress {
  /** Images attempted so far (encoded or failed). */
  done: number;
  total: number;
  /** done / seconds since the call started. */
  itemsPerSecond: number;
}

export interface ImageFailure {
  /** The path, or the name given to a buffer. */
  file: string;
  /** Position in the caller's list. */
  index: number;
  reason: string;
}

export interface ImageItem {
  input: ImageInput;
  name: string;
  index: number;
}

export interface PipelineOptions {
  batchSize: number;
  /** Images decoded at once within a batch (in-process only). */
  concurrency: number;
  /** Preprocess in these worker threads instead of on this thread. */
  pool?: PreprocessPool;
  onProgress?: (p: EncodeProgress) => void;
  signal?: AbortSignal;
}

export interface PipelineResult {
  /** [rows, dim] row-major, one row per successfully encoded image, in input order. */
  data: Float32Array;
  rows: number;
  /** Input index of each row. */
  indices: number[];
  files: string[];
  failures: ImageFailure[];
}

/** Runs the graph on `rows` images packed in `pixels` ([rows, 3, S, S]); returns [rows, dim]. */
export type RunBatch = (pixels: Float32Array, rows: number) => Promise<Float32Array>;

interface PreparedBatch {
  pixels: Float32Array;
  ok: ImageItem[];
  failures: ImageFailure[];
  attempted: number;
}

function reasonOf(err: unknown): string {
  if (err instanceof ImagePreprocessError) return err.reason;
  return err instanceof Error ? err.message : String(err);
}

/** Waits for `promise` unless the signal fires first (a stuck decode must not delay cancel). */
function abortable<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** Preprocesses one batch into a packed tensor; failed images are dropped and recorded. Never rejects. */
async function prepareBatch(items: ImageItem[], cfg: PreprocessConfig, concurrency: number, signal?: AbortSignal): Promise<PreparedBatch> {
  const per = 3 * cfg.size * cfg.size;
  const pixels = new Float32Array(items.length * per);
  const ok = new Array<boolean>(items.length).fill(false);
  const failures: ImageFailure[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length && !signal?.aborted) {
      const slot = next++;
      const item = items[slot];
      try {
        await preprocessInto(item.input, cfg, pixels, slot * per, item.name);
        ok[slot] = true;
      } catch (err) {
        failures.push({ file: item.name, index: item.index, reason: reasonOf(err) });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
  return pack(items, pixels, ok, failures, per);
}

/** prepareBatch with the pool: every image of the batch is handed to the workers at once. Never rejects. */
async function prepareBatchInPool(items: ImageItem[], cfg: PreprocessConfig, job: PreprocessJob): Promise<PreparedBatch> {
  const per = 3 * cfg.size * cfg.size;
  const pixels = new Float32Array(items.length * per);
  const ok = new Array<boolean>(items.length).fill(false);
  const failures: ImageFailure[] = [];
  await Promise.all(
    items.map(async (item, slot) => {
      try {
        const px = await job.preprocess(item.input, item.name);
        if (px.length !== per) throw new Error(`preprocessing worker returned ${px.length} values, expected ${per}`);
        pixels.set(px, slot * per);
        ok[slot] = true;
      } catch (err) {
        failures.push({ file: item.name, index: item.index, reason: reasonOf(err) });
      }
    }),
  );
  return pack(items, pixels, ok, failures, per);
}

/** Packs the good images to the front so the graph sees only real rows. */
function pack(items: ImageItem[], pixels: Float32Array, ok: boolean[], failures: ImageFailure[], per: number): PreparedBatch {
  const good: ImageItem[] = [];
  for (let slot = 0; slot < items.length; slot++) {
    if (!ok[slot]) continue;
    if (good.length !== slot) pixels.copyWithin(good.length * per, slot * per, (slot + 1) * per);
    good.push(items[slot]);
  }
  failures.sort((a, b) => a.index - b.index);
  return { pixels: pixels.subarray(0, good.length * per), ok: good, failures, attempted: items.length };
}

export async function runImagePipeline(
  items: ImageItem[],
  cfg: PreprocessConfig,
  dim: number,
  run: RunBatch,
  opts: PipelineOptions,
): Promise<PipelineResult> {
  const { batchSize, signal } = opts;
  const start = performance.now();
  const batches: ImageItem[][] = [];
  for (let i = 0; i < items.length; i += batchSize) batches.push(items.slice(i, i + batchSize));
  const out = new Float32Array(items.length * dim);
  const indices: number[] = [];
  const files: string[] = [];
  const failures: ImageFailure[] = [];
  let rows = 0;
  let done = 0;
  signal?.throwIfAborted();
  // One pool job per call: cancelled by the signal, and in `finally` (an error or abort drops
  // the next batch's queued images in the workers).
  const job = opts.pool?.job(cfg, signal);
  const prepare = (b: ImageItem[]) => (job ? prepareBatchInPool(b, cfg, job) : prepareBatch(b, cfg, opts.concurrency, signal));
  try {
    let pending: Promise<PreparedBatch> | undefined = prepare(batches[0]);
    for (let k = 0; k < batches.length; k++) {
      const batch: PreparedBatch = await abortable(pending!, signal);
      signal?.throwIfAborted();
      // Start reading/decoding the next batch before this one occupies the JS thread in ORT.
      pending = k + 1 < batches.length ? prepare(batches[k + 1]) : undefined;
      if (batch.ok.length > 0) {
        const embeds = await run(batch.pixels, batch.ok.length);
        out.set(embeds.subarray(0, batch.ok.length * dim), rows * dim);
        for (const item of batch.ok) {
          indices.push(item.index);
          files.push(item.name);
        }
        rows += batch.ok.length;
      }
      failures.push(...batch.failures);
      done += batch.attempted;
      signal?.throwIfAborted();
      const seconds = (performance.now() - start) / 1000;
      opts.onProgress?.({ done, total: items.length, itemsPerSecond: seconds > 0 ? done / seconds : 0 });
    }
  } finally {
    job?.cancel();
  }
  return { data: rows === items.length ? out : out.slice(0, rows * dim), rows, indices, files, failures };
}
