// Parses one `clipn` cell (YAML) and checks it against schema.ts. Every problem carries the
// line and column in the cell, so the editor squiggles it before running and the kernel's
// failure names the same place. Used by the extension (diagnostics) and the kernel (runs).
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { Node, Pair, YAMLMap } from 'yaml';
import type { CellKind } from '../protocol';
import { defaultName, isCellKind, KINDS, kindSpec, type FieldSpec, type Shape } from './schema';

/** 1-based line and column in the cell's text. */
export interface Position {
  line: number;
  column: number;
}

export interface Diagnostic {
  message: string;
  severity: 'error' | 'warning';
  start: Position;
  end: Position;
}

/** A reference to another cell's definition, with where it is written. */
export interface CellRef {
  key: string;
  name: string;
  kind: CellKind;
  start: Position;
  end: Position;
}

export interface ParsedCell {
  /** Blank or comment-only: nothing to run, nothing wrong. */
  empty: boolean;
  kind?: CellKind;
  /** The name this cell defines (explicit or the kind's default). */
  name?: string;
  /** The cell's settings as plain values (valid only when there are no errors). */
  values: Record<string, unknown>;
  refs: CellRef[];
  diagnostics: Diagnostic[];
}

const KIND_LIST = KINDS.map((k) => `\`${k.kind}:\``).join(', ');

class Checker {
  readonly diagnostics: Diagnostic[] = [];
  readonly refs: CellRef[] = [];
  constructor(private readonly lines: LineCounter, private readonly length: number) {}

  pos(offset: number): Position {
    const p = this.lines.linePos(Math.max(0, Math.min(offset, this.length)));
    return { line: Math.max(1, p.line), column: Math.max(1, p.col) };
  }

  report(node: Node | null | undefined, message: string, severity: 'error' | 'warning' = 'error'): void {
    const range = node?.range ?? [0, 0, 0];
    const end = range[1] > range[0] ? range[1] : range[0] + 1;
    this.diagnostics.push({ message, severity, start: this.pos(range[0]), end: this.pos(end) });
  }

  /** The JS value of a node if it has one of the shapes, else reports and returns undefined. */
  shaped(node: Node | null, field: FieldSpec, where: string): unknown {
    const shapes = field.accepts;
    const describe = shapes.map(shapeWord).join(' or ');
    if (isScalar(node)) {
      const v = node.value;
      const ok =
        (typeof v === 'string' && shapes.includes('string')) ||
        (typeof v === 'boolean' && shapes.includes('boolean')) ||
        (typeof v === 'number' && (shapes.includes('number') || (shapes.includes('integer') && Number.isInteger(v))));
      if (!ok) {
        this.report(node, `${where} must be ${describe}, got ${v === null ? 'nothing' : JSON.stringify(v)}`);
        return undefined;
      }
      if (typeof v === 'string') this.checkString(node, v, field, where, false);
      if (typeof v === 'number' && field.min !== undefined && v < field.min) this.report(node, `${where} must be at least ${field.min}, got ${v}`);
      return v;
    }
    if (isSeq(node)) {
      const want = shapes.includes('string-list') ? 'string' : shapes.includes('integer-list') ? 'integer' : undefined;
      if (!want) {
        this.report(node, `${where} must be ${describe}, not a list`);
        return undefined;
      }
      if (node.items.length === 0) this.report(node, `${where} is an empty list; give at least one item`);
      const out: unknown[] = [];
      node.items.forEach((item, i) => {
        const it = item as Node;
        const v = isScalar(it) ? it.value : undefined;
        const ok = want === 'string' ? typeof v === 'string' : typeof v === 'number' && Number.isInteger(v);
        if (!ok) this.report(it, `${where}[${i}] must be ${want === 'string' ? 'a string' : 'an integer'}`);
        else if (typeof v === 'string') this.checkString(it, v, field, `${where}[${i}]`, true);
        else if (field.min !== undefined && (v as number) < field.min) this.report(it, `${where}[${i}] must be at least ${field.min}`);
        out.push(v);
      });
      return out;
    }
    if (isMap(node)) {
      if (!shapes.includes('object')) {
        this.report(node, `${where} must be ${describe}, not a mapping`);
        return undefined;
      }
      return this.mapping(node, field.fields ?? [], where);
    }
    this.report(node, `${where} must be ${describe}`);
    return undefined;
  }

  private checkString(node: Node, v: string, field: FieldSpec, where: string, inList: boolean): void {
    if (field.ref) {
      const range = node.range ?? [0, 0, 0];
      this.refs.push({ key: field.key, name: v, kind: field.ref, start: this.pos(range[0]), end: this.pos(range[1]) });
      return;
    }
    // A field with both names a choice as one string (`pool: learned`) or lists templates.
    const both = field.values !== undefined && field.template === true;
    if (field.values && !(both && inList) && !field.values.includes(v)) {
      this.report(node, `${where}: ${JSON.stringify(v)} is not one of ${field.values.join(', ')}${both ? ' (or give a list of templates with {})' : ''}`);
    }
    if (field.template && !(both && !inList) && !v.includes('{}')) {
      this.report(node, `${where}: template ${JSON.stringify(v)} has no {} for the class name`);
    }
  }

