// `geometry:` — how the "yes" and "no" text features of the ID classes sit relative to each
// other (per-class cosines for the ensemble and per prompt, the yes-vs-no similarity heatmap,
// 2-D and 3-D PCA with each class's pair linked) and, given image sets, where each image falls
// between its predicted class's yes and no features, with CTW's boundary (cos no = cos yes).
import { imageGeometry, textGeometry, type TextGeometry } from '../../engine/analysis/geometry';
import type { Pca } from '../../engine/analysis/pca';
import { promptWeights } from '../../engine/encoder';
import { classPrompts, ensembleByClass, noFeaturesForMixes, type ClassFeatures, type FeatureMatrix } from '../../engine/prompts';
import type { FigureTrace, TableCell, ViewPayload } from '../../protocol';
import type { ModelValue, PromptsValue, RunContext } from '../state';
import { embedNotes, embedSet, emptyView, fmtSeconds, stackFeatures, useClasses, useDatasets, useModel, usePrompts, textCutNotes, useTextFeatures, type Embedded } from './common';
import { figureImages, pointRows } from './points';

type Values = Record<string, unknown>;

/** Per-prompt "no" features: each learned prompt alone, or each hand-written template alone. */
async function perPromptNo(ctx: RunContext, m: ModelValue, classes: readonly string[], prompts: PromptsValue | undefined, text: ClassFeatures): Promise<{ labels: string[]; no: FeatureMatrix[] }> {
  const d = m.model.embedDim;
  if (prompts?.no.kind === 'handcrafted') {
    const t = text.noTemplates.length;
    if (t < 2) return { labels: [], no: [] };
    const raw = prompts.no.tower === 'yes'
      ? await m.model.encodeTexts(classPrompts(classes, text.noTemplates), { signal: ctx.signal })
      : await m.model.encodeClassPromptsNo(classes, text.noTemplates, [prompts.no.mix ?? promptWeights.none()], { signal: ctx.signal });
    return { labels: [...text.noTemplates], no: text.noTemplates.map((_, k) => ensembleByClass(raw.data, d, classes.length, t, [k])) };
  }
  const p = m.model.numPrompts;
  const mixes = Array.from({ length: p }, (_, i) => promptWeights.single(i));
  const no = await noFeaturesForMixes(m.model, classes, mixes, { templates: text.templates, signal: ctx.signal, batchSize: 256 });
  return { labels: mixes.map((_, i) => `learned #${i}`), no };
}

/** Per template (yes and no towers fed the same template): only when both sides share templates. */
async function perTemplate(ctx: RunContext, m: ModelValue, classes: readonly string[], prompts: PromptsValue | undefined, text: ClassFeatures): Promise<Array<{ yes: FeatureMatrix; no: FeatureMatrix }>> {
  if (prompts?.no.kind === 'handcrafted' || text.templates.length < 2) return [];
  const d = m.model.embedDim;
  const t = text.templates.length;
  const prompted = classPrompts(classes, text.templates);
  const yes = await m.model.encodeTexts(prompted, { signal: ctx.signal });
  const no = await m.model.encodeClassPromptsNo(classes, text.templates, [prompts?.no.kind === 'learned' && prompts.no.mix ? prompts.no.mix : promptWeights.mean()], { signal: ctx.signal });
  return text.templates.map((_, k) => ({ yes: ensembleByClass(yes.data, d, classes.length, t, [k]), no: ensembleByClass(no.data, d, classes.length, t, [k]) }));
}

