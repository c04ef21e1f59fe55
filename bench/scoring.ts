// Scoring + metrics for N images x C classes (D-dim features): the engine's ONNX graph path
// (scoring-graph.ts) against the plain-TS reference path (scores.ts). Goal (issue "engine",
// item 10): 50,000 x 1,000 x 512 in under 2 s on the 2-core machine.
//
//   node out/bench/scoring.js [--images 50000] [--classes 1000] [--dim 512] [--reps 5]
//                             [--ts-images 2000] [--temperature 1] [--chunk 1024]
//
// The TS path runs on the first --ts-images images only (it reaches ~1 GMAC/s: 51 GMAC would
// take most of a minute) and its scoring time is extrapolated linearly to N; the metrics part
// is measured at full size for both. Runs are interleaved (graph, TS, graph, TS, ...); medians
// are reported with their spread. Wall time is what a user waits; CPU time (all threads) is
// steadier on a shared machine.
import { computeMetrics, idAccuracy } from '../extension/engine/metrics';
import { DEFAULT_GRAPH_CHUNK_ROWS, scoreImageFeatures } from '../extension/engine/scoring-graph';
import type { EngineScores } from '../extension/engine/scoring-graph';
import type { FeatureInput, ImageScores } from '../extension/engine/scores';
import { args, median, printMachine, spread, timed } from './machine';
import { gaussian, normalisedRows } from '../extension/engine/random';

/** The metrics a notebook shows for one ID/OOD split: 5 scores x 4 metrics + ID accuracy. */
function allMetrics(s: ImageScores, nId: number, labels: Int32Array): number {
  let checksum = 0;
  for (const k of ['msp', 'maxLogit', 'energy', 'ctw', 'atd'] as const) {
    const m = computeMetrics(s[k].subarray(0, nId), s[k].subarray(nId));
    checksum += m.auroc + m.fpr95.interpolated + m.auprIn + m.auprOut;
  }
  return checksum + idAccuracy(s.predicted.subarray(0, nId), labels);
}

async function main(): Promise<void> {
  const a = args();
  const n = Number(a.get('images') ?? 50000);
  const c = Number(a.get('classes') ?? 1000);
  const d = Number(a.get('dim') ?? 512);
  const reps = Number(a.get('reps') ?? 5);
  const tsImages = Math.min(n, Number(a.get('ts-images') ?? 2000));
  const temperature = Number(a.get('temperature') ?? 1);
  const chunkRows = Number(a.get('chunk') ?? DEFAULT_GRAPH_CHUNK_ROWS);
  const machine = printMachine();
  console.log(`scoring + metrics: ${n} images x ${c} classes x ${d}-dim, T = ${temperature}, graph chunk ${chunkRows} rows, ${reps} interleaved reps`);
  console.log(`work: ${(2 * n * c * d / 1e9).toFixed(1)} GMAC (image x [yes; no] text products)`);

  const next = gaussian(42);
  const input: FeatureInput = {
    image: normalisedRows(n, d, next), n, dim: d,
    textYes: normalisedRows(c, d, next), textNo: normalisedRows(c, d, next), classes: c,
  };
  const nId = n >> 1;
  const labels = new Int32Array(nId).map((_, i) => i % c);
  const subset: FeatureInput = { ...input, n: tsImages, image: input.image.subarray(0, tsImages * d) };

  // First call: builds the graph, creates the session (prepacks the text), then scores.
  const first = await timed(() => scoreImageFeatures(input, { temperature, chunkRows }));
  if (first.value.engine !== 'onnx') throw new Error(`graph path unavailable: ${first.value.fallbackReason}`);
  console.log(`graph path, first call (graph build + session creation + scoring): ${first.wall.toFixed(3)} s`);

  const g = { wall: [] as number[], cpu: [] as number[], scoreWall: [] as number[] };
  const t = { wall: [] as number[], cpu: [] as number[] };
  const metricsWall: number[] = [];
  let graphScores: EngineScores | undefined;
  for (let r = 0; r < reps; r++) {
    const run = await timed(async () => {
      const s = await timed(() => scoreImageFeatures(input, { temperature, chunkRows }));
      graphScores = s.value;
      const m = await timed(() => allMetrics(s.value, nId, labels));
      metricsWall.push(m.wall);
      g.scoreWall.push(s.wall);
      return m.value;
    });
    g.wall.push(run.wall);
    g.cpu.push(run.cpu);
    const ts = await timed(() => scoreImageFeatures(subset, { temperature, engine: 'ts' }));
    t.wall.push(ts.wall);
    t.cpu.push(ts.cpu);
  }
  const factor = n / tsImages;
  const metricsMedian = median(metricsWall);
  const graphTotal = median(g.wall);
  const tsTotal = median(t.wall) * factor + metricsMedian;
  console.log('');
  console.log(`graph path (scoring + metrics), ${n} images: median ${graphTotal.toFixed(3)} s wall (${spread(g.wall)}), ` +
    `CPU ${median(g.cpu).toFixed(3)} s; scoring alone ${median(g.scoreWall).toFixed(3)} s, metrics ${metricsMedian.toFixed(3)} s`);
  console.log(`TS reference path, measured on ${tsImages} images: median ${median(t.wall).toFixed(3)} s wall (${spread(t.wall)}), ` +
    `CPU ${median(t.cpu).toFixed(3)} s`);
  console.log(`TS reference path extrapolated to ${n} images (x${factor.toFixed(1)}, linear) + the same metrics: ${tsTotal.toFixed(2)} s`);
  console.log(`ratio (TS / graph, same run): ${(tsTotal / graphTotal).toFixed(1)}x`);
  console.log(`goal < 2 s for scoring + metrics: ${graphTotal < 2 ? 'MET' : 'NOT MET'} (${graphTotal.toFixed(3)} s wall median, load average ${machine.loadAverage[0]} at start)`);
  if (graphScores) {
    const ood = graphScores.ctwIsOod.reduce((x, y) => x + y, 0);
    console.log(`(sanity: ${ood} of ${n} images CTW-OOD; engine ${graphScores.engine})`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
