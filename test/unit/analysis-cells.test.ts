// The analysis cells (geometry, umap, ablation, and evaluate as the OOD report) run through the
// kernel's own executeCell on the bundled default model and the sample images. The engine
// modules have their own reference tests; these check the wiring against independent
// computations: the cells' numbers equal the engine's scores and metrics on the same features,
// one cell's numbers agree with another's, figures are reproducible, and a snippet the ablation
// offers is a cell that runs and reproduces what the ablation promised.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { executeCell } from '../../extension/kernel/execute';
import { KernelState } from '../../extension/kernel/state';
import { packPayload, type Block, type FigureSpec, type KernelSettings, type ViewPayload } from '../../extension/protocol';
import { ClipnModel } from '../../extension/engine/encoder';
import { classFeatures } from '../../extension/engine/prompts';
import { embedImageSet } from '../../extension/engine/embed';
import { loadDataset } from '../../extension/engine/datasets';
import { scoreFeatures } from '../../extension/engine/scores';
import { computeMetrics } from '../../extension/engine/metrics';
import { parseCell } from '../../extension/language/validate';
import { DEFAULT_MODEL_DIR } from './helpers/models';
import { REPO_ROOT } from './helpers/python';

const IMAGES = path.join(REPO_ROOT, 'samples');
const SETUP = [
  `model:\n  folder: ${JSON.stringify(DEFAULT_MODEL_DIR)}\n  providers: [cpu]\n`,
  'dataset:\n  name: id\n  role: id\n  folder: images/id\n',
  'dataset:\n  name: ood\n  role: ood\n  folder: images/ood\n',
  'prompts:\n  name: learned\n  templates: ["a photo of a {}.", "a {}."]\n  no:\n    learned: mean\n',
];

function settings(cache: string): KernelSettings {
  return { modelFolder: DEFAULT_MODEL_DIR, providers: ['cpu'], batchSize: 32, threads: 0, cacheFolder: cache };
}

/** A kernel with the setup cells run; `run` executes one more cell and returns its view. */
async function kernel() {
  const state = new KernelState();
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-cells-'));
  let n = 0;
  const exec = async (source: string) => {
    const o = await executeCell(state, { source, baseDir: IMAGES, cellNumber: ++n, settings: settings(cache), signal: new AbortController().signal, progress: () => undefined });
    return o;
  };
  const run = async (source: string): Promise<ViewPayload> => {
    const o = await exec(source);
    if (!o.ok) throw new Error(`cell ${n} failed: ${o.message}`);
    return o.payload;
  };
  for (const s of SETUP) await run(s);
  return { state, run, exec, dispose: () => state.dispose() };
}

const figures = (v: ViewPayload) => v.blocks.filter((b): b is Extract<Block, { type: 'figure' }> => b.type === 'figure');
const tables = (v: ViewPayload) => v.blocks.filter((b): b is Extract<Block, { type: 'table' }> => b.type === 'table');

/** Independent features and scores for the sample sets, computed with the engine directly. */
async function reference() {
  const model = await ClipnModel.load(DEFAULT_MODEL_DIR, { backend: { executionProviders: ['cpu'] } });
  const id = await loadDataset(path.join(IMAGES, 'images/id'));
  const ood = await loadDataset(path.join(IMAGES, 'images/ood'));
  const idE = await embedImageSet(model, id);
  const oodE = await embedImageSet(model, ood);
  const text = await classFeatures(model, id.classNames, { templates: ['a photo of a {}.', 'a {}.'] });
  const score = (e: typeof idE) => scoreFeatures({ image: e.features, n: e.dims[0], dim: e.dims[1], textYes: text.yes.data, textNo: text.no.data, classes: text.classes.length });
  return { model, id, ood, idE, oodE, text, idS: score(idE), oodS: score(oodE) };
}

let refPromise: ReturnType<typeof reference> | undefined;
const ref = () => (refPromise ??= reference());

test('umap: seeded and reproducible, coloured by the engine\'s ATD scores, text features placed, images attached', async () => {
  const k = await kernel();
  try {
    const src = 'umap:\n  dataset: [id, ood]\n  prompts: learned\n  color: atd\n  text: true\n  seed: 7\n  epochs: 60\n';
    const a = figures(await k.run(src))[0].figure;
    const b = figures(await k.run(src))[0].figure;
    const c = figures(await k.run(src.replace('seed: 7', 'seed: 8')))[0].figure;
    const bytes = (f: FigureSpec) => Buffer.from(packPayload(f));
    assert.ok(bytes(a).equals(bytes(b)), 'the same seed gives a byte-identical figure');
    assert.ok(!Buffer.from(a.data[0].x as Float32Array).equals(Buffer.from(c.data[0].x as Float32Array)), 'another seed moves the points');

    const r = await ref();
    const n = r.idE.dims[0] + r.oodE.dims[0];
    const [points, yes, no] = a.data;
    assert.equal(points.x!.length, n);
    // The colour is the ATD score of each image, as scoreFeatures computes it (same features).
    const atd = [...r.idS.atd, ...r.oodS.atd];
    const color = points.color as Float32Array;
    for (let i = 0; i < n; i++) assert.ok(Math.abs(color[points.image![i]] - atd[points.image![i]]) < 1e-6, `ATD colour of image ${i}`);
    assert.deepEqual([yes.name, no.name, yes.x!.length, no.x!.length], ['"yes" text', '"no" text', 6, 6]);
    // Every point carries its image: a path that exists, and a JPEG thumbnail.
    const img = a.images!;
    assert.equal(img.paths.length, n);
    assert.ok(img.paths.every((p) => path.isAbsolute(p) && fs.existsSync(p)));
    const off = img.thumbOffsets!;
    assert.equal(off.length, n + 1);
    const first = img.thumbs!.subarray(off[0], off[1]);
    assert.deepEqual([first[0], first[1]], [0xff, 0xd8], 'thumbnails are JPEGs');
    assert.equal(a.selectable, true);
    assert.deepEqual(img.columns!.map((c) => c.name), ['set', 'role', 'class', 'predicted', 'msp', 'ctw', 'atd']);
  } finally {
    await k.dispose();
  }
});

