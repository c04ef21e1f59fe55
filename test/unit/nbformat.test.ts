// The .clipnb format: nbformat 4 that Jupyter and GitHub read, and a byte-for-byte stable round
// trip (a saved notebook re-saved is unchanged, so version control shows no noise).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  NotebookFormatError,
  parseNotebook,
  serializeNotebook,
  splitLines,
  type NbNotebook,
} from '../../extension/notebook/nbformat';
import { packPayload, unpackPayload } from '../../extension/protocol';
import { REPO_ROOT } from './helpers/python';

const enc = new TextEncoder();
const dec = new TextDecoder();

function sample(): NbNotebook {
  const view = packPayload({ kind: 'evaluate', x: Float32Array.from([0.5, -1, 3.25]), label: '<img src=x onerror=alert(1)>.png' });
  return {
    nbformatMinor: 4,
    metadata: { language_info: { name: 'clipn' }, custom: { b: 1, a: [1, 2] } },
    cells: [
      { kind: 'markdown', source: '# Title\n\nSome *text*.', language: 'markdown', metadata: {}, outputs: [] },
      {
        kind: 'code',
        source: 'model:\n  folder: ../models/default\n',
        language: 'clipn',
        metadata: { tags: ['setup'] },
        executionCount: 3,
        outputs: [
          {
            outputType: 'display_data',
            items: [
              { mime: 'application/vnd.clipn.view', data: view },
              { mime: 'text/plain', data: enc.encode('line 1\nline 2') },
              { mime: 'application/json', data: enc.encode('{"a":1,"b":[true,null]}') },
            ],
            metadata: { note: 'x' },
          },
          { outputType: 'stream', items: [{ mime: 'application/vnd.code.notebook.stdout', data: enc.encode('progress\n') }] },
        ],
      },
      { kind: 'code', source: 'print(1)', language: 'python', metadata: {}, executionCount: null, outputs: [] },
      { kind: 'raw', source: 'raw text', language: 'raw', metadata: {}, outputs: [] },
    ],
  };
}

