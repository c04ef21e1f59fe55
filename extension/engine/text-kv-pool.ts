// Worker threads that run the shared-beginnings text graph (text_no_kv) on the CPU, each with its
// own session (text-kv-worker.ts). onnxruntime-node runs a session on the calling thread, and the
// kv graph is many small ops (width 128 in the bundled model) between which a session's intra-op
// threads wait on each other: 24,576 rows took 2.0-2.5 s in one session with two threads, 1.6-1.85 s
// in two workers with one each (2-core machine, bench/README "Ablation"). A call's rows are cut into one contiguous share per worker in encodeSharedPrefix's
// own order (split, past), so each share is whole pasts but for its edges; a row's feature does
// not depend on its batch or thread count, so the shares' rows are the calling thread's bits.
// Each worker holds its own session of the tower (~380 MB for ViT-B/16's), so 'auto' starts only
// as many as a quarter of the free memory holds, and none where fewer than two fit.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { NativeKvTower } from './native-kv-tower';
import { encodeSharedPrefix } from './shared-prefix';
import type { KvRunner, KvShape, SharedPrefixRow } from './shared-prefix';
import type { FromTextWorker, ToTextWorker } from './text-kv-worker';

/** At most this many workers: each holds a session of the no tower (~380 MB for ViT-B/16). */
const MAX_WORKERS = 4;
const CLOSE_WAIT_MS = 5000;
/**
 * Memory a worker's session holds per byte of its graph file: the weights, and onnxruntime's
 * prepacked copies of the MatMul weights (measured: a 100 MB graph's session added ~150 MB of
 * resident memory, so ViT-B/16's ~256 MB no tower costs ~380 MB per worker).
 */
const SESSION_BYTES_PER_GRAPH_BYTE = 1.5;
/** 'auto' workers take at most this share of the memory free when they start. */
const AUTO_MEMORY_SHARE = 0.25;

/** The compiled worker beside this module (out/ with tsc, or a bundle's directory). */
export function textKvWorkerFile(): string {
  return path.join(__dirname, 'text-kv-worker.js');
}

/** 'auto' -> min(cores, 4) workers where there are two cores or more, else 0 (the calling thread). */
export function resolveTextWorkers(setting: number | 'auto' | undefined, cores: number): number {
  if (setting === undefined || setting === 'auto') return cores >= 2 ? Math.min(cores, MAX_WORKERS) : 0;
  if (!Number.isInteger(setting) || setting < 0) {
    throw new Error(`textWorkers must be 'auto' or a whole number >= 0 (0: the calling thread), got ${JSON.stringify(setting)}`);
  }
  return setting;
}

/**
 * How many of `wanted` workers' sessions fit in `budgetBytes` for a graph file of `graphBytes`;
 * 0 where fewer than two fit (one worker would only add a copy of the tower beside the calling
 * thread's session).
 */
export function workersForMemory(wanted: number, graphBytes: number, budgetBytes: number): number {
  const fit = Math.floor(budgetBytes / (SESSION_BYTES_PER_GRAPH_BYTE * Math.max(1, graphBytes)));
  const n = Math.min(wanted, fit);
  return n >= 2 ? n : 0;
}

/**
 * Row indices in encodeSharedPrefix's order (split, then past in order of first appearance, then
 * own length), cut into at most `parts` contiguous shares of about equal cost; empty shares dropped.
 * A row costs its own tokens plus one: its EOT runs the last block's MLP on its own (measured on
 * the 128-template pool: ~0.021 ms per own token and ~0.028 ms per row on one core).
 */
