// `ablation:` — which prompts of a "no" pool matter: each alone, the pool without each
// (leave-one-out), and a greedy forward selection, with CTW and ATD metrics against the full
// pool. Image embeddings come from the cache; only text features are computed, and an edited
// pool re-scores only the variants it changed (the kernel remembers the rest). The best subset
// found is offered as a prompts cell.
import { ablateNoPool, type AblationObjective, type AblationPool, type AblationResult, type AblationRow, type ScoreMetrics } from '../../engine/analysis/ablation';
import type { PromptMix } from '../../engine/encoder';
import type { FigureTrace, TableCell, ViewPayload } from '../../protocol';
import { CellError, type PromptsValue, type RunContext } from '../state';
import { embedNotes, embedSet, emptyView, fmtSeconds, labelsFor, stackFeatures, useClasses, useDatasets, useModel, usePrompts, type Embedded } from './common';

type Values = Record<string, unknown>;

function mixIndices(mix: PromptMix | undefined): number[] | undefined {
  return mix?.kind === 'single' ? [mix.index] : mix?.kind === 'subset' ? [...mix.indices] : undefined;
}

/** The pool a cell ablates: `pool:` (learned or a template list), else its prompts cell's pool. */
export function poolFor(pool: unknown, prompts: PromptsValue | undefined): AblationPool {
  if (pool === 'learned') return { kind: 'learned' };
  if (Array.isArray(pool)) return { kind: 'templates', templates: pool as string[] };
  if (prompts?.no.kind === 'handcrafted') return { kind: 'templates', templates: prompts.no.templates, tower: prompts.no.tower, mix: prompts.no.mix };
  return { kind: 'learned', indices: prompts?.no.kind === 'learned' ? mixIndices(prompts.no.mix) : undefined };
}

const q = (s: string) => JSON.stringify(s);

/** A prompts cell holding the best subset, ready to paste or insert. */
export function bestSubsetCell(result: AblationResult, pool: AblationPool, templates: readonly string[] | undefined, name: string): string | undefined {
  const best = result.greedy.best;
  if (!best) return undefined;
  const lines = ['prompts:', `  name: ${name}`];
  if (templates) lines.push(`  templates: [${templates.map(q).join(', ')}]`);
  lines.push('  no:');
  if (pool.kind === 'learned') {
    const indices = best.prompts.map((p) => (pool.indices ? pool.indices[p] : p));
    lines.push(`    learned: [${indices.join(', ')}]`);
  } else {
    lines.push('    templates:', ...best.prompts.map((p) => `      - ${q(pool.templates[p])}`));
    if (pool.tower === 'yes') lines.push('    tower: yes');
  }
  return lines.join('\n') + '\n';
}

const pct = (x: number) => x * 100;
const metricCells = (m: ScoreMetrics): TableCell[] => [pct(m.auroc), pct(m.fpr95), pct(m.auprIn), pct(m.auprOut)];
const METRIC_COLUMNS = (prefix: string) => [
  { label: `${prefix} AUROC`, digits: 2, best: 'max' as const },
  { label: `${prefix} FPR95`, digits: 2, best: 'min' as const },
  { label: `${prefix} AUPR-In`, digits: 2, best: 'max' as const },
  { label: `${prefix} AUPR-Out`, digits: 2, best: 'max' as const },
];
const CHANGE_COLUMNS = (prefix: string) => [
  { label: `Δ ${prefix} AUROC`, digits: 2, best: 'max' as const },
  { label: `Δ ${prefix} FPR95`, digits: 2, best: 'min' as const },
  { label: `Δ ${prefix} AUPR-In`, digits: 2, best: 'max' as const },
  { label: `Δ ${prefix} AUPR-Out`, digits: 2, best: 'max' as const },
];

function objectiveOf(row: Pick<AblationRow, 'change' | 'metrics'>, o: AblationObjective, which: 'change' | 'metrics'): number {
  return row[which][o.score][o.metric];
}

