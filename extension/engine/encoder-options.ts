// The encoders' public types and options (ClipnModel in encoder.ts takes and returns them), and
// which image graph and batch a precision and provider get.
import type { BackendOptions, ProviderReport } from './backend';
import type { ImageFailure, EncodeProgress } from './encoder-pipeline';
import type { ClipnManifest, GraphName, LoadManifestOptions } from './manifest';
import type { PreprocessWorkersSetting } from './preprocess-worker-count';

/** An image to encode: a path, raw bytes, or bytes with a display name (used in failures). */
export type ImageSource = string | Buffer | { name: string; data: Buffer };

export interface Embeddings {
  /** Row-major [dims[0], dims[1]], L2-normalised rows. */
  data: Float32Array;
  dims: [number, number];
  /** Execution provider that ran the graph, and the ones skipped before it. */
  provider: string;
  providerReport: ProviderReport;
  /** Text rows taken from the model's memo of rows it encoded before (no graph run). */
  fromMemo?: number;
}

export interface ImageEmbeddings extends Embeddings {
  /** Input index of each row (failed images have no row). */
  indices: number[];
  /** Path/name of each row. */
  files: string[];
  /** Images that could not be read or decoded, with the reason. */
  failures: ImageFailure[];
}

/** Image encoder precisions: fp32 `image`, or a model's optional `image_fp16` / `image_int8` graph. */
export const IMAGE_PRECISIONS = ['fp32', 'fp16', 'int8'] as const;
export type ImagePrecision = (typeof IMAGE_PRECISIONS)[number];

/**
 * Images per image-graph run when the caller names none, by the provider that runs it. CPU: 32
 * (one to 32 measured alike on 2 cores, bench/README). WebGPU: 64 (an H200 ran ViT-B/16 fp16 at
 * 445 / 495 / 494 / 202 images/s at 32 / 64 / 128 / 256). CUDA: 64, PyTorch's plateau on the
 * same GPU (7,818 / 7,933 / 8,106 at 64 / 128 / 256) until the provider is measured there.
 */
export function imageBatchFor(provider: string): number {
  return provider === 'webgpu' || provider === 'cuda' ? 64 : 32;
}

/**
 * The manifest graph of a precision: fp16 has fp16 weights with f32 IO; int8 is dynamically
 * quantised (int8 weights, activations quantised per call; f32 IO).
 */
export function imageGraphFor(precision: ImagePrecision): GraphName {
  return precision === 'fp32' ? 'image' : `image_${precision}`;
}

/** `requested` when the model has its image graph, else fp32 (the graph every model has). */
export function availablePrecision(manifest: Pick<ClipnManifest, 'graphs'>, requested: ImagePrecision): ImagePrecision {
  return manifest.graphs[imageGraphFor(requested)] ? requested : 'fp32';
}

export interface EncodeImagesOptions {
  /** Images per graph run (default: imageBatchFor the provider that runs the graph). */
  batchSize?: number;
  /** Images decoded concurrently inside a batch when preprocessing in-process (default 2). */
  concurrency?: number;
  /**
   * Worker threads that decode and preprocess while this thread runs the graph; overrides the
   * model's setting (ClipnModelOptions.preprocessWorkers) for this call. 0: in-process.
   */
  preprocessWorkers?: PreprocessWorkersSetting;
  /** Which image graph runs (imageGraphFor); default fp32. */
  precision?: ImagePrecision;
  onProgress?: (p: EncodeProgress) => void;
  signal?: AbortSignal;
}

export interface EncodeTextsOptions {
  /** Prompts per graph run (default 64). */
  batchSize?: number;
  onProgress?: (p: EncodeProgress) => void;
  signal?: AbortSignal;
}

export interface ClipnModelOptions extends LoadManifestOptions {
  backend?: BackendOptions;
  /**
   * encodeImages preprocessing threads (default 'auto'): 'auto' = cores - 1 (at most 16) on
   * machines with more than 2 cores, and in-process on 2 cores or fewer (measured faster there);
   * 'auto' also stays in-process for calls of fewer than 8 images while no worker is running,
   * and when the worker file is missing. A number forces that many (0: in-process).
   */
  preprocessWorkers?: PreprocessWorkersSetting;
  /**
   * The pool's worker script. Default: preprocess-worker.js beside preprocess-pool.js, which
   * is right for tsc's out/; an esbuild bundle must emit extension/engine/preprocess-worker.ts
   * as its own entry and put it beside the bundle under that name or give its path here.
   */
  preprocessWorkerFile?: string;
  /** Bytes of text features remembered between calls (default 128 MB; 0: none). */
  textMemoBytes?: number;
  /**
   * Worker threads for shared-beginnings text encoding on the CPU (default 'auto': min(cores, 4)
   * on two cores or more, where cores is backend.intraOpNumThreads if given; 0: the calling
   * thread). text-kv-pool.ts says why.
   */
  textWorkers?: number | 'auto';
  /** Their script (default: text-kv-worker.js beside text-kv-pool.js, as for preprocessWorkerFile). */
  textWorkerFile?: string;
  /**
   * Bytes 'auto' text workers may hold (each a session of the no tower, ~1.5x its graph file):
   * default a quarter of the memory free when they start. Fewer than two that fit: none.
   */
  textWorkerMemory?: number;
  /**
   * Run the text_no_kv graph on the CPU by the native text tower (native-kv-tower.ts) where it is
   * built and agrees with onnxruntime on a probe (default true; false: onnxruntime, for comparisons).
   */
  nativeText?: boolean;
}
