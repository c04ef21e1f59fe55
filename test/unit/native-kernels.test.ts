// The native kernels (native/ablation-kernels.cc through engine/analysis/native-kernels.ts):
//  - the ATD sums (atd-native.ts) against the onnxruntime graph they replace (atd-graph.ts) and a
//    float64 reference, on random features whose sizes are not multiples of the kernel's blocks
//    (16 images, 4 classes). Both are float32 GEMMs: they agree with each other to ~1e-6 relative,
//    not bit for bit, and with float64 to the ~1e-5 that a float32 logit error (x100) leaves
//    (ablation.test.ts holds the graph's ATD to 1e-5 alike);
//  - the margin dots against the WebAssembly kernel and JavaScript's `s += x[t] * g[t]`, bit for bit;
//  - the score sort and the metrics walk against computeMetrics, bit for bit (metrics.test.ts
//    checks the sort on its own too).
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { AtdGraph, EXP_CLIP } from '../../extension/engine/analysis/atd-graph';
import { AtdNative } from '../../extension/engine/analysis/atd-native';
import { MarginKernel } from '../../extension/engine/analysis/margins-wasm';
import { NATIVE_MODULE, nativeKernels } from '../../extension/engine/analysis/native-kernels';
import { MetricsOfScores, rowSide, SCALE } from '../../extension/engine/analysis/variant-math';
import { OrtBackend } from '../../extension/engine/backend';
import { computeMetrics } from '../../extension/engine/metrics';
import { gaussian, normalisedRows } from '../../extension/engine/random';

const ROOT = path.join(__dirname, '..', '..', '..');
const ADDON = path.join(ROOT, NATIVE_MODULE);

/** Whether this machine can build the kernel (scripts/build-native.mjs's conditions). */
function buildable(): boolean {
  const headers = path.join(path.dirname(process.execPath), '..', 'include', 'node', 'node_api.h');
  return process.arch === 'x64' && fs.existsSync(headers) && spawnSync('g++', ['--version'], { stdio: 'ignore' }).status === 0;
}

function cpuFlags(): Set<string> {
  const info = fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '';
  return new Set((/^flags\s*:(.*)$/m.exec(info)?.[1] ?? '').trim().split(/\s+/));
}

test('the module is built wherever it can be, and runs exactly where the CPU has AVX2 and FMA', { skip: !buildable() && 'no g++ or Node-API headers here' }, () => {
  assert.ok(fs.existsSync(ADDON), `${ADDON} missing: npm run build compiles it (scripts/build-native.mjs)`);
  const flags = cpuFlags();
  assert.equal(nativeKernels() !== undefined, flags.has('avx2') && flags.has('fma'));
});

test('ATD sums equal the onnxruntime graph\'s to 2e-6 and a float64 reference to 3e-5 relative', { skip: !nativeKernels() && 'no native kernels here' }, async () => {
  // 301 images (18 panels of 16, the last partial), 13 classes (padded to 16), tiles of 40 images for the graph.
  const [n, d, c] = [301, 128, 13];
  const next = gaussian(29);
  const x = normalisedRows(n, d, next);
  const yes = normalisedRows(c, d, next);
  // Variants near the yes side, as a pool's are, and one far from it (large |d|: exp's clip and tails).
  const near = (w: number) => {
    const v = normalisedRows(c, d, next);
    for (let i = 0; i < v.length; i++) v[i] = w * yes[i] + (1 - w) * v[i];
    return v;
  };
  const variants = [near(0.9), near(0.5), normalisedRows(c, d, next), near(0.99), yes];
  const side = rowSide(x, n, d, yes, c, 0, 40);
  const native = AtdNative.open(side)!.sums(variants, yes);
  const backend = new OrtBackend({ executionProviders: ['cpu'], intraOpNumThreads: 1 });
  try {
    const graph = await (await AtdGraph.open(backend, side, 4 * c * 40)).sums(variants, yes);
    assert.equal(native.length, graph.length);
    let worstGraph = 0;
    let worstF64 = 0;
    const k = variants.length;
    variants.forEach((g, v) => {
      for (let r = 0; r < n; r++) {
        // The float64 reference: off-j* softmax from rowSide, -d = SCALE (g - yes) . x clipped, both sums.
        let [ys, ns] = [0, 0];
        const tile = Math.floor(r / 40);
        const rows = Math.min(40, n - tile * 40);
        for (let j = 0; j < c; j++) {
          const p = side.pRest[tile][j * rows + (r - tile * 40)];
          let dot = 0;
          for (let t = 0; t < d; t++) dot += (g[j * d + t] - yes[j * d + t]) * x[r * d + t];
          const e = Math.exp(Math.min(SCALE * dot, EXP_CLIP));
          ys += p / (1 + e);
          ns += (p / (1 + e)) * e;
        }
        for (const [at, want] of [[v * n + r, ys], [(k + v) * n + r, ns]] as const) {
          worstGraph = Math.max(worstGraph, Math.abs(native[at] - graph[at]) / Math.max(graph[at], 1e-30));
          worstF64 = Math.max(worstF64, Math.abs(native[at] - want) / Math.max(want, 1e-30));
        }
      }
    });
    console.log(`# native against graph ${worstGraph.toExponential(2)}, against float64 ${worstF64.toExponential(2)} (relative)`);
    assert.ok(worstGraph <= 2e-6, `native against graph: ${worstGraph}`);
    assert.ok(worstF64 <= 3e-5, `native against float64: ${worstF64}`);
  } finally {
    await backend.dispose();
  }
});

