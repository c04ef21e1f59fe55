// Scoring ablation variants against fixed images and a fixed yes side (see ablation.ts's module
// comment for the exactness of CTW and ATD): per-image CTW and ATD scores of K variants' [C, D]
// "no" features at a time.
import type { GraphSession, OrtBackend } from '../backend';
import { DataType, GraphBuilder } from '../onnx-graph';
import { matmulTransposed } from '../scores';

/** CLIPN's inference scale (scores.ts's default). */
export const SCALE = 100;
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

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

export class VariantScorer {
  scored = 0;
  /** Per image: j* and L_j* as scores.ts forms them, and the softmax probability at j*. */
  readonly predicted: Int32Array;
  private readonly lyStar: Float32Array;
  private readonly pStar: Float64Array;
  /** Image chunks with their ATD graph sessions (the chunk's images and off-j* softmax baked in). */
  private readonly chunks: Array<{ start: number; rows: number; session: Promise<GraphSession> }> = [];

  constructor(private readonly x: Float32Array, private readonly n: number, private readonly d: number,
    private readonly yes: Float32Array, private readonly c: number, backend: OrtBackend, private readonly chunkElements: number) {
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
  }

  /** d* = L_j* - Lno_j*, both logits as scores.ts forms them; four variants share each image row. */
  private margins(variants: readonly Float32Array[]): Float64Array[] {
    const { x, n, d } = this;
    const k = variants.length;
    const out = variants.map(() => new Float64Array(n));
    // Groups of four (the last padded with repeats), so four independent sums share each x load.
    const groups = Array.from({ length: Math.ceil(k / 4) }, (_, q) => [0, 1, 2, 3].map((u) => variants[Math.min(4 * q + u, k - 1)]));
    for (let i = 0; i < n; i++) {
      const xo = i * d;
      const go = this.predicted[i] * d;
      const ly = this.lyStar[i];
      for (let q = 0; q < groups.length; q++) {
        const g = groups[q];
        const g0 = g[0], g1 = g[1], g2 = g[2], g3 = g[3];
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let t = 0; t < d; t++) {
          const xv = x[xo + t];
          s0 += xv * g0[go + t];
          s1 += xv * g1[go + t];
          s2 += xv * g2[go + t];
          s3 += xv * g3[go + t];
        }
        const v = 4 * q;
        out[v][i] = ly - Math.fround(SCALE * s0);
        if (v + 1 < k) out[v + 1][i] = ly - Math.fround(SCALE * s1);
        if (v + 2 < k) out[v + 2][i] = ly - Math.fround(SCALE * s2);
        if (v + 3 < k) out[v + 3][i] = ly - Math.fround(SCALE * s3);
      }
    }
    return out;
  }

  /** Per-image CTW (and ATD) scores for each variant's [C, D] no features. */
  async score(variants: readonly Float32Array[], withAtd: boolean): Promise<Array<{ ctw: Float64Array; atd?: Float64Array }>> {
    const { n, d, c } = this;
    const k = variants.length;
    this.scored += k;
    const dStar = this.margins(variants);
    if (!withAtd) return dStar.map((ds) => ({ ctw: ds.map(sigmoid) }));
    const text = new Float32Array(k * c * d);
    variants.forEach((g, v) => {
      for (let j = 0; j < c * d; j++) text[v * c * d + j] = g[j] - this.yes[j];
    });
    const atd = variants.map(() => new Float64Array(n));
    for (const { start, rows, session } of this.chunks) {
      const per = Math.max(1, Math.floor(this.chunkElements / (c * rows)));
      for (let v0 = 0; v0 < k; v0 += per) {
        const m = Math.min(per, k - v0);
        const { data } = await (await session).run({ no_minus_yes: { type: 'float32', data: text.subarray(v0 * c * d, (v0 + m) * c * d), dims: [m * c, d] } }, 'sums');
        for (let v = 0; v < m; v++) {
          const [a, ds] = [atd[v0 + v], dStar[v0 + v]];
          for (let i = 0, row = start; i < rows; i++, row++) {
            const yesSum = data[v * rows + i] + this.pStar[row] / (1 + Math.exp(-ds[row]));
            a[row] = yesSum <= 0.5 ? yesSum : 1 - (data[(m + v) * rows + i] + this.pStar[row] / (1 + Math.exp(ds[row])));
          }
        }
      }
    }
    return dStar.map((ds, v) => ({ ctw: ds.map(sigmoid), atd: atd[v] }));
  }
}

