// Point interactions on figures that carry `images`: a hover card with the thumbnail, a click
// that opens the image, and a box/lasso selection panel that lists the selected images and
// saves them as a file list or a CSV (with the figure's extra columns: set, class, scores).
import type { FigureImages, FigureSpec } from '../../extension/protocol';
import { act, canMessage } from './host';

interface PlotPoint {
  curveNumber: number;
  pointNumber?: number;
  pointIndex?: number;
}

interface PlotEvent {
  points?: PlotPoint[];
  event?: MouseEvent;
}

/** The element plotly returns, with its event emitter. */
export interface PlotElement extends HTMLElement {
  on?(event: string, handler: (e: PlotEvent) => void): void;
  removeAllListeners?(event: string): void;
}

function imageOf(spec: FigureSpec, p: PlotPoint): number {
  const idx = spec.data[p.curveNumber]?.image;
  const i = p.pointNumber ?? p.pointIndex ?? -1;
  return idx && i >= 0 && i < idx.length ? idx[i] : -1;
}

const dataUrls = new WeakMap<FigureImages, Map<number, string>>();

/** The thumbnail of image i as a data: URL (webview CSPs allow data: images). */
export function thumbUrl(images: FigureImages, i: number): string | undefined {
  if (!images.thumbs || !images.thumbOffsets) return undefined;
  const start = images.thumbOffsets[i];
  const end = images.thumbOffsets[i + 1];
  if (start === undefined || end === undefined || end <= start) return undefined;
  let cache = dataUrls.get(images);
  if (!cache) dataUrls.set(images, (cache = new Map()));
  const hit = cache.get(i);
  if (hit) return hit;
  const bytes = images.thumbs.subarray(start, end);
  let bin = '';
  for (let k = 0; k < bytes.length; k += 0x8000) bin += String.fromCharCode(...bytes.subarray(k, k + 0x8000));
  const url = `data:image/jpeg;base64,${btoa(bin)}`;
  cache.set(i, url);
  return url;
}

function csvField(v: string): string {
  return /[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** CSV of the selected images: path, label, then the figure's extra columns. */
export function selectionCsv(images: FigureImages, selected: readonly number[]): string {
  const cols = images.columns ?? [];
  const lines = [['path', 'label', ...cols.map((c) => c.name)].map(csvField).join(',')];
  for (const i of selected) {
    lines.push([images.paths[i], images.labels[i] ?? '', ...cols.map((c) => String(c.values[i] ?? ''))].map(csvField).join(','));
  }
  return lines.join('\n') + '\n';
}

function hoverCard(box: HTMLElement): HTMLDivElement {
  let card = box.querySelector<HTMLDivElement>(':scope > .clipn-hover');
  if (!card) {
    card = document.createElement('div');
    card.className = 'clipn-hover';
    card.hidden = true;
    box.append(card);
  }
  return card;
}

function selectionPanel(box: HTMLElement, images: FigureImages, selected: number[]): void {
  let panel = box.parentElement?.querySelector<HTMLDivElement>(':scope > .clipn-selection');
  if (!panel) {
    panel = document.createElement('div');
    panel.className = 'clipn-selection';
    box.after(panel);
  }
  panel.replaceChildren();
  if (selected.length === 0) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  const head = document.createElement('div');
  head.className = 'clipn-selection-head';
  head.textContent = `${selected.length} image${selected.length === 1 ? '' : 's'} selected`;
  const save = (format: 'csv' | 'list') => () =>
    act({
      type: 'saveSelection',
      format,
      suggestedName: format === 'csv' ? 'selection.csv' : 'selection.txt',
      content: format === 'csv' ? selectionCsv(images, selected) : selected.map((i) => images.paths[i]).join('\n') + '\n',
    });
  for (const [label, fn] of [['Save file list…', save('list')], ['Save CSV…', save('csv')]] as const) {
    const b = document.createElement('button');
    b.textContent = label;
    b.addEventListener('click', fn);
    head.append(b);
  }
  panel.append(head);
  const ul = document.createElement('ul');
  ul.className = 'clipn-list';
  for (const i of selected.slice(0, 50)) {
    const li = document.createElement('li');
    li.textContent = images.labels[i] ?? images.paths[i];
    li.title = images.paths[i];
    if (canMessage()) li.addEventListener('click', () => act({ type: 'openImage', path: images.paths[i] }));
    ul.append(li);
  }
  if (selected.length > 50) {
    const more = document.createElement('li');
    more.className = 'more';
    more.textContent = `… and ${selected.length - 50} more (all are in the saved list)`;
    ul.append(more);
  }
  panel.append(ul);
}

/** Wires hover, click and selection on a drawn plot (idempotent across redraws). */
export function attachInteractions(el: PlotElement, spec: FigureSpec): void {
  const images = spec.images;
  if (!images || !el.on) return;
  for (const ev of ['plotly_hover', 'plotly_unhover', 'plotly_click', 'plotly_selected', 'plotly_deselect']) el.removeAllListeners?.(ev);
  const card = hoverCard(el);
  el.on('plotly_hover', (e) => {
    const p = e.points?.[0];
    const i = p ? imageOf(spec, p) : -1;
    if (i < 0) return;
    card.replaceChildren();
    const url = thumbUrl(images, i);
    if (url) {
      const img = document.createElement('img');
      img.className = 'clipn-thumb';
      img.src = url;
      img.alt = images.labels[i] ?? '';
      card.append(img);
    }
    const cap = document.createElement('div');
    cap.textContent = images.labels[i] ?? images.paths[i];
    card.append(cap);
    const r = el.getBoundingClientRect();
    const x = (e.event?.clientX ?? r.left) - r.left;
    const y = (e.event?.clientY ?? r.top) - r.top;
    card.style.left = `${Math.min(x + 16, r.width - 120)}px`;
    card.style.top = `${Math.max(0, y - 60)}px`;
    card.hidden = false;
  });
  el.on('plotly_unhover', () => (card.hidden = true));
  el.on('plotly_click', (e) => {
    const p = e.points?.[0];
    const i = p ? imageOf(spec, p) : -1;
    if (i >= 0) act({ type: 'openImage', path: images.paths[i] });
  });
  if (spec.selectable) {
    el.on('plotly_selected', (e) => {
      const set = new Set<number>();
      for (const p of e?.points ?? []) {
        const i = imageOf(spec, p);
        if (i >= 0) set.add(i);
      }
      selectionPanel(el, images, [...set].sort((a, b) => a - b));
    });
    el.on('plotly_deselect', () => selectionPanel(el, images, []));
  }
}
