// ClipnModel: a model folder (manifest) + its tokenizer + lazily created ORT sessions, exposing
// the three CLIPN encoders on plain inputs (image files/buffers, prompt strings). All outputs
// are float32 row-major with their dims and the execution provider that computed them, so a
// notebook can show where the numbers came from. ORT itself stays behind backend.ts.
import * as os from 'node:os';
import { OrtBackend } from './backend';
import type { BackendOptions, GraphSession, ProviderReport, TensorData } from './backend';
import { imageBatchFor, imageGraphFor } from './encoder-options';
import type { ClipnModelOptions, EncodeImagesOptions, EncodeTextsOptions, Embeddings, ImageEmbeddings, ImagePrecision, ImageSource } from './encoder-options';
import { runImagePipeline } from './encoder-pipeline';
import { checkFeedDims, checkGraphInputs, expectedShapes, fmtDims, graphIO } from './graph-contract';
import type { ImageItem } from './encoder-pipeline';
import { loadManifest } from './manifest';
import type { ClipnManifest, GraphName, ModelFolder } from './manifest';
import type { ImageInput } from './preprocess';
import { PreprocessPool } from './preprocess-pool';
import type { PreprocessPoolStats } from './preprocess-pool';
import { resolvePreprocessWorkers } from './preprocess-worker-count';
import type { PreprocessWorkersSetting } from './preprocess-worker-count';
import { gatherIds, planTextBatches, tokenLengths } from './text-lengths';
import { classPrompts } from './prompts';
import { promptWeights, weightMatrix } from './prompt-weights';
import type { PromptMix, PromptWeightsInput } from './prompt-weights';
import { filledTokens } from './filled-tokens';
import { nativeKvRunner } from './native-kv-tower';
import type { KvRunnerChoice } from './native-kv-tower';
import { classTemplateRows, distinctRows, spreadRows } from './shared-prefix';
import type { KvShape } from './shared-prefix';
import { KvTextWorkers } from './text-kv-pool';
import type { KvTextWorkerStats } from './text-kv-pool';
import { memoRows, sharedPrefixKey, textKey, TextFeatureMemo } from './text-memo';
import type { EncodeMissing } from './text-memo';
import { ClipTokenizer } from './tokenizer';

export type { EncodeProgress, ImageFailure } from './encoder-pipeline';
export { availablePrecision, IMAGE_PRECISIONS, imageBatchFor, imageGraphFor } from './encoder-options';
export type { ClipnModelOptions, EncodeImagesOptions, EncodeTextsOptions, Embeddings, ImageEmbeddings, ImagePrecision, ImageSource } from './encoder-options';
export { mixRow, promptWeights } from './prompt-weights';
export type { PromptMix, PromptWeightsInput } from './prompt-weights';

/** 'auto' preprocesses smaller calls in-process unless workers are already running. */
const AUTO_POOL_MIN_IMAGES = 8;

export class ClipnModel {
  /** Text rows already encoded (see text-memo.ts). */
  private readonly textMemo: TextFeatureMemo;
  private lastTextProvider?: { provider: string; providerReport: ProviderReport };
  readonly backend: OrtBackend;
  /** Graph label -> the checked session promise. */
  private readonly checked = new Map<GraphName, Promise<GraphSession>>();
  /** encodeImages' preprocessing workers, started on first use, stopped by dispose(). */
  private pool?: PreprocessPool;
  /** encodeClassPromptsNo's text workers (shared beginnings on the CPU), stopped by dispose(). */
  private readonly kvText: KvTextWorkers;
  /** What runs the text_no_kv graph, chosen once (native-kv-tower.ts nativeKvRunner). */
  private kvRunner?: Promise<KvRunnerChoice>;
  private disposed = false;

