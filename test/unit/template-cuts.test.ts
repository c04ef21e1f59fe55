// Templates cut at the context length (template-cuts.ts), against a reference that tokenises
// every filled text: a text is cut when SOT + its tokens + EOT exceed the context, and a cut
// template has lost the class when every class gives the same ids.
import { strict as assert } from 'node:assert';
import { after, before, test } from 'node:test';
import { ClipnModel } from '../../extension/engine/encoder';
import { fillTemplate } from '../../extension/engine/prompts';
import { templateCuts, templateCutsNote } from '../../extension/engine/template-cuts';
import type { ClipTokenizer } from '../../extension/engine/tokenizer';
import { DEFAULT_MODEL_DIR } from './helpers/models';

let model: ClipnModel;
before(async () => {
  model = await ClipnModel.load(DEFAULT_MODEL_DIR, { backend: { executionProviders: ['cpu'] } });
});
after(async () => {
  await model?.dispose();
});

function reference(tok: ClipTokenizer, classes: readonly string[], templates: readonly string[]) {
  const cut: number[] = [];
  const lost: number[] = [];
  let texts = 0;
  templates.forEach((t, i) => {
    const filled = classes.map((c) => fillTemplate(t, c));
    const over = filled.filter((x) => tok.encode(x).length + 2 > tok.contextLength).length;
    if (over === 0) return;
    cut.push(i);
    texts += over;
    if (new Set(filled.map((x) => tok.tokenizeOne(x).join())).size === 1) lost.push(i);
  });
  return { contextLength: tok.contextLength, cut, lost, texts };
}

const CLASSES = ['x', 'cat', 'red square', 'star on a long blue background', 'zebrafish'];
const TEMPLATES = [
  'a photo of no {}.', // never cut at 16
  'a blurry photo of {}.', // cut for long names
  'there is nothing at all like a {} in this close-up photo.', // cut before the class name
  'no {} here, no {} there.', // two slots
  'a photo of many {}s without any sign of them.', // `{}` glued to a word
  'there is nothing at all like the many {}s in this photo.', // glued, and cut before it
  '{} {} {} {} {} {}.',
];

test('templateCuts agrees with tokenising every text (default model, 16-token context)', () => {
  const tok = model.tokenizer;
  assert.equal(tok.contextLength, 16);
  const got = templateCuts(tok, CLASSES, TEMPLATES);
  const want = reference(tok, CLASSES, TEMPLATES);
  assert.deepEqual(got, want);
  // Never cut, cut before the class name, and cut after part of it.
  assert.ok(!got.cut.includes(0) && got.lost.includes(2) && got.lost.includes(5) && got.cut.some((i) => !got.lost.includes(i)), JSON.stringify(got));
});

test('templateCuts on many class names, punctuation at the boundaries, and a bench-like pool agrees with the reference', () => {
  const tok = model.tokenizer;
  const classes = Array.from({ length: 40 }, (_, i) => ['ka', 'bo', 'zin', 'tramp', 'ole'].slice(0, 1 + (i % 5)).join(String.fromCharCode(97 + (i % 26))));
  classes.push('dr.', 'st. bernard', '...', "o'brien");
  const frames = ['a photo of {}.', 'a close-up photo of {}.', '{} in this photo.', 'there is {} here.', 'a cropped photo of {}.', 'a photo of many {}s...', '({}).'];
  const negations = ['no {}', 'nothing like a {}', 'no sign of a {}', 'zero {}'];
  const templates = negations.flatMap((n) => frames.map((f) => f.replace('{}', n)));
  assert.deepEqual(templateCuts(tok, classes, templates), reference(tok, classes, templates));
});

test('the note names the counts and an example; none when nothing is cut', () => {
  const tok = model.tokenizer;
  const cuts = templateCuts(tok, CLASSES, TEMPLATES);
  const note = templateCutsNote(cuts, TEMPLATES, CLASSES.length, 'pool templates');
  assert.match(note!, new RegExp(`^${cuts.cut.length} of the 7 pool templates are cut at the model's 16-token context for some classes \\(${cuts.texts} of 35 texts\\); ${cuts.lost.length} of them are cut before the class name`));
  assert.ok(note!.includes(JSON.stringify(TEMPLATES[cuts.lost[0]])));
  assert.equal(templateCutsNote(templateCuts(tok, CLASSES, ['a {}.']), ['a {}.'], CLASSES.length, 'yes templates'), undefined);
});
