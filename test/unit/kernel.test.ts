// The kernel child process without VS Code: cells run in order and define names for later
// cells, invalid cells fail with their line, cancellation stops a cell, a killed process
// settles its pending request as a death; outputs stay within their size budget.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { KernelProcess, describeExit, type RunOutcome } from '../../extension/kernel-process';
import { packView } from '../../extension/kernel/views';
import { principalAxes } from '../../extension/engine/analysis/pca';
import { OUTPUT_BUDGET_BYTES, unpackPayload, type KernelSettings, type ViewPayload } from '../../extension/protocol';
import { exportMicroModel } from './helpers/models';
import { REPO_ROOT } from './helpers/python';

const ENTRY = path.join(REPO_ROOT, 'out', 'extension', 'kernel', 'main.js');
const SAMPLES = path.join(REPO_ROOT, 'samples');

function settings(): KernelSettings {
  return { modelFolder: exportMicroModel(), providers: ['cpu'], batchSize: 16, threads: 1, cacheFolder: fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-kcache-')) };
}

function view(o: RunOutcome): ViewPayload {
  assert.equal(o.type, 'result', JSON.stringify(o));
  return unpackPayload<ViewPayload>((o as { view: Uint8Array }).view);
}

test('cells run in order in the kernel process and refer to earlier definitions', async () => {
  const k = new KernelProcess(ENTRY);
  const s = settings();
  try {
    await k.ready;
    const run = (src: string, n: number) => k.run(src, SAMPLES, n, s).outcome;
    assert.equal(view(await run('model:\n', 1)).kind, 'model');
    assert.equal(view(await run('dataset:\n  name: id\n  role: id\n  folder: images/id\n', 2)).kind, 'dataset');
    assert.equal(view(await run('dataset:\n  name: ood\n  folder: images/ood\n', 3)).kind, 'dataset');
    const progress: string[] = [];
    const ev = view(await k.run('evaluate:\n  id: id\n  ood: ood\n  scores: [msp, atd]\n', SAMPLES, 4, s, (p) => progress.push(p.message)).outcome);
    const table = ev.blocks.find((b) => b.type === 'table');
    assert.ok(table && table.type === 'table');
    assert.deepEqual(table.rows.map((r) => r[0]), ['MSP', 'ATD']);
    assert.ok(progress.length > 0, 'progress was reported');
    const bad = await run('evaluate:\n  id: nope\n  ood: ood\n', 5);
    assert.equal(bad.type, 'error');
    assert.match((bad as { message: string }).message, /no dataset named "nope"/);
    const invalid = await run('dataset:\n  name: x\n  folder: a\n  glob: b\n', 6);
    assert.deepEqual(invalid.type === 'error' && [invalid.reason, invalid.position], ['invalid', { line: 4, column: 3 }]);
  } finally {
    await k.shutdown();
  }
});

test('a killed kernel settles the running request as a death that names the signal', async () => {
  const k = new KernelProcess(ENTRY);
  await k.ready;
  const { outcome } = k.run('model:\n', SAMPLES, 1, settings());
  k.kill();
  const o = await outcome;
  assert.equal(o.type, 'died');
  assert.match((o as { message: string }).message, /was killed \(SIGKILL/);
  assert.equal(k.alive, false);
  const after = await k.run('model:\n', SAMPLES, 2, settings()).outcome;
  assert.equal(after.type, 'died', 'a dead kernel answers at once');
});

test('describeExit words crashes, kills and exit codes', () => {
  assert.match(describeExit(null, 'SIGSEGV'), /native crash/);
  assert.match(describeExit(null, 'SIGKILL'), /out of memory/);
  assert.equal(describeExit(3, null), 'exited with code 3');
});

test('packView thins figures to fit the output budget and says so', () => {
  const n = 400_000;
  const big: ViewPayload = {
    version: 1,
    kind: 'embed',
    title: 't',
    notes: [],
    blocks: [{ type: 'figure', figure: { data: [{ type: 'scattergl', x: new Float32Array(n), y: new Float32Array(n) }], layout: {} } }],
  };
  const packed = packView(big);
  assert.ok(packed.view.length <= OUTPUT_BUDGET_BYTES, `${packed.view.length} bytes`);
  const back = unpackPayload<ViewPayload>(packed.view);
  assert.match(back.notes.join(' '), /down-sampled/);
  const fig = back.blocks[0];
  assert.ok(fig.type === 'figure' && (fig.figure.data[0].x as Float32Array).length < n);
  const small = packView({ ...big, blocks: [] });
  assert.deepEqual(unpackPayload<ViewPayload>(small.view).notes, []);
});

test('principalAxes finds the dominant directions deterministically', () => {
  // Points spread along (1, 1, 0) strongly and (1, -1, 0) weakly.
  const rows: number[] = [];
  for (let i = -10; i <= 10; i++) for (const j of [-1, 1]) rows.push(i + j * 0.5, i - j * 0.5, 0.01 * j);
  const x = Float32Array.from(rows);
  const n = rows.length / 3;
  const a = principalAxes(x, n, 3);
  const b = principalAxes(x, n, 3);
  assert.deepEqual(a.axes.map((v) => Array.from(v)), b.axes.map((v) => Array.from(v)));
  const [u, v] = a.axes;
  assert.ok(Math.abs(Math.abs(u[0]) - Math.SQRT1_2) < 1e-6 && Math.abs(u[0] - u[1]) < 1e-6, `first axis ${Array.from(u)}`);
  assert.ok(Math.abs(Math.abs(v[0]) - Math.SQRT1_2) < 1e-3 && Math.abs(v[0] + v[1]) < 1e-3, `second axis ${Array.from(v)}`);
});
