// The ablation's arithmetic on one range of image rows, a scoring worker's share
// (ablation-worker.ts): the yes side of those rows, exact CTW margins, CTW and ATD scores from
// the margins and the ATD graph's sums (atd-graph.ts), and the metrics of a variant's scores.
// Free of onnxruntime. A row's yes side, margins and CTW depend on that row alone, so how the
// rows are split between workers does not change a bit of them (the graph's float32 ATD sums
// may differ in their last bits with other tiles).
import { detectionMetricsOfSorted, type DetectionMetrics } from '../metrics';
import { matmulTransposed } from '../scores';
import { MarginKernel } from './margins-wasm';
import { nativeKernels } from './native-kernels';
import type { NativeKernels } from './native-kernels';
import { ScoreSorter } from './score-sort';

/** CLIPN's inference scale (scores.ts's default). */
export const SCALE = 100;

/** fpr95: CLIPN's, on the linearly interpolated ROC curve. */
export type ScoreMetrics = DetectionMetrics;
export interface VariantMetrics { ctw: ScoreMetrics; atd: ScoreMetrics }

/** What a variant's scores are reduced to: all metrics, or the greedy objective's one number. */
export type Want = { kind: 'metrics' } | { kind: 'objective'; score: 'ctw' | 'atd'; metric: 'auroc' | 'fpr95' };
export type VariantValue = VariantMetrics | number;

/** The yes side of image rows start..start + rows, shared by every variant. */
export interface RowSide {
  start: number;
  rows: number;
  d: number;
  c: number;
  /** [rows, d] L2-normalised image features (the ATD graph's input). */
  x: Float32Array;
  /** Per row: j* as scores.ts picks it, and the softmax probability at j*. */
  predicted: Int32Array;
  pStar: Float64Array;
  /**
   * The rows in order of j* (classStart[j]..classStart[j + 1] have j* = j), as float64 features
   * (in the margin kernel's memory where WebAssembly SIMD runs) and L_j*.
   */
  order: Int32Array;
  classStart: Int32Array;
  xByClass: Float64Array;
  lyByClass: Float64Array;
  kernel?: MarginKernel;
  /** ATD graph tiles of tileRows rows (the last may be shorter): each one's off-j* softmax, [C, tile rows]. */
  tileRows: number;
  pRest: Float32Array[];
}

/**
 * The yes side as scores.ts forms it: float32 logits fround(SCALE * float64 dot), each dot summed
 * in index order (matmulTransposed's arithmetic; the margin kernel's where it runs, which is the
 * same sums), j* the first largest, the softmax in float64.
 */
export function rowSide(x: Float32Array, rows: number, d: number, yes: Float32Array, c: number, start: number, tileRows: number): RowSide {
  const kernel = MarginKernel.create(rows, d);
  const l = kernel ? kernelLogits(kernel, x, rows, d, yes, c) : new Float32Array(rows * c);
  if (!kernel) matmulTransposed(x, rows, yes, c, d, SCALE, l);
  const predicted = new Int32Array(rows);
  const lyStar = new Float32Array(rows);
  const pStar = new Float64Array(rows);
  const pRest: Float32Array[] = [];
  const e = new Float64Array(c);
  for (let t0 = 0; t0 < rows; t0 += tileRows) pRest.push(softmaxTile(l, c, t0, Math.min(tileRows, rows - t0), e, predicted, lyStar, pStar));
  const { order, classStart } = byClass(predicted, c);
  const xByClass = kernel ? new Float64Array(kernel.memory.buffer, kernel.layout.x, rows * d) : new Float64Array(rows * d);
  const lyByClass = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    xByClass.set(x.subarray(order[r] * d, (order[r] + 1) * d), r * d);
    lyByClass[r] = lyStar[order[r]];
  }
  return { start, rows, d, c, x, predicted, pStar, order, classStart, xByClass, lyByClass, kernel, tileRows, pRest };
}

/**
 * Rows t0..t0 + r of [rows, c] logits l: each row's j* (the first largest), L_j* and softmax
 * probability at j*, and the tile's off-j* softmax [c, r]. Small functions of their own: V8
 * compiles each once, where one large function was recompiled for each of its loops.
 */
function softmaxTile(l: Float32Array, c: number, t0: number, r: number, e: Float64Array, predicted: Int32Array, lyStar: Float32Array, pStar: Float64Array): Float32Array {
  const pT = new Float32Array(c * r);
  for (let i = 0, o = t0 * c; i < r; i++, o += c) {
    let jStar = 0;
    for (let j = 1; j < c; j++) if (l[o + j] > l[o + jStar]) jStar = j;
    let z = 0;
    for (let j = 0; j < c; j++) z += (e[j] = Math.exp(l[o + j] - l[o + jStar]));
    for (let j = 0; j < c; j++) if (j !== jStar) pT[j * r + i] = e[j] / z;
    predicted[t0 + i] = jStar;
    lyStar[t0 + i] = l[o + jStar];
    pStar[t0 + i] = 1 / z;
  }
  return pT;
}

