// Runs one cell's text against a KernelState: parse, validate, dispatch to the cell kind's
// runner, pack the view. The kernel process (IPC) and the headless runner (`clipn run`) both
// call this, so a notebook gives the same outputs in the editor and in a batch job.
import { parseCell } from '../language/validate';
import { isCellKind } from '../language/schema';
import type { CellKind, KernelSettings, SourcePosition, ViewPayload } from '../protocol';
import { CellError, type KernelState, type RunContext } from './state';
import { packView } from './views';
import { runClasses, runDataset, runModel, runPrompts } from './cells/setup';
import { runEvaluate } from './cells/evaluate';
import { runEmbed } from './cells/embed';
import { runGeometry } from './cells/geometry';
import { runUmap } from './cells/umap';
import { runAblation } from './cells/ablation';

export type Runner = (ctx: RunContext, values: Record<string, unknown>, name: string) => Promise<ViewPayload>;

const RUNNERS: Record<CellKind, Runner> = {
  model: runModel,
  dataset: runDataset,
  classes: runClasses,
  prompts: runPrompts,
  evaluate: runEvaluate,
  embed: runEmbed,
  geometry: runGeometry,
  umap: runUmap,
  ablation: runAblation,
};

export interface CellRun {
  source: string;
  baseDir: string;
  cellNumber: number;
  settings: KernelSettings;
  signal: AbortSignal;
  progress: RunContext['progress'];
}

export type CellOutcome =
  | { ok: true; view: Uint8Array; payload: ViewPayload; text: string; defined: string[] }
  | { ok: false; reason: 'invalid' | 'cancelled' | 'failed'; message: string; position?: SourcePosition };

export async function executeCell(state: KernelState, run: CellRun): Promise<CellOutcome> {
  try {
    run.signal.throwIfAborted();
    const parsed = parseCell(run.source);
    const first = parsed.diagnostics.find((d) => d.severity === 'error');
    if (first) {
      return { ok: false, reason: 'invalid', message: `line ${first.start.line}, column ${first.start.column}: ${first.message}`, position: first.start };
    }
    if (parsed.empty || !parsed.kind || !isCellKind(parsed.kind)) {
      const payload: ViewPayload = { version: 1, kind: 'model', title: 'Empty cell: nothing to run', blocks: [], notes: [] };
      return { ok: true, view: packView(payload).view, payload, text: 'Empty cell', defined: [] };
    }
    const ctx: RunContext = { state, settings: run.settings, baseDir: run.baseDir, cellNumber: run.cellNumber, signal: run.signal, progress: run.progress };
    const payload = await RUNNERS[parsed.kind](ctx, parsed.values, parsed.name ?? parsed.kind);
    run.signal.throwIfAborted();
    const packed = packView(payload);
    return { ok: true, view: packed.view, payload, text: packed.text, defined: parsed.name ? [parsed.name] : [] };
  } catch (err) {
    if (run.signal.aborted) return { ok: false, reason: 'cancelled', message: 'interrupted' };
    const e = err as Error;
    // Errors the user can act on are shown as they are; programming errors keep their stack.
    const bug = !(e instanceof CellError) && ['TypeError', 'RangeError', 'ReferenceError', 'SyntaxError'].includes(e?.name);
    return { ok: false, reason: 'failed', message: bug ? String(e?.stack ?? e) : String(e?.message ?? e) };
  }
}
