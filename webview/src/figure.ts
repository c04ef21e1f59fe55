// Figures: the protocol's FigureSpec turned into plotly traces and a layout in the editor's
// theme colours. plotly.js (4.7 MB) is bundled (never a CDN: outputs must draw offline) and
// imported only when the first figure is drawn. Every string from the payload is escaped as
// HTML entities before plotly sees it, because plotly interprets a subset of HTML in texts.
import type { FigureSpec, FigureTrace } from '../../extension/protocol';
import { attachInteractions, type PlotElement } from './interact';

type Plotly = typeof import('plotly.js-dist-min').default;
let plotly: Promise<Plotly> | undefined;

function loadPlotly(): Promise<Plotly> {
  plotly ??= import('plotly.js-dist-min').then((m) => (m as unknown as { default: Plotly }).default ?? (m as unknown as Plotly));
  return plotly;
}

/**
 * Entities plotly decodes back to characters: data shows as text and is never markup. Only
 * & < > matter (plotly's pseudo-HTML needs a `<` to start a tag); plotly does not decode
 * `&quot;`, so quotes stay as they are.
 */
export function escapePlotly(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export type ThemeKind = 'vscode-light' | 'vscode-dark' | 'vscode-high-contrast' | 'vscode-high-contrast-light';

export function themeKind(): ThemeKind {
  const k = document.body.dataset.vscodeThemeKind;
  return k === 'vscode-dark' || k === 'vscode-high-contrast' || k === 'vscode-high-contrast-light' ? k : 'vscode-light';
}

function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.body).getPropertyValue(name).trim() || fallback;
}

interface Theme {
  fg: string;
  /** Mid-point of diverging colour scales. */
  neutral: string;
  grid: string;
  palette: string[];
  lineWidth: number;
  font: string;
}

/** Colours from VS Code's chart tokens, so figures match light, dark and high-contrast themes. */
function theme(): Theme {
  const kind = themeKind();
  const dark = kind === 'vscode-dark' || kind === 'vscode-high-contrast';
  const hc = kind.startsWith('vscode-high-contrast');
  const fg = cssVar('--vscode-editor-foreground', dark ? '#cccccc' : '#333333');
  const palette = [
    cssVar('--vscode-charts-blue', dark ? '#3794ff' : '#1a85ff'),
    cssVar('--vscode-charts-orange', '#d18616'),
    cssVar('--vscode-charts-green', dark ? '#89d185' : '#388a34'),
    cssVar('--vscode-charts-red', dark ? '#f14c4c' : '#e51400'),
    cssVar('--vscode-charts-purple', '#b180d7'),
    cssVar('--vscode-charts-yellow', dark ? '#cca700' : '#bf8803'),
    dark ? '#4ec9b0' : '#16825d',
    cssVar('--vscode-charts-lines', dark ? '#7f7f7f' : '#a0a0a0'),
  ];
  return {
    fg,
    neutral: dark ? '#3c3c3c' : '#f2f2f2',
    grid: hc ? fg : cssVar('--vscode-charts-lines', dark ? 'rgba(255,255,255,0.15)' : 'rgba(0,0,0,0.12)'),
    palette,
    lineWidth: hc ? 3 : 2,
    font: cssVar('--vscode-font-family', 'sans-serif'),
  };
}

const escList = (v: unknown) => (Array.isArray(v) ? v.map((s) => (typeof s === 'string' ? escapePlotly(s) : s)) : v);

function toPlotlyTrace(t: FigureTrace, th: Theme): Record<string, unknown> {
  const color = th.palette[(t.colorIndex ?? 0) % th.palette.length];
  const out: Record<string, unknown> = { type: t.type, x: escList(t.x), y: escList(t.y) };
  if (t.name !== undefined) out.name = escapePlotly(t.name);
  if (t.mode) out.mode = t.mode;
  if (t.text) out.text = escList(t.text);
  // Templates come from the kernel's code, not from data; plotly sanitises their markup.
  if (t.hovertemplate) out.hovertemplate = t.hovertemplate;
  if (t.orientation) out.orientation = t.orientation;
  if (t.opacity !== undefined) out.opacity = t.opacity;
  if (t.nbinsx) out.nbinsx = t.nbinsx;
  if (t.histnorm !== undefined) out.histnorm = t.histnorm;
  if (t.showlegend !== undefined) out.showlegend = t.showlegend;
  if (t.z) {
    out.z = t.z.map((row) => Array.from(row));
    out.colorscale = [[0, th.palette[0]], [0.5, th.neutral], [1, th.palette[3]]];
    out.colorbar = { outlinewidth: 0, tickfont: { color: th.fg } };
  }
  if (t.z3) out.z = t.z3;
  if (t.type === 'scatter' || t.type === 'scattergl' || t.type === 'scatter3d') {
    out.line = { color, width: th.lineWidth, dash: t.dash ?? 'solid' };
    const size = t.markerSize ?? (t.type === 'scatter3d' ? 3 : 6);
    out.marker = t.color
      ? // A score on a continuous scale: blue (low, OOD-like) to red (high), with its colour bar.
        { color: t.color, size, colorscale: [[0, th.palette[0]], [0.5, th.neutral], [1, th.palette[3]]], showscale: true, colorbar: { title: { text: escapePlotly(t.colorTitle ?? '') }, outlinewidth: 0, tickfont: { color: th.fg } } }
      : { color, size };
  } else if (t.type === 'bar' || t.type === 'histogram') {
    out.marker = { color };
  }
  return out;
}

