// Text graphs exported with a variable sequence axis (manifest `text_sequence: "variable"`)
// run a text at its own token length: CLIP's text towers are causal and read the feature at
// EOT, so the zero padding after it is wasted work (77 positions for real CLIPN, a typical
// prompt needs 8-15). Texts are grouped by length and each group runs at that length, so a
// text is always computed the same way, whichever texts share its batch (the text memo relies
// on a row's bits not depending on its batch).

/** One graph run: `rows` index the tokenized texts, all of token length `length`. */
export interface TextBatch {
  rows: number[];
  length: number;
}

/**
 * Token length of each row of `ids` [rows, context]: the index of its first largest id, plus
 * one. That is where the graph reads the feature (argmax of the ids: EOT has the largest id in
 * CLIP's vocabulary), so positions after it never matter.
 */
export function tokenLengths(ids: BigInt64Array, context: number): Int32Array {
  const rows = ids.length / context;
  if (!Number.isInteger(rows)) throw new Error(`token ids: ${ids.length} values are not whole rows of ${context}`);
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const base = r * context;
    let best = 0;
    for (let i = 1; i < context; i++) if (ids[base + i] > ids[base + best]) best = i;
    out[r] = best + 1;
  }
  return out;
}

/**
 * Batches of at most `batchSize` rows. With `lengths`, rows of equal length go together (in
 * input order within a length, shortest lengths first); without, consecutive rows at `context`.
 */
export function planTextBatches(rows: number, batchSize: number, context: number, lengths?: Int32Array): TextBatch[] {
  const groups = new Map<number, number[]>();
  for (let r = 0; r < rows; r++) {
    const length = lengths ? lengths[r] : context;
    let group = groups.get(length);
    if (!group) groups.set(length, (group = []));
    group.push(r);
  }
  const batches: TextBatch[] = [];
  for (const length of [...groups.keys()].sort((a, b) => a - b)) {
    const group = groups.get(length)!;
    for (let b = 0; b < group.length; b += batchSize) batches.push({ rows: group.slice(b, b + batchSize), length });
  }
  return batches;
}

/** The first `length` ids of the given rows of `ids` [*, context], as [rows.length, length]. */
export function gatherIds(ids: BigInt64Array, context: number, rows: readonly number[], length: number): BigInt64Array {
  if (length === context && rows.length > 0 && rows.every((r, i) => r === rows[0] + i)) {
    return ids.subarray(rows[0] * context, (rows[0] + rows.length) * context);
  }
  const out = new BigInt64Array(rows.length * length);
  rows.forEach((r, i) => out.set(ids.subarray(r * context, r * context + length), i * length));
  return out;
}
