// The GPU bench's end-to-end rows (bench/gpu.ts, --e2e N): N generated JPEGs through (a) the
// engine's encodeImages, (b) decoder worker threads filling shared batch buffers while the main
// thread runs the graph, (c) the same workers without the graph. This module is also the decoder
// workers' script.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { Options } from './gpu-options';
import { firstLine, r1, r2 } from './gpu-results';
import type { Results } from './gpu-results';

export type Sharp = typeof import('sharp').default;

interface DecoderData {
  role: 'decoder';
  cfg: import('../extension/engine/preprocess').PreprocessConfig;
  buffers: SharedArrayBuffer[];
}

interface DecodeTask {
  id: number;
  buf: number;
  slot: number;
  file: string;
}

/** n JPEGs of 500x375 (smooth colour fields + noise + a shape), written with all cores. */
async function writeJpegs(sharp: Sharp, dir: string, n: number): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const w = 500;
  const h = 375;
  const files = Array.from({ length: n }, (_, i) => path.join(dir, `img_${String(i).padStart(5, '0')}.jpg`));
  let next = 0;
  const worker = async () => {
    const px = Buffer.alloc(w * h * 3);
    while (next < n) {
      const i = next++;
      let s = (i + 1) * 2654435761;
      const cx = 100 + ((i * 37) % 300);
      const cy = 80 + ((i * 53) % 220);
      const rad = 40 + ((i * 17) % 60);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          s = (Math.imul(s, 1103515245) + 12345) | 0;
          const noise = ((s >>> 24) & 31) - 16;
          const inside = (x - cx) ** 2 + (y - cy) ** 2 < rad * rad;
          const k = (y * w + x) * 3;
          px[k] = Math.max(0, Math.min(255, (inside ? 230 : (x * 255) / w) + noise));
          px[k + 1] = Math.max(0, Math.min(255, (inside ? 40 : (y * 255) / h) + noise));
          px[k + 2] = Math.max(0, Math.min(255, (inside ? 60 : ((i * 29) % 256)) + noise));
        }
      }
      await sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(files[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, os.availableParallelism()) }, worker));
  return files;
}

/** A pool of decoder workers filling two shared batch buffers. */
class DecoderPool {
  private readonly workers: Worker[];
  private readonly pending = new Map<number, { resolve: () => void; fail: (r: string) => void }>();
  private nextId = 0;
  private rr = 0;
  readonly views: Float32Array[];

