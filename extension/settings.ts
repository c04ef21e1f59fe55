// The `clipn.*` settings, read fresh for every run (a changed setting applies to the next cell
// without a restart) and resolved to what the kernel needs: absolute folders, defaults filled.
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { KernelSettings } from './protocol';

export const DEFAULT_PROVIDERS = ['cuda', 'webgpu', 'cpu'];

export function readSettings(context: vscode.ExtensionContext, scope?: vscode.Uri): KernelSettings {
  const cfg = vscode.workspace.getConfiguration('clipn', scope);
  const folder = (cfg.get<string>('modelFolder') ?? '').trim();
  const cache = (cfg.get<string>('cacheFolder') ?? '').trim();
  const expand = (p: string) => (p.startsWith('~/') ? path.join(os.homedir(), p.slice(2)) : p);
  const workspace = scope ? vscode.workspace.getWorkspaceFolder(scope)?.uri.fsPath : undefined;
  const abs = (p: string) => (path.isAbsolute(expand(p)) ? expand(p) : path.resolve(workspace ?? os.homedir(), expand(p)));
  const providers = cfg.get<string[]>('executionProviders') ?? DEFAULT_PROVIDERS;
  return {
    // Empty: the small model bundled with the extension, so the samples run offline at once.
    modelFolder: folder ? abs(folder) : path.join(context.extensionPath, 'models', 'default'),
    providers: providers.length > 0 ? providers : DEFAULT_PROVIDERS,
    batchSize: Math.max(0, Math.floor(cfg.get<number>('batchSize') ?? 0)),
    threads: Math.max(0, Math.floor(cfg.get<number>('threads') ?? 0)),
    cacheFolder: cache ? abs(cache) : path.join(context.globalStorageUri.fsPath, 'cache'),
  };
}
