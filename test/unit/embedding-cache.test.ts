// The on-disk embedding cache (layout NumPy reads, corruption detection, concurrent writers)
// and embedImageSet on top of it with the exported micro model: the second run encodes
// nothing, a truncated shard is detected and its images re-encoded to the same features.
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadDataset } from '../../extension/engine/datasets';
import type { ImageDataset } from '../../extension/engine/datasets';
import { embedImageSet } from '../../extension/engine/embed';
import { cacheDirName, cacheKeyFor, canonicalJson, EmbeddingCache } from '../../extension/engine/embedding-cache';
import type { CacheKey } from '../../extension/engine/embedding-cache';
import { ClipnModel } from '../../extension/engine/encoder';
import { exportMicroModel } from './helpers/models';
import { REPO_ROOT, runPythonJson } from './helpers/python';

const KEY: CacheKey = { graph_sha256: 'ab'.repeat(32), variant: 'fp32', preprocess: { size: 32, mean: [0, 0, 0] }, embed_dim: 4 };
const hashOf = (s: string) => crypto.createHash('sha256').update(s).digest('hex');

/** n rows of dim 4 whose values encode (seed, row), so any mix-up is visible. */
function rows(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n * 4 }, (_, i) => seed * 1000 + Math.floor(i / 4) + (i % 4) / 10);
}

