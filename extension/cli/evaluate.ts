// `clipn eval`: CLIPN's zero-shot OOD evaluation as the paper reports it. The ID set's class
// names make the prompts; yes/no class features use the learned "no" prompts averaged (the
// paper's evaluation); images are embedded through the cache; every method is scored with
// scores.ts (CLIPN's convention T = 0.01 for the softmax baselines) and measured with
// metrics.ts (ID positive, FPR95 interpolated as CLIPN's code does).
import * as path from 'node:path';
import type { SkippedProvider } from '../engine/backend';
import { crossSetDuplicates, loadDataset } from '../engine/datasets';
import type { ImageDataset, SkippedEntry } from '../engine/datasets';
import { embedImageSet } from '../engine/embed';
import type { EmbedResult } from '../engine/embed';
import { EmbeddingCache } from '../engine/embedding-cache';
import { imageGraphFor } from '../engine/encoder';
import type { ClipnModel, ImageFailure, ImagePrecision } from '../engine/encoder';
import { computeMetrics, idAccuracy } from '../engine/metrics';
import { classFeatures, defaultTemplates, IMAGENET_TEMPLATES } from '../engine/prompts';
import { scoreFeatures } from '../engine/scores';
import type { ImageScores } from '../engine/scores';
import { progressLine } from './common';

/** CLIPN's baselines: softmax over cos / 0.01, i.e. over the scale-100 logits. */
export const CLIPN_TEMPERATURE = 0.01;

export const METHODS = [
  { key: 'msp', label: 'MSP' },
  { key: 'maxLogit', label: 'MaxLogit' },
  { key: 'energy', label: 'Energy' },
  { key: 'ctw', label: 'CLIPN-CTW' },
  { key: 'atd', label: 'CLIPN-ATD' },
] as const;
export type MethodKey = (typeof METHODS)[number]['key'];

export type TemplateSet = 'default' | 'clip80';

export interface EvalOptions {
  model: ClipnModel;
  id: string;
  ood: readonly string[];
  templates: TemplateSet;
  /** Cache root; undefined disables the cache. */
  cacheRoot?: string;
  /** Images per encoder run; undefined: chosen by the provider (encoder.ts imageBatchFor). */
  batchSize?: number;
  precision: ImagePrecision;
  cwd?: string;
}

export interface MetricRow {
  auroc: number;
  /** CLIPN's convention: ROC interpolated at TPR 95%. */
  fpr95: number;
  /** MCM's convention (nearest ROC point), for comparison with MCM's tables. */
  fpr95Nearest: number;
  auprIn: number;
  auprOut: number;
}

export interface SetSummary {
  name: string;
  source: string;
  kind: string;
  /** Images found; `embedded` of them have features. */
  images: number;
  embedded: number;
  encoded: number;
  fromCache: number;
  skipped: SkippedEntry[];
  failures: ImageFailure[];
  warnings: string[];
}

export interface EvalReport {
  model: { folder: string; name: string; imageGraphSha256: string; precision: string };
  providers: { image: string; text: string; skipped: SkippedProvider[] };
  templates: { set: TemplateSet; count: number };
  /** ID class names as found, and as written into the prompts. */
  classes: string[];
  promptNames: string[];
  scale: number;
  temperature: number;
  cacheDir: string | null;
  id: SetSummary;
  ood: SetSummary[];
  /** methods[m].perSet[ood name] and the mean over the OOD sets. */
  methods: Array<{ key: MethodKey; label: string; perSet: Record<string, MetricRow>; average: MetricRow }>;
  /** Top-1 accuracy over labelled ID images; null when none is labelled. */
  idAccuracy: number | null;
  warnings: string[];
  seconds: { text: number; images: number; scoring: number };
}

/** Folder names become prompt words: "golden_retriever" reads as "golden retriever". */
export function promptName(className: string): string {
  return className.replace(/_/g, ' ').trim();
}

export function templatesFor(model: ClipnModel, set: TemplateSet): readonly string[] {
  return set === 'clip80' ? IMAGENET_TEMPLATES : defaultTemplates(model.manifest);
}

/** Display names for the OOD sets: their folder/file name, made unique with the parent folder. */
export function setNames(sources: readonly string[]): string[] {
  const base = sources.map((s) => path.basename(s.replace(/[\\/]+$/, '')) || s);
  return base.map((b, i) => (base.indexOf(b) !== base.lastIndexOf(b) ? sources[i].replace(/[\\/]+$/, '') : b));
}

function summary(name: string, set: ImageDataset, emb: EmbedResult): SetSummary {
  return {
    name,
    source: set.source,
    kind: set.kind,
    images: set.items.length,
    embedded: emb.dims[0],
    encoded: emb.encoded,
    fromCache: emb.fromCache,
    skipped: set.skipped,
    failures: emb.failures,
    warnings: [...set.warnings, ...emb.cacheWarnings],
  };
}

function score(model: ClipnModel, emb: EmbedResult, yes: Float32Array, no: Float32Array, classes: number): ImageScores {
  return scoreFeatures(
    { image: emb.features, n: emb.dims[0], dim: emb.dims[1], textYes: yes, textNo: no, classes },
    { scale: model.manifest.logit_scale, temperature: CLIPN_TEMPERATURE },
  );
}

