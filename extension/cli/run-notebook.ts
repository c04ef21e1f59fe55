// `clipn run`: executes a notebook headless with the editor's kernel code (executeCell on one
// KernelState, cells in order, stopping at the first failure like "Run All"), stores the
// outputs exactly as the editor would (so the written notebook opens in VS Code with the same
// outputs), and writes the self-contained HTML report (extension/report/).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { executeCell, type CellOutcome } from '../kernel/execute';
import { KernelState } from '../kernel/state';
import { PROVIDERS } from '../language/schema';
import { ERROR_MIME, NotebookFormatError, parseNotebook, serializeNotebook, type NbCell, type NbNotebook, type NbOutput } from '../notebook/nbformat';
import { LANGUAGE_ID, MIME, type KernelSettings } from '../protocol';
import { firstHeading } from '../report/markdown';
import { PACKAGE_ROOT, writeReport, type ReportCell, type ReportInput } from '../report/writer';
import { parseArgs, positiveInt, providerList, UsageError, type FlagKind } from './args';
import { defaultCacheRoot, oneLine } from './common';

export const RUN_USAGE = `  clipn run NOTEBOOK [--html REPORT.html] [--out NOTEBOOK] [--model-folder DIR]
            [--providers cuda,webgpu,cpu] [--batch-size N] [--cache-folder DIR]`;

export const RUN_HELP = `clipn run executes every clipn code cell of NOTEBOOK in order with the editor's kernel and
stops at the first failing cell (exit 1, "cell N, line L: message" on stderr). Cells are
numbered by position in the notebook, markdown cells included, as in the editor.
  --out FILE      write the notebook with its new outputs to FILE (FILE may be NOTEBOOK
                  itself); without --out the notebook file is left unchanged
  --html FILE     write a self-contained HTML report (works offline, fetches nothing)
  --model-folder  the model for cells without \`folder:\` (default: the bundled models/default)
  --providers     onnxruntime execution providers to try, in order (default cuda,webgpu,cpu)
  --batch-size    images per encoder run (default: by the provider, 32 on CPU, 64 on GPUs)
  --cache-folder  embedding cache (default $CLIPN_CACHE or ~/.cache/clipn-lab, shared with
                  eval and embed)
Relative paths in cells resolve against the notebook's folder. On a failure the report and
--out notebook are still written, the failing cell holding the error, as in the editor.
Exit status: 0 every cell ran, 1 a cell failed, 2 bad arguments or a notebook file that is
missing or not a notebook, 130 interrupted.`;

const RUN_FLAGS: Record<string, FlagKind> = { html: 'one', out: 'one', 'model-folder': 'one', providers: 'one', 'batch-size': 'one', 'cache-folder': 'one' };

/** The notebook file is missing or not a notebook: exit status 2, like bad arguments. */
export class NotebookInputError extends UsageError {
  constructor(message: string) {
    super(message);
    this.name = 'NotebookInputError';
  }
}

export interface RunOptions {
  notebook: string;
  html?: string;
  out?: string;
  settings: KernelSettings;
}

/** The extension's defaults (package.json `clipn.*`), with the bundled model and the CLI's cache. */
export function defaultRunSettings(): KernelSettings {
  return { modelFolder: path.join(PACKAGE_ROOT, 'models', 'default'), providers: [...PROVIDERS], batchSize: 0, threads: 0, cacheFolder: defaultCacheRoot() };
}

export function parseRunArgs(argv: readonly string[]): RunOptions {
  const args = parseArgs(argv, RUN_FLAGS, 'run', 1);
  const notebook = args.positional[0];
  if (!notebook) throw new UsageError('run: give the notebook to run (clipn run NOTEBOOK.clipnb)');
  const providers = providerList(args, 'run');
  for (const p of providers ?? []) {
    if (!(PROVIDERS as readonly string[]).includes(p)) throw new UsageError(`run: --providers: unknown provider ${JSON.stringify(p)} (known: ${PROVIDERS.join(', ')})`);
  }
  const defaults = defaultRunSettings();
  const folder = (name: string, fallback: string) => {
    const v = args.one.get(name);
    if (v === '') throw new UsageError(`run: --${name} needs a folder`);
    return v === undefined ? fallback : path.resolve(v);
  };
  const opts: RunOptions = {
    notebook,
    html: args.one.get('html'),
    out: args.one.get('out'),
    settings: {
      modelFolder: folder('model-folder', defaults.modelFolder),
      providers: providers ?? defaults.providers,
      batchSize: positiveInt(args, 'batch-size', 'run', defaults.batchSize),
      threads: defaults.threads,
      cacheFolder: folder('cache-folder', defaults.cacheFolder),
    },
  };
  const same = (a?: string, b?: string) => a !== undefined && b !== undefined && path.resolve(a) === path.resolve(b);
  if (same(opts.html, opts.notebook) || same(opts.html, opts.out)) throw new UsageError('run: --html must name a file other than the notebook');
  return opts;
}