function layoutFor(spec: FigureSpec, th: Theme): Record<string, unknown> {
  const axis = (title: string | undefined, range?: [number, number]) => ({
    title: title ? { text: escapePlotly(title) } : undefined,
    gridcolor: th.grid,
    zerolinecolor: th.grid,
    linecolor: th.fg,
    range,
    automargin: true,
  });
  const l = spec.layout;
  const layout: Record<string, unknown> = {
    paper_bgcolor: 'rgba(0,0,0,0)',
    plot_bgcolor: 'rgba(0,0,0,0)',
    font: { color: th.fg, family: th.font, size: 12 },
    margin: { l: 56, r: 16, t: 12, b: 48 },
    height: spec.height ?? 320,
    xaxis: axis(l.xTitle, l.xRange),
    yaxis: { ...axis(l.yTitle, l.yRange), ...(l.equalAxes ? { scaleanchor: 'x', scaleratio: 1 } : {}) },
    legend: { bgcolor: 'rgba(0,0,0,0)' },
    hoverlabel: { namelength: -1 },
  };
  if (l.barmode) layout.barmode = l.barmode;
  if (spec.data.some((t) => t.type === 'scatter3d')) {
    const a3 = (title?: string) => ({ title: title ? { text: escapePlotly(title) } : undefined, gridcolor: th.grid, zerolinecolor: th.grid, color: th.fg, backgroundcolor: 'rgba(0,0,0,0)' });
    layout.scene = { xaxis: a3(l.xTitle), yaxis: a3(l.yTitle), zaxis: a3(l.zTitle), aspectmode: l.equalAxes ? 'data' : 'auto' };
    layout.margin = { l: 0, r: 0, t: 0, b: 0 };
  }
  // Selectable figures start in lasso mode: selecting images is what they are for.
  if (spec.selectable) layout.dragmode = 'lasso';
  // A colour bar takes the right margin: the legend goes below the plot.
  if (spec.data.some((t) => t.color)) layout.legend = { bgcolor: 'rgba(0,0,0,0)', orientation: 'h', y: -0.18 };
  if (spec.images) layout.hovermode = 'closest';
  return layout;
}

const live = new Map<HTMLElement, FigureSpec>();

/** Draws (or redraws, on a theme change) a figure into `el`. */
export async function drawFigure(el: HTMLElement, spec: FigureSpec): Promise<void> {
  const Plotly = await loadPlotly();
  const th = theme();
  live.set(el, spec);
  el.dataset.theme = themeKind();
  await Plotly.react(el, spec.data.map((t) => toPlotlyTrace(t, th)), layoutFor(spec, th), {
    displaylogo: false,
    responsive: true,
    // Never fetch anything: no MathJax, no topojson, no "edit in chart studio".
    showLink: false,
    showSendToCloud: false,
    typesetMath: false,
    // The wheel scrolls the notebook, never zooms a plot under the pointer (3-D scenes would).
    scrollZoom: false,
  });
  attachInteractions(el as PlotElement, spec);
}

export function disposeFigures(root: HTMLElement): void {
  for (const el of [...live.keys()]) {
    if (root.contains(el)) {
      live.delete(el);
      void loadPlotly().then((P) => P.purge(el));
    }
  }
}

let observing = false;
/** Redraws every live figure when VS Code switches theme (it sets a data attribute on <body>). */
export function followTheme(): void {
  if (observing) return;
  observing = true;
  new MutationObserver(() => {
    for (const [el, spec] of live) {
      if (!el.isConnected) live.delete(el);
      else if (el.dataset.theme !== themeKind()) void drawFigure(el, spec);
    }
  }).observe(document.body, { attributes: true, attributeFilter: ['data-vscode-theme-kind', 'class'] });
}
