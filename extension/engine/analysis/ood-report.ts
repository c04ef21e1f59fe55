// The numbers of a paper-style OOD report from per-image scores: per score (MSP, MaxLogit,
// Energy, CTW, ATD) and OOD set AUROC / FPR95 / AUPR-In / AUPR-Out with the average over sets,
// ID accuracy, ROC curves (all OOD sets pooled, and per set), the score arrays for histograms,
// and the worst cases: the OOD images that look most ID and the ID images that look least ID.
// The evaluate cell lays these out; everything here is plain data.
import { SCORE_NAMES, type ScoreName } from '../../language/schema';
import { computeMetrics, idAccuracy, rocCurve, type Fpr95, type OodMetrics, type RocCurve } from '../metrics';
import type { DegenerateFlags, ImageScores } from '../scores';

export const SCORE_LABELS: Readonly<Record<ScoreName, string>> = { msp: 'MSP', maxlogit: 'MaxLogit', energy: 'Energy', ctw: 'CTW', atd: 'ATD' };
const FIELD = { msp: 'msp', maxlogit: 'maxLogit', energy: 'energy', ctw: 'ctw', atd: 'atd' } as const satisfies Record<ScoreName, keyof ImageScores>;

export class ReportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReportError';
  }
}

/** One score's per-image values (higher = more ID). */
export function scoreValues(s: ImageScores, name: ScoreName): Float64Array {
  return s[FIELD[name]];
}

export interface ScoredSet {
  name: string;
  scores: ImageScores;
}

export interface OodReportInput {
  /** The ID set; labels[i] is image i's class index, negative when unknown (not counted). */
  id: ScoredSet & { labels?: ArrayLike<number> };
  ood: readonly ScoredSet[];
}

export interface OodReportOptions {
  /** Scores to report, in this order (default all five); duplicates are dropped. */
  scores?: readonly ScoreName[];
  /** Worst cases to keep per kind (default 10; 0 for none). */
  worstK?: number;
  /** Scores to list worst cases for (default: every reported score). */
  worstFor?: readonly ScoreName[];
  /** Drop the collinear ROC points sklearn drops by default (same curve, fewer points; default true). */
  dropIntermediate?: boolean;
}

export interface ScoreReport {
  score: ScoreName;
  label: string;
  /** perSet[k]: ID vs OOD set k. */
  perSet: OodMetrics[];
  /** Mean of perSet, metric by metric; null with a single OOD set. */
  average: OodMetrics | null;
  /** ROC curves, ID positive: all OOD sets pooled, and per set. */
  roc: { pooled: RocCurve; perSet: RocCurve[] };
  /** The scores themselves, for histograms (the input arrays, not copies). */
  values: { id: Float64Array; ood: Float64Array[] };
  /** Why this score is meaningless for this input (e.g. ATD with one ID class), from scores.ts. */
  degenerate?: string;
}

export interface WorstCase {
  /** Name of the image set the image belongs to. */
  set: string;
  /** Row of the image in that set's scores. */
  row: number;
  score: number;
}

export interface WorstCases {
  /** OOD images with the highest scores (OOD that looks most ID), highest first. */
  falsePositives: WorstCase[];
  /** ID images with the lowest scores (ID that looks least ID), lowest first. */
  falseNegatives: WorstCase[];
}

export interface OodReport {
  idSet: string;
  oodSets: string[];
  classes: number;
  /** Top-1 accuracy over the labelled ID images; null when none is labelled. */
  idAccuracy: number | null;
  labelled: number;
  scores: ScoreReport[];
  /** Per score in worstFor; ties go to the earlier set, then the lower row. */
  worst: Partial<Record<ScoreName, WorstCases>>;
  /** The scoring's degenerate-score flags (the same for every set: they depend on the classes). */
  degenerate: DegenerateFlags;
}

export function oodReport(input: OodReportInput, opts: OodReportOptions = {}): OodReport {
  const { id, ood } = input;
  checkInput(input);
  const wanted = uniqueScores(opts.scores ?? SCORE_NAMES, 'scores');
  const worstFor = uniqueScores(opts.worstFor ?? wanted, 'worstFor');
  const k = opts.worstK ?? 10;
  if (!Number.isInteger(k) || k < 0) throw new ReportError(`worstK must be a non-negative integer (got ${k})`);
  const dropIntermediate = opts.dropIntermediate ?? true;

  const scores = wanted.map((name): ScoreReport => {
    const idValues = scoreValues(id.scores, name);
    const oodValues = ood.map((o) => scoreValues(o.scores, name));
    const perSet = oodValues.map((v) => computeMetrics(idValues, v));
    const flag = name === 'atd' || name === 'msp' ? id.scores.degenerate[name] : undefined;
    return {
      score: name,
      label: SCORE_LABELS[name],
      perSet,
      average: perSet.length > 1 ? averageMetrics(perSet) : null,
      roc: {
        pooled: rocCurve(idValues, concat(oodValues), { dropIntermediate }),
        perSet: oodValues.map((v) => rocCurve(idValues, v, { dropIntermediate })),
      },
      values: { id: idValues, ood: oodValues },
      ...(flag ? { degenerate: flag } : {}),
    };
  });

  const worst: Partial<Record<ScoreName, WorstCases>> = {};
  for (const name of worstFor) {
    worst[name] = {
      falsePositives: extremes(ood.map((o) => ({ set: o.name, values: scoreValues(o.scores, name) })), k, 'highest'),
      falseNegatives: extremes([{ set: id.name, values: scoreValues(id.scores, name) }], k, 'lowest'),
    };
  }
  const { accuracy, labelled } = accuracyOf(id);
  return {
    idSet: id.name,
    oodSets: ood.map((o) => o.name),
    classes: id.scores.classes,
    idAccuracy: accuracy,
    labelled,
    scores,
    worst,
    degenerate: { ...id.scores.degenerate },
  };
}

