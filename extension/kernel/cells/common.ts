// Pieces the analysis cells share: finding the model a cell means (a reference, the latest
// model cell, or the settings' model folder), embedding an image set through the disk cache
// with progress, and formatting.
import * as path from 'node:path';
import { embedImageSet, type EmbedResult } from '../../engine/embed';
import { classFeatures, defaultTemplates, type ClassFeatures } from '../../engine/prompts';
import { noteOnCutTemplates } from '../../engine/template-cuts';
import type { ViewPayload } from '../../protocol';
import { CellError, type ClassesValue, type DatasetValue, type ModelValue, type PromptsValue, type RunContext } from '../state';

/** The model a cell uses: `model:` reference, else the latest model cell, else the settings' folder. */
export async function useModel(ctx: RunContext, ref: unknown): Promise<ModelValue> {
  const chosen = ctx.state.lookup<ModelValue>('model', ref as string | undefined, 'model');
  if (chosen) return chosen;
  if (!ctx.settings.modelFolder) {
    throw new CellError('no model: add a `model:` cell above this one, or set `clipn.modelFolder` in the settings');
  }
  ctx.progress(`loading model ${ctx.settings.modelFolder}`);
  const folder = path.resolve(ctx.baseDir, ctx.settings.modelFolder);
  const m = await ctx.state.model(folder, ctx.settings, ctx.settings.providers, 'fp32');
  ctx.state.defs.define({ name: 'model', kind: 'model', cell: ctx.cellNumber, value: m });
  await ctx.state.releaseUnusedModels();
  return m;
}

/** The datasets named by a reference that may be one name or a list. */
export function useDatasets(ctx: RunContext, ref: unknown, key: string): DatasetValue[] {
  const names = ref === undefined ? [] : Array.isArray(ref) ? (ref as string[]) : [ref as string];
  if (names.length === 0) {
    // `id:` / `ood:` left out mean the latest image set of that role, not just the latest set.
    const role = key === 'id' || key === 'ood' ? key : undefined;
    const all = ctx.state.defs.names('dataset').map((n) => ctx.state.defs.get(n)!.value as DatasetValue);
    const latest = role ? all.filter((d) => d.role === role).pop() : ctx.state.lookup<DatasetValue>('dataset', undefined, key);
    if (!latest) throw new CellError(`${key}: no ${role ? `${role.toUpperCase()} ` : ''}image set defined yet; add a \`dataset:\` cell${role ? ` with \`role: ${role}\`` : ''} above this one`);
    return [latest];
  }
  return names.map((n) => ctx.state.lookup<DatasetValue>('dataset', n, key)!);
}

export interface Embedded extends EmbedResult {
  set: DatasetValue;
  seconds: number;
}

/** Embeds one image set through the cache, reporting progress as "name: done/total". */
export async function embedSet(ctx: RunContext, m: ModelValue, set: DatasetValue): Promise<Embedded> {
  const start = performance.now();
  const cache = ctx.state.cache(m, ctx.settings.cacheFolder);
  const result = await embedImageSet(m.model, set.dataset, {
    cache,
    batchSize: ctx.settings.batchSize || undefined,
    precision: m.precision,
    signal: ctx.signal,
    onProgress: (p) => ctx.progress(`${set.name}: ${p.phase} ${p.done}/${p.total}${p.fromCache ? ` (${p.fromCache} cached)` : ''}`, p.done, p.total),
  });
  if (result.dims[0] === 0) {
    throw new CellError(`${set.name}: none of its ${set.dataset.items.length} images could be read (${result.failures[0]?.reason ?? 'no images'})`);
  }
  return { ...result, set, seconds: (performance.now() - start) / 1000 };
}

/** A row's ID label in `classes` (or -1 when the image's class is not among them). */
export function labelsFor(e: Embedded, classes: readonly string[]): Int32Array {
  const out = new Int32Array(e.indices.length);
  e.indices.forEach((itemIndex, r) => {
    const name = e.set.dataset.items[itemIndex].className;
    out[r] = name === undefined ? -1 : classes.indexOf(name);
  });
  return out;
}

export function fmtSeconds(s: number): string {
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(2)} s`;
}

/** Notes shared by every view that embedded images: provider, cache use, failures. */
export function embedNotes(list: readonly Embedded[]): string[] {
  const notes: string[] = [];
  const providers = [...new Set(list.map((e) => e.provider))];
  notes.push(`Image encoder provider: ${providers.join(', ')}${providers.includes('cache') ? ' (cache: nothing needed encoding)' : ''}.`);
  const skipped = list.flatMap((e) => e.providerReport?.skipped ?? []);
  for (const s of skipped.slice(0, 3)) notes.push(`Provider ${s.name} skipped: ${s.reason.split('\n')[0]}`);
  for (const e of list) for (const w of e.cacheWarnings) notes.push(`Cache: ${w}`);
  return notes;
}

export function emptyView(kind: ViewPayload['kind'], title: string): ViewPayload {
  return { version: 1, kind, title, blocks: [], notes: [] };
}

/** The ID class names a cell means: its `classes:` reference, else the given ID set's. */
export function useClasses(ctx: RunContext, ref: unknown, idSet: DatasetValue | undefined, key = 'classes'): string[] {
  const value = ctx.state.lookup<ClassesValue>('classes', ref as string | undefined, 'classes');
  const classes = value?.names ?? idSet?.dataset.classNames ?? [];
  if (classes.length === 0) {
    const where = idSet ? `image set ${JSON.stringify(idSet.name)} has no classes (a flat folder?)` : 'no ID image set or `classes:` cell';
    throw new CellError(`${key}: ${where}; use a folder of class folders or add a \`classes:\` cell`);
  }
  return classes;
}

export function usePrompts(ctx: RunContext, ref: unknown): PromptsValue | undefined {
  return ctx.state.lookup<PromptsValue>('prompts', ref as string | undefined, 'prompts');
}

/** Yes and no class features for a cell (text features are cheap: never cached on disk). */
export async function useTextFeatures(ctx: RunContext, m: ModelValue, classes: readonly string[], prompts: PromptsValue | undefined): Promise<ClassFeatures> {
  ctx.progress('text features');
  return classFeatures(m.model, classes, { templates: prompts?.templates, no: prompts?.no, signal: ctx.signal, batchSize: 256 });
}

/**
 * Notes on the texts the model's tokenizer cuts at its context length for these classes: the
 * "yes" templates (also the learned "no" prompts' texts) and a hand-written "no" pool.
 */
export function textCutNotes(m: ModelValue, classes: readonly string[], prompts: PromptsValue | undefined): string[] {
  const lists: Array<[readonly string[], string]> = [[prompts?.templates ?? defaultTemplates(m.model.manifest), '"yes" templates']];
  if (prompts?.no.kind === 'handcrafted') lists.push([prompts.no.templates, '"no" templates']);
  return lists.flatMap(([templates, what]) => noteOnCutTemplates(m.model.tokenizer, classes, templates, what) ?? []);
}

/** The rows of several embedded sets stacked into one matrix. */
export function stackFeatures(list: readonly Embedded[], d: number): Float32Array {
  const total = list.reduce((a, e) => a + e.dims[0], 0);
  const out = new Float32Array(total * d);
  let off = 0;
  for (const e of list) (out.set(e.features, off * d), (off += e.dims[0]));
  return out;
}
