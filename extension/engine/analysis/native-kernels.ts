// The optional native module of the ablation (native/*.cc, built by scripts/build-native.mjs into
// native/build/): in its scoring workers the fused ATD sums (atd-native.ts), the exact margin dots
// (margins-wasm.ts), the score sort (score-sort.ts) and the metrics of sorted scores
// (variant-math.ts); in its text workers the "no" text tower after a shared past
// (native-kv-tower.ts). Undefined where it was not built, does not load (another platform's
// build) or the CPU lacks AVX2/FMA, and with CLIPN_NO_NATIVE=1 (for comparisons): the callers then
// use onnxruntime's graphs, the WebAssembly kernel and the JavaScript sort and metrics.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The module's exports. */
export interface NativeKernels {
  /** Whether this CPU runs the kernels (AVX2 and FMA). */
  simd: boolean;
  /** ATD sums: see native/ablation-kernels.cc atdSums. */
  atdSums(a: Float32Array, k: number, c4: number, d: number, panels: Float32Array, np: number, rows: number, p: Float32Array, scale: number, hi: number, out: Float32Array): void;
  /** MarginKernel's dots at byte offsets into `memory`, bit for bit. */
  dots(memory: ArrayBuffer, x: number, g: number, out: number, quads: number, d: number): void;
  /** ScoreSorter's sort: `out` = `scores` ascending, -0 as +0; the first non-finite score's index, or -1. */
  sortScores(scores: Float64Array, out: Float64Array): number;
  /** metrics.ts detectionMetricsOfSorted bit for bit: out = [AUROC, FPR95, AUPR-In, AUPR-Out]. */
  metricsOfSorted(id: Float64Array, ood: Float64Array, out: Float64Array): void;
  /** The text_no_kv tower (native/text-tower.cc), from native-kv-tower.ts's config and weights. */
  kvTowerCreate(config: Int32Array, weights: Float32Array): unknown;
  /** KvTower::run: the graph's outputs into embeds and the presents (each null when not wanted). */
  kvTowerRun(
    tower: unknown, ids: BigInt64Array, batch: number, length: number, mix: Float32Array, pastKeys: Float32Array, pastValues: Float32Array,
    pasts: number, pastLength: number, pastIndex: BigInt64Array, embeds: Float32Array | null, presentKeys: Float32Array | null, presentValues: Float32Array | null,
  ): void;
}

export const NATIVE_MODULE = path.join('native', 'build', 'ablation-kernels.node');

/** The built module above this file (out/extension/engine/analysis, dist/extension/kernel, an installed extension's dist/...). */
function moduleFile(): string | undefined {
  for (let dir = __dirname, up = 0; up < 7; up++, dir = path.dirname(dir)) {
    const file = path.join(dir, NATIVE_MODULE);
    if (fs.existsSync(file)) return file;
  }
  return undefined;
}

let loaded: { kernels?: NativeKernels } | undefined;

/** The native kernels if they are built and this CPU runs them; loaded once per thread. */
export function nativeKernels(): NativeKernels | undefined {
  if (!loaded) {
    loaded = {};
    const file = process.env.CLIPN_NO_NATIVE === '1' ? undefined : moduleFile();
    if (file) {
      try {
        const m = { exports: {} as NativeKernels };
        process.dlopen(m, file);
        if (m.exports.simd === true) loaded.kernels = m.exports;
      } catch {
        // A module that does not load (another platform's build, a missing library) means no kernels, not a failed run.
      }
    }
  }
  return loaded.kernels;
}
