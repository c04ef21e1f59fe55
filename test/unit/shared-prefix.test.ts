// Template prompts through the text_no_kv graph (shared-prefix.ts): where texts split, features
// equal to the whole-text graph and to PyTorch's encode_text_no (max abs <= 1e-6 / 1e-5), a row's
// bits independent of its batch and of the other classes, the memo, and models without the graph.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ClipnModel, promptWeights } from '../../extension/engine/encoder';
import { filledTokens } from '../../extension/engine/filled-tokens';
import type { PromptMix } from '../../extension/engine/encoder';
import { classPrompts } from '../../extension/engine/prompts';
import { classTemplateRows, distinctRows, splitPoint, spreadRows } from '../../extension/engine/shared-prefix';
import { copyModelFolder, DEFAULT_MODEL_DIR, exportMicro } from './helpers/models';
import { runPythonJson } from './helpers/python';
import { maxAbsDiff } from './helpers/arrays';

const CPU = { backend: { executionProviders: ['cpu'] } };
const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

// Beginnings of 1 (SOT only), a few and many tokens; one longer than the default model's
// 16-token context (its texts are truncated: only EOT is their own).
const TEMPLATES = ['a photo of no {}.', '{} in this photo.', 'a {}.', 'there is nothing at all like a {} in this close-up photo.', 'no {} here, no {} there.'];
const CLASSES = ['circle', 'red square', 'x', 'star on a long blue background'];
const MIXES: Array<[string, PromptMix]> = [
  ['mean', promptWeights.mean()], ['none', promptWeights.none()], ['single 5', promptWeights.single(5)], ['subset', promptWeights.subset([1, 4, 9])],
];

test('splitPoint: the ids shared with the beginning, at least SOT, never EOT', () => {
  assert.equal(splitPoint([0, 5, 6, 7, 9], [0, 5, 6]), 3);
  assert.equal(splitPoint([0, 5, 8, 7, 9], [0, 5, 6]), 2); // the text's tokens part from the template's
  assert.equal(splitPoint([0, 5, 6, 9], [0, 5, 6, 7, 8]), 3); // truncated: EOT stays its own
  assert.equal(splitPoint([0, 9], [0]), 1);
  assert.equal(splitPoint([0, 9], [0, 5]), 1);
  assert.equal(splitPoint([3, 9], [0]), 1); // SOT always counts, so a past is never empty
});

test('distinctRows: one row per ids, split and mix; spreadRows hands each feature to every row it stands for', () => {
  const [w1, w2] = [new Float32Array([1, 0]), new Float32Array([0, 1])];
  const row = (ids: number[], split: number, weights: Float32Array) => ({ ids, split, weights, past: '' });
  const rows = [row([0, 5, 9], 1, w1), row([0, 5, 9], 1, w1), row([0, 5, 9], 2, w1), row([0, 5, 9], 1, w2), row([0, 6, 9], 1, w1), row([0, 5, 9], 1, w1)];
  const { rows: distinct, of } = distinctRows(rows);
  assert.deepEqual(of, [[0, 1, 5], [2], [3], [4]]);
  assert.deepEqual(distinct, [rows[0], rows[2], rows[3], rows[4]]);
  const embeds = new Float32Array([1, 1, 3, 3, 4, 4]); // distinct rows 0, 2 and 3 of a batch, d = 2
  assert.deepEqual(spreadRows([0, 2, 3], embeds, 2, of), { rows: [0, 1, 5, 3, 4], data: new Float32Array([1, 1, 1, 1, 1, 1, 3, 3, 4, 4]) });
  const alone = embeds.subarray(0, 4);
  assert.equal(spreadRows([1, 3], alone, 2, of).data, alone, 'no copy when every row is distinct');
});

