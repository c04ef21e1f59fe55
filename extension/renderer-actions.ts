// What the renderer's buttons and clicks ask of the extension: open an image in the editor,
// save a selection (the user picks the file in a save dialog), insert a cell below the one
// whose output was clicked. Messages are checked with the protocol's guard; anything else is
// ignored, since a notebook's outputs are untrusted content.
import * as path from 'node:path';
import * as vscode from 'vscode';
import { isFromRenderer, RENDERER_ID, type FromRenderer } from './protocol';

export function registerRendererActions(log: vscode.OutputChannel): vscode.Disposable {
  const messaging = vscode.notebooks.createRendererMessaging(RENDERER_ID);
  return messaging.onDidReceiveMessage(({ editor, message }) => {
    if (!isFromRenderer(message)) return;
    void handle(editor, message).catch((err: unknown) => {
      log.appendLine(`renderer action ${message.type} failed: ${(err as Error).message}`);
      void vscode.window.showErrorMessage(`CLIPN: ${(err as Error).message}`);
    });
  });
}

async function handle(editor: vscode.NotebookEditor, msg: FromRenderer): Promise<void> {
  switch (msg.type) {
    case 'openImage': {
      if (!path.isAbsolute(msg.path)) throw new Error(`not an absolute image path: ${msg.path}`);
      // Beside the notebook, keeping focus there: the researcher goes on clicking points.
      await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(msg.path), { preview: true, preserveFocus: true, viewColumn: vscode.ViewColumn.Beside });
      return;
    }
    case 'saveSelection': {
      const base = editor.notebook.uri.scheme === 'file' ? path.dirname(editor.notebook.uri.fsPath) : undefined;
      const target = await vscode.window.showSaveDialog({
        defaultUri: base ? vscode.Uri.file(path.join(base, path.basename(msg.suggestedName))) : undefined,
        filters: msg.format === 'csv' ? { CSV: ['csv'] } : { 'File list': ['txt'] },
        saveLabel: 'Save selection',
      });
      if (!target) return;
      await vscode.workspace.fs.writeFile(target, new TextEncoder().encode(msg.content));
      void vscode.window.showInformationMessage(`Saved the selection to ${target.fsPath}`);
      return;
    }
    case 'insertCell': {
      const at = editor.selection?.end ?? editor.notebook.cellCount;
      const edit = new vscode.WorkspaceEdit();
      edit.set(editor.notebook.uri, [vscode.NotebookEdit.insertCells(Math.min(at, editor.notebook.cellCount), [new vscode.NotebookCellData(vscode.NotebookCellKind.Code, msg.text, 'clipn')])]);
      await vscode.workspace.applyEdit(edit);
      return;
    }
  }
}
