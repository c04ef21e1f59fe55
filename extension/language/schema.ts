// The one schema of the `clipn` cell language. Validation (line/column errors), editor
// diagnostics, completion and hover all read this table, so a key documented here is a key
// the kernel accepts, and nothing else is. No `vscode` import: the kernel and tests use it.
import type { ImagePrecision } from '../engine/encoder';
import type { CellKind } from '../protocol';

/** The shapes a value may take; a field lists every shape it accepts. */
export type Shape = 'string' | 'integer' | 'number' | 'boolean' | 'string-list' | 'integer-list' | 'object';

export interface FieldSpec {
  key: string;
  accepts: Shape[];
  /** Markdown shown on hover and in completion. */
  doc: string;
  /** Allowed strings (for 'string' and 'string-list'). */
  values?: readonly string[];
  /** The value names an earlier cell's definition of this kind. */
  ref?: CellKind;
  required?: boolean;
  min?: number;
  /** Strings (or list items) must contain `{}` (prompt templates). */
  template?: boolean;
  /** Sub-keys, for 'object'. */
  fields?: FieldSpec[];
  /** Exactly one of the fields sharing a group must be present. */
  oneOf?: string;
  example?: string;
}

export interface KindSpec {
  kind: CellKind;
  doc: string;
  fields: FieldSpec[];
  example: string;
}

export const SCORE_NAMES = ['msp', 'maxlogit', 'energy', 'ctw', 'atd'] as const;
export type ScoreName = (typeof SCORE_NAMES)[number];
export const PROVIDERS = ['cuda', 'webgpu', 'cpu'] as const;

