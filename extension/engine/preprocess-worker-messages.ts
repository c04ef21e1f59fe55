// The messages between PreprocessPool (preprocess-pool.ts) and its workers (preprocess-worker.ts).
import type { PreprocessConfig } from './preprocess';

export interface WorkerInit {
  /** Images each worker decodes at once (one decoding on the threadpool while one resamples). */
  perWorker: number;
}

export type WorkerRequest =
  /** solo: run it alone (a retry after a worker died while decoding it). */
  | { t: 'task'; id: number; job: number; cfg: PreprocessConfig; name: string; path?: string; bytes?: Uint8Array; solo: boolean }
  /** Drop the queued tasks of a job (each answered `cancelled`). */
  | { t: 'cancel'; job: number }
  /** Finish (drain: true) or drop (drain: false) the queue, then exit once idle. */
  | { t: 'close'; drain: boolean };

export type WorkerReply =
  | { t: 'ready' }
  /** Exactly one of data (float32 CHW [3, S, S]), reason, cancelled. */
  | { t: 'done'; id: number; data?: ArrayBuffer; reason?: string; cancelled?: boolean };
