// On-disk cache of image embeddings, keyed by what decides an embedding: the image bytes
// (sha256), the image graph (its sha256 as listed in the manifest) and the preprocessing
// (the manifest's `preprocess` + the graph variant). Layout, readable with NumPy alone:
//
//   <root>/img-<key>/index.json    {key, dim, shards: {name: {rows, bytes, sha256}},
//                                   entries: {image sha256: [shard name, row]}}
//   <root>/img-<key>/emb-0000.npy  float32 [rows, dim], one file per store() (split if large)
//
// Shards are immutable once written. Each is checked against its recorded length and sha256
// the first time this process reads it; a truncated or altered shard is never used: its
// entries are dropped from the index (so those images count as missing and get re-encoded)
// and the reason is kept in `warnings`. Writers (e.g. several `clipn embed --shard` jobs on one
// cache) take a lock file only to name a shard and merge their entries into the index on disk
// (tmp + rename), so no writer's entries are lost and readers never see a half-written index.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ImagePrecision } from './encoder';
import type { ClipnManifest } from './manifest';
import { readNpy, writeNpy } from './npy';

export const CACHE_FORMAT = 'clipn-lab-embedding-cache';
export const CACHE_VERSION = 1;
const INDEX_FILE = 'index.json';
const LOCK_FILE = 'index.lock';
/** Rows per shard file: bounds the bytes hashed when one shard is first read. */
const MAX_SHARD_ROWS = 4096;
const LOCK_TIMEOUT_MS = 60_000;
/** A lock older than this is a crashed writer's (a locked section takes well under a second). */
const LOCK_STALE_MS = 120_000;

/** Everything an embedding depends on besides the image bytes. */
export interface CacheKey {
  /** sha256 of the image graph file, from the manifest's `files`. */
  graph_sha256: string;
  /** Which image graph of the manifest: `image` (fp32) or `image_<variant>`. */
  variant: ImagePrecision;
  preprocess: unknown;
  embed_dim: number;
}

interface ShardRecord {
  rows: number;
  bytes: number;
  sha256: string;
}

interface IndexFile {
  format: typeof CACHE_FORMAT;
  version: number;
  key: CacheKey;
  dim: number;
  shards: Record<string, ShardRecord>;
  entries: Record<string, [string, number]>;
}

export interface LookupResult {
  /** Views into the cached shards (do not modify them). */
  found: Map<string, Float32Array>;
  missing: string[];
}

export class EmbeddingCacheError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmbeddingCacheError';
  }
}

const HASH_RE = /^[0-9a-f]{64}$/;

