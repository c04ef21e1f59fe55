// UMAP of 10,000 x 512 clustered vectors: the engine (extension/engine/umap: exact cosine kNN
// on onnxruntime + typed-array graph + flat-array epochs) against umap-js 1.4's own fit
// (RP-forest + NN-descent kNN, Map-keyed sparse graph, epochs), same data, same nEpochs, same
// metric. Goals (issue "analyses", item 2): ours under 20 s in total, at least 2x faster than
// umap-js, trustworthiness(15) no more than 0.01 below umap-js's.
//
//   node out/bench/umap.js [--n 10000] [--d 512] [--clusters 20] [--noise 1] [--seed 1]
//                          [--subset 2000] [--providers cpu,...] [--umapjs-metric cosine|euclidean]
//                          [--skip-umapjs]
//
// umap-js's fit is split into its phases by calling what fit calls, in order (its private
// nearestNeighbors, then initializeFit with that kNN set, then the epochs). Trustworthiness is
// O(n^2 d): it is computed on the same fixed random subset of points for both layouts (the
// subset's own high- and low-dimensional configurations, sklearn's definition).
import { UMAP } from 'umap-js';
import { cosine, euclidean } from 'umap-js/dist/umap';
import { cosineKnn, projectUmap, randomSubset, subsetRows, trustworthinessOfLayouts } from '../extension/engine/umap/index';
import { defaultEpochs } from '../extension/engine/umap/fuzzy-graph';
import { clusteredVectors } from '../extension/engine/umap/synthetic';
import { uniform } from '../extension/engine/random';
import { args, printMachine, timed } from './machine';

/** umap-js's private steps of fit(), typed for the phase split. */
interface UmapJsSteps {
  nearestNeighbors(x: number[][]): { knnIndices: number[][]; knnDistances: number[][] };
  optimizeLayout(): number[][];
}

interface UmapJsRun {
  embedding: Float64Array;
  knnIndices: number[][];
  knn: number;
  graph: number;
  layout: number;
  total: number;
  cpu: number;
}

async function umapJsFit(x: Float32Array, n: number, d: number, nEpochs: number, seed: number, metric: string): Promise<UmapJsRun> {
  const rows = Array.from({ length: n }, (_, i) => Array.from(x.subarray(i * d, (i + 1) * d)));
  const u = new UMAP({ nNeighbors: 15, nEpochs, distanceFn: metric === 'euclidean' ? euclidean : cosine, random: uniform(seed) });
  const steps = u as unknown as UmapJsSteps;
  const c0 = process.cpuUsage();
  const knn = await timed(() => steps.nearestNeighbors(rows));
  u.setPrecomputedKNN(knn.value.knnIndices, knn.value.knnDistances);
  const graph = await timed(() => u.initializeFit(rows));
  const layout = await timed(() => steps.optimizeLayout());
  const c = process.cpuUsage(c0);
  return {
    embedding: Float64Array.from(layout.value.flat()),
    knnIndices: knn.value.knnIndices,
    knn: knn.wall, graph: graph.wall, layout: layout.wall,
    total: knn.wall + graph.wall + layout.wall,
    cpu: (c.user + c.system) / 1e6,
  };
}

const f = (s: number) => `${s.toFixed(2)} s`;

async function main(): Promise<void> {
  const a = args();
  const n = Number(a.get('n') ?? 10000);
  const d = Number(a.get('d') ?? 512);
  const clusters = Number(a.get('clusters') ?? 20);
  const noise = Number(a.get('noise') ?? 1);
  const seed = Number(a.get('seed') ?? 1);
  const subset = Math.min(n, Number(a.get('subset') ?? 2000));
  const providers = a.get('providers')?.split(',');
  const metric = a.get('umapjs-metric') ?? 'cosine';
  const skipUmapJs = a.has('skip-umapjs');
  const machine = printMachine();
  const nEpochs = defaultEpochs(n);
  console.log(`UMAP: ${n} x ${d} vectors, ${clusters} gaussian clusters on the unit sphere (5 families, noise norm ${noise}, seed ${seed}); ` +
    `nNeighbors 15, minDist 0.1, 2-D, ${nEpochs} epochs (umap-js's default for ${n} points) for both`);
  const { vectors } = clusteredVectors(n, d, { clusters, noise, seed });

  const ours = await timed(() => projectUmap(vectors, n, d, { seed, nEpochs, providers }));
  const o = ours.value;
  console.log('');
  console.log(`ours: ${f(ours.wall)} wall, ${f(ours.cpu)} CPU (all threads): exact cosine kNN ${f(o.knnSeconds)} ` +
    `(onnxruntime ${o.provider}, Gemm + TopK, session creation included), graph ${f(o.graphSeconds)}, ${nEpochs} epochs ${f(o.layoutSeconds)}`);

  let theirs: UmapJsRun | undefined;
  if (!skipUmapJs) {
    theirs = await umapJsFit(vectors, n, d, nEpochs, seed, metric);
    console.log(`umap-js fit (distanceFn ${metric}): ${f(theirs.total)} wall, ${f(theirs.cpu)} CPU: RP-forest + NN-descent ${f(theirs.knn)}, ` +
      `graph + initialisation ${f(theirs.graph)}, ${nEpochs} epochs ${f(theirs.layout)}`);
  }

  // Layout quality on one fixed subset for both (euclidean on unit rows = cosine ranks).
  const rows = randomSubset(n, subset, uniform(seed + 1000));
  const layouts = [subsetRows(o.embedding, 2, rows)];
  if (theirs) layouts.push(subsetRows(theirs.embedding, 2, rows));
  const tw = await timed(() => trustworthinessOfLayouts(subsetRows(vectors, d, rows), d, layouts, 2, subset, 15));
  console.log('');
  console.log(`trustworthiness (k = 15) on a fixed random subset of ${subset} of the ${n} points (same subset for both, ${f(tw.wall)}): ` +
    `ours ${tw.value[0].toFixed(4)}${theirs ? `, umap-js ${tw.value[1].toFixed(4)} (difference ${(tw.value[0] - tw.value[1]).toFixed(4)})` : ''}`);

  if (theirs) {
    // How approximate umap-js's neighbours were: recall of NN-descent against the exact kNN.
    const exact = await cosineKnn(vectors, n, d, 15, { providers });
    let hits = 0;
    for (let i = 0; i < n; i++) {
      const truth = new Set(exact.indices.subarray(i * 15, (i + 1) * 15));
      for (const j of theirs.knnIndices[i]) if (truth.has(j)) hits++;
    }
    console.log(`umap-js NN-descent recall of the exact 15 neighbours: ${(hits / (n * 15)).toFixed(4)}`);
    const speedUp = theirs.total / ours.wall;
    console.log('');
    console.log(`ratio (umap-js / ours, same run): total ${speedUp.toFixed(1)}x; kNN ${(theirs.knn / o.knnSeconds).toFixed(1)}x, ` +
      `graph ${(theirs.graph / o.graphSeconds).toFixed(1)}x, epochs ${(theirs.layout / o.layoutSeconds).toFixed(1)}x`);
    console.log(`goal ours < 20 s: ${ours.wall < 20 ? 'MET' : 'NOT MET'} (${f(ours.wall)}); goal >= 2x faster: ${speedUp >= 2 ? 'MET' : 'NOT MET'} (${speedUp.toFixed(1)}x); ` +
      `goal trustworthiness >= umap-js - 0.01: ${tw.value[0] >= tw.value[1] - 0.01 ? 'MET' : 'NOT MET'} (load average ${machine.loadAverage[0]} at start)`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
