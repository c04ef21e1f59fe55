// Worker thread of the ablation's scoring (variant-scorer.ts): margins, ATD and metrics of each
// batch of variants while the main thread runs the next batch's onnxruntime graph (whose run
// blocks the thread that calls it). Messages, in order:
//   {type: 'init', side: YesSide}
//   {type: 'job', id, variants, withAtd, want}   -> margins now; without ATD, the values at once
//   {type: 'sums', id, pieces}                   -> ATD, then the values
// Replies {id, values} or {id, error}.
import { parentPort } from 'node:worker_threads';
import { atdScores, margins, valuesOf } from './variant-math';
import type { SumsPiece, Want, YesSide } from './variant-math';

export type ToWorker =
  | { type: 'init'; side: YesSide }
  | { type: 'job'; id: number; variants: Float32Array[]; withAtd: boolean; want: Want }
  | { type: 'sums'; id: number; pieces: SumsPiece[] };

let side: YesSide | undefined;
const waiting = new Map<number, { dStar: Float64Array[]; want: Want }>();

parentPort?.on('message', (msg: ToWorker) => {
  const id = msg.type === 'init' ? -1 : msg.id;
  try {
    if (msg.type === 'init') {
      side = msg.side;
      return;
    }
    if (!side) throw new Error('ablation worker: a job came before init');
    if (msg.type === 'job') {
      const dStar = margins(side, msg.variants);
      if (!msg.withAtd) parentPort!.postMessage({ id, values: valuesOf(side, dStar, undefined, msg.want) });
      else waiting.set(id, { dStar, want: msg.want });
      return;
    }
    const job = waiting.get(id);
    if (!job) throw new Error(`ablation worker: sums for unknown job ${id}`);
    waiting.delete(id);
    parentPort!.postMessage({ id, values: valuesOf(side, job.dStar, atdScores(side, job.dStar, msg.pieces), job.want) });
  } catch (err) {
    parentPort!.postMessage({ id, error: err instanceof Error ? err.stack ?? err.message : String(err) });
  }
});
