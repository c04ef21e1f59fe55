// Renderer CSS: VS Code's theme variables only, so light, dark and high-contrast all work.
export const STYLE = `
.clipn-view { font-family: var(--vscode-font-family); font-size: var(--vscode-font-size, 13px); color: var(--vscode-editor-foreground); }
.clipn-title { font-weight: 600; margin: 4px 0 8px; }
.clipn-section h4 { margin: 10px 0 4px; font-weight: 600; font-size: 0.95em; opacity: 0.85; }
.clipn-kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
.clipn-kv dt { opacity: 0.75; }
.clipn-kv dd { margin: 0; font-family: var(--vscode-editor-font-family); overflow-wrap: anywhere; }
.clipn-table-wrap { overflow-x: auto; }
.clipn-table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
.clipn-table th, .clipn-table td { padding: 3px 10px; border-bottom: 1px solid var(--vscode-editorWidget-border, rgba(128,128,128,0.35)); text-align: left; }
.clipn-table td.num { text-align: right; font-family: var(--vscode-editor-font-family); }
.clipn-table td.best { font-weight: 700; color: var(--vscode-charts-green, inherit); }
.clipn-table th { font-weight: 600; }
.clipn-caption, .clipn-notes { opacity: 0.75; font-size: 0.9em; margin-top: 6px; }
.clipn-list { margin: 2px 0; padding-left: 20px; font-family: var(--vscode-editor-font-family); }
.clipn-list li.more { list-style: none; opacity: 0.75; }
.clipn-figure { width: 100%; }
.clipn-error { color: var(--vscode-errorForeground); }
.clipn-text.warning { color: var(--vscode-editorWarning-foreground); }
.clipn-text.error { color: var(--vscode-errorForeground); }
`;
