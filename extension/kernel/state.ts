// What the kernel process remembers between cells: the definitions cells made (by name, like
// kernel variables), loaded models (onnxruntime sessions are costly: one per folder/providers/
// threads), and image embeddings keyed by image content hash + model + preprocessing.
import * as path from 'node:path';
import { availablePrecision, ClipnModel, imageGraphFor } from '../engine/encoder';
import type { ImagePrecision } from '../engine/encoder';
import type { ImageDataset } from '../engine/datasets';
import type { NoPrompts } from '../engine/prompts';
import { Definitions } from '../language/resolve';
import type { CellKind, KernelSettings } from '../protocol';
import * as fs from 'node:fs';
import { EmbeddingCache } from '../engine/embedding-cache';
import { releaseAblationScorers, type AblationMemo } from '../engine/analysis/ablation';
import { VariantMemo } from '../engine/analysis/variant-memo';

export interface ModelValue {
  folder: string;
  model: ClipnModel;
  /** Identifies the weights + preprocessing for the embedding cache. */
  key: string;
  /** The precision whose image graph runs: the one asked for, or fp32 when the model lacks it. */
  precision: ImagePrecision;
}

export interface DatasetValue {
  name: string;
  role: 'id' | 'ood';
  dataset: ImageDataset;
}

export interface ClassesValue {
  names: string[];
}

export interface PromptsValue {
  templates?: string[];
  no: NoPrompts;
  /** How the pool was described in the cell, for tables. */
  description: string;
}

export type Value = ModelValue | DatasetValue | ClassesValue | PromptsValue | Record<string, unknown>;

/** Context for one cell run. */
export interface RunContext {
  state: KernelState;
  settings: KernelSettings;
  baseDir: string;
  cellNumber: number;
  signal: AbortSignal;
  progress(message: string, done?: number, total?: number): void;
}

export class KernelState {
  readonly defs = new Definitions<Value>();
  private readonly models = new Map<string, Promise<ModelValue>>();
  private readonly caches = new Map<string, EmbeddingCache>();
  /** Ablation variants scored by earlier runs: an edited pool scores only what changed. */
  readonly ablationMemo: AblationMemo = new VariantMemo();

  /** Loads (or reuses) a model for a folder with the given providers and threads. */
  model(folder: string, settings: KernelSettings, providers: string[], precision: ImagePrecision): Promise<ModelValue> {
    const abs = path.resolve(folder);
    const threads = settings.threads > 0 ? settings.threads : undefined;
    const id = JSON.stringify([abs, providers, threads ?? 0, precision]);
    let p = this.models.get(id);
    if (!p) {
      p = (async () => {
        const model = await ClipnModel.load(abs, {
          backend: { executionProviders: providers, intraOpNumThreads: threads },
          cacheDir: settings.cacheFolder ? path.join(settings.cacheFolder, 'verified') : undefined,
        });
        const m = model.manifest;
        // The graphs' hashes name the weights; preprocessing decides the pixels they see.
        const used = availablePrecision(m, precision);
        const graph = m.graphs[imageGraphFor(used)] ?? m.graphs.image;
        const key = JSON.stringify([m.files[graph] ?? m.name, m.preprocess]);
        return { folder: abs, model, key, precision: used } as ModelValue;
      })();
      p.catch(() => this.models.delete(id));
      this.models.set(id, p);
    }
    return p;
  }

  /**
   * Releases the models no model definition refers to any more (a model cell re-run with another
   * precision or provider list, or renamed): without it a kernel kept every model it ever loaded,
   * each with its sessions and text workers (~1 GB for ViT-B/16). Cells run one at a time, so no
   * running cell holds a model that is not defined. Returns how many were released.
   */
  async releaseUnusedModels(): Promise<number> {
    const used = new Set(this.defs.names('model').map((n) => (this.defs.get(n)!.value as ModelValue).model));
    let released = 0;
    for (const [id, p] of [...this.models]) {
      const m = await p.catch(() => undefined);
      if (!m || used.has(m.model)) continue;
      this.models.delete(id);
      await m.model.dispose();
      released++;
    }
    return released;
  }

  /** The on-disk embedding cache for a model (undefined when no cache folder is set). */
  cache(m: ModelValue, cacheFolder: string): EmbeddingCache | undefined {
    if (!cacheFolder) return undefined;
    const id = JSON.stringify([path.resolve(cacheFolder), m.key]);
    let c = this.caches.get(id);
    if (!c) {
      c = EmbeddingCache.forModel(path.join(cacheFolder, 'embeddings'), m.model.manifest, m.precision);
      this.caches.set(id, c);
    }
    return c;
  }

  /** Deletes the cache folder's embeddings; returns how many cache folders were removed. */
  clearCache(cacheFolder: string): number {
    this.caches.clear();
    const root = path.join(cacheFolder, 'embeddings');
    let removed = 0;
    if (cacheFolder && fs.existsSync(root)) {
      for (const entry of fs.readdirSync(root)) {
        fs.rmSync(path.join(root, entry), { recursive: true, force: true });
        removed++;
      }
    }
    return removed;
  }

  /** Resolves a reference (or the latest definition of the kind) to its value. */
  lookup<T extends Value>(kind: CellKind, name: string | undefined, key: string): T | undefined {
    if (name === undefined) return this.defs.latestOf(kind)?.value as T | undefined;
    const problem = this.defs.problem({ name, kind, key });
    if (problem) throw new CellError(`${key}: ${problem}; run the cell that defines it first`);
    return this.defs.get(name)!.value as T;
  }

  async dispose(): Promise<void> {
    for (const p of this.models.values()) {
      try {
        await (await p).model.dispose();
      } catch {
        /* a model that failed to load has nothing to release */
      }
    }
    this.models.clear();
    await releaseAblationScorers();
  }
}

/** A failure the user can fix in the cell (reported without a stack trace). */
export class CellError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CellError';
  }
}
