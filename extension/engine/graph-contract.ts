// What a model folder's manifest says each graph takes and gives (models/FORMAT.md): input
// names, the shape of each input, and the checks that hold a graph and a call to it. A graph
// that does not fit its manifest fails by name when its session opens (a mixed-up export), and a
// call with wrong dims fails before onnxruntime sees it.
import * as path from 'node:path';
import type { GraphSession } from './backend';
import type { ClipnManifest, GraphName, ModelFolder } from './manifest';
import { KV_INPUTS } from './shared-prefix';

export interface GraphIO {
  inputs: string[];
  output?: string;
}

/** An expected input dim: a size, any batch, or a token axis of 1..upTo (variable-length text graphs). */
export type ExpectedDim = number | 'B' | { upTo: number };

export function fmtDims(dims: ReadonlyArray<ExpectedDim | string>): string {
  return `[${dims.map((d) => (typeof d === 'object' ? `1..${d.upTo}` : d)).join(', ')}]`;
}

/** Whether a graph input dim (a size, or a name for a free axis) can hold what `want` expects. */
function graphDimFits(got: number | string, want: ExpectedDim): boolean {
  if (want === 'B') return true;
  if (typeof want === 'object') return typeof got !== 'number'; // a fixed size cannot take every length
  return typeof got !== 'number' || got === want;
}

export function graphIO(manifest: ClipnManifest, graph: GraphName): GraphIO {
  if (graph === 'text_no_kv') return { inputs: [...KV_INPUTS] }; // fixed names (FORMAT.md)
  const io = manifest.io;
  const key = graph === 'image_fp16' || graph === 'image_int8' ? 'image' : graph;
  // Defaults are FORMAT.md's names for folders written before the manifest carried `io`.
  const defaults: Record<string, string[]> = { image: ['pixel_values'], text: ['input_ids'], text_no: ['input_ids', 'prompt_weights'] };
  return { inputs: io ? io[key] : defaults[key], output: io?.output };
}

/** The shape each input must have per the manifest ('B' = any batch). */
export function expectedShapes(manifest: ClipnManifest, graph: GraphName): ExpectedDim[][] {
  const context = manifest.context_length;
  const c: ExpectedDim = manifest.text_sequence === 'variable' ? { upTo: context } : context;
  const size = manifest.preprocess.size;
  switch (graph) {
    case 'image':
    case 'image_fp16':
    case 'image_int8':
      return [['B', 3, size, size]];
    case 'text':
      return [['B', c]];
    case 'text_no':
      return [['B', c], ['B', manifest.num_prompts]];
    case 'text_no_kv': {
      const { layers, heads, width } = manifest.architecture.text;
      const past: ExpectedDim[] = [layers, 'B', heads, 'B', width / heads];
      return [['B', { upTo: context }], ['B', manifest.num_prompts], past, past, ['B']];
    }
  }
}

/** Throws, naming the graph, file and input, where the session's inputs do not fit the manifest. */
export function checkGraphInputs(folder: ModelFolder, graph: GraphName, session: GraphSession): void {
  const { inputs } = graphIO(folder.manifest, graph);
  const shapes = expectedShapes(folder.manifest, graph);
  const meta = session.inputs();
  inputs.forEach((name, i) => {
    const info = meta.find((m) => m.name === name);
    if (!info) {
      throw new Error(`${graph} graph ${session.file}: has no input "${name}" (inputs: ${session.inputNames.join(', ')}); re-export the model`);
    }
    const want = shapes[i];
    const fixedMismatch = info.shape.length !== want.length || want.some((d, j) => !graphDimFits(info.shape[j], d));
    if (fixedMismatch) {
      throw new Error(
        `${graph} graph ${session.file}: input "${name}" has shape ${fmtDims(info.shape)} but ${path.basename(folder.manifestPath)} ` +
          `implies ${fmtDims(want)}; the graph and manifest come from different exports: re-export the model`,
      );
    }
  });
}

/** Throws where a call's dims (and value count) do not fit what the manifest expects of `input`. */
export function checkFeedDims(folder: ModelFolder, graph: GraphName, input: string, got: readonly number[], want: ExpectedDim[], length: number): void {
  const fits = (d: ExpectedDim, n: number) => (d === 'B' ? n >= 1 : typeof d === 'object' ? Number.isInteger(n) && n >= 1 && n <= d.upTo : n === d);
  const ok = got.length === want.length && want.every((d, j) => fits(d, got[j])) && got.reduce((a, b) => a * b, 1) === length;
  if (!ok) {
    throw new Error(
      `${graph} graph: ${input} dims ${fmtDims(got)} (${length} values) do not match the expected ${fmtDims(want)} ` +
        `from ${folder.manifestPath}`,
    );
  }
}
