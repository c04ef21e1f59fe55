// Names across cells: a cell's `name:` defines a variable, later cells refer to it (like a
// kernel's variables). Before running, the editor checks references in notebook order; the
// kernel resolves them in execution order with the same Definitions class.
import type { CellKind } from '../protocol';
import { parseCell, type CellRef, type Diagnostic, type ParsedCell } from './validate';

export interface Definition<T = unknown> {
  name: string;
  kind: CellKind;
  /** Where it was defined: the 1-based cell number (for messages). */
  cell: number;
  value: T;
}

/** The defined names in order of definition; later definitions replace earlier ones. */
export class Definitions<T = unknown> {
  private readonly byName = new Map<string, Definition<T>>();
  private readonly latest = new Map<CellKind, string>();

  define(def: Definition<T>): void {
    this.byName.set(def.name, def);
    this.latest.set(def.kind, def.name);
  }

  get(name: string): Definition<T> | undefined {
    return this.byName.get(name);
  }

  /** The most recent definition of a kind (the default for an omitted reference). */
  latestOf(kind: CellKind): Definition<T> | undefined {
    const name = this.latest.get(kind);
    const def = name === undefined ? undefined : this.byName.get(name);
    return def && def.kind === kind ? def : undefined;
  }

  names(kind?: CellKind): string[] {
    return [...this.byName.values()].filter((d) => !kind || d.kind === kind).map((d) => d.name);
  }

  clear(): void {
    this.byName.clear();
    this.latest.clear();
  }

  /** Why a reference does not resolve, or undefined when it does. */
  problem(ref: Pick<CellRef, 'name' | 'kind' | 'key'>): string | undefined {
    const def = this.byName.get(ref.name);
    if (!def) {
      const known = this.names(ref.kind);
      return `no ${ref.kind} named ${JSON.stringify(ref.name)} has been defined${known.length ? ` (${ref.kind} names: ${known.join(', ')})` : ` (define one in a \`${ref.kind}:\` cell first)`}`;
    }
    if (def.kind !== ref.kind) return `${JSON.stringify(ref.name)} is a ${def.kind} (cell ${def.cell}), but \`${ref.key}:\` needs a ${ref.kind}`;
    return undefined;
  }
}

export interface ResolvedCell {
  parsed: ParsedCell;
  /** The cell's own diagnostics plus unresolved references. */
  diagnostics: Diagnostic[];
}

/**
 * Checks every code cell of a notebook in order: a reference must name a definition of the
 * right kind in an earlier cell. `sources[i]` undefined marks a cell that is not clipn code.
 */
export function resolveNotebook(sources: ReadonlyArray<string | undefined>): Array<ResolvedCell | undefined> {
  const defs = new Definitions<null>();
  const later = new Map<string, number>();
  const parsed = sources.map((s) => (s === undefined ? undefined : parseCell(s)));
  parsed.forEach((p, i) => {
    if (p?.name && p.kind && !later.has(p.name)) later.set(p.name, i + 1);
  });
  return parsed.map((p, i) => {
    if (!p) return undefined;
    const diagnostics = [...p.diagnostics];
    for (const ref of p.refs) {
      const problem = defs.problem(ref);
      if (!problem) continue;
      const laterCell = defs.get(ref.name) ? undefined : later.get(ref.name);
      const message = laterCell !== undefined && laterCell > i + 1 ? `${JSON.stringify(ref.name)} is defined in cell ${laterCell}, below this one; cells can only use names defined above them` : problem;
      diagnostics.push({ message, severity: 'error', start: ref.start, end: ref.end });
    }
    // A cell with mistakes still defines its name: its users should not all light up too.
    if (p.kind && p.name) defs.define({ name: p.name, kind: p.kind, cell: i + 1, value: null });
    return { parsed: p, diagnostics };
  });
}
