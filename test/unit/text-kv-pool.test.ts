// The shared-beginnings text workers (text-kv-pool.ts): how rows are shared out, the setting,
// features bit for bit those of the calling thread's session, progress, cancellation, and what
// happens when the workers cannot start or one of them dies mid-call (the rows it did not finish
// run on the calling thread; nothing is lost).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ClipnModel, promptWeights } from '../../extension/engine/encoder';
import type { SharedPrefixRow } from '../../extension/engine/shared-prefix';
import { resolveTextWorkers, shareRows, textKvWorkerFile, workersForMemory } from '../../extension/engine/text-kv-pool';
import { DEFAULT_MODEL_DIR } from './helpers/models';

const CPU = { backend: { executionProviders: ['cpu'] } };
const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

// 16 mixes x 8 classes x 8 templates = 1,024 rows: a call that waits for starting workers.
const TEMPLATES = ['a photo of no {}.', 'there is no {} here.', 'a {}.', '{} is absent.', 'not a {}.', 'a blurry photo without a {}.', 'no {}', 'the {} is missing from this picture.'];
const CLASSES = ['circle', 'red square', 'x', 'star', 'blue triangle', 'arrow', 'ring', 'long green line'];
const MIXES = [promptWeights.mean(), promptWeights.none(), ...Array.from({ length: 14 }, (_, i) => promptWeights.subset([i, (i + 3) % 16]))];

test('shareRows: every row once, in (split, past, own length) order, cut by own tokens + 1 per row', () => {
  const w = new Float32Array(16);
  const rows: SharedPrefixRow[] = [];
  for (let i = 0; i < 41; i++) {
    const split = 1 + (i % 3);
    rows.push({ ids: Array.from({ length: split + 1 + (i % 5) }, (_, k) => k), split, weights: w, past: `p${(7 - i) % 4}` });
  }
  for (const parts of [1, 2, 3, 7, 60]) {
    const shares = shareRows(rows, parts);
    assert.ok(shares.length <= parts && shares.every((s) => s.length > 0), `parts ${parts}: ${shares.length} shares`);
    const flat = shares.flat();
    assert.deepEqual([...flat].sort((a, b) => a - b), rows.map((_, i) => i), `parts ${parts}: each row exactly once`);
    const own = (i: number) => rows[i].ids.length - rows[i].split;
    const cost = (i: number) => own(i) + 1;
    const firstSeen = (past: string) => rows.findIndex((r) => r.past === past);
    for (let k = 1; k < flat.length; k++) {
      const [a, b] = [rows[flat[k - 1]], rows[flat[k]]];
      const [pa, pb] = [firstSeen(a.past), firstSeen(b.past)];
      assert.ok(a.split < b.split || (a.split === b.split && (pa < pb || (pa === pb && own(flat[k - 1]) <= own(flat[k])))), `order at ${k}`);
    }
    if (parts === 2) {
      const costs = shares.map((s) => s.reduce((sum, i) => sum + cost(i), 0));
      // The first share ends at the row that crosses half the total: it overshoots by less than one row (cost 6 at most here).
      assert.ok(Math.abs(costs[0] - costs[1]) <= 2 * 6, `two shares of cost ${costs}: within two rows' worth`);
    }
  }
  assert.deepEqual(shareRows([], 2), []);
});

test('resolveTextWorkers: auto is min(cores, 4) from two cores, else the calling thread; bad settings named', () => {
  assert.equal(resolveTextWorkers('auto', 1), 0);
  assert.equal(resolveTextWorkers(undefined, 2), 2);
  assert.equal(resolveTextWorkers('auto', 16), 4);
  assert.equal(resolveTextWorkers(0, 8), 0);
  assert.equal(resolveTextWorkers(3, 2), 3);
  assert.throws(() => resolveTextWorkers(-1, 2), /textWorkers must be 'auto' or a whole number >= 0/);
  assert.throws(() => resolveTextWorkers(1.5 as number, 2), /textWorkers/);
});

test('workersForMemory: as many sessions (~1.5x the graph file each) as the budget holds, none below two', () => {
  const MB = 2 ** 20;
  assert.equal(workersForMemory(4, 100 * MB, 1024 * MB), 4, '6 fit, 4 asked');
  assert.equal(workersForMemory(4, 100 * MB, 450 * MB), 3);
  assert.equal(workersForMemory(4, 100 * MB, 300 * MB), 2);
  assert.equal(workersForMemory(4, 100 * MB, 299 * MB), 0, 'one would fit: none (one worker only adds a copy of the tower)');
  assert.equal(workersForMemory(2, 256 * MB, 16 * 1024 * MB), 2);
  assert.equal(workersForMemory(0, 1, 1e12), 0);
});

