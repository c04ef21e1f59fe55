// `clipn run`, spawned as a user would, on a small notebook over the bundled default model and
// 8 sample images: the --out notebook holds one view output per code cell (packed ViewPayload,
// canonical nbformat), the HTML report embeds exactly those bytes once per code cell, declares
// every figure block, carries plotly once and refers to nothing outside itself; a failing or
// invalid cell stops the run with exit 1 naming the cell (and line), and a missing or malformed
// notebook exits 2 naming the file. The report's Markdown subset is checked against hand-written
// HTML, including hostile input.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseNotebook, serializeNotebook } from '../../extension/notebook/nbformat';
import { unpackPayload, type ViewPayload } from '../../extension/protocol';
import { firstHeading, renderMarkdown } from '../../extension/report/markdown';
import { REPO_ROOT } from './helpers/python';

const CLI = path.join(REPO_ROOT, 'out', 'extension', 'cli', 'clipn.js');
const REPORT_SCRIPT = path.join(REPO_ROOT, 'dist', 'webview', 'report.js');
const PLOTLY = path.join(REPO_ROOT, 'node_modules', 'plotly.js-dist-min', 'plotly.min.js');
const VIEW_MIME = 'application/vnd.clipn.view';
/** A string plotly.min.js holds once (its modebar logo title), so it counts plotly copies. */
const PLOTLY_MARKER = 'Produced with Plotly';

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function clipn(args: string[]): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const occurrences = (text: string, needle: string) => text.split(needle).length - 1;

interface RawOutput {
  output_type: string;
  data?: Record<string, string | string[]>;
  ename?: string;
  evalue?: string;
}
interface RawCell {
  cell_type: string;
  source: string[] | string;
  execution_count?: number | null;
  outputs?: RawOutput[];
}

function notebookJson(cells: Array<{ md?: string; code?: string }>): string {
  const lines = (s: string) => s.split(/(?<=\n)/);
  return JSON.stringify({
    cells: cells.map((c) =>
      c.md !== undefined
        ? { cell_type: 'markdown', metadata: {}, source: lines(c.md) }
        : { cell_type: 'code', metadata: {}, execution_count: null, outputs: [], source: lines(c.code!) },
    ),
    metadata: { language_info: { name: 'clipn' } },
    nbformat: 4,
    nbformat_minor: 4,
  });
}

/** Copies `perClass` images of each named class folder of samples/images/<role>. */
function copyImages(dest: string, role: 'id' | 'ood', classes: string[], perClass: number): number {
  let n = 0;
  for (const cls of classes) {
    const from = path.join(REPO_ROOT, 'samples', 'images', role, cls);
    const files = fs.readdirSync(from).filter((f) => f.endsWith('.jpg')).sort().slice(0, perClass);
    fs.mkdirSync(path.join(dest, role, cls), { recursive: true });
    for (const f of files) fs.copyFileSync(path.join(from, f), path.join(dest, role, cls, f));
    n += files.length;
  }
  return n;
}

/** The page's markup with every script body removed (plotly's code holds URL strings it never loads for our traces). */
function markupOnly(html: string): string {
  return html.replace(/(<script\b[^>]*>)[\s\S]*?<\/script>/gi, '$1</script>');
}

const MARKDOWN = '# Shapes report\n\nSome *notes* <img src=x onerror=alert(1)> and [a link](https://example.com/page).\n';
const GOOD_CELLS = [
  { md: MARKDOWN },
  { code: 'model:\n  name: model\n' },
  { code: 'dataset:\n  name: id\n  role: id\n  folder: images/id\n' },
  { code: 'dataset:\n  name: ood\n  role: ood\n  folder: images/ood\n' },
  { md: '## Evaluation\n' },
  { code: 'evaluate:\n  id: id\n  ood: [ood]\n' },
  { code: 'embed:\n  dataset: [id, ood]\n' },
];
const EXPECTED_KINDS = ['model', 'dataset', 'dataset', 'evaluate', 'embed'];

