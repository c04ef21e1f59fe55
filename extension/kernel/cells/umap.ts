// `umap:` — UMAP of image embeddings (the engine's exact cosine kNN, seeded layout), coloured by
// ID/OOD, class, predicted class or a score; the classes' yes/no text features can be placed in
// the same space. Points carry their images: hover shows the thumbnail, a click opens the file,
// a lasso selection lists the images and saves them.
import { scoreFeatures, type ImageScores } from '../../engine/scores';
import { projectUmap } from '../../engine/umap';
import type { ScoreName } from '../../language/schema';
import type { FigureTrace, NumericArray, ViewPayload } from '../../protocol';
import { CellError, type RunContext } from '../state';
import { embedNotes, embedSet, emptyView, fmtSeconds, stackFeatures, useClasses, useDatasets, useModel, usePrompts, useTextFeatures, type Embedded } from './common';
import { figureImages, pointRows, type PointRow } from './points';

type Values = Record<string, unknown>;
type ColorBy = 'role' | 'class' | 'predicted' | ScoreName;

const SCORE_FIELD: Record<ScoreName, keyof ImageScores> = { msp: 'msp', maxlogit: 'maxLogit', energy: 'energy', ctw: 'ctw', atd: 'atd' };
const SCORE_LABEL: Record<ScoreName, string> = { msp: 'MSP', maxlogit: 'MaxLogit', energy: 'Energy', ctw: 'CTW', atd: 'ATD' };

