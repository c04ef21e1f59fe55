// `evaluate:` — zero-shot OOD evaluation: class text features (yes and no towers) against the
// ID and OOD image embeddings, the five scores, and AUROC / FPR95 / AUPR-In / AUPR-Out per
// score and OOD set with the ID accuracy, laid out like the paper's tables; ROC curves and the
// ID-vs-OOD histogram of the CLIPN scores.
import { computeMetrics, idAccuracy, rocCurve } from '../../engine/metrics';
import { classFeatures } from '../../engine/prompts';
import { scoreFeatures, type ImageScores } from '../../engine/scores';
import { SCORE_NAMES, type ScoreName } from '../../language/schema';
import type { FigureTrace, TableCell, ViewPayload } from '../../protocol';
import { CellError, type ClassesValue, type PromptsValue, type RunContext } from '../state';
import { embedNotes, embedSet, emptyView, fmtSeconds, labelsFor, useDatasets, useModel, type Embedded } from './common';

type Values = Record<string, unknown>;

const LABEL: Record<ScoreName, string> = { msp: 'MSP', maxlogit: 'MaxLogit', energy: 'Energy', ctw: 'CTW', atd: 'ATD' };
const FIELD: Record<ScoreName, keyof ImageScores> = { msp: 'msp', maxlogit: 'maxLogit', energy: 'energy', ctw: 'ctw', atd: 'atd' };

function scoresOf(s: ImageScores, name: ScoreName): Float64Array {
  return s[FIELD[name]] as Float64Array;
}

