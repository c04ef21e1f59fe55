// Class prompts for CLIPN: templates, per-class ensembling for the "yes" and the "no" tower,
// learned "no" prompts (one, the mean, a subset) and hand-crafted "no" template pools, plus the
// per-prompt ablations the notebook shows. Ensembling is CLIP's: normalise each template's
// feature, sum over templates, normalise the sum (spec "Prompts").
import type { ClipnManifest } from './manifest';
import type { ClipnModel, EncodeProgress } from './encoder';
import { promptWeights } from './prompt-weights';
import type { PromptMix } from './prompt-weights';

/** CLIP's 80 ImageNet templates (Radford et al. 2021, "Prompt_Engineering_for_ImageNet"). */
export const IMAGENET_TEMPLATES: readonly string[] = Object.freeze([
  'a bad photo of a {}.',
  'a photo of many {}.',
  'a sculpture of a {}.',
  'a photo of the hard to see {}.',
  'a low resolution photo of the {}.',
  'a rendering of a {}.',
  'graffiti of a {}.',
  'a bad photo of the {}.',
  'a cropped photo of the {}.',
  'a tattoo of a {}.',
  'the embroidered {}.',
  'a photo of a hard to see {}.',
  'a bright photo of a {}.',
  'a photo of a clean {}.',
  'a photo of a dirty {}.',
  'a dark photo of the {}.',
  'a drawing of a {}.',
  'a photo of my {}.',
  'the plastic {}.',
  'a photo of the cool {}.',
  'a close-up photo of a {}.',
  'a black and white photo of the {}.',
  'a painting of the {}.',
  'a painting of a {}.',
  'a pixelated photo of the {}.',
  'a sculpture of the {}.',
  'a bright photo of the {}.',
  'a cropped photo of a {}.',
  'a plastic {}.',
  'a photo of the dirty {}.',
  'a jpeg corrupted photo of a {}.',
  'a blurry photo of the {}.',
  'a photo of the {}.',
  'a good photo of the {}.',
  'a rendering of the {}.',
  'a {} in a video game.',
  'a photo of one {}.',
  'a doodle of a {}.',
  'a close-up photo of the {}.',
  'a photo of a {}.',
  'the origami {}.',
  'the {} in a video game.',
  'a sketch of a {}.',
  'a doodle of the {}.',
  'a origami {}.',
  'a low resolution photo of a {}.',
  'the toy {}.',
  'a rendition of the {}.',
  'a photo of the clean {}.',
  'a photo of a large {}.',
  'a rendition of a {}.',
  'a photo of a nice {}.',
  'a photo of a weird {}.',
  'a blurry photo of a {}.',
  'a cartoon {}.',
  'art of a {}.',
  'a sketch of the {}.',
  'a embroidered {}.',
  'a pixelated photo of a {}.',
  'itap of the {}.',
  'a jpeg corrupted photo of the {}.',
  'a good photo of a {}.',
  'a plushie {}.',
  'a photo of the nice {}.',
  'a photo of the small {}.',
  'a photo of the weird {}.',
  'the cartoon {}.',
  'art of the {}.',
  'a drawing of the {}.',
  'a photo of the large {}.',
  'a black and white photo of a {}.',
  'the plushie {}.',
  'a dark photo of a {}.',
  'itap of a {}.',
  'graffiti of the {}.',
  'a toy {}.',
  'itap of my {}.',
  'a photo of a cool {}.',
  'a photo of a small {}.',
  'a tattoo of the {}.',
]);

/** A starting hand-crafted "no" pool: negated twins in the style of CLIPN's prompt_no.txt. */
export const EXAMPLE_NO_TEMPLATES: readonly string[] = Object.freeze([
  'a photo of no {}.',
  'a photo without a {}.',
  'a photo not containing a {}.',
  'a {} not appearing in a video game.',
]);

export class TemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TemplateError';
  }
}

/** Every template needs `{}` where the class name goes; `what` names the list in errors. */
export function checkTemplates(templates: readonly string[], what = 'template'): void {
  if (templates.length === 0) throw new TemplateError(`${what} list is empty; give at least one template such as "a photo of a {}."`);
  for (const t of templates) {
    if (typeof t !== 'string' || !t.includes('{}')) {
      throw new TemplateError(
        `${what} ${JSON.stringify(t)} has no {} where the class name goes; write it like "a photo of a {}." ` +
          `(for a "no" template: "a photo of no {}.")`,
      );
    }
  }
}

/** Python's template.format(name) for `{}` templates. */
export function fillTemplate(template: string, className: string): string {
  return template.split('{}').join(className);
}

