// The only module that touches onnxruntime-node (as transformers.js keeps every ORT contact
// behind one backend): execution-provider selection with fall-through, session options, lazy
// per-graph sessions, tensor conversion and disposal. Callers exchange plain typed arrays.
//
// Facts about onnxruntime-node 1.29 on linux-x64 that shaped this (checked here):
//   - listSupportedBackends() = cpu, webgpu (bundled), cuda, tensorrt (not bundled: their
//     provider libraries are fetched by the package's postinstall on an online machine).
//   - A missing CUDA provider throws at session creation ("OrtSessionOptionsAppendExecution
//     Provider_Cuda: Failed to load shared library"), also with ['cuda', 'cpu']: ORT does not
//     fall through by itself, so each provider is tried on its own, in order.
//   - WebGPU without a usable Vulkan adapter throws "Failed to get a WebGPU adapter" (~0.7 s).
//   - Names outside that list (dml, coreml on linux) fail with "[dml] backend not found".
//   - session.run() executes synchronously on the JS thread (inside setImmediate), so work that
//     must overlap with inference has to live on other threads (sharp's libuv pool does).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { CUDA_PROVIDER_FILES, onnxruntimeNode } from './cuda-provider';

export const DEFAULT_EXECUTION_PROVIDERS: readonly string[] = ['cuda', 'webgpu', 'cpu'];

export interface BackendOptions {
  /** Tried in order; the first that creates a session wins. Default ['cuda', 'webgpu', 'cpu']. */
  executionProviders?: readonly string[];
  /** Default os.availableParallelism(): measured best on 2-core machines (shared notes). */
  intraOpNumThreads?: number;
  /** Default 1: the graphs are one chain of ops, parallel branches buy nothing. */
  interOpNumThreads?: number;
  /** Session log severity (0 verbose .. 4 fatal). Default 3 so CPU-fallback warnings stay quiet. */
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
  /**
   * ORT's process-wide log level, applied before the first session of the process (ORT reads
   * it once). Default 'fatal': a failed provider probe otherwise prints a red error to stderr
   * on every start although the fall-through handles it; the reason is in providerReport.
   */
  processLogLevel?: 'verbose' | 'info' | 'warning' | 'error' | 'fatal';
}

/** ORT initialises its logger once per process, with the first session. */
let ortInitialised = false;

export interface SkippedProvider {
  name: string;
  reason: string;
}

export interface ProviderReport {
  used: string;
  skipped: SkippedProvider[];
}

export type TensorType = 'float32' | 'int64';

/** A tensor as the engine holds it: row-major data + dims. */
export interface TensorData {
  type: TensorType;
  data: Float32Array | BigInt64Array;
  dims: readonly number[];
}

export interface FloatTensor {
  data: Float32Array;
  dims: number[];
}

export interface InputInfo {
  name: string;
  type: string;
  /** Fixed sizes as numbers; symbolic axes (the batch) as their name. */
  shape: Array<number | string>;
}

/** One graph's session on the provider that accepted it. */
export class GraphSession {
  private disposed = false;

  constructor(
    readonly graph: string,
    readonly file: string,
    private readonly session: ort.InferenceSession,
    readonly providerReport: ProviderReport,
  ) {}

