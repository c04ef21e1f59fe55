// The OOD report must restate metrics.ts exactly (it only organises them), average over OOD sets
// as the papers do, and pick the worst cases deterministically. References: computeMetrics /
// rocCurve on the same arrays (1e-12), hand-computed means and accuracy, a sort written here and
// numpy's stable argsort for the worst cases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { metricRows, oodReport, ReportError, SCORE_LABELS, scoreValues, type OodReportInput } from '../../extension/engine/analysis/ood-report';
import { computeMetrics, rocCurve, type OodMetrics } from '../../extension/engine/metrics';
import { createScores, scoreFeatures, type ImageScores } from '../../extension/engine/scores';
import { gaussian, normalisedRows } from '../../extension/engine/random';
import { SCORE_NAMES } from '../../extension/language/schema';
import { runPythonJson } from './helpers/python';

const TOL = 1e-12;

/** Images near their class's yes feature (ID) or pure noise (OOD), scored for real. */
function scoredSets(classes: number, idCount: number, oodCounts: number[], seed: number) {
  const d = 24;
  const g = gaussian(seed);
  const yes = normalisedRows(classes, d, g);
  const no = normalisedRows(classes, d, g);
  const images = (n: number, spread: number, labelled: boolean) => {
    const raw = new Float32Array(n * d);
    const labels = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const c = i % classes;
      labels[i] = labelled && i % 7 !== 3 ? c : -1; // some ID images carry no label
      for (let j = 0; j < d; j++) raw[i * d + j] = (labelled ? yes[c * d + j] : 0) + spread * g();
    }
    const image = normalisedRows(n, d, ((k) => () => raw[k++])(0));
    return { scores: scoreFeatures({ image, n, dim: d, textYes: yes, textNo: no, classes }), labels };
  };
  const id = images(idCount, 0.25, true);
  return {
    id: { name: 'id-set', scores: id.scores, labels: id.labels },
    ood: oodCounts.map((n, k) => ({ name: `ood-${k}`, scores: images(n, 1, false).scores })),
  };
}

function assertMetricsEqual(a: OodMetrics, b: OodMetrics, what: string): void {
  for (const [x, y, m] of [
    [a.auroc, b.auroc, 'auroc'], [a.fpr95.interpolated, b.fpr95.interpolated, 'fpr95 interpolated'],
    [a.fpr95.nearest, b.fpr95.nearest, 'fpr95 nearest'], [a.auprIn, b.auprIn, 'auprIn'], [a.auprOut, b.auprOut, 'auprOut'],
  ] as const) {
    assert.ok(Math.abs(x - y) <= TOL, `${what} ${m}: ${x} vs ${y}`);
  }
}