test('ATD sums: sizes that do not match are errors naming the kernel, not a read out of bounds', { skip: !nativeKernels() && 'no native kernels here' }, () => {
  const kernel = nativeKernels()!;
  const sums = kernel.atdSums.bind(kernel);
  const f = (count: number) => new Float32Array(count);
  // k 1, c4 4, d 8, np 1 (16 images), rows 16: a has 32 floats, panels 128, p 64, out 32.
  assert.doesNotThrow(() => sums(f(32), 1, 4, 8, f(128), 1, 16, f(64), SCALE, EXP_CLIP, f(32)));
  assert.throws(() => sums(f(31), 1, 4, 8, f(128), 1, 16, f(64), SCALE, EXP_CLIP, f(32)), /atdSums: array sizes/);
  assert.throws(() => sums(f(32), 1, 4, 8, f(128), 1, 17, f(64), SCALE, EXP_CLIP, f(34)), /atdSums: array sizes/);
  // Two panels for 16 images: the second would have no image to write (a negative count).
  assert.throws(() => sums(f(32), 1, 4, 8, f(256), 2, 16, f(128), SCALE, EXP_CLIP, f(32)), /atdSums: array sizes/);
  assert.throws(() => sums(f(24), 1, 3, 8, f(128), 1, 16, f(48), SCALE, EXP_CLIP, f(32)), /atdSums: array sizes/);
  assert.throws(() => sums(new Float64Array(32) as unknown as Float32Array, 1, 4, 8, f(128), 1, 16, f(64), SCALE, EXP_CLIP, f(32)), /Float32Arrays/);
});

test('margin dots: bit for bit the WebAssembly kernel\'s and JavaScript\'s, and tables outside the memory are errors', { skip: !nativeKernels() && 'no native kernels here' }, () => {
  const [rows, d] = [37, 128];
  const native = MarginKernel.create(rows, d)!;
  const wasm = MarginKernel.create(rows, d, null)!;
  assert.notEqual(native.dots, wasm.dots);
  assert.ok(native && wasm, 'WebAssembly SIMD runs here');
  const quads = Math.ceil(rows / 4);
  const results = [native, wasm].map((k) => {
    const { memory, layout } = k;
    const x = new Float64Array(memory.buffer, layout.x, quads * 4 * d);
    const g = new Float64Array(memory.buffer, layout.g, 4 * d);
    // Mixed magnitudes and signs, so that the order of the additions shows in the last bits.
    const seeded = gaussian(43);
    for (let i = 0; i < x.length; i++) x[i] = seeded() * 10 ** Math.floor(4 * seeded());
    for (let i = 0; i < g.length; i++) g[i] = seeded();
    k.dots(layout.x, layout.g, layout.out, quads, d);
    return { x, g, out: Float64Array.from(new Float64Array(memory.buffer, layout.out, 16 * quads)) };
  });
  assert.deepStrictEqual(results[0].out, results[1].out);
  const { x, g, out } = results[0];
  for (let r = 0; r < quads * 4; r++) {
    for (let u = 0; u < 4; u++) {
      let s = 0;
      for (let t = 0; t < d; t++) s += x[r * d + t] * g[4 * t + u];
      assert.equal(out[4 * r + u], s, `row ${r}, variant ${u}`);
    }
  }
  const kernels = nativeKernels()!;
  const buffer = native.memory.buffer;
  assert.throws(() => kernels.dots(buffer, buffer.byteLength - 8, 0, 0, 1, d), /dots: tables outside the memory/);
  assert.throws(() => kernels.dots(buffer, 4, 0, 0, 1, d), /misaligned/);
  assert.throws(() => kernels.dots(new Float64Array(8) as unknown as ArrayBuffer, 0, 0, 0, 1, d), /memory must be an ArrayBuffer/);
});

test('metrics of a variant\'s scores: the native sort and walk give computeMetrics\' numbers bit for bit', { skip: !nativeKernels() && 'no native kernels here' }, () => {
  const next = gaussian(47);
  const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
  const sets: Record<string, { scores: Float64Array; idN: number }> = {
    // Probabilities piling up at exactly 1 and near 0, as CTW and ATD do.
    probabilities: { scores: Float64Array.from({ length: 10_000 }, (_, i) => sigmoid((i < 7000 ? 40 : -5) + 30 * next())), idN: 7000 },
    ties: { scores: Float64Array.from({ length: 3000 }, () => Math.round(Math.abs(next()) * 4) / 16), idN: 1200 },
    nearOne: { scores: Float64Array.from({ length: 1000 }, (_, i) => 1 - 1e-9 * Math.abs(next() + (i < 700 ? 0 : 1))), idN: 700 },
    // Outside [0, 1]: the sort's fallback.
    logits: { scores: Float64Array.from({ length: 2000 }, (_, i) => 10 * next() + (i < 900 ? 3 : 0)), idN: 900 },
    tiny: { scores: Float64Array.from([0.2, 0.9, 0.9, 0.1]), idN: 1 },
  };
  const [native, own] = [new MetricsOfScores(), new MetricsOfScores(null)];
  for (const [name, { scores, idN }] of Object.entries(sets)) {
    const m = computeMetrics(scores.subarray(0, idN), scores.subarray(idN));
    const want = { auroc: m.auroc, fpr95: m.fpr95.interpolated, auprIn: m.auprIn, auprOut: m.auprOut };
    assert.deepStrictEqual(own.of(scores, idN), want, `${name}, this module's`);
    assert.deepStrictEqual(native.of(scores, idN), want, `${name}, native`);
  }
  const out = new Float64Array(4);
  assert.throws(() => nativeKernels()!.metricsOfSorted(new Float64Array(0), new Float64Array(1), out), /metricsOfSorted: id and ood must be non-empty/);
});
