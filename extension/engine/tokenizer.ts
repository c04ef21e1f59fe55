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
//   - HTML5-only named entities outside the table below (e.g. &check;) stay escaped here while
//     html.unescape decodes them (Python's table has 2231 names; numeric references all agree).
// Everything else was checked against /usr/bin/python3 code point by code point (lower-casing,
// NFC of single code points, token classes) and on fuzzed text.
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';

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

// ---------------------------------------------------------------------------------------------
// html.unescape (CPython Lib/html/__init__.py). Named references: the HTML 4 set (252 names,
// values from the HTML5 table, so &lang;/&rang; are U+27E8/U+27E9 as in Python), the 106
// legacy names that HTML5 accepts without ';', plus &apos; &Tab; &NewLine;. Python's full
// table has 2231 entries; the other HTML5-only names are left as they are here.
const ENTITY_TABLE =
  'Aacute=c1 aacute=e1 Aacute;=c1 aacute;=e1 Acirc=c2 acirc=e2 Acirc;=c2 acirc;=e2 acute=b4 ' +
  'acute;=b4 AElig=c6 aelig=e6 AElig;=c6 aelig;=e6 Agrave=c0 agrave=e0 Agrave;=c0 agrave;=e0 ' +
  'alefsym;=2135 Alpha;=391 alpha;=3b1 AMP=26 amp=26 AMP;=26 amp;=26 and;=2227 ang;=2220 ' +
  'apos;=27 Aring=c5 aring=e5 Aring;=c5 aring;=e5 asymp;=2248 Atilde=c3 atilde=e3 Atilde;=c3 ' +
  'atilde;=e3 Auml=c4 auml=e4 Auml;=c4 auml;=e4 bdquo;=201e Beta;=392 beta;=3b2 brvbar=a6 ' +
  'brvbar;=a6 bull;=2022 cap;=2229 Ccedil=c7 ccedil=e7 Ccedil;=c7 ccedil;=e7 cedil=b8 ' +
  'cedil;=b8 cent=a2 cent;=a2 Chi;=3a7 chi;=3c7 circ;=2c6 clubs;=2663 cong;=2245 COPY=a9 ' +
  'copy=a9 COPY;=a9 copy;=a9 crarr;=21b5 cup;=222a curren=a4 curren;=a4 Dagger;=2021 ' +
  'dagger;=2020 dArr;=21d3 darr;=2193 deg=b0 deg;=b0 Delta;=394 delta;=3b4 diams;=2666 ' +
  'divide=f7 divide;=f7 Eacute=c9 eacute=e9 Eacute;=c9 eacute;=e9 Ecirc=ca ecirc=ea Ecirc;=ca ' +
  'ecirc;=ea Egrave=c8 egrave=e8 Egrave;=c8 egrave;=e8 empty;=2205 emsp;=2003 ensp;=2002 ' +
  'Epsilon;=395 epsilon;=3b5 equiv;=2261 Eta;=397 eta;=3b7 ETH=d0 eth=f0 ETH;=d0 eth;=f0 ' +
  'Euml=cb euml=eb Euml;=cb euml;=eb euro;=20ac exist;=2203 fnof;=192 forall;=2200 frac12=bd ' +
  'frac12;=bd frac14=bc frac14;=bc frac34=be frac34;=be frasl;=2044 Gamma;=393 gamma;=3b3 ' +
  'ge;=2265 GT=3e gt=3e GT;=3e gt;=3e hArr;=21d4 harr;=2194 hearts;=2665 hellip;=2026 ' +
  'Iacute=cd iacute=ed Iacute;=cd iacute;=ed Icirc=ce icirc=ee Icirc;=ce icirc;=ee iexcl=a1 ' +
  'iexcl;=a1 Igrave=cc igrave=ec Igrave;=cc igrave;=ec image;=2111 infin;=221e int;=222b ' +
  'Iota;=399 iota;=3b9 iquest=bf iquest;=bf isin;=2208 Iuml=cf iuml=ef Iuml;=cf iuml;=ef ' +
  'Kappa;=39a kappa;=3ba Lambda;=39b lambda;=3bb lang;=27e8 laquo=ab laquo;=ab lArr;=21d0 ' +
  'larr;=2190 lceil;=2308 ldquo;=201c le;=2264 lfloor;=230a lowast;=2217 loz;=25ca lrm;=200e ' +
  'lsaquo;=2039 lsquo;=2018 LT=3c lt=3c LT;=3c lt;=3c macr=af macr;=af mdash;=2014 micro=b5 ' +
  'micro;=b5 middot=b7 middot;=b7 minus;=2212 Mu;=39c mu;=3bc nabla;=2207 nbsp=a0 nbsp;=a0 ' +
  'ndash;=2013 ne;=2260 NewLine;=a ni;=220b not=ac not;=ac notin;=2209 nsub;=2284 Ntilde=d1 ' +
  'ntilde=f1 Ntilde;=d1 ntilde;=f1 Nu;=39d nu;=3bd Oacute=d3 oacute=f3 Oacute;=d3 oacute;=f3 ' +
  'Ocirc=d4 ocirc=f4 Ocirc;=d4 ocirc;=f4 OElig;=152 oelig;=153 Ograve=d2 ograve=f2 Ograve;=d2 ' +
  'ograve;=f2 oline;=203e Omega;=3a9 omega;=3c9 Omicron;=39f omicron;=3bf oplus;=2295 or;=2228 ' +
  'ordf=aa ordf;=aa ordm=ba ordm;=ba Oslash=d8 oslash=f8 Oslash;=d8 oslash;=f8 Otilde=d5 ' +
  'otilde=f5 Otilde;=d5 otilde;=f5 otimes;=2297 Ouml=d6 ouml=f6 Ouml;=d6 ouml;=f6 para=b6 ' +
  'para;=b6 part;=2202 permil;=2030 perp;=22a5 Phi;=3a6 phi;=3c6 Pi;=3a0 pi;=3c0 piv;=3d6 ' +
  'plusmn=b1 plusmn;=b1 pound=a3 pound;=a3 Prime;=2033 prime;=2032 prod;=220f prop;=221d ' +
  'Psi;=3a8 psi;=3c8 QUOT=22 quot=22 QUOT;=22 quot;=22 radic;=221a rang;=27e9 raquo=bb ' +
  'raquo;=bb rArr;=21d2 rarr;=2192 rceil;=2309 rdquo;=201d real;=211c REG=ae reg=ae REG;=ae ' +
  'reg;=ae rfloor;=230b Rho;=3a1 rho;=3c1 rlm;=200f rsaquo;=203a rsquo;=2019 sbquo;=201a ' +
  'Scaron;=160 scaron;=161 sdot;=22c5 sect=a7 sect;=a7 shy=ad shy;=ad Sigma;=3a3 sigma;=3c3 ' +
  'sigmaf;=3c2 sim;=223c spades;=2660 sub;=2282 sube;=2286 sum;=2211 sup1=b9 sup1;=b9 sup2=b2 ' +
  'sup2;=b2 sup3=b3 sup3;=b3 sup;=2283 supe;=2287 szlig=df szlig;=df Tab;=9 Tau;=3a4 tau;=3c4 ' +
  'there4;=2234 Theta;=398 theta;=3b8 thetasym;=3d1 thinsp;=2009 THORN=de thorn=fe THORN;=de ' +
  'thorn;=fe tilde;=2dc times=d7 times;=d7 trade;=2122 Uacute=da uacute=fa Uacute;=da ' +
  'uacute;=fa uArr;=21d1 uarr;=2191 Ucirc=db ucirc=fb Ucirc;=db ucirc;=fb Ugrave=d9 ugrave=f9 ' +
  'Ugrave;=d9 ugrave;=f9 uml=a8 uml;=a8 upsih;=3d2 Upsilon;=3a5 upsilon;=3c5 Uuml=dc uuml=fc ' +
  'Uuml;=dc uuml;=fc weierp;=2118 Xi;=39e xi;=3be Yacute=dd yacute=fd Yacute;=dd yacute;=fd ' +
  'yen=a5 yen;=a5 yuml=ff Yuml;=178 yuml;=ff Zeta;=396 zeta;=3b6 zwj;=200d zwnj;=200c';
