// A scoring worker of the ablation (variant-scorer.ts): one contiguous share of the image rows,
// with their yes side, an ATD graph session of its own (one intra-op thread: the workers are the
// parallelism) and sorting buffers. Messages are handled one at a time, in arrival order except
// that metrics jobs go before waiting rows jobs (a batch's values land as soon as they can):
//   {type: 'init', ...WorkerInit}          -> {type: 'ready', predicted}
//   {type: 'rows', id, buffers}            -> this share's CTW / ATD scores written into the shared
//                                             buffers, then {type: 'rows', id}
//   {type: 'metrics', id, units, buffers}  -> {type: 'metrics', id, values} (all rows' scores)
//   {type: 'close'}                        -> session released, then {type: 'closed'}
// A failure answers {type: 'error', id?, error}.
import { parentPort } from 'node:worker_threads';
import { OrtBackend } from '../backend';
import type { DetectionMetrics } from '../metrics';
import { AtdGraph } from './atd-graph';
import { margins, MetricsOfScores, rowSide, writeScores } from './variant-math';
import type { RowSide } from './variant-math';

export interface WorkerInit {
  /** [rows, d]: image rows start..start + rows of n (the first idN are ID). */
  x: Float32Array;
  rows: number;
  start: number;
  n: number;
  idN: number;
  d: number;
  /** [c, d] yes features. */
  yes: Float32Array;
  c: number;
  executionProviders: string[];
  chunkElements: number;
  tileRows: number;
  /** Variants per rows job in a full batch (the shapes the warm-up runs). */
  batchVariants: number;
}

/**
 * A batch's k variants' [C, D] float32 features, shared by every worker (not copied to each), and
 * their scores, [k, n] float64 each (absent: not wanted), with a write fence.
 */
export interface ScoreBuffers { variants: SharedArrayBuffer; ctw?: SharedArrayBuffer; atd?: SharedArrayBuffer; fence: SharedArrayBuffer }
export interface MetricsUnit { variant: number; score: 'ctw' | 'atd' }

export type ToWorker =
  | ({ type: 'init' } & WorkerInit)
  | { type: 'rows'; id: number; buffers: ScoreBuffers }
  | { type: 'metrics'; id: number; units: MetricsUnit[]; buffers: ScoreBuffers }
  | { type: 'close' };

export type FromWorker =
  | { type: 'ready'; predicted: Int32Array }
  | { type: 'rows'; id: number }
  | { type: 'metrics'; id: number; values: DetectionMetrics[] }
  | { type: 'closed' }
  | { type: 'error'; id?: number; error: string };

let state: { init: WorkerInit; side: RowSide; backend: OrtBackend; graph: AtdGraph } | undefined;
const metrics = new MetricsOfScores();
const reply = (msg: FromWorker) => parentPort!.postMessage(msg);
const view = (b: SharedArrayBuffer | undefined) => (b ? new Float64Array(b) : undefined);

async function handle(msg: ToWorker): Promise<void> {
  if (msg.type === 'init') {
    const side = rowSide(msg.x, msg.rows, msg.d, msg.yes, msg.c, msg.start, msg.tileRows);
    const backend = new OrtBackend({ executionProviders: msg.executionProviders, intraOpNumThreads: 1 });
    state = { init: msg, side, backend, graph: await AtdGraph.open(backend, side, msg.chunkElements) };
    await warmUp(state.graph, side, msg);
    reply({ type: 'ready', predicted: side.predicted });
    return;
  }
  if (msg.type === 'close') {
    await state?.backend.dispose();
    reply({ type: 'closed' });
    return;
  }
  if (!state) throw new Error('ablation worker: a job came before init');
  const { init, side, graph } = state;
  const fence = new Int32Array(msg.buffers.fence);
  // Shared memory is ordered by its atomics: each side's Atomics.store / add after writing, and
  // the reader's Atomics.load before reading, put the writes before the reads.
  Atomics.load(fence, 0);
  if (msg.type === 'rows') {
    const [ctw, atd] = [view(msg.buffers.ctw), view(msg.buffers.atd)];
    const cd = init.c * init.d;
    const all = new Float32Array(msg.buffers.variants);
    const variants = Array.from({ length: all.length / cd }, (_, v) => all.subarray(v * cd, (v + 1) * cd));
    const dStar = margins(side, variants);
    const sums = atd ? await graph.sums(variants, init.yes) : undefined;
    writeScores(side, dStar, init.n, sums, ctw, atd);
    Atomics.add(fence, 0, 1);
    reply({ type: 'rows', id: msg.id });
    return;
  }
  const values = msg.units.map(({ variant, score }) => {
    const scores = view(score === 'ctw' ? msg.buffers.ctw : msg.buffers.atd)!;
    return metrics.of(scores.subarray(variant * init.n, (variant + 1) * init.n), init.idN);
  });
  reply({ type: 'metrics', id: msg.id, values });
}

/**
 * A full batch of the yes features as variants, scored and thrown away during setup: the
 * session's first run at each tile shape (~40 ms) and the loops' first, unoptimised calls would
 * otherwise fall in the first batch.
 */
async function warmUp(graph: AtdGraph, side: RowSide, init: WorkerInit): Promise<void> {
  const variants = Array.from({ length: init.batchVariants }, () => init.yes);
  await graph.warmUp(variants, init.yes);
  const dStar = margins(side, variants.slice(0, 4));
  const scores = new Float64Array(init.n);
  writeScores(side, dStar.slice(0, 1), init.n, undefined, scores, undefined);
  metrics.of(scores, init.idN);
}

const urgent: ToWorker[] = [];
const waiting: ToWorker[] = [];
let busy = false;

async function drain(): Promise<void> {
  busy = true;
  for (let msg = urgent.shift() ?? waiting.shift(); msg; msg = urgent.shift() ?? waiting.shift()) {
    try {
      await handle(msg);
    } catch (err) {
      const id = msg.type === 'rows' || msg.type === 'metrics' ? msg.id : undefined;
      reply({ type: 'error', id, error: err instanceof Error ? err.stack ?? err.message : String(err) });
    }
  }
  busy = false;
}

parentPort?.on('message', (msg: ToWorker) => {
  (msg.type === 'metrics' ? urgent : waiting).push(msg);
  if (!busy) void drain();
});
