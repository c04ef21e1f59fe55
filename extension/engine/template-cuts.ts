// Templates that the tokenizer cuts at the model's context length. A text longer than the
// context keeps its first tokens and EOT (tokenizer.ts), so a long template filled with a long
// class name loses the end of the text, or the class name itself: then the template gives the
// same text, and the same feature, for every class. CLIP's 77 tokens seldom cut a prompt; the
// bundled tiny model's 16 cut many (81 of the ablation bench's 128 templates for some classes,
// 28 of them before the class name).
//
// Counted from filled-tokens.ts's ids and lengths, which are the tokenizer's own.
import { filledTokens } from './filled-tokens';
import type { ClipTokenizer } from './tokenizer';

export interface TemplateCuts {
  contextLength: number;
  /** Templates cut for at least one class, in pool order. */
  cut: number[];
  /** Of those, the ones whose cut texts are all one text: the class no longer shows (two classes or more). */
  lost: number[];
  /** Filled texts (class x template) that are cut. */
  texts: number;
}

export function templateCuts(tokenizer: ClipTokenizer, classes: readonly string[], templates: readonly string[]): TemplateCuts {
  const ctx = tokenizer.contextLength;
  const tokens = filledTokens(tokenizer, classes, templates);
  const cut: number[] = [];
  const lost: number[] = [];
  let texts = 0;
  templates.forEach((_, t) => {
    // SOT and EOT around the text.
    const over = classes.filter((__, c) => tokens.length(c, t) + 2 > ctx).length;
    if (over === 0) return;
    cut.push(t);
    texts += over;
    const first = tokens.ids(0, t).join();
    if (classes.length > 1 && classes.every((__, c) => tokens.ids(c, t).join() === first)) lost.push(t);
  });
  return { contextLength: ctx, cut, lost, texts };
}

/** A note for a result's notes, or undefined when no text is cut. */
export function templateCutsNote(cuts: TemplateCuts, templates: readonly string[], classes: number, what: string): string | undefined {
  if (cuts.cut.length === 0) return undefined;
  const example = templates[cuts.lost[0] ?? cuts.cut[0]];
  const lost = cuts.lost.length > 0
    ? `; ${cuts.lost.length} of them are cut before the class name tells the classes apart, so they give one text and one feature for every class (e.g. ${JSON.stringify(example)})`
    : ` (e.g. ${JSON.stringify(example)})`;
  return `${cuts.cut.length} of the ${templates.length} ${what} are cut at the model's ${cuts.contextLength}-token context for some classes ` +
    `(${cuts.texts} of ${classes * templates.length} texts)${lost}. Shorter templates or a model with a longer context avoid it.`;
}

/** templateCutsNote of these classes and templates under the tokenizer's context (what the cells and the ablation report). */
export function noteOnCutTemplates(tokenizer: ClipTokenizer, classes: readonly string[], templates: readonly string[], what: string): string | undefined {
  return templateCutsNote(templateCuts(tokenizer, classes, templates), templates, classes.length, what);
}
