// ID and OOD image sets: a folder of class folders (torchvision ImageFolder's layout), a glob,
// or a .csv/.json list. Every file is read once here (sha256 of its bytes) so unreadable files
// are reported before any encoding starts, duplicates can be flagged, and the embedding cache
// can reuse the hashes instead of reading every image a second time. One bad entry becomes a
// `skipped` record with its reason; only a set with nothing usable in it is an error.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { fsReason, globFiles, isGlob, walk } from './glob';
import type { SkippedEntry } from './glob';
import { sha256File } from './file-hashes';

export type { SkippedEntry } from './glob';

/** Extensions the decoder (sharp's prebuilt libvips) reads; compared lower-cased. */
export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.jpe', '.jfif', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif'];
const IMAGE_EXT_SET = new Set(IMAGE_EXTENSIONS);

export interface DatasetItem {
  /** Absolute path. */
  path: string;
  /** Index into classNames; absent for unlabelled files (flat folders, lists without labels). */
  label?: number;
  className?: string;
  /** sha256 hex of the file's bytes (absent when loaded with hash: false). */
  sha256?: string;
}

export type DatasetKind = 'folders' | 'flat' | 'glob' | 'csv' | 'json';

export interface ImageDataset {
  /** What the user gave (folder, glob or list file), for messages and tables. */
  source: string;
  kind: DatasetKind;
  /** What was searched, in words (shown when the set is empty). */
  searched: string;
  items: DatasetItem[];
  /** Sorted class names; labels index into it. */
  classNames: string[];
  skipped: SkippedEntry[];
  warnings: string[];
}

export interface DatasetOptions {
  /** 'id' flags a single-class set (ATD and MSP degenerate); default 'ood'. */
  role?: 'id' | 'ood';
  /** Base for relative folders and globs (default process.cwd()). */
  cwd?: string;
  /** Hash every file (default true): finds unreadable files and duplicates, feeds the cache. */
  hash?: boolean;
  /** Files read at once while hashing (default 8). */
  concurrency?: number;
}

export class DatasetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetError';
  }
}

const LAYOUT_HINT = 'an image set is a folder of class folders, a glob such as "imgs/**/*.jpg", or a .csv/.json list with path,label';
const MAX_DUPLICATE_WARNINGS = 20;

// ---------------------------------------------------------------------------------------------
// List files

/** RFC 4180 CSV: quoted fields ("" escapes a quote) may hold commas and newlines. */
export function parseCsv(text: string, source = 'CSV'): Array<{ fields: string[]; line: number }> {
  const rows: Array<{ fields: string[]; line: number }> = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  const s = text.replace(/^\uFEFF/, '');
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quoted) {
      if (c === '"' && s[i + 1] === '"') field += s[++i];
      else if (c === '"') quoted = false;
      else {
        if (c === '\n') line++;
        field += c;
      }
    } else if (c === '"' && field.length === 0) {
      quoted = true;
    } else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && s[i + 1] === '\n') i++;
      row.push(field);
      if (row.length > 1 || row[0] !== '') rows.push({ fields: row, line: rowLine });
      row = [];
      field = '';
      rowLine = ++line;
    } else {
      field += c;
    }
  }
  if (quoted) throw new DatasetError(`${source}: line ${rowLine}: a quoted field is never closed`);
  row.push(field);
  if (row.length > 1 || row[0] !== '') rows.push({ fields: row, line: rowLine });
  return rows;
}

interface ListEntry {
  path: string;
  className?: string;
}