test('umap: by class without prompts needs no text; a 3-D layout has a third coordinate; bad settings name the key', async () => {
  const k = await kernel();
  try {
    const byClass = figures(await k.run('umap:\n  dataset: id\n  color: class\n  epochs: 20\n'))[0].figure;
    assert.deepEqual(byClass.data.map((t) => t.name).sort(), ['arrow', 'circle', 'cross', 'square', 'star', 'triangle']);
    const three = figures(await k.run('umap:\n  dataset: [id, ood]\n  dimensions: 3\n  epochs: 20\n'))[0].figure;
    assert.ok(three.data.every((t) => t.type === 'scatter3d' && t.z3!.length === t.x!.length));
    const bad = await k.exec('umap:\n  dataset: [id, ood]\n  dimensions: 4\n');
    assert.ok(!bad.ok && /dimensions: UMAP draws 2 or 3 dimensions, got 4/.test(bad.message));
    const missing = await k.exec('umap:\n  dataset: nope\n');
    assert.ok(!missing.ok && /dataset: no dataset named "nope"/.test(missing.message), !missing.ok ? missing.message : '');
  } finally {
    await k.dispose();
  }
});

test('geometry: per-class yes/no cosines and the CTW split of the images agree with the engine', async () => {
  const k = await kernel();
  try {
    const v = await k.run('geometry:\n  prompts: learned\n  images: [id, ood]\n');
    const r = await ref();
    const d = r.model.embedDim;
    const table = tables(v)[0];
    r.text.classes.forEach((cls, c) => {
      let dot = 0;
      for (let j = 0; j < d; j++) dot += r.text.yes.data[c * d + j] * r.text.no.data[c * d + j];
      const row = table.rows.find((x) => x[0] === cls)!;
      assert.ok(Math.abs((row[1] as number) - dot) < 1e-5, `${cls}: cos ${row[1]} vs ${dot}`);
    });
    const figs = figures(v);
    // Per-prompt heatmap (16 learned prompts), class similarity heatmap, 2-D and 3-D PCA, images.
    assert.deepEqual(figs.map((f) => f.figure.data[0].type), ['heatmap', 'heatmap', 'scatter', 'scatter3d', 'scatter']);
    assert.equal(figs[0].figure.data[0].z!.length, 16);
    const imageFig = figs[4].figure;
    const ctwOod = (s: typeof r.idS) => s.ctwIsOod.reduce((a, x) => a + x, 0);
    assert.match(imageFig.data[0].name!, new RegExp(`^id \\(ID\\): ${ctwOod(r.idS)}/${r.idE.dims[0]} called OOD by CTW`));
    assert.match(imageFig.data[1].name!, new RegExp(`^ood \\(OOD\\): ${ctwOod(r.oodS)}/${r.oodE.dims[0]} called OOD by CTW`));
    assert.equal(imageFig.data[2].name, 'CTW boundary (cos no = cos yes)');
  } finally {
    await k.dispose();
  }
});

