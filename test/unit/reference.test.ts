// The README's cell-language reference is generated from schema.ts: these tests fail when the
// schema changes without `node scripts/gen-reference.mjs`, when a kind or key goes missing from
// the reference, or when an example the README shows would not parse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cellReference, readmeRegion, REFERENCE_END, REFERENCE_START, spliceReference } from '../../extension/language/reference';
import { KINDS, type FieldSpec } from '../../extension/language/schema';
import { parseCell } from '../../extension/language/validate';
import { REPO_ROOT } from './helpers/python';

const README = path.join(REPO_ROOT, 'README.md');
const SCRIPT = path.join(REPO_ROOT, 'scripts', 'gen-reference.mjs');

function readmeReference(): string {
  const region = readmeRegion(fs.readFileSync(README, 'utf8'));
  assert.ok(region !== undefined, `README.md lacks the ${REFERENCE_START} ... ${REFERENCE_END} region`);
  return region;
}

/** Each kind's section of the reference, keyed by the kind named in its `### `kind:`` heading. */
function sections(reference: string): Map<string, string> {
  const parts = reference.split(/^### `([a-z_]+):`$/m);
  const out = new Map<string, string>();
  for (let i = 1; i < parts.length; i += 2) out.set(parts[i], parts[i + 1]);
  return out;
}

/** Dotted keys of a field list, written out here rather than taken from the renderer. */
function dottedKeys(fields: readonly FieldSpec[], prefix = ''): string[] {
  return fields.flatMap((f) => [prefix + f.key, ...dottedKeys(f.fields ?? [], `${prefix}${f.key}.`)]);
}

/** The table rows of a section: their first cell (the key, without backticks). */
function rowKeys(section: string): string[] {
  return section
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => /^\| `([^`]+)` \|/.exec(line)?.[1] ?? '');
}

test('the README reference equals cellReference() (run `node scripts/gen-reference.mjs` after a schema change)', () => {
  assert.equal(readmeReference(), cellReference());
});

test('every kind has a section, in schema order, whose table lists exactly its keys', () => {
  const bySection = sections(readmeReference());
  assert.deepEqual([...bySection.keys()], KINDS.map((k) => k.kind));
  for (const kind of KINDS) {
    const section = bySection.get(kind.kind) ?? '';
    assert.ok(section.includes(kind.doc), `${kind.kind}: its doc`);
    assert.deepEqual(rowKeys(section), dottedKeys(kind.fields), `${kind.kind}: table keys`);
    for (const f of kind.fields) assert.ok(section.includes(f.doc), `${kind.kind}.${f.key}: its doc`);
  }
});

test('every table row has exactly four cells (no stray `|` from a doc)', () => {
  for (const line of readmeReference().split('\n').filter((l) => l.startsWith('| '))) {
    const cells = line.split(/(?<!\\)\|/);
    assert.equal(cells.length, 6, line);
  }
});

test("every example in the README parses without errors as its own kind", () => {
  const bySection = sections(readmeReference());
  for (const kind of KINDS) {
    const block = /```yaml\n([\s\S]*?)```/.exec(bySection.get(kind.kind) ?? '');
    assert.ok(block, `${kind.kind}: has a yaml example`);
    assert.equal(block[1], kind.example, `${kind.kind}: the example is the schema's`);
    const parsed = parseCell(block[1]);
    assert.deepEqual(parsed.diagnostics, [], `${kind.kind}: example diagnostics`);
    assert.equal(parsed.kind, kind.kind);
  }
});

test('a schema change makes the README stale', () => {
  const field = KINDS[0].fields[1];
  const doc = field.doc;
  try {
    field.doc = `${doc} (changed)`;
    assert.notEqual(readmeReference(), cellReference());
    assert.ok(cellReference().includes(`${doc} (changed)`));
  } finally {
    field.doc = doc;
  }
});

test('gen-reference.mjs: --check fails on a stale README, a rewrite fixes only the region', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-reference-'));
  try {
    const stale = path.join(dir, 'README.md');
    const before = `# Title\n\nintro\n\n${REFERENCE_START}\nold text\n${REFERENCE_END}\n\n## After\n`;
    fs.writeFileSync(stale, before);
    const run = (...args: string[]) => spawnSync(process.execPath, [SCRIPT, ...args, '--readme', stale], { encoding: 'utf8' });

    const check = run('--check');
    assert.equal(check.status, 1, check.stderr);
    assert.match(check.stderr, /out of date with extension\/language\/schema\.ts; run `npx tsc -p \. && node scripts\/gen-reference\.mjs`/);
    assert.equal(fs.readFileSync(stale, 'utf8'), before, '--check writes nothing');

    const write = run();
    assert.equal(write.status, 0, write.stderr);
    const after = fs.readFileSync(stale, 'utf8');
    assert.equal(after, `# Title\n\nintro\n\n${REFERENCE_START}\n${cellReference()}${REFERENCE_END}\n\n## After\n`);
    assert.equal(after, spliceReference(before, cellReference()));
    assert.equal(run('--check').status, 0);

    fs.writeFileSync(stale, '# no markers\n');
    const missing = run('--check');
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /has no <!-- cell-reference:start --> \.\.\. <!-- cell-reference:end --> region/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
