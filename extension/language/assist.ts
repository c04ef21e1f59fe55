// Completion and hover for `clipn` cells, from the same schema that validates them. Works on
// the raw text line by line (indentation gives the key path), because the text being typed is
// usually not valid YAML yet. No `vscode` import: unit tests call it directly.
import type { CellKind } from '../protocol';
import { fieldDoc, fieldsAt, KINDS, kindSpec, type FieldSpec } from './schema';

export interface CompletionEntry {
  label: string;
  kind: 'cell' | 'key' | 'value' | 'name';
  /** Text to insert (a key gets ": " or a new indented line after it). */
  insertText: string;
  doc: string;
}

export interface HoverInfo {
  doc: string;
  /** 1-based line, 1-based start and end columns of the word. */
  line: number;
  start: number;
  end: number;
}

const KEY_LINE = /^(\s*)(?:-\s+)?([A-Za-z_][\w-]*)\s*:/;

function indentOf(line: string): number {
  return /^\s*/.exec(line)![0].length;
}

/** The keys enclosing `lineIndex` at `indent` (outermost first), found by scanning upwards. */
function parentPath(lines: readonly string[], lineIndex: number, indent: number): string[] {
  const path: string[] = [];
  let limit = indent;
  for (let i = lineIndex - 1; i >= 0 && limit > 0; i--) {
    const text = lines[i];
    if (text.trim() === '' || text.trim().startsWith('#')) continue;
    const m = KEY_LINE.exec(text);
    const ind = indentOf(text);
    if (m && ind < limit && !text.trimStart().startsWith('-')) {
      path.unshift(m[2]);
      limit = ind;
    }
  }
  return path;
}

function fieldAt(path: readonly string[], key: string): FieldSpec | undefined {
  return fieldsAt(path)?.find((f) => f.key === key);
}

function keyEntry(f: FieldSpec, indent: number): CompletionEntry {
  const nested = f.accepts.length === 1 && f.accepts[0] === 'object';
  const list = f.accepts.length === 1 && f.accepts[0].endsWith('-list');
  const insertText = nested ? `${f.key}:\n${' '.repeat(indent + 2)}` : list ? `${f.key}: [` : `${f.key}: `;
  return { label: f.key, kind: 'key', insertText, doc: fieldDoc(f) };
}

/**
 * Completions at (line, column), both 1-based. `names` lists, per kind, the names defined by
 * cells above this one (for reference values).
 */
export function completionsAt(source: string, line: number, column: number, names: Partial<Record<CellKind, string[]>> = {}): CompletionEntry[] {
  const lines = source.split('\n');
  const text = lines[line - 1] ?? '';
  const prefix = text.slice(0, column - 1);
  const valueMatch = /^(\s*)(?:-\s+)?([A-Za-z_][\w-]*)\s*:\s*(.*)$/.exec(prefix);
  if (valueMatch) {
    const path = parentPath(lines, line - 1, valueMatch[1].length);
    return valueEntries(fieldAt(path, valueMatch[2]), names);
  }
  const itemMatch = /^(\s*)-\s*[\w-]*$/.exec(prefix);
  if (itemMatch) {
    // A block-list item: its key is the nearest line above with a smaller indent, or the same
    // indent and no dash (YAML allows "key:\n- item").
    const ind = itemMatch[1].length;
    for (let i = line - 2; i >= 0; i--) {
      const m = KEY_LINE.exec(lines[i]);
      if (m && !lines[i].trimStart().startsWith('-') && indentOf(lines[i]) <= ind) {
        return valueEntries(fieldAt(parentPath(lines, i, indentOf(lines[i])), m[2]), names);
      }
    }
    return [];
  }
  const keyMatch = /^(\s*)[\w-]*$/.exec(prefix);
  if (!keyMatch) return [];
  const indent = keyMatch[1].length;
  if (indent === 0) {
    return KINDS.map((k) => ({ label: k.kind, kind: 'cell' as const, insertText: k.example.replace(/^\w+:\n/, `${k.kind}:\n`), doc: `${k.doc}\n\n\`\`\`yaml\n${k.example}\`\`\`` }));
  }
  const path = parentPath(lines, line - 1, indent);
  const fields = fieldsAt(path) ?? [];
  // Keys already written at this level of this mapping are not offered again.
  const present = new Set<string>();
  for (let i = 0; i < lines.length; i++) {
    const m = KEY_LINE.exec(lines[i]);
    if (i !== line - 1 && m && indentOf(lines[i]) === indent && parentPath(lines, i, indent).join('.') === path.join('.')) present.add(m[2]);
  }
  return fields.filter((f) => !present.has(f.key)).map((f) => keyEntry(f, indent));
}

function valueEntries(field: FieldSpec | undefined, names: Partial<Record<CellKind, string[]>>): CompletionEntry[] {
  if (!field) return [];
  if (field.ref) {
    return (names[field.ref] ?? []).map((n) => ({ label: n, kind: 'name' as const, insertText: n, doc: `The ${field.ref} defined as \`${n}\` above.` }));
  }
  if (field.values) return field.values.map((v) => ({ label: v, kind: 'value' as const, insertText: v, doc: fieldDoc(field) }));
  if (field.accepts.includes('boolean')) return ['true', 'false'].map((v) => ({ label: v, kind: 'value' as const, insertText: v, doc: fieldDoc(field) }));
  return [];
}

/** Documentation for the key under (line, column), both 1-based. */
export function hoverAt(source: string, line: number, column: number): HoverInfo | undefined {
  const lines = source.split('\n');
  const text = lines[line - 1];
  if (text === undefined) return undefined;
  const m = KEY_LINE.exec(text);
  if (!m) return undefined;
  const start = text.indexOf(m[2], m[1].length) + 1;
  const end = start + m[2].length;
  if (column < start || column > end) return undefined;
  const indent = m[1].length;
  if (indent === 0) {
    const spec = kindSpec(m[2]);
    return spec ? { doc: `**${spec.kind}:** ${spec.doc}\n\n\`\`\`yaml\n${spec.example}\`\`\``, line, start, end } : undefined;
  }
  const field = fieldAt(parentPath(lines, line - 1, indent), m[2]);
  return field ? { doc: `**${m[2]}:** ${fieldDoc(field)}`, line, start, end } : undefined;
}
