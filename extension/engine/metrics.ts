// OOD detection metrics with ID as the positive class (higher score = more ID), written to
// reproduce scikit-learn's numbers exactly (to rounding) so results are comparable with the
// CLIPN and MCM papers. Everything derives from one pass over the distinct score values in
// descending order, so each metric costs O(n log n) for the sort plus O(n).

export type ScoreArray = Float64Array | Float32Array | readonly number[];

export interface Fpr95 {
  /** CLIPN's convention: the ROC curve interpolated linearly at TPR 0.95. */
  interpolated: number;
  /** MCM's convention: the ROC point whose TPR is nearest to 0.95. */
  nearest: number;
}

export interface OodMetrics {
  auroc: number;
  fpr95: Fpr95;
  auprIn: number;
  auprOut: number;
}

export interface RocCurve {
  fpr: Float64Array;
  tpr: Float64Array;
  /** thresholds[0] is +Infinity (sklearn >= 1.3; sklearn 1.2 used max score + 1). */
  thresholds: Float64Array;
}

export class MetricsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MetricsError';
  }
}

const TPR_LEVEL = 0.95;

function sortedCopy(scores: ScoreArray, what: string): Float64Array {
  if (scores.length === 0) throw new MetricsError(`${what} score set is empty: metrics need at least one ID and one OOD score`);
  const out = Float64Array.from(scores);
  for (let i = 0; i < out.length; i++) {
    // sklearn rejects NaN/inf too; a silent sort of NaN would corrupt every metric.
    if (!Number.isFinite(out[i])) throw new MetricsError(`${what} score ${i} is not finite (${out[i]})`);
  }
  // Native numeric sort of a typed array is far faster than sorting indices with a comparator;
  // sorting the two classes separately and merging avoids carrying labels through the sort.
  return out.sort();
}

/**
 * The ROC curve as tie groups: one entry per distinct score, in descending score order, with
 * how many ID and OOD samples share that score. Equal scores (including -0 and +0) form one
 * group, exactly as sklearn's _binary_clf_curve does with np.diff(y_score) != 0.
 */
interface Groups {
  count: number;
  threshold: Float64Array;
  idCount: Float64Array;
  oodCount: Float64Array;
  nId: number;
  nOod: number;
}

function groupScores(idScores: ScoreArray, oodScores: ScoreArray): Groups {
  const id = sortedCopy(idScores, 'ID');
  const ood = sortedCopy(oodScores, 'OOD');
  const cap = id.length + ood.length;
  const threshold = new Float64Array(cap);
  const idCount = new Float64Array(cap);
  const oodCount = new Float64Array(cap);
  let i = id.length - 1;
  let o = ood.length - 1;
  let g = 0;
  while (i >= 0 || o >= 0) {
    const t = i < 0 ? ood[o] : o < 0 ? id[i] : Math.max(id[i], ood[o]);
    let ci = 0;
    let co = 0;
    while (i >= 0 && id[i] === t) { ci++; i--; }
    while (o >= 0 && ood[o] === t) { co++; o--; }
    threshold[g] = t;
    idCount[g] = ci;
    oodCount[g] = co;
    g++;
  }
  return { count: g, threshold, idCount, oodCount, nId: id.length, nOod: ood.length };
}

/** Trapezoidal area in integer counts, divided once: exact up to the final rounding. */
function aurocOf(gr: Groups): number {
  let tps = 0;
  let twiceArea = 0;
  for (let g = 0; g < gr.count; g++) {
    const next = tps + gr.idCount[g];
    twiceArea += gr.oodCount[g] * (tps + next);
    tps = next;
  }
  return twiceArea / (2 * gr.nId * gr.nOod);
}

/** Cumulative counts per group, which is what sklearn's roc_curve returns before normalising. */
function cumulative(gr: Groups): { tps: Float64Array; fps: Float64Array } {
  const tps = new Float64Array(gr.count);
  const fps = new Float64Array(gr.count);
  let t = 0;
  let f = 0;
  for (let g = 0; g < gr.count; g++) {
    t += gr.idCount[g];
    f += gr.oodCount[g];
    tps[g] = t;
    fps[g] = f;
  }
  return { tps, fps };
}

