// Token ids of templates filled with class names, put together from the ids of the parts: a
// 128-template pool over 100 classes is 12,800 texts but only 128 templates and 100 names, and
// tokenising every text held the main thread ~0.2 s while the text workers waited (ablation
// bench, first run). The result is the tokenizer's own, id for id (tokenizeOne up to EOT): the
// shortcut is taken only where the tokenizer provably splits the text at the part boundaries,
// otherwise the whole text is tokenised.
//
// Why the parts are enough: the tokenizer cleans a text (NFC, HTML unescape, whitespace, lower
// case), splits it into pieces with one regex (letter runs, single digits, runs of other
// characters, contractions like 's, the special tokens) and runs BPE on each piece alone. For
// printable ASCII without '&' or "<|", cleaning acts character by character, so the pieces of
// a + b are those of a then those of b unless a piece can run across the boundary: two letters
// (one letter run), two other characters (one run), or an apostrophe (a contraction). A space on
// either side always separates.
import { fillTemplate } from './prompts';
import type { ClipTokenizer } from './tokenizer';

const PLAIN = /^[\x20-\x7e]*$/;
const enum Kind { Space, Letter, Digit, Other, Apostrophe }

function kind(code: number): Kind {
  if (code === 0x20) return Kind.Space;
  if (code === 0x27) return Kind.Apostrophe;
  if ((code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a)) return Kind.Letter;
  return code >= 0x30 && code <= 0x39 ? Kind.Digit : Kind.Other;
}

/** Whether the tokenizer's pieces of a + b are a's then b's, from a's last and b's first character. */
function separates(last: Kind, first: Kind): boolean {
  if (last === Kind.Space || first === Kind.Space) return true;
  if (last === Kind.Apostrophe || first === Kind.Apostrophe) return false;
  return last === Kind.Digit || first === Kind.Digit || last !== first;
}

/** Printable ASCII without '&' (HTML entities) or '<|' (special tokens): cleaned character by character. */
const plain = (s: string) => PLAIN.test(s) && !s.includes('&') && !s.includes('<|');

/** Token ids and lengths of templates filled with class names (see the module comment). */
export interface FilledTokens {
  /** The ids of fillTemplate(templates[t], classes[c]) from SOT to EOT, cut at the context length with EOT last (tokenizeOne's, without the padding). */
  ids(c: number, t: number): number[];
  /** Its token count before the cut, without SOT and EOT (tokenizer.encode's length). */
  length(c: number, t: number): number;
}

export function filledTokens(tokenizer: ClipTokenizer, classes: readonly string[], templates: readonly string[]): FilledTokens {
  const encoded = new Map<string, number[]>();
  const encode = (part: string) => encoded.get(part) ?? (encoded.set(part, tokenizer.encode(part)), encoded.get(part)!);
  const templateParts = templates.map((t) => (plain(t) ? t.split('{}') : undefined));
  const classPlain = classes.map(plain);
  /** The pieces in text order (empty ones left out), or undefined where a piece could run across a boundary. */
  const pieces = (c: number, t: number): string[] | undefined => {
    const [parts, name] = [templateParts[t], classes[c]];
    if (!parts || !classPlain[c]) return undefined;
    const out: string[] = [];
    let last: Kind | undefined;
    for (let i = 0; i < 2 * parts.length - 1; i++) {
      const p = i % 2 === 0 ? parts[i / 2] : name;
      if (p.length === 0) continue;
      // '<' + '|' across a boundary is two Other characters: not separated.
      if (last !== undefined && !separates(last, kind(p.charCodeAt(0)))) return undefined;
      last = kind(p.charCodeAt(p.length - 1));
      out.push(p);
    }
    return out;
  };
  return {
    ids(c, t) {
      const list = pieces(c, t);
      if (!list) {
        const full = tokenizer.tokenizeOne(fillTemplate(templates[t], classes[c]));
        return full.slice(0, full.indexOf(tokenizer.eot) + 1);
      }
      return tokenizer.frame(...list.map(encode));
    },
    length(c, t) {
      const list = pieces(c, t);
      if (!list) return encode(fillTemplate(templates[t], classes[c])).length;
      let n = 0;
      for (const p of list) n += encode(p).length;
      return n;
    },
  };
}
