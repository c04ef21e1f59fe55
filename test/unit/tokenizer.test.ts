// Parity of extension/engine/tokenizer.ts with the reference models/clipn/tokenizer.py.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { spawnSync } from 'node:child_process';

import { htmlUnescape } from '../../extension/engine/html-unescape';
import { ClipTokenizer, cleanText, readMerges, MAX_MERGES } from '../../extension/engine/tokenizer';
import { runPythonJson, SHARED_DIR, PYTHON } from './helpers/python';

const REAL_MERGES = path.join(SHARED_DIR, 'data', 'bpe_simple_vocab_16e6.txt.gz');

interface PyResult {
  ids: number[][];
  vocab_size: number;
  decoded: string[];
}

const PY_TOKENIZE = `
import json, sys
from clipn.tokenizer import ClipTokenizer
d = json.load(sys.stdin)
t = ClipTokenizer(d['merges'], d['context'])
ids = t.tokenize(d['texts'])
print(json.dumps({'ids': ids, 'vocab_size': t.vocab_size, 'decoded': [t.decode(r) for r in ids]}))
`;

function python(merges: string, texts: string[], context = 77): PyResult {
  return runPythonJson<PyResult>(PY_TOKENIZE, { merges, context, texts });
}

function rows(tok: ClipTokenizer, texts: string[]): number[][] {
  const flat = tok.tokenize(texts);
  const ctx = tok.contextLength;
  return texts.map((_, i) => Array.from(flat.subarray(i * ctx, (i + 1) * ctx), Number));
}

const tokenizers = new Map<string, ClipTokenizer>();
function tokenizer(merges: string, context: number): ClipTokenizer {
  const key = `${merges}\0${context}`;
  if (!tokenizers.has(key)) tokenizers.set(key, ClipTokenizer.fromFile(merges, context));
  return tokenizers.get(key)!;
}

/** Compares every text's ids with Python's; reports the offending text. */
function assertParity(merges: string, texts: string[], context = 77, given?: PyResult): { tok: ClipTokenizer; py: PyResult } {
  const tok = tokenizer(merges, context);
  const py = given ?? python(merges, texts, context);
  const js = rows(tok, texts);
  texts.forEach((text, i) => {
    assert.deepEqual(js[i], py.ids[i], `ids differ for ${JSON.stringify(text)}`);
    const first = tok.tokenizeOne(text);
    assert.deepEqual(first, py.ids[i]);
    first.fill(-1); // the caller's copy: the row tokenizeOne remembers must not change with it
    assert.deepEqual(tok.tokenizeOne(text), py.ids[i], `remembered ids differ for ${JSON.stringify(text)}`);
  });
  // Again, every word now from the word cache.
  rows(tok, texts).forEach((ids, i) => assert.deepEqual(ids, py.ids[i], `cached words give other ids for ${JSON.stringify(texts[i])}`));
  assert.equal(tok.vocabSize, py.vocab_size);
  return { tok, py };
}

