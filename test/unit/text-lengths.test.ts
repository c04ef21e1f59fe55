// Texts run at their own token length when the manifest says the text graphs take any length
// (text_sequence "variable"): the grouping helpers, features equal to the padded full-context
// run (the zero padding after EOT cannot reach the causal towers' EOT feature), PyTorch parity
// at several lengths, a row's bits independent of its batch, and old manifests unchanged.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ClipnModel, promptWeights } from '../../extension/engine/encoder';
import type { PromptWeightsInput } from '../../extension/engine/encoder';
import { loadManifest } from '../../extension/engine/manifest';
import { gatherIds, planTextBatches, tokenLengths } from '../../extension/engine/text-lengths';
import { copyModelFolder, DEFAULT_MODEL_DIR, exportMicro } from './helpers/models';
import { runPythonJson } from './helpers/python';
import { maxAbsDiff } from './helpers/arrays';

const CPU = { backend: { executionProviders: ['cpu'] }, textMemoBytes: 0 };
const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Texts of every token length from 2 (the empty text: SOT, EOT) to past the context (truncated). */
const WORDS = ['a', 'photo', 'of', 'no', 'red', 'circle', 'on', 'the', 'blue', 'background', 'with', 'star', 'and', 'square'];
const TEXTS = [
  '',
  ...Array.from({ length: 24 }, (_, n) => WORDS.slice(0, 1 + (n % WORDS.length)).join(' ') + (n < WORDS.length ? '' : ' too.')),
  'itap of a café, 3 röntgen & co.',
  Array(30).fill('a very long prompt').join(' '),
];

/** Records the input_ids dims of every graph run of a model (the public low-level methods). */
function recordRuns(m: ClipnModel): number[][] {
  const runs: number[][] = [];
  const yes = m.encodeTokenIds.bind(m);
  const no = m.encodeTokenIdsNo.bind(m);
  m.encodeTokenIds = (ids, dims) => (runs.push([...dims]), yes(ids, dims));
  m.encodeTokenIdsNo = (ids, dims, w, wd) => (runs.push([...dims]), no(ids, dims, w, wd));
  return runs;
}

describe('grouping helpers', () => {
  test('tokenLengths is the first largest id + 1 (where the graph reads EOT)', () => {
    const ids = BigInt64Array.from([9n, 5n, 7n, 0n, 9n, 9n, 1n, 0n, 3n, 1n, 2n, 0n].map(BigInt));
    assert.deepEqual([...tokenLengths(ids, 4)], [1, 1, 1]);
    const row = (...v: number[]) => v.map(BigInt);
    const more = BigInt64Array.from([...row(1, 3, 0, 0), ...row(1, 2, 5, 0), ...row(1, 2, 3, 4)]);
    assert.deepEqual([...tokenLengths(more, 4)], [2, 3, 4]);
    assert.throws(() => tokenLengths(new BigInt64Array(5), 4), /not whole rows of 4/);
  });

  test('planTextBatches: every row once, one length per batch, at most batchSize, input order within a length', () => {
    const lengths = Int32Array.from([5, 3, 5, 5, 3, 7, 5, 5, 3]);
    const batches = planTextBatches(lengths.length, 2, 8, lengths);
    assert.deepEqual(batches, [
      { rows: [1, 4], length: 3 }, { rows: [8], length: 3 },
      { rows: [0, 2], length: 5 }, { rows: [3, 6], length: 5 }, { rows: [7], length: 5 },
      { rows: [5], length: 7 },
    ]);
    // Without lengths (old manifests): consecutive rows at the context, as before.
    assert.deepEqual(planTextBatches(5, 2, 8), [{ rows: [0, 1], length: 8 }, { rows: [2, 3], length: 8 }, { rows: [4], length: 8 }]);
    assert.deepEqual(planTextBatches(0, 2, 8, new Int32Array(0)), []);
  });

  test('gatherIds takes the first `length` ids of the given rows', () => {
    const ids = BigInt64Array.from(Array.from({ length: 12 }, (_, i) => BigInt(i)));
    assert.deepEqual([...gatherIds(ids, 4, [2, 0], 2)], [8n, 9n, 0n, 1n]);
    assert.deepEqual([...gatherIds(ids, 4, [1, 2], 4)], [4n, 5n, 6n, 7n, 8n, 9n, 10n, 11n]);
  });
});

