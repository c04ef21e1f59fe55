// CLIP byte-level BPE tokenizer: the TypeScript twin of models/clipn/tokenizer.py.
//
// The Python module is the reference definition; every step below mirrors it, including the
// places where Python and JavaScript built-ins disagree:
//   - clean-up: NFC, html.unescape twice, str.strip/str.split (Python's whitespace set, which
//     has \x1c-\x1f and \x85 but not U+FEFF, unlike JS \s), str.lower;
//   - the token regex (the `regex` module's \p{L}/\p{N}, IGNORECASE): see TOKEN_PATTERN, with an
//     explicit White_Space class in place of \s;
//   - byte-to-unicode alphabet, vocabulary derived from the merges file, BPE by lowest rank,
//     SOT/EOT, zero padding, truncation that keeps EOT last.
// Residual differences (documented; closing them needs Python's Unicode tables):
//   - NFC of sequences in scripts added after Unicode 14 (Python 3.11's unicodedata), e.g. Nag
//     Mundari or Gurung Khema marks, which V8's newer ICU reorders/composes and Python leaves;
//   - HTML5-only named entities outside html-unescape.ts's table (e.g. &check;) stay escaped while
//     html.unescape decodes them (Python's table has 2231 names; numeric references all agree).
// Everything else was checked against /usr/bin/python3 code point by code point (lower-casing,
// NFC of single code points, token classes) and on fuzzed text.
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { htmlUnescape } from './html-unescape';

export const SOT = '<|startoftext|>';
export const EOT = '<|endoftext|>';
/** CLIP reads at most this many merges (its vocabulary is 49408 = 512 + 48894 + 2). */
export const MAX_MERGES = 49152 - 256 - 2;
export const DEFAULT_CONTEXT_LENGTH = 77;

/** Python's str.isspace() set (bidi WS/B/S or category Zs), used by str.split()/strip(). */
const PY_SPACE_CLASS = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_SPACE_RUN = new RegExp(`[${PY_SPACE_CLASS}]+`, 'u');
/** Unicode White_Space (what `regex`'s \s means); JS \s would also take U+FEFF. */
const WHITE_SPACE_CLASS = '\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
// The reference pattern is compiled with regex.IGNORECASE; the text is lower-cased by then, so
// what IGNORECASE still changes is spelled out here instead of using the `i` flag (under /iu a
// class of exclusions would also exclude every character with the same case folding):
//   - the literals: 's also matches 'ſ (U+017F folds to s), likewise <|ſtartoftext|>;
//   - U+0345 (which folds to a letter) matches no alternative in the regex module, so findall
//     skips it; it is taken out of the "other" class.
// Letters/numbers for V8 (ICU, Unicode 16/17) that Debian's python3-regex (2022.10.31, Unicode
// 15.0) does not know are "other" characters there, so they are here too. With this, every code
// point is classified as on the Python side (checked code point by code point).
const PY_REGEX_UNKNOWN =
  '88f c5c cdc 1c89-1c8a a7cb-a7cf a7d2 a7d4 a7da-a7dc a7f1 105c0-105f3 10940-10959 ' +
  '10d40-10d65 10d6f-10d85 10ec2-10ec7 11380-11389 1138b 1138e 11390-113b5 113b7 113d1 ' +
  '113d3 116d0-116e3 11bc0-11be0 11bf0-11bf9 11db0-11ddb 11de0-11de9 13460-143fa ' +
  '16100-1611d 16130-16139 16d40-16d6c 16d70-16d79 16ea0-16eb8 16ebb-16ed3 16ff2-16ff6 ' +
  '187f8-187ff 18cff 18d09-18d1e 18d80-18df2 1ccf0-1ccf9 1e5d0-1e5ed 1e5f0-1e5fa ' +
  '1e6c0-1e6de 1e6e0-1e6e2 1e6e4-1e6e5 1e6e7-1e6ed 1e6f0-1e6f4 1e6fe-1e6ff 2b73a-2b73f ' +
  '2cea2-2cead 2ebf0-2ee5d 323b0-33479';
const NOT_PY_LETTER_CLASS = PY_REGEX_UNKNOWN.split(' ')
  .map((range) => range.split('-').map((h) => `\\u{${h}}`).join('-'))
  .join('');
