// scripts/gpu/parts.sh: the CUDA provider too large for one device call is split into parts
// that each travel in a call of their own, and joined on the GPU machine with a check (run.sh).
// Here on a generated file: the parts sizes, the round trip byte for byte, and the two ways a
// device run can go wrong (a part never carried; a part that changed) named in one line.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { uniform } from '../../extension/engine/random';
import { REPO_ROOT } from './helpers/python';

const SCRIPT = path.join(REPO_ROOT, 'scripts', 'gpu', 'parts.sh');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-parts-'));

function parts(...args: string[]) {
  return spawnSync('bash', [SCRIPT, ...args], { encoding: 'utf8' });
}

describe('GPU pack parts (scripts/gpu/parts.sh)', () => {
  after(() => fs.rmSync(work, { recursive: true, force: true }));
  const next = uniform(3);
  const original = Buffer.from(Array.from({ length: 1_000_003 }, () => Math.floor(next() * 256)));
  const file = path.join(work, 'provider.tar.xz');
  fs.writeFileSync(file, original);
  const dir = path.join(work, 'parts');
  const sums = path.join(work, 'cuda.sha256');

  test('split writes parts of at most the given size and a line with sha256, count and bytes', () => {
    const r = parts('split', file, String(300_000), dir, sums);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(fs.readdirSync(dir), ['p00', 'p01', 'p02', 'p03']);
    assert.deepEqual(fs.readdirSync(dir).map((p) => fs.statSync(path.join(dir, p)).size), [300_000, 300_000, 300_000, 100_003]);
    const [sha, count, bytes] = fs.readFileSync(sums, 'utf8').trim().split(' ');
    assert.match(sha, /^[0-9a-f]{64}$/);
    assert.equal(count, '4');
    assert.equal(bytes, String(original.length));
  });

  test('join gives the file back byte for byte', () => {
    const out = path.join(work, 'joined');
    const r = parts('join', dir, sums, out);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.ok(fs.readFileSync(out).equals(original));
  });

  test('a part never carried is named with the count, and nothing is written', () => {
    const partial = path.join(work, 'partial');
    fs.mkdirSync(partial);
    for (const p of ['p00', 'p01', 'p03']) fs.copyFileSync(path.join(dir, p), path.join(partial, p));
    const out = path.join(work, 'joined-partial');
    const r = parts('join', partial, sums, out);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /^3 of 4 parts in .*partial \(p00 p01 p03 \): each needs a call that carries it/);
    assert.ok(!fs.existsSync(out));
  });

  test('a changed part fails the sha256 check and leaves no file behind', () => {
    const changed = path.join(work, 'changed');
    fs.mkdirSync(changed);
    for (const p of fs.readdirSync(dir)) fs.copyFileSync(path.join(dir, p), path.join(changed, p));
    const bytes = fs.readFileSync(path.join(changed, 'p02'));
    bytes[12345] ^= 1;
    fs.writeFileSync(path.join(changed, 'p02'), bytes);
    const out = path.join(work, 'joined-changed');
    const r = parts('join', changed, sums, out);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /do not make the file that was split: sha256 [0-9a-f]{64}, expected [0-9a-f]{64} \(1000003 bytes\)/);
    assert.ok(!fs.existsSync(out));
  });

  test('no sums file says nothing was split; bad usage exits 2', () => {
    const r = parts('join', dir, path.join(work, 'none.sha256'), path.join(work, 'x'));
    assert.equal(r.status, 1);
    assert.match(r.stdout, /nothing was split \(pack\.sh --cuda\)/);
    assert.equal(parts('split', file).status, 2);
    assert.equal(parts('merge').status, 2);
  });
});