export function shareRows(rows: readonly SharedPrefixRow[], parts: number): number[][] {
  const own = (i: number) => rows[i].ids.length - rows[i].split + 1;
  const pastIds = new Map<string, number>();
  const past = rows.map((r) => pastIds.get(r.past) ?? (pastIds.set(r.past, pastIds.size), pastIds.size - 1));
  const order = rows.map((_, i) => i).sort((a, b) => rows[a].split - rows[b].split || past[a] - past[b] || own(a) - own(b) || a - b);
  const total = order.reduce((sum, i) => sum + own(i), 0);
  const shares: number[][] = [];
  let share: number[] = [];
  let acc = 0;
  for (const i of order) {
    share.push(i);
    acc += own(i);
    if (shares.length < parts - 1 && acc >= (total * (shares.length + 1)) / parts) (shares.push(share), (share = []));
  }
  if (share.length > 0) shares.push(share);
  return shares;
}

export interface KvTextPoolOptions {
  /** The text_no_kv graph file. */
  file: string;
  shape: KvShape;
  workers: number;
  /** Intra-op threads per worker. */
  threads: number;
  /** Run the graph by the native text tower (native-kv-tower.ts), checked by the caller, instead of onnxruntime. */
  native: boolean;
  workerFile?: string;
}

interface Job {
  shares: number[][];
  store: (rows: number[], embeds: Float32Array) => void;
  left: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class KvTextPool {
  private readonly jobs = new Map<number, Job>();
  private nextId = 0;
  private closed = false;
  /** Why the pool stopped working (a worker died or failed to start); set once. */
  broken?: string;
  /** Jobs (calls) run so far. */
  calls = 0;

  private constructor(private readonly workers: Worker[], private readonly script: string) {}

  /** Starts the workers and opens their sessions; rejects (and stops them) if any fails. */
  static async start(o: KvTextPoolOptions): Promise<KvTextPool> {
    const script = path.resolve(o.workerFile ?? textKvWorkerFile());
    if (!fs.existsSync(script)) throw new Error(`text worker ${script} not found: build with tsc (it is compiled beside text-kv-pool.js) or bundle extension/engine/text-kv-worker.ts beside the engine`);
    const workers = Array.from({ length: o.workers }, () => new Worker(script));
    const pool = new KvTextPool(workers, script);
    // Until every worker is ready, a message, error or exit settles its start; after it, the pool's
    // own handlers (a worker that stops later breaks the pool).
    let started = false;
    const starts = workers.map((w) => new Promise<void>((resolve, reject) => {
      const fail = (why: string) => reject(new Error(`text worker (${script}) ${why}`));
      w.on('message', (m: FromTextWorker) => {
        if (started) pool.receive(m);
        else if (m.type === 'ready') resolve();
        else fail(`could not open ${o.file}: ${m.type === 'error' ? m.error : m.type}`);
      });
      w.on('error', (e) => (started ? pool.fail(`text worker (${script}) failed: ${e.message}`) : fail(`failed: ${e.message}`)));
      w.on('exit', (code) => (started ? pool.fail(`text worker (${script}) stopped (exit code ${code})`) : fail(`stopped (exit code ${code}) before it was ready`)));
      w.postMessage({ type: 'init', file: o.file, shape: o.shape, threads: o.threads, native: o.native } satisfies ToTextWorker);
    }));
    try {
      await Promise.all(starts);
    } catch (err) {
      pool.closed = true;
      await Promise.all(workers.map((w) => w.terminate()));
      throw err;
    }
    started = true;
    pool.updateRefs();
    return pool;
  }

  /**
   * Encodes `rows` as encodeSharedPrefix(session, shape, rows, batchSize, store) would, the
   * shares in parallel; `store(rowIndices, embeds)` gets each graph run's rows as they come.
   * Rejects with the signal's reason when cancelled (the workers stop at their next graph run)
   * and with an Error when a worker fails (then `broken` says why if the pool is lost).
   */
  encode(rows: readonly SharedPrefixRow[], batchSize: number, store: (rows: number[], embeds: Float32Array) => void, signal?: AbortSignal): Promise<void> {
    if (this.broken) return Promise.reject(new Error(this.broken));
    if (this.closed) return Promise.reject(new Error('text workers were closed'));
    signal?.throwIfAborted();
    if (rows.length === 0) return Promise.resolve();
    const shares = shareRows(rows, this.workers.length);
    const id = this.nextId++;
    const cancel = new SharedArrayBuffer(4);
    this.calls++;
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        Atomics.store(new Int32Array(cancel), 0, 1);
        settle(() => reject(signal!.reason));
      };
      const settle = (f: () => void) => {
        if (!this.jobs.delete(id)) return;
        signal?.removeEventListener('abort', onAbort);
        this.updateRefs();
        f();
      };
      this.jobs.set(id, { shares, store, left: shares.length, resolve: () => settle(resolve), reject: (e) => settle(() => reject(e)) });
      signal?.addEventListener('abort', onAbort, { once: true });
      this.updateRefs();
      shares.forEach((share, w) => this.workers[w].postMessage({ type: 'job', id, share: w, rows: share.map((i) => rows[i]), batchSize, cancel } satisfies ToTextWorker));
    });
  }

  /** Idle workers must not keep the process alive (a model nobody disposed, a CLI that ends). */
  private updateRefs(): void {
    for (const w of this.workers) this.jobs.size > 0 ? w.ref() : w.unref();
  }

  private receive(m: FromTextWorker): void {
    if (m.type === 'ready' || m.id === undefined) {
      if (m.type === 'error') this.fail(`text worker (${this.script}): ${m.error}`);
      return;
    }
    const job = this.jobs.get(m.id);
    if (!job) return; // cancelled or failed already: what is still in flight is dropped
    if (m.type === 'error') {
      job.reject(new Error(`text worker: ${m.error}`));
      return;
    }
    if (m.type === 'batch') {
      const share = job.shares[m.share];
      job.store(m.rows.map((r) => share[r]), m.embeds);
      return;
    }
    if (--job.left === 0) job.resolve();
  }

  private fail(why: string): void {
    if (this.closed || this.broken) return;
    this.broken = why;
    for (const job of [...this.jobs.values()]) job.reject(new Error(why));
    void Promise.all(this.workers.map((w) => w.terminate()));
  }

  /** Stops the workers (each releases its session first, or is terminated after 5 s). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const job of [...this.jobs.values()]) job.reject(new Error('text workers were closed'));
    // A broken pool's workers are terminated already: no 'exit' is coming.
    if (this.broken) return void (await Promise.all(this.workers.map((w) => w.terminate())));
    await Promise.all(this.workers.map((w) => new Promise<void>((resolve) => {
      const timer = setTimeout(() => void w.terminate().then(() => resolve()), CLOSE_WAIT_MS);
      w.once('exit', () => (clearTimeout(timer), resolve()));
      w.postMessage({ type: 'close' } satisfies ToTextWorker);
    })));
  }
}

/** A call of at least this many rows waits for starting workers; smaller ones run on the calling thread meanwhile. */
const WAIT_FOR_START_ROWS = 1024;

