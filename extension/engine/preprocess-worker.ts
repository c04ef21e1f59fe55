// Worker-thread entry of the preprocessing pool (preprocess-pool.ts): runs preprocessImage on
// the paths/bytes it is sent and answers with the float32 tensor's ArrayBuffer, transferred.
// Each worker keeps a FIFO queue and decodes `perWorker` images at once, so one image's sharp
// decode (on the threadpool) overlaps another's JS resample; a `solo` task (a retry after a
// worker died) runs with nothing beside it, so a crash can be pinned on it. It exits by itself
// on 'close' once the images in flight are done (never terminated mid-decode).
//
// Built by tsc to out/extension/engine/preprocess-worker.js beside preprocess-pool.js; a bundle
// must emit it as its own entry (see preprocess-pool.ts).
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import { ImagePreprocessError, preprocessImage } from './preprocess';
import type { WorkerInit, WorkerReply, WorkerRequest } from './preprocess-worker-messages';

type TaskRequest = Extract<WorkerRequest, { t: 'task' }>;

function serve(port: MessagePort, init: WorkerInit): void {
  const perWorker = Math.max(1, Math.floor(init?.perWorker ?? 2));
  let queue: TaskRequest[] = [];
  let active = 0;
  /** A solo task is running: nothing else starts until it is done. */
  let solo = false;
  let closing = false;
  const reply = (msg: WorkerReply, transfer?: ArrayBuffer[]) => port.postMessage(msg, transfer);

  const maybeExit = () => {
    // Closing the port ends this thread's event loop: the worker exits with code 0.
    if (closing && active === 0 && queue.length === 0) port.close();
  };

  const pump = () => {
    while (queue.length > 0 && !solo && active < perWorker) {
      if (queue[0].solo && active > 0) return; // a solo task waits for the others to finish
      const task = queue.shift()!;
      solo = task.solo;
      active++;
      const input = task.path ?? Buffer.from(task.bytes!.buffer, task.bytes!.byteOffset, task.bytes!.byteLength);
      preprocessImage(input, task.cfg, task.name)
        .then(
          (px) => {
            const buf = px.buffer as ArrayBuffer;
            // preprocessImage allocates its own buffer; copy only if that ever changes.
            const data = px.byteOffset === 0 && px.byteLength === buf.byteLength ? buf : px.slice().buffer;
            reply({ t: 'done', id: task.id, data }, [data]);
          },
          (err: unknown) => {
            const reason = err instanceof ImagePreprocessError ? err.reason : err instanceof Error ? err.message : String(err);
            reply({ t: 'done', id: task.id, reason });
          },
        )
        .finally(() => {
          active--;
          if (task.solo) solo = false;
          pump();
          maybeExit();
        });
    }
  };

  port.on('message', (msg: WorkerRequest) => {
    switch (msg.t) {
      case 'task':
        queue.push(msg);
        pump();
        break;
      case 'cancel':
        queue = queue.filter((task) => (task.job === msg.job ? (reply({ t: 'done', id: task.id, cancelled: true }), false) : true));
        break;
      case 'close':
        closing = true;
        if (!msg.drain) {
          for (const task of queue) reply({ t: 'done', id: task.id, cancelled: true });
          queue = [];
        }
        maybeExit();
        break;
    }
  });
  reply({ t: 'ready' });
}

if (!isMainThread && parentPort) serve(parentPort, workerData as WorkerInit);
