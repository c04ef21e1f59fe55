// A pool of worker threads running preprocess.ts (sharp decode + the exact PIL bicubic resample,
// crop and normalisation) off the main thread. The resample is pure JS (~5 ms for a 500x375
// JPEG), and onnxruntime's session.run occupies the main JS thread too (see backend.ts), so
// in-process the two take turns; with the pool the main thread only copies finished tensors into
// the batch and runs the graph.
//
// Results come back as Float32Array over transferred ArrayBuffers (no copy, and no
// SharedArrayBuffer: onnxruntime-node refuses tensors backed by one). The pixels are computed by
// the same functions as in-process (preprocessImage), so they are bit-identical.
//
// Behaviour:
//   - a bad image is a per-image ImagePreprocessError (same reason text as in-process); it
//     never stops the pool. A worker that dies (crash, process.exit in a custom worker) is
//     replaced and its queued images go to the others; the ones it was decoding are retried
//     alone ("solo": nothing else runs beside them in that worker), so an image that kills a
//     worker again is known to be the cause and fails with a reason, and the rest succeed;
//   - images wait in a queue here and are handed to ready workers, least loaded first, up to a
//     fair share of all pending images each (workers still starting count in the share); each
//     worker keeps its share in its own queue and decodes `perWorker` at a time, so the
//     workers stay busy while the main thread is blocked in session.run, and no image waits
//     on a starting worker while a ready one is idle. While no worker is ready yet (a worker
//     takes ~0.1 s to start), this thread preprocesses waiting images itself (`perWorker` at
//     a time; never an image a worker died on), so a cold pool is not slower to first
//     results than the in-process path;
//   - a job (one encodeImages call) is cancelled by its AbortSignal or cancel(): its pending
//     promises reject at once, queued tasks are dropped in the workers, in-flight ones (a few
//     ms) finish and are discarded. Workers are never terminated mid-decode (sharp's native
//     work must not outlive its thread), except as a last resort 5 s into close();
//   - workers are started as the work needs them (one per `perWorker` pending images, up to
//     `size`), unref'd while idle (an idle pool never keeps the process alive), and retired
//     after `idleTimeoutMs` without work; close() lets in-flight decodes finish and stops them
//     all (the process then exits naturally);
//   - when no worker can start (e.g. the worker file is missing from a bundle), the pool
//     preprocesses on the calling thread instead and says why in `broken`.
//
// Worker file: `preprocess-worker.js` beside this module (out/extension/engine/ with tsc). An
// esbuild bundle must emit extension/engine/preprocess-worker.ts as its own entry point, with
// sharp external like the main bundle, and either place it beside the bundle as
// `preprocess-worker.js` (the default path is resolved from __dirname) or pass its path as
// `workerFile` (ClipnModelOptions.preprocessWorkerFile).
//
// Throughput notes: the workers share the process's libuv threadpool (UV_THREADPOOL_SIZE,
// default 4) for file reads and sharp's decodes; with many workers, set it to the core count
// before the process first uses the pool (bench/gpu.ts does). sharp.concurrency() is
// process-wide and left as the caller set it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
// A value import on purpose: it loads sharp on the main thread before any worker does, which
// keeps libvips loaded until every thread is done (sharp's worker_threads advice on glibc).
import { ImagePreprocessError, preprocessImage } from './preprocess';
import type { ImageInput, PreprocessConfig } from './preprocess';
import type { WorkerInit, WorkerReply, WorkerRequest } from './preprocess-worker-messages';

/** The compiled worker beside this module (out/extension/engine/preprocess-worker.js, or a bundle's directory). */
export function defaultPreprocessWorkerFile(): string {
  return path.join(__dirname, 'preprocess-worker.js');
}

// ---------------------------------------------------------------------------------------------

export interface PreprocessPoolOptions {
  /** Most worker threads (>= 1); spawned as work needs them. */
  size: number;
  /** The worker script (default: defaultPreprocessWorkerFile()). */
  workerFile?: string;
  /** Images each worker decodes at once (default 2). */
  perWorker?: number;
  /** Idle workers stop after this long without work (default 30 s; 0: never). */
  idleTimeoutMs?: number;
}