export interface KvTextWorkerStats {
  /** Workers the setting asks for (0: the calling thread always), or fewer where memory bounds them. */
  workers: number;
  threads: number;
  state: 'off' | 'starting' | 'ready' | 'failed';
  /** Why the workers could not start or were lost (then calls run on the calling thread). */
  failed?: string;
  /** Where the memory budget allowed fewer workers than the setting asks for (or none): how much each needs. */
  limited?: string;
  calls: number;
}

/**
 * The model's text workers: started on the first shared-beginnings call (in the background; the
 * calls before they are ready run on the calling thread unless large), kept until close(). Where
 * they cannot start or are lost, calls run on the calling thread and `stats().failed` says why.
 */
export class KvTextWorkers {
  private pool?: KvTextPool;
  private starting?: Promise<KvTextPool | undefined>;
  private failed?: string;
  private limited?: string;
  private closed = false;
  private workers: number;
  private readonly auto: boolean;

  /**
   * `memoryBytes` bounds what 'auto' workers' sessions may take (default a quarter of the memory
   * free when they start); a number of workers asked for is started whatever it takes.
   */
  constructor(setting: number | 'auto' | undefined, private readonly cores: number, private readonly workerFile?: string, private readonly memoryBytes?: number) {
    this.workers = resolveTextWorkers(setting, cores);
    this.auto = setting === undefined || setting === 'auto';
    if (memoryBytes !== undefined && !(Number.isFinite(memoryBytes) && memoryBytes >= 0)) {
      throw new Error(`textWorkerMemory must be a number of bytes >= 0, got ${JSON.stringify(memoryBytes)}`);
    }
  }