describe('the default model runs each text at its own token length', () => {
  let m: ClipnModel;
  let lengths: number[] = [];
  before(async () => {
    m = await ClipnModel.load(DEFAULT_MODEL_DIR, CPU);
    const c = m.contextLength;
    // Independent of tokenLengths: SOT + the text's tokens + EOT, cut to the context.
    lengths = TEXTS.map((t) => Math.min(m.tokenizer.encode(t).length + 2, c));
  });
  after(async () => {
    await m?.dispose();
  });

  test('the texts cover token lengths 2 to the context, the longest truncated', () => {
    assert.ok(m.variableTextLength);
    assert.equal(Math.min(...lengths), 2);
    assert.equal(Math.max(...lengths), m.contextLength);
    assert.ok(new Set(lengths).size >= 10, `${new Set(lengths).size} distinct lengths`);
    assert.ok(m.tokenizer.encode(TEXTS[TEXTS.length - 1]).length + 2 > m.contextLength);
  });

  test('features equal the padded full-context run (max abs <= 1e-5), both towers, several mixes', async () => {
    const n = TEXTS.length;
    const c = m.contextLength;
    const d = m.embedDim;
    const p = m.numPrompts;
    const padded = m.tokenizer.tokenize(TEXTS);
    const runs = recordRuns(m);
    const grouped = await m.encodeTexts(TEXTS, { batchSize: 4 });
    const full = await m.encodeTokenIds(padded, [n, c]);
    const yesDiff = maxAbsDiff(grouped.data, full.data);
    assert.ok(yesDiff <= 1e-5, `yes tower: max abs ${yesDiff}`);
    // Every graph run held texts of one length and ran at it.
    const ranAt = runs.slice(0, -1);
    assert.deepEqual([...new Set(ranAt.map((r) => r[1]))].sort((a, b) => a - b), [...new Set(lengths)].sort((a, b) => a - b));
    assert.equal(ranAt.reduce((s, r) => s + r[0], 0), n);
    assert.ok(ranAt.every((r) => r[0] <= 4));

    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const perRow = Float32Array.from({ length: n * p }, rand);
    const mixes: Array<[string, PromptWeightsInput]> = [
      ['mean', promptWeights.mean()],
      ['none', promptWeights.none()],
      ['single 3', promptWeights.single(3)],
      ['subset 0..7', promptWeights.subset([0, 1, 2, 3, 4, 5, 6, 7])],
      ['random per row', perRow],
    ];
    for (const [name, mix] of mixes) {
      const g = await m.encodeTextsNo(TEXTS, mix, { batchSize: 5 });
      const w = m.weightMatrix(mix, n);
      const f = await m.encodeTokenIdsNo(padded, [n, c], w, [n, p]);
      const diff = maxAbsDiff(g.data, f.data);
      assert.ok(diff <= 1e-5, `no tower, ${name}: max abs ${diff}`);
      assert.equal(g.data.length, n * d);
    }
  });

  test("a row's bits are the same alone, in a mixed batch, and at any batch size", async () => {
    const d = m.embedDim;
    const mixed = await m.encodeTexts(TEXTS, { batchSize: 64 });
    const threes = await m.encodeTexts(TEXTS, { batchSize: 3 });
    assert.ok(bytes(mixed.data).equals(bytes(threes.data)));
    const noMixed = await m.encodeTextsNo(TEXTS, promptWeights.mean(), { batchSize: 64 });
    for (const i of [0, 5, 13, TEXTS.length - 1]) {
      const alone = await m.encodeTexts([TEXTS[i]], { batchSize: 1 });
      assert.ok(bytes(mixed.data.subarray(i * d, (i + 1) * d)).equals(bytes(alone.data)), `yes row ${i}`);
      const noAlone = await m.encodeTextsNo([TEXTS[i]], promptWeights.mean(), { batchSize: 1 });
      assert.ok(bytes(noMixed.data.subarray(i * d, (i + 1) * d)).equals(bytes(noAlone.data)), `no row ${i}`);
    }
  });
});