describe('text workers on the default model', () => {
  let reference: Float32Array;
  let here: ClipnModel;
  before(async () => {
    here = await ClipnModel.load(DEFAULT_MODEL_DIR, { ...CPU, textMemoBytes: 0, textWorkers: 0 });
    reference = (await here.encodeClassPromptsNo(CLASSES, TEMPLATES, MIXES, { batchSize: 100 })).data;
    assert.equal(here.textWorkerStats().state, 'off');
  });
  after(async () => {
    await here?.dispose();
  });

  test('two workers give the calling thread\'s bits, whatever the batch, with progress to the end', async () => {
    const m = await ClipnModel.load(DEFAULT_MODEL_DIR, { ...CPU, textMemoBytes: 0, textWorkers: 2 });
    try {
      for (const batchSize of [37, 512]) {
        const seen: number[] = [];
        const got = await m.encodeClassPromptsNo(CLASSES, TEMPLATES, MIXES, { batchSize, onProgress: (p) => seen.push(p.done) });
        assert.ok(bytes(got.data).equals(bytes(reference)), `batch ${batchSize}: features differ from the calling thread's`);
        assert.equal(seen[seen.length - 1], reference.length / m.embedDim);
        assert.ok(seen.every((d, i) => i === 0 || d > seen[i - 1]), 'progress only grows');
      }
      const stats = m.textWorkerStats();
      assert.deepEqual({ state: stats.state, workers: stats.workers, calls: stats.calls }, { state: 'ready', workers: 2, calls: 2 });
    } finally {
      await m.dispose();
    }
  });

  test('with onnxruntime instead of the native tower (nativeText: false), two workers give that calling thread\'s bits too', async () => {
    const options = { ...CPU, textMemoBytes: 0, nativeText: false };
    const alone = await ClipnModel.load(DEFAULT_MODEL_DIR, { ...options, textWorkers: 0 });
    const pooled = await ClipnModel.load(DEFAULT_MODEL_DIR, { ...options, textWorkers: 2 });
    try {
      const ort = (await alone.encodeClassPromptsNo(CLASSES, TEMPLATES, MIXES, { batchSize: 100 })).data;
      const got = await pooled.encodeClassPromptsNo(CLASSES, TEMPLATES, MIXES, { batchSize: 37 });
      assert.ok(bytes(got.data).equals(bytes(ort)), 'features differ from the calling thread\'s');
      assert.equal(pooled.textWorkerStats().state, 'ready');
      assert.equal((await pooled.textTower())?.native, false);
    } finally {
      await Promise.all([alone.dispose(), pooled.dispose()]);
    }
  });

  test('a cancelled call rejects with the signal\'s reason; the next call is whole and exact', async () => {
    const m = await ClipnModel.load(DEFAULT_MODEL_DIR, { ...CPU, textMemoBytes: 0, textWorkers: 2 });
    try {
      const ac = new AbortController();
      const call = m.encodeClassPromptsNo(CLASSES, TEMPLATES, MIXES, { batchSize: 16, signal: ac.signal, onProgress: () => ac.abort(new Error('stop here')) });
      await assert.rejects(call, /stop here/);
      const again = await m.encodeClassPromptsNo(CLASSES, TEMPLATES, MIXES, { batchSize: 64 });
      assert.ok(bytes(again.data).equals(bytes(reference)));
      assert.equal(m.textWorkerStats().state, 'ready');
    } finally {
      await m.dispose();
    }
  });

  test('workers that cannot start, or one that dies mid-call: the calling thread finishes the rows, and stats say why', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-text-workers-'));
    const broken = path.join(dir, 'broken-worker.js');
    fs.writeFileSync(broken, 'throw new Error("this worker cannot load");\n');
    // The real worker, except that it dies on its first job (its own handler would run second).
    const dying = path.join(dir, 'dying-worker.js');
    fs.writeFileSync(dying, `require('node:worker_threads').parentPort.on('message', (m) => { if (m.type === 'job') process.exit(3); });\nrequire(${JSON.stringify(textKvWorkerFile())});\n`);
    const cases: Array<[string, RegExp]> = [
      [path.join(dir, 'missing.js'), /text worker .*missing\.js not found/],
      [broken, /text worker .*broken-worker\.js.*this worker cannot load/],
      [dying, /text worker .*dying-worker\.js.*stopped \(exit code 3\)/],
    ];
    try {
      for (const [file, why] of cases) {
        const m = await ClipnModel.load(DEFAULT_MODEL_DIR, { ...CPU, textMemoBytes: 0, textWorkers: 2, textWorkerFile: file });
        try {
          const got = await m.encodeClassPromptsNo(CLASSES, TEMPLATES, MIXES, { batchSize: 64 });
          assert.ok(bytes(got.data).equals(bytes(reference)), `${path.basename(file)}: features differ`);
          const stats = m.textWorkerStats();
          assert.equal(stats.state, 'failed', path.basename(file));
          assert.match(stats.failed ?? '', why);
          const later = await m.encodeClassPromptsNo(CLASSES.slice(0, 2), TEMPLATES, MIXES.slice(0, 2));
          assert.equal(later.dims[0], 2 * TEMPLATES.length * 2);
        } finally {
          await m.dispose();
        }
      }
      // Disposed right after losing its pool (no later call): closing must not wait for exits that came already.
      const m = await ClipnModel.load(DEFAULT_MODEL_DIR, { ...CPU, textMemoBytes: 0, textWorkers: 2, textWorkerFile: dying });
      await m.encodeClassPromptsNo(CLASSES, TEMPLATES, MIXES, { batchSize: 64 });
      let timer: NodeJS.Timeout | undefined;
      const closed = await Promise.race([m.dispose().then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 3000)))]);
      clearTimeout(timer);
      assert.ok(closed, 'dispose() of a model whose text workers died did not finish within 3 s');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the backend\'s thread count is the budget: one thread means no text workers', async () => {
    const m = await ClipnModel.load(DEFAULT_MODEL_DIR, { backend: { executionProviders: ['cpu'], intraOpNumThreads: 1 }, textMemoBytes: 0 });
    try {
      const got = await m.encodeClassPromptsNo(CLASSES, TEMPLATES, MIXES, { batchSize: 512 });
      assert.ok(bytes(got.data).equals(bytes(reference)));
      assert.deepEqual({ workers: m.textWorkerStats().workers, state: m.textWorkerStats().state }, { workers: 0, state: 'off' });
    } finally {
      await m.dispose();
    }
  });

  test('auto workers are bounded by the memory budget: none that fit means the calling thread, and the stats say why', async () => {
    const auto = resolveTextWorkers('auto', os.availableParallelism());
    const tight = await ClipnModel.load(DEFAULT_MODEL_DIR, { ...CPU, textMemoBytes: 0, textWorkerMemory: 1 });
    const roomy = await ClipnModel.load(DEFAULT_MODEL_DIR, { ...CPU, textMemoBytes: 0, textWorkerMemory: 2 ** 40 });
    try {
      const got = await tight.encodeClassPromptsNo(CLASSES, TEMPLATES, MIXES, { batchSize: 512 });
      assert.ok(bytes(got.data).equals(bytes(reference)), 'the calling thread\'s features');
      const stats = tight.textWorkerStats();
      assert.deepEqual({ workers: stats.workers, state: stats.state }, { workers: 0, state: 'off' });
      // Where 'auto' asks for workers at all (two cores or more), the stats name the cut and the graph.
      if (auto > 0) assert.match(stats.limited ?? '', new RegExp(`^0 of ${auto} text workers: each holds ~\\d+ MB \\(text_no_kv\\.onnx\\), the budget is 0 MB`));
      const wide = await roomy.encodeClassPromptsNo(CLASSES, TEMPLATES, MIXES, { batchSize: 512 });
      assert.ok(bytes(wide.data).equals(bytes(reference)));
      const r = roomy.textWorkerStats();
      assert.deepEqual({ workers: r.workers, state: r.state, limited: r.limited }, { workers: auto, state: auto > 0 ? 'ready' : 'off', limited: undefined });
      // A number of workers asked for is started whatever the budget.
      const asked = await ClipnModel.load(DEFAULT_MODEL_DIR, { ...CPU, textMemoBytes: 0, textWorkers: 2, textWorkerMemory: 1 });
      try {
        await asked.encodeClassPromptsNo(CLASSES, TEMPLATES, MIXES, { batchSize: 512 });
        assert.deepEqual({ workers: asked.textWorkerStats().workers, state: asked.textWorkerStats().state }, { workers: 2, state: 'ready' });
      } finally {
        await asked.dispose();
      }
    } finally {
      await Promise.all([tight.dispose(), roomy.dispose()]);
    }
  });

  test('a bad textWorkerMemory fails the load by name', async () => {
    await assert.rejects(ClipnModel.load(DEFAULT_MODEL_DIR, { ...CPU, textWorkerMemory: -1 }), /textWorkerMemory must be a number of bytes >= 0, got -1/);
  });

  test('a bad textWorkers setting fails the load by name', async () => {
    await assert.rejects(ClipnModel.load(DEFAULT_MODEL_DIR, { ...CPU, textWorkers: -2 }), /textWorkers must be 'auto' or a whole number >= 0/);
  });
});
