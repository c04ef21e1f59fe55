// Scoring ablation variants against fixed images and a fixed yes side (see ablation.ts's module
// comment for the exactness of CTW and ATD): the values (metrics, or the greedy objective) of k
// variants' [C, D] "no" features at a time, computed by scoring workers (ablation-worker.ts),
// each holding a contiguous share of the images. A batch runs in two phases: every worker scores
// its rows of every variant into shared buffers (exact margins, its ATD graph, CTW and ATD);
// once all have, the metrics (one sort per class and score) are shared out among the workers.
// So every core does the same work whatever the batch (a greedy step's one chosen subset too),
// and the main thread only posts and collects: it builds the next batch's features meanwhile.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { DetectionMetrics } from '../metrics';
import type { FromWorker, MetricsUnit, ScoreBuffers, ToWorker, WorkerInit } from './ablation-worker';
import type { VariantValue, Want } from './variant-math';

/**
 * Elements per ATD graph intermediate (variants x C x tile rows) by default: 16 variants x 100
 * classes x 327 rows. On the 2-core machine the graph over tiles of a few hundred rows ran ~1.4x
 * as fast as over all 10k rows at once (2^22, the earlier default); 2^17..2^20 measured alike
 * with two workers; much smaller tiles pay the ~0.09 ms each graph run costs.
 */
export const CHUNK_ELEMENTS = 1 << 19;
/** A worker that does not answer 'close' within this is terminated anyway. */
const CLOSE_WAIT_MS = 5000;

/** The compiled worker beside this module (out/ with tsc, or a bundle's directory). */
export function ablationWorkerFile(): string {
  return path.join(__dirname, 'ablation-worker.js');
}

export interface ScorerOptions {
  /** [n, d] images, the first idN ID. */
  x: Float32Array;
  n: number;
  d: number;
  idN: number;
  /** [c, d] yes features. */
  yes: Float32Array;
  c: number;
  executionProviders: readonly string[];
  /** ATD sums by the native kernel (atd-native.ts), which the caller found loaded, instead of the graph (default false). */
  nativeAtd?: boolean;
  chunkElements: number;
  /** Variants per score() call that the graph tiles are sized for (more are run in turn). */
  batchVariants: number;
  /** Scoring workers (at most n). */
  workers: number;
  workerFile?: string;
}

interface Job {
  k: number;
  want: Want;
  units: MetricsUnit[];
  buffers: ScoreBuffers;
  rowsLeft: number;
  parts: DetectionMetrics[][];
  partsLeft: number;
  resolve: (v: VariantValue[]) => void;
  reject: (e: Error) => void;
}

type Settle = { resolve: () => void; reject: (e: Error) => void };

export class VariantScorer {
  scored = 0;
  /** Per image: j* as scores.ts picks it. */
  readonly predicted: Int32Array;
  private readonly workers: Worker[];
  private readonly starts: number[];
  private readonly jobs = new Map<number, Job>();
  /** Each worker's start; settling one twice is a no-op, so a failure rejects all. */
  private readonly starting: Settle[] = [];
  private startsLeft: number;
  private readonly closed: Array<() => void> = [];
  private readonly started: Promise<void>;
  private nextId = 0;
  private failed?: Error;
  private closing?: Promise<void>;

  /** False once a worker failed or close() was called. */
  get usable(): boolean {
    return this.failed === undefined;
  }

  /** Workers started and each share's yes side and ATD session ready. */
  static async create(o: ScorerOptions): Promise<VariantScorer> {
    const scorer = new VariantScorer(o, o.workerFile ?? ablationWorkerFile());
    try {
      await scorer.started;
    } catch (err) {
      await scorer.close();
      throw err;
    }
    return scorer;
  }