  private get threads(): number {
    return Math.max(1, Math.floor(this.cores / Math.max(1, this.workers)));
  }

  /** 'auto': as many of the workers as the memory budget holds, and why fewer where it does not. */
  private boundByMemory(file: string): void {
    if (!this.auto || this.workers === 0) return;
    let graphBytes: number;
    try {
      graphBytes = fs.statSync(file).size;
    } catch {
      return; // not a file on disk (nothing to measure): the setting as it is
    }
    const budget = this.memoryBytes ?? AUTO_MEMORY_SHARE * os.freemem();
    const n = workersForMemory(this.workers, graphBytes, budget);
    if (n === this.workers) return;
    const mb = (b: number) => `${Math.round(b / 2 ** 20)} MB`;
    this.limited = `${n} of ${this.workers} text workers: each holds ~${mb(SESSION_BYTES_PER_GRAPH_BYTE * graphBytes)} (${path.basename(file)}), ` +
      `the budget is ${mb(budget)}${this.memoryBytes === undefined ? ` (${AUTO_MEMORY_SHARE * 100}% of the free memory)` : ''}`;
    this.workers = n;
  }

  /** Why the workers could not start, or why the pool was lost. */
  private get failure(): string | undefined {
    return this.failed ?? this.pool?.broken;
  }

  stats(): KvTextWorkerStats {
    const failed = this.failure;
    const state = this.workers === 0 ? 'off' : failed ? 'failed' : this.pool ? 'ready' : this.starting ? 'starting' : 'off';
    return { workers: this.workers, threads: this.threads, state, failed, limited: this.limited, calls: this.pool?.calls ?? 0 };
  }

  private async ready(file: string, shape: KvShape, rows: number, native: boolean): Promise<KvTextPool | undefined> {
    if (this.workers === 0 || this.closed || this.failure) return undefined;
    if (this.pool) return this.pool;
    if (!this.starting) this.boundByMemory(file);
    if (this.workers === 0) return undefined;
    this.starting ??= KvTextPool.start({ file, shape, workers: this.workers, threads: this.threads, native, workerFile: this.workerFile }).then(
      async (pool) => {
        if (this.closed) return void (await pool.close());
        return (this.pool = pool);
      },
      (err: unknown) => void (this.failed = err instanceof Error ? err.message : String(err)),
    );
    return rows >= WAIT_FOR_START_ROWS ? this.starting : undefined;
  }

  /**
   * encodeSharedPrefix(session, shape, rows, batchSize, store, signal) on the workers where they
   * run, else on the calling thread; rows a lost pool did not finish are run here.
   */
  async encode(session: KvRunner & { provider: string }, shape: KvShape, rows: readonly SharedPrefixRow[], batchSize: number, store: (rows: number[], embeds: Float32Array) => void, signal?: AbortSignal): Promise<void> {
    const pool = session.provider === 'cpu' ? await this.ready(session.file, shape, rows.length, session instanceof NativeKvTower) : undefined;
    const stored = new Uint8Array(rows.length);
    if (pool) {
      try {
        return await pool.encode(rows, batchSize, (batch, embeds) => (batch.forEach((r) => (stored[r] = 1)), store(batch, embeds)), signal);
      } catch (err) {
        if (signal?.aborted || !pool.broken) throw err;
      }
    }
    const left = rows.map((_, i) => i).filter((i) => !stored[i]);
    await encodeSharedPrefix(session, shape, left.map((i) => rows[i]), batchSize, (batch, embeds) => store(batch.map((r) => left[r]), embeds), signal);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.starting;
    await this.pool?.close();
    this.pool = undefined;
  }
}
