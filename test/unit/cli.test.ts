// The built CLI, spawned as a user would: `clipn eval` on the micro model and the sample images
// (table on stdout, JSON equal to a recomputation through the engine API, a cached second run),
// `clipn embed --shard` jobs filling a cache that eval then reads, and the one-line errors and
// exit codes for bad input.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadDataset } from '../../extension/engine/datasets';
import { embedImageSet } from '../../extension/engine/embed';
import { ClipnModel } from '../../extension/engine/encoder';
import { computeMetrics, idAccuracy } from '../../extension/engine/metrics';
import { classFeatures, defaultTemplates } from '../../extension/engine/prompts';
import { scoreFeatures } from '../../extension/engine/scores';
import { shardItems } from '../../extension/cli/embed-shard';
import type { EvalReport } from '../../extension/cli/evaluate';
import { exportMicroModel } from './helpers/models';
import { REPO_ROOT } from './helpers/python';

const CLI = path.join(REPO_ROOT, 'out', 'extension', 'cli', 'clipn.js');
const ID = path.join(REPO_ROOT, 'samples', 'images', 'id');
const OOD = path.join(REPO_ROOT, 'samples', 'images', 'ood');

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function clipn(args: string[], env: Record<string, string> = {}): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The CLI's own error line (native libraries may print their own noise around it). */
function errorLines(r: Run): string[] {
  return r.stderr.split('\n').filter((l) => l.startsWith('clipn: error:'));
}

