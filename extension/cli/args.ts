// Command-line flags for the clipn CLI: `--name value`, `--name=value`, repeatable flags and
// booleans, checked against a per-command table so a typo is reported by name instead of being
// ignored. Kept dependency-free: the CLI ships inside the extension.

/** Bad command-line input: the CLI exits with status 2 and this one-line message. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** 'one': a single value; 'many': repeatable (collected in order); 'flag': no value. */
export type FlagKind = 'one' | 'many' | 'flag';

export interface ParsedArgs {
  /** Arguments without a flag, in order (only where the command accepts them). */
  positional: string[];
  one: Map<string, string>;
  many: Map<string, string[]>;
  flags: Set<string>;
}

/** `maxPositional`: how many flagless arguments the command takes (e.g. `clipn run NOTEBOOK`). */
export function parseArgs(argv: readonly string[], spec: Record<string, FlagKind>, command: string, maxPositional = 0): ParsedArgs {
  const parsed: ParsedArgs = { positional: [], one: new Map(), many: new Map(), flags: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--') && parsed.positional.length < maxPositional) {
      parsed.positional.push(arg);
      continue;
    }
    if (!arg.startsWith('--')) throw new UsageError(`${command}: unexpected argument ${JSON.stringify(arg)} (flags start with --; see clipn help)`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const kind = spec[name];
    if (!kind) {
      throw new UsageError(`${command}: unknown flag --${name} (known: ${Object.keys(spec).map((k) => `--${k}`).join(', ')})`);
    }
    if (kind === 'flag') {
      if (eq >= 0) throw new UsageError(`${command}: --${name} takes no value`);
      parsed.flags.add(name);
      continue;
    }
    let value: string;
    if (eq >= 0) value = arg.slice(eq + 1);
    else {
      if (i + 1 >= argv.length || argv[i + 1].startsWith('--')) throw new UsageError(`${command}: --${name} needs a value`);
      value = argv[++i];
    }
    if (kind === 'many') parsed.many.set(name, [...(parsed.many.get(name) ?? []), value]);
    else {
      if (parsed.one.has(name)) throw new UsageError(`${command}: --${name} given twice`);
      parsed.one.set(name, value);
    }
  }
  return parsed;
}

export function required(args: ParsedArgs, name: string, command: string): string {
  const v = args.one.get(name) ?? args.many.get(name)?.[0];
  if (v === undefined || v === '') throw new UsageError(`${command}: --${name} is required`);
  return v;
}

export function positiveInt(args: ParsedArgs, name: string, command: string, fallback: number): number {
  const v = args.one.get(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${command}: --${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

/** The flag's positive integer, or undefined when it is not given (the engine's default then). */
export function optionalPositiveInt(args: ParsedArgs, name: string, command: string): number | undefined {
  return args.one.has(name) ? positiveInt(args, name, command, 1) : undefined;
}

export function oneOf<T extends string>(args: ParsedArgs, name: string, command: string, allowed: readonly T[], fallback: T): T {
  const v = args.one.get(name);
  if (v === undefined) return fallback;
  if (!allowed.includes(v as T)) throw new UsageError(`${command}: --${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  return v as T;
}

/** `--providers cuda,webgpu,cpu` -> ['cuda', 'webgpu', 'cpu']. */
export function providerList(args: ParsedArgs, command: string): string[] | undefined {
  const v = args.one.get('providers');
  if (v === undefined) return undefined;
  const list = v.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (list.length === 0) throw new UsageError(`${command}: --providers needs a comma-separated list such as cuda,webgpu,cpu`);
  return list;
}

/** `--shard i/n` (0-based i) -> {index, count}. */
export function shardSpec(args: ParsedArgs, command: string): { index: number; count: number } {
  const v = args.one.get('shard');
  if (v === undefined) return { index: 0, count: 1 };
  const m = /^(\d+)\/(\d+)$/.exec(v.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index >= count) {
    throw new UsageError(`${command}: --shard must be i/n with 0 <= i < n (0-based), got ${JSON.stringify(v)}`);
  }
  return { index, count };
}
