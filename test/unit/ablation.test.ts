// The "no" pool ablation (engine/analysis/ablation.ts) against the slow way: every variant's
// features from prompts.ts (handcraftedAblation, learnedPromptAblation, ensembleByClass,
// noFeaturesForMixes), scored with scoreFeatures and computeMetrics, to 1e-9 on every metric;
// the greedy path against brute force over small subsets; the full pool once more against
// numpy + scikit-learn. Bundled default model, seeded random image features.
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import { ablateNoPool, AblationError } from '../../extension/engine/analysis/ablation';
import type { AblationInput, AblationMemo, AblationObjective, AblationResult, VariantMetrics } from '../../extension/engine/analysis/ablation';
import { AtdGraph } from '../../extension/engine/analysis/atd-graph';
import { nativeKernels } from '../../extension/engine/analysis/native-kernels';
import { margins, rowSide, writeScores } from '../../extension/engine/analysis/variant-math';
import { VariantMemo } from '../../extension/engine/analysis/variant-memo';
import { CHUNK_ELEMENTS, keepScorer, releaseAblationScorers, takeKeptScorer, VariantScorer } from '../../extension/engine/analysis/variant-scorer';
import { OrtBackend } from '../../extension/engine/backend';
import { ClipnModel, promptWeights } from '../../extension/engine/encoder';
import { computeMetrics, idAccuracy } from '../../extension/engine/metrics';
import { classPrompts, ensembleByClass, handcraftedAblation, learnedPromptAblation, noFeaturesForMixes } from '../../extension/engine/prompts';
import { gaussian, normalisedRows } from '../../extension/engine/random';
import { scoreFeatures } from '../../extension/engine/scores';
import { DEFAULT_MODEL_DIR, defaultModelPresent } from './helpers/models';
import { runPythonJson } from './helpers/python';

/** Metrics are rank statistics: equal up to the rounding of a division. */
const TOL = 1e-9;
const CLASSES = ['cat', 'dog', 'car', 'tree'];
const POOL = ['a photo of no {}.', 'a photo without a {}.', 'a {} that is not there.', 'not a {}.'];
/** On these images, ATD FPR95 improves from the best single template to a pair (ties and stops otherwise). */
const GREEDY_POOL = ['a photo of no {}.', 'a {}.', 'the {} is missing.', 'no {} here.'];
const N_ID = 120;
const N_OOD = 80;

/** ID rows near their class's yes feature (label i % C), OOD rows random. */
function images(yes: Float32Array, c: number, d: number, seed = 5): { id: Float32Array; ood: Float32Array; labels: Int32Array } {
  const next = gaussian(seed);
  const id = new Float32Array(N_ID * d);
  for (let i = 0; i < N_ID; i++) {
    let s = 0;
    for (let k = 0; k < d; k++) s += (id[i * d + k] = 0.3 * yes[(i % c) * d + k] + 0.09 * next()) ** 2;
    for (let k = 0; k < d; k++) id[i * d + k] /= Math.sqrt(s);
  }
  return { id, ood: normalisedRows(N_OOD, d, next), labels: Int32Array.from({ length: N_ID }, (_, i) => i % c) };
}

function assertMetricsEqual(got: VariantMetrics, want: VariantMetrics, what: string): void {
  for (const s of ['ctw', 'atd'] as const) {
    for (const m of ['auroc', 'fpr95', 'auprIn', 'auprOut'] as const) {
      assert.ok(Math.abs(got[s][m] - want[s][m]) <= TOL, `${what}: ${s} ${m} ${got[s][m]} vs ${want[s][m]}`);
    }
  }
}

const valueOf = (m: VariantMetrics, o: AblationObjective) => m[o.score][o.metric];
const better = (a: number, b: number, o: AblationObjective) => (o.metric === 'auroc' ? a > b : a < b);