  get provider(): string {
    return this.providerReport.used;
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /** Declared input shapes, used to check caller dims before ORT sees them. */
  inputs(): InputInfo[] {
    return this.session.inputMetadata.map((m) =>
      m.isTensor
        ? { name: m.name, type: m.type, shape: m.shape.map((d) => (typeof d === 'number' ? d : String(d))) }
        : { name: m.name, type: 'non-tensor', shape: [] },
    );
  }

  /** Runs the graph and returns one float32 output (by name; default the first). */
  async run(feeds: Record<string, TensorData>, output?: string): Promise<FloatTensor> {
    const outName = output ?? this.session.outputNames[0];
    return (await this.runOutputs(feeds, [outName]))[outName];
  }

  /** Runs the graph once and returns the named float32 outputs. */
  async runOutputs(feeds: Record<string, TensorData>, outputs: readonly string[]): Promise<Record<string, FloatTensor>> {
    if (this.disposed) throw new Error(`${this.graph} graph (${this.file}): session was released`);
    const unknown = outputs.find((name) => !this.session.outputNames.includes(name));
    if (unknown !== undefined) throw new Error(`${this.graph} graph (${this.file}): no output named "${unknown}" (has ${this.session.outputNames.join(', ')})`);
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(t.type, t.data, t.dims);
    // Only the named outputs: the others are neither copied into JS nor kept alive.
    const results = await this.session.run(ortFeeds, [...outputs]);
    const out: Record<string, FloatTensor> = {};
    for (const name of outputs) {
      const t = results[name];
      if (t.type !== 'float32') throw new Error(`${this.graph} graph (${this.file}): output "${name}" is ${t.type}, expected float32`);
      out[name] = { data: t.data as Float32Array, dims: [...t.dims] };
    }
    return out;
  }

  async release(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.session.release();
  }
}

/** Where onnxruntime-node looks for provider libraries (for actionable CUDA messages). */
function bindingDir(): string | undefined {
  try {
    return onnxruntimeNode(process.platform, process.arch).binaryDir;
  } catch {
    return undefined;
  }
}

const PROVIDER_LIBS: Record<string, readonly string[]> = {
  cuda: CUDA_PROVIDER_FILES,
  tensorrt: ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_tensorrt.so'],
};

/** ORT's message plus what to do about it, where we can tell. */
function explainFailure(name: string, err: unknown): string {
  let msg = String((err as Error)?.message ?? err).split('\n').map((l) => l.trim()).filter(Boolean)[0] ?? 'unknown error';
  // ORT prefixes C++ source locations and failed-condition text; keep the human part.
  const adapter = msg.indexOf('Failed to get a WebGPU adapter');
  if (adapter >= 0) msg = msg.slice(adapter);
  else msg = msg.replace(/^\/onnxruntime_src\/\S+:\d+\s+/, '');
  const dir = bindingDir();
  const libs = PROVIDER_LIBS[name];
  if (libs && dir && process.platform === 'linux') {
    const missing = libs.filter((l) => !fs.existsSync(path.join(dir, l)));
    if (missing.length > 0) {
      const route = name === 'cuda' ? '; `clipn.js cuda-provider` (the CLI) installs them from the npm registry' : '';
      return `${msg} (${missing.join(', ')} not in ${dir}: onnxruntime-node's install step fetches them on an online machine${route})`;
    }
    return `${msg} (provider libraries present; check the CUDA libraries are on LD_LIBRARY_PATH: \`clipn.js cuda-provider --check\` lists the missing ones)`;
  }
  if (name === 'webgpu' && /adapter/i.test(msg)) return `${msg} (needs a GPU Vulkan driver)`;
  return msg;
}

/** Provider names this onnxruntime-node build knows (others fail before any session). */
export function availableProviders(): string[] {
  return ort.listSupportedBackends().map((b) => b.name);
}

/**
 * Owns the sessions of one model. Sessions are created on first use of each graph; a provider
 * that fails to initialise is remembered with its reason and not retried for later graphs
 * (a missing shared library or GPU adapter does not appear mid-process, and WebGPU probing
 * alone costs ~0.7 s).
 */
export class OrtBackend {
  readonly executionProviders: readonly string[];
  private readonly sessionOptions: ort.InferenceSession.SessionOptions;
  private readonly sessions = new Map<string, Promise<GraphSession>>();
  private readonly failed = new Map<string, string>();
  private disposed = false;