describe('the default model shares template beginnings', () => {
  let m: ClipnModel;
  before(async () => {
    m = await ClipnModel.load(DEFAULT_MODEL_DIR, { ...CPU, textMemoBytes: 0 });
  });
  after(async () => {
    await m?.dispose();
  });

  test('the templates split at 1, at several tokens and past the context', () => {
    assert.ok(m.sharesPromptBeginnings);
    const splits = TEMPLATES.map((t) => {
      const ids = m.tokenizer.tokenizeOne(fillFirst(t, 'circle'));
      const own = ids.slice(0, ids.indexOf(m.tokenizer.eot) + 1);
      return splitPoint(own, [m.tokenizer.sot, ...m.tokenizer.encode(t.slice(0, t.indexOf('{}')))]);
    });
    assert.ok(splits.includes(1) && splits.some((s) => s >= 5) && splits.includes(m.contextLength - 1), `splits ${splits}`);
  });

  test('texts cut before their class name are one row for every class (encoded once)', () => {
    const long = TEMPLATES[3];
    const filled = classPrompts(CLASSES, [long]);
    const weights = [m.weightMatrix(promptWeights.mean(), 1), m.weightMatrix(promptWeights.none(), 1)];
    const tokens = filledTokens(m.tokenizer, CLASSES, [long]);
    const all = Array.from({ length: 2 * filled.length }, (_, i) => i);
    const rows = classTemplateRows(m.tokenizer, filled, [long.slice(0, long.indexOf('{}'))], weights, all, (text) => tokens.ids(text, 0));
    assert.deepEqual(distinctRows(rows).of, [[0, 1, 2, 3], [4, 5, 6, 7]]);
  });

  test('features equal the whole-text graph (max abs <= 1e-6) for every mix, in [mix][class][template] order', async () => {
    const got = await m.encodeClassPromptsNo(CLASSES, TEMPLATES, MIXES.map(([, mix]) => mix), { batchSize: 7 });
    const per = CLASSES.length * TEMPLATES.length * m.embedDim;
    assert.deepEqual(got.dims, [MIXES.length * CLASSES.length * TEMPLATES.length, m.embedDim]);
    for (const [k, [name, mix]] of MIXES.entries()) {
      const whole = await m.encodeTextsNo(classPrompts(CLASSES, TEMPLATES), mix);
      const diff = maxAbsDiff(got.data.subarray(k * per, (k + 1) * per), whole.data);
      assert.ok(diff <= 1e-6, `${name}: max abs ${diff}`);
      assert.ok(diff > 0 || name === 'none', 'the two paths are different computations (equal bits everywhere would mean the same graph ran)');
    }
  });

  test("a row's bits do not depend on the batch size, the other classes or the other mixes", async () => {
    const all = await m.encodeClassPromptsNo(CLASSES, TEMPLATES, MIXES.map(([, mix]) => mix), { batchSize: 64 });
    const per = CLASSES.length * TEMPLATES.length * m.embedDim;
    const fresh = await ClipnModel.load(DEFAULT_MODEL_DIR, { ...CPU, textMemoBytes: 0 });
    try {
      const one = await fresh.encodeClassPromptsNo([CLASSES[2]], TEMPLATES, [MIXES[2][1]], { batchSize: 1 });
      const row = (2 * per + 2 * TEMPLATES.length * m.embedDim);
      assert.ok(bytes(one.data).equals(bytes(all.data.subarray(row, row + TEMPLATES.length * m.embedDim))));
      const threes = await fresh.encodeClassPromptsNo(CLASSES, TEMPLATES, MIXES.map(([, mix]) => mix), { batchSize: 3 });
      assert.ok(bytes(threes.data).equals(bytes(all.data)));
    } finally {
      await fresh.dispose();
    }
  });

  test('matches PyTorch encode_text_no on the whole texts (max abs <= 1e-5)', async () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(DEFAULT_MODEL_DIR, 'clipn.json'), 'utf8')) as { checkpoint: string };
    const texts = classPrompts(CLASSES, TEMPLATES);
    const weights = Array.from(m.weightMatrix(promptWeights.subset([1, 4, 9]), 1));
    const ref = runPythonJson<number[][]>(
      `
import json, sys
from pathlib import Path
import torch
from clipn.checkpoint import load_clipn
from clipn.tokenizer import ClipTokenizer
a = json.load(sys.stdin)
model = load_clipn(Path(a["checkpoint"])).eval()
tok = ClipTokenizer(Path(a["merges"]), model.config.text.context_length)
with torch.no_grad():
    out = model.encode_text_no(torch.tensor(tok.tokenize(a["texts"])), torch.tensor([a["weights"]] * len(a["texts"])))
print(json.dumps(out.tolist()))
`,
      { checkpoint: path.join(DEFAULT_MODEL_DIR, manifest.checkpoint), merges: path.join(DEFAULT_MODEL_DIR, 'bpe_simple_vocab.txt.gz'), texts, weights },
    );
    const got = await m.encodeClassPromptsNo(CLASSES, TEMPLATES, [promptWeights.subset([1, 4, 9])]);
    const diff = maxAbsDiff(got.data, ref.flat());
    assert.ok(diff <= 1e-5, `max abs ${diff}`);
  });
});

test('the memo keeps shared-beginning rows apart from whole-text rows', async () => {
  const m = await ClipnModel.load(DEFAULT_MODEL_DIR, CPU);
  try {
    const first = await m.encodeClassPromptsNo(CLASSES, TEMPLATES, [promptWeights.mean()]);
    assert.equal(first.fromMemo, 0);
    const again = await m.encodeClassPromptsNo(CLASSES.slice(1), TEMPLATES, [promptWeights.mean()]);
    assert.equal(again.fromMemo, again.dims[0]);
    const whole = await m.encodeTextsNo(classPrompts(CLASSES, TEMPLATES), promptWeights.mean());
    assert.equal(whole.fromMemo, 0, 'whole texts are not served from shared-beginning rows');
  } finally {
    await m.dispose();
  }
});

test('a model without text_no_kv encodes whole texts (bit for bit encodeTextsNo)', async () => {
  const copy = copyModelFolder(exportMicro().folder, 'no-kv-graph');
  const mpath = path.join(copy, 'clipn.json');
  const manifest = JSON.parse(fs.readFileSync(mpath, 'utf8')) as { graphs: Record<string, string>; files: Record<string, string> };
  assert.ok(manifest.graphs.text_no_kv, 'the exporter writes text_no_kv by default');
  fs.rmSync(path.join(copy, manifest.graphs.text_no_kv));
  delete manifest.files[manifest.graphs.text_no_kv];
  delete manifest.graphs.text_no_kv;
  fs.writeFileSync(mpath, JSON.stringify(manifest));
  const m = await ClipnModel.load(copy, { ...CPU, textMemoBytes: 0 });
  try {
    assert.equal(m.sharesPromptBeginnings, false);
    const classes = ['circle', 'square'];
    const templates = ['a photo of no {}.', 'a {}.'];
    const got = await m.encodeClassPromptsNo(classes, templates, [promptWeights.single(1)]);
    const whole = await m.encodeTextsNo(classPrompts(classes, templates), promptWeights.single(1));
    assert.ok(bytes(got.data).equals(bytes(whole.data)));
  } finally {
    await m.dispose();
  }
});

/** The first `{}` filled (what the beginning is measured against). */
function fillFirst(template: string, name: string): string {
  return template.replace('{}', name);
}