describe('the exported micro model', () => {
  test('the graphs at several lengths match PyTorch at those lengths and at full context (max abs <= 1e-5)', async () => {
    const { folder, checkpoint } = exportMicro();
    const m = await ClipnModel.load(folder, CPU);
    try {
      const c = m.contextLength;
      const p = m.numPrompts;
      const texts = ['', 'a photo of a circle.', TEXTS[20], TEXTS[TEXTS.length - 1]];
      const ids = m.tokenizer.tokenize(texts);
      const own = tokenLengths(ids, c);
      const cases = texts.flatMap((_, row) => [...new Set([own[row], Math.min(c, own[row] + 3), c])].map((length) => ({ row, length })));
      const weights = Array.from({ length: p }, (_, k) => (k % 3) / p);
      const ref = runPythonJson<{ yes: number[][]; no: number[][]; fullYes: number[][]; fullNo: number[][] }>(
        `
import json, sys
from pathlib import Path
import torch
from clipn.checkpoint import load_clipn
a = json.load(sys.stdin)
model = load_clipn(Path(a["checkpoint"])).eval()
ids = torch.tensor(a["ids"], dtype=torch.long).reshape(len(a["texts"]), -1)
w = torch.tensor([a["weights"]])
out = {"yes": [], "no": []}
with torch.no_grad():
    for case in a["cases"]:
        x = ids[case["row"]:case["row"] + 1, :case["length"]]
        out["yes"].append(model.encode_text(x)[0].tolist())
        out["no"].append(model.encode_text_no(x, w)[0].tolist())
    out["fullYes"] = model.encode_text(ids).tolist()
    out["fullNo"] = model.encode_text_no(ids, w.expand(ids.shape[0], -1)).tolist()
print(json.dumps(out))
`,
        { checkpoint, texts, ids: [...ids].map(Number), cases, weights },
      );
      for (const [k, { row, length }] of cases.entries()) {
        const x = gatherIds(ids, c, [row], length);
        const yes = await m.encodeTokenIds(x, [1, length]);
        const no = await m.encodeTokenIdsNo(x, [1, length], Float32Array.from(weights), [1, p]);
        for (const [name, got, want] of [
          ['yes', yes.data, ref.yes[k]], ['no', no.data, ref.no[k]], ['yes vs full', yes.data, ref.fullYes[row]], ['no vs full', no.data, ref.fullNo[row]],
        ] as const) {
          const diff = maxAbsDiff(got, want);
          assert.ok(diff <= 1e-5, `${name}, text ${row} at length ${length}: max abs ${diff}`);
        }
      }
    } finally {
      await m.dispose();
    }
  });

  test('a manifest without text_sequence keeps the full-context behaviour', async () => {
    const copy = copyModelFolder(exportMicro().folder, 'no-text-sequence');
    const mpath = path.join(copy, 'clipn.json');
    const raw = JSON.parse(fs.readFileSync(mpath, 'utf8'));
    assert.equal(raw.text_sequence, 'variable');
    delete raw.text_sequence;
    fs.writeFileSync(mpath, JSON.stringify(raw));
    const m = await ClipnModel.load(copy, CPU);
    try {
      assert.equal(m.variableTextLength, false);
      const c = m.contextLength;
      const runs = recordRuns(m);
      const got = await m.encodeTexts(TEXTS, { batchSize: 8 });
      assert.ok(runs.length > 0 && runs.every((r) => r[1] === c), 'every run at the context length');
      const full = await m.encodeTokenIds(m.tokenizer.tokenize(TEXTS), [TEXTS.length, c]);
      assert.ok(bytes(got.data).equals(bytes(full.data)));
      await assert.rejects(m.encodeTokenIds(new BigInt64Array(10), [1, 10]), /text graph: input_ids dims \[1, 10\].*\[B, 16\]/);
      raw.text_sequence = 'sometimes';
      fs.writeFileSync(mpath, JSON.stringify(raw));
      await assert.rejects(loadManifest(copy), /field "text_sequence" must be one of variable, context \(got "sometimes"\)/);
    } finally {
      await m.dispose();
    }
  });
});