/** Point groups for categorical colouring: one trace per group, so the legend toggles them. */
function groupsFor(rows: readonly PointRow[], by: 'role' | 'class' | 'predicted', predicted: Int32Array | undefined, classes: readonly string[]): Map<string, number[]> {
  const groups = new Map<string, number[]>();
  rows.forEach((r, i) => {
    const key =
      by === 'role' ? `${r.set} (${r.role.toUpperCase()})` : by === 'class' ? (r.role === 'ood' ? `${r.set} (OOD)` : r.className || r.set) : `predicted ${classes[predicted![i]] ?? '?'}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push(i);
  });
  return groups;
}

function pick(arr: Float32Array, rows: readonly number[], comps: number, c: number): Float32Array {
  return Float32Array.from(rows, (r) => arr[r * comps + c]);
}

export async function runUmap(ctx: RunContext, v: Values, name: string): Promise<ViewPayload> {
  const start = performance.now();
  const m = await useModel(ctx, v.model);
  const sets = useDatasets(ctx, v.dataset, 'dataset');
  const colorBy = (v.color as ColorBy | undefined) ?? 'role';
  const withText = v.text === true;
  const dims = (v.dimensions as number | undefined) ?? 2;
  if (dims !== 2 && dims !== 3) throw new CellError(`dimensions: UMAP draws 2 or 3 dimensions, got ${dims}`);
  const needsText = withText || !(colorBy === 'role' || colorBy === 'class');
  const idSet = sets.find((s) => s.role === 'id');
  const embedded: Embedded[] = [];
  for (const s of sets) embedded.push(await embedSet(ctx, m, s));
  const d = m.model.embedDim;
  const n = embedded.reduce((a, e) => a + e.dims[0], 0);
  const features = stackFeatures(embedded, d);
  const rows = pointRows(embedded);

  // Scores (for colour, hover and the saved CSV) whenever class names are known.
  let classes: string[] = [];
  let scores: ImageScores | undefined;
  let textFeatures: Awaited<ReturnType<typeof useTextFeatures>> | undefined;
  if (needsText || idSet || ctx.state.defs.latestOf('classes')) {
    try {
      classes = useClasses(ctx, v.classes, idSet);
    } catch (err) {
      if (needsText) throw new CellError(`color: ${colorBy}${withText ? ' / text: true' : ''} needs the ID class names: ${(err as Error).message}`);
    }
    if (classes.length) {
      textFeatures = await useTextFeatures(ctx, m, classes, usePrompts(ctx, v.prompts));
      scores = scoreFeatures({ image: features, n, dim: d, textYes: textFeatures.yes.data, textNo: textFeatures.no.data, classes: classes.length });
    }
  }

  const textVectors = withText && textFeatures ? Float32Array.from([...textFeatures.yes.data, ...textFeatures.no.data]) : undefined;
  const seed = (v.seed as number | undefined) ?? 42;
  const u = await projectUmap(features, n, d, {
    nNeighbors: (v.neighbors as number | undefined) ?? 15,
    minDist: (v.min_dist as number | undefined) ?? 0.1,
    nEpochs: v.epochs as number | undefined,
    nComponents: dims,
    seed,
    textVectors,
    providers: ctx.settings.providers,
    signal: ctx.signal,
    onProgress: (e, total) => ctx.progress(`UMAP epoch ${e}/${total}`, e, total),
  }).catch((err: Error) => {
    if (ctx.signal.aborted) throw err;
    throw new CellError(`UMAP: ${err.message}`);
  });

  const { images, thumbsMade } = await figureImages(ctx, rows, scores ? { s: scores, classes } : undefined);
  const type = dims === 3 ? 'scatter3d' : n > 2000 ? 'scattergl' : 'scatter';
  const emb = u.embedding;
  const comps = u.nComponents;
  // Hover text is data (escaped by the renderer): one line, no markup.
  const hoverText = (i: number) =>
    scores ? `${images.labels[i]} · predicted ${classes[scores.predicted[i]]} · ATD ${scores.atd[i].toFixed(3)} · CTW ${scores.ctw[i].toFixed(3)} · MSP ${scores.msp[i].toFixed(3)}` : images.labels[i];
  const trace = (idx: readonly number[], extra: Partial<FigureTrace>): FigureTrace => ({
    type,
    mode: 'markers',
    x: pick(emb, idx, comps, 0),
    y: pick(emb, idx, comps, 1),
    ...(dims === 3 ? { z3: pick(emb, idx, comps, 2) } : {}),
    image: Int32Array.from(idx),
    text: idx.map(hoverText),
    hovertemplate: '%{text}<extra></extra>',
    markerSize: n > 5000 ? 4 : dims === 3 ? 3 : 6,
    ...extra,
  });
  const traces: FigureTrace[] = [];
  if (colorBy === 'role' || colorBy === 'class' || colorBy === 'predicted') {
    let color = 0;
    let ood = 0;
    for (const [key, idx] of groupsFor(rows, colorBy, scores?.predicted, classes)) {
      const isOod = colorBy !== 'predicted' && rows[idx[0]].role === 'ood';
      traces.push(trace(idx, { name: key, colorIndex: isOod ? 7 - (ood++ % 2) : color++ % 7 }));
    }
  } else {
    const values = scores![SCORE_FIELD[colorBy]] as Float64Array;
    const all = rows.map((_, i) => i);
    traces.push(trace(all, { name: `images (${SCORE_LABEL[colorBy]})`, color: Float32Array.from(values) as NumericArray, colorTitle: `${SCORE_LABEL[colorBy]} (higher = more ID)` }));
  }
  if (textVectors && textFeatures) {
    const c = classes.length;
    const at = (first: number) => Array.from({ length: c }, (_, j) => n + first + j);
    for (const [label, first, colorIndex] of [['"yes" text', 0, 2], ['"no" text', c, 4]] as const) {
      const idx = at(first);
      traces.push({
        type,
        mode: 'markers',
        name: label,
        x: pick(emb, idx, comps, 0),
        y: pick(emb, idx, comps, 1),
        ...(dims === 3 ? { z3: pick(emb, idx, comps, 2) } : {}),
        text: classes.map((k) => `${label}: ${k}`),
        hovertemplate: '%{text}<extra></extra>',
        colorIndex,
        markerSize: 12,
      });
    }
  }

  const view = emptyView('umap', `UMAP ${name}: ${n} images${textVectors ? ` + ${2 * classes.length} text features` : ''}, coloured by ${colorBy}`);
  view.blocks.push({
    type: 'figure',
    title: 'UMAP of the image embeddings (cosine)',
    figure: { data: traces, layout: { xTitle: 'UMAP 1', yTitle: 'UMAP 2', zTitle: 'UMAP 3', equalAxes: true }, height: 460, images, selectable: dims === 2 },
  });
  view.notes.push(
    `Exact cosine kNN (k = ${(v.neighbors as number | undefined) ?? 15}) on ${u.provider} in ${fmtSeconds(u.knnSeconds)}; graph ${fmtSeconds(u.graphSeconds)}; ${u.nEpochs} epochs ${fmtSeconds(u.layoutSeconds)}; seed ${seed}.`,
    `Hover a point for its image${thumbsMade < n ? ` (thumbnails for the first ${thumbsMade} of ${n} images, to keep the notebook small)` : ''}; click to open it; ${dims === 2 ? 'lasso or box-select to list and save images.' : 'drag to rotate.'}`,
    ...embedNotes(embedded),
    `${fmtSeconds((performance.now() - start) / 1000)} in all.`,
  );
  ctx.state.defs.define({ name, kind: 'umap', cell: ctx.cellNumber, value: { rows: n, seed } });
  return view;
}
