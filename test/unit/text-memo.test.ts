// The model's memo of encoded text rows: a remembered row is bit-identical to a fresh encoding
// (onnxruntime's CPU kernels give a row the same bits in any batch, which the memo relies on),
// an edited prompt list encodes only what changed, and the memo stays within its byte bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClipnModel, promptWeights } from '../../extension/engine/encoder';
import { TextFeatureMemo, textKey } from '../../extension/engine/text-memo';
import { DEFAULT_MODEL_DIR } from './helpers/models';

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const texts = Array.from({ length: 120 }, (_, i) => `a photo of a ${['circle', 'square', 'star', 'arrow', 'cross'][i % 5]} number ${i}.`);

test('a row encodes to the same bits alone or in any batch (what the memo relies on)', async () => {
  const m = await ClipnModel.load(DEFAULT_MODEL_DIR, { backend: { executionProviders: ['cpu'] }, textMemoBytes: 0 });
  try {
    const d = m.embedDim;
    const whole = await m.encodeTexts(texts, { batchSize: 120 });
    const sevens = await m.encodeTexts(texts, { batchSize: 7 });
    const alone = await m.encodeTexts([texts[50]], { batchSize: 1 });
    assert.ok(bytes(whole.data).equals(bytes(sevens.data)));
    assert.ok(bytes(whole.data.subarray(50 * d, 51 * d)).equals(bytes(alone.data)));
    const noWhole = await m.encodeTextsNo(texts, promptWeights.single(3), { batchSize: 120 });
    const noAlone = await m.encodeTextsNo([texts[99]], promptWeights.single(3), { batchSize: 1 });
    assert.ok(bytes(noWhole.data.subarray(99 * d, 100 * d)).equals(bytes(noAlone.data)));
  } finally {
    await m.dispose();
  }
});

test('remembered rows equal fresh ones; an edited list encodes only the changed texts', async () => {
  const fresh = await ClipnModel.load(DEFAULT_MODEL_DIR, { backend: { executionProviders: ['cpu'] }, textMemoBytes: 0 });
  const m = await ClipnModel.load(DEFAULT_MODEL_DIR, { backend: { executionProviders: ['cpu'] } });
  try {
    const first = await m.encodeTextsNo(texts, promptWeights.mean(), { batchSize: 32 });
    assert.equal(first.fromMemo, 0);
    const again = await m.encodeTextsNo(texts, promptWeights.mean(), { batchSize: 32 });
    assert.equal(again.fromMemo, texts.length);
    assert.equal(again.provider, 'cpu');
    assert.ok(bytes(again.data).equals(bytes(first.data)));
    const edited = [...texts];
    edited[17] = 'a photo of no heart.';
    let progressTotal = 0;
    const after = await m.encodeTextsNo(edited, promptWeights.mean(), { batchSize: 32, onProgress: (p) => (progressTotal = p.total) });
    assert.equal(after.fromMemo, texts.length - 1);
    assert.equal(progressTotal, 1, 'progress counts the texts actually encoded');
    assert.ok(bytes(after.data).equals(bytes((await fresh.encodeTextsNo(edited, promptWeights.mean(), { batchSize: 5 })).data)));
    // Another prompt mix is another row: nothing is shared across weights or towers.
    assert.equal((await m.encodeTextsNo(texts, promptWeights.single(0))).fromMemo, 0);
    assert.equal((await m.encodeTexts(texts)).fromMemo, 0);
    // Duplicates in one call are encoded once.
    const dup = await m.encodeTexts(['a star.', 'a star.', 'a star.']);
    assert.equal(dup.fromMemo, 2);
    assert.ok(bytes(dup.data.subarray(0, m.embedDim)).equals(bytes(dup.data.subarray(2 * m.embedDim))));
  } finally {
    await m.dispose();
    await fresh.dispose();
  }
});

test('the memo keeps within its byte bound, oldest rows first', () => {
  const memo = new TextFeatureMemo(10 * 128 * 4);
  for (let i = 0; i < 25; i++) memo.set(textKey('yes', `t${i}`), new Float32Array(128).fill(i));
  assert.ok(memo.size <= 10 && memo.size >= 9, `${memo.size} rows`);
  assert.equal(memo.get(textKey('yes', 't0')), undefined);
  assert.equal(memo.get(textKey('yes', 't24'))![0], 24);
  assert.notEqual(textKey('no', 'x', Float32Array.from([1, 0])), textKey('no', 'x', Float32Array.from([0, 1])));
  assert.notEqual(textKey('no', 'x'), textKey('yes', 'x'));
});
