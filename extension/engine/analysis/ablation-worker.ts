// A scoring worker of the ablation (variant-scorer.ts): one contiguous share of the image rows,
// with their yes side, its ATD sums (the native kernel, atd-native.ts, or an onnxruntime session
// of its own with one intra-op thread: the workers are the parallelism) and sorting buffers.
// Messages are handled one at a time, in arrival order except that metrics jobs go before
// waiting rows jobs (a batch's values land as soon as they can):
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
import { AtdNative } from './atd-native';
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
  /** The ATD sums by the native kernel (atd-native.ts) instead of an onnxruntime session. */
  nativeAtd: boolean;
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

/** ATD sums [2k, rows] of k variants: the native kernel's or the onnxruntime graph's. */
interface AtdSums { sums(variants: readonly Float32Array[], yes: Float32Array): Float32Array | Promise<Float32Array> }

let state: { init: WorkerInit; side: RowSide; backend?: OrtBackend; atdSums: AtdSums } | undefined;
const metrics = new MetricsOfScores();
const reply = (msg: FromWorker) => parentPort!.postMessage(msg);
const view = (b: SharedArrayBuffer | undefined) => (b ? new Float64Array(b) : undefined);

async function handle(msg: ToWorker): Promise<void> {
  if (msg.type === 'init') {
    const side = rowSide(msg.x, msg.rows, msg.d, msg.yes, msg.c, msg.start, msg.tileRows);
    const native = msg.nativeAtd ? AtdNative.open(side) : undefined;
    if (msg.nativeAtd && !native) throw new Error('the native ATD kernel (native/build/ablation-kernels.node) did not load in this worker');
    if (native) state = { init: msg, side, atdSums: native };
    else {
      const backend = new OrtBackend({ executionProviders: msg.executionProviders, intraOpNumThreads: 1 });
      const graph = await AtdGraph.open(backend, side, msg.chunkElements);
      await graph.warmUp(Array.from({ length: msg.batchVariants }, () => msg.yes), msg.yes);
      state = { init: msg, side, backend, atdSums: graph };
    }
    warmUp(native, side, msg);
    reply({ type: 'ready', predicted: side.predicted });
    return;
  }
  if (msg.type === 'close') {
    await state?.backend?.dispose();
    reply({ type: 'closed' });
    return;
  }
  if (!state) throw new Error('ablation worker: a job came before init');
  const { init, side, atdSums } = state;
  const fence = new Int32Array(msg.buffers.fence);
  // Shared memory is ordered by its atomics: each side's Atomics.store / add after writing, and
  // the reader's Atomics.load before reading, put the writes before the reads.
  Atomics.load(fence, 0);
  if (msg.type === 'rows') {
    const [ctw, atd] = [view(msg.buffers.ctw), view(msg.buffers.atd)];
    const cd = init.c * init.d;
    const variants = variantViews(new Float32Array(msg.buffers.variants), cd);
    const dStar = margins(side, variants);
    const sums = atd ? await atdSums.sums(variants, init.yes) : undefined;
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

/** A batch's k variants as views of its shared buffer ([k C, D]); built alike by jobs and warm-up. */
function variantViews(all: Float32Array, cd: number): Float32Array[] {
  const views: Float32Array[] = [];
  for (let v = 0; v < all.length / cd; v++) views.push(all.subarray(v * cd, (v + 1) * cd));
  return views;
}

/**
 * Work thrown away during setup, so that it does not fall in the first batches (the ATD session's
 * first run at each tile shape, ~40 ms, is in init): every path a job takes through margins,
 * the native sums where they run, and writeScores (a group of four variants and a last, shorter
 * group; CTW with ATD, and either alone), for their type feedback. Without it V8 threw their
 * optimised code away in the first batches ("wrong map", "insufficient type feedback") and
 * compiled them again (bench/README "Ablation"). Five variants: one full group and a one-variant tail.
 */
function warmUp(native: AtdNative | undefined, side: RowSide, init: WorkerInit): void {
  const { d, c, n, yes } = init;
  const k = 5;
  const all = new Float32Array(new SharedArrayBuffer(4 * k * c * d));
  // -yes: margins of 2 L_j*, non-integral as a variant's are (0 left integer feedback that later deopted).
  for (let j = 0; j < c * d; j++) all[j] = -yes[j];
  for (let v = 1; v < k; v++) all.copyWithin(v * c * d, 0, c * d);
  const views = variantViews(all, c * d);
  const dStar = margins(side, views);
  const sums = native ? native.sums(views, yes) : new Float32Array(2 * k * side.rows);
  const scores = () => new Float64Array(new SharedArrayBuffer(8 * k * n));
  writeScores(side, dStar, n, sums, scores(), scores());
  writeScores(side, dStar, n, undefined, scores(), undefined);
  writeScores(side, dStar, n, sums, undefined, scores());
  // Distinct scores, ID mostly above OOD and then mostly below: each side runs out first once.
  for (const shift of [0.3, -0.3]) metrics.of(Float64Array.from({ length: n }, (_, i) => ((i * 0.618034) % 1) + (i < init.idN ? shift : 0)), init.idN);
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
