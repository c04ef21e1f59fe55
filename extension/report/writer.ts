// The self-contained HTML report of a notebook run: one file that opens offline in any browser.
// Markdown cells are rendered here (markdown.ts, escaped); each code cell shows its source and
// its view, drawn in the page by the editor's own renderer (webview/src/render.ts, bundled with
// plotly into dist/webview/report.js and inlined once). Views travel as base64 of the same packed
// bytes the notebook stores, so the report shows exactly what the editor would.
//
// Nothing in the page refers to another file or a URL: a Content-Security-Policy forbids every
// fetch ('unsafe-eval' only because plotly's WebGL traces compile code at run time).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { unpackPayload, type ViewPayload } from '../protocol';
import { CELL_ATTR, OUTPUT_CLASS, REPORT_FIGURES, REPORT_STATE, RUNTIME_SCRIPT_ID, VIEW_SCRIPT_TYPE } from './contract';
import { escapeHtml, renderMarkdown } from './markdown';
import { REPORT_CSS } from './style';

/** The repository / extension root (this file runs from out/extension/report/). */
export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');

export interface ReportCodeCell {
  kind: 'code';
  /** 1-based position in the notebook (markdown cells count). */
  number: number;
  source: string;
  /** 'skipped': a code cell in another language, which the CLIPN kernel does not run. */
  status: 'ok' | 'failed' | 'not-run' | 'skipped';
  executionCount?: number;
  seconds?: number;
  /** Packed ViewPayload (status 'ok'). */
  view?: Uint8Array;
  /** The plain-text summary, shown until the view is drawn (and without JavaScript). */
  text?: string;
  /** The error message (status 'failed'). */
  error?: string;
}

export interface ReportTextCell {
  kind: 'markdown' | 'raw';
  number: number;
  source: string;
}

export type ReportCell = ReportCodeCell | ReportTextCell;

export interface ReportInput {
  title: string;
  /** Label/value lines under the title (notebook, model, providers, outcome...). */
  facts: Array<[string, string]>;
  /** One line saying how the run went; `failed` colours it. */
  outcome: { text: string; failed: boolean };
  cells: ReportCell[];
}

/** Where `node scripts/build-webview.mjs` writes the page script (renderer + plotly). */
export function reportRuntimePath(): string {
  return path.join(PACKAGE_ROOT, 'dist', 'webview', 'report.js');
}

export function loadReportRuntime(file = reportRuntimePath()): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    throw new Error(`the report page script ${file} is missing; build it with \`node scripts/build-webview.mjs\` (part of \`npm run build\`)`);
  }
}

/** Figure blocks in a packed view (what the page will draw with plotly). */
export function figureCount(view: Uint8Array): number {
  const payload = unpackPayload<ViewPayload>(view);
  return payload.blocks.filter((b) => b.type === 'figure').length;
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/**
 * Script text that cannot end its <script> element early: "</script" only occurs inside JS
 * strings, templates, regular expressions or comments, where "<\/script" means the same.
 */
export function inlineScriptText(js: string): string {
  return js.replace(/<\/(script)/gi, '<\\/$1');
}

function codeCell(c: ReportCodeCell): string {
  const head = [
    `<span class="count">[${c.executionCount ?? ' '}]</span>`,
    `<span>cell ${c.number}</span>`,
    c.seconds !== undefined ? `<span>${c.seconds.toFixed(2)} s</span>` : '',
    c.status === 'failed' ? '<span class="status-failed">failed</span>' : '',
  ].join('');
  const parts = [`<div class="cell-head">${head}</div>`, `<pre class="source"><code>${escapeHtml(c.source)}</code></pre>`];
  if (c.status === 'ok' && c.view) {
    const at = `${CELL_ATTR}="${c.number}"`;
    parts.push(
      `<div class="${OUTPUT_CLASS}" ${at} ${REPORT_FIGURES}="${figureCount(c.view)}"><pre class="clipn-fallback">${escapeHtml(c.text ?? '')}</pre></div>`,
      `<script type="${VIEW_SCRIPT_TYPE}" ${at}>${base64(c.view)}</script>`,
    );
  } else if (c.status === 'failed') {
    parts.push(`<pre class="cell-error">${escapeHtml(c.error ?? 'failed')}</pre>`);
  } else if (c.status === 'skipped') {
    parts.push('<div class="cell-not-run">not run: not a clipn cell</div>');
  } else {
    parts.push('<div class="cell-not-run">not run: an earlier cell failed</div>');
  }
  return `<section class="cell cell-code" ${CELL_ATTR}="${c.number}" data-status="${c.status}">${parts.join('\n')}</section>`;
}

function cell(c: ReportCell): string {
  if (c.kind === 'code') return codeCell(c);
  if (c.kind === 'markdown') return `<section class="cell cell-markdown" ${CELL_ATTR}="${c.number}">${renderMarkdown(c.source)}</section>`;
  return `<section class="cell cell-raw" ${CELL_ATTR}="${c.number}"><pre>${escapeHtml(c.source)}</pre></section>`;
}

const CSP = "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:";

/** The whole page; `runtime` is the page script (see loadReportRuntime). */
export function buildReportHtml(input: ReportInput, runtime: string): string {
  const facts = input.facts.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join('');
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${CSP}">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<meta name="generator" content="CLIPN Lab (clipn run)">',
    `<title>${escapeHtml(input.title)}</title>`,
    `<style>${REPORT_CSS}</style>`,
    '</head>',
    `<body class="vscode-light" data-vscode-theme-kind="vscode-light" ${REPORT_STATE}="loading">`,
    `<header><h1>${escapeHtml(input.title)}</h1>`,
    `<dl class="report-facts">${facts}</dl>`,
    `<p class="report-outcome ${input.outcome.failed ? 'failed' : 'ok'}">${escapeHtml(input.outcome.text)}</p></header>`,
    '<main>',
    ...input.cells.map(cell),
    '</main>',
    '<footer>Written by <code>clipn run</code> (CLIPN Lab). Self-contained: figures are drawn offline by the bundled renderer and plotly.js.</footer>',
    `<script id="${RUNTIME_SCRIPT_ID}">${inlineScriptText(runtime)}</script>`,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/** Writes the report (through a temporary file, so a reader never sees half a page). */
export function writeReport(file: string, input: ReportInput, runtime = loadReportRuntime()): void {
  const html = buildReportHtml(input, runtime);
  const abs = path.resolve(file);
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  const tmp = `${abs}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, html);
  fs.renameSync(tmp, abs);
}