function listEntries(file: string, text: string, kind: 'csv' | 'json', skipped: SkippedEntry[], warnings: string[]): ListEntry[] {
  const dir = path.dirname(file);
  const out: ListEntry[] = [];
  const add = (where: string, p: unknown, cls: unknown): void => {
    if (typeof p !== 'string' || p.trim() === '') {
      skipped.push({ path: `${file} ${where}`, reason: 'no path' });
      return;
    }
    const entry: ListEntry = { path: path.resolve(dir, p.trim()) };
    if (typeof cls === 'number' || (typeof cls === 'string' && cls.trim() !== '')) {
      entry.className = String(cls).trim();
    } else if (cls !== undefined && cls !== null && cls !== '') {
      skipped.push({ path: entry.path, reason: `${where}: label ${JSON.stringify(cls)} is not a name or a number` });
      return;
    }
    out.push(entry);
  };
  if (kind === 'json') {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw new DatasetError(`${file}: not valid JSON (${(err as Error).message}); expected [{"path": ..., "label": ...}]`);
    }
    if (!Array.isArray(data)) throw new DatasetError(`${file}: must hold a JSON list such as [{"path": "a.jpg", "label": "cat"}]`);
    data.forEach((e, i) => {
      if (e === null || typeof e !== 'object' || Array.isArray(e)) {
        skipped.push({ path: `${file} entry ${i}`, reason: 'not an object with "path"' });
        return;
      }
      const o = e as Record<string, unknown>;
      add(`entry ${i}`, o.path, o.class ?? o.label);
    });
    return out;
  }
  const rows = parseCsv(text, file);
  if (rows.length === 0) throw new DatasetError(`${file}: empty CSV; it needs a header such as "path,label"`);
  const header = rows[0].fields.map((h) => h.trim().toLowerCase());
  const col = (name: string) => header.indexOf(name);
  if (col('path') < 0) {
    throw new DatasetError(`${file}: the CSV header must name a "path" column (got ${rows[0].fields.join(',')}); write e.g. "path,label"`);
  }
  if (col('class') >= 0 && col('label') >= 0) warnings.push(`${file}: has both "class" and "label" columns; the class names come from "class"`);
  const labelCol = col('class') >= 0 ? col('class') : col('label');
  for (const { fields, line } of rows.slice(1)) {
    if (fields.length !== header.length) {
      skipped.push({ path: `${file} line ${line}`, reason: `${fields.length} fields, the header has ${header.length}` });
      continue;
    }
    add(`line ${line}`, fields[col('path')], labelCol >= 0 ? fields[labelCol] : undefined);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

interface Candidate {
  path: string;
  className?: string;
}

function sortNames(names: Iterable<string>): string[] {
  return [...new Set(names)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Hashes candidates (bounded concurrency); unreadable files move to `skipped`. */
async function hashAll(cands: Candidate[], concurrency: number, skipped: SkippedEntry[]): Promise<Array<string | undefined>> {
  const hashes = new Array<string | undefined>(cands.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cands.length) {
      const i = next++;
      try {
        hashes[i] = await sha256File(cands[i].path);
      } catch (err) {
        skipped.push({ path: cands[i].path, reason: fsReason(err) });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, cands.length)) }, worker));
  return hashes;
}

/** Images that are byte-identical, as warnings naming both paths. */
function duplicateWarnings(items: DatasetItem[]): string[] {
  const first = new Map<string, string>();
  const out: string[] = [];
  let extra = 0;
  for (const it of items) {
    if (!it.sha256) continue;
    const seen = first.get(it.sha256);
    if (seen === undefined) first.set(it.sha256, it.path);
    else if (out.length < MAX_DUPLICATE_WARNINGS) out.push(`duplicate image: ${it.path} has the same content as ${seen} (sha256 ${it.sha256.slice(0, 12)})`);
    else extra++;
  }
  if (extra > 0) out.push(`... and ${extra} more duplicate images`);
  return out;
}

/** Images present in two sets (e.g. an OOD image that is also in the ID set), as warnings. */
export function crossSetDuplicates(a: ImageDataset, b: ImageDataset): string[] {
  const inA = new Map<string, string>();
  for (const it of a.items) if (it.sha256 && !inA.has(it.sha256)) inA.set(it.sha256, it.path);
  const out: string[] = [];
  for (const it of b.items) {
    const other = it.sha256 ? inA.get(it.sha256) : undefined;
    if (other !== undefined) out.push(`${it.path} (in ${b.source}) has the same content as ${other} (in ${a.source})`);
  }
  return out;
}

async function finish(
  source: string, kind: DatasetKind, searched: string, cands: Candidate[], classNames: string[],
  skipped: SkippedEntry[], warnings: string[], opts: DatasetOptions,
): Promise<ImageDataset> {
  const images: Candidate[] = [];
  for (const c of cands) {
    const ext = path.extname(c.path).toLowerCase();
    if (IMAGE_EXT_SET.has(ext)) images.push(c);
    else skipped.push({ path: c.path, reason: `not an image file (extension ${ext ? `"${ext}"` : 'missing'}; reads ${IMAGE_EXTENSIONS.join(' ')})` });
  }
  const hashes = opts.hash === false ? undefined : await hashAll(images, opts.concurrency ?? 8, skipped);
  if (!hashes) {
    // Without hashing, still make sure each file is there and readable.
    for (let i = images.length - 1; i >= 0; i--) {
      try {
        const st = await fsp.stat(images[i].path);
        if (!st.isFile()) throw Object.assign(new Error('not a file'), { code: 'EISDIR' });
      } catch (err) {
        skipped.push({ path: images[i].path, reason: fsReason(err) });
        images.splice(i, 1);
      }
    }
  }
  const labelOf = new Map(classNames.map((n, i) => [n, i]));
  const items: DatasetItem[] = [];
  images.forEach((c, i) => {
    if (hashes && hashes[i] === undefined) return;
    const item: DatasetItem = { path: c.path };
    if (c.className !== undefined) {
      item.className = c.className;
      item.label = labelOf.get(c.className);
    }
    if (hashes) item.sha256 = hashes[i];
    items.push(item);
  });
  if (items.length === 0) {
    const why = skipped.slice(0, 3).map((s) => `${s.path}: ${s.reason}`).join('; ');
    throw new DatasetError(`${source}: no images found (searched ${searched})${skipped.length ? `; ${skipped.length} entries skipped, e.g. ${why}` : ''}`);
  }
  const counts = new Map<string, number>();
  for (const it of items) if (it.className !== undefined) counts.set(it.className, (counts.get(it.className) ?? 0) + 1);
  for (const name of classNames) if (!counts.has(name)) warnings.push(`${source}: class "${name}" has no usable images`);
  if (opts.role === 'id' && classNames.length === 1) {
    warnings.push(`${source}: only one ID class ("${classNames[0]}"): MSP is always 1 and CLIPN-ATD equals CTW; use two or more classes for a meaningful comparison`);
  }
  if (classNames.length > 0 && classNames.every((n) => /^-?\d+(\.\d+)?$/.test(n))) {
    warnings.push(`${source}: the class names are numbers, so prompts read like "a photo of a ${classNames[0]}."; give class names instead`);
  }
  warnings.push(...duplicateWarnings(items));
  return { source, kind, searched, items, classNames, skipped, warnings };
}