/** JSON with object keys sorted at every level, so equal configs hash equally. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The cache key of a model's image graph (fp32 `image`, or `image_fp16` / `image_int8`). */
export function cacheKeyFor(manifest: ClipnManifest, variant: ImagePrecision = 'fp32'): CacheKey {
  const { graphs } = manifest;
  const rel = variant === 'fp32' ? graphs.image : variant === 'fp16' ? graphs.image_fp16 : graphs.image_int8;
  if (!rel) throw new EmbeddingCacheError(`model "${manifest.name}" has no ${variant} image graph`);
  const digest = manifest.files[rel] ?? manifest.files[rel.replace(/\\/g, '/').replace(/^\.\//, '')];
  if (!digest) throw new EmbeddingCacheError(`model "${manifest.name}": the image graph ${rel} is not listed in the manifest's files`);
  return { graph_sha256: digest.toLowerCase(), variant, preprocess: manifest.preprocess, embed_dim: manifest.embed_dim };
}

/** Folder name for a key: short but collision-safe (96 bits). */
export function cacheDirName(key: CacheKey): string {
  return `img-${crypto.createHash('sha256').update(canonicalJson(key)).digest('hex').slice(0, 24)}`;
}

function sha256(buf: Uint8Array): string {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

function sleep(ms: number): void {
  // The locked sections are short and synchronous; a blocking wait keeps store() simple.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class EmbeddingCache {
  /** Problems found (corrupt shards, unreadable index): reported to the user, never fatal. */
  readonly warnings: string[] = [];
  private index: IndexFile;
  private indexStamp = '';
  /** Shards verified in this process: name -> data. */
  private readonly shards = new Map<string, Float32Array>();

  private constructor(
    readonly dir: string,
    readonly key: CacheKey,
  ) {
    this.index = this.emptyIndex();
    this.refresh();
  }

  /** Opens (creating if needed) the cache folder for `key` under `root`. */
  static open(root: string, key: CacheKey): EmbeddingCache {
    if (!Number.isInteger(key.embed_dim) || key.embed_dim < 1) throw new EmbeddingCacheError(`cache key: embed_dim must be a positive integer`);
    const dir = path.join(path.resolve(root), cacheDirName(key));
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw new EmbeddingCacheError(`${dir}: cannot create the embedding cache folder (${(err as Error).message}); pass another cache folder`);
    }
    return new EmbeddingCache(dir, key);
  }

  /** Opens the cache for a model's image graph. */
  static forModel(root: string, manifest: ClipnManifest, variant: ImagePrecision = 'fp32'): EmbeddingCache {
    return EmbeddingCache.open(root, cacheKeyFor(manifest, variant));
  }

  get dim(): number {
    return this.key.embed_dim;
  }

  /** Number of images with a cached embedding (per the index; shards are checked on use). */
  get size(): number {
    return Object.keys(this.index.entries).length;
  }

  private emptyIndex(): IndexFile {
    return { format: CACHE_FORMAT, version: CACHE_VERSION, key: this.key, dim: this.key.embed_dim, shards: {}, entries: {} };
  }

  private get indexPath(): string {
    return path.join(this.dir, INDEX_FILE);
  }

  /** Reads index.json; a damaged one is reported and treated as empty (only costs re-encoding). */
  private readIndex(): IndexFile {
    let text: string;
    try {
      text = fs.readFileSync(this.indexPath, 'utf8');
    } catch {
      return this.emptyIndex();
    }
    try {
      const raw = JSON.parse(text) as IndexFile;
      if (raw?.format !== CACHE_FORMAT || typeof raw.shards !== 'object' || typeof raw.entries !== 'object' || raw.shards === null || raw.entries === null) {
        throw new Error('not an embedding-cache index');
      }
      if (raw.version > CACHE_VERSION) throw new Error(`version ${raw.version} is newer than this extension reads`);
      if (canonicalJson(raw.key) !== canonicalJson(this.key) || raw.dim !== this.dim) throw new Error('it belongs to another model or preprocessing');
      return raw;
    } catch (err) {
      const msg = `${this.indexPath}: ignored (${(err as Error).message}); its images will be re-encoded`;
      if (!this.warnings.includes(msg)) this.warnings.push(msg);
      return this.emptyIndex();
    }
  }

  private stamp(): string {
    try {
      const st = fs.statSync(this.indexPath);
      return `${st.size}:${st.mtimeMs}:${st.ino}`;
    } catch {
      return 'none';
    }
  }

  /** Re-reads the index when another writer changed it since we last looked. */
  private refresh(): void {
    const stamp = this.stamp();
    if (stamp === this.indexStamp) return;
    this.index = this.readIndex();
    this.indexStamp = stamp;
  }

  private writeIndex(index: IndexFile): void {
    const tmp = path.join(this.dir, `.${INDEX_FILE}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
    try {
      fs.writeFileSync(tmp, JSON.stringify(index));
      fs.renameSync(tmp, this.indexPath);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw new EmbeddingCacheError(`${this.indexPath}: cannot write (${(err as Error).message})`);
    }
    this.index = index;
    this.indexStamp = this.stamp();
  }

  /** Runs `fn` holding the cache's lock file (exclusive create; stale locks are broken). */
  private locked<T>(fn: () => T): T {
    const lock = path.join(this.dir, LOCK_FILE);
    const start = Date.now();
    const me = JSON.stringify({ pid: process.pid, host: os.hostname(), time: new Date().toISOString() });
    for (let wait = 5; ; wait = Math.min(wait * 2, 200)) {
      try {
        fs.writeFileSync(lock, me, { flag: 'wx' });
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new EmbeddingCacheError(`${lock}: cannot create the cache lock (${(err as Error).message})`);
        }
      }
      if (this.lockIsStale(lock)) {
        fs.rmSync(lock, { force: true });
        continue;
      }
      if (Date.now() - start > LOCK_TIMEOUT_MS) {
        throw new EmbeddingCacheError(`${lock}: held by another writer for over ${LOCK_TIMEOUT_MS / 1000} s; delete it if no clipn process is using this cache`);
      }
      sleep(wait);
    }
    try {
      return fn();
    } finally {
      fs.rmSync(lock, { force: true });
    }
  }

  private lockIsStale(lock: string): boolean {
    try {
      const st = fs.statSync(lock);
      if (Date.now() - st.mtimeMs > LOCK_STALE_MS) return true;
      const owner = JSON.parse(fs.readFileSync(lock, 'utf8')) as { pid?: number; host?: string };
      return owner.host === os.hostname() && typeof owner.pid === 'number' && !pidAlive(owner.pid);
    } catch {
      return false; // vanished or being written: try again
    }
  }

  /** The shard's rows if it matches its record; otherwise the reason it does not. */
  private loadShard(name: string): Float32Array | string {
    const cached = this.shards.get(name);
    if (cached) return cached;
    const rec = this.index.shards[name];
    if (!rec) return 'not in the index';
    const file = path.join(this.dir, name);
    let buf: Buffer;
    try {
      buf = fs.readFileSync(file);
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file missing' : `unreadable (${(err as Error).message})`;
    }
    if (buf.length !== rec.bytes) return `${buf.length < rec.bytes ? 'truncated' : 'wrong size'}: ${buf.length} bytes, the index recorded ${rec.bytes}`;
    if (sha256(buf) !== rec.sha256) return 'content changed since it was written (sha256 mismatch)';
    try {
      const arr = readNpy(buf, file);
      if (arr.dtype !== '<f4' || arr.shape.length !== 2 || arr.shape[0] !== rec.rows || arr.shape[1] !== this.dim) {
        return `holds ${arr.dtype} (${arr.shape.join(', ')}), expected <f4 (${rec.rows}, ${this.dim})`;
      }
      const data = arr.data as Float32Array;
      this.shards.set(name, data);
      return data;
    } catch (err) {
      return (err as Error).message;
    }
  }

  /** Removes a bad shard's entries from the index on disk and deletes the file. */
  private dropShard(name: string, reason: string): void {
    const count = Object.values(this.index.entries).filter((e) => e[0] === name).length;
    this.warnings.push(`${path.join(this.dir, name)}: ${reason}; dropped its ${count} cached embeddings, they will be re-encoded`);
    const bad = this.index.shards[name];
    this.locked(() => {
      const index = this.readIndex();
      // Another process may have dropped it (or, in theory, rewritten it) meanwhile.
      if (bad && index.shards[name]?.sha256 === bad.sha256) {
        delete index.shards[name];
        for (const [h, e] of Object.entries(index.entries)) if (e[0] === name) delete index.entries[h];
        fs.rmSync(path.join(this.dir, name), { force: true });
        this.writeIndex(index);
      }
    });
    // Whatever the disk says now, this process must not use the shard.
    delete this.index.shards[name];
    for (const [h, e] of Object.entries(this.index.entries)) if (e[0] === name) delete this.index.entries[h];
  }

  /** Cached rows for the given image hashes; damaged shards are dropped and their images reported missing. */
  lookup(hashes: readonly string[]): LookupResult {
    this.refresh();
    const found = new Map<string, Float32Array>();
    const missing: string[] = [];
    const d = this.dim;
    for (const h of hashes) {
      if (found.has(h)) continue;
      const entry = this.index.entries[h];
      if (!Array.isArray(entry) || typeof entry[0] !== 'string') {
        missing.push(h);
        continue;
      }
      const [shard, row] = entry;
      const data = this.loadShard(shard);
      if (typeof data === 'string') {
        this.dropShard(shard, data);
        missing.push(h);
        continue;
      }
      if (!Number.isInteger(row) || row < 0 || (row + 1) * d > data.length) {
        this.warnings.push(`${path.join(this.dir, INDEX_FILE)}: entry ${h.slice(0, 12)} points past the end of ${shard}; re-encoding it`);
        delete this.index.entries[h];
        missing.push(h);
        continue;
      }
      found.set(h, data.subarray(row * d, (row + 1) * d));
    }
    // A hash asked for twice and missing must be listed once.
    return { found, missing: [...new Set(missing)] };
  }

  /** Stores rows ([hashes.length, dim] row-major) as new shard(s) and merges them into the index. */
  store(hashes: readonly string[], rows: Float32Array): void {
    const d = this.dim;
    if (rows.length !== hashes.length * d) {
      throw new EmbeddingCacheError(`store: ${hashes.length} hashes need ${hashes.length} x ${d} values, got ${rows.length}`);
    }
    for (const h of hashes) if (!HASH_RE.test(h)) throw new EmbeddingCacheError(`store: ${JSON.stringify(h)} is not a lower-case sha256 hex digest`);
    for (let start = 0; start < hashes.length; start += MAX_SHARD_ROWS) {
      const n = Math.min(MAX_SHARD_ROWS, hashes.length - start);
      const data = rows.slice(start * d, (start + n) * d);
      this.locked(() => this.writeShard(hashes.slice(start, start + n), data));
    }
  }

  /** Lowest free emb-XXXX number: above every shard in the index and every file on disk (orphans too). */
  private nextShardName(index: IndexFile): string {
    let max = -1;
    const names = [...Object.keys(index.shards), ...fs.readdirSync(this.dir)];
    for (const n of names) {
      const m = /^emb-(\d+)\.npy$/.exec(n);
      if (m) max = Math.max(max, Number(m[1]));
    }
    return `emb-${String(max + 1).padStart(4, '0')}.npy`;
  }

  private writeShard(hashes: readonly string[], data: Float32Array): void {
    const index = this.readIndex();
    const name = this.nextShardName(index);
    const array = { shape: [hashes.length, this.dim], data };
    const bytes = writeNpy(array); // the exact bytes writeNpy puts in the file, for the record
    writeNpy(path.join(this.dir, name), array);
    index.shards[name] = { rows: hashes.length, bytes: bytes.length, sha256: sha256(bytes) };
    hashes.forEach((h, row) => {
      index.entries[h] = [name, row];
    });
    // The rows are known good: no need to re-read the file we just wrote.
    this.shards.set(name, data);
    this.writeIndex(index);
  }
}