let tmp: string;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-cache-'));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('EmbeddingCache', () => {
  test('keys: canonical JSON ignores key order; variants get their own folder', () => {
    assert.equal(canonicalJson({ b: 1, a: [1, { d: 2, c: 3 }] }), '{"a":[1,{"c":3,"d":2}],"b":1}');
    assert.equal(cacheDirName({ ...KEY, preprocess: { mean: [0, 0, 0], size: 32 } }), cacheDirName(KEY));
    assert.notEqual(cacheDirName({ ...KEY, variant: 'fp16' }), cacheDirName(KEY));
    assert.notEqual(cacheDirName({ ...KEY, preprocess: { size: 33, mean: [0, 0, 0] } }), cacheDirName(KEY));
  });

  test('store, lookup, reopen; NumPy reads the shards and the index', () => {
    const root = path.join(tmp, 'basic');
    const cache = EmbeddingCache.open(root, KEY);
    const h = ['a', 'b', 'c', 'd', 'e'].map(hashOf);
    cache.store(h.slice(0, 3), rows(3, 1));
    cache.store(h.slice(3), rows(2, 2));
    const again = EmbeddingCache.open(root, KEY);
    const res = again.lookup([h[4], hashOf('zzz'), h[0], h[4]]);
    assert.deepEqual(res.missing, [hashOf('zzz')]);
    assert.deepEqual([...res.found.get(h[0])!], [...rows(3, 1).subarray(0, 4)]);
    assert.deepEqual([...res.found.get(h[4])!], [...rows(2, 2).subarray(4, 8)]);
    assert.equal(again.size, 5);
    assert.deepEqual(fs.readdirSync(again.dir).sort(), ['emb-0000.npy', 'emb-0001.npy', 'index.json']);

    const py = runPythonJson<{ ok: boolean; rows: Record<string, number[]>; problems: string[] }>(
      `
import hashlib, json, sys, os
import numpy as np
d = json.load(sys.stdin)["dir"]
index = json.load(open(os.path.join(d, "index.json")))
problems = []
for name, rec in index["shards"].items():
    raw = open(os.path.join(d, name), "rb").read()
    if len(raw) != rec["bytes"] or hashlib.sha256(raw).hexdigest() != rec["sha256"]:
        problems.append(name)
    a = np.load(os.path.join(d, name))
    if a.dtype != np.float32 or a.shape != (rec["rows"], index["dim"]):
        problems.append(name + " shape")
out = {h: np.load(os.path.join(d, s))[r].tolist() for h, (s, r) in index["entries"].items()}
print(json.dumps({"ok": True, "rows": out, "problems": problems}))
`,
      { dir: again.dir },
    );
    assert.deepEqual(py.problems, []);
    const all = [...rows(3, 1), ...rows(2, 2)];
    h.forEach((hash, i) => assert.deepEqual(py.rows[hash], all.slice(i * 4, i * 4 + 4).map((x) => Math.fround(x))));
  });

  test('a truncated shard is detected, dropped from the index, and its entries reported missing', () => {
    const root = path.join(tmp, 'trunc');
    const cache = EmbeddingCache.open(root, KEY);
    const h = Array.from({ length: 6 }, (_, i) => hashOf(`t${i}`));
    cache.store(h.slice(0, 3), rows(3, 1));
    cache.store(h.slice(3), rows(3, 2));
    const shard = path.join(cache.dir, 'emb-0000.npy');
    fs.truncateSync(shard, fs.statSync(shard).size - 7);
    const fresh = EmbeddingCache.open(root, KEY);
    const res = fresh.lookup(h);
    assert.deepEqual(res.missing, h.slice(0, 3));
    assert.deepEqual([...res.found.keys()], h.slice(3));
    assert.equal(fresh.warnings.length, 1);
    assert.match(fresh.warnings[0], /emb-0000\.npy: truncated: \d+ bytes, the index recorded \d+; dropped its 3 cached embeddings/);
    assert.ok(!fs.existsSync(shard), 'the bad shard is deleted');
    const index = JSON.parse(fs.readFileSync(path.join(cache.dir, 'index.json'), 'utf8'));
    assert.deepEqual(Object.keys(index.shards), ['emb-0001.npy']);
    assert.equal(Object.keys(index.entries).length, 3);
    // Re-storing takes a new shard number, never the dropped one's file under the old record.
    fresh.store(h.slice(0, 3), rows(3, 3));
    assert.deepEqual(fresh.lookup(h).missing, []);
  });

  test('a shard altered in place (same length) fails its sha256 and is not used', () => {
    const root = path.join(tmp, 'flip');
    const cache = EmbeddingCache.open(root, KEY);
    const h = [hashOf('f1'), hashOf('f2')];
    cache.store(h, rows(2, 1));
    const shard = path.join(cache.dir, 'emb-0000.npy');
    const bytes = fs.readFileSync(shard);
    bytes[bytes.length - 1] ^= 0x40;
    fs.writeFileSync(shard, bytes);
    const fresh = EmbeddingCache.open(root, KEY);
    assert.deepEqual(fresh.lookup(h).missing, h);
    assert.match(fresh.warnings[0], /sha256 mismatch/);
  });

  test('a damaged index is reported and replaced; orphan shard numbers are not reused', () => {
    const root = path.join(tmp, 'badindex');
    const cache = EmbeddingCache.open(root, KEY);
    cache.store([hashOf('x')], rows(1, 1));
    fs.writeFileSync(path.join(cache.dir, 'index.json'), '{"format": "clipn-lab-embed');
    const fresh = EmbeddingCache.open(root, KEY);
    assert.match(fresh.warnings[0], /index\.json: ignored \(.*\); its images will be re-encoded/);
    assert.deepEqual(fresh.lookup([hashOf('x')]).missing, [hashOf('x')]);
    fresh.store([hashOf('x')], rows(1, 2));
    assert.deepEqual(Object.keys(JSON.parse(fs.readFileSync(path.join(cache.dir, 'index.json'), 'utf8')).shards), ['emb-0001.npy']);
    assert.deepEqual([...EmbeddingCache.open(root, KEY).lookup([hashOf('x')]).found.get(hashOf('x'))!], [...rows(1, 2)]);
  });

  test('store checks its input; a stale lock from a dead process is broken', () => {
    const cache = EmbeddingCache.open(path.join(tmp, 'checks'), KEY);
    assert.throws(() => cache.store([hashOf('a')], new Float32Array(3)), /1 hashes need 1 x 4 values, got 3/);
    assert.throws(() => cache.store(['ABC'], new Float32Array(4)), /"ABC" is not a lower-case sha256/);
    fs.writeFileSync(path.join(cache.dir, 'index.lock'), JSON.stringify({ pid: 2 ** 22 + 12345, host: os.hostname() }));
    cache.store([hashOf('a')], rows(1, 1));
    assert.ok(!fs.existsSync(path.join(cache.dir, 'index.lock')));
  });

  test('two processes writing to one cache at once lose no entries', async () => {
    const root = path.join(tmp, 'multi');
    const mod = path.join(REPO_ROOT, 'out', 'extension', 'engine', 'embedding-cache.js');
    const script = `
const { EmbeddingCache } = require(${JSON.stringify(mod)});
const crypto = require('node:crypto');
const [root, key, tag] = process.argv.slice(1);
const cache = EmbeddingCache.open(root, JSON.parse(key));
for (let b = 0; b < 15; b++) {
  const hashes = [0, 1].map((i) => crypto.createHash('sha256').update(tag + b + '-' + i).digest('hex'));
  cache.store(hashes, new Float32Array(8).fill(b));
}`;
    const run = (tag: string) =>
      new Promise<number>((resolve) => spawn(process.execPath, ['-e', script, root, JSON.stringify(KEY), tag], { stdio: 'inherit' }).on('exit', (c) => resolve(c ?? 1)));
    assert.deepEqual(await Promise.all([run('p'), run('q')]), [0, 0]);
    const cache = EmbeddingCache.open(root, KEY);
    assert.equal(cache.size, 60);
    const want = ['p', 'q'].flatMap((t) => Array.from({ length: 15 }, (_, b) => [0, 1].map((i) => hashOf(`${t}${b}-${i}`))).flat());
    const res = cache.lookup(want);
    assert.deepEqual(res.missing, []);
    assert.deepEqual(cache.warnings, []);
    assert.equal(fs.readdirSync(cache.dir).filter((f) => f.endsWith('.npy')).length, 30);
  });
});