  constructor(opts: BackendOptions = {}) {
    const eps = (opts.executionProviders ?? DEFAULT_EXECUTION_PROVIDERS).map((e) => e.trim().toLowerCase());
    if (eps.length === 0) throw new Error('execution providers: the list is empty; use e.g. ["cuda", "webgpu", "cpu"]');
    this.executionProviders = eps;
    const intra = opts.intraOpNumThreads ?? os.availableParallelism();
    if (!Number.isInteger(intra) || intra < 1) throw new Error(`intraOpNumThreads must be a positive integer, got ${intra}`);
    if (!ortInitialised) ort.env.logLevel = opts.processLogLevel ?? 'fatal';
    this.sessionOptions = {
      graphOptimizationLevel: 'all',
      intraOpNumThreads: intra,
      interOpNumThreads: opts.interOpNumThreads ?? 1,
      executionMode: 'sequential',
      logSeverityLevel: opts.logSeverityLevel ?? 3,
    };
  }

  /** The session for `graph` (a label such as 'image'), created on first call. */
  session(graph: string, file: string): Promise<GraphSession> {
    if (this.disposed) return Promise.reject(new Error('backend was disposed'));
    const key = `${graph}\u0000${file}`;
    let pending = this.sessions.get(key);
    if (!pending) {
      pending = this.create(graph, file);
      // A failed creation must not stick: the next call retries (e.g. after the file is fixed).
      pending.catch(() => this.sessions.delete(key));
      this.sessions.set(key, pending);
    }
    return pending;
  }

  /**
   * A session for an in-memory ONNX model (e.g. a graph built at run time), with the same
   * provider order and fall-through. Not cached (each call creates one); dispose() releases it.
   */
  sessionFromBuffer(graph: string, model: Uint8Array): Promise<GraphSession> {
    if (this.disposed) return Promise.reject(new Error('backend was disposed'));
    const pending = this.create(graph, model);
    const key = `${graph}\u0000<buffer ${++this.buffers}>`;
    pending.catch(() => this.sessions.delete(key));
    this.sessions.set(key, pending);
    return pending;
  }

  private buffers = 0;

  private async create(graph: string, source: string | Uint8Array): Promise<GraphSession> {
    const file = typeof source === 'string' ? source : `<in-memory model, ${source.length} bytes>`;
    if (typeof source === 'string' && !fs.existsSync(file)) throw new Error(`${graph} graph: ${file} not found`);
    const known = new Set(availableProviders());
    const skipped: SkippedProvider[] = [];
    for (const name of this.executionProviders) {
      const earlier = this.failed.get(name);
      if (earlier !== undefined) {
        skipped.push({ name, reason: earlier });
        continue;
      }
      if (!known.has(name)) {
        const reason = `not available in onnxruntime-node on ${process.platform}-${process.arch} (known: ${[...known].join(', ')})`;
        this.failed.set(name, reason);
        skipped.push({ name, reason });
        continue;
      }
      try {
        ortInitialised = true;
        const options = { ...this.sessionOptions, executionProviders: [name] };
        const session = typeof source === 'string'
          ? await ort.InferenceSession.create(source, options)
          : await ort.InferenceSession.create(source, options);
        if (this.disposed) {
          await session.release();
          throw new Error('backend was disposed');
        }
        return new GraphSession(graph, file, session, { used: name, skipped });
      } catch (err) {
        const reason = explainFailure(name, err);
        // CPU failing means the graph itself is bad: report that, do not blame the provider.
        if (name === 'cpu') {
          throw new Error(`${graph} graph ${file}: onnxruntime cannot load it on cpu: ${reason}`);
        }
        this.failed.set(name, reason);
        skipped.push({ name, reason });
      }
    }
    const tried = skipped.map((s) => `${s.name}: ${s.reason}`).join('; ');
    throw new Error(`${graph} graph ${file}: no execution provider could run it (${tried}); add "cpu" to the provider list`);
  }

  /** Releases every session; the backend cannot be used afterwards. */
  async dispose(): Promise<void> {
    this.disposed = true;
    const pending = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(pending.map(async (p) => {
      try {
        await (await p).release();
      } catch {
        // creation failed: nothing to release
      }
    }));
  }
}
