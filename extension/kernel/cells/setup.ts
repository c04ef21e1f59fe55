// The defining cells: model, dataset, classes, prompts. Each stores a value under its name in
// the kernel and shows what it defined (so a wrong folder or class list is seen before the
// expensive cells run).
import * as path from 'node:path';
import { loadDataset } from '../../engine/datasets';
import { defaultTemplates } from '../../engine/prompts';
import { imageGraphFor, promptWeights, type ImagePrecision, type PromptMix } from '../../engine/encoder';
import type { NoPrompts } from '../../engine/prompts';
import type { ViewPayload } from '../../protocol';
import { listBlock } from '../views';
import { CellError, type ClassesValue, type DatasetValue, type ModelValue, type PromptsValue, type RunContext } from '../state';
import { emptyView, fmtSeconds, useModel } from './common';

type Values = Record<string, unknown>;

export async function runModel(ctx: RunContext, v: Values, name: string): Promise<ViewPayload> {
  const folderSetting = (v.folder as string | undefined) ?? ctx.settings.modelFolder;
  if (!folderSetting) throw new CellError('model: give `folder:` or set `clipn.modelFolder` in the settings');
  const folder = path.resolve(ctx.baseDir, folderSetting);
  const providers = (v.providers as string[] | undefined) ?? ctx.settings.providers;
  const start = performance.now();
  ctx.progress(`loading ${folder}`);
  const precision = (v.precision as ImagePrecision | undefined) ?? 'fp32';
  const m = await ctx.state.model(folder, ctx.settings, providers, precision);
  // Opening the image session now shows which provider runs it, before any image is encoded.
  const report = await m.model.providerReport(imageGraphFor(m.precision));
  ctx.signal.throwIfAborted();
  ctx.state.defs.define({ name, kind: 'model', cell: ctx.cellNumber, value: m });
  const released = await ctx.state.releaseUnusedModels();
  const man = m.model.manifest;
  const view = emptyView('model', `Model ${name}: ${man.name}`);
  view.blocks.push({
    type: 'keyvalue',
    rows: [
      ['folder', folder],
      ['embedding dimension', String(man.embed_dim)],
      ['image size', `${man.preprocess.size} px`],
      ['context length', String(man.context_length)],
      ['learned "no" prompts', String(man.num_prompts)],
      ['templates', String(defaultTemplates(man).length)],
      ['image precision', m.precision],
      ['execution provider', report.used],
      ['loaded in', fmtSeconds((performance.now() - start) / 1000)],
    ],
  });
  if (m.precision !== precision) {
    view.notes.push(`This model has no ${precision} image graph (${imageGraphFor(precision)} in clipn.json): images are encoded with ${m.precision}.`);
  }
  for (const s of report.skipped) view.notes.push(`Provider ${s.name} skipped: ${s.reason.split('\n')[0]}`);
  if (released > 0) view.notes.push(`Released ${released} model${released === 1 ? '' : 's'} that no model cell names any more (its sessions and workers).`);
  return view;
}

export async function runDataset(ctx: RunContext, v: Values, name: string): Promise<ViewPayload> {
  const spec = (v.folder ?? v.glob ?? v.list) as string;
  const role = (v.role as 'id' | 'ood' | undefined) ?? 'ood';
  ctx.progress(`reading ${spec}`);
  const dataset = await loadDataset(spec, { role, cwd: ctx.baseDir });
  ctx.signal.throwIfAborted();
  const limit = v.limit as number | undefined;
  if (limit !== undefined && dataset.items.length > limit) dataset.items = dataset.items.slice(0, limit);
  if (dataset.items.length === 0) throw new CellError(`${spec}: no images found in ${dataset.searched}`);
  const value: DatasetValue = { name, role, dataset };
  ctx.state.defs.define({ name, kind: 'dataset', cell: ctx.cellNumber, value });

  const counts = new Map<string, number>();
  for (const it of dataset.items) counts.set(it.className ?? '(unlabelled)', (counts.get(it.className ?? '(unlabelled)') ?? 0) + 1);
  const classNames = [...counts.keys()];
  const view = emptyView('dataset', `Image set ${name} (${role.toUpperCase()}): ${dataset.items.length} images`);
  view.blocks.push({
    type: 'keyvalue',
    rows: [
      ['source', dataset.source],
      ['layout', dataset.kind],
      ['images', String(dataset.items.length)],
      ['classes', String(dataset.classNames.length)],
    ],
  });
  view.blocks.push({
    type: 'figure',
    title: 'Images per class',
    figure: {
      data: [{ type: 'bar', name, x: classNames, y: Float64Array.from(classNames.map((c) => counts.get(c)!)), colorIndex: role === 'id' ? 0 : 1 }],
      layout: { xTitle: 'class', yTitle: 'images' },
      height: 240,
    },
  });
  if (dataset.skipped.length > 0) view.blocks.push(listBlock(`Skipped ${dataset.skipped.length} entries`, dataset.skipped.map((s) => `${s.path}: ${s.reason}`)));
  view.notes.push(...dataset.warnings);
  return view;
}

