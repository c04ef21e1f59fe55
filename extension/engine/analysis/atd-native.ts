// The ATD sums of a scoring worker (ablation-worker.ts) by the native kernel native/atd-tile.cc,
// where it was built (scripts/build-native.mjs) and the CPU has AVX2 and FMA: the same sums as
// atd-graph.ts's onnxruntime graph (both float32 GEMMs, within ~1e-6 relative of each other and of
// float64), in one pass that never writes the [k C, R] GEMM output. Elsewhere atdKernel() is
// undefined and the worker keeps the graph.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EXP_CLIP, subtract } from './atd-graph';
import { SCALE } from './variant-math';
import type { RowSide } from './variant-math';

/** The module's exports (native/atd-tile.cc). */
export interface AtdKernel {
  /** Whether this CPU runs the kernel (AVX2 and FMA). */
  simd: boolean;
  sums(a: Float32Array, k: number, c4: number, d: number, panels: Float32Array, np: number, rows: number, p: Float32Array, scale: number, hi: number, out: Float32Array): void;
}

const ADDON = path.join('native', 'build', 'atd-tile.node');
/** Images per panel: the kernel's two 8-float lanes. */
const LANES = 16;

/** The built module above this file (out/extension/engine/analysis, dist/extension/kernel, an installed extension's dist/...). */
function addonFile(): string | undefined {
  for (let dir = __dirname, up = 0; up < 7; up++, dir = path.dirname(dir)) {
    const file = path.join(dir, ADDON);
    if (fs.existsSync(file)) return file;
  }
  return undefined;
}

let loaded: { kernel?: AtdKernel } | undefined;

/** The native kernel if it is built and this CPU runs it; loaded once per thread. */
export function atdKernel(): AtdKernel | undefined {
  if (!loaded) {
    loaded = {};
    const file = process.env.CLIPN_NO_NATIVE === '1' ? undefined : addonFile();
    if (file) {
      // A module that does not load (another platform's build, a missing library) means no kernel, not a failed run.
      try {
        const m = { exports: {} as AtdKernel };
        process.dlopen(m, file);
        if (m.exports.simd === true) loaded.kernel = m.exports;
      } catch {
        loaded.kernel = undefined;
      }
    }
  }
  return loaded.kernel;
}

export class AtdNative {
  private constructor(private readonly kernel: AtdKernel, private readonly side: RowSide, private readonly c4: number,
    private readonly panels: Float32Array, private readonly p: Float32Array) {}

  /** The side's images packed in panels and its off-j* softmax padded, once; undefined without the kernel. */
  static open(side: RowSide, kernel = atdKernel()): AtdNative | undefined {
    if (!kernel) return undefined;
    const { rows, d, c, x, tileRows, pRest } = side;
    const np = Math.ceil(rows / LANES);
    const c4 = Math.ceil(c / 4) * 4;
    const panels = new Float32Array(np * d * LANES);
    for (let r = 0; r < rows; r++) {
      const [pn, lane] = [Math.floor(r / LANES), r % LANES];
      for (let t = 0; t < d; t++) panels[(pn * d + t) * LANES + lane] = x[r * d + t];
    }
    const stride = np * LANES;
    const p = new Float32Array(c4 * stride);
    pRest.forEach((tile, i) => {
      const [t0, r] = [i * tileRows, Math.min(tileRows, rows - i * tileRows)];
      for (let j = 0; j < c; j++) p.set(tile.subarray(j * r, (j + 1) * r), j * stride + t0);
    });
    return new AtdNative(kernel, side, c4, panels, p);
  }

  /** [2k, rows] for the k variants' [C, D] features: yes sums, then no sums (AtdGraph.sums's layout). */
  sums(variants: readonly Float32Array[], yes: Float32Array): Float32Array {
    const { rows, d, c } = this.side;
    const k = variants.length;
    // Gno - G per variant, each padded with zero class rows to a multiple of four (their p is zero).
    const a = new Float32Array(k * this.c4 * d);
    for (let v = 0; v < k; v++) subtract(variants[v], yes, a, v * this.c4 * d, c * d);
    const out = new Float32Array(2 * k * rows);
    this.kernel.sums(a, k, this.c4, d, this.panels, this.panels.length / (d * LANES), rows, this.p, SCALE, EXP_CLIP, out);
    return out;
  }
}
