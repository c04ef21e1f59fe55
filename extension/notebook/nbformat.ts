// .clipnb files are nbformat 4 JSON, so Jupyter and GitHub open them. This module converts
// between the file bytes and a plain notebook model; serializer.ts only maps that model to
// VS Code's NotebookData. No `vscode` import here, so node:test covers it directly.
//
// Stability: the writer produces exactly what Jupyter writes (keys sorted, indent 1, a final
// newline, sources as lists of lines), so reading a file and writing it back gives the same
// bytes, and saving a notebook twice never shows a diff.

export interface NbOutputItem {
  mime: string;
  data: Uint8Array;
}

/** nbformat output types other than display_data are kept so they write back unchanged. */
export interface NbOutput {
  items: NbOutputItem[];
  outputType?: 'display_data' | 'execute_result' | 'stream' | 'error';
  executionCount?: number | null;
  metadata?: Record<string, unknown>;
}

export interface NbCell {
  kind: 'code' | 'markdown' | 'raw';
  source: string;
  /** Code cells' language (metadata.vscode.languageId, else the notebook's language). */
  language: string;
  /** nbformat cell metadata (without the languageId bookkeeping). */
  metadata: Record<string, unknown>;
  id?: string;
  attachments?: unknown;
  outputs: NbOutput[];
  executionCount?: number | null;
}

export interface NbNotebook {
  cells: NbCell[];
  metadata: Record<string, unknown>;
  nbformatMinor: number;
}

export const DEFAULT_LANGUAGE = 'clipn';
export const STDOUT_MIME = 'application/vnd.code.notebook.stdout';
export const STDERR_MIME = 'application/vnd.code.notebook.stderr';
export const ERROR_MIME = 'application/vnd.code.notebook.error';

/** A file that is not a notebook; the message says where and what is wrong. */
export class NotebookFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotebookFormatError';
  }
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Jupyter stores JSON MIME types as objects, text as (lists of) strings, the rest base64. */
export function isJsonMime(mime: string): boolean {
  return mime === 'application/json' || mime.endsWith('+json');
}
export function isTextMime(mime: string): boolean {
  return mime.startsWith('text/') || mime === 'application/javascript' || mime === 'image/svg+xml';
}

/** nbformat's multiline string: a list of lines, each keeping its "\n". */
export function splitLines(text: string): string[] {
  const out = text.split(/(?<=\n)/);
  return out.length === 1 && out[0] === '' ? [] : out;
}

function joinSource(v: Json | undefined, where: string): string {
  if (v === undefined) return '';
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v.join('');
  throw new NotebookFormatError(`${where} must be a string or a list of strings`);
}

function base64Encode(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

function base64Decode(text: string, where: string): Uint8Array {
  const clean = text.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(clean) || clean.length % 4 !== 0) {
    throw new NotebookFormatError(`${where} is not valid base64`);
  }
  return new Uint8Array(Buffer.from(clean, 'base64'));
}

/** Turns "at position N" of a JSON.parse error into a line and column. */
function jsonErrorWhere(text: string, message: string): string {
  if (/line \d+/.test(message)) return '';
  const m = /position (\d+)/.exec(message);
  if (!m) return '';
  const pos = Number(m[1]);
  const before = text.slice(0, pos).split('\n');
  return ` (line ${before.length}, column ${before[before.length - 1].length + 1})`;
}

// ---------------------------------------------------------------------------------------------
// Reading

