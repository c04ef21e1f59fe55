// The UMAP engine (extension/engine/umap) against independent references:
//   - kNN: numpy's float64 brute force (indices exactly; distances to 1e-6, the float32 output);
//   - fuzzy graph and edge schedule: umap-js 1.4's own (initializeFit on the same precomputed
//     kNN), entry by entry to 1e-12;
//   - layout: umap-js's optimizeLayout driven by the same generator sequence, to 1e-6 after a few
//     epochs (the powers differ in the last bits: exp(b log d) against Math.pow);
//   - trustworthiness: sklearn.manifold.trustworthiness to 1e-9;
//   - quality: trustworthiness of our layout >= umap-js's own fit's - 0.01 on clustered data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UMAP } from 'umap-js';
import { cosine } from 'umap-js/dist/umap';
import { cosineKnn } from '../../extension/engine/umap/knn';
import { fuzzySimplicialSet, layoutEdges } from '../../extension/engine/umap/fuzzy-graph';
import { optimizeLayout, randomLayout, seedState } from '../../extension/engine/umap/layout';
import { curveParameters, projectUmap } from '../../extension/engine/umap/index';
import { trustworthiness, trustworthinessOfLayouts } from '../../extension/engine/umap/trustworthiness';
import { clusteredVectors } from '../../extension/engine/umap/synthetic';
import { gaussian, uniform } from '../../extension/engine/random';
import { runPythonJson } from './helpers/python';

const CPU = ['cpu'];

function randomMatrix(n: number, d: number, seed: number): Float32Array {
  const g = gaussian(seed);
  return Float32Array.from({ length: n * d }, () => g());
}

/**
 * 150 random rows, then exact copies of rows 0-49 (twice each) and rows 50-99 scaled by 2
 * (cosine distance exactly 0 too): many distance ties, inside and across rows.
 */
function withDuplicates(d: number): { x: Float32Array; n: number } {
  const base = randomMatrix(150, d, 11);
  const n = 150 + 100 + 50;
  const x = new Float32Array(n * d);
  x.set(base);
  for (let r = 0; r < 50; r++) {
    x.set(base.subarray(r * d, (r + 1) * d), (150 + 2 * r) * d);
    x.set(base.subarray(r * d, (r + 1) * d), (151 + 2 * r) * d);
  }
  for (let r = 0; r < 50; r++) {
    for (let t = 0; t < d; t++) x[(250 + r) * d + t] = 2 * base[(50 + r) * d + t];
  }
  return { x, n };
}

const KNN_PY = `
import json, sys
import numpy as np
inp = json.load(sys.stdin)
x = np.array(inp["x"], dtype=np.float32).astype(np.float64).reshape(inp["n"], inp["d"])
k = inp["k"]
sq = (x * x).sum(1)
cos = (x @ x.T) / np.sqrt(np.outer(sq, sq))
dist = np.maximum(1.0 - cos, 0.0)
idx, dst = [], []
for i in range(len(x)):
    # self first, then by distance (rounded so duplicates' 1e-16 noise ties), then by index
    key = np.round(dist[i], 12)
    key[i] = -1.0
    order = np.lexsort((np.arange(len(x)), key))[:k]
    idx.append(order.tolist())
    dst.append([0.0] + dist[i, order[1:]].tolist())
print(json.dumps({"idx": idx, "dist": dst}))
`;

async function checkKnnAgainstNumpy(x: Float32Array, n: number, d: number, k: number, chunkRows?: number): Promise<void> {
  const ours = await cosineKnn(x, n, d, k, { providers: CPU, chunkRows });
  assert.equal(ours.provider, 'cpu');
  const ref = runPythonJson<{ idx: number[][]; dist: number[][] }>(KNN_PY, { x: Array.from(x), n, d, k });
  for (let i = 0; i < n; i++) {
    assert.deepEqual(Array.from(ours.indices.subarray(i * k, (i + 1) * k)), ref.idx[i], `row ${i} neighbours`);
    for (let j = 0; j < k; j++) {
      const diff = Math.abs(ours.distances[i * k + j] - ref.dist[i][j]);
      assert.ok(diff <= 1e-6, `row ${i} neighbour ${j}: distance ${ours.distances[i * k + j]} vs ${ref.dist[i][j]}`);
    }
  }
}