test('oodReport restates computeMetrics per set, averages by hand, accuracy, ROC and histogram arrays', () => {
  const input = scoredSets(6, 420, [300, 250, 180], 1);
  const report = oodReport(input);
  assert.deepEqual(report.scores.map((s) => s.score), [...SCORE_NAMES]);
  assert.deepEqual(report.oodSets, ['ood-0', 'ood-1', 'ood-2']);
  assert.equal(report.idSet, 'id-set');
  assert.equal(report.classes, 6);
  for (const s of report.scores) {
    assert.equal(s.label, SCORE_LABELS[s.score]);
    const id = scoreValues(input.id.scores, s.score);
    const ood = input.ood.map((o) => scoreValues(o.scores, s.score));
    s.perSet.forEach((m, k) => assertMetricsEqual(m, computeMetrics(id, ood[k]), `${s.score} ${k}`));
    const mean = (f: (m: OodMetrics) => number) => (f(s.perSet[0]) + f(s.perSet[1]) + f(s.perSet[2])) / 3;
    assertMetricsEqual(s.average!, {
      auroc: mean((m) => m.auroc),
      fpr95: { interpolated: mean((m) => m.fpr95.interpolated), nearest: mean((m) => m.fpr95.nearest) },
      auprIn: mean((m) => m.auprIn),
      auprOut: mean((m) => m.auprOut),
    }, `${s.score} average`);
    const pooled = Float64Array.from([...ood[0], ...ood[1], ...ood[2]]);
    assert.deepEqual(s.roc.pooled, rocCurve(id, pooled, { dropIntermediate: true }));
    s.roc.perSet.forEach((c, k) => assert.deepEqual(c, rocCurve(id, ood[k], { dropIntermediate: true })));
    assert.equal(s.values.id, id);
    s.values.ood.forEach((v, k) => assert.equal(v, ood[k]));
    assert.equal(s.degenerate, undefined);
  }
  // The separation is real (ID near its class, OOD noise): the metrics are not trivial.
  assert.ok(report.scores.every((s) => s.average!.auroc > 0.6 && s.average!.auroc < 1));
  let correct = 0;
  let labelled = 0;
  input.id.labels.forEach((l, i) => {
    if (l < 0) return;
    labelled++;
    if (input.id.scores.predicted[i] === l) correct++;
  });
  assert.equal(report.labelled, labelled);
  assert.ok(labelled < 420 && correct < labelled, 'unlabelled images and errors both present');
  assert.equal(report.idAccuracy, correct / labelled);
  assert.deepEqual(report.degenerate, {});
  const rocFull = oodReport(input, { scores: ['ctw'], dropIntermediate: false }).scores[0].roc.perSet[1];
  assert.deepEqual(rocFull, rocCurve(scoreValues(input.id.scores, 'ctw'), scoreValues(input.ood[1].scores, 'ctw')));
});

test('metricRows lays out per-set rows then the average, with the chosen FPR95', () => {
  const input = scoredSets(4, 120, [90, 70], 2);
  const report = oodReport(input, { scores: ['atd', 'msp', 'atd'] });
  assert.deepEqual(report.scores.map((s) => s.score), ['atd', 'msp']);
  const rows = metricRows(report, 'nearest');
  assert.deepEqual(rows.map((r) => `${r.label}/${r.set}`), ['ATD/ood-0', 'ATD/ood-1', 'ATD/average', 'MSP/ood-0', 'MSP/ood-1', 'MSP/average']);
  assert.deepEqual(rows.map((r) => r.average), [false, false, true, false, false, true]);
  assert.equal(rows[1].fpr95, report.scores[0].perSet[1].fpr95.nearest);
  assert.equal(rows[2].auprOut, report.scores[0].average!.auprOut);
  assert.equal(metricRows(report)[0].fpr95, report.scores[0].perSet[0].fpr95.interpolated);
});

/** Hand-made scores with many exact ties, to check the worst-case order. */
function tiedScores(values: number[]): ImageScores {
  const s = createScores(values.length, 3);
  for (const name of SCORE_NAMES) scoreValues(s, name).set(values);
  return s;
}

