// The README's reference of the `clipn` cell language, rendered from schema.ts so the documented
// keys are exactly the keys the kernel accepts. scripts/gen-reference.mjs writes it into the
// README between the markers below; a unit test fails when the README falls behind the schema.
import { defaultName, KINDS, type FieldSpec, type KindSpec, type Shape } from './schema';

export const REFERENCE_START = '<!-- cell-reference:start -->';
export const REFERENCE_END = '<!-- cell-reference:end -->';

const SHAPE_WORDS: Record<Shape, string> = {
  string: 'string',
  integer: 'integer',
  number: 'number',
  boolean: 'boolean',
  'string-list': 'list of strings',
  'integer-list': 'list of integers',
  object: 'mapping',
};

/** A field with its dotted key (`no.learned`) and the siblings it shares a level with. */
interface Row {
  key: string;
  field: FieldSpec;
  siblings: readonly FieldSpec[];
  prefix: string;
}

function flatten(fields: readonly FieldSpec[], prefix = ''): Row[] {
  return fields.flatMap((field) => [
    { key: prefix + field.key, field, siblings: fields, prefix },
    ...(field.fields ? flatten(field.fields, `${prefix}${field.key}.`) : []),
  ]);
}

const code = (s: string): string => `\`${s}\``;

// A table cell is one line, and `|` would end it even inside a code span.
const cell = (s: string): string => s.replace(/\r?\n/g, ' ').replace(/\|/g, '\\|');

function presence(kind: KindSpec, row: Row): string {
  const { field } = row;
  if (field.required) return '**required**';
  if (field.oneOf) {
    const group = row.siblings.filter((f) => f.oneOf === field.oneOf).map((f) => code(row.prefix + f.key));
    return `exactly one of ${group.join(', ')}`;
  }
  if (field.key === 'name' && row.prefix === '') {
    const fallback = defaultName(kind.kind);
    if (fallback !== undefined) return `default ${code(fallback)}`;
  }
  return 'optional';
}

function description(row: Row): string {
  const { field } = row;
  const parts = [field.doc];
  if (field.values) parts.push(`Values: ${field.values.map(code).join(', ')}.`);
  if (field.min !== undefined) parts.push(`At least ${field.min}.`);
  if (field.template) parts.push('Templates must contain `{}`.');
  if (field.ref) parts.push(`Names a ${code(`${field.ref}:`)} cell.`);
  if (field.fields) parts.push(`Keys: ${field.fields.map((f) => code(`${row.key}.${f.key}`)).join(', ')}.`);
  return parts.join(' ');
}

function kindSection(kind: KindSpec): string {
  const rows = flatten(kind.fields).map(
    (row) =>
      `| ${code(row.key)} | ${row.field.accepts.map((s) => SHAPE_WORDS[s]).join(' or ')} | ${cell(presence(kind, row))} | ${cell(description(row))} |`,
  );
  const example = kind.example.endsWith('\n') ? kind.example : `${kind.example}\n`;
  return [
    `### ${code(`${kind.kind}:`)}`,
    '',
    kind.doc,
    '',
    '| Key | Accepts | Presence | Description |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
    '```yaml',
    example + '```',
  ].join('\n');
}

/** The Markdown reference of every cell kind, in schema order; ends with a newline. */
export function cellReference(): string {
  const intro = [
    'A `clipn` cell is YAML with one top-level key naming its kind: ' + KINDS.map((k) => code(`${k.kind}:`)).join(', ') + '.',
    "A cell's `name:` defines a name; a value that names another cell must name one of the right kind run before it, and a left-out reference takes the default its description gives.",
  ].join(' ');
  return [intro, ...KINDS.map(kindSection)].join('\n\n') + '\n';
}

/** The text between the README's markers, or undefined when the markers are missing or out of order. */
export function readmeRegion(readme: string): string | undefined {
  const start = readme.indexOf(REFERENCE_START);
  const end = readme.indexOf(REFERENCE_END);
  if (start < 0 || end < start) return undefined;
  return readme.slice(start + REFERENCE_START.length, end).replace(/^\r?\n/, '');
}

/** The README with the region between the markers replaced by `reference`. */
export function spliceReference(readme: string, reference: string): string {
  const start = readme.indexOf(REFERENCE_START);
  const end = readme.indexOf(REFERENCE_END);
  if (start < 0 || end < start) throw new Error(`README has no ${REFERENCE_START} ... ${REFERENCE_END} region`);
  return readme.slice(0, start + REFERENCE_START.length) + '\n' + reference + readme.slice(end);
}
