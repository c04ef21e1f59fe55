// The model's text_no_kv graph (models/FORMAT.md) run by the native module's text tower
// (native/text-tower.cc) instead of onnxruntime, where the module is built and the CPU has AVX2
// and FMA: the ablation's no-tower text, ~60% of its first run, is ~640 small onnxruntime ops per
// call at the default model's width, of which the GEMMs are only half the time. Same inputs and
// outputs as the graph, so encodeSharedPrefix runs either.
//
// The weights come from the graph file itself: its weighted nodes, in order, follow the export's
// KvGraph (models/clipn/kv_graph.py) block by block, so they are matched to that sequence with
// every shape checked; anything else is refused with the reason. Before the engine uses a tower it
// checks the tower against onnxruntime's session on a probe (nativeKvRunner), so a graph that
// matched the sequence but computes something else is not used either.
import * as fs from 'node:fs';
import type { FloatTensor, GraphSession, TensorData } from './backend';
import { nativeKernels } from './analysis/native-kernels';
import type { NativeKernels } from './analysis/native-kernels';
import { readOnnxGraph } from './onnx-reader';
import type { OnnxGraph, OnnxNode, OnnxTensor } from './onnx-reader';
import type { KvRunner, KvShape } from './shared-prefix';

/** KvTower's constructor arguments (native/ablation-kernels.h). */
export interface KvTowerWeights {
  /** [layers, width, heads, hidden, vocab, context, prompts, embedDim, quickGelu] */
  config: Int32Array;
  weights: Float32Array;
}

const NO_MODULE = 'the native module is not built, not loadable here, or turned off (CLIPN_NO_NATIVE=1)';

/** Largest difference to onnxruntime a tower may show on the probe (features are unit vectors). */
export const PROBE_TOLERANCE = 1e-5;

interface Weighted {
  node: OnnxNode;
  /** Its non-scalar float initializers, in input order. */
  tensors: OnnxTensor[];
}