async function fromFolder(source: string, root: string, opts: DatasetOptions): Promise<ImageDataset> {
  const skipped: SkippedEntry[] = [];
  const warnings: string[] = [];
  let entries;
  try {
    entries = await fsp.readdir(root, { withFileTypes: true });
  } catch (err) {
    throw new DatasetError(`${source}: cannot read folder (${fsReason(err)})`);
  }
  const isDir = async (name: string): Promise<boolean> => {
    try {
      return (await fsp.stat(path.join(root, name))).isDirectory();
    } catch {
      return false;
    }
  };
  const classes: string[] = [];
  for (const e of entries) if (!e.name.startsWith('.') && (e.isDirectory() || (e.isSymbolicLink() && (await isDir(e.name))))) classes.push(e.name);
  const exts = IMAGE_EXTENSIONS.join(' ');
  if (classes.length === 0) {
    // No class folders: a flat folder of images (typical for an OOD set).
    const files = await walk(root, 0, skipped);
    return finish(source, 'flat', `${root} for image files (${exts})`, files.map((f) => ({ path: f.abs })), [], skipped, warnings, opts);
  }
  const classNames = sortNames(classes);
  const cands: Candidate[] = [];
  for (const name of classNames) {
    for (const f of await walk(path.join(root, name), Infinity, skipped)) cands.push({ path: f.abs, className: name });
  }
  for (const e of entries) {
    if (!e.name.startsWith('.') && !classes.includes(e.name)) skipped.push({ path: path.join(root, e.name), reason: 'not inside a class folder' });
  }
  return finish(source, 'folders', `the class folders of ${root} (${classNames.length}: ${classNames.slice(0, 5).join(', ')}${classNames.length > 5 ? ', ...' : ''}) for image files (${exts})`, cands, classNames, skipped, warnings, opts);
}

async function fromGlob(pattern: string, cwd: string, opts: DatasetOptions): Promise<ImageDataset> {
  const skipped: SkippedEntry[] = [];
  const { root, rest, files } = await globFiles(pattern, cwd, skipped);
  // Files in a sub-folder of the glob's literal base take that folder's name as their class,
  // as folders-as-classes does: "id/*/*.jpg" labels by the folder that "*" matched.
  const cands: Candidate[] = files.map((f) => (f.rel.includes('/') ? { path: f.abs, className: f.rel.split('/')[0] } : { path: f.abs }));
  const classNames = sortNames(cands.flatMap((c) => (c.className ? [c.className] : [])));
  return finish(pattern, 'glob', `files matching "${rest}" under ${root}`, cands, classNames, skipped, [], opts);
}

async function fromList(source: string, file: string, kind: 'csv' | 'json', opts: DatasetOptions): Promise<ImageDataset> {
  const skipped: SkippedEntry[] = [];
  const warnings: string[] = [];
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    throw new DatasetError(`${source}: cannot read list (${fsReason(err)})`);
  }
  const entries = listEntries(file, text, kind, skipped, warnings);
  const classNames = sortNames(entries.flatMap((e) => (e.className !== undefined ? [e.className] : [])));
  return finish(source, kind, `${entries.length} entries listed in ${file}`, entries, classNames, skipped, warnings, opts);
}

/** Loads an image set from a folder (class folders or flat), a glob, or a .csv/.json list. */
export async function loadDataset(spec: string, opts: DatasetOptions = {}): Promise<ImageDataset> {
  if (typeof spec !== 'string' || spec.trim() === '') throw new DatasetError(`image set: no path given; ${LAYOUT_HINT}`);
  const cwd = opts.cwd ?? process.cwd();
  const abs = path.resolve(cwd, spec);
  let st;
  try {
    st = await fsp.stat(abs);
  } catch {
    st = undefined;
  }
  if (!st && isGlob(spec)) return fromGlob(spec, cwd, opts);
  if (!st) throw new DatasetError(`${spec}: folder not found (${abs}); ${LAYOUT_HINT}`);
  if (st.isDirectory()) return fromFolder(spec, abs, opts);
  const ext = path.extname(abs).toLowerCase();
  if (ext === '.csv' || ext === '.json') return fromList(spec, abs, ext === '.csv' ? 'csv' : 'json', opts);
  throw new DatasetError(`${spec}: is a file but not a .csv or .json list; ${LAYOUT_HINT}`);
}
