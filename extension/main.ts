// Extension entry: registers the .clipnb serializer, the kernel controller, the clipn language
// features and the commands. The returned API is for the integration tests (they drive the
// controller and read diagnostics); users never need it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { ClipnController } from './controller';
import { LanguageFeatures } from './language-features';
import { ClipnSerializer } from './notebook/serializer';
import { registerRendererActions } from './renderer-actions';
import { NOTEBOOK_TYPE } from './protocol';

export interface ClipnApi {
  controller: ClipnController;
  language: LanguageFeatures;
}

/** Copies the bundled samples (notebook + images) somewhere writable and returns the notebook. */
function copySamples(context: vscode.ExtensionContext): string {
  const from = path.join(context.extensionPath, 'samples');
  const to = path.join(context.globalStorageUri.fsPath, 'samples');
  fs.mkdirSync(to, { recursive: true });
  fs.cpSync(from, to, { recursive: true, force: false, errorOnExist: false });
  return path.join(to, 'getting-started.clipnb');
}

export function activate(context: vscode.ExtensionContext): ClipnApi {
  const log = vscode.window.createOutputChannel('CLIPN Lab');
  const controller = new ClipnController(context, log);
  const language = new LanguageFeatures();
  context.subscriptions.push(
    log,
    controller,
    language,
    registerRendererActions(log),
    vscode.workspace.registerNotebookSerializer(NOTEBOOK_TYPE, new ClipnSerializer(), { transientOutputs: false }),
    vscode.commands.registerCommand('clipn.restartKernel', async () => {
      await controller.restart();
      vscode.window.setStatusBarMessage('CLIPN kernel restarted: the next run starts a fresh one.', 3000);
    }),
    vscode.commands.registerCommand('clipn.clearCache', async () => {
      try {
        const scope = vscode.window.activeNotebookEditor?.notebook.uri;
        vscode.window.showInformationMessage(await controller.clearCache(scope));
      } catch (err) {
        vscode.window.showErrorMessage(`Could not clear the CLIPN cache: ${(err as Error).message}`);
      }
    }),
    vscode.commands.registerCommand('clipn.openSample', async () => {
      const file = copySamples(context);
      await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.file(file), NOTEBOOK_TYPE);
    }),
  );
  return { controller, language };
}

export function deactivate(): void {
  // Disposables (the kernel process included) are released through context.subscriptions.
}
