// The worker-thread preprocessing pool (extension/engine/preprocess-pool.ts) against the
// in-process path: bit-identical tensors and identical failure reasons for a mix of JPEG, PNG,
// buffers and broken files; dying workers; a missing or broken worker file; cancellation; shutdown
// (child processes that must exit by themselves); and encodeImages with workers vs without.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import type { Sharp } from 'sharp';
import { ClipnModel } from '../../extension/engine/encoder';
import type { EncodeProgress, ImageSource } from '../../extension/engine/encoder';
import { ImagePreprocessError, preprocessImage } from '../../extension/engine/preprocess';
import type { ImageInput, PreprocessConfig } from '../../extension/engine/preprocess';
import { defaultPreprocessWorkerFile, PreprocessPool } from '../../extension/engine/preprocess-pool';
import { autoPreprocessWorkers, resolvePreprocessWorkers } from '../../extension/engine/preprocess-worker-count';
import { DEFAULT_MODEL_DIR, defaultModelPresent, exportMicroModel } from './helpers/models';

const cfg = (size: number): PreprocessConfig => ({
  size,
  resize_mode: 'shortest',
  interpolation: 'bicubic',
  crop: 'center',
  mean: [0.48145466, 0.4578275, 0.40821073],
  std: [0.26862954, 0.26130258, 0.27577711],
});
const CFG = cfg(64);

function bitEqual(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** A seeded photo-like pattern. */
function pattern(width: number, height: number, channels: 1 | 3 | 4, seed: number): Sharp {
  const buf = Buffer.alloc(width * height * channels);
  let s = seed;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      s = (Math.imul(s, 1103515245) + 12345) | 0;
      const noise = ((s >>> 24) & 31) - 16;
      const i = (y * width + x) * channels;
      const v = [(x * 255) / width, (y * 255) / height, 128 + 60 * Math.sin(x / 7)];
      for (let c = 0; c < channels; c++) buf[i + c] = Math.max(0, Math.min(255, (c < 3 ? v[c] : (x + y) % 256) + noise));
    }
  }
  return sharp(buf, { raw: { width, height, channels } });
}

let dir = '';
/** Good and bad inputs, with names. */
let inputs: Array<{ input: ImageInput; name: string }> = [];
/** The good image files. */
let good: string[] = [];
let bad: { text: string; truncated: string; empty: string; missing: string };

/** What the in-process path gives: the tensor or the failure reason. */
async function reference(input: ImageInput, name: string, c = CFG): Promise<Float32Array | string> {
  try {
    return await preprocessImage(input, c, name);
  } catch (err) {
    assert.ok(err instanceof ImagePreprocessError, `unexpected error ${String(err)}`);
    return err.reason;
  }
}

async function viaJob(job: ReturnType<PreprocessPool['job']>, input: ImageInput, name: string): Promise<Float32Array | string> {
  try {
    return await job.preprocess(input, name);
  } catch (err) {
    assert.ok(err instanceof ImagePreprocessError, `unexpected error ${String(err)}`);
    assert.equal(err.file, name);
    return err.reason;
  }
}

/**
 * A failure reason without sharp's own message in parentheses: for a truncated JPEG libvips says
 * "premature end of JPEG image" or "Warning treated as error" depending on what else is being
 * decoded at the time (its error buffer is process-wide), in-process too.
 */
function category(reason: string): string {
  return reason.replace(/ \(.*\)$/s, '');
}

function assertSame(got: Float32Array | string, want: Float32Array | string, name: string): void {
  if (typeof want === 'string') assert.equal(typeof got === 'string' && category(got), category(want), `${name}: reason`);
  else assert.ok(typeof got !== 'string' && bitEqual(got, want), `${name}: tensor differs (${typeof got === 'string' ? got : 'values'})`);
}

/**
 * Runs a few images through the pool and waits until `n` workers are ready, so what follows
 * runs in workers (while none is ready the pool works on the calling thread).
 */