  private constructor(
    readonly modelFolder: ModelFolder,
    readonly tokenizer: ClipTokenizer,
    backendOptions: BackendOptions | undefined,
    private readonly poolOptions: Pick<ClipnModelOptions, 'preprocessWorkers' | 'preprocessWorkerFile' | 'textWorkers' | 'textWorkerFile' | 'textWorkerMemory' | 'nativeText'> = {},
    textMemoBytes?: number,
  ) {
    this.backend = new OrtBackend(backendOptions);
    // The backend's thread count is the CPU budget the caller gave (the kernel's clipn.threads).
    this.kvText = new KvTextWorkers(poolOptions.textWorkers, backendOptions?.intraOpNumThreads ?? os.availableParallelism(), poolOptions.textWorkerFile, poolOptions.textWorkerMemory);
    this.textMemo = new TextFeatureMemo(textMemoBytes);
    resolvePreprocessWorkers(poolOptions.preprocessWorkers); // a bad setting fails at load
  }

  /** Loads and verifies a model folder; sessions are created on first use of each graph. */
  static async load(folder: string, opts: ClipnModelOptions = {}): Promise<ClipnModel> {
    const model = await loadManifest(folder, opts);
    const m = model.manifest;
    const tokenizer = ClipTokenizer.fromFile(model.merges, m.context_length);
    if (tokenizer.vocabSize !== m.architecture.text.vocab_size) {
      throw new Error(
        `${model.merges}: the tokenizer has ${tokenizer.vocabSize} tokens but ${model.manifestPath} says ` +
          `architecture.text.vocab_size = ${m.architecture.text.vocab_size}; re-export the model with its own merges file`,
      );
    }
    const { preprocessWorkers, preprocessWorkerFile, textWorkers, textWorkerFile, textWorkerMemory, nativeText } = opts;
    return new ClipnModel(model, tokenizer, opts.backend, { preprocessWorkers, preprocessWorkerFile, textWorkers, textWorkerFile, textWorkerMemory, nativeText }, opts.textMemoBytes);
  }

  get manifest(): ClipnManifest {
    return this.modelFolder.manifest;
  }
  get embedDim(): number {
    return this.manifest.embed_dim;
  }
  get numPrompts(): number {
    return this.manifest.num_prompts;
  }
  get contextLength(): number {
    return this.manifest.context_length;
  }
  /** Whether the text graphs take input_ids of any length up to the context (then texts run at their own length). */
  get variableTextLength(): boolean {
    return this.manifest.text_sequence === 'variable';
  }
  get imageSize(): number {
    return this.manifest.preprocess.size;
  }

  /** Session for a graph, checked once against the manifest (a wrong graph fails by name). */
  session(graph: GraphName): Promise<GraphSession> {
    let p = this.checked.get(graph);
    if (!p) {
      p = this.openChecked(graph);
      p.catch(() => this.checked.delete(graph));
      this.checked.set(graph, p);
    }
    return p;
  }

  private async openChecked(graph: GraphName): Promise<GraphSession> {
    const file = this.modelFolder.graphs[graph];
    if (!file) {
      throw new Error(`${this.modelFolder.manifestPath}: this model has no "${graph}" graph (graphs lists ${Object.keys(this.manifest.graphs).join(', ')})`);
    }
    const session = await this.backend.session(graph, file);
    checkGraphInputs(this.modelFolder, graph, session);
    return session;
  }

  /** Which provider a graph runs on (creates its session). */
  async providerReport(graph: GraphName = 'image'): Promise<ProviderReport> {
    return (await this.session(graph)).providerReport;
  }

  private async runGraph(graph: GraphName, feeds: TensorData[]): Promise<Embeddings> {
    const session = await this.session(graph);
    const { inputs, output } = graphIO(this.manifest, graph);
    const shapes = expectedShapes(this.manifest, graph);
    const named: Record<string, TensorData> = {};
    feeds.forEach((t, i) => {
      checkFeedDims(this.modelFolder, graph, inputs[i], t.dims, shapes[i], t.data.length);
      named[inputs[i]] = t;
    });
    const batch = feeds[0].dims[0];
    if (feeds.some((t) => t.dims[0] !== batch)) {
      throw new Error(`${graph} graph: inputs disagree on the batch size (${feeds.map((t) => t.dims[0]).join(' vs ')})`);
    }
    const out = await session.run(named, output);
    if (out.dims.length !== 2 || out.dims[0] !== batch || out.dims[1] !== this.embedDim) {
      throw new Error(`${graph} graph ${session.file}: output dims ${fmtDims(out.dims)}, expected [${batch}, ${this.embedDim}] (embed_dim)`);
    }
    return { data: out.data, dims: [batch, this.embedDim], provider: session.provider, providerReport: session.providerReport };
  }

