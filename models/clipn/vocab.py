"""Learns a small CLIP-format BPE merges file from a text corpus (for the default model).

The output has the layout of `bpe_simple_vocab_16e6.txt`, so the same tokenizer code reads
it; words outside the corpus still tokenize, byte by byte.
"""
from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path
from typing import Iterable

from .tokenizer import TOKEN_PATTERN, bytes_to_unicode, clean_text


def _words(texts: Iterable[str]) -> Counter:
    byte_encoder = bytes_to_unicode()
    counts: Counter = Counter()
    for text in texts:
        for piece in TOKEN_PATTERN.findall(clean_text(text)):
            symbols = [byte_encoder[b] for b in piece.encode("utf-8")]
            symbols[-1] += "</w>"
            counts[tuple(symbols)] += 1
    return counts


def learn_merges(texts: Iterable[str], max_merges: int = 2000, min_count: int = 2) -> list:
    """Classic BPE: repeatedly merge the most frequent adjacent pair (ties: lexical order)."""
    words = _words(texts)
    merges = []
    while len(merges) < max_merges:
        pairs: Counter = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best, count = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if count < min_count:
            break
        merges.append(best)
        joined = best[0] + best[1]
        updated: Counter = Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            updated[tuple(out)] += n
        words = updated
    return merges


def write_merges(path: Path, merges: list) -> None:
    text = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    data = text.encode("utf-8")
    path = Path(path)
    # mtime=0 keeps the gzip bytes (and so the manifest's sha256) reproducible.
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