const name = (what: string, fallback?: string): FieldSpec => ({
  key: 'name',
  accepts: ['string'],
  doc: `The name later cells use to refer to this ${what}${fallback ? ` (default \`${fallback}\`)` : ''}.`,
  required: !fallback,
});

interface RefOptions {
  list?: boolean;
  required?: boolean;
  /** What an omitted reference means (default: the most recent cell of the kind). */
  fallback?: string;
}

/** A key that names an earlier cell's definition; its doc says what leaving it out means. */
const ref = (key: string, kind: CellKind, doc: string, o: RefOptions = {}): FieldSpec => {
  const latest = key === 'id' || key === 'ood' ? `the most recent \`dataset:\` cell with \`role: ${key}\`` : `the most recent \`${kind}:\` cell`;
  return {
    key,
    accepts: o.list ? ['string', 'string-list'] : ['string'],
    ref: kind,
    ...(o.required ? { required: true } : {}),
    doc: o.required ? doc : `${doc} Default: ${o.fallback ?? `${latest} run before this one`}.`,
  };
};

const MODEL_REF = ref('model', 'model', 'The model to use.', { fallback: 'the most recent `model:` cell, else the `clipn.modelFolder` setting (empty: the bundled model)' });
const CLASSES_REF = (idSet: string) => ref('classes', 'classes', 'The ID class names.', { fallback: `the most recent \`classes:\` cell, else ${idSet}'s class names` });
const PROMPTS_REF = (doc: string) => ref('prompts', 'prompts', doc, { fallback: 'the most recent `prompts:` cell, else the model\'s templates with the mean learned "no" prompt' });

export const KINDS: readonly KindSpec[] = [
  {
    kind: 'model',
    doc: 'Loads a CLIPN model folder (`clipn.json` + ONNX graphs) in the kernel.',
    example: 'model:\n  folder: ../models/default\n  providers: [cuda, webgpu, cpu]\n',
    fields: [
      name('model', 'model'),
      { key: 'folder', accepts: ['string'], doc: 'Model folder, relative to the notebook. Default: the `clipn.modelFolder` setting.' },
      {
        key: 'providers',
        accepts: ['string-list'],
        values: PROVIDERS,
        doc: 'Execution providers to try, in order; the first that works runs the model and is shown in the output. Default: the `clipn.executionProviders` setting.',
      },
      {
        key: 'precision',
        accepts: ['string'],
        values: ['fp32', 'fp16', 'int8'] satisfies ImagePrecision[],
        doc:
          'Image encoder precision. Default `fp32`. `fp16` uses the fp16 image graph; `int8` uses the int8 dynamically quantised image graph ' +
          '(faster on CPU, features at cosine ≥ 0.99). A model without that graph falls back to `fp32`, and the output says so.',
      },
    ],
  },
  {
    kind: 'dataset',
    doc: 'Defines an image set: a folder of class folders, a glob, or a .csv/.json list (`path,label`). Unreadable files are listed, not fatal.',
    example: 'dataset:\n  name: id\n  role: id\n  folder: images/id\n',
    fields: [
      name('image set'),
      { key: 'role', accepts: ['string'], values: ['id', 'ood'], doc: '`id` (in-distribution, labelled by class) or `ood` (out-of-distribution). Default `ood`.' },
      { key: 'folder', accepts: ['string'], oneOf: 'source', doc: 'A folder whose sub-folders are the classes (ImageFolder layout), or a flat folder of images.' },
      { key: 'glob', accepts: ['string'], oneOf: 'source', doc: 'A glob such as `images/ood/**/*.jpg`; the first folder under the glob base names the class.' },
      { key: 'list', accepts: ['string'], oneOf: 'source', doc: 'A .csv or .json file listing `path,label` rows (relative to the list file).' },
      { key: 'limit', accepts: ['integer'], min: 1, doc: 'Use at most this many images (the first ones, in a stable order).' },
    ],
  },
  {
    kind: 'classes',
    doc: 'The ID class names that prompts are made from.',
    example: 'classes:\n  name: shapes\n  from: id\n',
    fields: [
      name('class list'),
      { key: 'names', accepts: ['string-list'], oneOf: 'source', doc: 'The class names, in label order.' },
      { key: 'from', accepts: ['string'], ref: 'dataset', oneOf: 'source', doc: "Take the class names of an ID image set (its folders' names)." },
    ],
  },
  {
    kind: 'prompts',
    doc: 'Prompt templates for the "yes" texts and the "no" prompt pool.',
    example: 'prompts:\n  name: default\n  templates: ["a photo of a {}."]\n  no:\n    learned: mean\n',
    fields: [
      name('prompt set'),
      { key: 'templates', accepts: ['string-list'], template: true, doc: 'Templates with `{}` for the class name, ensembled per class. Default: the model\'s own templates.' },
      {
        key: 'no',
        accepts: ['object'],
        doc: 'The "no" prompt pool: learned prompts (`learned`) or hand-written negated templates (`templates`).',
        fields: [
          {
            key: 'learned',
            accepts: ['string', 'integer', 'integer-list'],
            values: ['mean', 'none'],
            oneOf: 'pool',
            doc: 'Learned "no" prompts: `mean` of all (the paper), one index, a list of indices (their mean), or `none`.',
          },
          {
            key: 'templates',
            accepts: ['string-list'],
            template: true,
            oneOf: 'pool',
            doc: 'Hand-written "no" templates with `{}`, e.g. `a photo of no {}.`',
          },
          { key: 'tower', accepts: ['string'], values: ['no', 'yes'], doc: 'Which text tower encodes hand-written templates: `no` (CLIPN, default) or `yes` (plain CLIP negation).' },
        ],
      },
    ],
  },
  {
    kind: 'evaluate',
    doc: 'OOD evaluation: scores every image and shows AUROC, FPR95, AUPR-In, AUPR-Out and ID accuracy per score and OOD set, with ROC curves.',
    example: 'evaluate:\n  id: id\n  ood: [ood]\n',
    fields: [
      name('evaluation', 'evaluation'),
      MODEL_REF,
      ref('id', 'dataset', 'The ID image set (labelled).'),
      ref('ood', 'dataset', 'One or more OOD image sets.', { list: true, required: true }),
      CLASSES_REF('the ID set'),
      PROMPTS_REF('Templates and "no" pool.'),
      { key: 'scores', accepts: ['string-list'], values: SCORE_NAMES, doc: 'Scores to report (default all): MSP, MaxLogit, Energy, CTW, ATD.' },
      { key: 'fpr95', accepts: ['string'], values: ['interpolated', 'nearest'], doc: 'FPR at 95% TPR: interpolated on the ROC curve (CLIPN) or nearest point (MCM). Default `interpolated`.' },
      { key: 'temperature', accepts: ['number'], min: 0, doc: 'Softmax temperature T of MSP/MaxLogit/Energy on cosines (default 1, MCM; CLIPN uses 0.01).' },
    ],
  },
  {
    kind: 'embed',
    doc: 'Encodes image sets (cached on disk) and shows a 2-D PCA of the embeddings.',
    example: 'embed:\n  dataset: [id, ood]\n',
    fields: [
      name('embedding', 'embedding'),
      MODEL_REF,
      ref('dataset', 'dataset', 'The image set(s) to embed.', { list: true, required: true }),
    ],
  },
  {
    kind: 'geometry',
    doc: 'Yes/no text-feature geometry: per class the cosine between its "yes" and "no" features (ensemble and per prompt), a yes-vs-no similarity heatmap, 2-D and 3-D PCA of all text features with each class pair linked, and (with `images:`) every image\'s similarity to its predicted class\'s yes and no features with the CTW boundary.',
    example: 'geometry:\n  images: [id, ood]\n',
    fields: [
      name('geometry', 'geometry'),
      MODEL_REF,
      CLASSES_REF('the first ID set in `images:`'),
      PROMPTS_REF('Templates and "no" pool.'),
      ref('images', 'dataset', 'Image sets for the image-side plot.', { list: true, fallback: 'none (text features only)' }),
    ],
  },
  {
    kind: 'umap',
    doc: 'UMAP projection of image embeddings (exact cosine kNN by the engine, seeded): coloured by ID/OOD, class, predicted class or a score; hover shows the image, click opens it, lasso selects and saves.',
    example: 'umap:\n  dataset: [id, ood]\n  color: atd\n',
    fields: [
      name('projection', 'umap'),
      MODEL_REF,
      ref('dataset', 'dataset', 'The image set(s) to project.', { list: true, required: true }),
      CLASSES_REF('the first ID set in `dataset:`'),
      PROMPTS_REF('Templates and "no" pool (for `predicted`, the scores and `text:`).'),
      { key: 'color', accepts: ['string'], values: ['role', 'class', 'predicted', ...SCORE_NAMES], doc: 'Colour points by `role` (ID/OOD, default), `class`, `predicted` class, or a score (`msp`, `maxlogit`, `energy`, `ctw`, `atd`).' },
      { key: 'text', accepts: ['boolean'], doc: 'Also place the classes\' yes and no text features in the same space (default false).' },
      { key: 'neighbors', accepts: ['integer'], min: 2, doc: 'UMAP neighbourhood size (default 15).' },
      { key: 'min_dist', accepts: ['number'], min: 0, doc: 'UMAP minimum distance (default 0.1).' },
      { key: 'epochs', accepts: ['integer'], min: 1, doc: 'Optimisation epochs (default by point count, as umap-js: 500 up to 2,500 points, down to 200 above 7,500).' },
      { key: 'seed', accepts: ['integer'], min: 0, doc: 'Random seed (default 42): the same seed and data give the same layout.' },
      { key: 'dimensions', accepts: ['integer'], min: 2, doc: 'Output dimensions: 2 (default) or 3.' },
    ],
  },
  {
    kind: 'ablation',
    doc: 'Per-prompt ablation of the "no" prompt pool: each prompt alone, the pool without each prompt, and a greedy forward selection, with the CTW and ATD metric changes against the full pool. Image embeddings come from the cache; only text features are computed, and a re-run after editing the pool scores only the variants the edit changed (the kernel remembers the others). Its notes name the templates that the context length of the model cuts for some classes, and those cut before the class name, which give one feature for every class (the bundled model has a 16-token context).',
    example: 'ablation:\n  id: id\n  ood: [ood]\n  pool: learned\n',
    fields: [
      name('ablation', 'ablation'),
      MODEL_REF,
      ref('id', 'dataset', 'The ID image set.'),
      ref('ood', 'dataset', 'One or more OOD image sets (pooled).', { list: true, required: true }),
      CLASSES_REF('the ID set'),
      PROMPTS_REF('The "yes" templates (and, without `pool:`, the "no" pool of this prompts cell).'),
      {
        key: 'pool',
        accepts: ['string', 'string-list'],
        values: ['learned'],
        template: true,
        doc: 'The "no" pool to ablate: `learned` (the model\'s learned prompts) or a list of hand-written templates with `{}`. Default: the prompts cell\'s hand-written pool, else the learned prompts.',
      },
      { key: 'objective', accepts: ['string'], values: ['atd-auroc', 'atd-fpr95', 'ctw-auroc', 'ctw-fpr95'], doc: 'What the greedy selection optimises (default `atd-auroc`).' },
      { key: 'greedy', accepts: ['integer'], min: 0, doc: 'Greedy forward selection: at most this many steps (default 8; 0 turns it off).' },
    ],
  },
];

const BY_KIND = new Map(KINDS.map((k) => [k.kind, k]));

export function kindSpec(kind: string): KindSpec | undefined {
  return BY_KIND.get(kind as CellKind);
}

export function isCellKind(kind: string): kind is CellKind {
  return BY_KIND.has(kind as CellKind);
}

/** The name a cell defines when it has no `name:` (undefined: the kind needs one). */
export function defaultName(kind: CellKind): string | undefined {
  const field = BY_KIND.get(kind)?.fields.find((f) => f.key === 'name');
  if (!field || field.required) return undefined;
  return kind === 'evaluate' ? 'evaluation' : kind === 'embed' ? 'embedding' : kind;
}

/** Fields nested under a path of keys (e.g. ['prompts', 'no']). */
export function fieldsAt(path: readonly string[]): FieldSpec[] | undefined {
  if (path.length === 0) return undefined;
  let fields = kindSpec(path[0])?.fields;
  for (const key of path.slice(1)) {
    fields = fields?.find((f) => f.key === key)?.fields;
  }
  return fields;
}

/** Markdown documentation for a key (used by hover and completion). */
export function fieldDoc(field: FieldSpec): string {
  const parts = [field.doc];
  if (field.values) parts.push(`Values: ${field.values.map((v) => `\`${v}\``).join(', ')}.`);
  if (field.required) parts.push('Required.');
  if (field.oneOf) parts.push(`One source only (\`${field.oneOf}\`).`);
  return parts.join('\n\n');
}
