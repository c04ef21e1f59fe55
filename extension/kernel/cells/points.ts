// The images behind a scatter figure's points (UMAP, the geometry's image side): paths, short
// labels, thumbnails within a byte budget, and the per-image columns a saved selection holds.
import * as path from 'node:path';
import type { ImageScores } from '../../engine/scores';
import { makeThumbnails } from '../../engine/thumbnails';
import type { FigureImages } from '../../protocol';
import type { RunContext } from '../state';
import type { Embedded } from './common';

export interface PointRow {
  set: string;
  role: 'id' | 'ood';
  className: string;
  path: string;
}

/** Row r of one embedded set. */
export function pointRow(e: Embedded, r: number): PointRow {
  const it = e.set.dataset.items[e.indices[r]];
  return { set: e.set.name, role: e.set.role, className: it.className ?? '', path: path.resolve(it.path) };
}

/** One row per embedded image, in stacking order. */
export function pointRows(list: readonly Embedded[]): PointRow[] {
  return list.flatMap((e) => e.indices.map((_, r) => pointRow(e, r)));
}

/** How an image is named in hovers, selections and galleries: set/class/file. */
export function pointLabel(r: PointRow): string {
  return `${r.set}${r.className ? `/${r.className}` : ''}/${path.basename(r.path)}`;
}

/** FigureImages for the rows, with thumbnails and the scores as CSV columns. */
export async function figureImages(ctx: RunContext, rows: readonly PointRow[], scores?: { s: ImageScores; classes: readonly string[] }, budgetBytes = 600 * 1024): Promise<{ images: FigureImages; thumbsMade: number }> {
  ctx.progress('thumbnails');
  const thumbs = await makeThumbnails(rows.map((r) => r.path), { budgetBytes, signal: ctx.signal });
  const columns: NonNullable<FigureImages['columns']> = [
    { name: 'set', values: rows.map((r) => r.set) },
    { name: 'role', values: rows.map((r) => r.role) },
    { name: 'class', values: rows.map((r) => r.className) },
  ];
  if (scores) {
    columns.push(
      { name: 'predicted', values: Array.from(scores.s.predicted, (p) => scores.classes[p] ?? '') },
      { name: 'msp', values: Float32Array.from(scores.s.msp) },
      { name: 'ctw', values: Float32Array.from(scores.s.ctw) },
      { name: 'atd', values: Float32Array.from(scores.s.atd) },
    );
  }
  return {
    images: {
      paths: rows.map((r) => r.path),
      labels: rows.map(pointLabel),
      thumbs: thumbs.data,
      thumbOffsets: thumbs.offsets,
      columns,
    },
    thumbsMade: thumbs.made,
  };
}
