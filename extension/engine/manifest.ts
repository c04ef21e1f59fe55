// The model folder's manifest (`clipn.json`, see models/FORMAT.md): its type, validation, and
// integrity checks. Everything downstream (backend, encoders, prompts) trusts what this module
// returns, so every field it uses is checked here once, with errors that name the folder, the
// file and the field, and say how to fix it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { markerPath, readMarker, sameStamp, sha256File, stampOf, verifiedInProcess, writeMarker } from './file-hashes';
import type { PreprocessConfig } from './preprocess';

export const MANIFEST_FILE = 'clipn.json';
export const MANIFEST_FORMAT = 'clipn-lab-model';
/** Newest format version this engine reads. */
export const MANIFEST_VERSION = 1;

export interface VisionArchitecture {
  image_size: number;
  patch_size: number;
  width: number;
  layers: number;
  heads: number;
}

export interface TextArchitecture {
  context_length: number;
  vocab_size: number;
  width: number;
  layers: number;
  heads: number;
}

/** The manifest's `preprocess` object; preprocess.ts owns the type (it implements it). */
export type PreprocessSpec = PreprocessConfig;

export type GraphName = 'image' | 'image_fp16' | 'image_int8' | 'text' | 'text_no' | 'text_no_kv';

/**
 * Graph files by name. image_int8 (optional): int8 dynamically quantised image encoder, same IO
 * as image. text_no_kv (optional): the no tower after a shared past (FORMAT.md, shared-prefix.ts).
 */
export interface GraphFiles { image: string; image_fp16?: string; image_int8?: string; text: string; text_no: string; text_no_kv?: string }

/** `clipn.json` as models/clipn/export.py writes it. */
export interface ClipnManifest {
  format: typeof MANIFEST_FORMAT;
  format_version: number;
  name: string;
  architecture: {
    config?: string;
    embed_dim: number;
    activation: 'gelu' | 'quick_gelu';
    vision: VisionArchitecture;
    text: TextArchitecture;
    num_prompts: number;
    mlp_ratio?: number;
  };
  embed_dim: number;
  context_length: number;
  num_prompts: number;
  /** Scale used at inference (the spec: 100). */
  logit_scale: number;
  trained_logit_scale?: number;
  preprocess: PreprocessSpec;
  tokenizer: { type: 'clip-bpe'; merges: string };
  graphs: GraphFiles;
  /** Input names per graph and the output name; older folders may lack it (FORMAT.md names). */
  io?: { image: string[]; text: string[]; text_no: string[]; output: string };
  /**
   * 'variable': the text graphs take input_ids [B, L] for any 1 <= L <= context_length.
   * 'context' or absent (folders exported before it existed): L must be context_length.
   */
  text_sequence?: 'variable' | 'context';
  prompts?: string;
  fixture?: string;
  /** The model's own prompt templates (each with `{}`), the default for this model. */
  templates?: string[];
  /** Every file in the folder except clipn.json, relative path -> sha256 hex. */
  files: Record<string, string>;
}

/** A validated manifest with absolute paths. */
export interface ModelFolder {
  folder: string;
  manifestPath: string;
  manifest: ClipnManifest;
  graphs: GraphFiles;
  merges: string;
  prompts?: string;
  fixture?: string;
  /** How the file hashes were established for this load (see LoadManifestOptions.verify). */
  verification: 'hashed' | 'cached' | 'skipped';
}

export interface LoadManifestOptions {
  /**
   * 'full': stream-hash every listed file. 'cached' (default): re-hash only files whose
   * (size, mtime, ctime, inode) changed since they last hashed correctly in this process or,
   * with `cacheDir`, in an earlier one. 'none': only check the files exist.
   * The cache defends against truncated downloads and half-finished copies, not against
   * someone who edits a file and restores its timestamps: use 'full' for that.
   */
  verify?: 'full' | 'cached' | 'none';
  /** Folder for the on-disk "verified" markers (e.g. the extension's global storage). */
  cacheDir?: string;
}

export class ManifestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ManifestError';
  }
}

const EXPORT_HINT = 'point the model setting at a folder written by models/export';
const REFETCH_HINT = 're-export the model with models/export or re-download the model folder';

// ---------------------------------------------------------------------------------------------
// Field validation: small checkers that report the dotted field path.

type Json = unknown;

class Fields {
  constructor(private readonly file: string) {}

  fail(field: string, want: string, got: Json): never {
    const shown = got === undefined ? 'missing' : `got ${JSON.stringify(got)?.slice(0, 80)}`;
    throw new ManifestError(`${this.file}: field "${field}" must be ${want} (${shown}); ${REFETCH_HINT}`);
  }

