"""The "no" tower after a shared past (kv_graph.py): a text's feature computed from its prefix's
keys and values plus its own tokens equals encode_text_no on the whole text, for any split,
any prompt mix, rows continuing different pasts in one batch, and at CLIP's 77-token context;
the export writes the graph with the documented inputs, outputs and dynamic axes.

Tolerance: float32 results of mathematically identical computations, max abs <= 1e-6
(observed ~1e-7) on unit-norm features."""
from dataclasses import replace

import onnx
import pytest
import torch

from clipn.config import get_config
from clipn.export import export_model
from clipn.kv_graph import KV_INPUTS, KV_OUTPUTS, KvGraph, empty_past, run_with_prefix
from clipn.model import CLIPN
from clipn.tokenizer import ClipTokenizer

TOL = 1e-6
TEMPLATES = ["a photo of no {}.", "a {}.", "{} in this photo.", "there is not a {} here at all, not even a small one."]
CLASSES = ["circle", "red square", "star", "triangle on a very long and winding blue background"]


@pytest.fixture(scope="module")
def long_model(small_merges):
    """The micro architecture at CLIP's 77-token context, random weights and prompts."""
    torch.manual_seed(2)
    config = get_config("micro").with_vocab(ClipTokenizer(small_merges).vocab_size)
    model = CLIPN(replace(config, text=replace(config.text, context_length=77)))
    with torch.no_grad():
        model.prompt_no.normal_(std=0.5)
    return model.eval()


def weight_rows(prompts: int) -> dict:
    generator = torch.Generator().manual_seed(5)
    return {
        "mean": torch.full((1, prompts), 1.0 / prompts),
        "none": torch.zeros(1, prompts),
        "single": torch.eye(prompts)[:1],
        "random": torch.rand(1, prompts, generator=generator),
    }


def own_ids(tokenizer: ClipTokenizer, text: str) -> torch.Tensor:
    row = tokenizer.tokenize([text])[0]
    return torch.tensor([row[: row.index(tokenizer.eot) + 1]])


@pytest.mark.parametrize("which", ["micro_model", "long_model"])
def test_any_split_gives_the_whole_text_feature(request, which, small_merges):
    model = request.getfixturevalue(which)
    tokenizer = ClipTokenizer(small_merges, model.config.text.context_length)
    checked = 0
    with torch.no_grad():
        for template in TEMPLATES:
            for name in CLASSES:
                ids = own_ids(tokenizer, template.replace("{}", name))
                for label, w in weight_rows(model.config.num_prompts).items():
                    whole = model.encode_text_no(ids, w)
                    # 1 = SOT alone; length - 1 = only EOT left (a truncated text's suffix).
                    for split in sorted({1, 2, ids.shape[1] // 2, ids.shape[1] - 1}):
                        got = run_with_prefix(model, ids, split, w)
                        torch.testing.assert_close(got, whole, rtol=0, atol=TOL, msg=f"{template!r} {name!r} {label} split {split}")
                        checked += 1
    assert checked > 100


def test_rows_continue_their_own_past(micro_model, small_merges):
    """Batches of rows continuing different pasts (different prefixes and prompt mixes), as the
    engine batches them (pasts of one length, rows of one suffix length): each row is its own
    whole text."""
    model = micro_model
    tokenizer = ClipTokenizer(small_merges, model.config.text.context_length)
    p = model.config.num_prompts
    candidates = ["a photo of no", "a photo of a", "a drawing of no", "a photo of the", "a picture of no", "a bad photo of"]
    by_length = {}
    for text in candidates:
        by_length.setdefault(own_ids(tokenizer, text).shape[1] - 1, []).append(text)
    prefixes = max(by_length.values(), key=len)
    assert len(prefixes) >= 2, by_length
    generator = torch.Generator().manual_seed(7)
    mixes = [torch.full((1, p), 1.0 / p), torch.zeros(1, p)] + [torch.rand(1, p, generator=generator) for _ in prefixes]
    mixes = mixes[: len(prefixes)]
    prefix_ids = [own_ids(tokenizer, text)[:, :-1] for text in prefixes]
    graph = KvGraph(model)
    mixed_batches = 0
    with torch.no_grad():
        _, keys, values = graph(torch.cat(prefix_ids), torch.cat(mixes), empty_past(model), empty_past(model), torch.zeros(len(prefixes), dtype=torch.long))
        t = model.config.text
        assert keys.shape == (t.layers, len(prefixes), t.heads, prefix_ids[0].shape[1], t.width // t.heads)
        by_suffix = {}
        for g, prefix in enumerate(prefixes):
            for name in ["star", "cross", "moon", "red circle"]:
                whole = own_ids(tokenizer, f"{prefix} {name}.")
                suffix = whole[:, prefix_ids[g].shape[1]:]
                by_suffix.setdefault(suffix.shape[1], []).append((g, suffix, model.encode_text_no(whole, mixes[g])))
        for rows in by_suffix.values():
            index = torch.tensor([g for g, _, _ in rows])
            weights = torch.cat([mixes[g] for g, _, _ in rows])
            embeds, present_keys, _ = graph(torch.cat([s for _, s, _ in rows]), weights, keys, values, index)
            torch.testing.assert_close(embeds, torch.cat([e for _, _, e in rows]), rtol=0, atol=TOL)
            assert present_keys.shape[1:4] == (len(rows), t.heads, rows[0][1].shape[1])
            mixed_batches += len(set(index.tolist())) > 1
    assert mixed_batches >= 1


def test_export_writes_the_kv_graph(micro_model, small_merges, tmp_path):
    manifest = export_model(micro_model, small_merges, tmp_path, "micro-kv")
    assert manifest["graphs"]["text_no_kv"] == "text_no_kv.onnx"
    assert "text_no_kv.onnx" in manifest["files"]
    graph = onnx.load(str(tmp_path / "text_no_kv.onnx")).graph
    assert [i.name for i in graph.input] == KV_INPUTS
    assert [o.name for o in graph.output] == KV_OUTPUTS
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    t = micro_model.config.text
    assert dims["input_ids"] == ["batch", "sequence"]
    assert dims["past_keys"] == [t.layers, "pasts", t.heads, "past", t.width // t.heads]
    assert dims["past_index"] == ["batch"]
    without = export_model(micro_model, small_merges, tmp_path / "no-kv", "micro-no-kv", kv=False)
    assert "text_no_kv" not in without["graphs"] and not (tmp_path / "no-kv" / "text_no_kv.onnx").exists()