describe('no-pool ablation on the default model', { skip: !defaultModelPresent() && 'models/default is not built' }, () => {
  let model: ClipnModel;
  let yes: Float32Array;
  let data: ReturnType<typeof images>;
  let base: AblationInput;
  let slow: (no: Float32Array, classes?: number, x?: { id: Float32Array; ood: Float32Array }) => VariantMetrics;

  before(async () => {
    model = await ClipnModel.load(DEFAULT_MODEL_DIR, { backend: { executionProviders: ['cpu'] } });
    const d = model.embedDim;
    const templates = model.manifest.templates!;
    yes = ensembleByClass((await model.encodeTexts(classPrompts(CLASSES, templates))).data, d, CLASSES.length, templates.length).data;
    data = images(yes, CLASSES.length, d);
    base = { model, classes: CLASSES, idFeatures: data.id, idN: N_ID, oodFeatures: data.ood, oodN: N_OOD, pool: { kind: 'templates', templates: POOL } };
    // The slow way: one scoreFeatures + computeMetrics per variant.
    slow = (no, c = CLASSES.length, x = data) => {
      const image = new Float32Array((N_ID + N_OOD) * d);
      image.set(x.id);
      image.set(x.ood, N_ID * d);
      const s = scoreFeatures({ image, n: N_ID + N_OOD, dim: d, textYes: yes.subarray(0, c * d), textNo: no, classes: c });
      const m = (v: Float64Array) => {
        const r = computeMetrics(v.subarray(0, N_ID), v.subarray(N_ID));
        return { auroc: r.auroc, fpr95: r.fpr95.interpolated, auprIn: r.auprIn, auprOut: r.auprOut };
      };
      return { ctw: m(s.ctw), atd: m(s.atd) };
    };
  });
  after(async () => {
    await releaseAblationScorers();
    await model?.dispose();
  });

  test('hand-written pool: full, alone and leave-one-out equal the slow way on handcraftedAblation features', async () => {
    const pool = POOL.slice(0, 3);
    const r = await ablateNoPool({ ...base, pool: { kind: 'templates', templates: pool }, greedySteps: 0, idLabels: data.labels });
    const h = await handcraftedAblation(model, CLASSES, { templates: pool });
    assert.deepEqual(r.prompts, pool);
    assert.equal(r.kind, 'templates');
    assertMetricsEqual(r.full, slow(h.all.data), 'full');
    h.alone.forEach((f, k) => assertMetricsEqual(r.alone[k].metrics, slow(f.data), `alone ${k}`));
    h.leaveOneOut.forEach((f, k) => assertMetricsEqual(r.leaveOneOut[k].metrics, slow(f.data), `leave out ${k}`));
    assert.equal(r.alone[1].label, pool[1]);
    assert.equal(r.leaveOneOut[2].change.atd.auroc, r.leaveOneOut[2].metrics.atd.auroc - r.full.atd.auroc);
    assert.equal(r.alone[0].change.ctw.fpr95, r.alone[0].metrics.ctw.fpr95 - r.full.ctw.fpr95);
    assert.deepEqual(r.greedy, { steps: [], best: undefined, stopped: 'off' });
    // The variants differ (the test could not pass with the pool ignored).
    assert.notEqual(r.alone[0].metrics.atd.auroc, r.alone[1].metrics.atd.auroc);
    // ID accuracy: once, from the yes side.
    const pred = scoreFeatures({ image: data.id, n: N_ID, dim: model.embedDim, textYes: yes, textNo: h.all.data, classes: CLASSES.length }).predicted;
    assert.equal(r.idAccuracy, idAccuracy(pred, data.labels));
    assert.match(r.notes.join('\n'), /ID accuracy .* for every variant/);
    // Even a short template runs past the tiny model's 16 tokens with a long-tokenised class name.
    assert.match(r.notes.join('\n'), /^1 of the 3 pool templates are cut at the model's 16-token context for some classes \(3 of 12 texts\) \(e\.g\. "a \{\} that is not there\."\)\./m);
    assert.equal(r.counts.variantsScored, 7);
    assert.equal(r.counts.textPrompts, CLASSES.length * (model.manifest.templates!.length + pool.length));
  });

  test('a template cut at the context length before the class name is named in the notes', async () => {
    const pool = ['a photo of no {}.', 'there is nothing at all like a {} in this close-up photo.'];
    const r = await ablateNoPool({ ...base, pool: { kind: 'templates', templates: pool }, greedySteps: 0 });
    assert.match(r.notes.join('\n'), /1 of the 2 pool templates are cut at the model's 16-token context for some classes \(4 of 8 texts\); 1 of them are cut before the class name tells the classes apart, so they give one text and one feature for every class .*"there is nothing at all like a \{\} in this close-up photo\."/);
    // Its texts are one row for every class, so its feature is the same for every class.
    const d = model.embedDim;
    const raw = (await model.encodeClassPromptsNo(CLASSES, pool.slice(1), [promptWeights.none()])).data;
    for (let c = 1; c < CLASSES.length; c++) assert.deepEqual(raw.subarray(c * d, (c + 1) * d), raw.subarray(0, d));
  });

  test('the graph in other tiles, the native kernel, and other worker splits of the images give the same metrics', async () => {
    const pool = POOL.slice(0, 3);
    const whole = await ablateNoPool({ ...base, pool: { kind: 'templates', templates: pool }, greedySteps: 0, nativeAtd: false });
    const h = await handcraftedAblation(model, CLASSES, { templates: pool });
    const variations: Array<[string, Partial<AblationInput>]> = [
      // 4 classes x 16 variants x 3 rows: tiles of 3 rows (the last shorter) in each of the two workers.
      ['tiles of 3 rows', { chunkElements: 4 * 16 * 3, nativeAtd: false }],
      // Tiles of 1 row, 2 variants per graph run.
      ['2 variants per run', { chunkElements: 4 * 2, nativeAtd: false }],
      ['1 worker', { scoringWorkers: 1, nativeAtd: false }],
      ['3 workers', { scoringWorkers: 3, nativeAtd: false }],
      // Where it is built (atd-native.test.ts checks that it is wherever it can be).
      ...(nativeKernels() ? ([['the native ATD kernel', {}], ['the native ATD kernel, 3 workers', { scoringWorkers: 3 }]] as Array<[string, Partial<AblationInput>]>) : []),
    ];
    for (const [what, patch] of variations) {
      const r = await ablateNoPool({ ...base, ...patch, pool: { kind: 'templates', templates: pool }, greedySteps: 0 });
      assertMetricsEqual(r.full, whole.full, `full, ${what}`);
      whole.alone.forEach((w, k) => assertMetricsEqual(r.alone[k].metrics, w.metrics, `alone ${k}, ${what}`));
      whole.leaveOneOut.forEach((w, k) => assertMetricsEqual(r.leaveOneOut[k].metrics, w.metrics, `leave out ${k}, ${what}`));
      assertMetricsEqual(r.leaveOneOut[1].metrics, slow(h.leaveOneOut[1].data), `leave out 1, ${what}`);
    }
  });

  test('the yes tower for the pool (plain-CLIP negation) also equals the slow way', async () => {
    const pool = POOL.slice(1, 3);
    const r = await ablateNoPool({ ...base, pool: { kind: 'templates', templates: pool, tower: 'yes' }, greedySteps: 0 });
    const h = await handcraftedAblation(model, CLASSES, { templates: pool, tower: 'yes' });
    assertMetricsEqual(r.full, slow(h.all.data), 'full');
    assertMetricsEqual(r.leaveOneOut[0].metrics, slow(h.leaveOneOut[0].data), 'leave out 0');
  });

  test('learned prompts: mean, each alone and each left out equal the slow way on learnedPromptAblation features', async () => {
    const r = await ablateNoPool({ ...base, pool: { kind: 'learned' }, greedySteps: 0 });
    const l = await learnedPromptAblation(model, CLASSES);
    assert.equal(r.prompts.length, 16);
    assert.equal(r.prompts[3], 'learned #3');
    assertMetricsEqual(r.full, slow(l.mean.data), 'mean');
    l.single.forEach((f, i) => assertMetricsEqual(r.alone[i].metrics, slow(f.data), `learned ${i} alone`));
    l.leaveOneOut.forEach((f, i) => assertMetricsEqual(r.leaveOneOut[i].metrics, slow(f.data), `learned ${i} left out`));
  });

  // ATD FPR95 takes a second step on these images, CTW AUROC stops after one: both branches.
  for (const objective of [{ score: 'atd', metric: 'fpr95' }, { score: 'ctw', metric: 'auroc' }] as AblationObjective[]) {
    test(`greedy (${objective.score} ${objective.metric}) on a 4-template pool equals brute force over subsets of size <= 2`, async () => {
      const d = model.embedDim;
      const raw = (await model.encodeClassPromptsNo(CLASSES, GREEDY_POOL, [promptWeights.none()])).data;
      const brute = new Map<string, VariantMetrics>();
      for (let a = 0; a < GREEDY_POOL.length; a++) {
        for (let b = a; b < GREEDY_POOL.length; b++) brute.set(`${a},${b}`, slow(ensembleByClass(raw, d, CLASSES.length, GREEDY_POOL.length, a === b ? [a] : [a, b]).data));
      }
      const r = await ablateNoPool({ ...base, pool: { kind: 'templates', templates: GREEDY_POOL }, objective, greedySteps: 2 });
      checkGreedy(r, objective, (s) => brute.get(s.length === 1 ? `${s[0]},${s[0]}` : s.join())!, GREEDY_POOL.length);
      assert.equal(r.greedy.steps.length, objective.score === 'atd' ? 2 : 1);
    });
  }

  test('a memo across runs: a re-run scores nothing, an edited pool only the variants it changed, with the results of a run without memo', async () => {
    const memo: AblationMemo = new VariantMemo();
    const pool = [...POOL, 'there is no {} here.'];
    const p = pool.length;
    const results = (r: AblationResult) => ({ full: r.full, alone: r.alone, leaveOneOut: r.leaveOneOut, greedy: r.greedy });
    const first = await ablateNoPool({ ...base, pool: { kind: 'templates', templates: pool }, greedySteps: 2, memo });
    assert.equal(first.counts.variantsFromMemo, 0);
    const again = await ablateNoPool({ ...base, pool: { kind: 'templates', templates: pool }, greedySteps: 2, memo });
    assert.equal(again.counts.variantsScored, 0);
    assert.equal(again.counts.variantsFromMemo, first.counts.variantsScored);
    assert.deepStrictEqual(results(again), results(first));

    const edited = pool.map((t, i) => (i === 2 ? 'a picture with no {} in it.' : t));
    const withMemo = await ablateNoPool({ ...base, pool: { kind: 'templates', templates: edited }, greedySteps: 2, memo });
    const fresh = await ablateNoPool({ ...base, pool: { kind: 'templates', templates: edited }, greedySteps: 2 });
    assert.deepStrictEqual(results(withMemo), results(fresh));
    // Unchanged: the other templates alone, and the pool without the edited one.
    assert.ok(withMemo.counts.variantsFromMemo >= p, `${withMemo.counts.variantsFromMemo} variants from the memo, expected at least ${p}`);
    assert.equal(withMemo.counts.variantsScored + withMemo.counts.variantsFromMemo, fresh.counts.variantsScored);
    assert.equal(fresh.counts.variantsFromMemo, 0);

    // Other images: nothing may come from the memo.
    const other = images(yes, CLASSES.length, model.embedDim, 9);
    const moved = await ablateNoPool({ ...base, idFeatures: other.id, oodFeatures: other.ood, pool: { kind: 'templates', templates: pool }, greedySteps: 2, memo });
    assert.equal(moved.counts.variantsFromMemo, 0);
  });

  test('greedy over the learned prompts: step 2 checked against its 15 candidates scored the slow way', async () => {
    const objective: AblationObjective = { score: 'atd', metric: 'auroc' };
    const r = await ablateNoPool({ ...base, pool: { kind: 'learned' }, objective, greedySteps: 2 });
    const l = await learnedPromptAblation(model, CLASSES);
    const first = l.single.map((f) => slow(f.data));
    let top = 0;
    first.forEach((m, i) => (top = better(valueOf(m, objective), valueOf(first[top], objective), objective) ? i : top));
    const pairs = Array.from({ length: 16 }, (_, u) => u).filter((u) => u !== top).map((u) => [top, u].sort((a, b) => a - b));
    const feats = await noFeaturesForMixes(model, CLASSES, pairs.map((s) => promptWeights.subset(s)));
    const second = new Map(pairs.map((s, i) => [s.join(), slow(feats[i].data)]));
    checkGreedy(r, objective, (s) => (s.length === 1 ? first[s[0]] : second.get(s.join())!), 16);
  });

  test('full pool against numpy logits and scikit-learn metrics', async () => {
    const r = await ablateNoPool({ ...base, greedySteps: 0 });
    const h = await handcraftedAblation(model, CLASSES, { templates: POOL });
    const ref = runPythonJson<Record<string, number>>(
      `
import json, sys, numpy as np
from sklearn.metrics import roc_auc_score, roc_curve, average_precision_score
a = json.load(sys.stdin)
d = a["d"]
x = np.array(a["id"] + a["ood"]).reshape(-1, d)
y, n = (np.array(a[k]).reshape(-1, d) for k in ("yes", "no"))
L, Ln = 100 * x @ y.T, 100 * x @ n.T
p = np.exp(L - L.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
py = 1 / (1 + np.exp(-(L - Ln)))
j = L.argmax(1)
scores = {"ctw": py[np.arange(len(j)), j], "atd": (py * p).sum(1)}
lab = np.r_[np.ones(a["nid"]), np.zeros(len(x) - a["nid"])]
out = {}
for k, s in scores.items():
    fpr, tpr, _ = roc_curve(lab, s)
    out[k + "_auroc"] = roc_auc_score(lab, s)
    out[k + "_fpr95"] = float(np.interp(0.95, tpr, fpr))
    out[k + "_auprIn"] = average_precision_score(lab, s)
    out[k + "_auprOut"] = average_precision_score(1 - lab, -s)
print(json.dumps(out))
`,
      { d: model.embedDim, nid: N_ID, id: [...data.id], ood: [...data.ood], yes: [...yes], no: [...h.all.data] },
    );
    for (const s of ['ctw', 'atd'] as const) {
      for (const m of ['auroc', 'fpr95', 'auprIn', 'auprOut'] as const) {
        assert.ok(Math.abs(r.full[s][m] - ref[`${s}_${m}`]) <= TOL, `${s} ${m}: ${r.full[s][m]} vs sklearn ${ref[`${s}_${m}`]}`);
      }
    }
  });

  test('a single ID class: ATD reported degenerate, CTW still valid, greedy on CTW', async () => {
    const one = images(yes, 1, model.embedDim, 9);
    const pool = POOL.slice(0, 2);
    const r = await ablateNoPool({ ...base, classes: ['cat'], idFeatures: one.id, oodFeatures: one.ood, pool: { kind: 'templates', templates: pool }, greedySteps: 1 });
    assert.match(r.degenerate.atd!, /only one ID class/);
    assert.match(r.notes.join('\n'), /ATD is degenerate.*defaults to CTW AUROC/);
    assert.deepEqual(r.objective, { score: 'ctw', metric: 'auroc' });
    const h = await handcraftedAblation(model, ['cat'], { templates: pool });
    assertMetricsEqual(r.full, slow(h.all.data, 1, one), 'full');
    assertMetricsEqual(r.alone[1].metrics, slow(h.alone[1].data, 1, one), 'alone 1');
    assert.equal(r.greedy.steps.length, 1);
  });

  test('a scoring worker that cannot start fails the scoring with an error naming it, not a hang', async () => {
    const d = model.embedDim;
    const image = new Float32Array((N_ID + N_OOD) * d);
    image.set(data.id);
    image.set(data.ood, N_ID * d);
    const scorer = VariantScorer.create({
      x: image, n: N_ID + N_OOD, d, idN: N_ID, yes, c: CLASSES.length, executionProviders: ['cpu'], chunkElements: CHUNK_ELEMENTS,
      batchVariants: 16, workers: 2, workerFile: '/nonexistent/ablation-worker.js',
    });
    await assert.rejects(scorer, /ablation scoring worker \(\/nonexistent\/ablation-worker\.js\) stopped/);
  });

  test('a kept scorer is handed out once, under its key only, and releasing closes it', async () => {
    const d = model.embedDim;
    const image = new Float32Array((N_ID + N_OOD) * d);
    image.set(data.id);
    image.set(data.ood, N_ID * d);
    const scorer = await VariantScorer.create({ x: image, n: N_ID + N_OOD, d, idN: N_ID, yes, c: CLASSES.length, executionProviders: ['cpu'], chunkElements: CHUNK_ELEMENTS, batchVariants: 16, workers: 2 });
    const [value] = await scorer.score([yes], { kind: 'objective', score: 'ctw', metric: 'auroc' });
    keepScorer('key a', scorer);
    assert.equal(takeKeptScorer('key a'), scorer);
    assert.equal(takeKeptScorer('key a'), undefined, 'taken: not handed out twice');
    keepScorer('key a', scorer);
    assert.deepEqual(await scorer.score([yes], { kind: 'objective', score: 'ctw', metric: 'auroc' }), [value], 'a kept scorer still scores');
    // Asked for under another key, the kept one is closed (its workers freed) rather than kept idle beside a new one.
    assert.equal(takeKeptScorer('key b'), undefined);
    await releaseAblationScorers();
    assert.equal(scorer.usable, false);
    assert.equal(takeKeptScorer('key a'), undefined);
    await assert.rejects(scorer.score([yes], { kind: 'metrics' }), /closed/);
    await scorer.close(); // the closing that takeKeptScorer began, to its end
  });

  test('bad inputs are errors naming the field', async () => {
    const d = model.embedDim;
    const bad: Array<[Partial<AblationInput>, RegExp]> = [
      [{ pool: { kind: 'templates', templates: [] } }, /pool\.templates is empty/],
      [{ pool: { kind: 'templates', templates: ['a photo of no {}.', 'a photo of nothing.'] } }, /pool\.templates: "no" template "a photo of nothing\." has no \{\}/],
      [{ pool: { kind: 'learned', indices: [] } }, /pool\.indices is empty/],
      [{ pool: { kind: 'learned', indices: [0, 16] } }, /pool\.indices: learned prompt 16 does not exist \(this model has 16/],
      [{ pool: { kind: 'learned', indices: [2, 2] } }, /pool\.indices names a prompt twice/],
      [{ classes: [] }, /classes is empty/],
      [{ classes: ['cat', ' '] }, /classes\[1\] is an empty name/],
      [{ idFeatures: new Float32Array(0), idN: 0 }, /idN is 0: idFeatures needs at least one image/],
      [{ oodFeatures: new Float32Array(0), oodN: 0 }, /oodN is 0: oodFeatures needs at least one image/],
      [{ oodFeatures: new Float32Array(3 * d), oodN: 2 }, /oodFeatures has 384 values, expected oodN 2 x 128/],
      [{ idFeatures: new Float32Array(N_ID * d), idN: N_ID }, /idFeatures row 0 has L2 norm 0; image features must be L2-normalised/],
      [{ idLabels: [0, 1] }, /idLabels has 2 labels for idN = 120/],
      [{ objective: { score: 'msp', metric: 'auroc' } as unknown as AblationObjective }, /objective must be/],
      [{ greedySteps: -1 }, /greedySteps must be a non-negative integer/],
      [{ chunkElements: 0 }, /chunkElements must be a positive integer/],
      [{ scoringWorkers: 0 }, /scoringWorkers must be a positive integer/],
      [{ executionProviders: [] }, /executionProviders is empty/],
      [{ yesTemplates: ['a photo'] }, /yesTemplates: template "a photo" has no \{\}/],
    ];
    for (const [patch, message] of bad) await assert.rejects(ablateNoPool({ ...base, ...patch }), message);
    await assert.rejects(ablateNoPool({ ...base, classes: [] }), AblationError);
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(ablateNoPool({ ...base, signal: controller.signal }), { name: 'AbortError' });
  });
});

test('scoring arithmetic on random features: CTW and j* bit-identical to scoreFeatures, ATD within 1e-5 relative, any row range', async () => {
  // 301 rows (not a multiple of the kernel's 4), 13 classes, tiles of 40 rows (the last shorter).
  const [n, d, c] = [301, 128, 13];
  const next = gaussian(17);
  const x = normalisedRows(n, d, next);
  const yes = normalisedRows(c, d, next);
  const variants = [normalisedRows(c, d, next), normalisedRows(c, d, next), yes];
  const backend = new OrtBackend({ executionProviders: ['cpu'], intraOpNumThreads: 1 });
  try {
    const side = rowSide(x, n, d, yes, c, 0, 40);
    assert.ok(side.kernel, 'WebAssembly SIMD runs here: the kernel is what is being tested');
    const dStar = margins(side, variants);
    // The JavaScript loop, the kernel's fallback, gives the same bits.
    assert.deepStrictEqual(margins({ ...side, kernel: undefined }, variants), dStar);
    const graph = await AtdGraph.open(backend, side, 4 * c * 40);
    const [ctw, atd] = [new Float64Array(variants.length * n), new Float64Array(variants.length * n)];
    writeScores(side, dStar, n, await graph.sums(variants, yes), ctw, atd);
    let worst = 0;
    variants.forEach((no, v) => {
      const s = scoreFeatures({ image: x, n, dim: d, textYes: yes, textNo: no, classes: c });
      assert.deepStrictEqual(Array.from(side.predicted), Array.from(s.predicted));
      assert.deepStrictEqual(ctw.subarray(v * n, (v + 1) * n), s.ctw, `variant ${v}: CTW bit for bit`);
      for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(atd[v * n + i] - s.atd[i]) / s.atd[i]);
    });
    assert.ok(worst <= 1e-5, `ATD relative error ${worst}`);
    console.log(`# ATD largest relative error against scoreFeatures: ${worst.toExponential(2)}`);
    // Rows 100..300 on their own (another worker's share): the same numbers for those rows.
    const part = rowSide(x.subarray(100 * d), n - 100, d, yes, c, 100, 40);
    assert.deepStrictEqual(Array.from(part.predicted), Array.from(side.predicted.subarray(100)));
    const partCtw = new Float64Array(variants.length * n);
    writeScores(part, margins(part, variants), n, undefined, partCtw, undefined);
    for (let v = 0; v < variants.length; v++) assert.deepStrictEqual(partCtw.subarray(v * n + 100, (v + 1) * n), ctw.subarray(v * n + 100, (v + 1) * n));
  } finally {
    await backend.dispose();
  }
});

/**
 * The greedy rule replayed on brute-force metrics: step 1 is the best single prompt (first on
 * ties), step 2 the best pair containing it if that pair strictly improves, else a stop.
 */
function checkGreedy(r: AblationResult, o: AblationObjective, brute: (subset: number[]) => VariantMetrics, p: number): void {
  const singles = Array.from({ length: p }, (_, u) => [u]);
  const pick = (subsets: number[][]) => subsets.reduce((b, s) => (better(valueOf(brute(s), o), valueOf(brute(b), o), o) ? s : b));
  const [first] = pick(singles);
  const s1 = r.greedy.steps[0];
  assert.equal(s1.added, first);
  assert.deepEqual(s1.prompts, [first]);
  assert.equal(s1.objective, valueOf(s1.metrics, o));
  assertMetricsEqual(s1.metrics, brute([first]), 'greedy step 1');
  const pair = pick(singles.filter(([u]) => u !== first).map(([u]) => [first, u].sort((a, b) => a - b)));
  if (better(valueOf(brute(pair), o), valueOf(brute([first]), o), o)) {
    assert.equal(r.greedy.steps.length, 2, 'step 2 improves, so it is taken');
    assert.deepEqual(r.greedy.steps[1].prompts, pair);
    assert.equal(r.greedy.steps[1].added, pair[0] === first ? pair[1] : pair[0]);
    assertMetricsEqual(r.greedy.steps[1].metrics, brute(pair), 'greedy step 2');
    assert.equal(r.greedy.stopped, 'max-steps');
    assert.deepEqual(r.greedy.best?.prompts, pair);
  } else {
    assert.equal(r.greedy.steps.length, 1, 'no pair improves, so the greedy stops');
    assert.equal(r.greedy.stopped, 'no-improvement');
  }
  assert.deepEqual(r.greedy.steps[r.greedy.steps.length - 1].change.atd.auroc, r.greedy.steps[r.greedy.steps.length - 1].metrics.atd.auroc - r.full.atd.auroc);
}