describe('embedImageSet with the micro model', () => {
  let model: ClipnModel;
  let set: ImageDataset;
  before(async () => {
    model = await ClipnModel.load(exportMicroModel(), { backend: { executionProviders: ['cpu'] } });
    set = await loadDataset(path.join(REPO_ROOT, 'samples', 'images', 'id'), { role: 'id' });
  });
  after(async () => model?.dispose());

  test('first run encodes, second encodes nothing, a truncated shard is re-encoded identically', async () => {
    const root = path.join(tmp, 'embed');
    const direct = await model.encodeImages(set.items.map((i) => i.path), { batchSize: 16 });
    const progress: number[] = [];
    const first = await embedImageSet(model, set, { cache: EmbeddingCache.forModel(root, model.manifest), batchSize: 16, flushEvery: 20, onProgress: (p) => progress.push(p.done) });
    assert.equal(first.encoded, 72);
    assert.equal(first.fromCache, 0);
    assert.equal(first.provider, 'cpu');
    assert.deepEqual(first.dims, [72, model.embedDim]);
    assert.deepEqual(first.indices, set.items.map((_, i) => i));
    assert.deepEqual([...first.features], [...direct.data]);
    assert.equal(progress[progress.length - 1], 72);

    const cache = EmbeddingCache.forModel(root, model.manifest);
    assert.equal(fs.readdirSync(cache.dir).filter((f) => f.endsWith('.npy')).length, 4, 'flushEvery 20 -> shards of 20, 20, 20, 12');
    const t0 = performance.now();
    const second = await embedImageSet(model, set, { cache });
    const secondMs = performance.now() - t0;
    assert.equal(second.encoded, 0);
    assert.equal(second.fromCache, 72);
    assert.equal(second.provider, 'cache');
    assert.deepEqual([...second.features], [...first.features]);
    assert.ok(secondMs < 5000, `cached run took ${secondMs} ms`);

    const shard = path.join(cache.dir, 'emb-0001.npy');
    fs.truncateSync(shard, 200);
    const third = await embedImageSet(model, set, { cache: EmbeddingCache.forModel(root, model.manifest) });
    assert.equal(third.encoded, 20);
    assert.equal(third.fromCache, 52);
    assert.equal(third.cacheWarnings.length, 1);
    assert.match(third.cacheWarnings[0], /emb-0001\.npy: truncated: 200 bytes/);
    assert.deepEqual([...third.features], [...first.features]);
    const fourth = await embedImageSet(model, set, { cache: EmbeddingCache.forModel(root, model.manifest) });
    assert.equal(fourth.encoded, 0);
    assert.deepEqual(fourth.cacheWarnings, []);
  });

  test('duplicates are encoded once; unreadable and undecodable files become failures, not cache rows', async () => {
    const dir = path.join(tmp, 'mixed-images');
    fs.mkdirSync(dir, { recursive: true });
    const a = set.items[0].path;
    fs.copyFileSync(a, path.join(dir, 'copy.jpg'));
    fs.writeFileSync(path.join(dir, 'broken.jpg'), Buffer.from('not a jpeg at all'));
    const items = [{ path: a }, { path: path.join(dir, 'copy.jpg') }, { path: path.join(dir, 'broken.jpg') }, { path: path.join(dir, 'gone.jpg') }, { path: set.items[1].path }];
    const cache = EmbeddingCache.forModel(path.join(tmp, 'embed-mixed'), model.manifest);
    const r = await embedImageSet(model, { items }, { cache });
    assert.equal(r.encoded, 2);
    assert.deepEqual(r.indices, [0, 1, 4]);
    assert.deepEqual(r.failures.map((f) => [f.index, path.basename(f.file)]), [[2, 'broken.jpg'], [3, 'gone.jpg']]);
    assert.equal(r.failures[1].reason, 'file not found');
    assert.deepEqual([...r.features.subarray(0, model.embedDim)], [...r.features.subarray(model.embedDim, 2 * model.embedDim)]);
    assert.equal(cache.size, 2);
    const again = await embedImageSet(model, { items }, { cache });
    assert.equal(again.encoded, 0);
    assert.equal(again.fromCache, 3);
    assert.equal(again.failures.length, 2);
  });

  test('a cache made for another graph variant is refused', async () => {
    const wrong = EmbeddingCache.open(path.join(tmp, 'wrong'), cacheKeyFor(model.manifest, 'fp16'));
    await assert.rejects(embedImageSet(model, set, { cache: wrong }), /belongs to another image graph or preprocessing/);
  });
});