test('cosine kNN equals a float64 brute force (random rows, several chunks)', async () => {
  await checkKnnAgainstNumpy(randomMatrix(500, 24, 3), 500, 24, 15, 128);
});

test('cosine kNN with duplicate and scaled rows: self first, ties by index, duplicates at distance 0', async () => {
  const { x, n } = withDuplicates(16);
  await checkKnnAgainstNumpy(x, n, 16, 15);
  const ours = await cosineKnn(x, n, 16, 15, { providers: CPU });
  // Row 150 and 151 are copies of row 0: row 0's next two neighbours, at distance exactly 0.
  assert.deepEqual(Array.from(ours.indices.subarray(0, 3)), [0, 150, 151]);
  assert.deepEqual(Array.from(ours.distances.subarray(0, 3)), [0, 0, 0]);
  assert.deepEqual(Array.from(ours.indices.subarray(151 * 15, 151 * 15 + 3)), [151, 0, 150]);
});

test('cosine kNN rejects bad shapes and non-finite values', async () => {
  await assert.rejects(cosineKnn(new Float32Array(10), 3, 3, 2, { providers: CPU }), /expected 3 x 3/);
  await assert.rejects(cosineKnn(new Float32Array(9), 3, 3, 4, { providers: CPU }), /k must be/);
  await assert.rejects(cosineKnn(Float32Array.of(1, NaN, 0, 1), 2, 2, 1, { providers: CPU }), /non-finite/);
});

/** umap-js fields the comparison reads (private in its typings, stable in 1.4.0). */
interface UmapInternals {
  graph: { getAll(): { row: number; col: number; value: number }[] };
  optimizationState: { head: number[]; tail: number[]; epochsPerSample: number[] };
}

/** umap-js set up on our kNN (initializeFit skips its own search when a kNN is set). */
function umapJsOnKnn(x: Float32Array, n: number, d: number, k: number, indices: Int32Array, distances: Float32Array, extra: object = {}): { u: UMAP; nEpochs: number; internals: UmapInternals } {
  const rows = (a: ArrayLike<number>, w: number) => Array.from({ length: n }, (_, i) => Array.from(Array.prototype.slice.call(a, i * w, (i + 1) * w) as number[]));
  const u = new UMAP({ nNeighbors: k, ...extra });
  u.setPrecomputedKNN(rows(indices, k), rows(distances, k));
  const nEpochs = u.initializeFit(rows(x, d));
  return { u, nEpochs, internals: u as unknown as UmapInternals };
}

test('fuzzy simplicial set and edge schedule equal umap-js on the same kNN', async () => {
  for (const { x, n, d } of [{ ...withDuplicates(16), d: 16 }, { x: clusteredVectors(400, 32, { clusters: 6, seed: 2 }).vectors, n: 400, d: 32 }]) {
    const k = 15;
    const knn = await cosineKnn(x, n, d, k, { providers: CPU });
    const graph = fuzzySimplicialSet(knn.indices, knn.distances, n, k);
    const { nEpochs, internals } = umapJsOnKnn(x, n, d, k, knn.indices, knn.distances);
    // umap-js keeps explicit zeros (the self entries); compare the non-zero entries.
    const theirs = internals.graph.getAll().filter((e) => e.value !== 0);
    assert.equal(graph.vals.length, theirs.length, 'non-zero entries');
    let p = 0;
    for (const e of theirs) {
      while (p < graph.rowPtr[e.row]) p++;
      assert.equal(graph.cols[p], e.col, `entry ${p}: column`);
      assert.ok(Math.abs(graph.vals[p] - e.value) <= 1e-12, `(${e.row}, ${e.col}): ${graph.vals[p]} vs ${e.value}`);
      p++;
    }
    const edges = layoutEdges(graph, nEpochs);
    const state = internals.optimizationState;
    assert.deepEqual(Array.from(edges.head), state.head);
    assert.deepEqual(Array.from(edges.tail), state.tail);
    edges.epochsPerSample.forEach((e, i) => assert.ok(Math.abs(e - state.epochsPerSample[i]) <= 1e-12 * e, `edge ${i}`));
  }
});