/** Reads and parses the notebook; every problem names the file. */
export function readNotebookFile(file: string): NbNotebook {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a folder, not a notebook' : (err as Error).message;
    throw new NotebookInputError(`${file}: cannot read the notebook: ${why}`);
  }
  try {
    return parseNotebook(bytes);
  } catch (err) {
    if (err instanceof NotebookFormatError) throw new NotebookInputError(`${file}: not a notebook: ${err.message}`);
    throw err;
  }
}

export interface CellResult {
  /** Index into the notebook's cells. */
  index: number;
  /** 1-based position in the notebook (what messages call "cell N"). */
  number: number;
  status: 'ok' | 'failed' | 'cancelled';
  seconds: number;
  executionCount: number;
  outcome: CellOutcome;
}

export interface NotebookRun {
  results: CellResult[];
  /** The cell that stopped the run, if one did. */
  stopped?: CellResult;
  /** Code cells in another language (the CLIPN kernel does not run them, nor does the editor's). */
  skipped: number[];
  seconds: number;
}

export interface RunHooks {
  onStart?(cell: { number: number; ordinal: number; total: number }): void;
  onProgress?(number: number, message: string, done?: number, total?: number): void;
  onDone?(result: CellResult): void;
}

const enc = new TextEncoder();

/** The output item(s) the editor's controller writes for an outcome (see controller.ts finish()). */
function outputsFor(number: number, outcome: CellOutcome): NbOutput[] {
  if (outcome.ok) return [{ items: [{ mime: MIME.view, data: outcome.view }, { mime: MIME.text, data: enc.encode(outcome.text) }] }];
  const name = outcome.reason === 'cancelled' ? 'Interrupted' : outcome.reason === 'invalid' ? 'InvalidCell' : 'CellFailed';
  const message = outcome.reason === 'cancelled' ? 'Interrupted.' : `Cell ${number}: ${outcome.message}`;
  return [{ items: [{ mime: ERROR_MIME, data: enc.encode(JSON.stringify({ name, message, stack: '' })) }] }];
}

const runnable = (c: NbCell) => c.kind === 'code' && c.language === LANGUAGE_ID;

/**
 * Runs the notebook's clipn cells in order on a fresh kernel state, replacing each run cell's
 * outputs and execution count in `nb` as the editor does. Cells after a failure keep what they
 * had, as after "Run All" in the editor.
 */
export async function executeNotebook(nb: NbNotebook, baseDir: string, settings: KernelSettings, signal: AbortSignal, hooks: RunHooks = {}): Promise<NotebookRun> {
  const started = performance.now();
  const state = new KernelState();
  const order = nb.cells.map((_, i) => i).filter((i) => runnable(nb.cells[i]));
  const run: NotebookRun = { results: [], skipped: nb.cells.flatMap((c, i) => (c.kind === 'code' && !runnable(c) ? [i + 1] : [])), seconds: 0 };
  try {
    for (const [k, index] of order.entries()) {
      const number = index + 1;
      const cell = nb.cells[index];
      hooks.onStart?.({ number, ordinal: k + 1, total: order.length });
      const t0 = performance.now();
      const outcome = await executeCell(state, {
        source: cell.source,
        baseDir,
        cellNumber: number,
        settings,
        signal,
        progress: (message, done, total) => hooks.onProgress?.(number, message, done, total),
      });
      cell.outputs = outputsFor(number, outcome);
      cell.executionCount = k + 1;
      const status = outcome.ok ? 'ok' : outcome.reason === 'cancelled' ? 'cancelled' : 'failed';
      const result: CellResult = { index, number, status, seconds: (performance.now() - t0) / 1000, executionCount: k + 1, outcome };
      run.results.push(result);
      hooks.onDone?.(result);
      if (!outcome.ok) {
        run.stopped = result;
        break;
      }
    }
  } finally {
    await state.dispose();
  }
  run.seconds = (performance.now() - started) / 1000;
  return run;
}

/** "cell N, line L: message" (invalid cells) or "cell N: message". */
export function failureLine(r: CellResult): string {
  if (r.outcome.ok) return `cell ${r.number}: ok`;
  if (r.outcome.reason === 'cancelled') return `cell ${r.number}: interrupted`;
  const pos = r.outcome.position;
  // executeCell puts "line L, column C: " before an invalid cell's message; say it once.
  const message = pos ? r.outcome.message.replace(/^line \d+, column \d+: /, '') : r.outcome.message;
  return pos ? `cell ${r.number}, line ${pos.line}: ${message}` : `cell ${r.number}: ${message}`;
}

function outcomeText(nb: NbNotebook, run: NotebookRun): { text: string; failed: boolean } {
  const total = nb.cells.filter(runnable).length;
  if (!run.stopped) return { text: `All ${total} code cells ran in ${run.seconds.toFixed(1)} s.`, failed: false };
  const left = total - run.results.length;
  const what = run.stopped.status === 'cancelled' ? 'Interrupted at' : 'Stopped at';
  const cells = (n: number) => `${n} code cell${n === 1 ? '' : 's'}`;
  return { text: `${what} ${failureLine(run.stopped)}. ${cells(run.results.length - 1)} ran before it; ${cells(left)} after it did not run.`, failed: true };
}