export interface PreprocessJob {
  /**
   * One image -> float32 CHW [3, S, S], identical to preprocessImage(input, cfg, name). Rejects
   * with ImagePreprocessError for an image that cannot be read or decoded, with the signal's
   * reason once the job is cancelled, and with an Error once the pool is closed.
   */
  preprocess(input: ImageInput, name: string): Promise<Float32Array>;
  /** Cancels what is still pending and releases the signal listener (call it when done, too). */
  cancel(reason?: unknown): void;
}

export interface PreprocessPoolStats {
  /** Worker threads alive (busy, idle or stopping). */
  threads: number;
  /** Of those, the ones started and taking work. */
  ready: number;
  /** Workers started so far. */
  started: number;
  /** Images preprocessed by workers / on the calling thread. */
  byWorkers: number;
  inProcess: number;
  /** Workers that died with work in hand. */
  crashes: number;
}

interface JobState {
  id: number;
  cfg: PreprocessConfig;
  cancelled?: unknown;
}

interface Task {
  id: number;
  job: JobState;
  input: ImageInput;
  name: string;
  /** Times it was being decoded by a worker that died. */
  strikes: number;
  /** Sent as solo (strikes > 0). */
  solo: boolean;
  settled: boolean;
  resolve: (px: Float32Array) => void;
  reject: (err: unknown) => void;
}

interface Slot {
  worker: Worker;
  /** Tasks handed to this worker, in the order it will run them. */
  outstanding: Map<number, Task>;
  ready: boolean;
  retiring: boolean;
  error?: Error;
  exited: Promise<void>;
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0];
}

function abortError(message: string): Error {
  const err = new Error(message);
  err.name = 'AbortError';
  return err;
}

const CLOSE_GRACE_MS = 5000;

export class PreprocessPool {
  readonly workerFile: string;
  private maxWorkers: number;
  private readonly perWorker: number;
  private readonly idleTimeoutMs: number;
  /** Workers taking new work. */
  private slots: Slot[] = [];
  /** Workers told to stop, until they exit. */
  private readonly retiring = new Set<Slot>();
  /** Images not yet handed to a worker, in order. */
  private waiting: Task[] = [];
  private nextTask = 1;
  private nextJob = 1;
  private idleTimer?: NodeJS.Timeout;
  private closing?: Promise<void>;
  private brokenReason?: string;
  private everReady = false;
  private startFailures = 0;
  /** Images preprocessed on this thread: while no worker is ready yet, or when none can start. */
  private local: Task[] = [];
  private localActive = 0;
  private readonly counts = { started: 0, byWorkers: 0, inProcess: 0, crashes: 0 };

  constructor(opts: PreprocessPoolOptions) {
    this.maxWorkers = PreprocessPool.checkSize(opts.size);
    this.workerFile = path.resolve(opts.workerFile ?? defaultPreprocessWorkerFile());
    this.perWorker = Math.max(1, Math.floor(opts.perWorker ?? 2));
    this.idleTimeoutMs = Math.max(0, opts.idleTimeoutMs ?? 30_000);
    if (!fs.existsSync(this.workerFile)) {
      throw new Error(
        `preprocessing worker ${this.workerFile} not found: build with tsc (it is compiled beside preprocess-pool.js), ` +
          `bundle extension/engine/preprocess-worker.ts as its own entry and pass its path as preprocessWorkerFile, ` +
          `or set preprocessWorkers to 0`,
      );
    }
  }

  private static checkSize(n: number): number {
    if (!Number.isInteger(n) || n < 1) throw new Error(`preprocess pool: size must be a whole number >= 1, got ${n}`);
    return n;
  }

  /** Most workers. */
  get size(): number {
    return this.maxWorkers;
  }