/**
 * CLIPN's zero_shot_infer.py: scipy interp1d(tpr, fpr)(0.95) over sklearn's roc_curve, which
 * gives the same value as np.interp(0.95, tpr, fpr): take the last ROC point with TPR <= 0.95;
 * if its TPR is exactly 0.95 (a run of points with that TPR) its FPR — the largest of the run —
 * is the answer, otherwise interpolate linearly towards the next point. Dropping collinear
 * points (sklearn's default) cannot change the result, so the full curve is used.
 */
function fpr95InterpolatedOf(gr: Groups): number {
  const { tps, fps } = cumulative(gr);
  // Curve point k (k >= 1) is group k-1; point 0 is (0, 0).
  let prevTpr = 0;
  let prevFpr = 0;
  for (let g = 0; g < gr.count; g++) {
    const tpr = tps[g] / gr.nId;
    const fpr = fps[g] / gr.nOod;
    if (tpr > TPR_LEVEL) {
      if (prevTpr === TPR_LEVEL) return prevFpr;
      const slope = (fpr - prevFpr) / (tpr - prevTpr);
      return slope * (TPR_LEVEL - prevTpr) + prevFpr;
    }
    prevTpr = tpr;
    prevFpr = fpr;
  }
  return prevFpr; // unreachable: the last point has TPR 1
}

/**
 * MCM's utils/detection_util.py fpr_and_fdr_at_recall (inherited from Hendrycks' outlier
 * exposure code), reproduced exactly:
 *  - ROC points are the distinct score thresholds (no (0, 0) point), kept only up to the first
 *    point reaching TPR 1, and scanned from that point towards higher thresholds;
 *  - the chosen point is argmin |TPR - 0.95| in that scan order, so of two equally near points
 *    the one with the HIGHER TPR (lower threshold, larger FPR) wins;
 *  - the answer is that point's FPR.
 * This is "nearest", not "first point with TPR >= 0.95": when the nearest point lies below
 * 0.95 (e.g. TPR 0.949 vs 0.96) MCM reports the lower FPR. OpenOOD's "first TPR >= 0.95"
 * convention is fpr95FirstAtLeast below. The |TPR - 0.95| values are computed with the same
 * double operations as numpy, so ties between points resolve identically.
 */
function fpr95NearestOf(gr: Groups): number {
  const { tps, fps } = cumulative(gr);
  let last = 0;
  while (tps[last] < gr.nId) last++;
  let best = last;
  let bestDist = Math.abs(tps[last] / gr.nId - TPR_LEVEL);
  for (let g = last - 1; g >= 0; g--) {
    const dist = Math.abs(tps[g] / gr.nId - TPR_LEVEL);
    if (dist < bestDist) {
      bestDist = dist;
      best = g;
    }
  }
  return fps[best] / gr.nOod;
}

/**
 * OpenOOD's convention: fpr[np.argmax(tpr >= 0.95)] over sklearn's roc_curve with its default
 * drop_intermediate=True. Dropping matters here: if the first point at or above 0.95 lies
 * inside a straight run of equal steps it is dropped and the next kept point (same or larger
 * FPR) is reported, so we skip such points the way sklearn drops them.
 */
export function fpr95FirstAtLeast(idScores: ScoreArray, oodScores: ScoreArray): number {
  const gr = groupScores(idScores, oodScores);
  const { tps, fps } = cumulative(gr);
  let g = 0;
  while (tps[g] / gr.nId < TPR_LEVEL) g++;
  while (g > 0 && g < gr.count - 1 && !isCorner(tps, fps, g)) g++;
  return fps[g] / gr.nOod;
}

/** sklearn keeps a point when the second difference of fps or tps is non-zero there. */
function isCorner(tps: Float64Array, fps: Float64Array, g: number): boolean {
  return (
    tps[g + 1] - 2 * tps[g] + tps[g - 1] !== 0 || fps[g + 1] - 2 * fps[g] + fps[g - 1] !== 0
  );
}

/**
 * sklearn's average_precision_score: sum over thresholds (descending) of
 * (recall_k - recall_{k-1}) * precision_k, i.e. the step-wise PR area without interpolation.
 * `pos`/`neg` give per-group counts in the order the thresholds are visited.
 */
