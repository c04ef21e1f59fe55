// The one definition of everything that crosses a process or a webview boundary: the kernel
// messages (extension <-> kernel child process), the output MIME types and the payload of a
// rendered cell output. The extension, the kernel and the webview renderer all import this
// file, so a message or payload changed here is checked on every side at compile time
// (vscode-notebook-renderers' flaw was to copy these types on both sides).
//
// It imports nothing (no `vscode`, no Node modules): the webview bundles it as browser code.

// ---------------------------------------------------------------------------------------------
// MIME types

export const MIME = {
  /** A cell's result view: blocks (tables, figures, text) in the packed binary format below. */
  view: 'application/vnd.clipn.view',
  /** Plain-text summary beside every view, for Jupyter, GitHub and the text diff. */
  text: 'text/plain',
  /** VS Code's own error item (rendered by VS Code). */
  error: 'application/vnd.code.notebook.error',
  stdout: 'application/vnd.code.notebook.stdout',
  stderr: 'application/vnd.code.notebook.stderr',
} as const;

export const NOTEBOOK_TYPE = 'clipn-notebook';
export const LANGUAGE_ID = 'clipn';
export const RENDERER_ID = 'clipn-lab.renderer';
export const CONTROLLER_ID = 'clipn-lab.kernel';

/** Largest packed view one output may hold; the kernel down-samples figures to fit. */
export const OUTPUT_BUDGET_BYTES = 2 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// The output payload (a "view"): what one executed cell shows.

export type CellKind = 'model' | 'dataset' | 'classes' | 'prompts' | 'evaluate' | 'embed' | 'geometry' | 'umap' | 'ablation';

/** A numeric array in a payload; packed as raw little-endian bytes, never as a JSON list. */
export type NumericArray = Float32Array | Float64Array | Int32Array | Uint8Array;

export type Tone = 'info' | 'warning' | 'error';

export type TableCell = string | number | null;

export interface TableColumn {
  label: string;
  /** Numbers are shown with this many decimals (default: as given). */
  digits?: number;
  /** Higher is better / lower is better: the renderer marks the best value of the column. */
  best?: 'max' | 'min';
}

export type Block =
  | { type: 'text'; text: string; tone?: Tone }
  | { type: 'keyvalue'; title?: string; rows: Array<[string, string]> }
  | { type: 'table'; title?: string; columns: TableColumn[]; rows: TableCell[][]; caption?: string }
  | { type: 'list'; title: string; items: string[]; more?: number }
  | { type: 'figure'; title?: string; figure: FigureSpec }
  /** Images with captions (worst false positives / negatives); a click opens the file. */
  | { type: 'gallery'; title?: string; items: GalleryItem[] }
  /** Cell text the user can copy or insert as a new cell (e.g. the best prompt subset). */
  | { type: 'snippet'; title?: string; text: string };

export interface GalleryItem {
  label: string;
  caption?: string;
  /** Absolute path of the image (opened in the editor on click). */
  path: string;
  /** A small JPEG; absent when the image could not be read or the budget ran out. */
  thumb?: Uint8Array;
}

/**
 * The images behind a figure's points: hover shows the thumbnail, a click opens the file and a
 * box/lasso selection lists the images and saves them as a file list or CSV.
 */
export interface FigureImages {
  /** Absolute paths. */
  paths: string[];
  /** Short names shown in hover and in the selection list. */
  labels: string[];
  /** Concatenated small JPEGs; image i is thumbs[thumbOffsets[i] .. thumbOffsets[i + 1]) (empty: none). */
  thumbs?: Uint8Array;
  thumbOffsets?: Int32Array;
  /** Extra per-image columns for the CSV of a selection (set, class, scores). */
  columns?: Array<{ name: string; values: NumericArray | string[] }>;
}

/**
 * A plotly figure, limited to what the kernel emits. Numeric coordinates are NumericArrays
 * (binary on the wire). Every string is data to the renderer: it escapes them before plotly
 * sees them, except the template keys (`hovertemplate`), which the kernel writes itself and
 * plotly sanitises.
 */
export interface FigureSpec {
  data: FigureTrace[];
  layout: FigureLayout;
  /** Height in CSS pixels (default 320). */
  height?: number;
  /** The images behind the points of traces that carry `image` indices. */
  images?: FigureImages;
  /** Box and lasso selection list the selected images (needs `images`). */
  selectable?: boolean;
}

