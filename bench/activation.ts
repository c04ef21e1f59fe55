// Activation cost of the extension entry: the esbuild bundle (dist/extension/main.js, what the
// .vsix runs) against tsc's output (out/extension/main.js, what the extension ran before).
//
//   node out/bench/activation.js [--runs 15]
//
// MEASURED OUTSIDE VS CODE: each sample is a fresh Node process (cold module cache; the OS file
// cache is warm after the first) that answers `require('vscode')` with a minimal stand-in (the
// real module exists only inside an extension host), then times require(entry) and
// activate(context). The stand-in records nothing and does no work, so the figures are the
// extension's own share of activation: loading and evaluating its code plus its activate().
// VS Code adds its own (reading the extension's package.json, the extension host's require
// hooks) to both variants alike. Variants alternate per sample; medians are reported.
//
// Each sample also reports how many modules were loaded and whether anything heavy was: the
// activation path must not load onnxruntime-node, sharp or the engine (the kernel process
// loads them on the first cell run).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { args, median, printMachine, spread } from './machine';

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const VARIANTS = {
  bundle: path.join(REPO_ROOT, 'dist', 'extension', 'main.js'),
  tsc: path.join(REPO_ROOT, 'out', 'extension', 'main.js'),
} as const;
type Variant = keyof typeof VARIANTS;

interface Sample {
  requireMs: number;
  activateMs: number;
  /** Modules in require.cache after activate() (the entry and what it pulled in). */
  modules: number;
  /** Loaded modules whose path names onnxruntime, sharp or the engine. */
  heavy: string[];
}

// ---------------------------------------------------------------------------------------------
// Child: one measurement.

/** What activate() touches of `vscode`; any other name throws, so a new call cannot go unstubbed. */
function fakeVscode(): object {
  const disposable = () => ({ dispose: () => undefined });
  const event = () => disposable();
  class EventEmitter {
    event = event;
    fire(): void {}
    dispose(): void {}
  }
  const strict = (name: string, o: Record<string, unknown>): object =>
    new Proxy(o, {
      get(target, key) {
        if (typeof key === 'symbol' || key in target) return target[key as string];
        // Probes esbuild's and tsc's interop helpers make on the module object.
        if (key === '__esModule' || key === 'default' || key === 'then') return undefined;
        throw new Error(`bench stand-in: vscode.${name ? `${name}.` : ''}${key} is not stubbed; add it to bench/activation.ts`);
      },
    });
  return strict('', {
    EventEmitter,
    StatusBarAlignment: { Left: 1, Right: 2 },
    window: strict('window', {
      createOutputChannel: () => ({ appendLine: () => undefined, append: () => undefined, show: () => undefined, dispose: () => undefined }),
      createStatusBarItem: () => ({ show: () => undefined, hide: () => undefined, dispose: () => undefined }),
    }),
    notebooks: strict('notebooks', {
      createNotebookController: () => ({ dispose: () => undefined }),
      createRendererMessaging: () => ({ onDidReceiveMessage: event, postMessage: async () => true }),
    }),
    workspace: strict('workspace', {
      isTrusted: true,
      notebookDocuments: [],
      registerNotebookSerializer: disposable,
      onDidGrantWorkspaceTrust: event,
      onDidOpenNotebookDocument: event,
      onDidChangeNotebookDocument: event,
      onDidChangeTextDocument: event,
      onDidCloseNotebookDocument: event,
    }),
    languages: strict('languages', {
      createDiagnosticCollection: () => ({ set: () => undefined, delete: () => undefined, clear: () => undefined, dispose: () => undefined }),
      registerCompletionItemProvider: disposable,
      registerHoverProvider: disposable,
    }),
    commands: strict('commands', { registerCommand: disposable }),
  });
}

function measureOnce(entry: string): Sample {
  const Module = require('node:module') as { _load: (request: string, parent: unknown, isMain: boolean) => unknown };
  const vscode = fakeVscode();
  const load = Module._load;
  Module._load = function (request: string, parent: unknown, isMain: boolean) {
    return request === 'vscode' ? vscode : load.call(this, request, parent, isMain);
  };
  const before = new Set(Object.keys(require.cache));
  const storage = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-activation-'));
  const context = {
    subscriptions: [] as { dispose(): unknown }[],
    extensionPath: REPO_ROOT,
    globalStorageUri: { fsPath: storage },
  };
  const t0 = performance.now();
  const ext = require(entry) as { activate: (c: unknown) => unknown };
  const t1 = performance.now();
  ext.activate(context);
  const t2 = performance.now();
  const loaded = Object.keys(require.cache).filter((k) => !before.has(k));
  for (const d of context.subscriptions) d.dispose();
  fs.rmSync(storage, { recursive: true, force: true });
  return {
    requireMs: t1 - t0,
    activateMs: t2 - t1,
    modules: loaded.length,
    heavy: loaded.filter((k) => /onnxruntime|[\\/]sharp[\\/]|[\\/]@img[\\/]|[\\/]extension[\\/]engine[\\/]/.test(k)),
  };
}

// ---------------------------------------------------------------------------------------------
// Parent: alternate the variants in fresh processes.

function sampleInChild(entry: string): Sample {
  const r = spawnSync(process.execPath, [__filename, '--child', entry], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`measuring ${entry} failed (exit ${r.status}): ${r.stderr.trim()}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Sample;
}

function main(): void {
  const a = args();
  if (a.has('child')) {
    process.stdout.write(`${JSON.stringify(measureOnce(a.get('child')!))}\n`);
    return;
  }
  const runs = Number(a.get('runs') ?? 15);
  for (const [name, file] of Object.entries(VARIANTS)) {
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\` first (${name})`);
  }
  printMachine();
  console.log('Measured OUTSIDE VS Code: plain Node processes with a stand-in `vscode` module; see the header of bench/activation.ts.');
  const samples: Record<Variant, Sample[]> = { bundle: [], tsc: [] };
  sampleInChild(VARIANTS.bundle); // warm the OS file cache for both before timing
  sampleInChild(VARIANTS.tsc);
  for (let i = 0; i < runs; i++) {
    for (const v of (i % 2 ? ['tsc', 'bundle'] : ['bundle', 'tsc']) as Variant[]) samples[v].push(sampleInChild(VARIANTS[v]));
  }
  const total = (s: Sample) => s.requireMs + s.activateMs;
  const row = (v: Variant) => {
    const s = samples[v];
    const bytes = fs.statSync(VARIANTS[v]).size;
    return (
      `${v.padEnd(6)} ${path.relative(REPO_ROOT, VARIANTS[v]).padEnd(26)} require ${median(s.map((x) => x.requireMs)).toFixed(1).padStart(6)} ms` +
      `  activate ${median(s.map((x) => x.activateMs)).toFixed(1).padStart(5)} ms  total ${median(s.map(total)).toFixed(1).padStart(6)} ms` +
      ` (${spread(s.map(total))})  modules loaded ${s[0].modules}  entry ${(bytes / 1024).toFixed(0)} kB`
    );
  };
  console.log(row('bundle'));
  console.log(row('tsc'));
  const ratio = median(samples.tsc.map(total)) / median(samples.bundle.map(total));
  console.log(`tsc / bundle (median require + activate): ${ratio.toFixed(2)}x`);
  for (const v of Object.keys(samples) as Variant[]) {
    const heavy = [...new Set(samples[v].flatMap((s) => s.heavy))];
    console.log(`${v}: onnxruntime / sharp / engine modules loaded by activation: ${heavy.length ? heavy.join(', ') : 'none'}`);
  }
}

main();