/** What the report shows: every cell, with this run's outputs for the cells that ran. */
export function reportInput(nb: NbNotebook, run: NotebookRun, title: string, facts: Array<[string, string]>): ReportInput {
  const byIndex = new Map(run.results.map((r) => [r.index, r]));
  const cells = nb.cells.map((c, index): ReportCell => {
    const number = index + 1;
    if (c.kind !== 'code') return { kind: c.kind, number, source: c.source };
    const r = byIndex.get(index);
    if (!r) return { kind: 'code', number, source: c.source, status: runnable(c) ? 'not-run' : 'skipped' };
    const base = { kind: 'code' as const, number, source: c.source, executionCount: r.executionCount, seconds: r.seconds };
    if (r.outcome.ok) return { ...base, status: 'ok', view: r.outcome.view, text: r.outcome.text };
    const error = r.outcome.reason === 'cancelled' ? 'Interrupted.' : `Cell ${number}: ${r.outcome.message}`;
    return { ...base, status: 'failed', error };
  });
  return { title, facts, outcome: outcomeText(nb, run), cells };
}

function writeAtomically(file: string, data: Uint8Array): void {
  const abs = path.resolve(file);
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  const tmp = `${abs}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, abs);
}

function packageVersion(): string {
  try {
    return String(JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')).version ?? '');
  } catch {
    return '';
  }
}

/** Terminal feedback: a redrawn progress line on a terminal, a line a second in logs. */
function consoleHooks(): RunHooks {
  const tty = process.stderr.isTTY;
  let last = 0;
  let label = '';
  const clear = () => tty && process.stderr.write('\r\x1b[K');
  return {
    onStart: ({ number, ordinal, total }) => {
      label = `cell ${number} (${ordinal}/${total})`;
      last = 0;
      if (tty) process.stderr.write(`\r\x1b[K${label}: starting`);
      else process.stderr.write(`${label}: starting\n`);
    },
    onProgress: (_number, message, done, total) => {
      const now = Date.now();
      if (now - last < (tty ? 150 : 1000)) return;
      last = now;
      const frac = total ? ` (${Math.round((100 * (done ?? 0)) / total)}%)` : '';
      if (tty) process.stderr.write(`\r\x1b[K${label}: ${oneLine(message)}${frac}`);
      else process.stderr.write(`${label}: ${oneLine(message)}${frac}\n`);
    },
    onDone: (r) => {
      clear();
      if (r.outcome.ok) {
        const title = r.outcome.payload.title;
        process.stdout.write(`cell ${r.number} [${r.outcome.payload.kind}] ok in ${r.seconds.toFixed(2)} s: ${oneLine(title)}\n`);
      }
    },
  };
}

/** `clipn run ...`: returns the exit status (0 all ran, 1 a cell failed, 130 interrupted). */
export async function runCommand(argv: readonly string[]): Promise<number> {
  const opts = parseRunArgs(argv);
  const nb = readNotebookFile(opts.notebook);
  const notebookPath = path.resolve(opts.notebook);
  const abort = new AbortController();
  const onSigint = () => abort.abort(new Error('interrupted'));
  process.once('SIGINT', onSigint);
  let run: NotebookRun;
  try {
    run = await executeNotebook(nb, path.dirname(notebookPath), opts.settings, abort.signal, consoleHooks());
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
  if (run.stopped) process.stderr.write(`clipn: error: ${oneLine(failureLine(run.stopped))}\n`);
  for (const n of run.skipped) process.stderr.write(`clipn: warning: cell ${n} is not a clipn cell; not run\n`);
  const ran = run.results.filter((r) => r.status === 'ok').length;
  process.stdout.write(`${ran} of ${nb.cells.filter(runnable).length} code cells ran in ${run.seconds.toFixed(2)} s\n`);

  if (opts.out) {
    writeAtomically(opts.out, serializeNotebook(nb));
    process.stdout.write(`wrote notebook ${path.resolve(opts.out)}\n`);
  }
  if (opts.html) {
    const title = nb.cells.map((c) => (c.kind === 'markdown' ? firstHeading(c.source) : undefined)).find(Boolean) ?? path.basename(notebookPath);
    const facts: Array<[string, string]> = [
      ['notebook', notebookPath],
      ['run', new Date().toISOString().replace(/\.\d+Z$/, 'Z')],
      ['model folder', opts.settings.modelFolder],
      ['providers', opts.settings.providers.join(', ')],
      ['CLIPN Lab', packageVersion()],
    ];
    writeReport(opts.html, reportInput(nb, run, title, facts));
    process.stdout.write(`wrote report ${path.resolve(opts.html)}\n`);
  }
  if (!opts.out && !opts.html) process.stdout.write('(no --out or --html: nothing was written)\n');
  return !run.stopped ? 0 : run.stopped.status === 'cancelled' ? 130 : 1;
}