before(() => {
  const probe = spawnSync(PYTHON, ['-c', 'import regex, torch'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    throw new Error(
      `the reference tokenizer needs Debian's python3-regex (apt-get install python3-regex): ${probe.stderr}`,
    );
  }
  assert.ok(fs.existsSync(REAL_MERGES), `${REAL_MERGES} is missing (shared data)`);
});

const TEMPLATES = ['a photo of a {}.', 'a blurry photo of a {}.', 'a photo of the small {}.', 'itap of a {}.', 'a good photo of the {}.', 'a photo of no {}.'];
const CLASSES = ['dog', 'cat', 'goldfish', 'great white shark', "jack-o'-lantern", 'T-shirt', 'hot dog', 'crane (bird)', 'ice cream', 'CD player'];

const CASES: Record<string, string[]> = {
  plain: ['a photo of a dog', 'A Photo Of A Dog', 'dog', 'the quick brown fox jumps over the lazy dog', 'supercalifragilisticexpialidocious'],
  templates: TEMPLATES.flatMap((t) => CLASSES.map((c) => t.replace('{}', c))),
  punctuation: ['hello, world!', 'what?!?', '...', '(a) [b] {c}', 'a/b\\c', 'x--y', 'e-mail: foo@bar.com', '#1 @user $5 100%', '"quoted" `tick` ~tilde~', '<|notspecial|>'],
  numbers: ['123', '3.14159', '1,000,000', 'route 66', '2nd 3rd 21st', '٣ ² ½ Ⅻ', '0x1F'],
  apostrophes: ["it's", "IT'S", "we're", "they've", "I'm", "you'll", "he'd", "don't", "rock 'n' roll", "'s", "dog's", "dogs'", 'it’s', "it'ſ"],
  unicode: ['café', 'cafe\u0301', 'Ångström', 'A\u030angstro\u0308m', 'naïve résumé', '中文 日本語 한국어', '東京タワー', '😀 👍🏽 👨‍👩‍👧', '𝐀𝐁𝐂', 'ﬁ ﬂ', 'İstanbul', 'ΟΔΟΣ σοφός', 'Straße STRASSE ẞ', 'ǅ ǈ', 'e\u0301\u0302\u0303', '\u0345a\u0345', 'zero\u200bwidth', 'bom\ufeffinside', 'ՙ Ա', 'नमस्ते', 'مرحبا', 'שלום'],
  html: ['fish &amp; chips', 'it&#39;s', '&lt;b&gt;bold&lt;/b&gt;', '&amp;amp;', '&quot;q&quot;', '&#x1F600;', '&#128512', '&copy 2024', '&notit;', '&notin;', '&#0; &#13; &#150; &#xD800; &#99999999;', '&#1;x', '&hearts;&spades;', '&nbsp;a&nbsp;', '&ampx', '&AMP;', '&Amp;', 'a&b', '&;', '& amp;', '&lang;&rang;'],
  whitespace: ['  leading and trailing  ', 'a\tb\nc\r\nd', 'many     spaces', '\u00a0nbsp\u00a0', '\u2003em\u3000ideographic', 'a\x1cb\x1dc\x1ed\x1fe', 'a\x85b', '\t\n', '   '],
  empty: ['', ' '],
  special: ['<|startoftext|>', '<|endoftext|>', 'x<|endoftext|>y', '<|ENDOFTEXT|>', '<|ſtartoftext|>'],
  long: [
    Array.from({ length: 100 }, (_, i) => `word${i}`).join(' '),
    'a photo of a ' + 'very '.repeat(80) + 'big dog.',
    'x'.repeat(500),
    '😀'.repeat(60),
  ],
};

// One Python run for all the named cases (loading the real vocabulary takes a while).
let realCases: Record<string, PyResult> = {};
before(() => {
  realCases = runPythonJson<Record<string, PyResult>>(
    `import json, sys
from clipn.tokenizer import ClipTokenizer
d = json.load(sys.stdin)
t = ClipTokenizer(d['merges'], 77)
out = {}
for name, texts in d['cases'].items():
    ids = t.tokenize(texts)
    out[name] = {'ids': ids, 'vocab_size': t.vocab_size, 'decoded': [t.decode(r) for r in ids]}
print(json.dumps(out))`,
    { merges: REAL_MERGES, cases: CASES },
  );
});

for (const [name, texts] of Object.entries(CASES)) {
  test(`real vocabulary: ${name} match the Python tokenizer`, () => {
    const { tok, py } = assertParity(REAL_MERGES, texts, 77, realCases[name]);
    // decode agrees too (same lossy definition)
    texts.forEach((_, i) => assert.equal(tok.decode(py.ids[i]), py.decoded[i]));
  });
}

test('over-long prompts are truncated with EOT last', () => {
  const tok = tokenizer(REAL_MERGES, 77);
  const text = CASES.long[0];
  const ids = tok.tokenizeOne(text);
  assert.equal(ids.length, 77);
  assert.equal(ids[0], tok.sot);
  assert.equal(ids[76], tok.eot);
  assert.ok(tok.encode(text).length > 75);
  assert.deepEqual(ids.slice(1, 76), tok.encode(text).slice(0, 75));
  // short prompt: SOT ... EOT then zeros
  const short = tok.tokenizeOne('a photo of a dog.');
  const eotAt = short.indexOf(tok.eot);
  assert.ok(eotAt > 1 && short.slice(eotAt + 1).every((v) => v === 0));
  assert.equal(tok.sot, 49406);
  assert.equal(tok.eot, 49407);
  assert.equal(tok.vocabSize, 49408);
});

test('other context lengths match Python (5, 1)', () => {
  const texts = ['a photo of a dog', '', 'a b c d e f g'];
  assertParity(REAL_MERGES, texts, 5);
  assertParity(REAL_MERGES, texts, 1);
});

test('deterministic fuzz (mixed pieces, random code points) matches Python', () => {
  let seed = 20240601;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff) / 0x7fffffff;
  const pieces = Object.values(CASES).flat().filter((t) => t.length < 40).concat([' ', '  ', '\t', '\n', '&', ';', '#', "'"]);
  const texts: string[] = [];
  for (let i = 0; i < 400; i++) {
    let s = '';
    const n = 1 + Math.floor(rnd() * 8);
    for (let j = 0; j < n; j++) {
      if (rnd() < 0.2) {
        let cp = Math.floor(rnd() < 0.6 ? rnd() * 0x3000 : rnd() * 0x30000);
        if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
        s += String.fromCodePoint(cp);
      } else s += pieces[Math.floor(rnd() * pieces.length)];
    }
    texts.push(s);
  }
  assertParity(REAL_MERGES, texts);
});