export interface FigureTrace {
  type: 'scatter' | 'scattergl' | 'scatter3d' | 'bar' | 'histogram' | 'heatmap';
  name?: string;
  mode?: 'lines' | 'markers' | 'lines+markers';
  x?: NumericArray | string[];
  y?: NumericArray | string[];
  /** Heatmap rows. */
  z?: NumericArray[];
  /** Third coordinate of `scatter3d` points. */
  z3?: NumericArray;
  /** Per point: index into the figure's `images` (-1: none). */
  image?: Int32Array;
  /** Per point: a value coloured on a continuous scale (a score), with its colour-bar title. */
  color?: NumericArray;
  colorTitle?: string;
  text?: string[];
  hovertemplate?: string;
  orientation?: 'v' | 'h';
  opacity?: number;
  nbinsx?: number;
  histnorm?: '' | 'probability density';
  /** Index into the theme's colour cycle, so colours follow light/dark/high-contrast. */
  colorIndex?: number;
  markerSize?: number;
  dash?: 'solid' | 'dash' | 'dot';
  showlegend?: boolean;
}

export interface FigureLayout {
  xTitle?: string;
  yTitle?: string;
  xRange?: [number, number];
  yRange?: [number, number];
  barmode?: 'overlay' | 'group' | 'stack';
  /** Equal x and y scale (projections). */
  equalAxes?: boolean;
  /** Title of the third axis (3-D scatter). */
  zTitle?: string;
}

export interface ViewPayload {
  version: 1;
  kind: CellKind;
  title: string;
  blocks: Block[];
  /** Said under the view: down-sampling, skipped files, the provider that ran. */
  notes: string[];
}

// ---------------------------------------------------------------------------------------------
// Renderer -> extension messages (notebook renderer messaging). Each is a user's click; the
// extension asks before writing anything (save dialog) and only opens files for viewing.

export type FromRenderer =
  | { type: 'openImage'; path: string }
  | { type: 'saveSelection'; format: 'csv' | 'list'; suggestedName: string; content: string }
  | { type: 'insertCell'; text: string };

export function isFromRenderer(value: unknown): value is FromRenderer {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  switch (v.type) {
    case 'openImage':
      return typeof v.path === 'string';
    case 'saveSelection':
      return (v.format === 'csv' || v.format === 'list') && typeof v.suggestedName === 'string' && typeof v.content === 'string';
    case 'insertCell':
      return typeof v.text === 'string';
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Kernel messages. Requests carry a requestId; every reply to one names it.

/** Settings the extension sends with each run (from the `clipn.*` configuration). */
export interface KernelSettings {
  modelFolder: string;
  providers: string[];
  /** Images per encoder run; 0: chosen by the provider that runs (encoder.ts imageBatchFor). */
  batchSize: number;
  threads: number;
  cacheFolder: string;
}

export interface RunRequest {
  type: 'run';
  requestId: number;
  /** The cell's text (the clipn language). */
  source: string;
  /** Relative paths in the cell resolve against this folder (the notebook's). */
  baseDir: string;
  /** 1-based position of the cell, for messages. */
  cellNumber: number;
  settings: KernelSettings;
}

export type ToKernel =
  | RunRequest
  | { type: 'cancel'; requestId: number }
  | { type: 'clearCache'; requestId: number; cacheFolder: string }
  | { type: 'shutdown' };

/** Where in the cell an error is, 1-based (line/column of the cell's text). */
export interface SourcePosition {
  line: number;
  column: number;
}

export interface RunResult {
  type: 'result';
  requestId: number;
  /** Packed ViewPayload (see packPayload). */
  view: Uint8Array;
  /** Plain-text summary for the text/plain item. */
  text: string;
  /** Names this cell defined in the kernel. */
  defined: string[];
}

export interface RunError {
  type: 'error';
  requestId: number;
  /** 'invalid': the cell text; 'cancelled': interrupted; 'failed': the computation. */
  reason: 'invalid' | 'cancelled' | 'failed';
  message: string;
  position?: SourcePosition;
}

export type FromKernel =
  | { type: 'ready'; pid: number }
  | { type: 'progress'; requestId: number; message: string; done?: number; total?: number }
  | RunResult
  | RunError
  | { type: 'cacheCleared'; requestId: number; removed: number }
  | { type: 'log'; message: string };

/** Narrowing guard for messages arriving over IPC (they are untyped at runtime). */
export function isFromKernel(value: unknown): value is FromKernel {
  return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string';
}

export { packPayload, unpackPayload, PayloadError } from './codec';