  private constructor(private readonly o: ScorerOptions, private readonly file: string) {
    const { n, d, c } = o;
    const count = Math.max(1, Math.min(o.workers, n));
    this.predicted = new Int32Array(n);
    this.starts = Array.from({ length: count + 1 }, (_, w) => Math.floor((w * n) / count));
    this.startsLeft = count;
    const tileRows = Math.max(1, Math.min(this.starts[1], Math.floor(o.chunkElements / (o.batchVariants * c))));
    const ready: Array<Promise<void>> = [];
    this.workers = this.starts.slice(0, count).map((start, w) => {
      ready.push(new Promise<void>((resolve, reject) => (this.starting[w] = { resolve, reject })));
      const worker = new Worker(this.file);
      worker.on('message', (m: FromWorker) => this.receive(w, m));
      worker.on('error', (err) => this.fail(err));
      worker.on('exit', (code) => this.fail(new Error(`exit code ${code}`)));
      const rows = this.starts[w + 1] - start;
      const init: WorkerInit = {
        x: o.x.slice(start * d, (start + rows) * d), rows, start, n, idN: o.idN, d, yes: o.yes, c,
        executionProviders: [...o.executionProviders], nativeAtd: o.nativeAtd ?? false, chunkElements: o.chunkElements, tileRows, batchVariants: o.batchVariants,
      };
      this.post(worker, { type: 'init', ...init });
      return worker;
    });
    this.started = Promise.all(ready).then(() => this.updateRefs());
    this.started.catch(() => undefined); // create() awaits it
  }

  private post(worker: Worker, msg: ToWorker): void {
    worker.postMessage(msg);
  }

  /** Idle workers must not keep the process alive (a kept scorer waits for the next run). */
  private updateRefs(): void {
    const busy = this.jobs.size > 0 || this.startsLeft > 0;
    for (const w of this.workers) busy ? w.ref() : w.unref();
  }

  private fail(err: Error): void {
    this.failed ??= new Error(`ablation scoring worker (${this.file}) stopped: ${err.message}`);
    for (const s of this.starting) s.reject(this.failed);
    for (const job of this.jobs.values()) job.reject(this.failed);
    this.jobs.clear();
    for (const done of this.closed.splice(0)) done();
  }

  private receive(w: number, m: FromWorker): void {
    if (m.type === 'ready') {
      this.predicted.set(m.predicted, this.starts[w]);
      this.startsLeft--;
      this.starting[w].resolve();
      return;
    }
    if (m.type === 'closed') {
      this.closed[w]?.();
      return;
    }
    if (m.type === 'error' && m.id === undefined) {
      this.fail(new Error(m.error));
      return;
    }
    const job = this.jobs.get(m.id!);
    if (!job) return;
    if (m.type === 'error') {
      this.jobs.delete(m.id!);
      job.reject(new Error(`ablation scoring worker: ${m.error}`));
    } else if (m.type === 'rows') {
      if (--job.rowsLeft === 0) this.shareMetrics(m.id, job);
    } else {
      job.parts[w] = m.values;
      if (--job.partsLeft === 0) {
        this.jobs.delete(m.id);
        job.resolve(this.assemble(job));
      }
    }
    this.updateRefs();
  }

  /** Every worker gets an equal run of the (variant, score) units, in unit order. */
  private shareMetrics(id: number, job: Job): void {
    const count = this.workers.length;
    job.partsLeft = 0;
    for (let w = 0; w < count; w++) {
      const units = job.units.slice(Math.floor((w * job.units.length) / count), Math.floor(((w + 1) * job.units.length) / count));
      job.parts[w] = [];
      if (units.length === 0) continue;
      job.partsLeft++;
      this.post(this.workers[w], { type: 'metrics', id, units, buffers: job.buffers });
    }
  }

  private assemble(job: Job): VariantValue[] {
    const r = job.parts.flat();
    const { want } = job;
    if (want.kind === 'metrics') return Array.from({ length: job.k }, (_, v) => ({ ctw: r[2 * v], atd: r[2 * v + 1] }));
    return r.map((m) => m[want.metric]);
  }