  /** Checks a mapping's keys against the fields; returns the plain values of the valid ones. */
  mapping(map: YAMLMap, fields: readonly FieldSpec[], where: string, keyNode?: Node): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const present = new Map<string, Pair>();
    for (const pair of map.items) {
      const key = pair.key as Node;
      const k = isScalar(key) ? String(key.value) : undefined;
      const field = fields.find((f) => f.key === k);
      if (!field || k === undefined) {
        const known = fields.map((f) => f.key).join(', ');
        const hint = k !== undefined ? suggest(k, fields.map((f) => f.key)) : '';
        this.report(key, `unknown key ${JSON.stringify(k ?? '?')} in ${where}${hint} (keys: ${known})`);
        continue;
      }
      present.set(k, pair);
      const v = this.shaped(pair.value as Node | null, field, `${where}.${k}`);
      if (v !== undefined) out[k] = v;
    }
    const groups = new Set(fields.flatMap((f) => (f.oneOf ? [f.oneOf] : [])));
    for (const g of groups) {
      const members = fields.filter((f) => f.oneOf === g).map((f) => f.key);
      const given = members.filter((m) => present.has(m));
      if (given.length === 0) this.report(keyNode ?? map, `${where} needs one of ${members.join(', ')}`);
      for (const extra of given.slice(1)) {
        this.report(present.get(extra)!.key as Node, `${where}: give only one of ${members.join(', ')} (${given[0]} is already set)`);
      }
    }
    for (const f of fields) {
      if (f.required && !present.has(f.key)) this.report(keyNode ?? map, `${where} needs \`${f.key}:\` (${f.doc.split('.')[0].toLowerCase()})`);
    }
    return out;
  }
}

function shapeWord(s: Shape): string {
  return { string: 'a string', integer: 'an integer', number: 'a number', boolean: 'true or false', 'string-list': 'a list of strings', 'integer-list': 'a list of integers', object: 'a mapping' }[s];
}

/** " (did you mean x?)" for a near miss. */
function suggest(word: string, options: string[]): string {
  const dist = (a: string, b: string) => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0][j] = j;
    for (let i = 1; i <= a.length; i++)
      for (let j = 1; j <= b.length; j++) d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    return d[a.length][b.length];
  };
  const best = options.map((o) => [o, dist(word.toLowerCase(), o)] as const).sort((x, y) => x[1] - y[1])[0];
  return best && best[1] <= 2 ? ` (did you mean \`${best[0]}\`?)` : '';
}

/** Parses and validates one cell's text. */
export function parseCell(source: string): ParsedCell {
  const lines = new LineCounter();
  const doc = parseDocument(source, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const check = new Checker(lines, source.length);
  const result: ParsedCell = { empty: false, values: {}, refs: check.refs, diagnostics: check.diagnostics };
  for (const err of doc.errors) {
    check.diagnostics.push({ message: `YAML: ${err.message.split('\n')[0]}`, severity: 'error', start: check.pos(err.pos[0]), end: check.pos(Math.max(err.pos[1], err.pos[0] + 1)) });
  }
  if (doc.errors.length > 0) return result;
  const root = doc.contents as Node | null;
  if (root === null || (isScalar(root) && root.value === null)) {
    result.empty = true;
    return result;
  }
  if (!isMap(root) || root.items.length === 0) {
    check.report(root, `a cell is one of ${KIND_LIST} followed by its settings`);
    return result;
  }
  const [first, ...rest] = root.items;
  for (const extra of rest) check.report(extra.key as Node, 'one cell does one thing: put this in a cell of its own');
  const keyNode = first.key as Node;
  const kind = isScalar(keyNode) ? String(keyNode.value) : '';
  if (!isCellKind(kind)) {
    check.report(keyNode, `unknown cell kind ${JSON.stringify(kind)}${suggest(kind, KINDS.map((k) => k.kind))}; a cell starts with one of ${KIND_LIST}`);
    return result;
  }
  result.kind = kind;
  const spec = kindSpec(kind)!;
  const body = first.value as Node | null;
  if (body !== null && !(isScalar(body) && body.value === null) && !isMap(body)) {
    check.report(body, `\`${kind}:\` takes indented settings (key: value lines) below it`);
    return result;
  }
  const map = isMap(body) ? body : undefined;
  result.values = map ? check.mapping(map, spec.fields, kind, keyNode) : checkEmpty(check, spec.fields, kind, keyNode);
  result.name = typeof result.values.name === 'string' ? result.values.name : defaultName(kind);
  return result;
}

/** A kind with no settings: only its required keys and one-of groups can be wrong. */
function checkEmpty(check: Checker, fields: readonly FieldSpec[], kind: string, keyNode: Node): Record<string, unknown> {
  const missing = fields.filter((f) => f.required).map((f) => f.key);
  const groups = [...new Set(fields.flatMap((f) => (f.oneOf ? [f.oneOf] : [])))];
  for (const g of groups) missing.push(`one of ${fields.filter((f) => f.oneOf === g).map((f) => f.key).join('/')}`);
  if (missing.length > 0) check.report(keyNode, `${kind} needs ${missing.join(', ')}`);
  return {};
}