export async function runEvaluate(ctx: RunContext, v: Values, name: string): Promise<ViewPayload> {
  const start = performance.now();
  const m = await useModel(ctx, v.model);
  const [idSet] = useDatasets(ctx, v.id, 'id');
  const oodSets = useDatasets(ctx, v.ood, 'ood');
  if (oodSets.some((s) => s === idSet)) throw new CellError(`ood: ${JSON.stringify(idSet.name)} is the ID set; choose other image sets for OOD`);
  const classesValue = ctx.state.lookup<ClassesValue>('classes', v.classes as string | undefined, 'classes');
  const classes = classesValue?.names ?? idSet.dataset.classNames;
  if (classes.length === 0) throw new CellError(`id: image set ${JSON.stringify(idSet.name)} has no classes; use a folder of class folders or add a \`classes:\` cell`);
  const prompts = ctx.state.lookup<PromptsValue>('prompts', v.prompts as string | undefined, 'prompts');
  const wanted = ((v.scores as ScoreName[] | undefined) ?? [...SCORE_NAMES]).filter((s, i, a) => a.indexOf(s) === i);
  const fpr95Kind = (v.fpr95 as 'interpolated' | 'nearest' | undefined) ?? 'interpolated';

  ctx.progress('text features');
  const text = await classFeatures(m.model, classes, { templates: prompts?.templates, no: prompts?.no, signal: ctx.signal, batchSize: 256 });
  const idEmb = await embedSet(ctx, m, idSet);
  const oodEmb: Embedded[] = [];
  for (const s of oodSets) oodEmb.push(await embedSet(ctx, m, s));
  ctx.progress('scoring');
  const score = (e: Embedded) =>
    scoreFeatures(
      { image: e.features, n: e.dims[0], dim: e.dims[1], textYes: text.yes.data, textNo: text.no.data, classes: classes.length },
      { temperature: (v.temperature as number | undefined) ?? 1 },
    );
  const idScores = score(idEmb);
  const oodScores = oodEmb.map(score);

  const labels = labelsFor(idEmb, classes);
  const known = labels.reduce((n, l) => n + (l >= 0 ? 1 : 0), 0);
  let acc: number | null = null;
  if (known > 0) {
    const pred = Array.from(idScores.predicted).filter((_, i) => labels[i] >= 0);
    acc = idAccuracy(pred, Array.from(labels).filter((l) => l >= 0));
  }

  const rows: TableCell[][] = [];
  const perSet = oodEmb.map(() => new Map<ScoreName, ReturnType<typeof computeMetrics>>());
  for (const s of wanted) {
    oodScores.forEach((o, k) => {
      const met = computeMetrics(scoresOf(idScores, s), scoresOf(o, s));
      perSet[k].set(s, met);
      rows.push([LABEL[s], oodEmb[k].set.name, met.auroc * 100, met.fpr95[fpr95Kind] * 100, met.auprIn * 100, met.auprOut * 100, acc === null ? null : acc * 100]);
    });
    if (oodEmb.length > 1) {
      const avg = (f: (x: ReturnType<typeof computeMetrics>) => number) => (perSet.reduce((a, mp) => a + f(mp.get(s)!), 0) / perSet.length) * 100;
      rows.push([LABEL[s], 'average', avg((x) => x.auroc), avg((x) => x.fpr95[fpr95Kind]), avg((x) => x.auprIn), avg((x) => x.auprOut), acc === null ? null : acc * 100]);
    }
  }

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
    rows,
    caption: `${classes.length} ID classes; prompts: ${prompts ? prompts.description : 'the model\'s templates, mean learned "no" prompt'}; ID is the positive class.`,
  });

  // ROC curves over all OOD images together, one trace per score.
  const allOod = (s: ScoreName) => {
    const parts = oodScores.map((o) => scoresOf(o, s));
    const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) (out.set(p, off), (off += p.length));
    return out;
  };
  const roc: FigureTrace[] = wanted.map((s, i) => {
    const c = rocCurve(scoresOf(idScores, s), allOod(s));
    return { type: 'scatter', mode: 'lines', name: LABEL[s], x: Float32Array.from(c.fpr), y: Float32Array.from(c.tpr), colorIndex: i };
  });
  roc.push({ type: 'scatter', mode: 'lines', name: 'chance', x: Float32Array.from([0, 1]), y: Float32Array.from([0, 1]), dash: 'dot', colorIndex: 7, showlegend: false });
  view.blocks.push({ type: 'figure', title: 'ROC curves (ID positive, all OOD sets)', figure: { data: roc, layout: { xTitle: 'false positive rate (OOD called ID)', yTitle: 'true positive rate', xRange: [0, 1], yRange: [0, 1.02] } } });

  const hist = wanted.includes('atd') ? 'atd' : wanted[wanted.length - 1];
  const histTraces: FigureTrace[] = [{ type: 'histogram', name: `${idSet.name} (ID)`, x: Float32Array.from(scoresOf(idScores, hist)), opacity: 0.6, colorIndex: 0, nbinsx: 40 }];
  oodScores.forEach((o, k) => histTraces.push({ type: 'histogram', name: `${oodEmb[k].set.name} (OOD)`, x: Float32Array.from(scoresOf(o, hist)), opacity: 0.6, colorIndex: k + 1, nbinsx: 40 }));
  view.blocks.push({ type: 'figure', title: `${LABEL[hist]} score: ID vs OOD`, figure: { data: histTraces, layout: { xTitle: `${LABEL[hist]} score (higher = more ID)`, yTitle: 'images', barmode: 'overlay' } } });

  for (const [k, why] of Object.entries(idScores.degenerate)) if (why) view.notes.push(`${k.toUpperCase()}: ${why}`);
  view.notes.push(`Text features: ${text.provider.yes}; ${fmtSeconds((performance.now() - start) / 1000)} in all.`, ...embedNotes([idEmb, ...oodEmb]));
  const failures = [idEmb, ...oodEmb].flatMap((e) => e.failures.map((f) => `${f.file}: ${f.reason}`));
  if (failures.length) view.blocks.push({ type: 'list', title: `${failures.length} images could not be used`, items: failures.slice(0, 20), more: failures.length > 20 ? failures.length - 20 : undefined });

  const summary = Object.fromEntries(wanted.map((s) => [s, Object.fromEntries(oodEmb.map((e, k) => [e.set.name, perSet[k].get(s)!.auroc]))]));
  ctx.state.defs.define({ name, kind: 'evaluate', cell: ctx.cellNumber, value: { auroc: summary, idAccuracy: acc } });
  return view;
}
