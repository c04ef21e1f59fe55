// `evaluate:` — the OOD report: class text features (yes and no towers) against the ID and OOD
// image embeddings, the five scores, and per OOD set and averaged AUROC / FPR95 / AUPR-In /
// AUPR-Out with ID accuracy, laid out like the paper's tables; ROC curves; ID-vs-OOD histograms
// of the CLIPN scores; the worst false positives and false negatives with thumbnails.
import { metricRows, oodReport, SCORE_LABELS, type WorstCase } from '../../engine/analysis/ood-report';
import { scoreImageFeatures } from '../../engine/scoring-graph';
import type { ImageScores } from '../../engine/scores';
import { thumbnail } from '../../engine/thumbnails';
import { SCORE_NAMES, type ScoreName } from '../../language/schema';
import type { Block, FigureTrace, GalleryItem, ViewPayload } from '../../protocol';
import { CellError, type RunContext } from '../state';
import { embedNotes, embedSet, emptyView, fmtSeconds, labelsFor, useClasses, useDatasets, useModel, usePrompts, textCutNotes, useTextFeatures, type Embedded } from './common';
import { pointLabel, pointRow } from './points';

type Values = Record<string, unknown>;
const WORST_K = 8;

async function gallery(ctx: RunContext, title: string, cases: readonly WorstCase[], bySet: Map<string, Embedded>, scores: Map<string, ImageScores>, classes: readonly string[], label: string): Promise<Block> {
  const items: GalleryItem[] = [];
  for (const c of cases) {
    ctx.signal.throwIfAborted();
    const row = pointRow(bySet.get(c.set)!, c.row);
    const predicted = classes[scores.get(c.set)!.predicted[c.row]];
    items.push({ label: pointLabel(row), caption: `${label} ${c.score.toFixed(4)} · predicted ${predicted}`, path: row.path, thumb: await thumbnail(row.path) });
  }
  return { type: 'gallery', title, items };
}

