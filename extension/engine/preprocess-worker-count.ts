// How many preprocessing worker threads a setting means (ClipnModelOptions.preprocessWorkers).
import * as os from 'node:os';

export type PreprocessWorkersSetting = number | 'auto';

/**
 * 'auto' uses workers only on machines with more than this many cores. Measured with
 * encodeImages on models/default (CPU provider, 500x375 JPEGs, images/s):
 *   - 2 cores (busy): in-process 98 / 94, 1 worker 87 / 90, 2 workers 93 / 85 (two sessions'
 *     medians): the main thread, onnxruntime's threads and the workers share two cores;
 *   - 3 cores: 0 / 1 / 2 workers = 194 / 162 / 266; 4 cores: 0 / 1 / 2 / 3 = 217 / 199 / 320 / 386;
 *   - 16 cores: 0 / 2 / 4 / 8 / 15 = 186 / 256 / 415 / 510 / 522.
 */
export const AUTO_MIN_CORES = 2;
/** Upper bound for 'auto' (15 workers on 16 cores still gained over 8, see above). */
export const AUTO_MAX_WORKERS = 16;

/** 'auto' for a machine: cores - 1 (the main thread runs the graph) above AUTO_MIN_CORES, else 0. */
export function autoPreprocessWorkers(cores: number = os.availableParallelism()): number {
  return cores > AUTO_MIN_CORES ? Math.min(cores - 1, AUTO_MAX_WORKERS) : 0;
}

/** A setting -> a worker count (0: preprocess on the calling thread). */
export function resolvePreprocessWorkers(setting: PreprocessWorkersSetting | undefined, cores?: number): number {
  if (setting === undefined || setting === 'auto') return autoPreprocessWorkers(cores);
  if (typeof setting !== 'number' || !Number.isInteger(setting) || setting < 0) {
    throw new Error(`preprocessWorkers must be 'auto' or a whole number >= 0 (0: preprocess on the calling thread), got ${JSON.stringify(setting)}`);
  }
  return setting;
}