  get(root: Json, field: string): Json {
    let node: Json = root;
    for (const key of field.split('.')) {
      if (node === null || typeof node !== 'object' || Array.isArray(node)) return undefined;
      node = (node as Record<string, Json>)[key];
    }
    return node;
  }

  object(root: Json, field: string): Record<string, Json> {
    const v = this.get(root, field);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) this.fail(field, 'an object', v);
    return v as Record<string, Json>;
  }

  string(root: Json, field: string): string {
    const v = this.get(root, field);
    if (typeof v !== 'string' || v.length === 0) this.fail(field, 'a non-empty string', v);
    return v;
  }

  optString(root: Json, field: string): string | undefined {
    return this.get(root, field) === undefined ? undefined : this.string(root, field);
  }

  posInt(root: Json, field: string): number {
    const v = this.get(root, field);
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) this.fail(field, 'a positive integer', v);
    return v;
  }

  posNumber(root: Json, field: string): number {
    const v = this.get(root, field);
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(field, 'a positive number', v);
    return v;
  }

  oneOf<T extends string>(root: Json, field: string, allowed: readonly T[]): T {
    const v = this.get(root, field);
    if (typeof v !== 'string' || !allowed.includes(v as T)) this.fail(field, `one of ${allowed.join(', ')}`, v);
    return v as T;
  }

  triple(root: Json, field: string, positive: boolean): [number, number, number] {
    const v = this.get(root, field);
    const ok =
      Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0));
    if (!ok) this.fail(field, `a list of 3 ${positive ? 'positive ' : ''}numbers`, v);
    return v as [number, number, number];
  }

  stringList(root: Json, field: string): string[] {
    const v = this.get(root, field);
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'string' && x.length > 0)) {
      this.fail(field, 'a non-empty list of strings', v);
    }
    return v as string[];
  }

  /** Both spellings must agree where the exporter writes a number twice (top level + architecture). */
  same(field: string, a: number, other: string, b: number): void {
    if (a !== b) {
      throw new ManifestError(`${this.file}: field "${field}" (${a}) disagrees with "${other}" (${b}); ${REFETCH_HINT}`);
    }
  }
}

/** A listed path must be relative and stay inside the folder (a manifest must not reach out). */
function insidePath(folder: string, rel: string, file: string, field: string): string {
  const resolved = path.resolve(folder, rel);
  const relBack = path.relative(folder, resolved);
  if (path.isAbsolute(rel) || relBack.startsWith('..') || path.isAbsolute(relBack) || relBack === '') {
    throw new ManifestError(`${file}: field "${field}" (${JSON.stringify(rel)}) must be a path inside the model folder`);
  }
  return resolved;
}

