// The ablation's cross-run memo (engine/analysis/variant-memo.ts): least-recently-used eviction,
// and digests that change with any bit and with where one part ends and the next begins.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { digest, VariantMemo } from '../../extension/engine/analysis/variant-memo';

test('the memo keeps the most recently used entries within its bound', () => {
  const memo = new VariantMemo<number>(3);
  for (const [k, v] of [['a', 1], ['b', 2], ['c', 3]] as const) memo.set(k, v);
  assert.equal(memo.get('a'), 1); // a is now the most recent
  memo.set('d', 4); // evicts b, the least recently used
  assert.equal(memo.size, 3);
  assert.equal(memo.get('b'), undefined);
  assert.deepEqual(['a', 'c', 'd'].map((k) => memo.get(k)), [1, 3, 4]);
  memo.set('c', 30);
  assert.equal(memo.get('c'), 30);
  assert.equal(memo.size, 3);
  memo.clear();
  assert.equal(memo.size, 0);
});

test('digests differ for one flipped bit, for other views of the same bytes, and for moved part boundaries', () => {
  const a = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i));
  const b = Float32Array.from(a);
  assert.equal(digest(a), digest(b));
  new Uint8Array(b.buffer)[17] ^= 1;
  assert.notEqual(digest(a), digest(b));
  // A subarray hashes its own bytes, not its whole buffer.
  assert.equal(digest(a.subarray(8, 16)), digest(Float32Array.from(a.subarray(8, 16))));
  assert.notEqual(digest(a.subarray(8, 16)), digest(a));
  assert.notEqual(digest('ab', 'c'), digest('a', 'bc'));
  assert.notEqual(digest(a.subarray(0, 32), a.subarray(32)), digest(a.subarray(0, 31), a.subarray(31)));
  assert.notEqual(digest('x'), digest(new Uint8Array([120])));
});
