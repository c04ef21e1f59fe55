// The kernel process (started with child_process.fork by the extension). It owns the
// onnxruntime sessions, caches and cell definitions, so a native crash or an out-of-memory
// kill takes down only this process: the extension host reports it and forks a fresh one.
// Requests run one at a time, in arrival order; `cancel` aborts the running one between
// batches (the extension kills the process if that takes longer than it may wait).
import { parseCell } from '../language/validate';
import { isCellKind } from '../language/schema';
import type { CellKind, FromKernel, RunRequest, ToKernel, ViewPayload } from '../protocol';
import { CellError, KernelState, type RunContext } from './state';
import { packView } from './views';
import { runClasses, runDataset, runModel, runPrompts } from './cells/setup';
import { runEvaluate } from './cells/evaluate';
import { runEmbed } from './cells/embed';

type Runner = (ctx: RunContext, values: Record<string, unknown>, name: string) => Promise<ViewPayload>;

const RUNNERS: Record<CellKind, Runner> = {
  model: runModel,
  dataset: runDataset,
  classes: runClasses,
  prompts: runPrompts,
  evaluate: runEvaluate,
  embed: runEmbed,
};

const state = new KernelState();
const running = new Map<number, AbortController>();
let queue: Promise<void> = Promise.resolve();

function send(msg: FromKernel): void {
  process.send?.(msg);
}

async function run(req: RunRequest): Promise<void> {
  const abort = running.get(req.requestId)!;
  try {
    if (abort.signal.aborted) throw abort.signal.reason;
    const parsed = parseCell(req.source);
    const first = parsed.diagnostics.find((d) => d.severity === 'error');
    if (first) {
      send({ type: 'error', requestId: req.requestId, reason: 'invalid', message: `line ${first.start.line}, column ${first.start.column}: ${first.message}`, position: first.start });
      return;
    }
    if (parsed.empty || !parsed.kind || !isCellKind(parsed.kind)) {
      send({ type: 'result', requestId: req.requestId, view: packView({ version: 1, kind: 'model', title: 'Empty cell: nothing to run', blocks: [], notes: [] }).view, text: 'Empty cell', defined: [] });
      return;
    }
    let lastProgress = 0;
    const ctx: RunContext = {
      state,
      settings: req.settings,
      baseDir: req.baseDir,
      cellNumber: req.cellNumber,
      signal: abort.signal,
      progress: (message, done, total) => {
        // At most ~10 messages a second: progress is for eyes, IPC is not free.
        const now = performance.now();
        if (now - lastProgress < 100 && done !== total) return;
        lastProgress = now;
        send({ type: 'progress', requestId: req.requestId, message, done, total });
      },
    };
    const view = await RUNNERS[parsed.kind](ctx, parsed.values, parsed.name ?? parsed.kind);
    abort.signal.throwIfAborted();
    const packed = packView(view);
    send({ type: 'result', requestId: req.requestId, view: packed.view, text: packed.text, defined: parsed.name ? [parsed.name] : [] });
  } catch (err) {
    if (abort.signal.aborted) {
      send({ type: 'error', requestId: req.requestId, reason: 'cancelled', message: 'interrupted' });
    } else {
      const e = err as Error;
      // Errors the user can act on are shown as they are; programming errors keep their stack.
      const bug = !(e instanceof CellError) && ['TypeError', 'RangeError', 'ReferenceError', 'SyntaxError'].includes(e?.name);
      send({ type: 'error', requestId: req.requestId, reason: 'failed', message: bug ? String(e?.stack ?? e) : String(e?.message ?? e) });
    }
  } finally {
    running.delete(req.requestId);
  }
}

process.on('message', (raw: unknown) => {
  const msg = raw as ToKernel;
  switch (msg.type) {
    case 'run':
      running.set(msg.requestId, new AbortController());
      queue = queue.then(() => run(msg));
      break;
    case 'cancel':
      running.get(msg.requestId)?.abort(new Error('interrupted'));
      break;
    case 'clearCache':
      queue = queue.then(() => {
        try {
          const removed = state.clearCache(msg.cacheFolder);
          send({ type: 'cacheCleared', requestId: msg.requestId, removed });
        } catch (err) {
          send({ type: 'error', requestId: msg.requestId, reason: 'failed', message: (err as Error).message });
        }
      });
      break;
    case 'shutdown':
      void state.dispose().finally(() => process.exit(0));
      break;
  }
});

// The extension host going away must not leave an orphan holding a GPU.
process.on('disconnect', () => process.exit(0));
send({ type: 'ready', pid: process.pid });