/** Parses and validates the manifest object; does not touch other files. */
export function validateManifest(raw: Json, manifestPath: string): ClipnManifest {
  const f = new Fields(manifestPath);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ManifestError(`${manifestPath}: must hold a JSON object; ${EXPORT_HINT}`);
  }
  if (f.get(raw, 'format') !== MANIFEST_FORMAT) f.fail('format', `"${MANIFEST_FORMAT}"`, f.get(raw, 'format'));
  const version = f.posInt(raw, 'format_version');
  if (version > MANIFEST_VERSION) {
    throw new ManifestError(
      `${manifestPath}: format_version ${version} is newer than this extension reads (${MANIFEST_VERSION}); update the extension`,
    );
  }
  const name = f.string(raw, 'name');
  f.object(raw, 'architecture');
  const vision: VisionArchitecture = {
    image_size: f.posInt(raw, 'architecture.vision.image_size'),
    patch_size: f.posInt(raw, 'architecture.vision.patch_size'),
    width: f.posInt(raw, 'architecture.vision.width'),
    layers: f.posInt(raw, 'architecture.vision.layers'),
    heads: f.posInt(raw, 'architecture.vision.heads'),
  };
  const text: TextArchitecture = {
    context_length: f.posInt(raw, 'architecture.text.context_length'),
    vocab_size: f.posInt(raw, 'architecture.text.vocab_size'),
    width: f.posInt(raw, 'architecture.text.width'),
    layers: f.posInt(raw, 'architecture.text.layers'),
    heads: f.posInt(raw, 'architecture.text.heads'),
  };
  // The exporter writes embed_dim/num_prompts/context_length both at the top level and inside
  // architecture; FORMAT.md shows one place for each. Accept either, require agreement.
  const pick = (top: string, inner: string): number => {
    const a = f.get(raw, top) !== undefined ? f.posInt(raw, top) : undefined;
    const b = f.get(raw, inner) !== undefined ? f.posInt(raw, inner) : undefined;
    if (a === undefined && b === undefined) f.fail(top, 'a positive integer', undefined);
    if (a !== undefined && b !== undefined) f.same(top, a, inner, b);
    return (a ?? b) as number;
  };
  const embedDim = pick('embed_dim', 'architecture.embed_dim');
  const numPrompts = pick('num_prompts', 'architecture.num_prompts');
  const contextLength = pick('context_length', 'architecture.text.context_length');
  const activation = f.oneOf(raw, 'architecture.activation', ['gelu', 'quick_gelu'] as const);

  const preprocess: PreprocessSpec = {
    size: f.posInt(raw, 'preprocess.size'),
    resize_mode: f.oneOf(raw, 'preprocess.resize_mode', ['shortest'] as const),
    interpolation: f.oneOf(raw, 'preprocess.interpolation', ['bicubic'] as const),
    crop: f.oneOf(raw, 'preprocess.crop', ['center'] as const),
    mean: f.triple(raw, 'preprocess.mean', false),
    std: f.triple(raw, 'preprocess.std', true),
  };
  // The crop is what the image graph sees; a mismatch would only surface as an ORT shape error.
  f.same('preprocess.size', preprocess.size, 'architecture.vision.image_size', vision.image_size);

  if (f.get(raw, 'tokenizer.type') !== 'clip-bpe') f.fail('tokenizer.type', '"clip-bpe"', f.get(raw, 'tokenizer.type'));
  const tokenizer = { type: 'clip-bpe' as const, merges: f.string(raw, 'tokenizer.merges') };

  f.object(raw, 'graphs');
  const graphs: ClipnManifest['graphs'] = {
    image: f.string(raw, 'graphs.image'),
    text: f.string(raw, 'graphs.text'),
    text_no: f.string(raw, 'graphs.text_no'),
  };
  const fp16 = f.optString(raw, 'graphs.image_fp16');
  if (fp16 !== undefined) graphs.image_fp16 = fp16;
  const int8 = f.optString(raw, 'graphs.image_int8');
  if (int8 !== undefined) graphs.image_int8 = int8;
  const kv = f.optString(raw, 'graphs.text_no_kv');
  if (kv !== undefined) graphs.text_no_kv = kv;

  let io: ClipnManifest['io'];
  if (f.get(raw, 'io') !== undefined) {
    io = {
      image: f.stringList(raw, 'io.image'),
      text: f.stringList(raw, 'io.text'),
      text_no: f.stringList(raw, 'io.text_no'),
      output: f.string(raw, 'io.output'),
    };
  }

  const textSequence = f.get(raw, 'text_sequence') === undefined ? undefined : f.oneOf(raw, 'text_sequence', ['variable', 'context'] as const);
  const templates = f.get(raw, 'templates') === undefined ? undefined : f.stringList(raw, 'templates');
  const files = f.object(raw, 'files');
  for (const [rel, digest] of Object.entries(files)) {
    if (typeof digest !== 'string' || !/^[0-9a-f]{64}$/i.test(digest)) f.fail(`files.${rel}`, 'a sha256 hex digest', digest);
  }
  const manifest: ClipnManifest = {
    format: MANIFEST_FORMAT,
    format_version: version,
    name,
    architecture: {
      embed_dim: embedDim,
      activation,
      vision,
      text,
      num_prompts: numPrompts,
    },
    embed_dim: embedDim,
    context_length: contextLength,
    num_prompts: numPrompts,
    logit_scale: f.posNumber(raw, 'logit_scale'),
    preprocess,
    tokenizer,
    graphs,
    files: files as Record<string, string>,
  };
  const config = f.get(raw, 'architecture.config');
  if (typeof config === 'string') manifest.architecture.config = config;
  const mlp = f.get(raw, 'architecture.mlp_ratio');
  if (typeof mlp === 'number') manifest.architecture.mlp_ratio = mlp;
  const trained = f.get(raw, 'trained_logit_scale') === undefined ? undefined : f.posNumber(raw, 'trained_logit_scale');
  if (trained !== undefined) manifest.trained_logit_scale = trained;
  if (io) manifest.io = io;
  if (textSequence) manifest.text_sequence = textSequence;
  const prompts = f.optString(raw, 'prompts');
  if (prompts !== undefined) manifest.prompts = prompts;
  const fixture = f.optString(raw, 'fixture');
  if (fixture !== undefined) manifest.fixture = fixture;
  if (templates) manifest.templates = templates;
  return manifest;
}

// ---------------------------------------------------------------------------------------------
// Checking the listed files (their hashes are remembered: file-hashes.ts).