describe('clipn CLI', () => {
  let tmp: string;
  let model: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-cli-'));
    model = exportMicroModel();
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('eval prints the table and writes JSON equal to the engine API; a second run encodes nothing', async () => {
    const cache = path.join(tmp, 'cache');
    const json = path.join(tmp, 'out', 'eval.json');
    const r = clipn(['eval', '--model', model, '--id', ID, '--ood', OOD, '--cache', cache, '--providers', 'cpu', '--batch', '16', '--json', json]);
    assert.equal(r.status, 0, r.stderr);
    for (const want of ['Method', 'AUROC', 'FPR95', 'AUPR-In', 'AUPR-Out', 'ID acc', 'Average', 'MSP', 'MaxLogit', 'Energy', 'CLIPN-CTW', 'CLIPN-ATD']) {
      assert.ok(r.stdout.includes(want), `stdout lacks ${want}:\n${r.stdout}`);
    }
    assert.match(r.stdout, /provider: images cpu \(144 encoded, 0 from cache\), text cpu/);
    assert.match(r.stdout, /ID: .*samples\/images\/id: 6 classes, 72 images/);
    const report = JSON.parse(fs.readFileSync(json, 'utf8')) as EvalReport;
    assert.equal(report.id.encoded, 72);
    assert.equal(report.ood[0].encoded, 72);
    assert.equal(report.ood[0].name, 'ood');

    // Recompute through the engine API, without the cache (a fresh encode).
    const m = await ClipnModel.load(model, { backend: { executionProviders: ['cpu'] } });
    try {
      const idSet = await loadDataset(ID, { role: 'id' });
      const oodSet = await loadDataset(OOD);
      // The sample class names have no underscores, so the prompts use them unchanged.
      assert.deepEqual(report.promptNames, idSet.classNames);
      const text = await classFeatures(m, idSet.classNames, { templates: defaultTemplates(m.manifest) });
      const idEmb = await embedImageSet(m, idSet);
      const oodEmb = await embedImageSet(m, oodSet);
      const opts = { scale: m.manifest.logit_scale, temperature: 0.01 };
      const sc = (e: typeof idEmb) =>
        scoreFeatures({ image: e.features, n: e.dims[0], dim: e.dims[1], textYes: text.yes.data, textNo: text.no.data, classes: 6 }, opts);
      const idS = sc(idEmb);
      const oodS = sc(oodEmb);
      assert.deepEqual(report.methods.map((x) => x.key), ['msp', 'maxLogit', 'energy', 'ctw', 'atd']);
      for (const method of report.methods) {
        const k = method.key;
        const want = computeMetrics(idS[k], oodS[k]);
        const got = method.perSet.ood;
        assert.deepEqual(
          [got.auroc, got.fpr95, got.fpr95Nearest, got.auprIn, got.auprOut],
          [want.auroc, want.fpr95.interpolated, want.fpr95.nearest, want.auprIn, want.auprOut],
          k,
        );
        assert.deepEqual(method.average, got, 'one OOD set: the average is that set');
        // The table shows the same numbers, in percent.
        const row = r.stdout.split('\n').find((l) => l.startsWith(`${method.label} `))!;
        assert.ok(row.includes((100 * want.auroc).toFixed(2)) && row.includes((100 * want.fpr95.interpolated).toFixed(2)), row);
      }
      assert.equal(report.idAccuracy, idAccuracy(idS.predicted, idSet.items.map((i) => i.label!)));
    } finally {
      await m.dispose();
    }

    const again = clipn(['eval', '--model', model, '--id', ID, '--ood', OOD, '--cache', cache, '--providers', 'cpu', '--json', json]);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /provider: images cache \(0 encoded, 144 from cache\)/);
    const second = JSON.parse(fs.readFileSync(json, 'utf8')) as EvalReport;
    assert.equal(second.id.encoded + second.ood[0].encoded, 0);
    assert.deepEqual(second.methods, report.methods);
  });

  test('embed shards fill the cache; eval on it encodes nothing', () => {
    const cache = path.join(tmp, 'sharded');
    const images = path.join(REPO_ROOT, 'samples', 'images');
    const outs = [0, 1].map((i) => {
      const json = path.join(tmp, `shard${i}.json`);
      const r = clipn(['embed', '--model', model, '--images', images, '--cache', cache, '--shard', `${i}/2`, '--providers', 'cpu', '--json', json]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`shard ${i}/2 of .*: 72 of 144 images`));
      return JSON.parse(fs.readFileSync(json, 'utf8')) as { images: number; encoded: number };
    });
    assert.deepEqual(outs.map((o) => [o.images, o.encoded]), [[72, 72], [72, 72]]);
    const json = path.join(tmp, 'after-shards.json');
    const r = clipn(['eval', '--model', model, '--id', ID, '--ood', OOD, '--cache', cache, '--providers', 'cpu', '--json', json]);
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(fs.readFileSync(json, 'utf8')) as EvalReport;
    assert.deepEqual([report.id.encoded, report.id.fromCache, report.ood[0].encoded, report.ood[0].fromCache], [0, 72, 0, 72]);
  });

  test('shards split the sorted paths into contiguous blocks that cover the set once', () => {
    const items = ['e', 'a', 'd', 'c', 'b', 'g', 'f'].map((p) => ({ path: p }));
    const parts = [0, 1, 2].map((i) => shardItems(items, i, 3).map((x) => x.path));
    assert.deepEqual(parts, [['a', 'b'], ['c', 'd'], ['e', 'f', 'g']]);
  });

  test('a missing model folder: exit 1 and one line naming it', () => {
    const missing = path.join(tmp, 'no-such-model');
    const r = clipn(['eval', '--model', missing, '--id', ID, '--ood', OOD, '--no-cache']);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^clipn: error: ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: model folder not found`));
  });

  test('an empty image folder: exit 1 and one line naming it and what was searched', () => {
    const empty = path.join(tmp, 'empty');
    fs.mkdirSync(empty);
    const r = clipn(['eval', '--model', model, '--id', ID, '--ood', empty, '--cache', path.join(tmp, 'cache2'), '--providers', 'cpu']);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    const lines = errorLines(r);
    assert.equal(lines.length, 1, r.stderr);
    assert.ok(lines[0].startsWith(`clipn: error: ${empty}: no images found (searched ${empty} for image files`), lines[0]);
  });

  test('usage errors exit 2 with the flag named', () => {
    const cases: Array<[string[], RegExp]> = [
      [['eval', '--model', model, '--id', ID], /--ood is required/],
      [['eval', '--model', model, '--id', ID, '--ood', OOD, '--colour', 'red'], /unknown flag --colour/],
      [['eval', '--model', model, '--id', ID, '--ood', OOD, '--batch', '0'], /--batch must be a positive integer, got "0"/],
      [['eval', '--model', model, '--id', ID, '--ood', OOD, '--templates', 'fancy'], /--templates must be one of default, clip80/],
      [['embed', '--model', model, '--images', ID, '--shard', '2/2'], /--shard must be i\/n with 0 <= i < n/],
      [['frobnicate'], /unknown command "frobnicate"/],
    ];
    for (const [args, want] of cases) {
      const r = clipn(args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, want);
    }
    const help = clipn(['help']);
    assert.equal(help.status, 0);
    assert.match(help.stdout, /clipn eval --model DIR --id PATH --ood PATH/);
  });
});
