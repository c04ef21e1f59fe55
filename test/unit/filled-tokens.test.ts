// filledTokens (filled-tokens.ts) against the tokenizer itself: for every template and class,
// the ids equal tokenizeOne(fillTemplate(template, class)) up to EOT, and the length encode's. Random templates and names
// mix the characters whose boundaries matter (letters of both cases, digits, spaces, punctuation,
// apostrophes and contractions, '&' entities, special tokens, non-ASCII letters and marks), and
// real prompts from the ablation bench; the default model's 16-token context cuts many of them.
import { strict as assert } from 'node:assert';
import { after, before, test } from 'node:test';
import { ClipnModel } from '../../extension/engine/encoder';
import { filledTokens } from '../../extension/engine/filled-tokens';
import { fillTemplate } from '../../extension/engine/prompts';
import { uniform } from '../../extension/engine/random';
import { DEFAULT_MODEL_DIR } from './helpers/models';

let model: ClipnModel;
before(async () => {
  model = await ClipnModel.load(DEFAULT_MODEL_DIR, { backend: { executionProviders: ['cpu'] } });
});
after(async () => {
  await model?.dispose();
});

function check(classes: readonly string[], templates: readonly string[]): number {
  const tok = model.tokenizer;
  const ids = filledTokens(tok, classes, templates);
  let checked = 0;
  classes.forEach((c, ci) => templates.forEach((t, ti) => {
    const text = fillTemplate(t, c);
    const full = tok.tokenizeOne(text);
    assert.deepEqual(ids.ids(ci, ti), full.slice(0, full.indexOf(tok.eot) + 1), `${JSON.stringify(t)} with ${JSON.stringify(c)}`);
    assert.equal(ids.length(ci, ti), tok.encode(text).length, `length of ${JSON.stringify(text)}`);
    checked++;
  }));
  return checked;
}

test('real prompts: the ablation bench\'s frames x negations and CLIP-style templates', () => {
  const frames = ['a photo of {}.', 'a close-up photo of {}.', '{} in this photo.', 'there is {} here.', 'a bad photo of the {}.', 'itap of a {}.', "a {}'s photo.", 'a photo of {}s.'];
  const negations = ['no {}', 'not a {}', 'without a {}', 'no sign of a {}', 'nothing like a {}', 'zero {}'];
  const templates = [...negations.flatMap((n) => frames.map((f) => f.replace('{}', n))), 'no {} here, no {} there.', '{}'];
  const classes = ['cat', 'Red Square', 'x', 'star on a long blue background', 't-shirt', "jack-o'-lantern", 'bat (animal)', 'zebrafish', '2cv', 'dog.'];
  assert.equal(check(classes, templates), classes.length * templates.length);
});

test('random templates and names over the characters that decide where pieces split (4,000 texts)', () => {
  const next = uniform(5);
  const alphabet = ['a', 'b', 'z', 'Q', 'E', 's', 't', 'd', 'll', 're', '7', '0', ' ', ' ', '.', ',', '-', '!', '(', ')', "'", "'s", "'t", "'re", "'ll",
    '&amp;', '&', 'amp;', 'lt;', '#39;', '<|', '|>', '<|endoftext|>', 'é', '中', '\u0301', '_', '"', ';'];
  const word = (n: number) => Array.from({ length: n }, () => alphabet[Math.floor(next() * alphabet.length)]).join('');
  const templates = Array.from({ length: 40 }, (_, i) => {
    const parts = [word(1 + Math.floor(next() * 6)), word(Math.floor(next() * 4))];
    return i % 7 === 0 ? `${parts[0]}{}${parts[1]}{}` : `${parts[0]}{}${parts[1]}`;
  });
  const classes = Array.from({ length: 100 }, () => word(1 + Math.floor(next() * 5)));
  assert.equal(check(classes, templates), 4000);
});