/** The model's own templates when its manifest has them, else CLIP's 80. */
export function defaultTemplates(manifest?: Pick<ClipnManifest, 'templates'>): readonly string[] {
  return manifest?.templates && manifest.templates.length > 0 ? manifest.templates : IMAGENET_TEMPLATES;
}

function checkClasses(classes: readonly string[]): void {
  if (classes.length === 0) throw new Error('class list is empty; give the in-distribution class names');
  classes.forEach((c, i) => {
    if (typeof c !== 'string' || c.trim().length === 0) throw new Error(`class ${i} has an empty name`);
  });
}

/** Prompts in class-major order: row c * T + t is template t filled with class c. */
export function classPrompts(classes: readonly string[], templates: readonly string[]): string[] {
  const out: string[] = [];
  for (const c of classes) for (const t of templates) out.push(fillTemplate(t, c));
  return out;
}

export interface FeatureMatrix {
  /** Row-major [rows, dim]. */
  data: Float32Array;
  dims: [number, number];
}

/**
 * CLIP ensembling: rows are class-major [C * T, D]; per class the T rows are L2-normalised,
 * summed and the sum normalised again (accumulated in float64). `keep` restricts the templates.
 */
export function ensembleByClass(features: Float32Array, dim: number, numClasses: number, numTemplates: number, keep?: readonly number[]): FeatureMatrix {
  if (features.length !== numClasses * numTemplates * dim) {
    throw new Error(`ensemble: ${features.length} values are not ${numClasses} classes x ${numTemplates} templates x ${dim}`);
  }
  const use = keep ?? Array.from({ length: numTemplates }, (_, t) => t);
  if (use.length === 0) throw new Error('ensemble: no templates selected');
  const out = new Float32Array(numClasses * dim);
  const acc = new Float64Array(dim);
  for (let c = 0; c < numClasses; c++) {
    acc.fill(0);
    for (const t of use) {
      const base = (c * numTemplates + t) * dim;
      let norm = 0;
      for (let j = 0; j < dim; j++) norm += features[base + j] * features[base + j];
      const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
      for (let j = 0; j < dim; j++) acc[j] += features[base + j] * inv;
    }
    let norm = 0;
    for (let j = 0; j < dim; j++) norm += acc[j] * acc[j];
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let j = 0; j < dim; j++) out[c * dim + j] = acc[j] * inv;
  }
  return { data: out, dims: [numClasses, dim] };
}

// ---------------------------------------------------------------------------------------------

/** How the "no" tower's class features are made. */
export type NoPrompts =
  /** CLIPN with learned prompts: the yes templates through the no tower, mixed prompts (default mean). */
  | { kind: 'learned'; mix?: PromptMix }
  /**
   * A hand-crafted pool of negated templates ("a photo of no {}."). As in CLIPN's hand-crafted
   * variant they go through the no tower without learned prompts (mix default none); tower
   * 'yes' encodes them with the standard encoder (the plain-CLIP negation baseline).
   */
  | { kind: 'handcrafted'; templates: readonly string[]; mix?: PromptMix; tower?: 'no' | 'yes' };

export interface ClassFeatureOptions {
  /** Yes templates; default the model's own (manifest) or CLIP's 80. */
  templates?: readonly string[];
  /** Default { kind: 'learned' } with the mean of the learned prompts. */
  no?: NoPrompts;
  batchSize?: number;
  signal?: AbortSignal;
  onProgress?: (p: EncodeProgress) => void;
}

export interface ClassFeatures {
  classes: string[];
  templates: string[];
  noTemplates: string[];
  /** [C, D] yes-tower class features. */
  yes: FeatureMatrix;
  /** [C, D] no-tower class features. */
  no: FeatureMatrix;
  /** Providers that computed each side. */
  provider: { yes: string; no: string };
}

/** Per-class yes and no feature matrices for the ID classes. */
export async function classFeatures(model: ClipnModel, classes: readonly string[], opts: ClassFeatureOptions = {}): Promise<ClassFeatures> {
  checkClasses(classes);
  const templates = opts.templates ?? defaultTemplates(model.manifest);
  checkTemplates(templates, 'template');
  const no: NoPrompts = opts.no ?? { kind: 'learned' };
  const noTemplates = no.kind === 'handcrafted' ? no.templates : templates;
  if (no.kind === 'handcrafted') checkTemplates(noTemplates, 'hand-crafted "no" template');
  const textOpts = { batchSize: opts.batchSize, signal: opts.signal, onProgress: opts.onProgress };
  const d = model.embedDim;

  const yesRaw = await model.encodeTexts(classPrompts(classes, templates), textOpts);
  const yes = ensembleByClass(yesRaw.data, d, classes.length, templates.length);
  let noRaw;
  if (no.kind === 'handcrafted' && no.tower === 'yes') {
    noRaw = await model.encodeTexts(classPrompts(classes, noTemplates), textOpts);
  } else {
    const mix = no.mix ?? (no.kind === 'handcrafted' ? promptWeights.none() : promptWeights.mean());
    noRaw = await model.encodeClassPromptsNo(classes, noTemplates, [mix], textOpts);
  }
  return {
    classes: [...classes],
    templates: [...templates],
    noTemplates: [...noTemplates],
    yes,
    no: ensembleByClass(noRaw.data, d, classes.length, noTemplates.length),
    provider: { yes: yesRaw.provider, no: noRaw.provider },
  };
}

