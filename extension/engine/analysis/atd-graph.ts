// The ATD graph of a scoring worker (ablation-worker.ts): for m variants and a tile of its image
// rows, the sums over classes c != j* of p_c sigmoid(d_c) and of p_c sigmoid(-d_c). One session,
// fed tile by tile (the image tile and its softmax are inputs, subarrays of the worker's tables;
// the GEMM packs the small tile per run): with tiles of a few hundred rows the intermediates
// (m x C x rows floats) stay in cache, and the elementwise passes ran about twice as fast as over
// all rows at once (2-core machine: the graph 5.2 against 7.4 ms per variant and 10k images).
import type { GraphSession, OrtBackend } from '../backend';
import { DataType, GraphBuilder } from '../onnx-graph';
import { SCALE } from './variant-math';
import type { RowSide } from './variant-math';

/** Bound on exp()'s argument in the graph (and atd-native.ts's kernel): keeps [p sigmoid(d)] e^-d finite (error <= p e^-85). */
export const EXP_CLIP = 85;

/**
 * [2m, R]: for m variants' (Gno - G) [m C, D] against a tile of R images and its off-j* softmax
 * p_rest [1, C, R], the yes sums then the no sums. The GEMM against Gno - G gives Lno - L = -d
 * directly (as scoring-graph.ts).
 */
function buildRestGraph(dim: number, classes: number): Uint8Array {
  const g = new GraphBuilder('clipn_ablation_atd');
  const shape = g.op1('Concat', [g.int64s([-1, classes]), g.op1('Shape', ['x'], { end: 1 })], { axis: 0 });
  const negD = g.op1('Gemm', ['no_minus_yes', 'x'], { alpha: { float: SCALE }, transB: 1 });
  // Not onnxruntime's Sigmoid: its absolute error (~1e-7) ruins small probabilities (scoring-graph.ts).
  // Clip on the GEMM's 2-D output, before the Reshape: measured about twice as fast as on the 3-D view.
  const e = g.op1('Exp', [g.op1('Reshape', [g.op1('Clip', [negD, '', g.floats([EXP_CLIP], [], 'hi')]), shape])]);
  const yes = g.op1('Div', ['p_rest', g.op1('Add', [e, g.floats([1], [], 'one')])]);
  const axes = g.int64s([1]);
  g.op1('Concat', [yes, g.op1('Mul', [yes, e])].map((v) => g.op1('ReduceSum', [v, axes], { keepdims: 0 })), { axis: 0 }, 'sums');
  const F = DataType.FLOAT;
  return g.build(
    [{ name: 'no_minus_yes', elemType: F, shape: ['mc', dim] }, { name: 'x', elemType: F, shape: ['r', dim] }, { name: 'p_rest', elemType: F, shape: [1, classes, 'r'] }],
    [{ name: 'sums', elemType: F, shape: ['m2', 'r'] }],
  );
}

export class AtdGraph {
  private constructor(private readonly session: GraphSession, private readonly side: RowSide, private readonly perRun: number) {}

  /** chunkElements bounds each run's intermediates: m x C x tile rows floats. */
  static async open(backend: OrtBackend, side: RowSide, chunkElements: number): Promise<AtdGraph> {
    const session = await backend.sessionFromBuffer('ablation_atd', buildRestGraph(side.d, side.c));
    return new AtdGraph(session, side, Math.max(1, Math.floor(chunkElements / (side.c * side.tileRows))));
  }

  /** Runs the first and the last tile once (each tile shape's first run is slow): the sums are dropped. */
  async warmUp(variants: readonly Float32Array[], yes: Float32Array): Promise<void> {
    const { rows, tileRows } = this.side;
    const last = Math.ceil(rows / tileRows) - 1;
    for (const tile of new Set([0, last])) await this.tileSums(this.text(variants, yes), variants.length, tile);
  }

  /** [2k, rows] for the k variants' [C, D] features: yes sums, then no sums. */
  async sums(variants: readonly Float32Array[], yes: Float32Array): Promise<Float32Array> {
    const { rows, tileRows } = this.side;
    const k = variants.length;
    const text = this.text(variants, yes);
    const out = new Float32Array(2 * k * rows);
    for (let tile = 0; tile * tileRows < rows; tile++) await this.tileSums(text, k, tile, out);
    return out;
  }

  /** The GEMM's left operand, Gno - G for each variant, [k C, D]. */
  private text(variants: readonly Float32Array[], yes: Float32Array): Float32Array {
    const cd = this.side.c * this.side.d;
    const text = new Float32Array(variants.length * cd);
    for (let v = 0; v < variants.length; v++) subtract(variants[v], yes, text, v * cd, cd);
    return text;
  }

  /** One tile's sums into out ([2k, rows]; none: dropped), perRun variants per graph run. */
  private async tileSums(text: Float32Array, k: number, tile: number, out?: Float32Array): Promise<void> {
    const { rows, c, d, x, tileRows, pRest } = this.side;
    const cd = c * d;
    const t0 = tile * tileRows;
    const r = Math.min(tileRows, rows - t0);
    const tileX = { type: 'float32' as const, data: x.subarray(t0 * d, (t0 + r) * d), dims: [r, d] };
    const tileP = { type: 'float32' as const, data: pRest[tile], dims: [1, c, r] };
    for (let v0 = 0; v0 < k; v0 += this.perRun) {
      const m = Math.min(this.perRun, k - v0);
      const feeds = { no_minus_yes: { type: 'float32' as const, data: text.subarray(v0 * cd, (v0 + m) * cd), dims: [m * c, d] }, x: tileX, p_rest: tileP };
      const { data } = await this.session.run(feeds, 'sums');
      for (let u = 0; out && u < m; u++) {
        out.set(data.subarray(u * r, (u + 1) * r), (v0 + u) * rows + t0);
        out.set(data.subarray((m + u) * r, (m + u + 1) * r), (k + v0 + u) * rows + t0);
      }
    }
  }
}

/** out[at + j] = g[j] - yes[j], rounded to float32 (a function of its own, so V8 optimises the loop whole). */
export function subtract(g: Float32Array, yes: Float32Array, out: Float32Array, at: number, count: number): void {
  for (let j = 0; j < count; j++) out[at + j] = g[j] - yes[j];
}