test('layout follows umap-js optimizeLayout step for step with the same generator', async () => {
  const n = 300;
  const d = 16;
  const k = 10;
  const { vectors } = clusteredVectors(n, d, { clusters: 5, seed: 4 });
  const knn = await cosineKnn(vectors, n, d, k, { providers: CPU });
  for (const nComponents of [2, 3]) {
    const nEpochs = 8;
    const seed = 99 + nComponents;
    const { u } = umapJsOnKnn(vectors, n, d, k, knn.indices, knn.distances, { nEpochs, nComponents, random: uniform(seed) });
    while (u.step() < nEpochs);
    const theirs = u.getEmbedding().flat();
    const { a, b } = curveParameters(1, 0.1);
    const edges = layoutEdges(fuzzySimplicialSet(knn.indices, knn.distances, n, k), nEpochs);
    const ours = await optimizeLayout(edges, n, { nComponents, nEpochs, a, b, seed });
    let worst = 0;
    for (let i = 0; i < ours.length; i++) worst = Math.max(worst, Math.abs(ours[i] - theirs[i]));
    assert.ok(worst <= 1e-6, `${nComponents}-D: max |ours - umap-js| = ${worst}`);
    // and the layouts did move: the comparison is not of two initial layouts
    const init = new Float64Array(n * nComponents);
    randomLayout(init, seedState(seed));
    assert.ok(ours.some((v, i) => Math.abs(v - init[i]) > 0.1));
  }
});

test('the initial layout is random.ts uniform(seed) mapped to [-10, 10)', () => {
  const emb = new Float64Array(40);
  randomLayout(emb, seedState(7));
  const u = uniform(7);
  emb.forEach((v, i) => assert.equal(v, u() * 20 - 10, `value ${i}`));
});

const TRUST_PY = `
import json, sys
import numpy as np
from sklearn.manifold import trustworthiness
inp = json.load(sys.stdin)
x = np.array(inp["x"]).reshape(inp["n"], -1)
y = np.array(inp["y"]).reshape(inp["n"], -1)
print(json.dumps([trustworthiness(x, y, n_neighbors=k) for k in inp["ks"]]))
`;

test('trustworthiness equals sklearn.manifold.trustworthiness', () => {
  const n = 150;
  const x = randomMatrix(n, 12, 21);
  // A layout that keeps some structure (two input coordinates plus noise) and a random one.
  const g = gaussian(22);
  const y1 = Float64Array.from({ length: n * 2 }, (_, t) => x[Math.floor(t / 2) * 12 + (t % 2)] + 0.5 * g());
  const y2 = Float64Array.from({ length: n * 2 }, () => g());
  for (const y of [y1, y2]) {
    const ks = [1, 5, 15, 40];
    const ref = runPythonJson<number[]>(TRUST_PY, { x: Array.from(x), y: Array.from(y), n, ks });
    ks.forEach((k, i) => {
      const t = trustworthiness(x, 12, y, 2, n, k);
      assert.ok(Math.abs(t - ref[i]) <= 1e-9, `k=${k}: ${t} vs sklearn ${ref[i]}`);
    });
    assert.deepEqual(trustworthinessOfLayouts(x, 12, [y1, y], 2, n, 5)[1], trustworthiness(x, 12, y, 2, n, 5));
  }
  assert.throws(() => trustworthiness(x, 12, y1, 2, n, 75), /below n \/ 2/);
});

test('same seed gives a byte-identical layout, another seed a different one', async () => {
  const n = 300;
  const d = 24;
  const { vectors } = clusteredVectors(n, d, { clusters: 4, seed: 5 });
  const run = (seed: number) => projectUmap(vectors, n, d, { seed, nEpochs: 60, providers: CPU });
  const [a, b, c] = [await run(5), await run(5), await run(6)];
  assert.equal(a.embedding.length, n * 2);
  assert.ok(Buffer.from(a.embedding.buffer).equals(Buffer.from(b.embedding.buffer)));
  assert.ok(!Buffer.from(a.embedding.buffer).equals(Buffer.from(c.embedding.buffer)));
  assert.equal(a.provider, 'cpu');
  assert.equal(a.nEpochs, 60);
});

