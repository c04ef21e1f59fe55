// The clipn cell language: one schema drives validation (with line/column), name resolution
// across cells, completion and hover.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCell } from '../../extension/language/validate';
import { Definitions, resolveNotebook } from '../../extension/language/resolve';
import { completionsAt, hoverAt } from '../../extension/language/assist';
import { KINDS } from '../../extension/language/schema';

function errors(source: string): string[] {
  return parseCell(source).diagnostics.map((d) => `${d.start.line}:${d.start.column} ${d.message}`);
}

test('every kind example in the schema is itself valid', () => {
  for (const k of KINDS) {
    const p = parseCell(k.example);
    assert.deepEqual(p.diagnostics, [], k.kind);
    assert.equal(p.kind, k.kind);
  }
});

test('valid cells give plain values, a name and references', () => {
  const p = parseCell('evaluate:\n  name: r1\n  id: id\n  ood: [ood1, ood2]\n  scores: [ctw, atd]\n  temperature: 0.01\n');
  assert.deepEqual(p.diagnostics, []);
  assert.equal(p.kind, 'evaluate');
  assert.equal(p.name, 'r1');
  assert.deepEqual(p.values, { name: 'r1', id: 'id', ood: ['ood1', 'ood2'], scores: ['ctw', 'atd'], temperature: 0.01 });
  assert.deepEqual(p.refs.map((r) => `${r.key}=${r.name}@${r.start.line}:${r.start.column}`), ['id=id@3:7', 'ood=ood1@4:9', 'ood=ood2@4:15']);
  const m = parseCell('model:\n');
  assert.deepEqual(m.diagnostics, []);
  assert.equal(m.name, 'model', 'a model cell has a default name');
  const pr = parseCell('prompts:\n  name: p\n  no:\n    learned: [0, 2]\n');
  assert.deepEqual(pr.values, { name: 'p', no: { learned: [0, 2] } });
});

test('blank and comment-only cells are empty, not errors', () => {
  assert.equal(parseCell('').empty, true);
  assert.equal(parseCell('# just a note\n').empty, true);
});

test('mistakes are reported with line and column', () => {
  assert.deepEqual(errors('evaluate:\n  id: id\n  ood: ood\n  scroes: [msp]\n'), ['4:3 unknown key "scroes" in evaluate (did you mean `scores`?) (keys: name, model, id, ood, classes, prompts, scores, fpr95, temperature)']);
  assert.deepEqual(errors('evaluate:\n  id: id\n  ood: ood\n  scores: [msp, auroc]\n'), ['4:17 evaluate.scores[1]: "auroc" is not one of msp, maxlogit, energy, ctw, atd']);
  assert.deepEqual(errors('dataset:\n  name: a\n  folder: x\n  glob: "*.jpg"\n'), ['4:3 dataset: give only one of folder, glob, list (folder is already set)']);
  assert.deepEqual(errors('dataset:\n  name: a\n'), ['1:1 dataset needs one of folder, glob, list']);
  assert.deepEqual(errors('dataset:\n  folder: x\n'), ['1:1 dataset needs `name:` (the name later cells use to refer to this image set)']);
  assert.deepEqual(errors('prompts:\n  name: p\n  templates: ["a photo of a cat"]\n'), ['3:15 prompts.templates[0]: template "a photo of a cat" has no {} for the class name']);
  assert.deepEqual(errors('dataset:\n  name: a\n  folder: x\n  limit: 0\n'), ['4:10 dataset.limit must be at least 1, got 0']);
  assert.deepEqual(errors('dataset:\n  name: a\n  folder: x\n  limit: many\n'), ['4:10 dataset.limit must be an integer, got "many"']);
  assert.deepEqual(errors('modle:\n  folder: x\n'), ['1:1 unknown cell kind "modle" (did you mean `model`?); a cell starts with one of `model:`, `dataset:`, `classes:`, `prompts:`, `evaluate:`, `embed:`, `geometry:`, `umap:`, `ablation:`']);
  assert.deepEqual(errors('model:\n  folder: x\nembed:\n  dataset: a\n'), ['3:1 one cell does one thing: put this in a cell of its own']);
  assert.deepEqual(errors('just text'), ['1:1 a cell is one of `model:`, `dataset:`, `classes:`, `prompts:`, `evaluate:`, `embed:`, `geometry:`, `umap:`, `ablation:` followed by its settings']);
  const yaml = errors('model:\n  folder: [x\n');
  assert.equal(yaml.length >= 1, true);
  assert.match(yaml[0], /^\d+:\d+ YAML: /);
  assert.deepEqual(errors('prompts:\n  name: p\n  no:\n    learned: mean\n    templates: ["no {}"]\n'), ['5:5 prompts.no: give only one of learned, templates (learned is already set)']);
});

test('references resolve against earlier cells, in notebook order', () => {
  const cells = [
    'model:\n',
    'dataset:\n  name: id\n  role: id\n  folder: images/id\n',
    'evaluate:\n  id: id\n  ood: ood\n', // ood is defined below
    'dataset:\n  name: ood\n  folder: images/ood\n',
    'evaluate:\n  id: id\n  ood: [ood]\n  model: id\n', // wrong kind
    'embed:\n  dataset: nope\n',
    undefined, // a markdown cell
  ];
  const r = resolveNotebook(cells);
  assert.deepEqual(r[1]!.diagnostics, []);
  assert.deepEqual(r[2]!.diagnostics.map((d) => `${d.start.line}:${d.start.column} ${d.message}`), ['3:8 "ood" is defined in cell 4, below this one; cells can only use names defined above them']);
  assert.deepEqual(r[4]!.diagnostics.map((d) => d.message), ['"id" is a dataset (cell 2), but `model:` needs a model']);
  assert.deepEqual(r[5]!.diagnostics.map((d) => d.message), ['no dataset named "nope" has been defined (dataset names: id, ood)']);
  assert.equal(r[6], undefined);
});

