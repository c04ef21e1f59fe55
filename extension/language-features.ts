// Editor support for `clipn` cells from the one schema: diagnostics as you type (including names
// used before they are defined in the notebook), completion and hover. The logic lives in the
// vscode-free language/ modules; this file maps positions and registers providers.
import * as vscode from 'vscode';
import { LANGUAGE_ID, NOTEBOOK_TYPE, type CellKind } from './protocol';
import { completionsAt, hoverAt } from './language/assist';
import { resolveNotebook } from './language/resolve';
import { parseCell, type Position } from './language/validate';

const toRange = (start: Position, end: Position) => new vscode.Range(start.line - 1, start.column - 1, end.line - 1, end.column - 1);

function isClipnCell(cell: vscode.NotebookCell): boolean {
  return cell.kind === vscode.NotebookCellKind.Code && cell.document.languageId === LANGUAGE_ID;
}

export class LanguageFeatures implements vscode.Disposable {
  readonly diagnostics = vscode.languages.createDiagnosticCollection('clipn');
  private readonly disposables: vscode.Disposable[] = [this.diagnostics];
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor() {
    const selector: vscode.DocumentSelector = { language: LANGUAGE_ID };
    this.disposables.push(
      vscode.languages.registerCompletionItemProvider(selector, { provideCompletionItems: (doc, pos) => this.complete(doc, pos) }, ':', ' ', '[', ',', '-'),
      vscode.languages.registerHoverProvider(selector, { provideHover: (doc, pos) => this.hover(doc, pos) }),
      vscode.workspace.onDidOpenNotebookDocument((nb) => this.schedule(nb, 0)),
      vscode.workspace.onDidChangeNotebookDocument((e) => this.schedule(e.notebook)),
      vscode.workspace.onDidChangeTextDocument((e) => {
        const nb = this.notebookOf(e.document);
        if (nb) this.schedule(nb);
      }),
      vscode.workspace.onDidCloseNotebookDocument((nb) => {
        for (const cell of nb.getCells()) this.diagnostics.delete(cell.document.uri);
      }),
    );
    for (const nb of vscode.workspace.notebookDocuments) this.schedule(nb, 0);
  }

  private notebookOf(doc: vscode.TextDocument): vscode.NotebookDocument | undefined {
    if (doc.uri.scheme !== 'vscode-notebook-cell') return undefined;
    return vscode.workspace.notebookDocuments.find((nb) => nb.notebookType === NOTEBOOK_TYPE && nb.getCells().some((c) => c.document === doc));
  }

  /** Re-checks a notebook after typing pauses (every cell: a rename affects cells below). */
  private schedule(nb: vscode.NotebookDocument, delay = 150): void {
    if (nb.notebookType !== NOTEBOOK_TYPE) return;
    const key = nb.uri.toString();
    clearTimeout(this.timers.get(key));
    this.timers.set(key, setTimeout(() => this.check(nb), delay));
  }

  /** Computes and publishes the diagnostics of every clipn cell (exposed for tests). */
  check(nb: vscode.NotebookDocument): void {
    this.timers.delete(nb.uri.toString());
    const cells = nb.getCells();
    const resolved = resolveNotebook(cells.map((c) => (isClipnCell(c) ? c.document.getText() : undefined)));
    cells.forEach((cell, i) => {
      const r = resolved[i];
      if (!r) return this.diagnostics.delete(cell.document.uri);
      this.diagnostics.set(
        cell.document.uri,
        r.diagnostics.map((d) => {
          const diag = new vscode.Diagnostic(toRange(d.start, d.end), d.message, d.severity === 'error' ? vscode.DiagnosticSeverity.Error : vscode.DiagnosticSeverity.Warning);
          diag.source = 'clipn';
          return diag;
        }),
      );
    });
  }

  /** Names defined by the cells above `doc`, per kind (for reference completion). */
  private namesAbove(doc: vscode.TextDocument): Partial<Record<CellKind, string[]>> {
    const nb = this.notebookOf(doc);
    const names: Partial<Record<CellKind, string[]>> = {};
    if (!nb) return names;
    for (const cell of nb.getCells()) {
      if (cell.document === doc) break;
      if (!isClipnCell(cell)) continue;
      const p = parseCell(cell.document.getText());
      if (p.kind && p.name) (names[p.kind] ??= []).includes(p.name) || names[p.kind]!.push(p.name);
    }
    return names;
  }

  private complete(doc: vscode.TextDocument, pos: vscode.Position): vscode.CompletionItem[] {
    const kinds = { cell: vscode.CompletionItemKind.Module, key: vscode.CompletionItemKind.Property, value: vscode.CompletionItemKind.EnumMember, name: vscode.CompletionItemKind.Variable };
    return completionsAt(doc.getText(), pos.line + 1, pos.character + 1, this.namesAbove(doc)).map((c) => {
      const item = new vscode.CompletionItem(c.label, kinds[c.kind]);
      item.insertText = c.insertText;
      item.documentation = new vscode.MarkdownString(c.doc);
      // The word being typed is replaced, so "fo" + "folder: " gives "folder: ".
      const word = doc.getWordRangeAtPosition(pos, /[\w-]+/);
      if (word) item.range = word;
      return item;
    });
  }

  private hover(doc: vscode.TextDocument, pos: vscode.Position): vscode.Hover | undefined {
    const h = hoverAt(doc.getText(), pos.line + 1, pos.character + 1);
    if (!h) return undefined;
    return new vscode.Hover(new vscode.MarkdownString(h.doc), new vscode.Range(h.line - 1, h.start - 1, h.line - 1, h.end - 1));
  }

  dispose(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    for (const d of this.disposables) d.dispose();
  }
}
