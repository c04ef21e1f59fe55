// A small Markdown subset for the report's markdown cells: headings, paragraphs, lists (nested
// by indentation), block quotes, fenced code, pipe tables, rules, and inline code, emphasis,
// strike-through and links. A notebook is untrusted content, so every piece of its text is
// HTML-escaped before any tag is added, raw HTML shows as text, and nothing becomes a URL the
// page would follow or load: links and images show their text and address as plain text (the
// report must work offline and fetch nothing). No package: the CLI ships inside the extension,
// whose production dependencies have no Markdown library.

const MAX_DEPTH = 6;

export function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

// Private-use characters mark stashed fragments; they are removed from the input first, so a
// notebook cannot forge one.
const STASH_OPEN = '\uE000';
const STASH_CLOSE = '\uE001';

/** A link address: no spaces, parentheses only in balanced pairs (as in wiki URLs). */
const URL_PART = String.raw`(?:[^()\s]|\([^()\s]*\))`;

/** Inline markup of one block's text, escaped. */
export function renderInline(text: string): string {
  const stash: string[] = [];
  const put = (html: string) => `${STASH_OPEN}${stash.push(html) - 1}${STASH_CLOSE}`;
  let s = text.replace(/[\uE000\uE001]/g, '');
  s = s.replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, (_m, _ticks: string, code: string) => put(`<code>${escapeHtml(code.trim() || code)}</code>`));
  s = s.replace(/\\([\\`*_{}[\]()#+\-.!|>~<])/g, (_m, ch: string) => put(escapeHtml(ch)));
  s = escapeHtml(s);
  // Addresses are shown, not followed: the page loads nothing and opens nothing.
  s = s.replace(new RegExp(`!\\[([^\\]]*)\\]\\((${URL_PART}*)[^)]*\\)`, 'g'), (_m, alt: string, url: string) => put(`<span class="md-image">[image${alt ? `: ${alt}` : ''}] <span class="md-url">${url}</span></span>`));
  s = s.replace(new RegExp(`\\[([^\\]]+)\\]\\((${URL_PART}+)[^)]*\\)`, 'g'), (_m, label: string, url: string) => `<span class="md-link">${label}</span> ${put(`<span class="md-url">(${url})</span>`)}`);
  s = s.replace(/&lt;((?:https?|mailto):[^\s&]+)&gt;/g, (_m, url: string) => put(`<span class="md-url">${url}</span>`));
  // Emphasis never spans a tag, so the tags written here always nest properly.
  s = s.replace(/\*\*\*(?=\S)([^<]*?\S)\*\*\*/g, '<strong><em>$1</em></strong>');
  s = s.replace(/(\*\*|__)(?=\S)([^<]*?\S)\1/g, '<strong>$2</strong>');
  s = s.replace(/\*(?=[^\s*])([^<*]*?[^\s*])\*/g, '<em>$1</em>');
  s = s.replace(/(^|[^\w])_(?=[^\s_])([^<_]*?[^\s_])_(?!\w)/g, '$1<em>$2</em>');
  s = s.replace(/~~(?=\S)([^<]*?\S)~~/g, '<del>$1</del>');
  s = s.replace(/ {2,}\n|\\\n/g, '<br>');
  return s.replace(/\uE000(\d+)\uE001/g, (_m, i: string) => stash[Number(i)]);
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)/;
const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?/;
const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_SEPARATOR = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

const blank = (line: string) => line.trim() === '';

function startsBlock(line: string): boolean {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line);
}

function tableCells(line: string): string[] {
  const inner = line.trim().replace(/^\|/, '').replace(/(?<!\\)\|$/, '');
  return inner.split(/(?<!\\)\|/).map((c) => c.trim());
}

function table(lines: string[]): string {
  const head = tableCells(lines[0]);
  const align = tableCells(lines[1]).map((c) => (c.startsWith(':') && c.endsWith(':') ? 'center' : c.endsWith(':') ? 'right' : c.startsWith(':') ? 'left' : ''));
  const cell = (tag: 'th' | 'td', text: string, j: number) => `<${tag}${align[j] ? ` style="text-align:${align[j]}"` : ''}>${renderInline(text)}</${tag}>`;
  const rows = lines.slice(2).map((l) => `<tr>${head.map((_, j) => cell('td', tableCells(l)[j] ?? '', j)).join('')}</tr>`);
  return `<table class="md-table"><thead><tr>${head.map((h, j) => cell('th', h, j)).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

/** Consumes one list starting at lines[i]; returns its HTML and the next line index. */
function list(lines: string[], i: number, depth: number): [string, number] {
  const first = ITEM.exec(lines[i])!;
  const ordered = /\d/.test(first[2]);
  const items: string[] = [];
  while (i < lines.length) {
    const m = ITEM.exec(lines[i]);
    if (!m || /\d/.test(m[2]) !== ordered) break;
    const indent = m[1].length + m[2].length + 1;
    const body = [m[3]];
    i++;
    // Continuation: indented lines (nested lists, more text), and blank lines inside the item.
    while (i < lines.length) {
      const line = lines[i];
      if (blank(line)) {
        if (i + 1 < lines.length && /^\s{2,}\S/.test(lines[i + 1])) {
          body.push('');
          i++;
          continue;
        }
        break;
      }
      if (/^\s{2,}\S/.test(line)) body.push(line.slice(Math.min(indent, line.length - line.trimStart().length)));
      else if (!startsBlock(line)) body.push(line); // lazy continuation of the item's paragraph
      else break;
      i++;
    }
    const firstBlock = body.findIndex((l, k) => k > 0 && (blank(l) || startsBlock(l)));
    const text = firstBlock < 0 ? body : body.slice(0, firstBlock);
    const rest = firstBlock < 0 ? [] : body.slice(firstBlock);
    items.push(`<li>${renderInline(text.join('\n'))}${rest.length ? blocks(rest, depth + 1) : ''}</li>`);
    while (i < lines.length && blank(lines[i]) && i + 1 < lines.length && ITEM.test(lines[i + 1])) i++;
  }
  const start = ordered ? Number(/\d+/.exec(first[2])![0]) : 1;
  const tag = ordered ? 'ol' : 'ul';
  return [`<${tag}${ordered && start !== 1 ? ` start="${start}"` : ''}>${items.join('')}</${tag}>`, i];
}

function blocks(lines: string[], depth: number): string {
  const out: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (blank(line)) {
      i++;
      continue;
    }
    const fence = FENCE.exec(line);
    if (fence) {
      const closer = new RegExp(`^ {0,3}${fence[1][0] === '`' ? '`' : '~'}{${fence[1].length},}\\s*$`);
      const code: string[] = [];
      for (i++; i < lines.length && !closer.test(lines[i]); i++) code.push(lines[i]);
      i++;
      out.push(`<pre class="md-code"><code>${escapeHtml(code.join('\n'))}</code></pre>`);
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      // One level down: the report's own title is the page's only <h1>.
      const level = Math.min(6, heading[1].length + 1);
      out.push(`<h${level}>${renderInline(heading[2] ?? '')}</h${level}>`);
      i++;
      continue;
    }
    if (RULE.test(line)) {
      out.push('<hr>');
      i++;
      continue;
    }
    if (depth < MAX_DEPTH && QUOTE.test(line)) {
      const inner: string[] = [];
      for (; i < lines.length && (QUOTE.test(lines[i]) || (!blank(lines[i]) && !startsBlock(lines[i]) && inner.length > 0)); i++) {
        inner.push(lines[i].replace(QUOTE, ''));
      }
      out.push(`<blockquote>${blocks(inner, depth + 1)}</blockquote>`);
      continue;
    }
    if (depth < MAX_DEPTH && ITEM.test(line)) {
      const [html, next] = list(lines, i, depth);
      out.push(html);
      i = next;
      continue;
    }
    if (line.includes('|') && i + 1 < lines.length && TABLE_SEPARATOR.test(lines[i + 1]) && lines[i + 1].includes('-')) {
      const rows = [line, lines[i + 1]];
      for (i += 2; i < lines.length && !blank(lines[i]) && lines[i].includes('|'); i++) rows.push(lines[i]);
      out.push(table(rows));
      continue;
    }
    const para: string[] = [];
    for (; i < lines.length && !blank(lines[i]) && (para.length === 0 || !startsBlock(lines[i])); i++) para.push(lines[i]);
    out.push(`<p>${renderInline(para.join('\n').trim())}</p>`);
  }
  return out.join('\n');
}

/** Markdown source -> safe HTML (no script, no attribute from the source, no URL to follow). */
export function renderMarkdown(source: string): string {
  return blocks(source.replace(/\r\n?/g, '\n').split('\n'), 0);
}

/** The text of the first level-1 heading, if the source has one (the report's title). */
export function firstHeading(source: string): string | undefined {
  let inFence = false;
  for (const line of source.replace(/\r\n?/g, '\n').split('\n')) {
    if (FENCE.test(line)) inFence = !inFence;
    const m = !inFence && /^ {0,3}#\s+(.*?)\s*#*\s*$/.exec(line);
    if (m && m[1]) return m[1].replace(/[*`]/g, '');
  }
  return undefined;
}