/** The weights of a text_no_kv graph, matched to the export's sequence; throws with the reason. */
export function kvTowerWeights(graph: OnnxGraph, heads: number): KvTowerWeights {
  // The exporter shares equal initializers through Identity nodes (an untrained model's LayerNorm
  // gains are all ones): their outputs stand for the initializer.
  const tensors = new Map(graph.initializers);
  for (const node of graph.nodes) {
    const source = node.opType === 'Identity' ? tensors.get(node.inputs[0]) : undefined;
    if (source) tensors.set(node.outputs[0], source);
  }
  const seq: Weighted[] = graph.nodes
    .filter((node) => node.opType !== 'Identity')
    .map((node) => ({ node, tensors: node.inputs.flatMap((i) => tensors.get(i) ?? []).filter((t) => t.data.length > 1) }))
    .filter((w) => w.tensors.length > 0);
  let at = 0;
  const take = (op: string, ...shapes: number[][]): Float32Array[] => {
    const w = seq[at];
    const where = `weighted node ${at} (${w?.node.opType ?? 'none'}${w ? ` [${w.tensors.map((t) => t.dims.join('x')).join(', ')}]` : ''})`;
    if (!w || w.node.opType !== op || w.tensors.length !== shapes.length) throw new Error(`${where}: expected ${op} with ${shapes.length} weight(s)`);
    at++;
    return w.tensors.map((t, k) => {
      const [rows, cols] = shapes[k];
      const transposed = op === 'Gemm' && k === 0 && (w.node.ints.get('transB') ?? 0) === 1;
      const dims = transposed ? [cols, rows] : shapes[k].length === 1 ? [rows] : [rows, cols];
      if (t.dims.length !== dims.length || t.dims.some((v, i) => v !== dims[i])) throw new Error(`${where}: expected [${dims.join('x')}]`);
      if (op === 'Gemm' && ((w.node.ints.get('transA') ?? 0) !== 0 || (w.node.floats.get('alpha') ?? 1) !== 1 || (w.node.floats.get('beta') ?? 1) !== 1)) {
        throw new Error(`${where}: a Gemm with transA, alpha or beta`);
      }
      return transposed ? transpose(t.data, cols, rows) : t.data;
    });
  };
  const first = seq[0]?.tensors[0];
  const tokens = seq[1]?.tensors[0];
  const positions = seq[2]?.tensors[0];
  if (!first || !tokens || !positions || tokens.dims.length !== 2 || positions.dims.length !== 2) throw new Error('the graph does not begin with the prompt mix, token and position embeddings');
  const [vocab, W] = tokens.dims;
  const context = positions.dims[0];
  const prompts = first.dims[0];
  const [promptNo] = take('MatMul', [prompts, context * W]);
  const [tokenEmbedding] = take('Gather', [vocab, W]);
  const [positional] = take('Slice', [context, W]);
  const layers: Float32Array[][] = [];
  let hidden = 0;
  for (;;) {
    const next = seq[at + 6];
    const [ln1w] = take('Mul', [W]);
    const [ln1b] = take('Add', [W]);
    const [wk] = take('MatMul', [W, W]);
    const [bk] = take('Add', [W]);
    const [wv] = take('MatMul', [W, W]);
    const [bv] = take('Add', [W]);
    if (next?.node.opType === 'MatMul') {
      const [wq] = take('MatMul', [W, W]);
      const [bq] = take('Add', [W]);
      const [wo] = take('MatMul', [W, W]);
      const [bo] = take('Add', [W]);
      const [ln2w] = take('Mul', [W]);
      const [ln2b] = take('Add', [W]);
      hidden ||= seq[at + 1]?.tensors[0]?.dims[0] ?? 0; // c_fc's bias
      const [wfc] = take('MatMul', [W, hidden]);
      const [bfc] = take('Add', [hidden]);
      const [wproj] = take('MatMul', [hidden, W]);
      const [bproj] = take('Add', [W]);
      layers.push([ln1w, ln1b, wq, bq, wk, bk, wv, bv, wo, bo, ln2w, ln2b, wfc, bfc, wproj, bproj]);
      continue;
    }
    // The last block, at EOT only: its linears are Gemms with their biases.
    const [wq, bq] = take('Gemm', [W, W], [W]);
    const [wo, bo] = take('Gemm', [W, W], [W]);
    const [ln2w] = take('Mul', [W]);
    const [ln2b] = take('Add', [W]);
    hidden ||= seq[at]?.tensors[1]?.dims[0] ?? 0; // c_fc's bias (a tower of one block has no other)
    const [wfc, bfc] = take('Gemm', [W, hidden], [hidden]);
    const [wproj, bproj] = take('Gemm', [hidden, W], [W]);
    layers.push([ln1w, ln1b, wq, bq, wk, bk, wv, bv, wo, bo, ln2w, ln2b, wfc, bfc, wproj, bproj]);
    break;
  }
  const [lnfw] = take('Mul', [W]);
  const [lnfb] = take('Add', [W]);
  const embedDim = seq[at]?.tensors[0]?.dims[1] ?? 0;
  const [projection] = take('MatMul', [W, embedDim]);
  if (at !== seq.length) throw new Error(`${seq.length - at} weighted node(s) after the text projection`);
  const count = (op: string) => graph.nodes.filter((n) => n.opType === op).length;
  const quickGelu = count('Erf') === 0 && count('Sigmoid') === layers.length;
  if (!quickGelu && count('Erf') !== layers.length) throw new Error(`neither one Erf (GELU) nor one Sigmoid (QuickGELU) per block`);
  if (W % heads !== 0) throw new Error(`width ${W} is not a multiple of ${heads} heads`);
  const parts = [tokenEmbedding, positional, promptNo, ...layers.flat(), lnfw, lnfb, projection];
  const weights = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) weights.set(p, (offset += p.length) - p.length);
  return { config: Int32Array.from([layers.length, W, heads, hidden, vocab, context, prompts, embedDim, quickGelu ? 1 : 0]), weights };
}

