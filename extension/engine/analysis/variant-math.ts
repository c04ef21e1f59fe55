// The ablation's per-variant arithmetic, free of onnxruntime so that a worker thread can run it
// beside the main thread's graph runs (ablation-worker.ts): exact CTW margins, ATD from the ATD
// graph's sums, and the metrics of both. The main thread and the worker run this same code, so
// where it runs does not change a bit of the results.
import { auroc, computeMetrics, fpr95Interpolated } from '../metrics';

/** CLIPN's inference scale (scores.ts's default). */
export const SCALE = 100;

/** fpr95: CLIPN's, on the linearly interpolated ROC curve. */
export interface ScoreMetrics { auroc: number; fpr95: number; auprIn: number; auprOut: number }
export interface VariantMetrics { ctw: ScoreMetrics; atd: ScoreMetrics }

/** What a variant's scores are reduced to: all metrics, or the greedy objective's one number. */
export type Want = { kind: 'metrics' } | { kind: 'objective'; score: 'ctw' | 'atd'; metric: 'auroc' | 'fpr95' };
export type VariantValue = VariantMetrics | number;

/** The images and the yes side every variant shares (ID rows first). */
export interface YesSide {
  /** [n, d] L2-normalised image features. */
  x: Float32Array;
  n: number;
  d: number;
  idN: number;
  /** Per image: j*, L_j* as scores.ts forms it, and the softmax probability at j*. */
  predicted: Int32Array;
  lyStar: Float32Array;
  pStar: Float64Array;
}

/** One graph run's output: [2m, rows] sums for variants v0..v0+m-1 over image rows start.. */
export interface SumsPiece { start: number; rows: number; v0: number; m: number; data: Float32Array }

/** d* = L_j* - Lno_j*, both logits as scores.ts forms them; four variants share each image row. */
export function margins(y: YesSide, variants: readonly Float32Array[]): Float64Array[] {
  const { x, n, d } = y;
  const k = variants.length;
  const out = variants.map(() => new Float64Array(n));
  // Groups of four (the last padded with repeats), so four independent sums share each x load.
  const groups = Array.from({ length: Math.ceil(k / 4) }, (_, q) => [0, 1, 2, 3].map((u) => variants[Math.min(4 * q + u, k - 1)]));
  for (let i = 0; i < n; i++) {
    const xo = i * d;
    const go = y.predicted[i] * d;
    const ly = y.lyStar[i];
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

/** ATD per image and variant: the graph's off-j* sums plus the exact j* term. */
export function atdScores(y: YesSide, dStar: readonly Float64Array[], pieces: readonly SumsPiece[]): Float64Array[] {
  const atd = dStar.map(() => new Float64Array(y.n));
  for (const { start, rows, v0, m, data } of pieces) {
    for (let v = 0; v < m; v++) {
      const [a, ds] = [atd[v0 + v], dStar[v0 + v]];
      for (let i = 0, row = start; i < rows; i++, row++) {
        const yesSum = data[v * rows + i] + y.pStar[row] / (1 + Math.exp(-ds[row]));
        a[row] = yesSum <= 0.5 ? yesSum : 1 - (data[(m + v) * rows + i] + y.pStar[row] / (1 + Math.exp(ds[row])));
      }
    }
  }
  return atd;
}

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

function summary(scores: Float64Array, nId: number): ScoreMetrics {
  const m = computeMetrics(scores.subarray(0, nId), scores.subarray(nId));
  return { auroc: m.auroc, fpr95: m.fpr95.interpolated, auprIn: m.auprIn, auprOut: m.auprOut };
}

/** One of summary()'s metrics alone, by the same function (greedy candidates need no more). */
function metricOf(scores: Float64Array, nId: number, metric: 'auroc' | 'fpr95'): number {
  const [id, ood] = [scores.subarray(0, nId), scores.subarray(nId)];
  return metric === 'auroc' ? auroc(id, ood) : fpr95Interpolated(id, ood);
}

/** Each variant's value from its margins (and ATD scores when the graph ran). */
export function valuesOf(y: YesSide, dStar: readonly Float64Array[], atd: readonly Float64Array[] | undefined, want: Want): VariantValue[] {
  return dStar.map((ds, v) => {
    const ctw = ds.map(sigmoid);
    if (want.kind === 'metrics') return { ctw: summary(ctw, y.idN), atd: summary(atd![v], y.idN) };
    return metricOf(want.score === 'ctw' ? ctw : atd![v], y.idN, want.metric);
  });
}
