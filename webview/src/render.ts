// Turns a packed ViewPayload into DOM. Every piece of text from the payload goes through
// textContent (never innerHTML), so file, class and prompt names show as written and run
// nothing. Tables are plain HTML; figures are drawn by figure.ts.
import { PayloadError, unpackPayload, type Block, type TableColumn, type ViewPayload } from '../../extension/protocol';
import { drawFigure, followTheme } from './figure';
import { act, canMessage } from './host';
import { thumbUrl } from './interact';
import { STYLE } from './style';

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(v: string | number | null, col: TableColumn): string {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'number') return col.digits !== undefined && Number.isFinite(v) ? v.toFixed(col.digits) : String(v);
  return v;
}

function table(b: Extract<Block, { type: 'table' }>): HTMLElement {
  const wrap = el('div', 'clipn-table-wrap');
  const t = el('table', 'clipn-table');
  const head = el('tr');
  for (const c of b.columns) head.append(el('th', undefined, c.label));
  t.append(el('thead'));
  t.tHead!.append(head);
  // The best value of each ranked column is marked (per OOD set when there is such a column).
  const groupCol = b.columns.findIndex((c) => c.label === 'OOD set');
  const best = new Set<string>();
  b.columns.forEach((c, j) => {
    if (!c.best) return;
    const groups = new Map<unknown, number>();
    b.rows.forEach((r) => {
      const v = r[j];
      if (typeof v !== 'number') return;
      const g = groupCol >= 0 ? r[groupCol] : '';
      const cur = groups.get(g);
      if (cur === undefined || (c.best === 'max' ? v > cur : v < cur)) groups.set(g, v);
    });
    b.rows.forEach((r, i) => {
      const g = groupCol >= 0 ? r[groupCol] : '';
      if (typeof r[j] === 'number' && groups.get(g) === r[j]) best.add(`${i}:${j}`);
    });
  });
  const body = el('tbody');
  b.rows.forEach((r, i) => {
    const tr = el('tr');
    r.forEach((v, j) => {
      const td = el('td', typeof v === 'number' ? 'num' : undefined, fmt(v, b.columns[j] ?? { label: '' }));
      if (best.has(`${i}:${j}`)) td.classList.add('best');
      tr.append(td);
    });
    body.append(tr);
  });
  t.append(body);
  wrap.append(t);
  if (b.caption) wrap.append(el('div', 'clipn-caption', b.caption));
  return wrap;
}

function block(b: Block, pending: Array<Promise<void>>): HTMLElement {
  switch (b.type) {
    case 'text':
      return el('p', `clipn-text ${b.tone ?? 'info'}`, b.text);
    case 'keyvalue': {
      const dl = el('dl', 'clipn-kv');
      for (const [k, v] of b.rows) dl.append(el('dt', undefined, k), el('dd', undefined, v));
      return dl;
    }
    case 'table':
      return table(b);
    case 'list': {
      const ul = el('ul', 'clipn-list');
      for (const item of b.items) ul.append(el('li', undefined, item));
      if (b.more) ul.append(el('li', 'more', `… and ${b.more} more`));
      return ul;
    }
    case 'figure': {
      const box = el('div', 'clipn-figure');
      box.style.minHeight = `${b.figure.height ?? 320}px`;
      pending.push(
        drawFigure(box, b.figure).catch((err: unknown) => {
          box.textContent = `Could not draw this figure: ${(err as Error)?.message ?? String(err)}`;
        }),
      );
      return box;
    }
    case 'gallery':
      return gallery(b);
    case 'snippet':
      return snippet(b);
  }
}

function gallery(b: Extract<Block, { type: 'gallery' }>): HTMLElement {
  const grid = el('div', 'clipn-gallery');
  for (const item of b.items) {
    const fig = el('figure');
    const url = item.thumb ? thumbUrl({ paths: [item.path], labels: [item.label], thumbs: item.thumb, thumbOffsets: Int32Array.from([0, item.thumb.length]) }, 0) : undefined;
    if (url) {
      const img = el('img', 'clipn-thumb');
      img.src = url;
      img.alt = item.label;
      fig.append(img);
    } else fig.append(el('div', 'clipn-nothumb', 'no preview'));
    fig.append(el('figcaption', undefined, item.label));
    if (item.caption) fig.append(el('div', 'clipn-caption', item.caption));
    fig.title = item.path;
    if (canMessage()) {
      fig.classList.add('clickable');
      fig.addEventListener('click', () => act({ type: 'openImage', path: item.path }));
    }
    grid.append(fig);
  }
  return grid;
}

function snippet(b: Extract<Block, { type: 'snippet' }>): HTMLElement {
  const wrap = el('div', 'clipn-snippet');
  wrap.append(el('pre', undefined, b.text));
  const bar = el('div', 'clipn-snippet-bar');
  const copy = el('button', undefined, 'Copy');
  copy.addEventListener('click', () => void navigator.clipboard?.writeText(b.text).then(() => (copy.textContent = 'Copied'), () => (copy.textContent = 'Copy failed')));
  bar.append(copy);
  if (canMessage()) {
    const insert = el('button', undefined, 'Insert as new cell');
    insert.addEventListener('click', () => act({ type: 'insertCell', text: b.text }));
    bar.append(insert);
  }
  wrap.append(bar);
  return wrap;
}

function section(title: string | undefined, child: HTMLElement): HTMLElement {
  if (!title) return child;
  const s = el('section', 'clipn-section');
  s.append(el('h4', undefined, title), child);
  return s;
}

let styled = false;

/** Renders a packed view into `element`; resolves once every figure has drawn. */
export async function renderView(data: Uint8Array, element: HTMLElement): Promise<void> {
  if (!styled) {
    const style = document.createElement('style');
    style.textContent = STYLE;
    document.head.append(style);
    styled = true;
    followTheme();
  }
  element.replaceChildren();
  let view: ViewPayload;
  try {
    view = unpackPayload<ViewPayload>(data);
    if (!view || view.version !== 1 || !Array.isArray(view.blocks)) throw new PayloadError(`unsupported view version ${JSON.stringify(view?.version)}`);
  } catch (err) {
    element.append(el('div', 'clipn-error', `Cannot show this output: ${(err as Error).message}`));
    return;
  }
  const root = el('div', 'clipn-view');
  root.dataset.kind = view.kind;
  root.append(el('div', 'clipn-title', view.title));
  const pending: Array<Promise<void>> = [];
  for (const b of view.blocks) root.append(section('title' in b ? b.title : undefined, block(b, pending)));
  if (view.notes.length) {
    const notes = el('div', 'clipn-notes');
    for (const n of view.notes) notes.append(el('div', undefined, n));
    root.append(notes);
  }
  element.append(root);
  await Promise.all(pending);
}