function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return out;
}

/** The text_no_kv graph's contract (FORMAT.md), run by the native text tower. */
export class NativeKvTower implements KvRunner {
  readonly provider = 'cpu';

  private constructor(
    readonly file: string,
    private readonly kernels: NativeKernels,
    private readonly tower: unknown,
    private readonly shape: KvShape,
  ) {}

  /** The tower of a text_no_kv graph file; throws why where the module or the graph does not serve. */
  static load(file: string, shape: KvShape): NativeKvTower {
    if (!nativeKernels()) throw new Error(NO_MODULE);
    return NativeKvTower.fromWeights(file, shape, kvTowerWeights(readOnnxGraph(fs.readFileSync(file)), shape.heads));
  }

  /** A tower of given weights (load's, or a test's altered copy); `file` names it in messages. */
  static fromWeights(file: string, shape: KvShape, { config, weights }: KvTowerWeights): NativeKvTower {
    const kernels = nativeKernels();
    if (!kernels) throw new Error(NO_MODULE);
    const [layers, width, heads, , , , prompts, embedDim] = config;
    if (layers !== shape.layers || heads !== shape.heads || width / heads !== shape.headWidth || prompts !== shape.prompts || embedDim !== shape.embedDim) {
      throw new Error(`the graph's tower (${layers} layers, width ${width}, ${prompts} prompts, embed dim ${embedDim}) is not the manifest's`);
    }
    return new NativeKvTower(file, kernels, kernels.kvTowerCreate(config, weights), shape);
  }

  async runOutputs(feeds: Record<string, TensorData>, outputs: readonly string[]): Promise<Record<string, FloatTensor>> {
    const { layers, heads, headWidth, embedDim } = this.shape;
    const ids = feeds.input_ids;
    const keys = feeds.past_keys;
    const [batch, length] = ids.dims;
    const [pasts, pastLength] = [keys.dims[1], keys.dims[3]];
    const wanted = (name: string) => outputs.includes(name);
    const unknown = outputs.find((name) => !['embeds', 'present_keys', 'present_values'].includes(name));
    if (unknown !== undefined) throw new Error(`text_no_kv tower (${this.file}): no output named "${unknown}"`);
    const embeds = wanted('embeds') ? new Float32Array(batch * embedDim) : null;
    const presentSize = layers * batch * heads * length * headWidth;
    const presents = wanted('present_keys') || wanted('present_values') ? [new Float32Array(presentSize), new Float32Array(presentSize)] : [null, null];
    this.kernels.kvTowerRun(
      this.tower, ids.data as BigInt64Array, batch, length, feeds.prompt_weights.data as Float32Array, keys.data as Float32Array,
      feeds.past_values.data as Float32Array, pasts, pastLength, feeds.past_index.data as BigInt64Array, embeds, presents[0], presents[1],
    );
    const out: Record<string, FloatTensor> = {};
    if (embeds) out.embeds = { data: embeds, dims: [batch, embedDim] };
    const presentDims = [layers, batch, heads, length, headWidth];
    if (presents[0] && wanted('present_keys')) out.present_keys = { data: presents[0], dims: presentDims };
    if (presents[1] && wanted('present_values')) out.present_values = { data: presents[1], dims: presentDims };
    return out;
  }
}

/**
 * The largest difference between a tower and onnxruntime's session of the same graph on a
 * probe: two beginnings of 3 tokens under random mixes, then 7 rows of 4 tokens continuing them,
 * EOT at each row's end but two (mid-row, and the first token), and the presents of both runs.
 */
