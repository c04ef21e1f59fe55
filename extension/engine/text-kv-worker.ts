// A text worker of the shared-beginnings pool (text-kv-pool.ts): its own text_no_kv session on
// the CPU, running encodeSharedPrefix on the rows it is sent. onnxruntime-node runs a session on
// the thread that calls it, so two of these, one intra-op thread each, keep two cores busy where
// one session with two intra-op threads left them waiting on each other between its many small
// ops (measured in bench/README "Ablation"). Jobs run one at a time, in arrival order:
//   {type: 'init', file, shape, threads, native} -> {type: 'ready'} (native: the native text tower,
//                                         native-kv-tower.ts, which the main thread has checked)
//   {type: 'job', id, share, rows, batchSize, cancel} -> {type: 'batch', id, share, rows, embeds}
//                                         per graph run, then {type: 'done', id, share}
//   {type: 'close'}                       -> session released, and the thread ends
// A failure answers {type: 'error', id?, error}; a cancelled job stops at its next graph run (the
// pool has settled the call already and drops what comes after).
import { parentPort } from 'node:worker_threads';
import { OrtBackend } from './backend';
import { NativeKvTower } from './native-kv-tower';
import { encodeSharedPrefix } from './shared-prefix';
import type { KvRunner, KvShape, SharedPrefixRow } from './shared-prefix';

export type ToTextWorker =
  | { type: 'init'; file: string; shape: KvShape; threads: number; native: boolean }
  /** `cancel`: an Int32Array's buffer whose element 0 turns non-zero when the job is cancelled. */
  | { type: 'job'; id: number; share: number; rows: SharedPrefixRow[]; batchSize: number; cancel: SharedArrayBuffer }
  | { type: 'close' };

export type FromTextWorker =
  | { type: 'ready' }
  /** `rows`: indices into the job's rows; `embeds`: their features [rows, D]. */
  | { type: 'batch'; id: number; share: number; rows: number[]; embeds: Float32Array }
  | { type: 'done'; id: number; share: number }
  | { type: 'error'; id?: number; error: string };

let state: { backend?: OrtBackend; session: KvRunner; shape: KvShape } | undefined;
const reply = (msg: FromTextWorker) => parentPort!.postMessage(msg);

async function handle(msg: ToTextWorker): Promise<void> {
  if (msg.type === 'init') {
    if (msg.native) state = { session: NativeKvTower.load(msg.file, msg.shape), shape: msg.shape };
    else {
      const backend = new OrtBackend({ executionProviders: ['cpu'], intraOpNumThreads: msg.threads });
      state = { backend, session: await backend.session('text_no_kv', msg.file), shape: msg.shape };
    }
    reply({ type: 'ready' });
    return;
  }
  if (msg.type === 'close') {
    await state?.backend?.dispose();
    parentPort!.close(); // nothing else keeps the thread: it ends
    return;
  }
  if (!state) throw new Error('text worker: a job came before init');
  const flag = new Int32Array(msg.cancel);
  const cancellation = { throwIfAborted: () => { if (Atomics.load(flag, 0) !== 0) throw new Error('cancelled'); } };
  await encodeSharedPrefix(state.session, state.shape, msg.rows, msg.batchSize, (rows, embeds) => reply({ type: 'batch', id: msg.id, share: msg.share, rows, embeds }), cancellation);
  reply({ type: 'done', id: msg.id, share: msg.share });
}

const queue: ToTextWorker[] = [];
let busy = false;

async function drain(): Promise<void> {
  busy = true;
  for (let msg = queue.shift(); msg; msg = queue.shift()) {
    try {
      await handle(msg);
    } catch (err) {
      reply({ type: 'error', id: msg.type === 'job' ? msg.id : undefined, error: err instanceof Error ? err.stack ?? err.message : String(err) });
    }
  }
  busy = false;
}

parentPort?.on('message', (msg: ToTextWorker) => {
  queue.push(msg);
  if (!busy) void drain();
});
