"""The Python tokenizer (reference for the TypeScript one) and the synthetic generator."""
import numpy as np
import pytest

from clipn.synthetic import ID_SHAPES, OOD_SHAPES, SHAPES, make_split, render
from clipn.tokenizer import ClipTokenizer
from clipn.vocab import learn_merges, write_merges


def test_real_vocabulary_gives_clips_ids(real_merges):
    tok = ClipTokenizer(real_merges)
    assert tok.vocab_size == 49408
    # Ids of the real CLIP tokenizer for this prompt (SOT 49406, EOT 49407).
    assert tok.tokenize(["a photo of a cat."])[0][:8] == [49406, 320, 1125, 539, 320, 2368, 269, 49407]
    assert tok.tokenize(["A   Photo\tof a CAT."])[0] == tok.tokenize(["a photo of a cat."])[0]
    assert tok.encode("&amp;") == tok.encode("&")


def test_truncation_keeps_eot_last(real_merges):
    tok = ClipTokenizer(real_merges, context_length=77)
    row = tok.tokenize([" ".join(["dog"] * 200)])[0]
    assert len(row) == 77 and row[0] == tok.sot and row[-1] == tok.eot
    assert tok.tokenize([""])[0][:3] == [tok.sot, tok.eot, 0]


def test_decode_round_trip(real_merges):
    tok = ClipTokenizer(real_merges)
    assert tok.decode(tok.encode("a photo of a café, 3 röntgen!")) == "a photo of a café , 3 röntgen !"


def test_small_vocabulary_same_format(tmp_path):
    merges = learn_merges(["a red circle.", "a red square.", "a red circle on red"])
    path = tmp_path / "bpe_simple_vocab.txt.gz"
    write_merges(path, merges)
    tok = ClipTokenizer(path, context_length=8)
    assert tok.vocab_size == 512 + len(merges) + 2
    ids = tok.encode("a red circle")
    assert len(ids) == 3  # each frequent word became one token
    assert tok.encode("zebra")  # unseen words still tokenize byte by byte
    write_merges(tmp_path / "again.txt.gz", merges)
    assert (tmp_path / "again.txt.gz").read_bytes() == path.read_bytes()  # reproducible bytes


def test_bad_merges_file_names_it(tmp_path):
    path = tmp_path / "broken.txt"
    path.write_text("#version: 0.2\na b c\n")
    with pytest.raises(ValueError, match="broken.txt:2"):
        ClipTokenizer(path)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        ClipTokenizer(tmp_path / "missing.txt")


def test_synthetic_data_is_deterministic_and_splits_differ():
    a = render(7, 3)
    b = render(7, 3)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image)) and a.caption == b.caption
    assert not np.array_equal(np.asarray(render(8, 3).image), np.asarray(a.image))
    images, captions, labels = make_split(1, 200, 32)
    assert images.shape == (200, 32, 32, 3) and images.dtype == np.uint8
    assert set(labels.tolist()) == set(range(len(SHAPES)))
    assert all(SHAPES[l] in c for l, c in zip(labels, captions))
    assert not set(ID_SHAPES) & set(OOD_SHAPES)