describe('clipn run', () => {
  let tmp: string;
  let cache: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-run-'));
    cache = path.join(tmp, 'cache');
    assert.equal(copyImages(path.join(tmp, 'images'), 'id', ['circle', 'square'], 2), 4);
    assert.equal(copyImages(path.join(tmp, 'images'), 'ood', ['heart', 'ring'], 2), 4);
    if (!fs.existsSync(REPORT_SCRIPT)) {
      const b = spawnSync(process.execPath, [path.join(REPO_ROOT, 'scripts', 'build-webview.mjs')], { cwd: REPO_ROOT, encoding: 'utf8' });
      assert.equal(b.status, 0, b.stderr);
    }
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('runs every cell; the notebook and the self-contained report hold the same views', () => {
    const input = path.join(tmp, 'good.clipnb');
    fs.writeFileSync(input, notebookJson(GOOD_CELLS));
    const before = fs.readFileSync(input);
    const out = path.join(tmp, 'out', 'good-run.clipnb');
    const html = path.join(tmp, 'out', 'report.html');
    const r = clipn(['run', input, '--out', out, '--html', html, '--providers', 'cpu', '--cache-folder', cache, '--batch-size', '8']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(fs.readFileSync(input), before, 'the input notebook must be left unchanged');
    assert.match(r.stdout, /5 of 5 code cells ran/);

    // The notebook: canonical nbformat (reads and writes back to the same bytes).
    const outBytes = fs.readFileSync(out);
    assert.deepEqual(Buffer.from(serializeNotebook(parseNotebook(outBytes))), outBytes);
    const raw = JSON.parse(outBytes.toString('utf8')) as { cells: RawCell[] };
    const codeNumbers: number[] = [];
    const views = new Map<number, Buffer>();
    raw.cells.forEach((c, i) => {
      if (c.cell_type !== 'code') return;
      codeNumbers.push(i + 1);
      assert.equal(c.outputs?.length, 1, `cell ${i + 1}: one output`);
      const o = c.outputs![0];
      assert.equal(o.output_type, 'display_data');
      assert.deepEqual(Object.keys(o.data ?? {}).sort(), [VIEW_MIME, 'text/plain']);
      assert.equal(c.execution_count, codeNumbers.length);
      views.set(i + 1, Buffer.from(o.data![VIEW_MIME] as string, 'base64'));
    });
    assert.deepEqual(codeNumbers, [2, 3, 4, 6, 7]);
    const payloads = codeNumbers.map((n) => unpackPayload<ViewPayload>(new Uint8Array(views.get(n)!)));
    assert.deepEqual(payloads.map((p) => p.kind), EXPECTED_KINDS);
    for (const p of payloads) assert.equal(p.version, 1);
    // The dataset views count what was copied (4 + 4 images).
    assert.match(payloads[1].title, /\b4 images\b/);
    assert.match(payloads[2].title, /\b4 images\b/);

    // The report: one embedded view per code cell, byte-equal to the notebook's.
    const page = fs.readFileSync(html, 'utf8');
    const embedded = [...page.matchAll(/<script type="application\/vnd\.clipn\.view;base64" data-cell="(\d+)">([A-Za-z0-9+/=]*)<\/script>/g)];
    assert.deepEqual(embedded.map((m) => Number(m[1])), codeNumbers);
    for (const m of embedded) assert.ok(Buffer.from(m[2], 'base64').equals(views.get(Number(m[1]))!), `cell ${m[1]}: report bytes differ from the notebook's`);
    // Every figure block of every view is declared on its output element.
    let figures = 0;
    codeNumbers.forEach((n, k) => {
      const want = payloads[k].blocks.filter((b) => b.type === 'figure').length;
      figures += want;
      const m = new RegExp(`<div class="clipn-report-output" data-cell="${n}" data-figures="(\\d+)">`).exec(page);
      assert.ok(m, `cell ${n}: no output element`);
      assert.equal(Number(m[1]), want, `cell ${n}: figure count`);
    });
    assert.ok(figures >= 4, `expected the dataset, evaluate and embed figures, got ${figures}`);

    // Plotly inside exactly once; nothing outside the file referenced.
    assert.equal(occurrences(fs.readFileSync(PLOTLY, 'utf8'), PLOTLY_MARKER), 1, 'the marker must identify plotly.min.js');
    assert.equal(occurrences(page, PLOTLY_MARKER), 1);
    const markup = markupOnly(page);
    assert.doesNotMatch(markup, /\b(?:src|href|action|srcset|poster|data)\s*=\s*["']?\s*(?:https?:)?\/\//i);
    assert.doesNotMatch(markup, /url\(\s*["']?\s*(?:https?:)?\/\//i);
    assert.doesNotMatch(markup, /<(?:link|iframe|img|object|embed|base)\b/i);
    assert.doesNotMatch(markup, /<script\b[^>]*\bsrc\s*=/i);
    assert.match(markup, /<meta http-equiv="Content-Security-Policy" content="default-src 'none';/);
    // Markdown is rendered, its HTML escaped, its link shown as text.
    assert.match(page, /<title>Shapes report<\/title>/);
    assert.ok(page.includes('<em>notes</em> &lt;img src=x onerror=alert(1)&gt;'));
    assert.ok(page.includes('https://example.com/page') && !/href="https:\/\/example\.com/.test(page));
  });

  test('a failing cell stops the run: exit 1, the cell named, the error in notebook and report', () => {
    const cells = [{ md: '# Broken\n' }, { code: 'model:\n  name: model\n' }, { code: 'dataset:\n  name: id\n  role: id\n  folder: no-such-folder\n' }, { code: 'embed:\n  dataset: id\n' }];
    const input = path.join(tmp, 'failing.clipnb');
    fs.writeFileSync(input, notebookJson(cells));
    const out = path.join(tmp, 'failing-run.clipnb');
    const html = path.join(tmp, 'failing.html');
    const r = clipn(['run', input, '--out', out, '--html', html, '--providers', 'cpu', '--cache-folder', cache]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^clipn: error: cell 3: .*no-such-folder/m);
    const raw = JSON.parse(fs.readFileSync(out, 'utf8')) as { cells: RawCell[] };
    assert.equal(raw.cells[1].outputs?.[0].output_type, 'display_data');
    const err = raw.cells[2].outputs?.[0];
    assert.equal(err?.output_type, 'error');
    assert.equal(err?.ename, 'CellFailed');
    assert.match(err?.evalue ?? '', /^Cell 3: .*no-such-folder/);
    assert.deepEqual(raw.cells[3].outputs, [], 'the cell after the failure is not run');
    const page = fs.readFileSync(html, 'utf8');
    assert.match(page, /data-cell="3" data-status="failed"/);
    assert.match(page, /data-cell="4" data-status="not-run"/);
    assert.equal([...page.matchAll(/type="application\/vnd\.clipn\.view;base64"/g)].length, 1);
  });

  test('an invalid cell gives "cell N, line L: message" with the line of the bad key', () => {
    const source = 'dataset:\n  name: id\n  role: id\n  folder: images/id\n  colour: red\n';
    const badLine = source.split('\n').findIndex((l) => l.includes('colour')) + 1;
    const input = path.join(tmp, 'invalid.clipnb');
    fs.writeFileSync(input, notebookJson([{ md: 'intro\n' }, { code: 'model:\n  name: model\n' }, { code: source }]));
    const r = clipn(['run', input, '--providers', 'cpu', '--cache-folder', cache]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^clipn: error: cell 3, line ${badLine}: .*colour`, 'm'));
    assert.match(r.stdout, /nothing was written/);
  });

  test('a missing or malformed notebook exits 2 naming the file', () => {
    const missing = path.join(tmp, 'absent.clipnb');
    const r1 = clipn(['run', missing]);
    assert.equal(r1.status, 2);
    assert.ok(r1.stderr.includes(`clipn: error: ${missing}: `), r1.stderr);
    const broken = path.join(tmp, 'broken.clipnb');
    fs.writeFileSync(broken, '{"cells": [ {"cell_type": "code", ');
    const r2 = clipn(['run', broken, '--html', path.join(tmp, 'never.html')]);
    assert.equal(r2.status, 2);
    assert.match(r2.stderr, new RegExp(`clipn: error: ${broken.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not a notebook: .*JSON`));
    assert.equal(fs.existsSync(path.join(tmp, 'never.html')), false);
  });
});

describe('report markdown', () => {
  test('renders the subset to the hand-written HTML', () => {
    assert.equal(
      renderMarkdown('# Title\n\nA *b* **c** `d<e>` ~~s~~ snake_case_name\nnext line'),
      '<h2>Title</h2>\n<p>A <em>b</em> <strong>c</strong> <code>d&lt;e&gt;</code> <del>s</del> snake_case_name\nnext line</p>',
    );
    assert.equal(
      renderMarkdown('- one\n- two\n  - nested\n- three\n\n3. a\n4. b'),
      '<ul><li>one</li><li>two<ul><li>nested</li></ul></li><li>three</li></ul>\n<ol start="3"><li>a</li><li>b</li></ol>',
    );
    assert.equal(renderMarkdown('> quote **q**\n> more'), '<blockquote><p>quote <strong>q</strong>\nmore</p></blockquote>');
    assert.equal(renderMarkdown('```yaml\nmodel: <x>\n```\nafter'), '<pre class="md-code"><code>model: &lt;x&gt;</code></pre>\n<p>after</p>');
    assert.equal(
      renderMarkdown('| a | b |\n|:--|--:|\n| 1 | 2 |'),
      '<table class="md-table"><thead><tr><th style="text-align:left">a</th><th style="text-align:right">b</th></tr></thead><tbody><tr><td style="text-align:left">1</td><td style="text-align:right">2</td></tr></tbody></table>',
    );
    assert.equal(renderMarkdown('\\*not em\\*'), '<p>*not em*</p>');
    assert.equal(firstHeading('intro\n```\n# not a heading\n```\n# The **title**\n'), 'The title');
  });

  test('hostile markdown stays text: no tag, attribute or address from the source', () => {
    const html = renderMarkdown('<script>alert(1)</script>\n\n[x"><img src=y onerror=z>](javascript:alert(1)) ![p](https://t.example/p.png)\n\n<https://a.example/>');
    assert.equal(
      html,
      '<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n' +
        '<p><span class="md-link">x&quot;&gt;&lt;img src=y onerror=z&gt;</span> <span class="md-url">(javascript:alert(1))</span> ' +
        '<span class="md-image">[image: p] <span class="md-url">https://t.example/p.png</span></span></p>\n' +
        '<p><span class="md-url">https://a.example/</span></p>',
    );
    // Private-use characters cannot forge the renderer's placeholders.
    assert.equal(renderMarkdown('`a` \uE0000\uE001'), '<p><code>a</code> 0</p>');
  });
});