  // -------------------------------------------------------------------------------------------
  // Low-level: already-preprocessed tensors (parity checks, callers with their own pipeline).

  /** pixel_values [B, 3, S, S] -> [B, D]. */
  encodePixels(pixels: Float32Array, dims: readonly number[], precision: ImagePrecision = 'fp32'): Promise<Embeddings> {
    return this.runGraph(imageGraphFor(precision), [{ type: 'float32', data: pixels, dims }]);
  }

  /** input_ids [B, C] (or [B, L], L <= C, when variableTextLength) -> yes-tower features [B, D]. */
  encodeTokenIds(ids: BigInt64Array, dims: readonly number[]): Promise<Embeddings> {
    return this.runGraph('text', [{ type: 'int64', data: ids, dims }]);
  }

  /** input_ids [B, C] (or [B, L] as encodeTokenIds), prompt_weights [B, P] -> no-tower features [B, D]. */
  encodeTokenIdsNo(ids: BigInt64Array, dims: readonly number[], weights: Float32Array, weightDims: readonly number[]): Promise<Embeddings> {
    return this.runGraph('text_no', [
      { type: 'int64', data: ids, dims },
      { type: 'float32', data: weights, dims: weightDims },
    ]);
  }

  // -------------------------------------------------------------------------------------------

  /**
   * Encodes image files/buffers in batches. Unreadable images become `failures` (never an
   * exception for one bad file); an empty list is an error. Rows keep input order.
   */
  async encodeImages(sources: readonly ImageSource[], opts: EncodeImagesOptions = {}): Promise<ImageEmbeddings> {
    if (sources.length === 0) throw new Error('encodeImages: the image list is empty; give at least one image file or buffer');
    if (opts.batchSize !== undefined && (!Number.isInteger(opts.batchSize) || opts.batchSize < 1)) {
      throw new Error(`encodeImages: batchSize must be a positive integer, got ${opts.batchSize}`);
    }
    const graph = imageGraphFor(opts.precision ?? 'fp32');
    opts.signal?.throwIfAborted();
    // Open the session first: a broken graph/provider fails before any image is decoded.
    const session = await this.session(graph);
    const batchSize = opts.batchSize ?? imageBatchFor(session.provider);
    const items: ImageItem[] = sources.map((s, index) => {
      if (typeof s === 'string') return { input: s, name: s, index };
      if (Buffer.isBuffer(s)) return { input: s, name: `<buffer ${index}>`, index };
      return { input: s.data as ImageInput, name: s.name, index };
    });
    const size = this.imageSize;
    const result = await runImagePipeline(
      items,
      this.manifest.preprocess,
      this.embedDim,
      async (pixels, rows) => (await this.encodePixels(pixels, [rows, 3, size, size], opts.precision)).data,
      { batchSize, concurrency: opts.concurrency ?? 2, onProgress: opts.onProgress, signal: opts.signal, pool: this.preprocessPool(opts.preprocessWorkers, items.length) },
    );
    return {
      data: result.data,
      dims: [result.rows, this.embedDim],
      provider: session.provider,
      providerReport: session.providerReport,
      indices: result.indices,
      files: result.files,
      failures: result.failures,
    };
  }

  /** The worker pool for a call, or undefined to preprocess in-process. */
  private preprocessPool(setting: PreprocessWorkersSetting | undefined, images: number): PreprocessPool | undefined {
    const chosen = setting ?? this.poolOptions.preprocessWorkers ?? 'auto';
    const workers = resolvePreprocessWorkers(chosen);
    if (workers === 0 || this.disposed) return undefined;
    const auto = chosen === 'auto';
    if (auto && images < AUTO_POOL_MIN_IMAGES && !this.pool?.stats().threads) return undefined;
    if (this.pool) {
      this.pool.resize(workers);
      return this.pool;
    }
    try {
      this.pool = new PreprocessPool({ size: workers, workerFile: this.poolOptions.preprocessWorkerFile });
    } catch (err) {
      if (auto && !this.poolOptions.preprocessWorkerFile) return undefined; // no worker file beside us (e.g. run from sources)
      throw err;
    }
    return this.pool;
  }