async function warm(pool: PreprocessPool, n: number): Promise<void> {
  const job = pool.job(CFG);
  await Promise.all(Array.from({ length: 6 * n }, (_, i) => job.preprocess(good[i % good.length], 'warm-up')));
  const until = Date.now() + 20_000;
  while (pool.stats().ready < n) {
    assert.ok(Date.now() < until, `workers not ready: ${JSON.stringify(pool.stats())}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A worker file that wraps the real one and dies when it starts decoding chosen image names. */
function crashingWorker(): string {
  const file = path.join(dir, 'crashing-worker.js');
  const real = defaultPreprocessWorkerFile();
  fs.writeFileSync(
    file,
    `const pre = require(${JSON.stringify(path.join(path.dirname(real), 'preprocess.js'))});
const preprocessImage = pre.preprocessImage;
pre.preprocessImage = (input, cfg, name) => {
  if (name.includes('exit-me')) process.exit(3);
  if (name.includes('throw-me')) setImmediate(() => { throw new Error('boom in worker'); });
  return preprocessImage(input, cfg, name);
};
require(${JSON.stringify(real)});
`,
  );
  return file;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-pool-'));
  const write = async (name: string, img: Sharp) => {
    const file = path.join(dir, name);
    await img.toFile(file);
    good.push(file);
    return file;
  };
  await write('photo_a.jpg', pattern(500, 375, 3, 1).jpeg({ quality: 90 }));
  await write('photo_b.jpg', pattern(375, 500, 3, 2).jpeg({ quality: 85 }));
  await write('grey.jpg', pattern(90, 60, 1, 3).jpeg());
  await write('rgb.png', pattern(64, 48, 3, 4).png());
  await write('rgba.png', pattern(40, 70, 4, 5).png());
  await write('grey.png', pattern(33, 33, 1, 6).png());
  await write('exact.png', pattern(64, 64, 3, 7).png());
  bad = {
    text: path.join(dir, 'not-an-image.jpg'),
    truncated: path.join(dir, 'truncated.jpg'),
    empty: path.join(dir, 'empty.png'),
    missing: path.join(dir, 'missing.png'),
  };
  fs.writeFileSync(bad.text, 'this is text, not a JPEG');
  const jpeg = fs.readFileSync(good[0]);
  fs.writeFileSync(bad.truncated, jpeg.subarray(0, Math.floor(jpeg.length / 2)));
  fs.writeFileSync(bad.empty, '');
  // A buffer that is a view into a larger ArrayBuffer (only its own bytes must be used).
  const png = fs.readFileSync(good[3]);
  const big = Buffer.concat([Buffer.alloc(100, 7), png, Buffer.alloc(100, 9)]);
  inputs = [
    ...good.map((f) => ({ input: f as ImageInput, name: f })),
    ...Object.values(bad).map((f) => ({ input: f as ImageInput, name: f })),
    { input: jpeg, name: 'jpeg buffer' },
    { input: big.subarray(100, 100 + png.length), name: 'png view buffer' },
    { input: Buffer.from('garbage bytes'), name: 'garbage buffer' },
  ];
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('PreprocessPool', () => {
  test('tensors are bit-identical to preprocessImage, failures carry the same reasons (JPEG, PNG, buffers, broken files)', async () => {
    const pool = new PreprocessPool({ size: 2 });
    try {
      await warm(pool, 2);
      const before = pool.stats();
      const job = pool.job(CFG);
      const got = await Promise.all(inputs.map((x) => viaJob(job, x.input, x.name)));
      for (let i = 0; i < inputs.length; i++) assertSame(got[i], await reference(inputs[i].input, inputs[i].name), inputs[i].name);
      const reasons = got.filter((g): g is string => typeof g === 'string');
      assert.equal(reasons.length, 5);
      assert.ok(reasons.some((r) => /not found/.test(r)) && reasons.some((r) => /empty/.test(r)));
      // Another size through the same workers (the config travels with the job).
      const job224 = pool.job(cfg(224));
      assertSame(await viaJob(job224, good[0], good[0]), await reference(good[0], good[0], cfg(224)), '224 px');
      const stats = pool.stats();
      assert.ok(stats.byWorkers - before.byWorkers >= good.length + 3 && stats.inProcess === before.inProcess && stats.threads === 2, JSON.stringify(stats));
    } finally {
      await pool.close();
    }
    assert.equal(pool.stats().threads, 0);
  });

  test('a worker that dies is replaced: the image that killed it fails with a reason, every other image is right', async () => {
    const pool = new PreprocessPool({ size: 2, workerFile: crashingWorker() });
    try {
      await warm(pool, 2);
      const exitMe = path.join(dir, 'exit-me.png');
      const throwMe = path.join(dir, 'throw-me.png');
      fs.copyFileSync(good[3], exitMe);
      fs.copyFileSync(good[4], throwMe);
      const list = [good[0], good[1], exitMe, good[2], good[3], throwMe, good[4], good[5], good[6]];
      const job = pool.job(CFG);
      const got = await Promise.all(list.map((f) => viaJob(job, f, f)));
      for (let i = 0; i < list.length; i++) {
        if (list[i] === exitMe) assert.match(got[i] as string, /worker stopped while decoding this image, twice \(exit code 3\)/);
        else if (list[i] === throwMe) assert.match(got[i] as string, /worker stopped while decoding this image, twice \(error: boom in worker\)/);
        else assertSame(got[i], await reference(list[i], list[i]), list[i]);
      }
      assert.ok(pool.stats().crashes >= 4, JSON.stringify(pool.stats()));
      // The pool still works afterwards.
      const again = pool.job(CFG);
      assertSame(await viaJob(again, good[6], good[6]), await reference(good[6], good[6]), 'after crashes');
    } finally {
      await pool.close();
    }
  });

  test('a missing worker file is a clear error; a worker that cannot start makes the pool preprocess in-process', async () => {
    assert.throws(() => new PreprocessPool({ size: 1, workerFile: path.join(dir, 'nope.js') }), /nope\.js not found.*preprocessWorkerFile.*preprocessWorkers to 0/);
    const broken = path.join(dir, 'broken-worker.js');
    fs.writeFileSync(broken, "throw new Error('cannot load this worker');\n");
    const pool = new PreprocessPool({ size: 2, workerFile: broken });
    try {
      for (let round = 0; round < 2; round++) {
        const job = pool.job(CFG);
        const got = await Promise.all(inputs.map((x) => viaJob(job, x.input, x.name)));
        for (let i = 0; i < inputs.length; i++) assertSame(got[i], await reference(inputs[i].input, inputs[i].name), inputs[i].name);
        // The failed start is noticed asynchronously (the first images may be done by then).
        const until = Date.now() + 10_000;
        while ((!pool.broken || pool.stats().threads > 0) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      }
      assert.match(pool.broken ?? '', /did not start \(error: cannot load this worker\); preprocessing on the calling thread/);
      const { threads, byWorkers, inProcess, crashes } = pool.stats();
      assert.deepEqual({ threads, byWorkers, inProcess, crashes }, { threads: 0, byWorkers: 0, inProcess: 2 * (good.length + 2), crashes: 0 });
    } finally {
      await pool.close();
    }
  });

  test('cancel: pending images reject at once with the signal reason, queued ones are dropped, the pool keeps working', async () => {
    const pool = new PreprocessPool({ size: 1 });
    try {
      await warm(pool, 1);
      const controller = new AbortController();
      const job = pool.job(CFG, controller.signal);
      const settled: Array<'ok' | 'aborted'> = [];
      let abortedAt = 0;
      const runs = Array.from({ length: 60 }, () =>
        job.preprocess(good[0], good[0]).then(
          () => {
            settled.push('ok');
            if (!abortedAt) {
              abortedAt = performance.now();
              controller.abort();
            }
          },
          (err: Error) => {
            assert.equal(err.name, 'AbortError');
            settled.push('aborted');
          },
        ),
      );
      await Promise.all(runs);
      const latency = performance.now() - abortedAt;
      assert.ok(latency < 1000, `cancel took ${latency} ms`);
      assert.ok(settled.filter((s) => s === 'aborted').length >= 50, settled.join(','));
      // An already-aborted signal rejects without work.
      await assert.rejects(pool.job(CFG, AbortSignal.abort()).preprocess(good[0], good[0]), { name: 'AbortError' });
      const again = pool.job(CFG);
      assertSame(await viaJob(again, good[1], good[1]), await reference(good[1], good[1]), 'after cancel');
      const { byWorkers, inProcess } = pool.stats();
      assert.ok(byWorkers + inProcess < 20, `dropped images were still decoded: ${JSON.stringify(pool.stats())}`);
    } finally {
      await pool.close();
    }
  });

  test('close drops pending work; processes exit by themselves after close, after dispose, and with an idle pool', () => {
    const poolModule = require.resolve('../../extension/engine/preprocess-pool');
    const encoderModule = require.resolve('../../extension/engine/encoder');
    const folder = defaultModelPresent() ? DEFAULT_MODEL_DIR : exportMicroModel();
    const run = (body: string) => {
      const script = `const { PreprocessPool } = require(${JSON.stringify(poolModule)});
const { ClipnModel } = require(${JSON.stringify(encoderModule)});
const cfg = ${JSON.stringify(CFG)};
const f = ${JSON.stringify(good[0])};
(async () => { ${body} })().catch((e) => { console.error(e); process.exitCode = 1; });`;
      const t = performance.now();
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
      return { ...r, ms: performance.now() - t };
    };
    const closed = run(`
      const pool = new PreprocessPool({ size: 2 });
      const job = pool.job(cfg);
      await Promise.all([job.preprocess(f, 'a'), job.preprocess(f, 'b'), job.preprocess(f, 'c')]);
      const pending = Array.from({ length: 40 }, () => job.preprocess(f, 'late').then(() => 'ok', (e) => e.message));
      await pool.close();
      const outcomes = await Promise.all(pending);
      const afterClose = await job.preprocess(f, 'x').then(() => 'ok', (e) => e.message);
      console.log('closed', pool.stats().threads, outcomes.filter((o) => /pool was closed/.test(o)).length, /pool was closed/.test(afterClose));`);
    assert.equal(closed.signal, null, `did not exit by itself: ${closed.stderr}`);
    assert.equal(closed.status, 0, closed.stderr);
    const [, threads, rejected, refused] = closed.stdout.trim().split(/\s+/);
    assert.equal(threads, '0');
    assert.ok(Number(rejected) >= 30, closed.stdout);
    assert.equal(refused, 'true');

    const idle = run(`
      const pool = new PreprocessPool({ size: 2, idleTimeoutMs: 600000 });
      const job = pool.job(cfg);
      await Promise.all(['a', 'b', 'c', 'd'].map((name) => job.preprocess(f, name)));
      console.log('idle', pool.stats().threads);`);
    assert.equal(idle.signal, null, `an idle pool kept the process alive: ${idle.stderr}`);
    assert.equal(idle.status, 0, idle.stderr);
    assert.match(idle.stdout.trim(), /^idle [12]$/);

    const disposed = run(`
      const model = await ClipnModel.load(${JSON.stringify(folder)}, { backend: { executionProviders: ['cpu'] }, preprocessWorkers: 2 });
      const out = await model.encodeImages(Array(12).fill(f), { batchSize: 4 });
      const threads = model.preprocessPoolStats().threads;
      await model.dispose();
      console.log('disposed', out.dims[0], threads);`);
    assert.equal(disposed.signal, null, `did not exit after dispose: ${disposed.stderr}`);
    assert.equal(disposed.status, 0, disposed.stderr);
    assert.match(disposed.stdout.trim(), /^disposed 12 [12]$/);
  });
});

describe('how many workers', () => {
  test("'auto' is cores - 1 (at most 16) above 2 cores, in-process on 2 or fewer; bad settings are errors", async () => {
    assert.deepEqual([1, 2, 3, 4, 16, 64].map((c) => autoPreprocessWorkers(c)), [0, 0, 2, 3, 15, 16]);
    assert.equal(resolvePreprocessWorkers('auto', 8), 7);
    assert.equal(resolvePreprocessWorkers(undefined, 2), 0);
    assert.equal(resolvePreprocessWorkers(0), 0);
    assert.equal(resolvePreprocessWorkers(3), 3);
    for (const badSetting of [-1, 1.5, 'many' as unknown as number]) assert.throws(() => resolvePreprocessWorkers(badSetting), /preprocessWorkers must be 'auto' or a whole number/);
    const folder = defaultModelPresent() ? DEFAULT_MODEL_DIR : exportMicroModel();
    await assert.rejects(ClipnModel.load(folder, { preprocessWorkers: -2 }), /preprocessWorkers must be/);
  });
});

describe('encodeImages with preprocessing workers', () => {
  let model: ClipnModel;
  let sources: ImageSource[] = [];

  before(async () => {
    const folder = defaultModelPresent() ? DEFAULT_MODEL_DIR : exportMicroModel();
    model = await ClipnModel.load(folder, { backend: { executionProviders: ['cpu'] } });
    sources = [
      good[0],
      bad.text,
      good[3],
      fs.readFileSync(good[1]),
      bad.missing,
      good[4],
      { name: 'named.png', data: fs.readFileSync(good[5]) },
      bad.truncated,
      good[2],
      bad.empty,
      good[6],
    ];
  });

  after(async () => {
    await model?.dispose();
  });

  test('equals the in-process path: bit-identical rows, same order, failures and progress', async () => {
    const progress = (into: number[]) => (p: EncodeProgress) => into.push(p.done);
    const seen0: number[] = [];
    const seen2: number[] = [];
    const inProcess = await model.encodeImages(sources, { batchSize: 3, preprocessWorkers: 0, onProgress: progress(seen0) });
    assert.equal(model.preprocessPoolStats(), undefined, 'preprocessWorkers: 0 started a pool');
    // Start the workers first (until they are ready the pool works on this thread).
    await model.encodeImages([...good, ...good], { batchSize: 7, preprocessWorkers: 2 });
    const until = Date.now() + 20_000;
    while (model.preprocessPoolStats()!.ready < 2) {
      assert.ok(Date.now() < until, `workers not ready: ${JSON.stringify(model.preprocessPoolStats())}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const before = model.preprocessPoolStats()!;
    const workers = await model.encodeImages(sources, { batchSize: 3, preprocessWorkers: 2, onProgress: progress(seen2) });
    assert.ok(bitEqual(workers.data, inProcess.data), 'embeddings differ');
    assert.deepEqual(workers.dims, inProcess.dims);
    assert.deepEqual(workers.indices, [0, 2, 3, 5, 6, 8, 10]);
    assert.deepEqual(workers.indices, inProcess.indices);
    assert.deepEqual(workers.files, inProcess.files);
    const plain = (list: typeof workers.failures) => list.map((f) => ({ ...f, reason: category(f.reason) }));
    assert.deepEqual(plain(workers.failures), plain(inProcess.failures));
    assert.deepEqual(workers.failures.map((f) => f.index), [1, 4, 7, 9]);
    assert.deepEqual(seen2, [3, 6, 9, 11]);
    assert.deepEqual(seen2, seen0);
    const stats = model.preprocessPoolStats()!;
    assert.ok(stats.byWorkers - before.byWorkers >= 7 && stats.inProcess === before.inProcess && stats.size === 2 && stats.threads === 2, JSON.stringify(stats));
  });

  test('abort stops within a second, between batches; the workers stay usable', async () => {
    const many = Array.from({ length: 600 }, (_, i) => good[i % good.length]);
    const controller = new AbortController();
    let abortedAt = 0;
    let batchesAfterAbort = 0;
    const run = model.encodeImages(many, {
      batchSize: 4,
      preprocessWorkers: 2,
      signal: controller.signal,
      onProgress: (p) => {
        if (abortedAt) batchesAfterAbort++;
        if (p.done >= 8 && !abortedAt) {
          abortedAt = performance.now();
          controller.abort();
        }
      },
    });
    await assert.rejects(run, { name: 'AbortError' });
    assert.ok(abortedAt > 0, 'never aborted');
    const latency = performance.now() - abortedAt;
    assert.ok(latency < 1000, `abort took ${latency} ms`);
    assert.equal(batchesAfterAbort, 0);
    // From a timer, mid-run.
    const timed = new AbortController();
    let progressed = 0;
    let timerAt = 0;
    const run2 = model.encodeImages(many, { batchSize: 4, preprocessWorkers: 2, signal: timed.signal, onProgress: (p) => (progressed = p.done) });
    setTimeout(() => {
      timerAt = performance.now();
      timed.abort();
    }, 150);
    await assert.rejects(run2, { name: 'AbortError' });
    const latency2 = performance.now() - timerAt;
    assert.ok(latency2 < 1000, `timer abort took ${latency2} ms`);
    assert.ok(progressed < many.length, `progress at abort: ${progressed}`);
    await assert.rejects(model.encodeImages(many, { preprocessWorkers: 2, signal: AbortSignal.abort() }), { name: 'AbortError' });
    // Queued images of the aborted runs were dropped, not decoded: the next run is not stuck behind them.
    const before = model.preprocessPoolStats()!.byWorkers + model.preprocessPoolStats()!.inProcess;
    const t = performance.now();
    const a = await model.encodeImages(good, { preprocessWorkers: 2 });
    const b = await model.encodeImages(good, { preprocessWorkers: 0 });
    assert.ok(bitEqual(a.data, b.data));
    const stats = model.preprocessPoolStats()!;
    const decoded = stats.byWorkers + stats.inProcess - before;
    assert.ok(decoded <= good.length + 8, `aborted images were still decoded: ${decoded}`);
    assert.ok(stats.threads <= 2 && stats.crashes === 0, JSON.stringify(stats));
    assert.ok(performance.now() - t < 20_000);
  });
});
