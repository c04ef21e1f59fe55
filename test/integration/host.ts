// A real VS Code for tests, offline: code-server 4.100.3 (VS Code 1.100.3, installed by
// scripts/install-test-tools.sh into .tools/code-server) on 127.0.0.1, and Debian's chromium
// driven by playwright-core. Every process gets its own HOME/XDG folders (code-server writes
// to $HOME even for --version) and is stopped by signalling its process group.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type Browser } from 'playwright-core';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const CHROMIUM = process.env.CLIPN_CHROMIUM ?? '/usr/bin/chromium';

export function codeServerBin(): string {
  const bin = process.env.CLIPN_CODE_SERVER ?? path.join(REPO_ROOT, '.tools', 'code-server', 'node_modules', '.bin', 'code-server');
  if (!fs.existsSync(bin)) throw new Error(`code-server not found at ${bin}: run bash scripts/install-test-tools.sh (or scripts/install.sh --test)`);
  return bin;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Private HOME and XDG folders under `root`. */
export function isolatedEnv(root: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const home = path.join(root, 'home');
  for (const d of ['.config', '.local/share', '.cache']) fs.mkdirSync(path.join(home, d), { recursive: true });
  return {
    ...process.env,
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    XDG_DATA_HOME: path.join(home, '.local', 'share'),
    XDG_CACHE_HOME: path.join(home, '.cache'),
    // No marketplace: nothing may be fetched.
    EXTENSIONS_GALLERY: '{}',
    ...extra,
  };
}

export interface CodeServerOptions {
  /** Scratch folder for HOME, user data, extensions and logs. */
  root: string;
  userSettings?: Record<string, unknown>;
  /** Existing extensions folder (e.g. with the .vsix installed). */
  extensionsDir?: string;
  env?: Record<string, string>;
  /**
   * Workspace trust as a user has it: code-server without --disable-workspace-trust and
   * UNTRUSTED_USER_SETTINGS. Which folders are trusted is then up to the browser (see below).
   */
  workspaceTrust?: boolean;
}

export interface CodeServer {
  url: string;
  port: number;
  userDataDir: string;
  extensionsDir: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export const DEFAULT_USER_SETTINGS = {
  'telemetry.telemetryLevel': 'off',
  'git.enabled': false,
  'security.workspace.trust.enabled': false,
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'update.mode': 'none',
  'notebook.confirmDeleteRunningCell': false,
};

/**
 * With workspace trust on. How VS Code 1.100's web workbench (code-server 4.100.3) decides
 * trust for a folder opened with `?folder=`: trust is on when the server was started without
 * --disable-workspace-trust (code-server hands the workbench `enableWorkspaceTrust`) and the
 * setting below is true. The folder is then a `vscode-remote://` URI, which is trusted only if
 * (a) the remote authority resolver says `isTrusted` (code-server's browser resolver never does)
 * or (b) the trusted-folders list, `content.trust.model.key` in APPLICATION storage, holds it or
 * a parent. In the browser that storage is IndexedDB (`vscode-web-state-db-global`) of the
 * browser profile; launchChromium's browser starts with an empty profile, so nothing is trusted.
 * No startup "Do you trust...?" dialog (startupPrompt: never) and no prompt for files opened
 * from outside the folder (untrustedFiles: open); running a cell still asks (a modal dialog).
 */
export const UNTRUSTED_USER_SETTINGS = {
  'security.workspace.trust.enabled': true,
  'security.workspace.trust.startupPrompt': 'never',
  'security.workspace.trust.untrustedFiles': 'open',
};

/** Runs code-server without auth on a free loopback port; resolves once /healthz answers. */
export async function startCodeServer(opts: CodeServerOptions): Promise<CodeServer> {
  const port = await freePort();
  const userDataDir = path.join(opts.root, 'user-data');
  const extensionsDir = opts.extensionsDir ?? path.join(opts.root, 'extensions');
  fs.mkdirSync(path.join(userDataDir, 'User'), { recursive: true });
  fs.mkdirSync(extensionsDir, { recursive: true });
  const settings = { ...DEFAULT_USER_SETTINGS, ...(opts.workspaceTrust ? UNTRUSTED_USER_SETTINGS : {}), ...opts.userSettings };
  fs.writeFileSync(path.join(userDataDir, 'User', 'settings.json'), JSON.stringify(settings, null, 2));
  const config = path.join(opts.root, 'config.yaml');
  fs.writeFileSync(config, 'auth: none\n');
  const log = fs.openSync(path.join(opts.root, 'code-server.log'), 'a');
  const child = spawn(
    codeServerBin(),
    [
      '--config', config,
      '--bind-addr', `127.0.0.1:${port}`,
      '--auth', 'none',
      '--user-data-dir', userDataDir,
      '--extensions-dir', extensionsDir,
      '--disable-telemetry',
      '--disable-update-check',
      ...(opts.workspaceTrust ? [] : ['--disable-workspace-trust']),
      '--disable-getting-started-override',
      '--ignore-last-opened',
    ],
    { detached: true, stdio: ['ignore', log, log], env: isolatedEnv(opts.root, opts.env) },
  );
  fs.closeSync(log);
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, 5000);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`code-server exited with ${child.exitCode}; see ${path.join(opts.root, 'code-server.log')}`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`code-server did not answer /healthz within 60 s; see ${path.join(opts.root, 'code-server.log')}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { url, port, userDataDir, extensionsDir, process: child, stop };
}

/** Installs a .vsix into an extensions folder with code-server's CLI. */
export async function installVsix(root: string, extensionsDir: string, vsix: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn(codeServerBin(), ['--extensions-dir', extensionsDir, '--user-data-dir', path.join(root, 'user-data'), '--install-extension', vsix], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: isolatedEnv(root),
    });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`--install-extension failed (${code}): ${out}`))));
  });
}

export async function launchChromium(root: string): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (scripts/install-test-tools.sh)`);
  const env = isolatedEnv(path.join(root, 'chromium'));
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    env: env as Record<string, string>,
    // No GPU here: WebGL (3-D and scattergl plots) runs on SwiftShader, Chromium's CPU renderer.
    args: ['--no-sandbox', '--disable-gpu', '--enable-unsafe-swiftshader', '--use-angle=swiftshader', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

export function scratchDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
