// Building the kernel's outputs: a ViewPayload (protocol) packed to binary, kept under the
// per-output size budget by thinning figure traces (the view then says so), plus the plain-text
// summary that Jupyter and GitHub show.
import { OUTPUT_BUDGET_BYTES, packPayload, type Block, type FigureSpec, type FigureTrace, type NumericArray, type ViewPayload } from '../protocol';

export interface PackedView {
  view: Uint8Array;
  text: string;
}

function thin<T extends NumericArray | string[]>(arr: T | undefined, step: number): T | undefined {
  if (!arr || step <= 1) return arr;
  if (Array.isArray(arr)) return arr.filter((_, i) => i % step === 0) as T;
  const typed = arr as NumericArray;
  const Ctor = typed.constructor as { new (n: number): NumericArray };
  const out = new Ctor(Math.ceil(typed.length / step));
  for (let i = 0, j = 0; i < typed.length; i += step, j++) out[j] = typed[i];
  return out as T;
}

function pointCount(t: FigureTrace): number {
  return Math.max(t.x?.length ?? 0, t.y?.length ?? 0);
}

/** Keeps every step-th point of the largest traces (ROC curves and histograms keep their shape). */
function thinFigure(fig: FigureSpec, step: number): FigureSpec {
  return {
    ...fig,
    data: fig.data.map((t) =>
      t.type === 'heatmap' || pointCount(t) < 64
        ? t
        : { ...t, x: thin(t.x, step), y: thin(t.y, step), z3: thin(t.z3, step), image: thin(t.image, step), color: thin(t.color, step), text: thin(t.text, step) },
    ),
  };
}

/** Renders the view as text: titles, key/values and tables, for the text/plain item. */
export function viewText(view: ViewPayload): string {
  const out: string[] = [view.title];
  for (const b of view.blocks) {
    if (b.type === 'text') out.push(b.text);
    else if (b.type === 'keyvalue') {
      if (b.title) out.push(b.title);
      for (const [k, v] of b.rows) out.push(`  ${k}: ${v}`);
    } else if (b.type === 'table') {
      if (b.title) out.push(b.title);
      out.push(b.columns.map((c) => c.label).join('\t'));
      for (const row of b.rows) {
        out.push(row.map((v, i) => (typeof v === 'number' && b.columns[i].digits !== undefined ? v.toFixed(b.columns[i].digits) : String(v ?? ''))).join('\t'));
      }
    } else if (b.type === 'list') {
      out.push(`${b.title}:`, ...b.items.map((i) => `  - ${i}`));
      if (b.more) out.push(`  ... and ${b.more} more`);
    } else if (b.type === 'gallery') {
      out.push(`${b.title ?? 'Images'}:`, ...b.items.map((i) => `  - ${i.label}${i.caption ? ` (${i.caption})` : ''}`));
    } else if (b.type === 'snippet') {
      if (b.title) out.push(b.title);
      out.push(b.text);
    } else if (b.type === 'figure') out.push(`[figure${b.figure && b.title ? `: ${b.title}` : ''}]`);
  }
  out.push(...view.notes);
  return out.join('\n');
}

/** The view without figure thumbnails (hover then shows the image's name only). */
function withoutThumbnails(view: ViewPayload): ViewPayload {
  return {
    ...view,
    blocks: view.blocks.map((b): Block => (b.type === 'figure' && b.figure.images?.thumbs ? { ...b, figure: { ...b.figure, images: { ...b.figure.images, thumbs: undefined, thumbOffsets: undefined } } } : b)),
    notes: [...view.notes, 'Hover thumbnails left out to keep this output small.'],
  };
}

/** Packs a view: over the budget, thumbnails go first, then figures are thinned until it fits. */
export function packView(input: ViewPayload, budget = OUTPUT_BUDGET_BYTES): PackedView {
  let view = input;
  let packed = packPayload(view);
  if (packed.length > budget && view.blocks.some((b) => b.type === 'figure' && b.figure.images?.thumbs)) {
    view = withoutThumbnails(view);
    packed = packPayload(view);
  }
  let step = 1;
  let current = view;
  while (packed.length > budget && step < 1 << 16) {
    step *= 2;
    current = {
      ...view,
      blocks: view.blocks.map((b): Block => (b.type === 'figure' ? { ...b, figure: thinFigure(b.figure, step) } : b)),
      notes: [...view.notes, `Figures down-sampled to every ${step}th point to keep this output under ${(budget / 1048576).toFixed(1)} MB.`],
    };
    packed = packPayload(current);
  }
  if (packed.length > budget) {
    current = { ...view, blocks: view.blocks.filter((b) => b.type !== 'figure' && b.type !== 'list'), notes: [...view.notes, 'Figures and lists left out: too large for one output.'] };
    packed = packPayload(current);
  }
  return { view: packed, text: viewText(current) };
}

/** Shortens a list for display, saying how many were left out. */
export function listBlock(title: string, items: readonly string[], max = 20): Block {
  return { type: 'list', title, items: items.slice(0, max), more: items.length > max ? items.length - max : undefined };
}