export async function runAblation(ctx: RunContext, v: Values, name: string): Promise<ViewPayload> {
  const start = performance.now();
  const m = await useModel(ctx, v.model);
  const [idSet] = useDatasets(ctx, v.id, 'id');
  const oodSets = useDatasets(ctx, v.ood, 'ood');
  if (oodSets.includes(idSet)) throw new CellError(`ood: ${JSON.stringify(idSet.name)} is the ID set; choose other image sets for OOD`);
  const classes = useClasses(ctx, v.classes, idSet);
  const prompts = usePrompts(ctx, v.prompts);
  const pool = poolFor(v.pool, prompts);
  const [score, metric] = ((v.objective as string | undefined) ?? 'atd-auroc').split('-') as [AblationObjective['score'], AblationObjective['metric']];
  const idEmb = await embedSet(ctx, m, idSet);
  const oodEmb: Embedded[] = [];
  for (const s of oodSets) oodEmb.push(await embedSet(ctx, m, s));
  const d = m.model.embedDim;
  const oodFeatures = stackFeatures(oodEmb, d);
  const result = await ablateNoPool({
    model: m.model,
    classes,
    yesTemplates: prompts?.templates,
    idFeatures: idEmb.features,
    idN: idEmb.dims[0],
    oodFeatures,
    oodN: oodFeatures.length / d,
    idLabels: labelsFor(idEmb, classes),
    pool,
    objective: v.objective === undefined ? undefined : { score, metric },
    greedySteps: v.greedy as number | undefined,
    memo: ctx.state.ablationMemo,
    signal: ctx.signal,
    onProgress: (p) => ctx.progress(`ablation: ${p.phase} ${p.done}/${p.total}`, p.done, p.total),
  }).catch((err: Error) => {
    if (ctx.signal.aborted) throw err;
    throw new CellError(err.message);
  });
  const o = result.objective;
  const oLabel = `${o.score.toUpperCase()} ${o.metric === 'auroc' ? 'AUROC' : 'FPR95'}`;
  const kindWord = pool.kind === 'learned' ? 'learned prompts' : 'hand-written templates';

  const view = emptyView('ablation', `"No" pool ablation ${name}: ${result.prompts.length} ${kindWord}; ${idSet.name} (ID) vs ${oodSets.map((s) => s.name).join(' + ')}`);
  view.blocks.push({
    type: 'table',
    title: 'Full pool (%)',
    columns: [{ label: 'pool' }, ...METRIC_COLUMNS('CTW'), ...METRIC_COLUMNS('ATD')],
    rows: [[`all ${result.prompts.length}`, ...metricCells(result.full.ctw), ...metricCells(result.full.atd)]],
    caption: 'FPR95 interpolated (CLIPN). Changes below are in points of % against this row.',
  });

  // Sorted by what leaving the prompt out costs: the prompts the pool can least do without first.
  const order = result.leaveOneOut.length
    ? [...result.leaveOneOut].sort((a, b) => (o.metric === 'auroc' ? objectiveOf(a, o, 'change') - objectiveOf(b, o, 'change') : objectiveOf(b, o, 'change') - objectiveOf(a, o, 'change')) || a.prompt - b.prompt).map((r) => r.prompt)
    : result.alone.map((r) => r.prompt);
  const label = (p: number) => result.prompts[p];
  const bars: FigureTrace[] = [];
  if (result.leaveOneOut.length) {
    bars.push({ type: 'bar', orientation: 'h', name: 'pool without it', y: order.map(label), x: Float32Array.from(order, (p) => pct(objectiveOf(result.leaveOneOut.find((r) => r.prompt === p)!, o, 'change'))), colorIndex: 3 });
  }
  bars.push({ type: 'bar', orientation: 'h', name: 'it alone', y: order.map(label), x: Float32Array.from(order, (p) => pct(objectiveOf(result.alone.find((r) => r.prompt === p)!, o, 'change'))), colorIndex: 0 });
  view.blocks.push({
    type: 'figure',
    title: `Change in ${oLabel} against the full pool (points of %)`,
    figure: { data: bars, layout: { xTitle: `Δ ${oLabel} (${o.metric === 'auroc' ? 'higher' : 'lower'} is better)`, barmode: 'group' }, height: Math.min(900, 140 + 26 * result.prompts.length) },
  });

  view.blocks.push({
    type: 'table',
    title: 'Each prompt alone (%)',
    columns: [{ label: 'prompt' }, ...METRIC_COLUMNS('CTW'), ...METRIC_COLUMNS('ATD')],
    rows: result.alone.map((r) => [label(r.prompt), ...metricCells(r.metrics.ctw), ...metricCells(r.metrics.atd)]),
  });
  if (result.leaveOneOut.length) {
    view.blocks.push({
      type: 'table',
      title: 'The pool without each prompt: change against the full pool (points of %)',
      columns: [{ label: 'left out' }, ...CHANGE_COLUMNS('CTW'), ...CHANGE_COLUMNS('ATD')],
      rows: result.leaveOneOut.map((r) => [label(r.prompt), ...metricCells(r.change.ctw), ...metricCells(r.change.atd)]),
    });
  }
  if (result.greedy.steps.length) {
    view.blocks.push({
      type: 'table',
      title: `Greedy forward selection on ${oLabel} (%)`,
      columns: [{ label: 'step' }, { label: 'added' }, { label: 'prompts' }, { label: oLabel, digits: 2, best: o.metric === 'auroc' ? 'max' : 'min' }, { label: 'CTW AUROC', digits: 2 }, { label: 'ATD AUROC', digits: 2 }, { label: 'ATD FPR95', digits: 2 }],
      rows: result.greedy.steps.map((s) => [s.step, label(s.added), s.prompts.length, pct(s.objective), pct(s.metrics.ctw.auroc), pct(s.metrics.atd.auroc), pct(s.metrics.atd.fpr95)]),
      caption: `Stopped: ${result.greedy.stopped.replace(/-/g, ' ')}. Full pool: ${oLabel} ${pct(result.full[o.score][o.metric]).toFixed(2)}.`,
    });
  }
  const cell = bestSubsetCell(result, pool, prompts?.templates, `${name}_best`);
  if (cell && result.greedy.best) {
    const b = result.greedy.best;
    view.blocks.push({ type: 'snippet', title: `Best subset found (${b.prompts.length} of ${result.prompts.length}; ${oLabel} ${pct(b.metrics[o.score][o.metric]).toFixed(2)}): as a prompts cell`, text: cell });
  }
  view.notes.push(
    ...result.notes,
    `Text: ${result.counts.textPrompts} prompts encoded in ${fmtSeconds(result.seconds.text)}; ${result.counts.variantsScored} variants scored in ${fmtSeconds(result.seconds.rows + result.seconds.greedy)}${result.counts.variantsFromMemo > 0 ? ` (${result.counts.variantsFromMemo} unchanged since an earlier run, not scored again)` : ''}; ${fmtSeconds((performance.now() - start) / 1000)} in all.`,
    ...embedNotes([idEmb, ...oodEmb]),
  );
  ctx.state.defs.define({ name, kind: 'ablation', cell: ctx.cellNumber, value: { full: result.full, best: result.greedy.best?.prompts } });
  return view;
}
