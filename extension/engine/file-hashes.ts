// File hashes for model folders and datasets: sha256 of a file, and the stamps (size, times,
// inode, hash) that let a file verified once skip re-hashing, in this process and, through a
// marker file in a cache folder, across processes (manifest.ts's verify: 'cached').
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Streams the file through sha256 (graphs of real models are hundreds of MB). */
export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = crypto.createHash('sha256');
    const stream = fs.createReadStream(file, { highWaterMark: 1 << 20 });
    stream.on('data', (chunk) => hash.update(chunk));
    stream.on('error', reject);
    stream.on('end', () => resolve(hash.digest('hex')));
  });
}

export interface Stamp {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  sha256: string;
}

export function stampOf(st: fs.Stats, sha256: string): Stamp {
  return { size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino, sha256 };
}

export function sameStamp(a: Stamp | undefined, b: Stamp): boolean {
  return !!a && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.ino === b.ino && a.sha256 === b.sha256;
}

/** Process-wide: absolute path -> stamp of its last successful verification. */
export const verifiedInProcess = new Map<string, Stamp>();

export function markerPath(cacheDir: string, folder: string): string {
  const key = crypto.createHash('sha256').update(folder).digest('hex').slice(0, 24);
  return path.join(cacheDir, `clipn-verified-${key}.json`);
}

export function readMarker(file: string): Record<string, Stamp> {
  try {
    const data = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
    return data && typeof data === 'object' && !Array.isArray(data) ? (data as Record<string, Stamp>) : {};
  } catch {
    return {}; // a missing or damaged marker only costs a re-hash
  }
}

export function writeMarker(file: string, stamps: Record<string, Stamp>): void {
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(stamps));
    fs.renameSync(tmp, file);
  } catch {
    // The cache is an optimisation; an unwritable cache folder must not stop a model loading.
  }
}
