// What the CLI's commands share: the cache location, model loading with the chosen execution
// providers, progress on a terminal, and how a dataset's problems are listed.
import * as os from 'node:os';
import * as path from 'node:path';
import type { SkippedEntry } from '../engine/datasets';
import type { EmbedProgress } from '../engine/embed';
import { ClipnModel } from '../engine/encoder';
import type { ImageFailure } from '../engine/encoder';

/** `$CLIPN_CACHE`, else ~/.cache/clipn-lab: shared by every command and run. */
export function defaultCacheRoot(): string {
  const env = process.env.CLIPN_CACHE;
  return env && env.trim() ? path.resolve(env) : path.join(os.homedir(), '.cache', 'clipn-lab');
}

/** Loads a model; the cache root also keeps its "verified" markers so later runs skip re-hashing. */
export function loadModel(folder: string, cacheRoot: string | undefined, providers: readonly string[] | undefined): Promise<ClipnModel> {
  return ClipnModel.load(folder, {
    verify: 'cached',
    cacheDir: cacheRoot,
    backend: providers ? { executionProviders: providers } : {},
  });
}

/** A progress callback that redraws one stderr line on a terminal and stays silent otherwise (logs, tests). */
export function progressLine(label: string): ((p: EmbedProgress) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (now - last < 200 && p.done < p.total) return;
    last = now;
    const what = p.phase === 'hashing' ? 'reading' : 'embedding';
    process.stderr.write(`\r${label}: ${what} ${p.done}/${p.total} (${p.itemsPerSecond.toFixed(1)}/s)   `);
    if (p.done >= p.total) process.stderr.write('\n');
  };
}

const MAX_LISTED = 20;

/** Lines listing skipped files, decode failures and warnings of one set (capped; the JSON has all). */
export function problemLines(name: string, skipped: readonly SkippedEntry[], failures: readonly ImageFailure[], warnings: readonly string[]): string[] {
  const out: string[] = [];
  const list = (title: string, rows: readonly SkippedEntry[]) => {
    if (rows.length === 0) return;
    out.push(`${name}: ${rows.length} ${title}:`);
    for (const r of rows.slice(0, MAX_LISTED)) out.push(`  ${r.path}: ${r.reason}`);
    if (rows.length > MAX_LISTED) out.push(`  ... ${rows.length - MAX_LISTED} more (all are in the --json output)`);
  };
  list('skipped', skipped);
  list('could not be embedded', failures.map((f) => ({ path: f.file, reason: f.reason })));
  for (const w of warnings) out.push(`warning: ${w}`);
  return out;
}

/** One line, for the CLI's error exit. */
export function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}