/** Points of a PCA, with NaN-separated segments linking each class's yes and no points. */
function pcaTraces(g: TextGeometry, p: Pca, classes: readonly string[], three: boolean): FigureTrace[] {
  const k = p.k;
  const c = classes.length;
  const coord = (row: number, axis: number) => p.coords[row * k + axis];
  const side = (first: number, name: string, colorIndex: number): FigureTrace => ({
    type: three ? 'scatter3d' : 'scatter',
    mode: 'markers',
    name,
    x: Float32Array.from({ length: c }, (_, j) => coord(first + j, 0)),
    y: Float32Array.from({ length: c }, (_, j) => coord(first + j, 1)),
    ...(three ? { z3: Float32Array.from({ length: c }, (_, j) => coord(first + j, 2)) } : {}),
    text: classes.map((cl) => `${name}: ${cl}`),
    hovertemplate: '%{text}<extra></extra>',
    colorIndex,
    markerSize: three ? 5 : 9,
  });
  const seg = (axis: number) => Float32Array.from(g.pairs.flatMap(([y, n]) => [coord(y, axis), coord(n, axis), NaN]));
  const links: FigureTrace = { type: three ? 'scatter3d' : 'scatter', mode: 'lines', name: 'class pair', x: seg(0), y: seg(1), ...(three ? { z3: seg(2) } : {}), colorIndex: 7, showlegend: true, hovertemplate: '<extra></extra>' };
  return [links, side(0, '"yes"', 0), side(c, '"no"', 3)];
}