function averagePrecision(
  count: number,
  pos: (g: number) => number,
  neg: (g: number) => number,
  nPos: number,
): number {
  let tp = 0;
  let fp = 0;
  let prevRecall = 0;
  let ap = 0;
  for (let g = 0; g < count && tp < nPos; g++) {
    tp += pos(g);
    fp += neg(g);
    const recall = tp / nPos;
    ap += (recall - prevRecall) * (tp / (tp + fp));
    prevRecall = recall;
  }
  return ap;
}

function auprInOf(gr: Groups): number {
  return averagePrecision(gr.count, (g) => gr.idCount[g], (g) => gr.oodCount[g], gr.nId);
}

/** OOD as the positive class with negated scores: visit the tie groups from the lowest score. */
function auprOutOf(gr: Groups): number {
  const last = gr.count - 1;
  return averagePrecision(gr.count, (g) => gr.oodCount[last - g], (g) => gr.idCount[last - g], gr.nOod);
}

export function auroc(idScores: ScoreArray, oodScores: ScoreArray): number {
  return aurocOf(groupScores(idScores, oodScores));
}

export function fpr95Interpolated(idScores: ScoreArray, oodScores: ScoreArray): number {
  return fpr95InterpolatedOf(groupScores(idScores, oodScores));
}

export function fpr95Nearest(idScores: ScoreArray, oodScores: ScoreArray): number {
  return fpr95NearestOf(groupScores(idScores, oodScores));
}

export function auprIn(idScores: ScoreArray, oodScores: ScoreArray): number {
  return auprInOf(groupScores(idScores, oodScores));
}

export function auprOut(idScores: ScoreArray, oodScores: ScoreArray): number {
  return auprOutOf(groupScores(idScores, oodScores));
}

/** All detection metrics from a single sort of the scores. */
export function computeMetrics(idScores: ScoreArray, oodScores: ScoreArray): OodMetrics {
  const gr = groupScores(idScores, oodScores);
  return {
    auroc: aurocOf(gr),
    fpr95: { interpolated: fpr95InterpolatedOf(gr), nearest: fpr95NearestOf(gr) },
    auprIn: auprInOf(gr),
    auprOut: auprOutOf(gr),
  };
}

/** CLIPN's four numbers (FPR95 on the interpolated curve), as computeMetrics gives them. */
export interface DetectionMetrics {
  auroc: number;
  fpr95: number;
  auprIn: number;
  auprOut: number;
}

/**
 * computeMetrics' auroc, fpr95.interpolated, auprIn and auprOut, bit for bit, for callers that
 * score many variants of the same images (the prompt ablation): one sort per class, then
 * detectionMetricsOfSorted.
 */
export function detectionMetrics(idScores: ScoreArray, oodScores: ScoreArray): DetectionMetrics {
  return detectionMetricsOfSorted(sortedCopy(idScores, 'ID'), sortedCopy(oodScores, 'OOD'));
}

/**
 * detectionMetrics on scores each class already sorted ascending (finite, non-empty: the
 * caller's sort checked them), in one merge from the top that forms the tie groups. Each metric
 * repeats the operations, in the same order, of aurocOf, fpr95InterpolatedOf and
 * averagePrecision above, so the doubles are the same, with the work they would spend on terms
 * that are exactly zero left out: a group without ID samples adds (recall - prevRecall) *
 * precision = +0 to AUPR-In, one without OOD samples +0 to AUROC and AUPR-Out, and FPR95 only
 * divides near its crossing (where TPR > 0.95 can hold). AUPR-Out runs from the lowest score:
 * its counts at a group are those not yet merged above it, kept for the groups with OOD samples.
 * native/ablation-kernels.cc metricsOfSorted repeats these operations in C++ for the ablation's
 * scoring workers (bit for bit, tested): a change here goes there too.
 */
