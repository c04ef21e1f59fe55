"""CLIP byte-level BPE tokenizer (the open_clip SimpleTokenizer format).

Reads a merges file in the `bpe_simple_vocab_16e6.txt(.gz)` layout: one header line, then
one merge ("a b") per line. The vocabulary is derived from the merges exactly as CLIP does:
256 byte symbols, the same with an end-of-word marker, one entry per merge, then the
start/end-of-text tokens. A small merges file (the default model's) gives a small
vocabulary through the same code path as the real one.

Text clean-up: CLIP runs ftfy.fix_text before HTML-unescaping; ftfy is not packaged for
Debian, so we apply its default Unicode normalisation (NFC) instead. For ordinary text the
two agree; the TypeScript tokenizer implements this same definition.
"""
from __future__ import annotations

import gzip
import html
import json
import sys
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Iterable, List, Sequence

import regex

SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
# CLIP reads at most this many merges (its vocabulary is 49408 = 512 + 48894 + 2).
MAX_MERGES = 49152 - 256 - 2
TOKEN_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


@lru_cache()
def bytes_to_unicode() -> dict:
    """Reversible map from bytes to printable unicode characters (CLIP's byte alphabet)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def read_merges(path: Path) -> List[tuple]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: tokenizer merges file not found")
    raw = path.read_bytes()
    try:
        text = gzip.decompress(raw).decode("utf-8") if raw[:2] == b"\x1f\x8b" else raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable BPE merges file ({err})") from None
    lines = text.split("\n")[1 : MAX_MERGES + 1]
    merges = []
    for number, line in enumerate(lines, start=2):
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: expected two symbols per merge, got {line!r}")
        merges.append(tuple(parts))
    return merges


def clean_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).lower()


class ClipTokenizer:
    def __init__(self, merges_path: Path, context_length: int = 77):
        self.merges_path = Path(merges_path)
        self.context_length = context_length
        merges = read_merges(self.merges_path)
        alphabet = list(bytes_to_unicode().values())
        vocab = alphabet + [a + "</w>" for a in alphabet] + ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = {i: token for token, i in self.encoder.items()}
        self.ranks = {merge: i for i, merge in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.sot = self.encoder[SOT]
        self.eot = self.encoder[EOT]
        self._cache = {SOT: SOT, EOT: EOT}

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def _bpe(self, token: str) -> List[str]:
        if token in self._cache:
            return self._cache[token].split(" ")
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == best[0] and word[i + 1] == best[1]:
                    merged.append(best[0] + best[1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self._cache[token] = " ".join(word)
        return word

    def encode(self, text: str) -> List[int]:
        ids = []
        for piece in TOKEN_PATTERN.findall(clean_text(text)):
            symbols = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self._bpe(symbols))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        text = "".join(self.decoder[i] for i in ids if i not in (0, self.sot, self.eot))
        data = bytearray(self.byte_decoder[c] for c in text)
        return data.decode("utf-8", errors="replace").replace("</w>", " ").strip()

    def tokenize(self, texts: Sequence[str]) -> List[List[int]]:
        """Token ids padded with 0 to the context length; over-long texts keep EOT last."""
        rows = []
        for text in texts:
            ids = [self.sot] + self.encode(text) + [self.eot]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.eot
            rows.append(ids + [0] * (self.context_length - len(ids)))
        return rows


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m clipn.tokenizer MERGES CONTEXT`: JSON list of strings on stdin -> ids."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m clipn.tokenizer MERGES_FILE CONTEXT_LENGTH < texts.json", file=sys.stderr)
        return 2
    tokenizer = ClipTokenizer(Path(args[0]), int(args[1]))
    texts = json.load(sys.stdin)
    json.dump(tokenizer.tokenize(texts), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