function readOutput(o: Json, where: string): NbOutput {
  if (!isObject(o)) throw new NotebookFormatError(`${where} must be an object`);
  const type = o.output_type;
  switch (type) {
    case 'stream': {
      const mime = o.name === 'stderr' ? STDERR_MIME : STDOUT_MIME;
      return { outputType: 'stream', items: [{ mime, data: enc.encode(joinSource(o.text, `${where}.text`)) }] };
    }
    case 'error': {
      const traceback = Array.isArray(o.traceback) ? o.traceback.filter((s): s is string => typeof s === 'string') : [];
      const err = { name: String(o.ename ?? 'Error'), message: String(o.evalue ?? ''), stack: traceback.join('\n') };
      return { outputType: 'error', items: [{ mime: ERROR_MIME, data: enc.encode(JSON.stringify(err)) }] };
    }
    case 'display_data':
    case 'execute_result': {
      if (!isObject(o.data)) throw new NotebookFormatError(`${where}.data must be an object of MIME type -> value`);
      const items = Object.keys(o.data).map((mime) => {
        const v = o.data && (o.data as JsonObject)[mime];
        let data: Uint8Array;
        if (isJsonMime(mime)) data = enc.encode(JSON.stringify(v));
        else if (isTextMime(mime)) data = enc.encode(joinSource(v, `${where}.data["${mime}"]`));
        else data = base64Decode(joinSource(v, `${where}.data["${mime}"]`), `${where}.data["${mime}"]`);
        return { mime, data };
      });
      const out: NbOutput = { outputType: type, items };
      if (isObject(o.metadata) && Object.keys(o.metadata).length > 0) out.metadata = o.metadata;
      if (type === 'execute_result') out.executionCount = typeof o.execution_count === 'number' ? o.execution_count : null;
      return out;
    }
    default:
      throw new NotebookFormatError(`${where}.output_type ${JSON.stringify(type)} is not one of stream, display_data, execute_result, error`);
  }
}

function readCell(c: Json, index: number, defaultLanguage: string): NbCell {
  const where = `cells[${index}]`;
  if (!isObject(c)) throw new NotebookFormatError(`${where} must be an object`);
  const kind = c.cell_type;
  if (kind !== 'code' && kind !== 'markdown' && kind !== 'raw') {
    throw new NotebookFormatError(`${where}.cell_type must be "code", "markdown" or "raw", got ${JSON.stringify(kind)}`);
  }
  if (c.metadata !== undefined && !isObject(c.metadata)) throw new NotebookFormatError(`${where}.metadata must be an object`);
  const metadata: JsonObject = { ...(c.metadata ?? {}) };
  let language = kind === 'code' ? defaultLanguage : kind === 'markdown' ? 'markdown' : 'raw';
  const vs = metadata.vscode;
  if (kind === 'code' && isObject(vs) && typeof vs.languageId === 'string') language = vs.languageId;
  const cell: NbCell = { kind, source: joinSource(c.source, `${where}.source`), language, metadata, outputs: [] };
  if (typeof c.id === 'string') cell.id = c.id;
  if (c.attachments !== undefined) cell.attachments = c.attachments;
  if (kind === 'code') {
    if (c.outputs !== undefined && !Array.isArray(c.outputs)) throw new NotebookFormatError(`${where}.outputs must be a list`);
    cell.outputs = (c.outputs ?? []).map((o, j) => readOutput(o, `${where}.outputs[${j}]`));
    cell.executionCount = typeof c.execution_count === 'number' ? c.execution_count : null;
  }
  return cell;
}

/** Parses .clipnb bytes. Empty content is a new, empty notebook; anything else must be nbformat 4. */
export function parseNotebook(bytes: Uint8Array): NbNotebook {
  let text: string;
  try {
    text = dec.decode(bytes);
  } catch {
    throw new NotebookFormatError('the file is not UTF-8 text, so it is not a notebook (nbformat 4 JSON)');
  }
  if (text.trim() === '') return { cells: [], metadata: {}, nbformatMinor: 4 };
  let raw: Json;
  try {
    raw = JSON.parse(text) as Json;
  } catch (err) {
    const msg = (err as Error).message;
    throw new NotebookFormatError(`the file is not valid JSON${jsonErrorWhere(text, msg)}: ${msg}`);
  }
  if (!isObject(raw)) throw new NotebookFormatError('the file must hold a JSON object with "cells", "metadata" and "nbformat"');
  if (raw.nbformat !== 4) {
    throw new NotebookFormatError(`"nbformat" must be 4 (this reads nbformat 4 notebooks), got ${JSON.stringify(raw.nbformat ?? null)}`);
  }
  if (!Array.isArray(raw.cells)) throw new NotebookFormatError('"cells" must be a list');
  if (raw.metadata !== undefined && !isObject(raw.metadata)) throw new NotebookFormatError('"metadata" must be an object');
  const metadata = raw.metadata ?? {};
  const info = metadata.language_info;
  const defaultLanguage = isObject(info) && typeof info.name === 'string' ? info.name : DEFAULT_LANGUAGE;
  return {
    cells: raw.cells.map((c, i) => readCell(c, i, defaultLanguage)),
    metadata,
    nbformatMinor: typeof raw.nbformat_minor === 'number' ? raw.nbformat_minor : 4,
  };
}