test('worst cases: top-K by a sort written here, ties by set then row, and numpy agrees', () => {
  const g = gaussian(9);
  const quantised = (n: number, mu: number) => Array.from({ length: n }, () => Math.round((mu + g()) * 4) / 4);
  const input: OodReportInput = {
    id: { name: 'id', scores: tiedScores(quantised(150, 1)) },
    ood: [60, 80, 40].map((n, k) => ({ name: `o${k}`, scores: tiedScores(quantised(n, 0)) })),
  };
  const K = 25;
  const report = oodReport(input, { worstK: K, worstFor: ['energy'] });
  assert.deepEqual(Object.keys(report.worst), ['energy']);
  const w = report.worst.energy!;
  const all = input.ood.flatMap((o, k) => Array.from(o.scores.energy, (score, row) => ({ k, set: o.name, row, score })));
  const expectFp = [...all].sort((a, b) => b.score - a.score || a.k - b.k || a.row - b.row).slice(0, K);
  assert.deepEqual(w.falsePositives, expectFp.map(({ set, row, score }) => ({ set, row, score })));
  const idAll = Array.from(input.id.scores.energy, (score, row) => ({ set: 'id', row, score }));
  assert.deepEqual(w.falseNegatives, [...idAll].sort((a, b) => a.score - b.score || a.row - b.row).slice(0, K));
  // Ties are present at the cut, so the tie rule is what decides the lists.
  assert.ok(expectFp[K - 1].score === all.filter((c) => !expectFp.includes(c)).reduce((m, c) => Math.max(m, c.score), -Infinity));

  const ref = runPythonJson<{ fp: number[]; fn: number[] }>(
    `
import json, sys
import numpy as np
c = json.load(sys.stdin)
s = np.array(c['ood'], dtype=np.float64)
order = np.argsort(-s, kind='stable')  # pooled index = set-major, row-minor order
fn = np.argsort(np.array(c['id'], dtype=np.float64), kind='stable')
print(json.dumps({'fp': order[:c['k']].tolist(), 'fn': fn[:c['k']].tolist()}))
`,
    { ood: all.map((c) => c.score), id: Array.from(input.id.scores.energy), k: K },
  );
  assert.deepEqual(w.falsePositives.map((c) => all.findIndex((a) => a.set === c.set && a.row === c.row)), ref.fp);
  assert.deepEqual(w.falseNegatives.map((c) => c.row), ref.fn);
  assert.deepEqual(oodReport(input, { worstK: 0 }).worst.ctw, { falsePositives: [], falseNegatives: [] });
  const few = oodReport(input, { worstK: 1000, worstFor: ['ctw'] }).worst.ctw!;
  assert.equal(few.falsePositives.length, 180);
  assert.equal(few.falseNegatives.length, 150);
});

test('one OOD set: no average row; one ID class: the ATD and MSP degenerate flags are carried', () => {
  const single = scoredSets(1, 80, [60], 4);
  assert.ok(single.id.scores.degenerate.atd, 'scores.ts flags ATD with one class');
  const report = oodReport(single);
  assert.ok(report.scores.every((s) => s.average === null));
  assert.deepEqual(metricRows(report).map((r) => r.set), ['ood-0', 'ood-0', 'ood-0', 'ood-0', 'ood-0']);
  const atd = report.scores.find((s) => s.score === 'atd')!;
  assert.equal(atd.degenerate, single.id.scores.degenerate.atd);
  assert.equal(report.scores.find((s) => s.score === 'msp')!.degenerate, single.id.scores.degenerate.msp);
  assert.equal(report.scores.find((s) => s.score === 'ctw')!.degenerate, undefined);
  assert.deepEqual(report.degenerate, single.id.scores.degenerate);
  // With one class every labelled image is predicted right.
  assert.equal(report.idAccuracy, 1);
  const unlabelled = oodReport({ id: { name: 'id', scores: single.id.scores }, ood: single.ood });
  assert.equal(unlabelled.idAccuracy, null);
  assert.equal(unlabelled.labelled, 0);
});

test('oodReport refuses inconsistent input with messages that say what to fix', () => {
  const a = scoredSets(3, 40, [30], 5);
  const b = scoredSets(4, 40, [30], 6);
  const bad = (input: OodReportInput, opts: Parameters<typeof oodReport>[1], re: RegExp) =>
    assert.throws(() => oodReport(input, opts), (e: Error) => e instanceof ReportError && re.test(e.message));
  bad({ id: a.id, ood: [] }, {}, /no OOD sets/);
  bad({ id: a.id, ood: b.ood }, {}, /"ood-0" was scored against 4 classes but the ID set "id-set" against 3/);
  bad({ id: a.id, ood: [a.ood[0], a.ood[0]] }, {}, /"ood-0" is used twice/);
  bad({ id: { ...a.id, labels: a.id.labels.subarray(1) }, ood: a.ood }, {}, /39 labels for 40 scored images/);
  bad(a, { scores: ['ctw', 'auroc' as never] }, /scores: unknown score "auroc"/);
  bad(a, { worstK: -1 }, /worstK must be a non-negative integer/);
  bad({ id: a.id, ood: [{ name: 'empty', scores: createScores(0, 3) }] }, {}, /"empty" has no scored images/);
});