test('text vectors are appended rows: same layout as projecting the concatenation', async () => {
  const n = 250;
  const d = 16;
  const m = 6;
  const { vectors } = clusteredVectors(n + m, d, { clusters: 3, seed: 8 });
  const data = vectors.subarray(0, n * d);
  const text = vectors.subarray(n * d);
  const withText = await projectUmap(data, n, d, { textVectors: text, nComponents: 3, nEpochs: 30, providers: CPU });
  const joined = await projectUmap(vectors, n + m, d, { nComponents: 3, nEpochs: 30, providers: CPU });
  assert.deepEqual(withText.vectorRows, { start: 0, count: n });
  assert.deepEqual(withText.textRows, { start: n, count: m });
  assert.equal(withText.nComponents, 3);
  assert.equal(withText.embedding.length, (n + m) * 3);
  assert.ok(Buffer.from(withText.embedding.buffer).equals(Buffer.from(joined.embedding.buffer)));
});

test('layout quality: trustworthiness(15) at least umap-js fit - 0.01 on 6 clusters', async () => {
  const n = 600;
  const d = 32;
  const { vectors } = clusteredVectors(n, d, { clusters: 6, groups: 3, noise: 1, seed: 9 });
  const ours = await projectUmap(vectors, n, d, { seed: 1, providers: CPU });
  const rows = Array.from({ length: n }, (_, i) => Array.from(vectors.subarray(i * d, (i + 1) * d)));
  const theirs = new UMAP({ nNeighbors: 15, distanceFn: cosine, random: uniform(1) }).fit(rows).flat();
  // Rows are unit vectors: euclidean ranks there are cosine ranks, the metric both layouts used.
  const [tOurs, tTheirs] = trustworthinessOfLayouts(vectors, d, [ours.embedding, theirs], 2, n, 15);
  assert.ok(tOurs >= tTheirs - 0.01, `trustworthiness ours ${tOurs} vs umap-js ${tTheirs}`);
  assert.ok(tTheirs > 0.8, `umap-js trustworthiness ${tTheirs}: the data should be learnable`);
});

test('cancellation rejects promptly, with progress reported per epoch', async () => {
  const n = 400;
  const d = 16;
  const { vectors } = clusteredVectors(n, d, { clusters: 4, seed: 12 });
  const ac = new AbortController();
  const seen: number[] = [];
  let abortedAt = 0;
  const started = performance.now();
  await assert.rejects(
    projectUmap(vectors, n, d, {
      providers: CPU, nEpochs: 500, signal: ac.signal,
      onProgress: (epoch, total) => {
        assert.equal(total, 500);
        seen.push(epoch);
        if (epoch === 5) {
          abortedAt = performance.now();
          ac.abort(new Error('user cancelled'));
        }
      },
    }),
    /user cancelled/,
  );
  assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  assert.ok(performance.now() - abortedAt < 200, 'rejected within one epoch of the abort');
  assert.ok(abortedAt > started);
  // Already aborted: rejects before any work.
  await assert.rejects(projectUmap(vectors, n, d, { providers: CPU, signal: AbortSignal.abort() }), /abort/i);
});

test('an abort from outside arrives while epochs run (the loop yields to the event loop)', async () => {
  const n = 600;
  const d = 16;
  const { vectors } = clusteredVectors(n, d, { clusters: 4, seed: 13 });
  const ac = new AbortController();
  let last = 0;
  const timer = setTimeout(() => ac.abort(new Error('timer cancel')), 150);
  await assert.rejects(projectUmap(vectors, n, d, { providers: CPU, nEpochs: 100000, signal: ac.signal, onProgress: (e) => { last = e; } }), /timer cancel/);
  clearTimeout(timer);
  assert.ok(last > 0 && last < 100000, `stopped at epoch ${last}`);
});
