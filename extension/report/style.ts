// The report page's CSS. The views are drawn by the editor's renderer, which styles itself
// with VS Code's theme variables; the page defines the ones it reads with the values of VS
// Code's default light theme (figure colours fall back to figure.ts's light palette), so a
// report looks like the notebook in a light editor. System fonts only: nothing is fetched.
import { OUTPUT_CLASS } from './contract';

export const REPORT_CSS = `
body {
  --vscode-font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", system-ui, Ubuntu, "Droid Sans", sans-serif;
  --vscode-font-size: 13px;
  --vscode-editor-font-family: ui-monospace, "SF Mono", Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace;
  --vscode-editor-foreground: #3b3b3b;
  --vscode-errorForeground: #f85149;
  --vscode-editorWarning-foreground: #bf8803;
  --vscode-editorWidget-border: #c8c8c8;
  margin: 0;
  background: #ffffff;
  color: var(--vscode-editor-foreground);
  font-family: var(--vscode-font-family);
  font-size: 14px;
  line-height: 1.5;
}
main, header { max-width: 1080px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 24px; padding-bottom: 8px; border-bottom: 1px solid #e5e5e5; }
header h1 { margin: 0 0 8px; font-size: 1.7em; font-weight: 600; }
.report-facts { display: grid; grid-template-columns: max-content 1fr; gap: 0 16px; margin: 0 0 12px; font-size: 0.9em; }
.report-facts dt { color: #6e6e6e; }
.report-facts dd { margin: 0; overflow-wrap: anywhere; }
.report-outcome.ok { color: #388a34; }
.report-outcome.failed { color: #c72e0f; font-weight: 600; }
.cell { margin: 18px 0; }
.cell-markdown h2, .cell-markdown h3, .cell-markdown h4 { margin: 1.1em 0 0.4em; font-weight: 600; }
.cell-markdown h2 { font-size: 1.4em; border-bottom: 1px solid #eeeeee; padding-bottom: 4px; }
.cell-markdown p { margin: 0.5em 0; }
.cell-markdown code, .cell-code pre { font-family: var(--vscode-editor-font-family); font-size: 0.9em; }
.cell-markdown code { background: #f3f3f3; padding: 1px 4px; border-radius: 3px; }
.cell-markdown blockquote { margin: 0.5em 0; padding: 0 12px; border-left: 3px solid #d0d0d0; color: #555555; }
.md-code, .cell-raw pre { background: #f6f6f6; padding: 8px 12px; border-radius: 4px; overflow-x: auto; }
.md-table { border-collapse: collapse; margin: 0.5em 0; }
.md-table th, .md-table td { border: 1px solid #dddddd; padding: 3px 8px; }
.md-url { color: #6e6e6e; font-size: 0.9em; overflow-wrap: anywhere; }
.cell-code { border: 1px solid #e0e0e0; border-radius: 6px; overflow: hidden; }
.cell-head { display: flex; gap: 12px; align-items: baseline; padding: 4px 12px; background: #f8f8f8; border-bottom: 1px solid #e0e0e0; font-size: 0.85em; color: #6e6e6e; }
.cell-head .count { font-family: var(--vscode-editor-font-family); }
.cell-head .status-failed { color: #c72e0f; font-weight: 600; }
.cell-code pre.source { margin: 0; padding: 8px 12px; background: #fbfbfb; border-bottom: 1px solid #eeeeee; overflow-x: auto; white-space: pre; }
.${OUTPUT_CLASS} { padding: 8px 12px; }
.clipn-fallback { margin: 0; white-space: pre-wrap; font-family: var(--vscode-editor-font-family); font-size: 0.9em; }
.cell-error { margin: 0; padding: 8px 12px; color: #c72e0f; white-space: pre-wrap; font-family: var(--vscode-editor-font-family); font-size: 0.9em; }
.cell-not-run { padding: 8px 12px; color: #6e6e6e; font-style: italic; }
footer { max-width: 1080px; margin: 32px auto; padding: 0 24px; color: #8a8a8a; font-size: 0.85em; }
`;