export async function runClasses(ctx: RunContext, v: Values, name: string): Promise<ViewPayload> {
  let names: string[];
  if (Array.isArray(v.names)) names = v.names as string[];
  else {
    const set = ctx.state.lookup<DatasetValue>('dataset', v.from as string, 'from')!;
    names = [...set.dataset.classNames];
    if (names.length === 0) throw new CellError(`from: image set ${JSON.stringify(set.name)} has no class names (its images are not in class folders)`);
  }
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new CellError(`names: ${JSON.stringify(dup)} is listed twice`);
  const value: ClassesValue = { names };
  ctx.state.defs.define({ name, kind: 'classes', cell: ctx.cellNumber, value });
  const view = emptyView('classes', `Classes ${name}: ${names.length}`);
  view.blocks.push({ type: 'table', columns: [{ label: 'label' }, { label: 'class' }], rows: names.map((n, i) => [i, n]) });
  return view;
}

function learnedMix(learned: unknown): { mix: PromptMix; text: string } {
  if (learned === undefined || learned === 'mean') return { mix: promptWeights.mean(), text: 'mean of the learned "no" prompts' };
  if (learned === 'none') return { mix: promptWeights.none(), text: 'no learned prompt (bare "no" tower)' };
  if (typeof learned === 'number') return { mix: promptWeights.single(learned), text: `learned "no" prompt ${learned}` };
  const idx = learned as number[];
  return { mix: promptWeights.subset(idx), text: `mean of learned "no" prompts ${idx.join(', ')}` };
}

export async function runPrompts(ctx: RunContext, v: Values, name: string): Promise<ViewPayload> {
  const noSpec = (v.no ?? {}) as Values;
  let no: NoPrompts;
  let description: string;
  if (Array.isArray(noSpec.templates)) {
    const tower = (noSpec.tower as 'no' | 'yes' | undefined) ?? 'no';
    no = { kind: 'handcrafted', templates: noSpec.templates as string[], tower };
    description = `${noSpec.templates.length} hand-written "no" templates (${tower} tower)`;
  } else {
    const { mix, text } = learnedMix(noSpec.learned);
    no = { kind: 'learned', mix };
    description = text;
  }
  // Learned-prompt indices are checked against the model when one is loaded already.
  const model = ctx.state.defs.latestOf('model')?.value as ModelValue | undefined;
  if (model && no.kind === 'learned' && no.mix) {
    const p = model.model.numPrompts;
    const bad = (no.mix.kind === 'single' ? [no.mix.index] : no.mix.kind === 'subset' ? no.mix.indices : []).filter((i) => i >= p);
    if (bad.length) throw new CellError(`no.learned: prompt ${bad[0]} does not exist; the model has ${p} learned prompts (0..${p - 1})`);
  }
  const value: PromptsValue = { templates: v.templates as string[] | undefined, no, description };
  ctx.state.defs.define({ name, kind: 'prompts', cell: ctx.cellNumber, value });
  const templates = value.templates ?? (await useModel(ctx, undefined).then((m) => [...defaultTemplates(m.model.manifest)]).catch(() => ['(the model\'s own templates)']));
  const view = emptyView('prompts', `Prompts ${name}`);
  view.blocks.push({ type: 'keyvalue', rows: [['"yes" templates', String(templates.length)], ['"no" pool', description]] });
  view.blocks.push(listBlock('"yes" templates', templates));
  if (no.kind === 'handcrafted') view.blocks.push(listBlock('"no" templates', no.templates));
  return view;
}