/** No-tower class features for several learned-prompt mixes, in one batched pass. */
export async function noFeaturesForMixes(
  model: ClipnModel,
  classes: readonly string[],
  mixes: readonly PromptMix[],
  opts: Omit<ClassFeatureOptions, 'no'> = {},
): Promise<FeatureMatrix[]> {
  checkClasses(classes);
  if (mixes.length === 0) return [];
  const templates = opts.templates ?? defaultTemplates(model.manifest);
  checkTemplates(templates, 'template');
  // Rows [mixes][classes][templates]: each mix's block is classPrompts' order.
  const raw = await model.encodeClassPromptsNo(classes, templates, mixes, { batchSize: opts.batchSize, signal: opts.signal, onProgress: opts.onProgress });
  const d = model.embedDim;
  const per = classes.length * templates.length * d;
  return mixes.map((_, m) => ensembleByClass(raw.data.subarray(m * per, (m + 1) * per), d, classes.length, templates.length));
}

export interface LearnedPromptAblation {
  yes: FeatureMatrix;
  /** The paper's evaluation: all learned prompts averaged. */
  mean: FeatureMatrix;
  /** single[i]: learned prompt i alone. */
  single: FeatureMatrix[];
  /** leaveOneOut[i]: the mean of all prompts but i (absent with a single prompt). */
  leaveOneOut: FeatureMatrix[];
}

/** Features for the learned "no" prompt ablation: each prompt alone and each left out. */
export async function learnedPromptAblation(model: ClipnModel, classes: readonly string[], opts: Omit<ClassFeatureOptions, 'no'> = {}): Promise<LearnedPromptAblation> {
  const p = model.numPrompts;
  const all = Array.from({ length: p }, (_, i) => i);
  const mixes: PromptMix[] = [promptWeights.mean(), ...all.map((i) => promptWeights.single(i))];
  if (p > 1) mixes.push(...all.map((i) => promptWeights.subset(all.filter((j) => j !== i))));
  const templates = opts.templates ?? defaultTemplates(model.manifest);
  const yesRaw = await model.encodeTexts(classPrompts(classes, templates), opts);
  const features = await noFeaturesForMixes(model, classes, mixes, { ...opts, templates });
  return {
    yes: ensembleByClass(yesRaw.data, model.embedDim, classes.length, templates.length),
    mean: features[0],
    single: features.slice(1, 1 + p),
    leaveOneOut: p > 1 ? features.slice(1 + p) : [],
  };
}

export interface HandcraftedAblation {
  templates: string[];
  /** The whole pool ensembled. */
  all: FeatureMatrix;
  /** alone[k]: template k only. */
  alone: FeatureMatrix[];
  /** leaveOneOut[k]: the pool without template k (absent for a one-template pool). */
  leaveOneOut: FeatureMatrix[];
}

/** Each hand-crafted "no" template alone and left out; encodes the pool once. */
export async function handcraftedAblation(
  model: ClipnModel,
  classes: readonly string[],
  pool: { templates: readonly string[]; mix?: PromptMix; tower?: 'no' | 'yes' },
  opts: Omit<ClassFeatureOptions, 'no' | 'templates'> = {},
): Promise<HandcraftedAblation> {
  checkClasses(classes);
  checkTemplates(pool.templates, 'hand-crafted "no" template');
  const textOpts = { batchSize: opts.batchSize, signal: opts.signal, onProgress: opts.onProgress };
  const raw =
    pool.tower === 'yes'
      ? await model.encodeTexts(classPrompts(classes, pool.templates), textOpts)
      : await model.encodeClassPromptsNo(classes, pool.templates, [pool.mix ?? promptWeights.none()], textOpts);
  const k = pool.templates.length;
  const d = model.embedDim;
  const idx = Array.from({ length: k }, (_, t) => t);
  return {
    templates: [...pool.templates],
    all: ensembleByClass(raw.data, d, classes.length, k),
    alone: idx.map((t) => ensembleByClass(raw.data, d, classes.length, k, [t])),
    leaveOneOut: k > 1 ? idx.map((t) => ensembleByClass(raw.data, d, classes.length, k, idx.filter((j) => j !== t))) : [],
  };
}
