// The ATD sums of a scoring worker (ablation-worker.ts) by the native kernel (native-kernels.ts,
// native/ablation-kernels.cc atdSums) where it runs: the same sums as atd-graph.ts's onnxruntime
// graph (both float32 GEMMs: within ~3e-7 relative of each other, ~1e-5 of float64), in one pass
// that never writes the [k C, R] GEMM output. Elsewhere the worker keeps the graph.
import { EXP_CLIP, subtract } from './atd-graph';
import { nativeKernels } from './native-kernels';
import type { NativeKernels } from './native-kernels';
import { SCALE } from './variant-math';
import type { RowSide } from './variant-math';

/** Images per panel: the kernel's two 8-float lanes. */
const LANES = 16;

export class AtdNative {
  private constructor(private readonly kernels: NativeKernels, private readonly side: RowSide, private readonly c4: number,
    private readonly panels: Float32Array, private readonly p: Float32Array) {}

  /** The side's images packed in panels and its off-j* softmax padded, once; undefined without the kernel. */
  static open(side: RowSide, kernels = nativeKernels()): AtdNative | undefined {
    if (!kernels) return undefined;
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
    return new AtdNative(kernels, side, c4, panels, p);
  }

  /** [2k, rows] for the k variants' [C, D] features: yes sums, then no sums (AtdGraph.sums's layout). */
  sums(variants: readonly Float32Array[], yes: Float32Array): Float32Array {
    const { rows, d, c } = this.side;
    const k = variants.length;
    // Gno - G per variant, each padded with zero class rows to a multiple of four (their p is zero).
    const a = new Float32Array(k * this.c4 * d);
    for (let v = 0; v < k; v++) subtract(variants[v], yes, a, v * this.c4 * d, c * d);
    const out = new Float32Array(2 * k * rows);
    this.kernels.atdSums(a, k, this.c4, d, this.panels, this.panels.length / (d * LANES), rows, this.p, SCALE, EXP_CLIP, out);
    return out;
  }
}
