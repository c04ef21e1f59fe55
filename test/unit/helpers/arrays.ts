// Array comparisons the tests share.
import { strict as assert } from 'node:assert';

/** Largest |a[i] - b[i]|; the arrays must have the same length. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
