// UMAP projection of embedding vectors: exact cosine kNN on onnxruntime (knn.ts), umap-js's
// fuzzy simplicial set on typed arrays (fuzzy-graph.ts), umap-js's SGD epochs on flat arrays
// (layout.ts). umap-js 1.4 is the reference for the maths and its defaults; the differences are
// the exact kNN (umap-js approximates it with NN-descent) and the seeded generator.
import { findABParams } from 'umap-js/dist/umap';
import type { OrtBackend } from '../backend';
import { cosineKnn } from './knn';
import { defaultEpochs, fuzzySimplicialSet, layoutEdges } from './fuzzy-graph';
import { optimizeLayout } from './layout';

export { cosineKnn } from './knn';
export type { KnnOptions, KnnResult } from './knn';
export { trustworthiness, trustworthinessOfLayouts, randomSubset, subsetRows } from './trustworthiness';

export interface UmapOptions {
  /** Neighbours per point, the point itself included (umap-js's nNeighbors). Default 15. */
  nNeighbors?: number;
  /** Default 0.1. */
  minDist?: number;
  /** Default 1. */
  spread?: number;
  /** Default 2. */
  nComponents?: 2 | 3;
  /** Default by point count as umap-js: 500 up to 2,500 points, 400, 300, then 200 above 7,500. */
  nEpochs?: number;
  /** Seeds the one generator behind the initial layout and the negative samples. Default 42. */
  seed?: number;
  /** Default 1. */
  learningRate?: number;
  /** Default 5. */
  negativeSampleRate?: number;
  /** Default 1. */
  localConnectivity?: number;
  /** Default 1 (fuzzy union). */
  setOpMixRatio?: number;
  /** Checked between kNN chunks and after every epoch; the promise rejects with its reason. */
  signal?: AbortSignal;
  /** After every epoch: epochs done, total epochs. */
  onProgress?: (epoch: number, totalEpochs: number) => void;
  /** onnxruntime execution providers for the kNN graph, in order (default the backend's list). */
  providers?: readonly string[];
  /** Run the kNN graph on this backend instead of one made from `providers`. */
  backend?: OrtBackend;
  /**
   * Extra rows (textRows x d, e.g. the yes/no text features) laid out in the same space: they
   * are appended to the vectors before the kNN, so they take part in the graph like any point.
   */
  textVectors?: Float32Array;
}

export interface UmapResult {
  /** (n + textRows) x nComponents, row-major: the n vectors first, then the text rows. */
  embedding: Float32Array;
  nComponents: number;
  /** Rows of `embedding` that are the input vectors: [0, n). */
  vectorRows: { start: number; count: number };
  /** Rows of `embedding` that are the text vectors: [n, n + textRows). */
  textRows: { start: number; count: number };
  nEpochs: number;
  knnSeconds: number;
  graphSeconds: number;
  layoutSeconds: number;
  /** The execution provider that ran the kNN graph. */
  provider: string;
}

export class UmapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UmapError';
  }
}

const abCache = new Map<string, { a: number; b: number }>();

/** umap-js's fit of 1 / (1 + a d^(2b)) to the min_dist / spread curve (cached: ~0.1 s). */
export function curveParameters(spread: number, minDist: number): { a: number; b: number } {
  const key = `${spread}:${minDist}`;
  let ab = abCache.get(key);
  if (!ab) {
    ab = findABParams(spread, minDist);
    abCache.set(key, ab);
  }
  return ab;
}

function seconds(t0: number): number {
  return (performance.now() - t0) / 1000;
}

/** UMAP of n row vectors (n x d, row-major Float32Array) by cosine distance. */
export async function projectUmap(vectors: Float32Array, n: number, d: number, opts: UmapOptions = {}): Promise<UmapResult> {
  const k = opts.nNeighbors ?? 15;
  const nComponents = opts.nComponents ?? 2;
  const minDist = opts.minDist ?? 0.1;
  const spread = opts.spread ?? 1;
  if (!Number.isInteger(d) || d < 1) throw new UmapError(`vector dim must be a positive integer (got ${d})`);
  if (vectors.length !== n * d) throw new UmapError(`expected ${n} x ${d} = ${n * d} values, got ${vectors.length}`);
  const text = opts.textVectors ?? new Float32Array(0);
  if (text.length % d !== 0) throw new UmapError(`text vectors: ${text.length} values is not a multiple of the dim ${d}`);
  const textCount = text.length / d;
  const total = n + textCount;
  if (!Number.isInteger(k) || k < 2) throw new UmapError(`nNeighbors must be an integer >= 2 (got ${k})`);
  if (total <= k) throw new UmapError(`need more points (${total}) than nNeighbors (${k})`);
  if (nComponents !== 2 && nComponents !== 3) throw new UmapError(`nComponents must be 2 or 3 (got ${nComponents})`);
  if (!(minDist >= 0) || !(spread > 0) || minDist > spread) throw new UmapError(`need 0 <= minDist <= spread, spread > 0 (got ${minDist}, ${spread})`);
  const nEpochs = opts.nEpochs ?? defaultEpochs(total);
  if (!Number.isInteger(nEpochs) || nEpochs < 1) throw new UmapError(`nEpochs must be a positive integer (got ${nEpochs})`);

  let data = vectors;
  if (textCount > 0) {
    data = new Float32Array(total * d);
    data.set(vectors);
    data.set(text, n * d);
  }
  let t0 = performance.now();
  const knn = await cosineKnn(data, total, d, k, { providers: opts.providers, backend: opts.backend, signal: opts.signal });
  const knnSeconds = seconds(t0);

  t0 = performance.now();
  const graph = fuzzySimplicialSet(knn.indices, knn.distances, total, k, {
    localConnectivity: opts.localConnectivity, setOpMixRatio: opts.setOpMixRatio,
  });
  const edges = layoutEdges(graph, nEpochs);
  const { a, b } = curveParameters(spread, minDist);
  const graphSeconds = seconds(t0);

  t0 = performance.now();
  const layout = await optimizeLayout(edges, total, {
    nComponents, nEpochs, a, b, seed: opts.seed ?? 42,
    learningRate: opts.learningRate, negativeSampleRate: opts.negativeSampleRate,
    signal: opts.signal, onProgress: opts.onProgress,
  });
  const layoutSeconds = seconds(t0);
  return {
    embedding: Float32Array.from(layout),
    nComponents,
    vectorRows: { start: 0, count: n },
    textRows: { start: n, count: textCount },
    nEpochs,
    knnSeconds,
    graphSeconds,
    layoutSeconds,
    provider: knn.provider,
  };
}