export interface MetricRow {
  score: ScoreName;
  label: string;
  /** OOD set name, or 'average'. */
  set: string;
  /** True for the mean-over-sets row. */
  average: boolean;
  auroc: number;
  fpr95: number;
  auprIn: number;
  auprOut: number;
}

/** The table of a paper: per score, one row per OOD set then the average (fractions, not %). */
export function metricRows(report: OodReport, fpr95: keyof Fpr95 = 'interpolated'): MetricRow[] {
  const rows: MetricRow[] = [];
  for (const s of report.scores) {
    const row = (set: string, m: OodMetrics, average: boolean): MetricRow => ({
      score: s.score, label: s.label, set, average, auroc: m.auroc, fpr95: m.fpr95[fpr95], auprIn: m.auprIn, auprOut: m.auprOut,
    });
    s.perSet.forEach((m, k) => rows.push(row(report.oodSets[k], m, false)));
    if (s.average) rows.push(row('average', s.average, true));
  }
  return rows;
}

function checkInput({ id, ood }: OodReportInput): void {
  if (ood.length === 0) throw new ReportError('no OOD sets: give at least one OOD image set');
  for (const s of [id, ...ood]) {
    if (s.scores.n === 0) throw new ReportError(`image set ${JSON.stringify(s.name)} has no scored images`);
    if (s.scores.classes !== id.scores.classes) {
      throw new ReportError(
        `image set ${JSON.stringify(s.name)} was scored against ${s.scores.classes} classes but the ID set ${JSON.stringify(id.name)} against ${id.scores.classes}; score every set with the same text features`,
      );
    }
  }
  const names = [id, ...ood].map((s) => s.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new ReportError(`image set name ${JSON.stringify(dup)} is used twice; worst cases are reported by set name`);
  if (id.labels && id.labels.length !== id.scores.n) {
    throw new ReportError(`ID labels: ${id.labels.length} labels for ${id.scores.n} scored images`);
  }
}

function uniqueScores(list: readonly ScoreName[], what: string): ScoreName[] {
  for (const s of list) {
    if (!(SCORE_NAMES as readonly string[]).includes(s)) throw new ReportError(`${what}: unknown score ${JSON.stringify(s)}; expected one of ${SCORE_NAMES.join(', ')}`);
  }
  return list.filter((s, i) => list.indexOf(s) === i);
}

function averageMetrics(list: readonly OodMetrics[]): OodMetrics {
  const mean = (f: (m: OodMetrics) => number) => list.reduce((a, m) => a + f(m), 0) / list.length;
  return {
    auroc: mean((m) => m.auroc),
    fpr95: { interpolated: mean((m) => m.fpr95.interpolated), nearest: mean((m) => m.fpr95.nearest) },
    auprIn: mean((m) => m.auprIn),
    auprOut: mean((m) => m.auprOut),
  };
}

function concat(parts: readonly Float64Array[]): Float64Array {
  const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function accuracyOf(id: OodReportInput['id']): { accuracy: number | null; labelled: number } {
  if (!id.labels) return { accuracy: null, labelled: 0 };
  const pred: number[] = [];
  const truth: number[] = [];
  for (let i = 0; i < id.labels.length; i++) {
    if (id.labels[i] >= 0) {
      pred.push(id.scores.predicted[i]);
      truth.push(id.labels[i]);
    }
  }
  return { accuracy: truth.length > 0 ? idAccuracy(pred, truth) : null, labelled: truth.length };
}

/**
 * The k most extreme scores over several sets, most extreme first. Candidates are visited in
 * (set, row) order and a later one must be strictly more extreme to displace an earlier one,
 * so equal scores keep the earlier set and the lower row: the same list on every run.
 */
function extremes(sets: readonly { set: string; values: Float64Array }[], k: number, which: 'highest' | 'lowest'): WorstCase[] {
  const sign = which === 'highest' ? 1 : -1;
  const kept: WorstCase[] = [];
  if (k === 0) return kept;
  for (const { set, values } of sets) {
    for (let row = 0; row < values.length; row++) {
      const key = sign * values[row];
      if (kept.length === k && !(key > sign * kept[k - 1].score)) continue;
      // Insert after every kept entry at least as extreme (binary search keeps this O(log k)).
      let lo = 0;
      let hi = kept.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (sign * kept[mid].score >= key) lo = mid + 1;
        else hi = mid;
      }
      kept.splice(lo, 0, { set, row, score: values[row] });
      if (kept.length > k) kept.pop();
    }
  }
  return kept;
}