  constructor(count: number, cfg: unknown, batch: number, per: number) {
    const buffers = [0, 1].map(() => new SharedArrayBuffer(batch * per * 4));
    this.views = buffers.map((b) => new Float32Array(b));
    this.workers = Array.from({ length: count }, () => {
      const w = new Worker(__filename, { workerData: { role: 'decoder', cfg, buffers } });
      w.on('message', (m: { id: number; ok: boolean; reason?: string }) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (!p) return;
        if (m.ok) p.resolve();
        else p.fail(m.reason ?? 'failed');
      });
      w.on('error', (err) => {
        for (const p of this.pending.values()) p.fail(`decoder worker died: ${firstLine(err)}`);
        this.pending.clear();
      });
      return w;
    });
  }

  /** Decodes files into buffer `buf`, slot i = files[i]; resolves to the failures. */
  fill(buf: number, files: string[]): Promise<string[]> {
    const failures: string[] = [];
    return Promise.all(
      files.map(
        (file, slot) =>
          new Promise<void>((resolve) => {
            const id = this.nextId++;
            this.pending.set(id, { resolve, fail: (r) => (failures.push(`${file}: ${r}`), resolve()) });
            this.workers[this.rr++ % this.workers.length].postMessage({ id, buf, slot, file } satisfies DecodeTask);
          }),
      ),
    ).then(() => failures);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

export async function endToEnd(
  o: Options,
  folder: string,
  label: string,
  provider: string,
  precision: 'fp32' | 'fp16',
  sharp: Sharp,
  res: Results,
  save: () => void,
  note: (s: string) => void,
  error: (s: string) => void,
  left: () => number,
): Promise<void> {
  const { ClipnModel } = require('../extension/engine/encoder') as typeof import('../extension/engine/encoder');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-gpu-jpegs-'));
  try {
    const tg = performance.now();
    const files = await writeJpegs(sharp, dir, o.e2e);
    const genS = (performance.now() - tg) / 1000;
    const bytes = files.reduce((a, f) => a + fs.statSync(f).size, 0);
    console.log(`\n== end to end: ${label}, ${provider} ${precision}, ${files.length} JPEGs 500x375 (${(bytes / files.length / 1024).toFixed(0)} KiB each, written in ${genS.toFixed(1)} s, in the page cache)`);
    sharp.concurrency(1); // many images in flight: one libvips thread each
    const model = await ClipnModel.load(folder, { backend: { executionProviders: provider === 'cpu' ? ['cpu'] : [provider, 'cpu'], intraOpNumThreads: o.threads } });
    try {
      const size = model.imageSize;
      const per = 3 * size * size;
      const batch = o.e2eBatch;
      const report = await model.providerReport(precision === 'fp16' ? 'image_fp16' : 'image');
      if (report.used !== provider) {
        note(`end to end skipped: ${provider} fell through to ${report.used} this time`);
        return;
      }
      // Warm the graph at this batch size so shader/kernel compilation is not timed.
      const warm = new Float32Array(batch * per);
      await model.encodePixels(warm, [batch, 3, size, size], precision);
      const cores = os.availableParallelism();
      const record = (mode: string, seconds: number, extra: Record<string, unknown> = {}) => {
        const row = { model: label, provider: report.used, precision, mode, images: files.length, batch, images_per_s: r1(files.length / seconds), seconds: r2(seconds), ...extra };
        res.e2e.push(row);
        console.log(`   ${mode.padEnd(12)} ${row.images_per_s.toFixed(1).padStart(8)} img/s  (${seconds.toFixed(2)} s${Object.keys(extra).length ? `, ${JSON.stringify(extra)}` : ''})`);
        save();
      };

      // (a) the engine as the extension calls it.
      if (left() > 20) {
        const ta = performance.now();
        const cpu0 = process.cpuUsage();
        const out = await model.encodeImages(files, { batchSize: batch, concurrency: cores, precision });
        const cpu = process.cpuUsage(cpu0);
        const s = (performance.now() - ta) / 1000;
        record('engine', s, { concurrency: cores, failures: out.failures.length, process_cpu_s: r1((cpu.user + cpu.system) / 1e6) });
      } else note('end to end (engine) skipped: deadline');

      // (b) decode in worker threads, graph on the main thread, double-buffered.
      const workers = Math.min(o.e2eWorkers, cores);
      const pool = new DecoderPool(workers, model.manifest.preprocess, batch, per);
      try {
        const chunks: string[][] = [];
        for (let i = 0; i < files.length; i += batch) chunks.push(files.slice(i, i + batch));
        let copied = false;
        const host = new Float32Array(batch * per);
        const runBatch = async (view: Float32Array, rows: number) => {
          const x = view.subarray(0, rows * per);
          if (!copied) {
            try {
              return await model.encodePixels(x, [rows, 3, size, size], precision);
            } catch (err) {
              copied = true;
              note(`shared-memory input refused by onnxruntime-node (${firstLine(err)}): copying each batch`);
            }
          }
          host.set(x);
          return model.encodePixels(host.subarray(0, rows * per), [rows, 3, size, size], precision);
        };
        // Warm the workers (module load, sharp init) outside the timing.
        await pool.fill(0, files.slice(0, Math.min(files.length, workers * 2)));
        for (const graphToo of [true, false]) {
          if (left() < 15) {
            note(`end to end (${graphToo ? 'workers' : 'decode-only'}) skipped: deadline`);
            continue;
          }
          const tb = performance.now();
          let failures = 0;
          let runS = 0;
          let pending = pool.fill(0, chunks[0]);
          for (let k = 0; k < chunks.length; k++) {
            failures += (await pending).length;
            pending = k + 1 < chunks.length ? pool.fill((k + 1) % 2, chunks[k + 1]) : Promise.resolve([]);
            if (graphToo) {
              const tr = performance.now();
              await runBatch(pool.views[k % 2], chunks[k].length);
              runS += (performance.now() - tr) / 1000;
            }
          }
          await pending;
          const s = (performance.now() - tb) / 1000;
          record(graphToo ? 'workers' : 'decode-only', s, { workers, failures, ...(graphToo ? { graph_s: r2(runS), copied_input: copied } : {}) });
        }
      } finally {
        await pool.close();
      }
    } finally {
      await model.dispose();
    }
  } catch (err) {
    error(`end to end: ${firstLine(err)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Entry: a decoder worker.

if (!isMainThread && (workerData as DecoderData | undefined)?.role === 'decoder') {
  const data = workerData as DecoderData;
  const { preprocessInto } = require('../extension/engine/preprocess') as typeof import('../extension/engine/preprocess');
  const views = data.buffers.map((b) => new Float32Array(b));
  const per = 3 * data.cfg.size * data.cfg.size;
  parentPort!.on('message', (task: DecodeTask) => {
    preprocessInto(task.file, data.cfg, views[task.buf], task.slot * per, task.file).then(
      () => parentPort!.postMessage({ id: task.id, ok: true }),
      (err: unknown) => parentPort!.postMessage({ id: task.id, ok: false, reason: String((err as Error)?.message ?? err) }),
    );
  });
}
