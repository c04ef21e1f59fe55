// Helpers for the tests inside the extension host: the extension's test API, settings for the
// test model and a scratch cache, running cells through VS Code's own commands, and reading
// outputs back as protocol payloads.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { ClipnApi } from '../../../extension/main';
import { CONTROLLER_ID, MIME, NOTEBOOK_TYPE, unpackPayload, type ViewPayload } from '../../../extension/protocol';

export const EXTENSION_ID = 'clipn-lab.clipn-lab';

export async function clipnApi(): Promise<ClipnApi> {
  const ext = vscode.extensions.getExtension<ClipnApi>(EXTENSION_ID);
  if (!ext) throw new Error(`extension ${EXTENSION_ID} is not loaded`);
  return ext.activate();
}

export function scratch(name: string): string {
  const root = process.env.CLIPN_TEST_SCRATCH ?? os.tmpdir();
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Points the extension at the test model (when the launcher gave one) and a scratch cache. */
export async function configure(): Promise<void> {
  const cfg = vscode.workspace.getConfiguration('clipn');
  if (process.env.CLIPN_TEST_MODEL_FOLDER) await cfg.update('modelFolder', process.env.CLIPN_TEST_MODEL_FOLDER, vscode.ConfigurationTarget.Global);
  await cfg.update('cacheFolder', scratch('cache'), vscode.ConfigurationTarget.Global);
  await cfg.update('executionProviders', ['cpu'], vscode.ConfigurationTarget.Global);
}

export function workspaceDir(): string {
  return process.env.CLIPN_TEST_WORKSPACE ?? vscode.workspace.workspaceFolders![0].uri.fsPath;
}

export async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 60_000, stepMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Shows a notebook and selects the CLIPN kernel for it. */
export async function show(nb: vscode.NotebookDocument): Promise<vscode.NotebookEditor> {
  const editor = await vscode.window.showNotebookDocument(nb);
  await vscode.commands.executeCommand('notebook.selectKernel', { notebookEditor: editor, id: CONTROLLER_ID, extension: EXTENSION_ID });
  return editor;
}

export async function openFile(file: string): Promise<vscode.NotebookDocument> {
  const nb = await vscode.workspace.openNotebookDocument(vscode.Uri.file(file));
  if (nb.notebookType !== NOTEBOOK_TYPE) throw new Error(`${file} opened as ${nb.notebookType}`);
  await show(nb);
  return nb;
}

export async function untitled(sources: string[]): Promise<vscode.NotebookDocument> {
  const data = new vscode.NotebookData(sources.map((s) => new vscode.NotebookCellData(vscode.NotebookCellKind.Code, s, 'clipn')));
  const nb = await vscode.workspace.openNotebookDocument(NOTEBOOK_TYPE, data);
  await show(nb);
  return nb;
}

/** Runs cells [start, end) with VS Code's command; resolves when each has finished. */
export async function runCells(nb: vscode.NotebookDocument, start: number, end: number): Promise<vscode.NotebookCell[]> {
  const since = Date.now();
  await vscode.commands.executeCommand('notebook.cell.execute', { ranges: [{ start, end }], document: nb.uri });
  const cells = nb.getCells(new vscode.NotebookRange(start, end)).filter((c) => c.kind === vscode.NotebookCellKind.Code);
  await waitFor('the cells to finish', () => cells.every((c) => c.executionSummary?.success !== undefined && (c.executionSummary.timing?.endTime ?? Infinity) >= since) || cells.some((c) => c.executionSummary?.success === false), 300_000);
  return cells;
}

export function codeCells(nb: vscode.NotebookDocument): vscode.NotebookCell[] {
  return nb.getCells().filter((c) => c.kind === vscode.NotebookCellKind.Code);
}

export function viewOf(cell: vscode.NotebookCell): ViewPayload {
  const item = cell.outputs.flatMap((o) => o.items).find((i) => i.mime === MIME.view);
  if (!item) throw new Error(`cell ${cell.index + 1} has no ${MIME.view} output (mimes: ${cell.outputs.flatMap((o) => o.items.map((i) => i.mime)).join(', ')})`);
  return unpackPayload<ViewPayload>(item.data);
}

export function errorOf(cell: vscode.NotebookCell): { name: string; message: string } | undefined {
  const item = cell.outputs.flatMap((o) => o.items).find((i) => i.mime === MIME.error);
  return item ? JSON.parse(new TextDecoder().decode(item.data)) : undefined;
}

export function progressText(cell: vscode.NotebookCell): string {
  const item = cell.outputs.flatMap((o) => o.items).find((i) => i.mime === MIME.text);
  return item ? new TextDecoder().decode(item.data) : '';
}

/** `n` distinct small noise images (distinct content: the cache cannot skip them). */
export async function noiseImages(dir: string, n: number, seed: number): Promise<void> {
  if (fs.existsSync(dir) && fs.readdirSync(dir).length === n) return;
  fs.mkdirSync(dir, { recursive: true });
  const sharp = (await import('sharp')).default;
  let s = seed >>> 0;
  const rand = () => ((s = (s * 1664525 + 1013904223) >>> 0) >>> 24);
  for (let i = 0; i < n; i++) {
    const px = Buffer.alloc(24 * 24 * 3);
    for (let k = 0; k < px.length; k++) px[k] = rand();
    await sharp(px, { raw: { width: 24, height: 24, channels: 3 } }).png().toFile(path.join(dir, `noise_${String(i).padStart(5, '0')}.png`));
  }
}