const SPECIAL_AND_CONTRACTIONS = `<\\|[s\\u017f]tartoftext\\|>|<\\|endoftext\\|>|'[s\\u017f]|'t|'re|'ve|'m|'ll|'d`;
/** The exact pattern, with the exclusions (slow: a lookahead per character). */
const TOKEN_PATTERN = new RegExp(
  SPECIAL_AND_CONTRACTIONS +
    `|(?:(?![${NOT_PY_LETTER_CLASS}])\\p{L})+` +
    `|(?![${NOT_PY_LETTER_CLASS}])\\p{N}` +
    `|(?:(?!\\u0345)[^${WHITE_SPACE_CLASS}\\p{L}\\p{N}]|[${NOT_PY_LETTER_CLASS}])+`,
  'gu',
);
/** The same pattern for texts without any excluded character (nearly all of them). */
const TOKEN_PATTERN_FAST = new RegExp(
  SPECIAL_AND_CONTRACTIONS + `|\\p{L}+|\\p{N}|[^${WHITE_SPACE_CLASS}\\p{L}\\p{N}]+`,
  'gu',
);
const NEEDS_EXACT_PATTERN = new RegExp(`[\\u0345${NOT_PY_LETTER_CLASS}]`, 'u');

function tokenPattern(cleaned: string): RegExp {
  return NEEDS_EXACT_PATTERN.test(cleaned) ? TOKEN_PATTERN : TOKEN_PATTERN_FAST;
}

/** The pieces that BPE sees (TOKEN_PATTERN.findall on already cleaned text). */
export function splitWords(cleaned: string): string[] {
  return Array.from(cleaned.matchAll(tokenPattern(cleaned)), (m) => m[0]);
}

/** Python's str.split() with no argument. */
function pySplit(text: string): string[] {
  return text.split(PY_SPACE_RUN).filter((part) => part.length > 0);
}

// ---------------------------------------------------------------------------------------------
// str.lower(): V8 (ICU, newer Unicode) also lowercases these code points, which Python 3.11's
// Unicode 14 tables leave alone (all assigned in Unicode 15+). Everything else agrees,
// including final sigma (checked code point by code point against /usr/bin/python3).
const LOWER_EXCEPTIONS: ReadonlyArray<[number, number]> = [
  [0x1c89, 0x1c89], [0xa7cb, 0xa7cc], [0xa7ce, 0xa7ce], [0xa7d2, 0xa7d2], [0xa7d4, 0xa7d4],
  [0xa7da, 0xa7da], [0xa7dc, 0xa7dc], [0x10d50, 0x10d65], [0x16ea0, 0x16eb8],
];
const LOWER_EXCEPTION_RE = new RegExp(
  `[${LOWER_EXCEPTIONS.map(([a, b]) => (a === b ? `\\u{${a.toString(16)}}` : `\\u{${a.toString(16)}}-\\u{${b.toString(16)}}`)).join('')}]`,
  'u',
);
const LOWER_EXCEPTION_SPLIT = new RegExp(`(${LOWER_EXCEPTION_RE.source})`, 'u');

function pyLower(text: string): string {
  if (!LOWER_EXCEPTION_RE.test(text)) return text.toLowerCase();
  return text
    .split(LOWER_EXCEPTION_SPLIT)
    .map((part, i) => (i % 2 === 1 ? part : part.toLowerCase()))
    .join('');
}

/** models/clipn/tokenizer.py clean_text: NFC, unescape twice, strip, collapse whitespace, lower. */
export function cleanText(text: string): string {
  let t = text.normalize('NFC');
  t = htmlUnescape(htmlUnescape(t));
  return pyLower(pySplit(t).join(' '));
}

// ---------------------------------------------------------------------------------------------

/** CLIP's byte alphabet: entry b is the printable character that stands for byte b. */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const table: string[] = new Array(256);
  for (const b of printable) table[b] = String.fromCharCode(b);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    if (table[b] === undefined) table[b] = String.fromCharCode(256 + extra++);
  }
  return table;
}

