// The kernel process (started with child_process.fork by the extension). It owns the
// onnxruntime sessions, caches and cell definitions, so a native crash or an out-of-memory
// kill takes down only this process: the extension host reports it and forks a fresh one.
// Requests run one at a time, in arrival order; `cancel` aborts the running one between
// batches (the extension kills the process if that takes longer than it may wait).
import type { FromKernel, RunRequest, ToKernel } from '../protocol';
import { KernelState } from './state';
import { executeCell } from './execute';

const state = new KernelState();
const running = new Map<number, AbortController>();
let queue: Promise<void> = Promise.resolve();

function send(msg: FromKernel): void {
  process.send?.(msg);
}

async function run(req: RunRequest): Promise<void> {
  const abort = running.get(req.requestId)!;
  let lastProgress = 0;
  try {
    const outcome = await executeCell(state, {
      source: req.source,
      baseDir: req.baseDir,
      cellNumber: req.cellNumber,
      settings: req.settings,
      signal: abort.signal,
      progress: (message, done, total) => {
        // At most ~10 messages a second: progress is for eyes, IPC is not free.
        const now = performance.now();
        if (now - lastProgress < 100 && done !== total) return;
        lastProgress = now;
        send({ type: 'progress', requestId: req.requestId, message, done, total });
      },
    });
    if (outcome.ok) send({ type: 'result', requestId: req.requestId, view: outcome.view, text: outcome.text, defined: outcome.defined });
    else send({ type: 'error', requestId: req.requestId, reason: outcome.reason, message: outcome.message, position: outcome.position });
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