export function detectionMetricsOfSorted(id: Float64Array, ood: Float64Array): DetectionMetrics {
  const nId = id.length;
  const nOod = ood.length;
  if (nId === 0 || nOod === 0) throw new MetricsError(`${nId === 0 ? 'ID' : 'OOD'} score set is empty: metrics need at least one ID and one OOD score`);
  const outTp = new Float64Array(nOod);
  const outFp = new Float64Array(nOod);
  let outGroups = 0;
  const nearCrossing = 0.9 * nId; // tps / nId > 0.95 implies tps > 0.9 nId
  let i = nId - 1;
  let o = nOod - 1;
  let tps = 0;
  let fps = 0;
  let twiceArea = 0;
  let apIn = 0;
  let prevRecall = 0;
  let fpr95: number | undefined;
  while (i >= 0 || o >= 0) {
    const t = i < 0 ? ood[o] : o < 0 ? id[i] : Math.max(id[i], ood[o]);
    let ci = 0;
    let co = 0;
    while (i >= 0 && id[i] === t) { ci++; i--; }
    while (o >= 0 && ood[o] === t) { co++; o--; }
    const next = tps + ci;
    if (co > 0) {
      twiceArea += co * (tps + next);
      outTp[outGroups] = nOod - fps;
      outFp[outGroups] = nId - tps;
      outGroups++;
    }
    // averagePrecision visits a group while tp < nPos before it.
    if (ci > 0 && tps < nId) {
      const recall = next / nId;
      apIn += (recall - prevRecall) * (next / (next + fps + co));
      prevRecall = recall;
    }
    if (fpr95 === undefined && next > nearCrossing) {
      const tpr = next / nId;
      if (tpr > TPR_LEVEL) {
        const [prevTpr, prevFpr, fpr] = [tps / nId, fps / nOod, (fps + co) / nOod];
        fpr95 = prevTpr === TPR_LEVEL ? prevFpr : ((fpr - prevFpr) / (tpr - prevTpr)) * (TPR_LEVEL - prevTpr) + prevFpr;
      }
    }
    tps = next;
    fps += co;
  }
  let apOut = 0;
  prevRecall = 0;
  for (let g = outGroups - 1, tp = 0; g >= 0 && tp < nOod; g--) {
    tp = outTp[g];
    const recall = tp / nOod;
    apOut += (recall - prevRecall) * (tp / (tp + outFp[g]));
    prevRecall = recall;
  }
  // fpr95 is always set: the last group has TPR 1 (fpr95InterpolatedOf's fallback is unreachable).
  return { auroc: twiceArea / (2 * nId * nOod), fpr95: fpr95!, auprIn: apIn, auprOut: apOut };
}

/**
 * Points identical to sklearn.metrics.roc_curve(y, s, drop_intermediate=False) with y = 1 for
 * ID: a leading (0, 0) point, then one point per distinct score, descending. With
 * dropIntermediate the collinear points sklearn drops by default are dropped too.
 */
export function rocCurve(
  idScores: ScoreArray,
  oodScores: ScoreArray,
  opts: { dropIntermediate?: boolean } = {},
): RocCurve {
  const gr = groupScores(idScores, oodScores);
  const { tps, fps } = cumulative(gr);
  const keep: number[] = [];
  for (let g = 0; g < gr.count; g++) {
    const dropped =
      opts.dropIntermediate && gr.count > 2 && g > 0 && g < gr.count - 1 && !isCorner(tps, fps, g);
    if (!dropped) keep.push(g);
  }
  const n = keep.length + 1;
  const fpr = new Float64Array(n);
  const tpr = new Float64Array(n);
  const thresholds = new Float64Array(n);
  thresholds[0] = Infinity;
  keep.forEach((g, k) => {
    fpr[k + 1] = fps[g] / gr.nOod;
    tpr[k + 1] = tps[g] / gr.nId;
    thresholds[k + 1] = gr.threshold[g];
  });
  return { fpr, tpr, thresholds };
}

/** Top-1 accuracy of predicted class indices against ground-truth labels. */
export function idAccuracy(
  predicted: ArrayLike<number>,
  labels: ArrayLike<number>,
): number {
  if (predicted.length !== labels.length) {
    throw new MetricsError(`idAccuracy: ${predicted.length} predictions but ${labels.length} labels`);
  }
  if (labels.length === 0) throw new MetricsError('idAccuracy: no samples');
  let correct = 0;
  for (let i = 0; i < labels.length; i++) if (predicted[i] === labels[i]) correct++;
  return correct / labels.length;
}