function metricRow(id: Float64Array, ood: Float64Array): MetricRow {
  const m = computeMetrics(id, ood);
  return { auroc: m.auroc, fpr95: m.fpr95.interpolated, fpr95Nearest: m.fpr95.nearest, auprIn: m.auprIn, auprOut: m.auprOut };
}

function mean(rows: MetricRow[]): MetricRow {
  const avg = (f: (r: MetricRow) => number) => rows.reduce((s, r) => s + f(r), 0) / rows.length;
  return { auroc: avg((r) => r.auroc), fpr95: avg((r) => r.fpr95), fpr95Nearest: avg((r) => r.fpr95Nearest), auprIn: avg((r) => r.auprIn), auprOut: avg((r) => r.auprOut) };
}

export async function runEval(opts: EvalOptions): Promise<EvalReport> {
  const { model } = opts;
  if (opts.ood.length === 0) throw new Error('eval: give at least one OOD set with --ood');
  const cwd = opts.cwd ?? process.cwd();
  // Read (and hash) every set before any encoding: a bad path fails in seconds, not after the ID set.
  const idSet = await loadDataset(opts.id, { role: 'id', cwd });
  if (idSet.classNames.length === 0) {
    throw new Error(`${opts.id}: the ID set has no class names; use a folder of class folders or a list with a label column`);
  }
  const oodSets: ImageDataset[] = [];
  for (const s of opts.ood) oodSets.push(await loadDataset(s, { role: 'ood', cwd }));
  const names = setNames(opts.ood);
  const warnings: string[] = [];
  oodSets.forEach((o, k) => {
    const both = crossSetDuplicates(idSet, o);
    if (both.length > 0) warnings.push(`${both.length} images of OOD set ${names[k]} are also in the ID set, e.g. ${both[0]}`);
  });

  const t0 = performance.now();
  const promptNames = idSet.classNames.map(promptName);
  const templates = templatesFor(model, opts.templates);
  const text = await classFeatures(model, promptNames, { templates, no: { kind: 'learned' } });
  const t1 = performance.now();

  const cache = opts.cacheRoot ? EmbeddingCache.forModel(opts.cacheRoot, model.manifest, opts.precision) : undefined;
  const embedOpts = { cache, batchSize: opts.batchSize, precision: opts.precision };
  const idEmb = await embedImageSet(model, idSet, { ...embedOpts, onProgress: progressLine('ID') });
  const oodEmb: EmbedResult[] = [];
  for (let k = 0; k < oodSets.length; k++) oodEmb.push(await embedImageSet(model, oodSets[k], { ...embedOpts, onProgress: progressLine(names[k]) }));
  const t2 = performance.now();
  if (idEmb.dims[0] === 0) throw new Error(`${opts.id}: none of the ID images could be embedded (e.g. ${idEmb.failures[0]?.file}: ${idEmb.failures[0]?.reason})`);
  oodEmb.forEach((e, k) => {
    if (e.dims[0] === 0) throw new Error(`${opts.ood[k]}: none of the OOD images could be embedded (e.g. ${e.failures[0]?.file}: ${e.failures[0]?.reason})`);
  });

  const classes = idSet.classNames.length;
  const idScores = score(model, idEmb, text.yes.data, text.no.data, classes);
  const oodScores = oodEmb.map((e) => score(model, e, text.yes.data, text.no.data, classes));
  // scores.ts's `degenerate` notes (one ID class) repeat the ID set's own warning: not repeated here.
  const methods = METHODS.map(({ key, label }) => {
    const perSet: Record<string, MetricRow> = {};
    const rows = oodScores.map((o, k) => (perSet[names[k]] = metricRow(idScores[key], o[key])));
    return { key, label, perSet, average: mean(rows) };
  });
  // Accuracy over ID rows whose item has a label (a glob may include unlabelled files).
  const pred: number[] = [];
  const gold: number[] = [];
  idEmb.indices.forEach((item, r) => {
    const label = idSet.items[item].label;
    if (label !== undefined) {
      pred.push(idScores.predicted[r]);
      gold.push(label);
    }
  });
  const t3 = performance.now();

  const imageProvider = [idEmb, ...oodEmb].find((e) => e.provider !== 'cache');
  const m = model.manifest;
  const graphRel = m.graphs[imageGraphFor(opts.precision)];
  return {
    model: { folder: model.modelFolder.folder, name: m.name, imageGraphSha256: graphRel ? m.files[graphRel] ?? '' : '', precision: opts.precision },
    providers: {
      image: imageProvider ? imageProvider.provider : 'cache',
      text: text.provider.yes,
      skipped: (imageProvider?.providerReport ?? (await model.providerReport('text'))).skipped,
    },
    templates: { set: opts.templates, count: templates.length },
    classes: idSet.classNames,
    promptNames,
    scale: m.logit_scale,
    temperature: CLIPN_TEMPERATURE,
    cacheDir: cache ? cache.dir : null,
    id: summary(path.basename(opts.id.replace(/[\\/]+$/, '')) || opts.id, idSet, idEmb),
    ood: oodSets.map((o, k) => summary(names[k], o, oodEmb[k])),
    methods,
    idAccuracy: gold.length > 0 ? idAccuracy(pred, gold) : null,
    warnings,
    seconds: { text: (t1 - t0) / 1000, images: (t2 - t1) / 1000, scoring: (t3 - t2) / 1000 },
  };
}