test('html.unescape: every named entity the table knows, and numeric references, match Python', () => {
  const names = runPythonJson<string[]>(
    `import json, html.entities as E
names = sorted(set(k for k in E.html5 if not k.endswith(';')) | set(n + ';' for n in E.name2codepoint)
               | set(k + ';' for k in E.html5 if not k.endswith(';')) | {'apos;', 'Tab;', 'NewLine;'})
print(json.dumps(names))`,
    null,
  );
  const inputs = [
    ...names.map((n) => `x&${n}y`),
    ...names.map((n) => `&${n}`),
    '&#65;&#x41;&#X41;&#65&#x41', '&#0;&#13;&#128;&#129;&#150;&#159;&#160;', '&#xD800;&#xDFFF;&#x110000;&#1114111;',
    '&#1;&#8;&#11;&#14;&#127;&#xFDD0;&#xFFFE;&#x10FFFF;&#x1FFFF;', '&#' + '9'.repeat(400) + ';', '&#x' + 'f'.repeat(40) + ';',
    '&ampamp;', '&ltx', '&gtgt;', '&copyright', '&notanentity;', '&' + 'a'.repeat(40) + ';', '&&&', '&#;', '&#x;', '&# 1;',
    '&amp;lt;', '&😀;', '&\u00e9;',
  ];
  const py = runPythonJson<string[]>(
    'import json, sys, html\nprint(json.dumps([html.unescape(s) for s in json.load(sys.stdin)]))',
    inputs,
  );
  inputs.forEach((s, i) => assert.equal(htmlUnescape(s), py[i], `html.unescape(${JSON.stringify(s)})`));
});

test('clean_text matches Python (NFC, unescape twice, whitespace, lower)', () => {
  const texts = Object.values(CASES).flat();
  const py = runPythonJson<string[]>(
    'import json, sys\nfrom clipn.tokenizer import clean_text\nprint(json.dumps([clean_text(s) for s in json.load(sys.stdin)]))',
    texts,
  );
  texts.forEach((t, i) => assert.equal(cleanText(t), py[i], `clean_text(${JSON.stringify(t)})`));
});

