// Scoring ablation variants against fixed images and a fixed yes side (see ablation.ts's module
// comment for the exactness of CTW and ATD): the values (metrics, or the greedy objective) of K
// variants' [C, D] "no" features at a time. The main thread holds the ATD graph sessions and runs
// them; a worker thread (ablation-worker.ts, variant-math.ts) computes the margins, ATD and
// metrics meanwhile, so a batch's arithmetic overlaps the next batch's graph runs.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { GraphSession, OrtBackend } from '../backend';
import { DataType, GraphBuilder } from '../onnx-graph';
import { matmulTransposed } from '../scores';
import type { ToWorker } from './ablation-worker';
import { SCALE } from './variant-math';
import type { SumsPiece, VariantValue, Want, YesSide } from './variant-math';
/** Elements per graph intermediate (K x C x image rows) by default: bounds memory. */
export const CHUNK_ELEMENTS = 1 << 22;
/** Bound on exp()'s argument in the graph: keeps [p sigmoid(d)] e^-d finite (error <= p e^-85). */
const CLIP = 85;

/**
 * For K variants and a chunk of R images baked in (onnxruntime prepacks them once per session),
 * the sums over classes c != j* of p_c sigmoid(d_c) and of p_c sigmoid(-d_c): [2K, R]. The GEMM
 * is taken against Gno - G, which gives Lno - L = -d directly (as scoring-graph.ts).
 */
function buildRestGraph(images: Float32Array, rows: number, dim: number, pRestT: Float32Array, classes: number): Uint8Array {
  const g = new GraphBuilder('clipn_ablation_atd');
  const x = g.floats(images, [rows, dim], 'images');
  const negD = g.op1('Reshape', [g.op1('Gemm', ['no_minus_yes', x], { alpha: { float: SCALE }, transB: 1 }), g.int64s([-1, classes, rows])]);
  // Not onnxruntime's Sigmoid: its absolute error (~1e-7) ruins small probabilities (scoring-graph.ts).
  const e = g.op1('Exp', [g.op1('Clip', [negD, '', g.floats([CLIP], [], 'hi')])]);
  const yes = g.op1('Div', [g.floats(pRestT, [1, classes, rows], 'p_rest'), g.op1('Add', [e, g.floats([1], [], 'one')])]);
  const axes = g.int64s([1]);
  g.op1('Concat', [yes, g.op1('Mul', [yes, e])].map((v) => g.op1('ReduceSum', [v, axes], { keepdims: 0 })), { axis: 0 }, 'sums');
  const F = DataType.FLOAT;
  return g.build([{ name: 'no_minus_yes', elemType: F, shape: ['kc', dim] }], [{ name: 'sums', elemType: F, shape: ['k2', rows] }]);
}

/** The compiled worker beside this module (out/ with tsc, or a bundle's directory). */
export function ablationWorkerFile(): string {
  return path.join(__dirname, 'ablation-worker.js');
}

type Reply = { id: number; values?: VariantValue[]; error?: string };

export class VariantScorer {
  scored = 0;
  /** Per image: j* and L_j* as scores.ts forms them, and the softmax probability at j*. */
  readonly predicted: Int32Array;
  private readonly lyStar: Float32Array;
  private readonly pStar: Float64Array;
  /** Image chunks with their ATD graph sessions (the chunk's images and off-j* softmax baked in). */
  private readonly chunks: Array<{ start: number; rows: number; session: Promise<GraphSession> }> = [];
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (v: VariantValue[]) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private failed?: Error;

