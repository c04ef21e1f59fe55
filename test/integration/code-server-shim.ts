// Stands in for a VS Code executable so @vscode/test-electron's runTests() works here: it takes
// the Electron-style arguments runTests passes (--extensionDevelopmentPath=, --extensionTests
// Path=, a folder) and runs the same tests in code-server's Node extension host, opened by
// headless chromium with the workbench's `payload` query (code-server rejects the flags, the
// web workbench honours the payload). The workbench reports the mocha output and the exit
// code through window.codeAutomationLog / codeAutomationExit. Exit code = the tests' result.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { format } from 'node:util';
import { launchChromium, scratchDir, startCodeServer } from './host';

interface ShimArgs {
  folder?: string;
  extensionDevelopmentPath?: string;
  extensionTestsPath?: string;
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
  }
  return out;
}

const TIMEOUT_MS = Number(process.env.CLIPN_TEST_TIMEOUT_MS ?? 8 * 60_000);

async function main(): Promise<number> {
  const args = parse(process.argv.slice(2));
  if (!args.extensionDevelopmentPath || !args.extensionTestsPath) {
    console.error('code-server-shim: needs --extensionDevelopmentPath= and --extensionTestsPath=');
    return 2;
  }
  const root = scratchDir('clipn-itest-');
  const started = Date.now();
  let code = 1;
  // The extension host inherits code-server's environment: tests read CLIPN_TEST_* from it.
  const server = await startCodeServer({ root, env: { CLIPN_TEST_SCRATCH: root } });
  const browser = await launchChromium(root);
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const exit = new Promise<number>((resolve) => {
      void page.exposeFunction('codeAutomationLog', (type: string, args: unknown[]) => {
        // The workbench forwards console calls with their printf-style arguments.
        const text = format(...(Array.isArray(args) ? args : [args]));
        (type === 'error' ? process.stderr : process.stdout).write(`${text}\n`);
      });
      void page.exposeFunction('codeAutomationExit', (code: number) => resolve(Number(code)));
    });
    const remote = (p: string) => `vscode-remote://127.0.0.1:${server.port}${path.resolve(p)}`;
    const payload = JSON.stringify([
      ['extensionDevelopmentPath', remote(args.extensionDevelopmentPath)],
      ['extensionTestsPath', remote(args.extensionTestsPath)],
    ]);
    const folder = path.resolve(args.folder ?? args.extensionDevelopmentPath);
    await page.goto(`${server.url}/?folder=${encodeURIComponent(folder)}&payload=${encodeURIComponent(payload)}`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<number>((resolve) => {
      timer = setTimeout(() => {
        console.error(`code-server-shim: no result after ${TIMEOUT_MS / 1000} s`);
        resolve(124);
      }, TIMEOUT_MS);
    });
    code = await Promise.race([exit, timeout]);
    clearTimeout(timer);
    if (code !== 0) {
      const shot = path.join(process.env.CLIPN_ARTIFACTS ?? path.join(root, 'artifacts'), 'integration-failure.png');
      fs.mkdirSync(path.dirname(shot), { recursive: true });
      await page.screenshot({ path: shot }).catch(() => undefined);
      console.error(`code-server-shim: screenshot ${shot}; code-server log ${path.join(root, 'code-server.log')}`);
    }
    console.log(`code-server-shim: finished in ${((Date.now() - started) / 1000).toFixed(1)} s with exit code ${code}`);
    return code;
  } finally {
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