  /** Why the pool preprocesses on the calling thread (no worker could start), if it does. */
  get broken(): string | undefined {
    return this.brokenReason;
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  stats(): PreprocessPoolStats {
    return { threads: this.slots.length + this.retiring.size, ready: this.slots.filter((s) => s.ready).length, ...this.counts };
  }

  /** Changes the most workers; extra ones finish their queue and stop. */
  resize(n: number): void {
    this.maxWorkers = PreprocessPool.checkSize(n);
    while (this.slots.length > this.maxWorkers) this.retire(this.slots[this.slots.length - 1], true);
  }

  /** A group of tasks with one config, cancelled together (e.g. one encodeImages call). */
  job(cfg: PreprocessConfig, signal?: AbortSignal): PreprocessJob {
    const state: JobState = { id: this.nextJob++, cfg };
    const onAbort = () => cancel(signal!.reason);
    const cancel = (reason?: unknown) => {
      signal?.removeEventListener('abort', onAbort);
      if (state.cancelled !== undefined) return;
      state.cancelled = reason ?? abortError('preprocessing was cancelled');
      this.cancelJob(state);
    };
    if (signal) {
      if (signal.aborted) state.cancelled = signal.reason;
      else signal.addEventListener('abort', onAbort, { once: true });
    }
    return {
      preprocess: (input, name) =>
        new Promise<Float32Array>((resolve, reject) => {
          const task: Task = { id: this.nextTask++, job: state, input, name, strikes: 0, solo: false, settled: false, resolve, reject };
          this.dispatch(task);
        }),
      cancel,
    };
  }

  /** Drops pending work, lets in-flight decodes finish, and stops every worker. Idempotent. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.clearIdle();
    const err = new Error('the preprocessing pool was closed');
    for (const slot of [...this.slots, ...this.retiring]) for (const task of slot.outstanding.values()) this.settle(task, err);
    for (const task of [...this.local, ...this.waiting]) this.settle(task, err);
    this.local = [];
    this.waiting = [];
    const all = [...this.slots, ...this.retiring];
    this.slots = [];
    for (const slot of all) this.retiring.add(slot);
    this.closing = Promise.all(
      all.map((slot) => {
        // Keep the process alive until the thread is gone, so `await close()` returns.
        slot.worker.ref();
        this.post(slot, { t: 'close', drain: false });
        const timer = setTimeout(() => void slot.worker.terminate(), CLOSE_GRACE_MS);
        return slot.exited.finally(() => clearTimeout(timer));
      }),
    ).then(() => undefined);
    return this.closing;
  }

  // -------------------------------------------------------------------------------------------

  private settle(task: Task, result: Float32Array | unknown, ok = false): void {
    if (task.settled) return;
    task.settled = true;
    if (ok) task.resolve(result as Float32Array);
    else task.reject(result);
  }

  /** Queues a task (a retry goes first); pump() hands it to a worker. */
  private dispatch(task: Task): void {
    this.requeue([task], false);
  }

  private requeue(tasks: Task[], front: boolean): void {
    const keep: Task[] = [];
    for (const task of tasks) {
      if (this.closing) this.settle(task, new Error('the preprocessing pool was closed'));
      else if (task.job.cancelled !== undefined) this.settle(task, task.job.cancelled);
      else if (!task.settled) keep.push(task);
    }
    if (keep.length === 0) return;
    if (this.brokenReason) return keep.forEach((task) => this.runLocalOrFail(task));
    if (front) this.waiting.unshift(...keep);
    else this.waiting.push(...keep);
    this.pump();
  }

  /**
   * Starts workers to match the pending images (perWorker each, up to size), then hands waiting
   * images to ready workers, least loaded first, up to a fair share each. Workers still starting
   * count in the share, so the first ready worker does not take everything.
   */
  private pump(): void {
    if (this.closing || this.brokenReason) return;
    let load = this.waiting.length;
    for (const s of this.slots) load += s.outstanding.size;
    const want = Math.min(this.maxWorkers, Math.ceil(load / this.perWorker));
    while (this.slots.length < want) {
      try {
        this.spawn();
      } catch (err) {
        if (this.slots.length === 0) return this.breakPool(`cannot start a preprocessing worker (${firstLine(err)}); preprocessing on the calling thread`);
        break;
      }
    }
    const share = Math.max(this.perWorker, Math.ceil(load / Math.max(1, this.slots.length)));
    while (this.waiting.length > 0) {
      let best: Slot | undefined;
      for (const s of this.slots) if (s.ready && (!best || s.outstanding.size < best.outstanding.size)) best = s;
      if (!best) break;
      if (best.outstanding.size >= share) return;
      this.send(best, this.waiting.shift()!);
    }
    // No worker ready yet: work here meanwhile (pumpLocal calls pump again as each one ends),
    // but never on an image a worker died on (a native crash here would take the process).
    while (this.localActive < this.perWorker) {
      const i = this.waiting.findIndex((t) => t.strikes === 0);
      if (i < 0) break;
      this.runLocal(this.waiting.splice(i, 1)[0]);
    }
  }

  /** No worker can start: everything pending runs on this thread from now on. */
  private breakPool(reason: string): void {
    this.brokenReason = reason;
    const waiting = this.waiting;
    this.waiting = [];
    for (const task of waiting) this.runLocalOrFail(task);
  }

  /** Never runs an image a worker died on here (a native crash would take this process). */
  private runLocalOrFail(task: Task): void {
    if (task.strikes === 0) return this.runLocal(task);
    this.settle(task, new ImagePreprocessError(task.name, `the preprocessing worker stopped while decoding this image (${this.brokenReason ?? 'no worker left'})`));
  }

  private spawn(): Slot {
    const worker = new Worker(this.workerFile, { workerData: { perWorker: this.perWorker } satisfies WorkerInit });
    const slot: Slot = {
      worker,
      outstanding: new Map(),
      ready: false,
      retiring: false,
      exited: new Promise<void>((resolve) => worker.once('exit', (code: number) => (this.onExit(slot, code), resolve()))),
    };
    worker.on('message', (m: WorkerReply) => this.onMessage(slot, m));
    worker.on('error', (err) => (slot.error = err));
    // Ref'd while starting (images are waiting for it) and while it holds work; never when idle.
    this.slots.push(slot);
    this.counts.started++;
    return slot;
  }

  private updateRef(slot: Slot): void {
    if (this.closing) return;
    if (slot.outstanding.size > 0 || (!slot.ready && !slot.retiring)) slot.worker.ref();
    else slot.worker.unref();
  }

  private post(slot: Slot, msg: WorkerRequest, transfer?: ArrayBuffer[]): void {
    slot.worker.postMessage(msg, transfer);
  }

  private send(slot: Slot, task: Task): void {
    slot.outstanding.set(task.id, task);
    this.updateRef(slot);
    this.clearIdle();
    task.solo = task.strikes > 0;
    const base = { t: 'task' as const, id: task.id, job: task.job.id, cfg: task.job.cfg, name: task.name, solo: task.solo };
    try {
      if (typeof task.input === 'string') {
        this.post(slot, { ...base, path: task.input });
      } else {
        // An exact copy, transferred: never the caller's memory, never the rest of a pooled
        // ArrayBuffer the Buffer may be a view of; the original stays here for a retry.
        const bytes = new Uint8Array(task.input);
        this.post(slot, { ...base, bytes }, [bytes.buffer as ArrayBuffer]);
      }
    } catch (err) {
      this.release(slot, task.id);
      this.settle(task, new ImagePreprocessError(task.name, `cannot hand the image to a preprocessing worker (${firstLine(err)})`));
    }
  }

  /** Forgets a task on a worker; unrefs the worker when it holds nothing. */
  private release(slot: Slot, id: number): Task | undefined {
    const task = slot.outstanding.get(id);
    if (!task) return undefined;
    slot.outstanding.delete(id);
    this.updateRef(slot);
    if (slot.outstanding.size === 0) this.maybeIdle();
    return task;
  }

  private onMessage(slot: Slot, m: WorkerReply): void {
    if (m.t === 'ready') {
      slot.ready = true;
      this.everReady = true;
      this.startFailures = 0;
      this.updateRef(slot);
      return this.pump();
    }
    const task = this.release(slot, m.id);
    if (!task) return;
    if (m.data) {
      this.counts.byWorkers++;
      this.settle(task, new Float32Array(m.data), true);
    } else if (m.cancelled) {
      this.settle(task, task.job.cancelled ?? abortError('preprocessing was cancelled'));
    } else {
      this.settle(task, new ImagePreprocessError(task.name, m.reason ?? 'preprocessing failed'));
    }
    this.pump();
  }

  private onExit(slot: Slot, code: number): void {
    this.retiring.delete(slot);
    this.slots = this.slots.filter((s) => s !== slot);
    const tasks = [...slot.outstanding.values()];
    slot.outstanding.clear();
    if (tasks.length === 0 || this.closing) {
      for (const t of tasks) this.settle(t, new Error('the preprocessing pool was closed'));
      this.maybeIdle();
      // Workers get images only once ready: one that dies before that holds none.
      if (!slot.ready && !slot.retiring && !this.closing) this.noteStartFailure(slot, code);
      return this.pump();
    }
    const why = this.exitReason(slot, code);
    this.counts.crashes++;
    // The worker runs its queue in order, so the images it was decoding are the first unsettled
    // ones (cancelled ones it had dropped are settled): a solo one alone, else up to perWorker.
    const live = tasks.filter((t) => !t.settled);
    const suspects = new Set<Task>();
    if (slot.ready && live.length > 0) {
      if (live[0].solo) {
        suspects.add(live[0]);
      } else {
        for (const t of live) {
          if (t.solo || suspects.size >= this.perWorker) break;
          suspects.add(t);
        }
      }
    }
    const again: Task[] = [];
    for (const task of live) {
      if (suspects.has(task) && ++task.strikes >= 2) {
        this.settle(task, new ImagePreprocessError(task.name, `the preprocessing worker stopped while decoding this image, twice (${why})`));
      } else {
        again.push(task);
      }
    }
    this.requeue(again, true);
  }

  private exitReason(slot: Slot, code: number): string {
    return slot.error ? `error: ${firstLine(slot.error)}` : `exit code ${code}`;
  }

  /** A worker exited before it was ready (a bad worker file, a native module missing from a bundle...). */
  private noteStartFailure(slot: Slot, code: number): void {
    this.startFailures++;
    if (!this.brokenReason && (!this.everReady || this.startFailures >= 3)) {
      this.breakPool(`the preprocessing worker ${this.workerFile} did not start (${this.exitReason(slot, code)}); preprocessing on the calling thread`);
    }
  }

  private cancelJob(job: JobState): void {
    for (const slot of [...this.slots, ...this.retiring]) {
      let has = false;
      for (const task of slot.outstanding.values()) {
        if (task.job !== job) continue;
        has = true;
        this.settle(task, job.cancelled);
      }
      if (has) this.post(slot, { t: 'cancel', job: job.id });
    }
    const drop = (task: Task) => (task.job === job ? (this.settle(task, job.cancelled), false) : true);
    this.local = this.local.filter(drop);
    this.waiting = this.waiting.filter(drop);
  }

  private retire(slot: Slot, drain: boolean): void {
    this.slots = this.slots.filter((s) => s !== slot);
    slot.retiring = true;
    this.retiring.add(slot);
    this.updateRef(slot);
    this.post(slot, { t: 'close', drain });
  }

  private maybeIdle(): void {
    if (this.idleTimeoutMs === 0 || this.closing || this.idleTimer || this.slots.length === 0 || this.waiting.length > 0) return;
    if (this.slots.some((s) => s.outstanding.size > 0 || !s.ready)) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      for (const slot of [...this.slots]) if (slot.outstanding.size === 0) this.retire(slot, true);
    }, this.idleTimeoutMs);
    this.idleTimer.unref();
  }

  private clearIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  private runLocal(task: Task): void {
    this.local.push(task);
    this.pumpLocal();
  }

  private pumpLocal(): void {
    while (this.localActive < this.perWorker && this.local.length > 0) {
      const task = this.local.shift()!;
      if (task.settled) continue;
      this.localActive++;
      preprocessImage(task.input, task.job.cfg, task.name)
        .then(
          (px) => {
            this.counts.inProcess++;
            this.settle(task, px, true);
          },
          (err: unknown) => this.settle(task, err instanceof ImagePreprocessError ? err : new ImagePreprocessError(task.name, firstLine(err))),
        )
        .finally(() => {
          this.localActive--;
          this.pumpLocal();
          this.pump();
        });
    }
  }
}