export async function runGeometry(ctx: RunContext, v: Values, name: string): Promise<ViewPayload> {
  const start = performance.now();
  const m = await useModel(ctx, v.model);
  const sets = v.images === undefined ? [] : useDatasets(ctx, v.images, 'images');
  const classes = useClasses(ctx, v.classes, sets.find((s) => s.role === 'id'));
  const prompts = usePrompts(ctx, v.prompts);
  const text = await useTextFeatures(ctx, m, classes, prompts);
  ctx.progress('per-prompt text features');
  const perNo = await perPromptNo(ctx, m, classes, prompts, text);
  const templates = await perTemplate(ctx, m, classes, prompts, text);
  const g = textGeometry({ yes: text.yes, no: text.no, templates, learnedNo: perNo.no });
  const c = classes.length;

  const view = emptyView('geometry', `Yes/no geometry ${name}: ${c} classes, ${prompts ? prompts.description : 'the model\'s templates, mean learned "no" prompt'}`);
  const rows: TableCell[][] = classes.map((cl, j) => {
    const per = g.learnedPairCos.map((a) => a[j]);
    const tpl = g.templatePairCos.map((a) => a[j]);
    return [cl, g.pairCos[j], per.length ? Math.min(...per) : null, per.length ? per.reduce((a, b) => a + b, 0) / per.length : null, per.length ? Math.max(...per) : null, tpl.length ? tpl.reduce((a, b) => a + b, 0) / tpl.length : null];
  });
  view.blocks.push({
    type: 'table',
    title: 'cos("yes", "no") per class',
    columns: [{ label: 'class' }, { label: 'ensemble', digits: 4, best: 'min' }, { label: 'per prompt: min', digits: 4 }, { label: 'mean', digits: 4 }, { label: 'max', digits: 4 }, { label: 'per template: mean', digits: 4 }],
    rows,
    caption: `Lower = the "no" feature points further away from the "yes" feature (TSO drives it towards -1). Per prompt: ${perNo.labels.length ? `${perNo.labels.length} ${prompts?.no.kind === 'handcrafted' ? 'hand-written templates' : 'learned prompts'}, each alone` : 'a single prompt'}; per template: ${templates.length ? `${templates.length} templates through both towers` : '–'}.`,
  });
  if (perNo.labels.length) {
    view.blocks.push({
      type: 'figure',
      title: 'cos("yes", "no") per prompt and class',
      figure: { data: [{ type: 'heatmap', x: [...classes], y: perNo.labels, z: g.learnedPairCos.map((a) => Float32Array.from(a)) }], layout: { xTitle: 'class', yTitle: '"no" prompt' }, height: Math.min(600, 120 + 18 * perNo.labels.length) },
    });
  }
  view.blocks.push({
    type: 'figure',
    title: 'cos("yes" of row class, "no" of column class)',
    figure: { data: [{ type: 'heatmap', x: [...classes], y: [...classes], z: Array.from({ length: c }, (_, i) => Float32Array.from(g.similarity.subarray(i * c, (i + 1) * c))) }], layout: { xTitle: '"no" feature of class', yTitle: '"yes" feature of class' }, height: Math.min(640, 160 + 22 * c) },
  });
  const ev = (p: Pca) => Array.from(p.explainedVarianceRatio, (r) => `${(r * 100).toFixed(1)}%`).join(', ');
  view.blocks.push({ type: 'figure', title: `PCA of the "yes" and "no" text features (explained variance ${ev(g.pca2)})`, figure: { data: pcaTraces(g, g.pca2, classes, false), layout: { xTitle: 'PC 1', yTitle: 'PC 2', equalAxes: true }, height: 420 } });
  if (g.pca3) view.blocks.push({ type: 'figure', title: `3-D PCA (explained variance ${ev(g.pca3)})`, figure: { data: pcaTraces(g, g.pca3, classes, true), layout: { xTitle: 'PC 1', yTitle: 'PC 2', zTitle: 'PC 3', equalAxes: true }, height: 460 } });

  const embedded: Embedded[] = [];
  if (sets.length) {
    for (const s of sets) embedded.push(await embedSet(ctx, m, s));
    const d = m.model.embedDim;
    const n = embedded.reduce((a, e) => a + e.dims[0], 0);
    const ig = imageGeometry({ image: stackFeatures(embedded, d), n, dim: d, textYes: text.yes.data, textNo: text.no.data, classes: c });
    const prow = pointRows(embedded);
    const { images } = await figureImages(ctx, prow);
    const traces: FigureTrace[] = [];
    let row = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < n; i++) (lo = Math.min(lo, ig.cosYes[i], ig.cosNo[i])), (hi = Math.max(hi, ig.cosYes[i], ig.cosNo[i]));
    let oodColor = 0;
    embedded.forEach((e, k) => {
      const idx = Array.from({ length: e.dims[0] }, (_, r) => row + r);
      const oodCount = idx.reduce((a, i) => a + ig.ctwIsOod[i], 0);
      traces.push({
        type: n > 2000 ? 'scattergl' : 'scatter',
        mode: 'markers',
        name: `${e.set.name} (${e.set.role.toUpperCase()}): ${oodCount}/${idx.length} called OOD by CTW`,
        x: Float32Array.from(idx, (i) => ig.cosYes[i]),
        y: Float32Array.from(idx, (i) => ig.cosNo[i]),
        image: Int32Array.from(idx),
        text: idx.map((i) => `${images.labels[i]} · predicted ${classes[ig.predicted[i]]} · ${ig.ctwIsOod[i] ? 'OOD' : 'ID'} by CTW`),
        hovertemplate: '%{text}<extra></extra>',
        colorIndex: e.set.role === 'id' ? k % 6 : 7 - (oodColor++ % 2),
        markerSize: 6,
      });
      row += e.dims[0];
    });
    const pad = (hi - lo) * 0.05;
    traces.push({ type: 'scatter', mode: 'lines', name: 'CTW boundary (cos no = cos yes)', x: Float32Array.from([lo - pad, hi + pad]), y: Float32Array.from([lo - pad, hi + pad]), dash: 'dash', colorIndex: 3 });
    view.blocks.push({
      type: 'figure',
      title: 'Each image against its predicted class: cos to "yes" vs cos to "no"',
      figure: { data: traces, layout: { xTitle: 'cos(image, "yes" of predicted class)', yTitle: 'cos(image, "no" of predicted class)', equalAxes: true }, height: 440, images, selectable: true },
    });
    view.notes.push('Above the dashed line the "no" text wins: CTW calls the image OOD.', ...embedNotes(embedded));
  }
  view.notes.push(...textCutNotes(m, classes, prompts));
  view.notes.push(`Text features: ${text.provider.yes}; ${fmtSeconds((performance.now() - start) / 1000)} in all.`);
  ctx.state.defs.define({ name, kind: 'geometry', cell: ctx.cellNumber, value: { classes: c, meanPairCos: g.pairCos.reduce((a, b) => a + b, 0) / c } });
  return view;
}
