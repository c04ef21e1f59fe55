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
