// `embed:` — encodes image sets through the disk cache and shows a 2-D PCA of the embeddings,
// coloured by set (and class for labelled sets). PCA by power iteration on the centred data
// (O(n·d) per step, no d×d covariance), from a fixed start vector: the same data always gives
// the same figure.
import type { FigureTrace, TableCell, ViewPayload } from '../../protocol';
import type { RunContext } from '../state';
import { embedNotes, embedSet, emptyView, fmtSeconds, useDatasets, useModel, type Embedded } from './common';

type Values = Record<string, unknown>;

/** The top-k principal axes of row-major x [n, d] (deterministic). */
export function principalAxes(x: Float32Array, n: number, d: number, k = 2, iterations = 100): { mean: Float64Array; axes: Float64Array[] } {
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += x[i * d + j] / n;
  const axes: Float64Array[] = [];
  const proj = new Float64Array(n);
  for (let a = 0; a < k; a++) {
    let v = new Float64Array(d).map((_, j) => 1 + ((j * 7919 + a * 104729) % 13) / 13);
    for (let it = 0; it < iterations; it++) {
      // proj = (X - mean) v ; w = (X - mean)^T proj, with earlier axes projected out.
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += (x[i * d + j] - mean[j]) * v[j];
        proj[i] = s;
      }
      const w = new Float64Array(d);
      for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) w[j] += (x[i * d + j] - mean[j]) * proj[i];
      for (const prev of axes) {
        let dot = 0;
        for (let j = 0; j < d; j++) dot += w[j] * prev[j];
        for (let j = 0; j < d; j++) w[j] -= dot * prev[j];
      }
      const norm = Math.hypot(...w);
      if (norm === 0) break;
      v = w.map((e) => e / norm);
    }
    // Sign convention: the largest component positive, so the figure does not flip.
    let big = 0;
    for (let j = 1; j < d; j++) if (Math.abs(v[j]) > Math.abs(v[big])) big = j;
    if (v[big] < 0) v = v.map((e) => -e);
    axes.push(v);
  }
  return { mean, axes };
}

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