export async function probeDifference(tower: KvRunner, session: KvRunner, shape: KvShape, vocab: number): Promise<number> {
  let seed = 12345;
  const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const { layers, heads, headWidth, prompts } = shape;
  const ids = (rows: number, length: number, eotAt: (r: number) => number) => {
    const data = new BigInt64Array(rows * length);
    for (let r = 0; r < rows; r++) for (let s = 0; s < length; s++) data[r * length + s] = BigInt(s === eotAt(r) ? vocab - 1 : 1 + Math.floor(random() * (vocab - 2)));
    return { type: 'int64' as const, data, dims: [rows, length] };
  };
  const mix = (rows: number) => ({ type: 'float32' as const, data: Float32Array.from({ length: rows * prompts }, () => random() / prompts * 2), dims: [rows, prompts] });
  const empty = { type: 'float32' as const, data: new Float32Array(0), dims: [layers, 1, heads, 0, headWidth] };
  const beginning = { input_ids: ids(2, 3, () => -1), prompt_weights: mix(2), past_keys: empty, past_values: empty, past_index: { type: 'int64' as const, data: new BigInt64Array(2), dims: [2] } };
  const present = ['present_keys', 'present_values'];
  const [a, b] = await Promise.all([tower.runOutputs(beginning, present), session.runOutputs(beginning, present)]);
  const pastIndex = BigInt64Array.from([0, 1, 1, 0, 1, 0, 1], BigInt);
  const rest = {
    input_ids: ids(7, 4, (r) => (r === 2 ? 1 : r === 5 ? 0 : 3)), prompt_weights: mix(7),
    past_keys: { type: 'float32' as const, data: b.present_keys.data, dims: b.present_keys.dims },
    past_values: { type: 'float32' as const, data: b.present_values.data, dims: b.present_values.dims },
    past_index: { type: 'int64' as const, data: pastIndex, dims: [7] },
  };
  const [c, d] = await Promise.all([tower.runOutputs(rest, ['embeds', ...present]), session.runOutputs(rest, ['embeds', ...present])]);
  let worst = 0;
  const compare = (x: FloatTensor, y: FloatTensor, scale: number) => {
    if (x.data.length !== y.data.length) worst = Infinity;
    for (let i = 0; i < x.data.length; i++) worst = Math.max(worst, Math.abs(x.data[i] - y.data[i]) / scale || 0, Number.isNaN(x.data[i]) ? Infinity : 0);
  };
  const magnitude = (t: FloatTensor) => t.data.reduce((m, v) => Math.max(m, Math.abs(v)), 1);
  for (const name of present) compare(a[name], b[name], magnitude(b[name]));
  for (const name of present) compare(c[name], d[name], magnitude(d[name]));
  compare(c.embeds, d.embeds, 1);
  return worst;
}

/** What runs a model's text_no_kv graph: the native tower or onnxruntime's session, and why not the tower. */
export interface KvRunnerChoice {
  runner: KvRunner & { provider: string };
  native: boolean;
  why?: string;
}

/**
 * The runner for a model's text_no_kv session: the native tower where it loads and agrees with
 * the session on the probe within PROBE_TOLERANCE, else the session itself, with the reason.
 */
export async function nativeKvRunner(session: GraphSession, shape: KvShape, vocab: number): Promise<KvRunnerChoice> {
  if (session.provider !== 'cpu') return { runner: session, native: false, why: `the graph runs on ${session.provider}` };
  let tower: NativeKvTower;
  try {
    tower = NativeKvTower.load(session.file, shape);
  } catch (err) {
    return { runner: session, native: false, why: err instanceof Error ? err.message : String(err) };
  }
  let difference: number;
  try {
    difference = await probeDifference(tower, session, shape, vocab);
  } catch (err) {
    return { runner: session, native: false, why: `the probe failed: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (!(difference <= PROBE_TOLERANCE)) return { runner: session, native: false, why: `differs from onnxruntime by ${difference} on the probe` };
  return { runner: tower, native: true };
}
