// What the HTML report's markup and its page script (webview/src/report.ts) agree on: where the
// packed views sit, where each one is drawn, and how the page says it has finished. Both sides
// import this file (Node writes the markup, the browser reads it), so it imports nothing.
//
// For browser tests: wait for REPORT_READY_SELECTOR, then compare the body's
// REPORT_FIGURES_DRAWN attribute (plotly figures actually drawn) with the sum of the
// REPORT_FIGURES attributes on the output elements (figure blocks in the embedded views).

/** `<script type=...>` holding one cell's packed ViewPayload as base64 (never executed). */
export const VIEW_SCRIPT_TYPE = 'application/vnd.clipn.view;base64';

/** Class of the element a cell's view is drawn into (it first holds the text fallback). */
export const OUTPUT_CLASS = 'clipn-report-output';

/** 1-based notebook position of a cell (markdown cells count, as in the editor's messages). */
export const CELL_ATTR = 'data-cell';

/** On an output element: how many figure blocks its view holds. */
export const REPORT_FIGURES = 'data-figures';

/** On <body>: 'rendering' while views are drawn, then 'ready' (or 'failed': see the page). */
export const REPORT_STATE = 'data-clipn-report';

/** On <body> once ready: how many plotly figures were drawn in the page. */
export const REPORT_FIGURES_DRAWN = 'data-figures-drawn';

export const REPORT_READY_SELECTOR = `body[${REPORT_STATE}="ready"]`;

/** Matches once the page has finished, whether every view drew ('ready') or not ('failed'). */
export const REPORT_DONE_SELECTOR = `body[${REPORT_STATE}="ready"], body[${REPORT_STATE}="failed"]`;

/** Id of the inline page script (the renderer with plotly, embedded once). */
export const RUNTIME_SCRIPT_ID = 'clipn-report-runtime';