test('writes what Jupyter writes: sorted keys, indent 1, sources as line lists, base64 binaries', () => {
  const text = dec.decode(serializeNotebook(sample()));
  assert.ok(text.endsWith('}\n'));
  const json = JSON.parse(text);
  assert.equal(json.nbformat, 4);
  assert.deepEqual(Object.keys(json), ['cells', 'metadata', 'nbformat', 'nbformat_minor']);
  assert.deepEqual(json.cells[1].source, ['model:\n', '  folder: ../models/default\n']);
  assert.equal(json.cells[1].execution_count, 3);
  const data = json.cells[1].outputs[0].data;
  assert.equal(typeof data['application/vnd.clipn.view'], 'string', 'binary MIME stored as base64');
  assert.deepEqual(data['application/json'], { a: 1, b: [true, null] }, 'JSON MIME stored as an object');
  assert.deepEqual(data['text/plain'], ['line 1\n', 'line 2']);
  assert.equal(json.cells[1].outputs[1].output_type, 'stream');
  assert.equal(json.cells[2].metadata.vscode.languageId, 'python', 'a non-default language is recorded');
  assert.equal(json.cells[1].metadata.vscode, undefined, 'the default language is not');
  assert.equal(json.cells[3].cell_type, 'raw');
  assert.match(text, /^\{\n "cells": \[\n  \{\n   "cell_type"/);
});

test('round trip is byte-for-byte stable and keeps binary payloads exact', () => {
  const first = serializeNotebook(sample());
  const parsed = parseNotebook(first);
  const second = serializeNotebook(parsed);
  assert.equal(Buffer.compare(Buffer.from(first), Buffer.from(second)), 0);
  assert.equal(Buffer.compare(Buffer.from(serializeNotebook(parseNotebook(second))), Buffer.from(second)), 0);
  const item = parsed.cells[1].outputs[0].items.find((i) => i.mime === 'application/vnd.clipn.view')!;
  const back = unpackPayload<{ x: Float32Array; label: string }>(item.data);
  assert.deepEqual(Array.from(back.x), [0.5, -1, 3.25]);
  assert.equal(back.label, '<img src=x onerror=alert(1)>.png');
  assert.equal(parsed.cells[1].executionCount, 3);
  assert.deepEqual(parsed.cells[1].metadata, { tags: ['setup'] });
  assert.equal(parsed.cells[2].language, 'python');
  assert.equal(parsed.cells[0].source, '# Title\n\nSome *text*.');
});

test('a Jupyter-written notebook (nbformat 4.5, ids, errors, execute_result) reads and writes back unchanged', () => {
  const jupyter = {
    cells: [
      {
        cell_type: 'code',
        execution_count: 1,
        id: 'abc123',
        metadata: {},
        outputs: [
          { data: { 'text/plain': ['2'] }, execution_count: 1, metadata: {}, output_type: 'execute_result' },
          { ename: 'ValueError', evalue: 'bad', output_type: 'error', traceback: ['line a', 'line b'] },
          { name: 'stderr', output_type: 'stream', text: ['warn\n'] },
        ],
        source: ['1 + 1'],
      },
    ],
    metadata: { kernelspec: { display_name: 'Python 3', name: 'python3' }, language_info: { name: 'python' } },
    nbformat: 4,
    nbformat_minor: 5,
  };
  const bytes = enc.encode(JSON.stringify(jupyter, null, 1) + '\n');
  const nb = parseNotebook(bytes);
  assert.equal(nb.cells[0].language, 'python');
  assert.equal(nb.cells[0].id, 'abc123');
  assert.equal(Buffer.compare(Buffer.from(serializeNotebook(nb)), Buffer.from(bytes)), 0);
});

test('empty file is a new notebook; malformed files throw errors that say what and where', () => {
  assert.deepEqual(parseNotebook(new Uint8Array(0)).cells, []);
  const bad: Array<[string, RegExp]> = [
    ['{\n "cells": [\n  {,\n ]}', /not valid JSON \(line 3, column 4\)/],
    ['[1, 2]', /JSON object/],
    ['{"cells": [], "nbformat": 3}', /"nbformat" must be 4/],
    ['{"cells": {}, "nbformat": 4}', /"cells" must be a list/],
    ['{"cells": [{"cell_type": "python"}], "nbformat": 4}', /cells\[0\]\.cell_type/],
    ['{"cells": [{"cell_type": "code", "outputs": [{"output_type": "x"}]}], "nbformat": 4}', /cells\[0\]\.outputs\[0\]\.output_type/],
    ['{"cells": [{"cell_type": "code", "outputs": [{"output_type": "display_data", "data": {"image/png": "%%%"}}]}], "nbformat": 4}', /not valid base64/],
  ];
  for (const [text, message] of bad) {
    assert.throws(() => parseNotebook(enc.encode(text)), (err: unknown) => err instanceof NotebookFormatError && message.test((err as Error).message), text);
  }
  assert.throws(() => parseNotebook(Uint8Array.from([0xff, 0xfe, 0x00])), /not UTF-8/);
});

test('splitLines keeps line ends like nbformat multiline strings', () => {
  assert.deepEqual(splitLines(''), []);
  assert.deepEqual(splitLines('a'), ['a']);
  assert.deepEqual(splitLines('a\n'), ['a\n']);
  assert.deepEqual(splitLines('a\n\nb'), ['a\n', '\n', 'b']);
});

test('the sample notebooks in samples/ are stable under a round trip', () => {
  const dir = path.join(REPO_ROOT, 'samples');
  for (const name of fs.readdirSync(dir).filter((f) => f.endsWith('.clipnb'))) {
    const bytes = fs.readFileSync(path.join(dir, name));
    assert.equal(Buffer.compare(Buffer.from(serializeNotebook(parseNotebook(bytes))), bytes), 0, name);
  }
});

test('payloads unpack from Node Buffers at any offset (pooled, unaligned)', () => {
  const packed = packPayload({ a: Float32Array.from([1, 2, 3]), b: Float64Array.from([0.25]), c: Int32Array.from([-7]), d: Uint8Array.from([9]) });
  const pool = Buffer.alloc(packed.length + 3);
  pool.set(packed, 3);
  const back = unpackPayload<{ a: Float32Array; b: Float64Array; c: Int32Array; d: Uint8Array }>(pool.subarray(3));
  assert.deepEqual(Array.from(back.a), [1, 2, 3]);
  assert.deepEqual(Array.from(back.b), [0.25]);
  assert.deepEqual(Array.from(back.c), [-7]);
  assert.deepEqual(Array.from(back.d), [9]);
  assert.throws(() => unpackPayload(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9])), /bad magic/);
});