export async function runEvaluate(ctx: RunContext, v: Values, name: string): Promise<ViewPayload> {
  const start = performance.now();
  const m = await useModel(ctx, v.model);
  const [idSet] = useDatasets(ctx, v.id, 'id');
  const oodSets = useDatasets(ctx, v.ood, 'ood');
  if (oodSets.some((s) => s === idSet)) throw new CellError(`ood: ${JSON.stringify(idSet.name)} is the ID set; choose other image sets for OOD`);
  const classes = useClasses(ctx, v.classes, idSet, 'id');
  const prompts = usePrompts(ctx, v.prompts);
  const wanted = ((v.scores as ScoreName[] | undefined) ?? [...SCORE_NAMES]).filter((s, i, a) => a.indexOf(s) === i);
  const fpr95Kind = (v.fpr95 as 'interpolated' | 'nearest' | undefined) ?? 'interpolated';

  const text = await useTextFeatures(ctx, m, classes, prompts);
  const idEmb = await embedSet(ctx, m, idSet);
  const oodEmb: Embedded[] = [];
  for (const s of oodSets) oodEmb.push(await embedSet(ctx, m, s));
  ctx.progress('scoring');
  const score = (e: Embedded) =>
    scoreImageFeatures(
      { image: e.features, n: e.dims[0], dim: e.dims[1], textYes: text.yes.data, textNo: text.no.data, classes: classes.length },
      // The exact reference path where it is quick; the onnxruntime graph (logits within ~1e-5)
      // only where scoring would otherwise take seconds.
      { temperature: (v.temperature as number | undefined) ?? 1, engine: e.dims[0] * classes.length > 5_000_000 ? 'auto' : 'ts' },
    );
  const idScores = await score(idEmb);
  const oodScores: ImageScores[] = [];
  for (const e of oodEmb) oodScores.push(await score(e));
  const report = oodReport(
    { id: { name: idSet.name, scores: idScores, labels: labelsFor(idEmb, classes) }, ood: oodEmb.map((e, k) => ({ name: e.set.name, scores: oodScores[k] })) },
    { scores: wanted, worstK: WORST_K, worstFor: wanted.filter((s) => s === 'atd' || s === 'ctw').slice(-1) },
  );
  const acc = report.idAccuracy;

  const view = emptyView('evaluate', `OOD evaluation ${name}: ${idSet.name} (ID, ${idEmb.dims[0]} images) vs ${oodEmb.map((e) => `${e.set.name} (${e.dims[0]})`).join(', ')}`);
  view.blocks.push({
    type: 'table',
    title: 'Metrics (%)',
    columns: [
      { label: 'Score' },
      { label: 'OOD set' },
      { label: 'AUROC ↑', digits: 2, best: 'max' },
      { label: `FPR95 ↓ (${fpr95Kind})`, digits: 2, best: 'min' },
      { label: 'AUPR-In ↑', digits: 2, best: 'max' },
      { label: 'AUPR-Out ↑', digits: 2, best: 'max' },
      { label: 'ID acc ↑', digits: 2 },
    ],
    rows: metricRows(report, fpr95Kind).map((r) => [r.label, r.set, r.auroc * 100, r.fpr95 * 100, r.auprIn * 100, r.auprOut * 100, acc === null ? null : acc * 100]),
    caption: `${classes.length} ID classes; prompts: ${prompts ? prompts.description : 'the model\'s templates, mean learned "no" prompt'}; ID is the positive class.`,
  });

  const roc: FigureTrace[] = report.scores.map((s, i) => ({ type: 'scatter', mode: 'lines', name: s.label, x: Float32Array.from(s.roc.pooled.fpr), y: Float32Array.from(s.roc.pooled.tpr), colorIndex: i }));
  roc.push({ type: 'scatter', mode: 'lines', name: 'chance', x: Float32Array.from([0, 1]), y: Float32Array.from([0, 1]), dash: 'dot', colorIndex: 7, showlegend: false });
  view.blocks.push({ type: 'figure', title: `ROC curves (ID positive, ${oodEmb.length > 1 ? 'all OOD sets pooled' : oodEmb[0].set.name})`, figure: { data: roc, layout: { xTitle: 'false positive rate (OOD called ID)', yTitle: 'true positive rate', xRange: [0, 1], yRange: [0, 1.02] } } });

  // Histograms of CLIPN's scores (or the last score asked for when neither is).
  const histScores = report.scores.filter((s) => s.score === 'ctw' || s.score === 'atd');
  for (const s of histScores.length ? histScores : report.scores.slice(-1)) {
    const traces: FigureTrace[] = [{ type: 'histogram', name: `${idSet.name} (ID)`, x: Float32Array.from(s.values.id), opacity: 0.6, colorIndex: 0, nbinsx: 40 }];
    s.values.ood.forEach((o, k) => traces.push({ type: 'histogram', name: `${oodEmb[k].set.name} (OOD)`, x: Float32Array.from(o), opacity: 0.6, colorIndex: k + 1, nbinsx: 40 }));
    view.blocks.push({ type: 'figure', title: `${s.label} score: ID vs OOD`, figure: { data: traces, layout: { xTitle: `${s.label} score (higher = more ID)`, yTitle: 'images', barmode: 'overlay' } } });
  }

  const bySet = new Map<string, Embedded>([[idSet.name, idEmb], ...oodEmb.map((e) => [e.set.name, e] as [string, Embedded])]);
  const scoresBySet = new Map<string, ImageScores>([[idSet.name, idScores], ...oodEmb.map((e, k) => [e.set.name, oodScores[k]] as [string, ImageScores])]);
  for (const [sname, w] of Object.entries(report.worst) as Array<[ScoreName, NonNullable<(typeof report.worst)[ScoreName]>]>) {
    ctx.progress('worst cases');
    const lbl = SCORE_LABELS[sname];
    if (w.falsePositives.length) view.blocks.push(await gallery(ctx, `Worst false positives by ${lbl}: OOD images that look most ID`, w.falsePositives, bySet, scoresBySet, classes, lbl));
    if (w.falseNegatives.length) view.blocks.push(await gallery(ctx, `Worst false negatives by ${lbl}: ID images that look least ID`, w.falseNegatives, bySet, scoresBySet, classes, lbl));
  }

  for (const [k, why] of Object.entries(report.degenerate)) if (why) view.notes.push(`${k.toUpperCase()}: ${why}`);
  view.notes.push(...textCutNotes(m, classes, prompts));
  view.notes.push(`Text features: ${text.provider.yes}; scoring: ${idScores.engine === 'onnx' ? 'onnxruntime graph' : 'exact TS path'}; ${fmtSeconds((performance.now() - start) / 1000)} in all.`, ...embedNotes([idEmb, ...oodEmb]));
  const failures = [idEmb, ...oodEmb].flatMap((e) => e.failures.map((f) => `${f.file}: ${f.reason}`));
  if (failures.length) view.blocks.push({ type: 'list', title: `${failures.length} images could not be used`, items: failures.slice(0, 20), more: failures.length > 20 ? failures.length - 20 : undefined });

  const summary = Object.fromEntries(report.scores.map((s) => [s.score, Object.fromEntries(report.oodSets.map((set, k) => [set, s.perSet[k].auroc]))]));
  ctx.state.defs.define({ name, kind: 'evaluate', cell: ctx.cellNumber, value: { auroc: summary, idAccuracy: acc } });
  return view;
}