// ---------------------------------------------------------------------------------------------
// Writing

function writeOutput(o: NbOutput): JsonObject {
  const first = o.items[0];
  const text = (item: NbOutputItem) => dec.decode(item.data);
  if (o.outputType === 'error' || (o.items.length === 1 && first.mime === ERROR_MIME)) {
    let err: { name?: string; message?: string; stack?: string } = {};
    try {
      err = JSON.parse(text(first));
    } catch {
      err = { message: text(first) };
    }
    return { output_type: 'error', ename: err.name ?? 'Error', evalue: err.message ?? '', traceback: err.stack ? err.stack.split('\n') : [] };
  }
  if (o.items.length > 0 && o.items.every((i) => i.mime === STDOUT_MIME || i.mime === STDERR_MIME)) {
    return { output_type: 'stream', name: first.mime === STDERR_MIME ? 'stderr' : 'stdout', text: splitLines(o.items.map(text).join('')) };
  }
  const data: JsonObject = {};
  for (const item of o.items) {
    if (isJsonMime(item.mime)) {
      try {
        data[item.mime] = JSON.parse(text(item)) as Json;
        continue;
      } catch {
        /* not JSON after all: keep the bytes */
      }
    }
    data[item.mime] = isTextMime(item.mime) ? splitLines(text(item)) : base64Encode(item.data);
  }
  const out: JsonObject = { output_type: o.outputType === 'execute_result' ? 'execute_result' : 'display_data', data, metadata: (o.metadata ?? {}) as JsonObject };
  if (o.outputType === 'execute_result') out.execution_count = o.executionCount ?? null;
  return out;
}

function writeCell(c: NbCell, defaultLanguage: string): JsonObject {
  const metadata: JsonObject = JSON.parse(JSON.stringify(c.metadata ?? {}));
  if (c.kind === 'code') {
    // Record the language only where it differs from the notebook's, or where the file had it.
    const vs = isObject(metadata.vscode) ? metadata.vscode : undefined;
    if (c.language !== defaultLanguage || (vs && 'languageId' in vs)) metadata.vscode = { ...(vs ?? {}), languageId: c.language };
  }
  const cell: JsonObject = { cell_type: c.kind, metadata, source: splitLines(c.source) };
  if (c.id !== undefined) cell.id = c.id;
  if (c.attachments !== undefined) cell.attachments = c.attachments as Json;
  if (c.kind === 'code') {
    cell.execution_count = c.executionCount ?? null;
    cell.outputs = c.outputs.map(writeOutput);
  }
  return cell;
}

function sortKeys(v: Json): Json {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (isObject(v)) {
    const out: JsonObject = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeys(v[k]);
    return out;
  }
  return v;
}

/** Writes nbformat 4 exactly as Jupyter does (sorted keys, indent 1, trailing newline). */
export function serializeNotebook(nb: NbNotebook): Uint8Array {
  const metadata = (nb.metadata ?? {}) as JsonObject;
  const info = metadata.language_info;
  const defaultLanguage = isObject(info) && typeof info.name === 'string' ? info.name : DEFAULT_LANGUAGE;
  const doc: JsonObject = {
    cells: nb.cells.map((c) => writeCell(c, defaultLanguage)),
    metadata,
    nbformat: 4,
    nbformat_minor: nb.nbformatMinor,
  };
  return enc.encode(JSON.stringify(sortKeys(doc), null, 1) + '\n');
}

/** The metadata a new CLIPN notebook starts with (its default cell language). */
export function newNotebookMetadata(): JsonObject {
  return { language_info: { name: DEFAULT_LANGUAGE } };
}