  /** The shared-beginnings text workers' state. */
  textWorkerStats(): KvTextWorkerStats {
    return this.kvText.stats();
  }

  /** The preprocessing pool's state (undefined before encodeImages first used it). */
  preprocessPoolStats(): (PreprocessPoolStats & { size: number; broken?: string }) | undefined {
    const p = this.pool;
    return p && { ...p.stats(), size: p.size, broken: p.broken };
  }

  /**
   * Runs `encode` over the prompts the memo does not hold, in batches, with progress and
   * cancellation; `key(i)` names prompt i's row, `encode(ids, rows, length)` encodes those
   * prompt indices from ids [rows.length, length]. With variableTextLength each batch holds
   * texts of one token length and runs at it (text-lengths.ts); else every batch runs at C.
   */
  private batchedTexts(
    prompts: readonly string[],
    opts: EncodeTextsOptions,
    key: (i: number) => string,
    encode: (ids: BigInt64Array, rows: readonly number[], length: number) => Promise<Embeddings>,
  ): Promise<Embeddings> {
    return this.memoTexts(prompts, opts, key, async (missing, store) => {
      const c = this.contextLength;
      const ids = this.tokenizer.tokenize(missing.map((i) => prompts[i]));
      const lengths = this.variableTextLength ? tokenLengths(ids, c) : undefined;
      for (const batch of planTextBatches(missing.length, opts.batchSize ?? 64, c, lengths)) {
        opts.signal?.throwIfAborted();
        const rows = batch.rows.map((r) => missing[r]);
        const out = await encode(gatherIds(ids, c, batch.rows, batch.length), rows, batch.length);
        store(rows, out.data, out);
      }
    });
  }

