// Stands in for a VS Code executable so @vscode/test-electron's runTests() works here: it takes
// the Electron-style arguments runTests passes (--extensionDevelopmentPath=, --extensionTests
// Path=, a folder) and runs the same tests in code-server's Node extension host, opened by
// headless chromium with the workbench's `payload` query (code-server rejects the flags, the
// web workbench honours the payload). The workbench reports the mocha output and the exit
// code through window.codeAutomationLog / codeAutomationExit. Exit code = the tests' result.
//
// Workspace trust follows VS Code's CLI: with --disable-workspace-trust (runTests always passes
// it) trust is off; without it code-server runs with trust on and the folder untrusted (see
// UNTRUSTED_USER_SETTINGS in host.ts). Then the shim records what the window shows the user, as
// JSON lines in $CLIPN_TEST_UI_LOG for the tests in the extension host: notification toasts (from
// the page) and modal dialogs. A window running extension tests shows no modal dialog: VS Code's
// DialogService refuses it and logs "DialogService: refused to show dialog in tests. Contents:
// <title>"; the shim records those from the workbench's log (so a trust prompt is seen, but can
// be neither accepted nor declined, and the request that asked stays pending).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { format } from 'node:util';
import type { Page } from 'playwright-core';
import { launchChromium, scratchDir, startCodeServer } from './host';

interface ShimArgs {
  folder?: string;
  extensionDevelopmentPath?: string;
  extensionTestsPath?: string;
  disableWorkspaceTrust?: boolean;
}

function parse(argv: string[]): ShimArgs {
  const out: ShimArgs = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--([\w-]+)(?:=(.*))?$/.exec(a);
    if (!m) {
      out.folder ??= a;
      continue;
    }
    const value = m[2] ?? (argv[i + 1] && !argv[i + 1].startsWith('--') && ['extensionDevelopmentPath', 'extensionTestsPath'].includes(m[1]) ? argv[++i] : undefined);
    if (m[1] === 'extensionDevelopmentPath') out.extensionDevelopmentPath = value;
    if (m[1] === 'extensionTestsPath') out.extensionTestsPath = value;
    if (m[1] === 'disable-workspace-trust') out.disableWorkspaceTrust = true;
  }
  return out;
}

const TIMEOUT_MS = Number(process.env.CLIPN_TEST_TIMEOUT_MS ?? 8 * 60_000);

/** One line of $CLIPN_TEST_UI_LOG. */
export interface UiEvent {
  kind: 'dialog' | 'notification';
  /** The dialog's title, or the notification's message. */
  message: string;
  /** The notification's buttons (none for refused dialogs). */
  buttons: string[];
  /** 'shown', or 'refused' for a dialog VS Code did not show because extension tests run. */
  outcome: 'shown' | 'refused';
  at: number;
}

function recordUi(logFile: string, e: Omit<UiEvent, 'at'>): void {
  fs.appendFileSync(logFile, `${JSON.stringify({ ...e, at: Date.now() })}\n`);
  console.log(`code-server-shim: ${e.outcome} ${e.kind} "${e.message}"`);
}

const REFUSED_DIALOG = /DialogService: refused to show (?:\w+ )?dialog in tests\. Contents: (.*?)(?:: Error:|\n|$)/;