const NAMED_ENTITIES: ReadonlyMap<string, string> = new Map(
  ENTITY_TABLE.split(' ').map((item) => {
    const [name, hex] = item.split('=');
    return [name, String.fromCodePoint(...hex.split('.').map((h) => parseInt(h, 16)))] as [string, string];
  }),
);
/** Python's html._invalid_charrefs (Windows-1252 remapping of C1 references, NUL, CR). */
const INVALID_CHARREFS: ReadonlyMap<number, string> = new Map([
  [0x00, '\ufffd'], [0x0d, '\r'], [0x80, '\u20ac'], [0x81, '\x81'], [0x82, '\u201a'],
  [0x83, '\u0192'], [0x84, '\u201e'], [0x85, '\u2026'], [0x86, '\u2020'], [0x87, '\u2021'],
  [0x88, '\u02c6'], [0x89, '\u2030'], [0x8a, '\u0160'], [0x8b, '\u2039'], [0x8c, '\u0152'],
  [0x8d, '\x8d'], [0x8e, '\u017d'], [0x8f, '\x8f'], [0x90, '\x90'], [0x91, '\u2018'],
  [0x92, '\u2019'], [0x93, '\u201c'], [0x94, '\u201d'], [0x95, '\u2022'], [0x96, '\u2013'],
  [0x97, '\u2014'], [0x98, '\u02dc'], [0x99, '\u2122'], [0x9a, '\u0161'], [0x9b, '\u203a'],
  [0x9c, '\u0153'], [0x9d, '\x9d'], [0x9e, '\u017e'], [0x9f, '\u0178'],
]);