/** The rows in order of their class (a counting sort): classStart[j]..classStart[j + 1] hold class j's. */
function byClass(predicted: Int32Array, c: number): { order: Int32Array; classStart: Int32Array } {
  const rows = predicted.length;
  const classStart = new Int32Array(c + 1);
  for (let i = 0; i < rows; i++) classStart[predicted[i] + 1]++;
  for (let j = 0; j < c; j++) classStart[j + 1] += classStart[j];
  const order = new Int32Array(rows);
  const next = classStart.slice(0, c);
  for (let i = 0; i < rows; i++) order[next[predicted[i]]++] = i;
  return { order, classStart };
}

/** [rows, c] yes logits by the margin kernel, four classes at a time over the rows in their order. */
function kernelLogits(kernel: MarginKernel, x: Float32Array, rows: number, d: number, yes: Float32Array, c: number): Float32Array {
  const { layout, memory } = kernel;
  new Float64Array(memory.buffer, layout.x, rows * d).set(x.subarray(0, rows * d));
  const g = new Float64Array(memory.buffer, layout.g, 4 * d);
  const sums = new Float64Array(memory.buffer, layout.out, 4 * rows);
  const l = new Float32Array(rows * c);
  for (let q = 0; q < c; q += 4) {
    for (let u = 0; u < 4; u++) {
      const j = Math.min(q + u, c - 1);
      for (let t = 0; t < d; t++) g[4 * t + u] = yes[j * d + t];
    }
    kernel.dots(layout.x, layout.g, layout.out, Math.ceil(rows / 4), d);
    for (let i = 0; i < rows; i++) for (let u = 0; u < 4 && q + u < c; u++) l[i * c + q + u] = SCALE * sums[4 * i + u];
  }
  return l;
}

/**
 * d* = L_j* - Lno_j* per row and variant, Lno_j* = fround(SCALE * float64 dot) exactly as
 * scores.ts forms it (each dot summed in index order). Rows are taken by class so that four
 * variants' class-j* features sit in one small float64 table, and two rows share each load of it.
 */
export function margins(side: RowSide, variants: readonly Float32Array[]): Float64Array[] {
  const { rows, d, c, classStart } = side;
  const k = variants.length;
  // A loop, not variants.map: map's result arrays took another map now and then, and each time
  // V8 threw this function's optimised code away ("wrong map").
  const out: Float64Array[] = [];
  for (let v = 0; v < k; v++) out.push(new Float64Array(rows));
  const g = new Float64Array(4 * d); // [t][u]: variant u's class-j feature
  for (let q = 0; q < k; q += 4) {
    // The last group repeats its last variant: the kernel always computes four.
    const g0 = variants[q], g1 = variants[Math.min(q + 1, k - 1)], g2 = variants[Math.min(q + 2, k - 1)], g3 = variants[Math.min(q + 3, k - 1)];
    const o = [out[q], out[Math.min(q + 1, k - 1)], out[Math.min(q + 2, k - 1)], out[Math.min(q + 3, k - 1)]];
    for (let j = 0; j < c; j++) {
      if (classStart[j] === classStart[j + 1]) continue;
      for (let t = 0, f = j * d; t < d; t++, f++) {
        g[4 * t] = g0[f];
        g[4 * t + 1] = g1[f];
        g[4 * t + 2] = g2[f];
        g[4 * t + 3] = g3[f];
      }
      if (side.kernel) kernelMargins(side, side.kernel, j, g, o);
      else classMargins(side, j, g, o[0], o[1], o[2], o[3]);
    }
  }
  return out;
}

/** classMargins through the WebAssembly kernel (margins-wasm.ts): the same sums, bit for bit. */
function kernelMargins(side: RowSide, kernel: MarginKernel, j: number, g: Float64Array, o: Float64Array[]): void {
  const { d, order, lyByClass: ly } = side;
  const { layout, memory } = kernel;
  const [r0, r1] = [side.classStart[j], side.classStart[j + 1]];
  new Float64Array(memory.buffer, layout.g, 4 * d).set(g);
  kernel.dots(layout.x + r0 * d * 8, layout.g, layout.out, Math.ceil((r1 - r0) / 4), d);
  const sums = new Float64Array(memory.buffer, layout.out, 4 * (r1 - r0));
  for (let r = r0, at = 0; r < r1; r++, at += 4) {
    const i = order[r], l = ly[r];
    o[0][i] = l - Math.fround(SCALE * sums[at]);
    o[1][i] = l - Math.fround(SCALE * sums[at + 1]);
    o[2][i] = l - Math.fround(SCALE * sums[at + 2]);
    o[3][i] = l - Math.fround(SCALE * sums[at + 3]);
  }
}