test('small vocabulary from a temp merges file (plain and gzip) matches Python', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-tok-'));
  try {
    const merges = [
      'a t</w>', 'o g</w>', 'd og</w>', 'c at</w>', 'p h', 'ph o', 't o</w>', 'pho to</w>', 'o f</w>',
      'h e</w>', 't he</w>', 'Ã ©', 'f Ã©</w>', 'ca fÃ©</w>', 's </w>', "' s</w>", '. </w>',
      'a t', // repeated join ("at" again, not at</w>) and a duplicate merge below
      'o g</w>',
    ];
    const plain = path.join(dir, 'merges.txt');
    fs.writeFileSync(plain, '#version: 0.2\n' + merges.join('\n') + '\n\n');
    const gz = path.join(dir, 'merges.txt.gz');
    fs.writeFileSync(gz, zlib.gzipSync(fs.readFileSync(plain)));
    const crlf = path.join(dir, 'merges-crlf.txt');
    fs.writeFileSync(crlf, '#version: 0.2\r\n' + merges.join('\r\n') + '\r\n');
    const texts = [
      'a photo of the dog', 'the cat', 'café', "the dog's photo.", 'at at at', 'dogs', 'zebra', '', '😀 to',
      ...CASES.unicode, ...CASES.special, ...CASES.long,
    ];
    for (const file of [plain, gz, crlf]) {
      // vocab_size is compared too: repeated tokens ('og</w>', 's</w>', '.</w>') keep their last id
      assertParity(file, texts, 16);
    }
    assert.deepEqual(readMerges(plain), readMerges(gz));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the model folder merges (learned by models/clipn/vocab.py) match Python', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-tok-'));
  try {
    const file = path.join(dir, 'bpe_simple_vocab.txt.gz');
    runPythonJson(
      `import json, sys
from clipn.vocab import learn_merges, write_merges
d = json.load(sys.stdin)
write_merges(d['path'], learn_merges(d['texts'], max_merges=300, min_count=2))
print('null')`,
      { path: file, texts: TEMPLATES.flatMap((t) => CLASSES.map((c) => t.replace('{}', c))) },
    );
    assertParity(file, [...CASES.templates, ...CASES.plain, ...CASES.unicode, ...CASES.html], 32);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('merges file errors name the file', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-tok-'));
  try {
    const missing = path.join(dir, 'nope.txt.gz');
    assert.throws(() => ClipTokenizer.fromFile(missing), (e: Error) => e.message.includes(missing) && /not found/.test(e.message));
    const bad = path.join(dir, 'bad.txt');
    fs.writeFileSync(bad, '#version\na b\nthree symbols here\n');
    assert.throws(() => readMerges(bad), (e: Error) => e.message.startsWith(`${bad}:3:`));
    const binary = path.join(dir, 'bin.txt');
    fs.writeFileSync(binary, Buffer.from([0x23, 0x0a, 0xff, 0xfe, 0x20, 0x61]));
    assert.throws(() => readMerges(binary), (e: Error) => e.message.includes(binary) && /not a readable/.test(e.message));
    const truncatedGz = path.join(dir, 'trunc.txt.gz');
    fs.writeFileSync(truncatedGz, zlib.gzipSync(Buffer.from('#v\na b\n'.repeat(100))).subarray(0, 20));
    assert.throws(() => readMerges(truncatedGz), (e: Error) => e.message.includes(truncatedGz));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('reads at most MAX_MERGES merges of the real file', () => {
  assert.equal(readMerges(REAL_MERGES).length, MAX_MERGES);
});

test('speed: 10,000 prompts', () => {
  const tok = ClipTokenizer.fromFile(REAL_MERGES); // fresh: cold BPE cache
  const prompts: string[] = [];
  for (let i = 0; i < 10_000; i++) {
    prompts.push(TEMPLATES[i % TEMPLATES.length].replace('{}', `${CLASSES[i % CLASSES.length]} number ${i}`));
  }
  const t0 = process.hrtime.bigint();
  const ids = tok.tokenize(prompts);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  assert.equal(ids.length, 10_000 * 77);
  console.log(`# tokenizer: 10,000 prompts in ${ms.toFixed(1)} ms`);
});