/** Python's html._invalid_codepoints: references to these decode to nothing. */
function isInvalidCodepoint(n: number): boolean {
  return (
    (n >= 0x1 && n <= 0x8) ||
    n === 0xb ||
    (n >= 0xe && n <= 0x1f) ||
    (n >= 0x7f && n <= 0x9f) ||
    (n >= 0xfdd0 && n <= 0xfdef) ||
    ((n & 0xfffe) === 0xfffe && n <= 0x10ffff)
  );
}

const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

function replaceCharref(_match: string, s: string): string {
  if (s[0] === '#') {
    const hex = s[1] === 'x' || s[1] === 'X';
    const digits = (hex ? s.slice(2) : s.slice(1)).replace(/;$/, '');
    const num = parseInt(digits, hex ? 16 : 10); // huge values become Infinity: still > 0x10FFFF
    const remapped = INVALID_CHARREFS.get(num);
    if (remapped !== undefined) return remapped;
    if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
    if (isInvalidCodepoint(num)) return '';
    return String.fromCodePoint(num);
  }
  const whole = NAMED_ENTITIES.get(s);
  if (whole !== undefined) return whole;
  // The longest name that is a prefix (as the HTML5 standard says): legacy names without ';'.
  const chars = Array.from(s);
  for (let x = chars.length - 1; x > 1; x--) {
    const prefix = chars.slice(0, x).join('');
    const value = NAMED_ENTITIES.get(prefix);
    if (value !== undefined) return value + chars.slice(x).join('');
  }
  return '&' + s;
}

/** Python's html.unescape (see the note on named references above). */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARREF, replaceCharref);
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

  /** Ids of one text as the model sees them: SOT, ids, EOT, zero padding; EOT kept last. */
  tokenizeOne(text: string): number[] {
    const known = this.rows.get(text);
    if (known) return known.slice();
    let ids = [this.sot, ...this.encode(text), this.eot];
    if (ids.length > this.contextLength) {
      ids = ids.slice(0, this.contextLength);
      ids[ids.length - 1] = this.eot;
    }
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