/** The alphabet in CLIP's vocabulary order: printable bytes first, then the remapped ones. */
function alphabetInVocabOrder(table: string[]): string[] {
  const printable = new Set<number>();
  for (let b = 0x21; b <= 0x7e; b++) printable.add(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.add(b);
  for (let b = 0xae; b <= 0xff; b++) printable.add(b);
  const order = [...printable];
  for (let b = 0; b < 256; b++) if (!printable.has(b)) order.push(b);
  return order.map((b) => table[b]);
}

export type Merge = [string, string];

/** Reads a merges file (gzip or plain UTF-8): header line skipped, at most MAX_MERGES merges. */
export function readMerges(mergesPath: string): Merge[] {
  let raw: Buffer;
  try {
    if (!fs.statSync(mergesPath).isFile()) throw new Error('not a file');
    raw = fs.readFileSync(mergesPath);
  } catch {
    throw new Error(`${mergesPath}: tokenizer merges file not found`);
  }
  let text: string;
  try {
    const data = raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b ? zlib.gunzipSync(raw) : raw;
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(data);
  } catch (err) {
    throw new Error(`${mergesPath}: not a readable BPE merges file (${(err as Error).message})`);
  }
  const lines = text.split('\n').slice(1, MAX_MERGES + 1);
  const merges: Merge[] = [];
  lines.forEach((line, i) => {
    if (!line) return;
    const parts = pySplit(line);
    if (parts.length !== 2) {
      throw new Error(`${mergesPath}:${i + 2}: expected two symbols per merge, got ${JSON.stringify(line)}`);
    }
    merges.push([parts[0], parts[1]]);
  });
  return merges;
}

const BYTE_TABLE = bytesToUnicode();
const BYTE_DECODER: ReadonlyMap<string, number> = new Map(BYTE_TABLE.map((ch, b) => [ch, b] as [string, number]));
/** Python's str.strip() with no argument. */
const PY_STRIP = new RegExp(`^[${PY_SPACE_CLASS}]+|[${PY_SPACE_CLASS}]+$`, 'gu');
const CACHE_LIMIT = 200_000;
/** tokenizeOne's remembered rows (ViT-B/16's 77 ids each: ~12 MB at most). */
const ROWS_LIMIT = 20_000;

export class ClipTokenizer {
  readonly contextLength: number;
  readonly sot: number;
  readonly eot: number;
  private readonly encoder = new Map<string, number>();
  private readonly decoder = new Map<number, string>();
  private readonly ranks = new Map<string, number>();
  /** Ids of each word as the text pattern matched it (before byte encoding): most words repeat. */
  private readonly words = new Map<string, readonly number[]>();
  /** tokenizeOne's rows: prompt pools fill the same templates with the same classes call after call. */
  private readonly rows = new Map<string, readonly number[]>();

  /** Loads the tokenizer from a merges file (the model folder's `tokenizer.merges`). */
  static fromFile(mergesPath: string, contextLength = DEFAULT_CONTEXT_LENGTH): ClipTokenizer {
    return new ClipTokenizer(readMerges(mergesPath), contextLength);
  }

  constructor(merges: ReadonlyArray<Merge>, contextLength = DEFAULT_CONTEXT_LENGTH) {
    if (!Number.isInteger(contextLength) || contextLength < 1) {
      throw new Error(`tokenizer context length must be a positive integer, got ${contextLength}`);
    }
    this.contextLength = contextLength;
    const alphabet = alphabetInVocabOrder(BYTE_TABLE);
    const vocab = [
      ...alphabet,
      ...alphabet.map((a) => a + '</w>'),
      ...merges.map(([a, b]) => a + b),
      SOT,
      EOT,
    ];
    // Like the Python dicts: a repeated token keeps its last index.
    vocab.forEach((token, i) => this.encoder.set(token, i));
    for (const [token, i] of this.encoder) this.decoder.set(i, token);
    merges.forEach(([a, b], i) => this.ranks.set(a + ' ' + b, i));
    this.sot = this.encoder.get(SOT)!;
    this.eot = this.encoder.get(EOT)!;
    this.resetCache();
  }

  get vocabSize(): number {
    return this.encoder.size;
  }

  private resetCache(): void {
    this.words.clear();
    // Python seeds its BPE cache with the special tokens, so they map to SOT/EOT in text too
    // (they are ASCII: the same string before and after byte encoding).
    this.words.set(SOT, [this.sot]);
    this.words.set(EOT, [this.eot]);
  }

  /** BPE of one byte-encoded word, as vocabulary ids. */
  private bpe(token: string): number[] {
    const chars = Array.from(token); // byte alphabet: all BMP, but stay code point safe
    let word = chars.slice(0, -1);
    word.push(chars[chars.length - 1] + '</w>');
    while (word.length > 1) {
      let bestRank = Infinity;
      let bestA = '';
      let bestB = '';
      for (let i = 0; i < word.length - 1; i++) {
        const rank = this.ranks.get(word[i] + ' ' + word[i + 1]);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          bestA = word[i];
          bestB = word[i + 1];
        }
      }
      if (bestRank === Infinity) break;
      const merged: string[] = [];
      let i = 0;
      while (i < word.length) {
        if (i < word.length - 1 && word[i] === bestA && word[i + 1] === bestB) {
          merged.push(bestA + bestB);
          i += 2;
        } else {
          merged.push(word[i]);
          i += 1;
        }
      }
      word = merged;
    }
    return word.map((symbol) => {
      const id = this.encoder.get(symbol);
      if (id === undefined) throw new Error(`tokenizer: BPE symbol ${JSON.stringify(symbol)} is not in the vocabulary`);
      return id;
    });
  }

  /** Token ids of `text` without SOT/EOT or padding. */
  encode(text: string): number[] {
    const ids: number[] = [];
    const cleaned = cleanText(text);
    for (const match of cleaned.matchAll(tokenPattern(cleaned))) {
      let word = this.words.get(match[0]);
      if (word === undefined) {
        // Lone surrogates (impossible in Python strings from UTF-8) become U+FFFD's bytes.
        const bytes = Buffer.from(match[0], 'utf8');
        let symbols = '';
        for (const b of bytes) symbols += BYTE_TABLE[b];
        word = this.bpe(symbols);
        if (this.words.size >= CACHE_LIMIT) this.resetCache();
        this.words.set(match[0], word);
      }
      for (const id of word) ids.push(id);
    }
    return ids;
  }

  /** Inverse of encode (lossy like Python's: padding/SOT/EOT dropped, '</w>' becomes a space). */
  decode(ids: Iterable<number | bigint>): string {
    let text = '';
    for (const raw of ids) {
      const id = Number(raw);
      if (id === 0 || id === this.sot || id === this.eot) continue;
      const token = this.decoder.get(id);
      if (token === undefined) throw new Error(`tokenizer: id ${id} is not in the vocabulary`);
      text += token;
    }
    const bytes: number[] = [];
    for (const ch of text) {
      const b = BYTE_DECODER.get(ch);
      if (b === undefined) throw new Error(`tokenizer: ${JSON.stringify(ch)} is not a byte symbol`);
      bytes.push(b);
    }
    const decoded = new TextDecoder('utf-8').decode(Uint8Array.from(bytes)).replaceAll('</w>', ' ');
    return decoded.replace(PY_STRIP, '');
  }

  /** SOT, the ids of `parts` in turn, EOT, cut at the context length with EOT kept last (no padding). */
  frame(...parts: ReadonlyArray<readonly number[]>): number[] {
    if (this.contextLength < 2) return [this.eot]; // context 1 keeps only EOT, as in Python
    const out = [this.sot];
    const room = this.contextLength - 1;
    for (const ids of parts) for (let i = 0; i < ids.length && out.length < room; i++) out.push(ids[i]);
    out.push(this.eot);
    return out;
  }

  /** Ids of one text as the model sees them: SOT, ids, EOT, zero padding; EOT kept last. */
  tokenizeOne(text: string): number[] {
    const known = this.rows.get(text);
    if (known) return known.slice();
    const ids = this.frame(this.encode(text));
    while (ids.length < this.contextLength) ids.push(0);
    if (this.rows.size >= ROWS_LIMIT) this.rows.clear();
    this.rows.set(text, ids.slice());
    return ids;
  }

  /** Row-major int64 [texts.length, contextLength], the text encoder's `input_ids`. */
  tokenize(texts: ReadonlyArray<string>): BigInt64Array {
    const ctx = this.contextLength;
    const out = new BigInt64Array(texts.length * ctx);
    texts.forEach((text, row) => {
      const ids = this.encode(text);
      const n = Math.min(ids.length + 2, ctx);
      const base = row * ctx;
      out[base] = BigInt(this.sot);
      for (let i = 1; i < n - 1; i++) out[base + i] = BigInt(ids[i - 1]);
      out[base + n - 1] = BigInt(this.eot); // context 1 keeps only EOT, as in Python
    });
    return out;
  }
}

/** Convenience: a tokenizer from a merges file path. */
export function loadClipTokenizer(mergesPath: string, contextLength = DEFAULT_CONTEXT_LENGTH): ClipTokenizer {
  return ClipTokenizer.fromFile(mergesPath, contextLength);
}