  /** memoRows (text-memo.ts) with this model's memo and checks; remembers which provider ran. */
  private async memoTexts(
    prompts: readonly string[],
    opts: EncodeTextsOptions,
    key: (i: number) => string,
    encodeMissing: EncodeMissing,
  ): Promise<Embeddings> {
    if (prompts.length === 0) throw new Error('encode texts: the prompt list is empty');
    opts.signal?.throwIfAborted();
    const batchSize = opts.batchSize ?? 64;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`encode texts: batchSize must be a positive integer, got ${batchSize}`);
    const d = this.embedDim;
    const { data, last, fromMemo } = await memoRows(this.textMemo, prompts.map((_, i) => key(i)), d, encodeMissing, opts.onProgress);
    if (last) this.lastTextProvider = { provider: last.provider, providerReport: last.providerReport };
    const from = last ?? this.lastTextProvider;
    return { data, dims: [prompts.length, d], provider: from ? from.provider : 'memo', providerReport: from?.providerReport ?? { used: 'memo', skipped: [] }, fromMemo };
  }

  /** Yes-tower features of prompts (already filled-in texts) -> [N, D]. */
  encodeTexts(prompts: readonly string[], opts: EncodeTextsOptions = {}): Promise<Embeddings> {
    return this.batchedTexts(prompts, opts, (i) => textKey('yes', prompts[i]), (ids, rows, length) => this.encodeTokenIds(ids, [rows.length, length]));
  }

  /**
   * No-tower features -> [N, D]. `weights` mixes the learned prompts per row: one PromptMix for
   * all rows (default: the mean, as the paper evaluates), one per row, or a [N, P] matrix.
   */
  encodeTextsNo(prompts: readonly string[], weights: PromptWeightsInput = promptWeights.mean(), opts: EncodeTextsOptions = {}): Promise<Embeddings> {
    const p = this.numPrompts;
    const matrix = this.weightMatrix(weights, prompts.length);
    const row = (i: number) => matrix.subarray(i * p, (i + 1) * p);
    return this.batchedTexts(prompts, opts, (i) => textKey('no', prompts[i], row(i)), (ids, rows, length) => {
      const w = new Float32Array(rows.length * p);
      rows.forEach((i, r) => w.set(row(i), r * p));
      return this.encodeTokenIdsNo(ids, [rows.length, length], w, [rows.length, p]);
    });
  }

  /** Whether no-tower template prompts share their beginnings (the model has text_no_kv). */
  get sharesPromptBeginnings(): boolean {
    return this.modelFolder.graphs.text_no_kv !== undefined && this.variableTextLength;
  }

  /**
   * No-tower features of every template filled with every class, for each prompt mix: rows
   * [mixes][classes][templates] (classPrompts' order per mix). With a text_no_kv graph each
   * template's words before `{}` run once per mix (shared-prefix.ts); the features equal
   * encodeTextsNo's to float rounding (~1e-7) and are remembered apart from them. Only where the
   * kv graph runs on the CPU provider: its empty pasts (zero-sized tensors) are untested on the
   * GPU providers, where whole texts are cheap anyway.
   */
  async encodeClassPromptsNo(classes: readonly string[], templates: readonly string[], mixes: readonly PromptMix[], opts: EncodeTextsOptions = {}): Promise<Embeddings> {
    // Every mix sees the same class x template texts: row i is text i % perMix of mix i / perMix.
    const filled = classPrompts(classes, templates);
    const perMix = filled.length;
    const texts = mixes.flatMap(() => filled);
    const kv = this.sharesPromptBeginnings ? await this.session('text_no_kv') : undefined;
    if (kv?.provider !== 'cpu') return this.encodeTextsNo(texts, texts.map((_, i) => mixes[Math.floor(i / perMix)]), opts);
    const weights = mixes.map((mix) => this.weightMatrix(mix, 1));
    const beginnings = templates.map((t) => t.slice(0, Math.max(0, t.indexOf('{}'))));
    // A text's split follows from its text and its template's beginning, so the key names both
    // (no tokenising for rows the memo holds).
    const mixKeys = weights.map((w) => textKey('no', '', w));
    const key = (i: number) => sharedPrefixKey(texts[i], mixKeys[Math.floor(i / perMix)], beginnings[i % templates.length]);
    return this.memoTexts(texts, opts, key, async (missing, store) => {
      const tokens = filledTokens(this.tokenizer, classes, templates);
      const textIds = (text: number) => tokens.ids(Math.floor(text / templates.length), text % templates.length);
      const { rows, of } = distinctRows(classTemplateRows(this.tokenizer, filled, beginnings, weights, missing, textIds));
      const { layers, heads, width } = this.manifest.architecture.text;
      const shape = { layers, heads, headWidth: width / heads, prompts: this.numPrompts, embedDim: this.embedDim };
      const { runner } = await this.textNoKvRunner(kv, shape);
      await this.kvText.encode(runner, shape, rows, opts.batchSize ?? 64, (batch, embeds) => {
        const spread = spreadRows(batch, embeds, this.embedDim, of);
        store(spread.rows.map((r) => missing[r]), spread.data, kv);
      }, opts.signal);
    });
  }

  private textNoKvRunner(kv: GraphSession, shape: KvShape): Promise<KvRunnerChoice> {
    this.kvRunner ??= this.poolOptions.nativeText === false
      ? Promise.resolve({ runner: kv, native: false, why: 'nativeText: false' })
      : nativeKvRunner(kv, shape, this.manifest.architecture.text.vocab_size);
    return this.kvRunner;
  }

  /** Whether the native text tower runs the shared-beginnings text, and if not why; undefined before the first such text. */
  async textTower(): Promise<{ native: boolean; why?: string } | undefined> {
    const choice = await this.kvRunner;
    return choice && { native: choice.native, why: choice.why };
  }

  /** Resolves any weights input to a [n, P] matrix for this model, checking its size. */
  weightMatrix(weights: PromptWeightsInput, n: number): Float32Array {
    return weightMatrix(weights, n, this.numPrompts);
  }

  /** Releases all ORT sessions and stops the preprocessing workers. */
  async dispose(): Promise<void> {
    this.checked.clear();
    this.textMemo.clear();
    this.disposed = true;
    const pool = this.pool;
    this.pool = undefined;
    await Promise.all([this.backend.dispose(), pool?.close(), this.kvText.close()]);
  }
}
