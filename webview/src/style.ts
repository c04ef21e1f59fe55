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
.clipn-figure { position: relative; }
.clipn-hover { position: absolute; z-index: 10; pointer-events: none; padding: 4px; border-radius: 3px; background: var(--vscode-editorHoverWidget-background, #f3f3f3); border: 1px solid var(--vscode-editorHoverWidget-border, #c8c8c8); color: var(--vscode-editorHoverWidget-foreground, inherit); font-size: 0.85em; max-width: 160px; overflow-wrap: anywhere; }
.clipn-hover img { display: block; width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated; }
.clipn-selection { margin: 4px 0; }
.clipn-selection-head { display: flex; gap: 8px; align-items: center; font-weight: 600; }
.clipn-selection li { cursor: default; }
.clipn-gallery { display: flex; flex-wrap: wrap; gap: 8px; }
.clipn-gallery figure { margin: 0; width: 104px; font-size: 0.85em; overflow-wrap: anywhere; }
.clipn-gallery figure.clickable { cursor: pointer; }
.clipn-gallery img, .clipn-nothumb { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated; border: 1px solid var(--vscode-editorWidget-border, rgba(128,128,128,0.35)); }
.clipn-nothumb { display: flex; align-items: center; justify-content: center; opacity: 0.6; }
.clipn-snippet pre { margin: 0; padding: 6px 8px; font-family: var(--vscode-editor-font-family); background: var(--vscode-textCodeBlock-background, rgba(128,128,128,0.12)); overflow-x: auto; }
.clipn-snippet-bar { display: flex; gap: 8px; margin-top: 4px; }
button { font: inherit; color: var(--vscode-button-foreground, #fff); background: var(--vscode-button-background, #0e639c); border: none; padding: 2px 8px; border-radius: 2px; cursor: pointer; }
button:hover { background: var(--vscode-button-hoverBackground, #1177bb); }
`;