/** The kernel of margins(): class j's rows against four variants, two rows at a time (a small function, so V8 optimises it whole). */
function classMargins(side: RowSide, j: number, g: Float64Array, o0: Float64Array, o1: Float64Array, o2: Float64Array, o3: Float64Array): void {
  const { d, order, xByClass: x, lyByClass: ly } = side;
  const end = side.classStart[j + 1];
  let r = side.classStart[j];
  for (; r + 1 < end; r += 2) {
    let a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
    for (let t = 0, xa = r * d, xb = xa + d; t < d; t++) {
      const va = x[xa + t];
      const vb = x[xb + t];
      const h0 = g[4 * t], h1 = g[4 * t + 1], h2 = g[4 * t + 2], h3 = g[4 * t + 3];
      a0 += va * h0; a1 += va * h1; a2 += va * h2; a3 += va * h3;
      b0 += vb * h0; b1 += vb * h1; b2 += vb * h2; b3 += vb * h3;
    }
    const ia = order[r], la = ly[r], ib = order[r + 1], lb = ly[r + 1];
    o0[ia] = la - Math.fround(SCALE * a0); o1[ia] = la - Math.fround(SCALE * a1); o2[ia] = la - Math.fround(SCALE * a2); o3[ia] = la - Math.fround(SCALE * a3);
    o0[ib] = lb - Math.fround(SCALE * b0); o1[ib] = lb - Math.fround(SCALE * b1); o2[ib] = lb - Math.fround(SCALE * b2); o3[ib] = lb - Math.fround(SCALE * b3);
  }
  if (r < end) {
    let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (let t = 0, xa = r * d; t < d; t++) {
      const va = x[xa + t];
      a0 += va * g[4 * t]; a1 += va * g[4 * t + 1]; a2 += va * g[4 * t + 2]; a3 += va * g[4 * t + 3];
    }
    const ia = order[r], la = ly[r];
    o0[ia] = la - Math.fround(SCALE * a0); o1[ia] = la - Math.fround(SCALE * a1); o2[ia] = la - Math.fround(SCALE * a2); o3[ia] = la - Math.fround(SCALE * a3);
  }
}

/**
 * Variant v's scores of these rows into ctw / atd (each [k, n], row start + i at v * n + start + i):
 * CTW = sigmoid(d*) as scores.ts computes it; ATD from the graph's off-j* sums `sums` ([2k, rows]:
 * yes sums, then no sums) plus the j* term, taken as 1 - p_ood above 0.5. One exp serves CTW and
 * both j* terms: sigmoid(-d*) = 1 / (1 + 1/e), which is also right at e = 0 and e = Infinity.
 */
export function writeScores(side: RowSide, dStar: readonly Float64Array[], n: number, sums: Float32Array | undefined, ctw: Float64Array | undefined, atd: Float64Array | undefined): void {
  const { rows, start, pStar } = side;
  const k = dStar.length;
  for (let v = 0; v < k; v++) {
    const ds = dStar[v];
    const at = v * n + start;
    if (!atd || !sums) {
      if (ctw) for (let i = 0; i < rows; i++) ctw[at + i] = 1 / (1 + Math.exp(-ds[i]));
      continue;
    }
    const [yesSums, noSums] = [v * rows, (k + v) * rows];
    for (let i = 0; i < rows; i++) {
      const e = Math.exp(-ds[i]);
      if (ctw) ctw[at + i] = 1 / (1 + e);
      const yesSum = sums[yesSums + i] + pStar[i] / (1 + e);
      atd[at + i] = yesSum <= 0.5 ? yesSum : 1 - (sums[noSums + i] + pStar[i] / (1 + 1 / e));
    }
  }
}

/**
 * Metrics of [n] scores whose first idN are ID, with sorting buffers kept between calls; by the
 * native kernels where they run (the same bits, native-kernels.ts), null: this module's.
 */
export class MetricsOfScores {
  private readonly id: ScoreSorter;
  private readonly ood: ScoreSorter;
  private readonly values = new Float64Array(4);

  constructor(private readonly native: NativeKernels | null = nativeKernels() ?? null) {
    [this.id, this.ood] = [new ScoreSorter(native), new ScoreSorter(native)];
  }

  of(scores: Float64Array, idN: number): DetectionMetrics {
    const [id, ood] = [this.id.sort(scores.subarray(0, idN), 'ID'), this.ood.sort(scores.subarray(idN), 'OOD')];
    if (!this.native) return detectionMetricsOfSorted(id, ood);
    const v = this.values;
    this.native.metricsOfSorted(id, ood, v);
    return { auroc: v[0], fpr95: v[1], auprIn: v[2], auprOut: v[3] };
  }
}