/** Until `stopped()`: records each new notification toast to `logFile`. */
async function watchNotifications(page: Page, logFile: string, stopped: () => boolean): Promise<void> {
  const seen = new Set<string>();
  while (!stopped()) {
    try {
      for (const toast of await page.locator('.notifications-toasts .notification-list-item').all()) {
        const message = (await toast.locator('.notification-list-item-message').innerText().catch(() => '')).trim();
        if (!message || seen.has(message)) continue;
        seen.add(message);
        const buttons = (await toast.locator('.notification-list-item-buttons-container .monaco-button').allInnerTexts().catch(() => [] as string[])).map((b) => b.trim()).filter(Boolean);
        recordUi(logFile, { kind: 'notification', message, buttons, outcome: 'shown' });
      }
    } catch {
      /* the page is navigating or closing */
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function main(): Promise<number> {
  const args = parse(process.argv.slice(2));
  if (!args.extensionDevelopmentPath || !args.extensionTestsPath) {
    console.error('code-server-shim: needs --extensionDevelopmentPath= and --extensionTestsPath=');
    return 2;
  }
  const root = scratchDir('clipn-itest-');
  const started = Date.now();
  let code = 1;
  const workspaceTrust = !args.disableWorkspaceTrust;
  const uiLog = path.join(root, 'ui-events.jsonl');
  // The extension host inherits code-server's environment: tests read CLIPN_TEST_* from it.
  const env: Record<string, string> = { CLIPN_TEST_SCRATCH: root };
  if (workspaceTrust) env.CLIPN_TEST_UI_LOG = uiLog;
  const server = await startCodeServer({ root, env, workspaceTrust });
  console.log(`code-server-shim: code-server on ${server.url} (pid ${server.process.pid}), workspace trust ${workspaceTrust ? 'on' : 'off'}`);
  const browser = await launchChromium(root);
  let finished = false;
  let watcher: Promise<void> = Promise.resolve();
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const exit = new Promise<number>((resolve) => {
      void page.exposeFunction('codeAutomationLog', (type: string, args: unknown[]) => {
        // The workbench forwards console calls with their printf-style arguments.
        const text = format(...(Array.isArray(args) ? args : [args]));
        (type === 'error' ? process.stderr : process.stdout).write(`${text}\n`);
        const refused = workspaceTrust ? REFUSED_DIALOG.exec(text) : null;
        if (refused) recordUi(uiLog, { kind: 'dialog', message: refused[1].trim(), buttons: [], outcome: 'refused' });
      });
      void page.exposeFunction('codeAutomationExit', (code: number) => resolve(Number(code)));
    });
    const remote = (p: string) => `vscode-remote://127.0.0.1:${server.port}${path.resolve(p)}`;
    const payload = JSON.stringify([
      ['extensionDevelopmentPath', remote(args.extensionDevelopmentPath)],
      ['extensionTestsPath', remote(args.extensionTestsPath)],
    ]);
    const folder = path.resolve(args.folder ?? args.extensionDevelopmentPath);
    if (workspaceTrust) fs.writeFileSync(uiLog, '');
    await page.goto(`${server.url}/?folder=${encodeURIComponent(folder)}&payload=${encodeURIComponent(payload)}`);
    if (workspaceTrust) watcher = watchNotifications(page, uiLog, () => finished);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<number>((resolve) => {
      timer = setTimeout(() => {
        console.error(`code-server-shim: no result after ${TIMEOUT_MS / 1000} s`);
        resolve(124);
      }, TIMEOUT_MS);
    });
    code = await Promise.race([exit, timeout]);
    clearTimeout(timer);
    finished = true;
    await watcher;
    if (code !== 0) {
      const shot = path.join(process.env.CLIPN_ARTIFACTS ?? path.join(root, 'artifacts'), 'integration-failure.png');
      fs.mkdirSync(path.dirname(shot), { recursive: true });
      await page.screenshot({ path: shot }).catch(() => undefined);
      console.error(`code-server-shim: screenshot ${shot}; code-server log ${path.join(root, 'code-server.log')}`);
    }
    console.log(`code-server-shim: finished in ${((Date.now() - started) / 1000).toFixed(1)} s with exit code ${code}`);
    return code;
  } finally {
    finished = true;
    await browser.close().catch(() => undefined);
    await server.stop();
    // Kept after a failure: the code-server log and the extension host's logs are in it.
    if (code === 0 && !process.env.CLIPN_KEEP_SCRATCH) fs.rmSync(root, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof Error ? err.stack : err);
    process.exit(1);
  },
);
