// Templates that the tokenizer cuts at the model's context length. A text longer than the
// context keeps its first tokens and EOT (tokenizer.ts), so a long template filled with a long
// class name loses the end of the text, or the class name itself: then the template gives the
// same text, and the same feature, for every class. CLIP's 77 tokens seldom cut a prompt; the
// bundled tiny model's 16 cut many (81 of the ablation bench's 128 templates for some classes,
// 28 of them before the class name).
//
// Counted without tokenising every text: CLIP's BPE works word by word, so where `{}` stands
// apart from letters and digits the class name is words of its own, and a filled text's length
// is the template's tokens plus the class's for each `{}`. A `{}` glued to a word ("{}s") merges
// with it: those templates are tokenised class by class.
import { fillTemplate } from './prompts';
import type { ClipTokenizer } from './tokenizer';

const GLUED = /[\p{L}\p{N}]\{\}|\{\}[\p{L}\p{N}]/u;

export interface TemplateCuts {
  contextLength: number;
  /** Templates cut for at least one class, in pool order. */
  cut: number[];
  /** Of those, the ones cut before their first `{}`: one text for every class. */
  lost: number[];
  /** Filled texts (class x template) that are cut. */
  texts: number;
}

export function templateCuts(tokenizer: ClipTokenizer, classes: readonly string[], templates: readonly string[]): TemplateCuts {
  const ctx = tokenizer.contextLength;
  const classLengths = classes.map((c) => tokenizer.encode(c).length);
  const longest = Math.max(...classLengths);
  const cut: number[] = [];
  const lost: number[] = [];
  let texts = 0;
  templates.forEach((t, i) => {
    const slots = t.split('{}').length - 1;
    let lengths: number[];
    let classLost: () => boolean;
    if (GLUED.test(t)) {
      const filled = classes.map((c) => fillTemplate(t, c));
      lengths = filled.map((text) => tokenizer.encode(text).length);
      // Lost when the word that holds `{}` starts past the cut.
      const word = t.slice(0, t.indexOf('{}')).search(/[\p{L}\p{N}]*$/u);
      classLost = () => 1 + tokenizer.encode(t.slice(0, word)).length >= ctx - 1;
    } else {
      const base = tokenizer.encode(t.split('{}').join(' ')).length;
      if (base + slots * longest + 2 <= ctx) return; // SOT and EOT around the text
      lengths = classLengths.map((n) => base + slots * n);
      // The class's first token would sit at 1 + (tokens before {}); EOT takes the last place.
      classLost = () => 1 + tokenizer.encode(t.slice(0, t.indexOf('{}'))).length >= ctx - 1;
    }
    const over = lengths.filter((n) => n + 2 > ctx).length;
    if (over === 0) return;
    cut.push(i);
    texts += over;
    if (classLost()) lost.push(i);
  });
  return { contextLength: ctx, cut, lost, texts };
}

/** A note for a result's notes, or undefined when no text is cut. */
export function templateCutsNote(cuts: TemplateCuts, templates: readonly string[], classes: number, what: string): string | undefined {
  if (cuts.cut.length === 0) return undefined;
  const example = templates[cuts.lost[0] ?? cuts.cut[0]];
  const lost = cuts.lost.length > 0
    ? `; ${cuts.lost.length} of them lose the class name entirely and give the same feature for every class (e.g. ${JSON.stringify(example)})`
    : ` (e.g. ${JSON.stringify(example)})`;
  return `${cuts.cut.length} of the ${templates.length} ${what} are cut at the model's ${cuts.contextLength}-token context for some classes ` +
    `(${cuts.texts} of ${classes * templates.length} texts)${lost}. Shorter templates or a model with a longer context avoid it.`;
}