  constructor(x: Float32Array, n: number, private readonly d: number,
    private readonly yes: Float32Array, private readonly c: number, idN: number, backend: OrtBackend,
    private readonly chunkElements: number, workerFile = ablationWorkerFile()) {
    this.predicted = new Int32Array(n);
    this.lyStar = new Float32Array(n);
    this.pStar = new Float64Array(n);
    const rows = Math.max(1, Math.min(n, Math.floor(chunkElements / c)));
    const l = new Float32Array(rows * c);
    for (let start = 0; start < n; start += rows) {
      const r = Math.min(rows, n - start);
      matmulTransposed(x.subarray(start * d, (start + r) * d), r, yes, c, d, SCALE, l);
      const pT = new Float32Array(c * r); // [C, R]: the layout of the graph's sums
      for (let i = 0, o = 0; i < r; i++, o += c) {
        let jStar = 0;
        for (let j = 1; j < c; j++) if (l[o + j] > l[o + jStar]) jStar = j;
        let z = 0;
        for (let j = 0; j < c; j++) z += Math.exp(l[o + j] - l[o + jStar]);
        for (let j = 0; j < c; j++) if (j !== jStar) pT[j * r + i] = Math.exp(l[o + j] - l[o + jStar]) / z;
        [this.predicted[start + i], this.lyStar[start + i], this.pStar[start + i]] = [jStar, l[o + jStar], 1 / z];
      }
      const session = backend.sessionFromBuffer('ablation_atd', buildRestGraph(x.subarray(start * d, (start + r) * d), r, d, pT, c));
      session.catch(() => undefined); // awaited (and its error thrown) in score()
      this.chunks.push({ start, rows: r, session });
    }
    this.worker = new Worker(workerFile);
    const fail = (err: Error) => {
      this.failed ??= new Error(`ablation scoring worker (${workerFile}) stopped: ${err.message}`);
      for (const p of this.pending.values()) p.reject(this.failed);
      this.pending.clear();
    };
    this.worker.on('message', (r: Reply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (r.error !== undefined) p.reject(new Error(`ablation scoring worker: ${r.error}`));
      else p.resolve(r.values!);
    });
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`exit code ${code}`)));
    const side: YesSide = { x, n, d, idN, predicted: this.predicted, lyStar: this.lyStar, pStar: this.pStar };
    this.post({ type: 'init', side });
  }

  private post(msg: ToWorker, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(msg, transfer);
  }

  /**
   * Each variant's value as `want` asks. Returns once the graph runs are done (they block this
   * thread), with `values`, which settles when the worker has them (wrapped: an async function
   * returning a bare promise would wait for it).
   */
  async score(variants: readonly Float32Array[], withAtd: boolean, want: Want): Promise<{ values: Promise<VariantValue[]> }> {
    if (this.failed) throw this.failed;
    const { d, c } = this;
    const k = variants.length;
    this.scored += k;
    const id = this.nextId++;
    const values = new Promise<VariantValue[]>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    values.catch(() => undefined); // the caller awaits it; this keeps an early failure from being "unhandled"
    this.post({ type: 'job', id, variants: [...variants], withAtd, want });
    if (!withAtd) return { values };
    const text = new Float32Array(k * c * d);
    variants.forEach((g, v) => {
      for (let j = 0; j < c * d; j++) text[v * c * d + j] = g[j] - this.yes[j];
    });
    const pieces: SumsPiece[] = [];
    for (const { start, rows, session } of this.chunks) {
      const per = Math.max(1, Math.floor(this.chunkElements / (c * rows)));
      for (let v0 = 0; v0 < k; v0 += per) {
        const m = Math.min(per, k - v0);
        const { data } = await (await session).run({ no_minus_yes: { type: 'float32', data: text.subarray(v0 * c * d, (v0 + m) * c * d), dims: [m * c, d] } }, 'sums');
        pieces.push({ start, rows, v0, m, data: Float32Array.from(data) });
      }
    }
    this.post({ type: 'sums', id, pieces }, pieces.map((p) => p.data.buffer as ArrayBuffer));
    return { values };
  }

  /** Stops the worker; pending values are rejected. */
  async close(): Promise<void> {
    this.failed ??= new Error('ablation scoring closed');
    await this.worker.terminate();
  }
}