  /**
   * Each variant's value as `want` asks, once the workers have them. CTW needs no graph pass,
   * so an objective on CTW skips the ATD graph.
   */
  score(variants: readonly Float32Array[], want: Want): Promise<VariantValue[]> {
    if (this.failed) return Promise.reject(this.failed);
    const { n } = this.o;
    const k = variants.length;
    this.scored += k;
    const scores = (on: boolean) => (on ? new SharedArrayBuffer(8 * k * n) : undefined);
    const withCtw = want.kind === 'metrics' || want.score === 'ctw';
    const withAtd = want.kind === 'metrics' || want.score === 'atd';
    const cd = this.o.c * this.o.d;
    const shared = new SharedArrayBuffer(4 * k * cd);
    variants.forEach((g, v) => new Float32Array(shared, 4 * v * cd, cd).set(g.subarray(0, cd)));
    const buffers: ScoreBuffers = { variants: shared, ctw: scores(withCtw), atd: scores(withAtd), fence: new SharedArrayBuffer(4) };
    Atomics.store(new Int32Array(buffers.fence), 0, 0); // orders the copies before the workers' reads
    const units: MetricsUnit[] = want.kind === 'metrics'
      ? variants.flatMap((_, variant) => [{ variant, score: 'ctw' as const }, { variant, score: 'atd' as const }])
      : variants.map((_, variant) => ({ variant, score: want.score }));
    const id = this.nextId++;
    const values = new Promise<VariantValue[]>((resolve, reject) => {
      this.jobs.set(id, { k, want, units, buffers, rowsLeft: this.workers.length, parts: [], partsLeft: 0, resolve, reject });
    });
    for (const w of this.workers) this.post(w, { type: 'rows', id, buffers });
    this.updateRefs();
    return values;
  }

  /** Stops the workers (each first releases its session); pending values are rejected. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const graceful = this.failed === undefined;
      this.fail(new Error('closed'));
      if (graceful) {
        await Promise.all(this.workers.map((worker, w) => new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, CLOSE_WAIT_MS);
          this.closed[w] = () => (clearTimeout(timer), resolve());
          this.post(worker, { type: 'close' });
        })));
      }
      this.closed.length = 0;
      await Promise.all(this.workers.map((w) => w.terminate()));
    })();
    return this.closing;
  }
}

// ---------------------------------------------------------------------------------------------
// The last ablation's scorer, kept for the next one on the same images, yes side and options
// (its key): the other pool of the same data, or a notebook's re-run, skips the setup (every
// image's yes logits and softmax, the workers and their sessions: ~0.3 s on the bench). One at
// most; it is closed as soon as a run on other inputs starts, after KEEP_IDLE_MS unused, or by
// releaseAblationScorers(). Its workers are unref'd while idle, so it never keeps a process alive.

export const KEEP_IDLE_MS = 60_000;
let kept: { key: string; scorer: VariantScorer; timer: NodeJS.Timeout } | undefined;

/** The kept scorer if it was parked under `key` and is sound (it is then the caller's); any other is closed. */
export function takeKeptScorer(key: string): VariantScorer | undefined {
  if (kept?.key !== key || !kept.scorer.usable) {
    void releaseAblationScorers();
    return undefined;
  }
  const { scorer, timer } = kept;
  clearTimeout(timer);
  kept = undefined;
  return scorer;
}

/** Parks `scorer` for the next run (closing the one parked before). */
export function keepScorer(key: string, scorer: VariantScorer): void {
  void releaseAblationScorers();
  const timer = setTimeout(() => void releaseAblationScorers(), KEEP_IDLE_MS);
  timer.unref();
  kept = { key, scorer, timer };
}

/** Closes the kept scorer now (its workers and sessions); a later run starts a new one. */
export async function releaseAblationScorers(): Promise<void> {
  const k = kept;
  kept = undefined;
  if (!k) return;
  clearTimeout(k.timer);
  await k.scorer.close();
}
