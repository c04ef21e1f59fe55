// `embed:` — encodes image sets through the disk cache and shows a 2-D PCA of the embeddings,
// coloured by set (and class for labelled sets). The PCA (engine/analysis/pca.ts) is exact and
// deterministic: the same data always gives the same figure.
import { principalAxes } from '../../engine/analysis/pca';
import type { FigureTrace, TableCell, ViewPayload } from '../../protocol';
import type { RunContext } from '../state';
import { embedNotes, embedSet, emptyView, fmtSeconds, useDatasets, useModel, type Embedded } from './common';

type Values = Record<string, unknown>;

export async function runEmbed(ctx: RunContext, v: Values, name: string): Promise<ViewPayload> {
  const start = performance.now();
  const m = await useModel(ctx, v.model);
  const sets = useDatasets(ctx, v.dataset, 'dataset');
  const done: Embedded[] = [];
  for (const s of sets) done.push(await embedSet(ctx, m, s));

  const d = m.model.embedDim;
  const total = done.reduce((a, e) => a + e.dims[0], 0);
  const all = new Float32Array(total * d);
  let off = 0;
  for (const e of done) (all.set(e.features, off * d), (off += e.dims[0]));
  ctx.progress('projecting (PCA)');
  const { mean, axes } = principalAxes(all, total, d);

  // ID classes take the first six theme colours; OOD sets the neutral ones, so they stand apart.
  const traces: FigureTrace[] = [];
  let row = 0;
  let color = 0;
  let oodColor = 0;
  for (const e of done) {
    // One trace per class for labelled sets, so the legend toggles classes.
    const groups = new Map<string, number[]>();
    e.indices.forEach((itemIndex, r) => {
      const it = e.set.dataset.items[itemIndex];
      const key = `${e.set.name}${it.className !== undefined && e.set.role === 'id' ? `/${it.className}` : ''}`;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key)!.push(row + r);
    });
    for (const [key, rows] of groups) {
      const xs = new Float32Array(rows.length);
      const ys = new Float32Array(rows.length);
      const text: string[] = [];
      rows.forEach((r, i) => {
        let px = 0;
        let py = 0;
        for (let j = 0; j < d; j++) {
          const c = all[r * d + j] - mean[j];
          px += c * axes[0][j];
          py += c * axes[1][j];
        }
        xs[i] = px;
        ys[i] = py;
        const local = r - row;
        text.push(e.set.dataset.items[e.indices[local]]?.path.split(/[\\/]/).pop() ?? '');
      });
      traces.push({ type: total > 2000 ? 'scattergl' : 'scatter', mode: 'markers', name: key, x: xs, y: ys, text, hovertemplate: '%{text}<extra>%{fullData.name}</extra>', colorIndex: e.set.role === 'ood' ? 7 - (oodColor++ % 2) : color++ % 6, markerSize: 6 });
    }
    row += e.dims[0];
  }

  const view = emptyView('embed', `Embeddings ${name}: ${total} images, ${d} dimensions`);
  const rows: TableCell[][] = done.map((e) => [e.set.name, e.set.role.toUpperCase(), e.dims[0], e.fromCache, e.encoded, e.failures.length, fmtSeconds(e.seconds)]);
  view.blocks.push({
    type: 'table',
    columns: [{ label: 'image set' }, { label: 'role' }, { label: 'embedded' }, { label: 'from cache' }, { label: 'encoded' }, { label: 'failed' }, { label: 'time' }],
    rows,
  });
  view.blocks.push({ type: 'figure', title: 'PCA of the image embeddings', figure: { data: traces, layout: { xTitle: 'PC 1', yTitle: 'PC 2', equalAxes: true }, height: 400 } });
  const failures = done.flatMap((e) => e.failures.map((f) => `${f.file}: ${f.reason}`));
  if (failures.length) view.blocks.push({ type: 'list', title: `${failures.length} images could not be used`, items: failures.slice(0, 20), more: failures.length > 20 ? failures.length - 20 : undefined });
  view.notes.push(...embedNotes(done), `${fmtSeconds((performance.now() - start) / 1000)} in all.`);
  ctx.state.defs.define({ name, kind: 'embed', cell: ctx.cellNumber, value: { sets: sets.map((s) => s.name), rows: total } });
  return view;
}