test('evaluate is the OOD report: metrics equal computeMetrics on the engine\'s scores; the worst cases are the extreme scores', async () => {
  const k = await kernel();
  try {
    const v = await k.run('evaluate:\n  ood: [ood]\n  prompts: learned\n');
    const r = await ref();
    const rows = tables(v)[0].rows;
    for (const [label, key] of [['MSP', 'msp'], ['CTW', 'ctw'], ['ATD', 'atd']] as const) {
      const m = computeMetrics(r.idS[key], r.oodS[key]);
      const row = rows.find((x) => x[0] === label)!;
      assert.ok(Math.abs((row[2] as number) - m.auroc * 100) < 1e-9, `${label} AUROC`);
      assert.ok(Math.abs((row[3] as number) - m.fpr95.interpolated * 100) < 1e-9, `${label} FPR95`);
    }
    const galleries = v.blocks.filter((b): b is Extract<Block, { type: 'gallery' }> => b.type === 'gallery');
    assert.deepEqual(galleries.map((g) => g.title), ['Worst false positives by ATD: OOD images that look most ID', 'Worst false negatives by ATD: ID images that look least ID']);
    const topOod = [...r.oodS.atd].sort((a, b) => b - a).slice(0, 8);
    galleries[0].items.forEach((it, i) => assert.match(it.caption!, new RegExp(`^ATD ${topOod[i].toFixed(4)} `)));
    assert.ok(galleries[0].items.every((it) => it.thumb && it.thumb[0] === 0xff && fs.existsSync(it.path)));
    assert.equal(figures(v).length, 3, 'ROC curves, CTW and ATD histograms');
    assert.ok(!v.notes.some((n) => n.includes('context')), 'no template is cut');
    // A template longer than the tiny model's 16 tokens: its class name is cut away, and the note says so.
    await k.run('prompts:\n  name: long\n  templates: ["there is nothing at all like a {} in this close-up photo.", "a {}."]\n  no:\n    learned: mean\n');
    const long = await k.run('evaluate:\n  ood: [ood]\n  prompts: long\n  scores: [ctw]\n');
    assert.ok(long.notes.some((n) => /^1 of the 2 "yes" templates are cut at the model's 16-token context for some classes \(6 of 12 texts\); 1 of them are cut before the class name tells the classes apart/.test(n)), long.notes.join('\n'));
  } finally {
    await k.dispose();
  }
});

test('ablation: the full pool matches the evaluate cell, and the best-subset snippet runs and scores what it promised', async () => {
  const k = await kernel();
  try {
    const evalView = await k.run('evaluate:\n  ood: [ood]\n  prompts: learned\n  scores: [ctw, atd]\n');
    const atdAuroc = tables(evalView)[0].rows.find((x) => x[0] === 'ATD')![2] as number;
    const v = await k.run('ablation:\n  ood: [ood]\n  prompts: learned\n  pool: learned\n  greedy: 2\n');
    const full = tables(v)[0];
    const col = full.columns.findIndex((c) => c.label === 'ATD AUROC');
    assert.ok(Math.abs((full.rows[0][col] as number) - atdAuroc) < 1e-6, `ablation full pool ATD AUROC ${full.rows[0][col]} vs evaluate ${atdAuroc}`);
    assert.equal(tables(v)[1].rows.length, 16, 'each learned prompt alone');
    assert.equal(tables(v)[2].rows.length, 16, 'each left out');
    const snippet = v.blocks.find((b): b is Extract<Block, { type: 'snippet' }> => b.type === 'snippet')!;
    assert.deepEqual(parseCell(snippet.text).diagnostics, [], snippet.text);
    const promised = Number(/ATD AUROC ([\d.]+)\)/.exec(snippet.title!)![1]);
    await k.run(snippet.text);
    const best = await k.run('evaluate:\n  ood: [ood]\n  prompts: ablation_best\n  scores: [atd]\n');
    assert.ok(Math.abs((tables(best)[0].rows[0][2] as number) - promised) < 0.006, `snippet's pool scores ${tables(best)[0].rows[0][2]}, promised ${promised}`);
  } finally {
    await k.dispose();
  }
});

test('ablation: a hand-written pool from its prompts cell; one template has no leave-one-out; one ID class flags ATD', async () => {
  const k = await kernel();
  try {
    await k.run('prompts:\n  name: hand\n  templates: ["a photo of a {}."]\n  no:\n    templates: ["a photo of no {}.", "not a {}.", "no {} here."]\n');
    const v = await k.run('ablation:\n  ood: [ood]\n  prompts: hand\n  greedy: 0\n');
    assert.match(v.title, /3 hand-written templates/);
    assert.deepEqual(tables(v)[1].rows.map((r) => r[0]), ['a photo of no {}.', 'not a {}.', 'no {} here.']);
    // The kernel remembers scored variants: with the third template edited, the first two alone
    // and the pool without the third are the same variants, taken as they were, not re-scored.
    const edited = await k.run('ablation:\n  ood: [ood]\n  prompts: hand\n  pool: ["a photo of no {}.", "not a {}.", "nothing like a {} here."]\n  greedy: 0\n');
    const reused = edited.notes.map((n) => /(\d+) unchanged since an earlier run/.exec(n)).find(Boolean);
    assert.equal(reused?.[1], '3', edited.notes.join('\n'));
    assert.deepEqual(tables(edited)[1].rows.slice(0, 2), tables(v)[1].rows.slice(0, 2));
    assert.notDeepEqual(tables(edited)[1].rows[2].slice(1), tables(v)[1].rows[2].slice(1), 'the edited template alone is scored anew');
    const one = await k.run('ablation:\n  ood: [ood]\n  pool: ["a photo of no {}."]\n  greedy: 0\n');
    assert.equal(tables(one).length, 2, 'full pool and alone; no leave-one-out table');
    await k.run('classes:\n  name: single\n  names: [circle]\n');
    const single = await k.run('ablation:\n  ood: [ood]\n  classes: single\n  pool: ["a photo of no {}.", "not a {}."]\n  greedy: 1\n');
    assert.ok(single.notes.some((n) => /ATD is degenerate/.test(n)), single.notes.join('\n'));
  } finally {
    await k.dispose();
  }
});
