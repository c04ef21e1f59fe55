// File discovery for image sets: a small glob matcher (Node 20 has no fs.glob) and a sorted,
// loop-safe folder walk. Supported: `*`, `?`, `**` (any number of folders, zero included),
// `{a,b}` (nestable), `[abc]`/`[!abc]`, and `\` escapes. Matching is on '/'-separated paths
// relative to the glob's literal leading folder, so only that folder's subtree is walked.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/** A file or folder that could not be read, with the reason. */
export interface SkippedEntry {
  path: string;
  reason: string;
}

export class GlobError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GlobError';
  }
}


const GLOB_MAGIC = /[*?{}[\]]/;

function escapeRe(c: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(c) ? `\\${c}` : c;
}

/** Matches a '/'-separated relative path against the pattern (whole-path match). */
export function globToRegExp(pattern: string): RegExp {
  let re = '';
  let depth = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\' && i + 1 < pattern.length) {
      re += escapeRe(pattern[++i]);
    } else if (c === '*') {
      let j = i + 1;
      while (pattern[j] === '*') j++;
      const whole = j - i >= 2 && (i === 0 || pattern[i - 1] === '/') && (j === pattern.length || pattern[j] === '/');
      if (!whole) re += '[^/]*';
      else if (j === pattern.length) re += '.*';
      else {
        re += '(?:[^/]+/)*'; // "**/" spans zero or more folders, so a/**/b matches a/b
        j++;
      }
      i = j - 1;
    } else if (c === '?') {
      re += '[^/]';
    } else if (c === '[' && pattern.indexOf(']', i + 2) > 0) {
      const end = pattern.indexOf(']', i + 2);
      const body = pattern.slice(i + 1, end).replace(/\\/g, '\\\\');
      re += `[${body.startsWith('!') ? `^${body.slice(1)}` : body}]`;
      i = end;
    } else if (c === '{') {
      depth++;
      re += '(?:';
    } else if (c === '}' && depth > 0) {
      depth--;
      re += ')';
    } else if (c === ',' && depth > 0) {
      re += '|';
    } else {
      re += escapeRe(c);
    }
  }
  if (depth > 0) throw new GlobError(`glob ${JSON.stringify(pattern)}: "{" is never closed`);
  return new RegExp(`^${re}$`);
}

export function isGlob(spec: string): boolean {
  return GLOB_MAGIC.test(spec);
}

/** Splits a glob into its literal leading folder and the pattern below it. */
export function splitGlob(pattern: string): { base: string; rest: string } {
  const parts = pattern.split('/');
  let k = 0;
  while (k < parts.length - 1 && !GLOB_MAGIC.test(parts[k]) && !parts[k].includes('\\')) k++;
  const base = parts.slice(0, k).join('/') || (pattern.startsWith('/') ? '/' : '.');
  return { base, rest: parts.slice(k).join('/') };
}

export function fsReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e?.code) {
    case 'ENOENT': return 'file not found';
    case 'EACCES': case 'EPERM': return 'permission denied';
    case 'EISDIR': return 'is a folder, not a file';
    case 'ELOOP': return 'symbolic link loop';
    default: return `cannot read (${e?.message ?? String(err)})`;
  }
}

export interface Walked {
  abs: string;
  /** '/'-separated path below the walk root. */
  rel: string;
}

/**
 * All files below `root` up to `maxDepth` folder levels, sorted by relative path. Hidden
 * entries (".DS_Store", ".git") are not images and would only clutter the skipped list.
 * Symlinked folders are followed once (a loop would otherwise never end).
 */
export async function walk(root: string, maxDepth: number, skipped: SkippedEntry[]): Promise<Walked[]> {
  const out: Walked[] = [];
  const seen = new Set<string>();
  const visit = async (dir: string, rel: string, depth: number): Promise<void> => {
    let real: string;
    let entries;
    try {
      real = await fsp.realpath(dir);
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch (err) {
      skipped.push({ path: dir, reason: `folder ${fsReason(err).replace('file ', '')}` });
      return;
    }
    if (seen.has(real)) return;
    seen.add(real);
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const abs = path.join(dir, e.name);
      const childRel = rel ? `${rel}/${e.name}` : e.name;
      let isDir = e.isDirectory();
      if (e.isSymbolicLink()) {
        try {
          isDir = (await fsp.stat(abs)).isDirectory();
        } catch (err) {
          skipped.push({ path: abs, reason: fsReason(err) });
          continue;
        }
      }
      if (isDir) {
        if (depth < maxDepth) await visit(abs, childRel, depth + 1);
      } else {
        out.push({ abs, rel: childRel });
      }
    }
  };
  await visit(root, '', 0);
  return out;
}

/** Files matching `pattern` (relative to `cwd` unless absolute), sorted; `root` is the walked folder. */
export async function globFiles(pattern: string, cwd: string, skipped: SkippedEntry[]): Promise<{ root: string; rest: string; files: Walked[] }> {
  const posix = process.platform === 'win32' ? pattern.replace(/\\/g, '/') : pattern;
  const { base, rest } = splitGlob(posix);
  const root = path.resolve(cwd, base);
  const re = globToRegExp(rest);
  // Without "**" or alternatives the pattern fixes the depth, so deeper folders are not read.
  const maxDepth = /\*\*|[{[]/.test(rest) ? Infinity : rest.split('/').length - 1;
  const files = (await walk(root, maxDepth, skipped)).filter((f) => re.test(f.rel));
  return { root, rest, files };
}