test('Definitions: later definitions win; latestOf gives the default for an omitted reference', () => {
  const d = new Definitions<number>();
  d.define({ name: 'a', kind: 'dataset', cell: 1, value: 1 });
  d.define({ name: 'model', kind: 'model', cell: 2, value: 2 });
  d.define({ name: 'b', kind: 'dataset', cell: 3, value: 3 });
  assert.equal(d.latestOf('dataset')?.name, 'b');
  assert.equal(d.latestOf('prompts'), undefined);
  d.define({ name: 'b', kind: 'prompts', cell: 4, value: 4 });
  assert.equal(d.latestOf('dataset'), undefined, 'b is no longer a dataset');
  assert.equal(d.problem({ name: 'a', kind: 'dataset', key: 'id' }), undefined);
  assert.match(d.problem({ name: 'zz', kind: 'model', key: 'model' })!, /no model named "zz".*model names: model/);
});

test('completion offers cell kinds, missing keys, enum values and defined names', () => {
  const kinds = completionsAt('', 1, 1).map((c) => c.label);
  assert.deepEqual(kinds, KINDS.map((k) => k.kind));
  const keys = completionsAt('evaluate:\n  id: a\n  \n', 3, 3).map((c) => c.label);
  assert.ok(keys.includes('ood') && keys.includes('scores') && !keys.includes('id'), keys.join());
  assert.deepEqual(completionsAt('evaluate:\n  fpr95: ', 2, 10).map((c) => c.label), ['interpolated', 'nearest']);
  assert.deepEqual(completionsAt('evaluate:\n  scores: [msp, ', 2, 17).map((c) => c.label), ['msp', 'maxlogit', 'energy', 'ctw', 'atd']);
  assert.deepEqual(completionsAt('evaluate:\n  ood:\n    - ', 3, 7, { dataset: ['ood1', 'ood2'] }).map((c) => c.label), ['ood1', 'ood2']);
  assert.deepEqual(completionsAt('evaluate:\n  model: ', 2, 10, { model: ['model', 'big'] }).map((c) => c.label), ['model', 'big']);
  const nested = completionsAt('prompts:\n  name: p\n  no:\n    ', 4, 5).map((c) => c.label);
  assert.deepEqual(nested, ['learned', 'templates', 'tower']);
  assert.deepEqual(completionsAt('prompts:\n  no:\n    learned: ', 3, 14).map((c) => c.label), ['mean', 'none']);
});

test('hover documents cell kinds and keys, nested ones included', () => {
  const h = hoverAt('evaluate:\n  fpr95: nearest\n', 2, 4)!;
  assert.match(h.doc, /FPR at 95% TPR/);
  assert.deepEqual([h.line, h.start, h.end], [2, 3, 8]);
  assert.match(hoverAt('evaluate:\n', 1, 2)!.doc, /OOD evaluation/);
  assert.match(hoverAt('prompts:\n  no:\n    tower: yes\n', 3, 6)!.doc, /Which text tower/);
  assert.equal(hoverAt('evaluate:\n  fpr95: nearest\n', 2, 12), undefined, 'values have no key docs');
});

test('pool: takes `learned` as one string or a list of templates, each checked as such', () => {
  const ok = parseCell('ablation:\n  ood: x\n  pool: learned\n');
  assert.deepEqual(ok.diagnostics, []);
  assert.equal(ok.values.pool, 'learned');
  const list = parseCell('ablation:\n  ood: x\n  pool: ["a photo of no {}.", "not a {}."]\n');
  assert.deepEqual(list.diagnostics, []);
  assert.deepEqual(list.values.pool, ['a photo of no {}.', 'not a {}.']);
  const word = parseCell('ablation:\n  ood: x\n  pool: leaned\n');
  assert.match(word.diagnostics[0].message, /"leaned" is not one of learned \(or give a list of templates with \{\}\)/);
  const template = parseCell('ablation:\n  ood: x\n  pool: ["a photo of no {}.", "no braces"]\n');
  assert.match(template.diagnostics[0].message, /pool\[1\]: template "no braces" has no \{\}/);
  assert.deepEqual(template.diagnostics[0].start, { line: 3, column: 31 });
});

test('the analysis kinds validate their settings', () => {
  const umap = parseCell('umap:\n  dataset: [id, ood]\n  color: atd\n  neighbors: 1\n  min_dist: 0.2\n');
  assert.deepEqual(umap.diagnostics.map((d) => d.message), ['umap.neighbors must be at least 2, got 1']);
  assert.deepEqual(parseCell('umap:\n  dataset: id\n  color: purple\n').diagnostics.map((d) => d.message), ['umap.color: "purple" is not one of role, class, predicted, msp, maxlogit, energy, ctw, atd']);
  assert.deepEqual(parseCell('umap:\n  color: atd\n').diagnostics.map((d) => d.message), ['umap needs `dataset:` (the image set(s) to project)']);
  assert.deepEqual(parseCell('geometry:\n').diagnostics, []);
  assert.deepEqual(parseCell('ablation:\n  ood: o\n  objective: atd-aupr\n').diagnostics.map((d) => d.message), ['ablation.objective: "atd-aupr" is not one of atd-auroc, atd-fpr95, ctw-auroc, ctw-fpr95']);
});