async function verifyFiles(folder: string, manifestPath: string, manifest: ClipnManifest, opts: LoadManifestOptions): Promise<ModelFolder['verification']> {
  const mode = opts.verify ?? 'cached';
  const marker = mode === 'cached' && opts.cacheDir ? markerPath(opts.cacheDir, folder) : undefined;
  const onDisk = marker ? readMarker(marker) : {};
  let hashedAny = false;
  let markerDirty = false;
  for (const [rel, expected] of Object.entries(manifest.files)) {
    const file = insidePath(folder, rel, manifestPath, `files.${rel}`);
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch {
      throw new ManifestError(`${file}: listed in ${manifestPath} but not found; ${REFETCH_HINT}`);
    }
    if (!st.isFile()) throw new ManifestError(`${file}: listed in ${manifestPath} but is not a file; ${REFETCH_HINT}`);
    if (mode === 'none') continue;
    const want = stampOf(st, expected.toLowerCase());
    if (mode === 'cached' && (sameStamp(verifiedInProcess.get(file), want) || sameStamp(onDisk[rel], want))) {
      verifiedInProcess.set(file, want);
      continue;
    }
    const actual = await sha256File(file);
    hashedAny = true;
    if (actual !== want.sha256) {
      verifiedInProcess.delete(file);
      throw new ManifestError(
        `${file}: sha256 mismatch (expected ${want.sha256}, actual ${actual}); the file is damaged or was changed ` +
          `after export: ${REFETCH_HINT}`,
      );
    }
    verifiedInProcess.set(file, want);
    onDisk[rel] = want;
    markerDirty = true;
  }
  if (marker && markerDirty) writeMarker(marker, onDisk);
  if (mode === 'none') return 'skipped';
  return hashedAny ? 'hashed' : 'cached';
}

// ---------------------------------------------------------------------------------------------

/** A file the manifest refers to: inside the folder, listed in `files` (so it was hashed), present. */
function referenced(folder: string, manifestPath: string, manifest: ClipnManifest, rel: string, field: string): string {
  const file = insidePath(folder, rel, manifestPath, field);
  const key = path.relative(folder, file).split(path.sep).join('/');
  if (!(key in manifest.files) && !(rel in manifest.files)) {
    throw new ManifestError(`${manifestPath}: field "${field}" names ${JSON.stringify(rel)}, which is not listed in "files"; ${REFETCH_HINT}`);
  }
  if (!fs.existsSync(file)) {
    throw new ManifestError(`${file}: named by field "${field}" of ${manifestPath} but not found; ${REFETCH_HINT}`);
  }
  return file;
}

/**
 * Reads `<folder>/clipn.json`, validates it, checks every listed file's sha256 (see
 * LoadManifestOptions.verify) and resolves the paths the engine needs.
 */
export async function loadManifest(folder: string, opts: LoadManifestOptions = {}): Promise<ModelFolder> {
  const dir = path.resolve(folder);
  const manifestPath = path.join(dir, MANIFEST_FILE);
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(dir);
  } catch {
    st = undefined;
  }
  if (!st) throw new ManifestError(`${dir}: model folder not found; ${EXPORT_HINT}`);
  if (!st.isDirectory()) throw new ManifestError(`${dir}: not a folder; ${EXPORT_HINT}`);
  let text: string;
  try {
    text = fs.readFileSync(manifestPath, 'utf8');
  } catch {
    throw new ManifestError(`${manifestPath} not found: ${EXPORT_HINT}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ManifestError(`${manifestPath}: not valid JSON (${(err as Error).message}); ${REFETCH_HINT}`);
  }
  const manifest = validateManifest(raw, manifestPath);
  const ref = (rel: string, field: string) => referenced(dir, manifestPath, manifest, rel, field);
  const graphs: ModelFolder['graphs'] = {
    image: ref(manifest.graphs.image, 'graphs.image'),
    text: ref(manifest.graphs.text, 'graphs.text'),
    text_no: ref(manifest.graphs.text_no, 'graphs.text_no'),
  };
  if (manifest.graphs.image_fp16) graphs.image_fp16 = ref(manifest.graphs.image_fp16, 'graphs.image_fp16');
  if (manifest.graphs.image_int8) graphs.image_int8 = ref(manifest.graphs.image_int8, 'graphs.image_int8');
  if (manifest.graphs.text_no_kv) graphs.text_no_kv = ref(manifest.graphs.text_no_kv, 'graphs.text_no_kv');
  const merges = ref(manifest.tokenizer.merges, 'tokenizer.merges');
  const verification = await verifyFiles(dir, manifestPath, manifest, opts);
  const result: ModelFolder = { folder: dir, manifestPath, manifest, graphs, merges, verification };
  if (manifest.prompts) result.prompts = ref(manifest.prompts, 'prompts');
  if (manifest.fixture) {
    // The fixture is a folder: its files are listed individually under "files".
    const fixture = insidePath(dir, manifest.fixture, manifestPath, 'fixture');
    if (fs.existsSync(fixture)) result.fixture = fixture;
  }
  return result;
}
