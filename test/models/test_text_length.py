"""Text towers at a text's own token length: CLIP's text towers are causal and read EOT, so
cutting the zero padding after EOT changes nothing; the export-only graph module (last block
at EOT only) computes what the model does; the exported graphs take any length; a model
folder re-exports in place from its checkpoint.

Tolerances: float32 results of mathematically identical computations, max abs <= 1e-6
(observed ~1e-7) on unit-norm features."""
import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from clipn.checkpoint import save_checkpoint
from clipn.config import get_config
from clipn.export import TextGraph, export_model, refresh_folder, sha256_file
from clipn.model import CLIPN
from clipn.tokenizer import ClipTokenizer

TOL = 1e-6
WORDS = "a photo of no red circle on the blue background with a star and a square".split()
TEXTS = [""] + [" ".join(WORDS[:n]) + "." for n in range(1, len(WORDS) + 1)] + [" ".join(["a very long prompt"] * 30)]


def weight_rows(batch: int, prompts: int) -> dict:
    generator = torch.Generator().manual_seed(3)
    return {
        "mean": torch.full((batch, prompts), 1.0 / prompts),
        "none": torch.zeros(batch, prompts),
        "single": F.one_hot(torch.full((batch,), prompts - 1), prompts).float(),
        "random": torch.rand(batch, prompts, generator=generator),
    }


def ids_of(tokenizer: ClipTokenizer, texts=TEXTS) -> torch.Tensor:
    return torch.tensor(tokenizer.tokenize(texts), dtype=torch.long)


def own_lengths(ids: torch.Tensor) -> list:
    return [int(i) + 1 for i in ids.argmax(dim=-1)]


@pytest.fixture(scope="module")
def long_model(small_merges):
    """The micro architecture at CLIP's 77-token context (real CLIPN's), random weights."""
    torch.manual_seed(1)
    config = get_config("micro").with_vocab(ClipTokenizer(small_merges).vocab_size)
    config = replace(config, text=replace(config.text, context_length=77))
    model = CLIPN(config)
    with torch.no_grad():
        model.prompt_no.normal_(std=0.5)
    return model.eval()


def reference_encode(model: CLIPN, tokens: torch.Tensor, no: bool, weights=None) -> torch.Tensor:
    """The full-context formulation, written out: every position through the tower and
    ln_final, then the EOT row (how the model computed features before trimming)."""
    c = model.config.text.context_length
    if no:
        p, _, w = model.prompt_no.shape
        offsets = (weights @ model.prompt_no.reshape(p, -1)).reshape(-1, c, w)
        x = model.token_embedding_no(tokens) + model.positional_embedding_no + offsets
    else:
        x = model.token_embedding(tokens) + model.positional_embedding
    transformer, ln_final, projection = model.text_tower(no)
    x = transformer(x.permute(1, 0, 2), attn_mask=model.attn_mask).permute(1, 0, 2)
    x = ln_final(x)
    return F.normalize(x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ projection, dim=-1)


@pytest.mark.parametrize("which", ["micro_model", "long_model"])
def test_full_length_features_equal_the_written_out_formulation(request, which, small_merges):
    model = request.getfixturevalue(which)
    ids = ids_of(ClipTokenizer(small_merges, model.config.text.context_length))
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(ids), reference_encode(model, ids, False), rtol=0, atol=TOL)
        for name, w in weight_rows(len(TEXTS), model.config.num_prompts).items():
            got = model.encode_text_no(ids, w)
            torch.testing.assert_close(got, reference_encode(model, ids, True, w), rtol=0, atol=TOL, msg=name)


def test_training_gradients_equal_the_written_out_formulation(micro_model, small_merges):
    # Training runs at full context: the "no" parameters get the same gradients as before.
    ids = ids_of(ClipTokenizer(small_merges, 16))
    w = weight_rows(len(TEXTS), micro_model.config.num_prompts)["random"]
    grads = []
    for encode in (lambda: micro_model.encode_text_no(ids, w), lambda: reference_encode(micro_model, ids, True, w)):
        micro_model.zero_grad()
        encode().pow(3).sum().backward()
        grads.append({n: p.grad.clone() for n, p in micro_model.no_parameters() if p.grad is not None})
    micro_model.zero_grad()
    assert set(grads[0]) == set(grads[1]) and "prompt_no" in grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=0, atol=TOL, msg=name)


@pytest.mark.parametrize("which", ["micro_model", "long_model"])
def test_a_text_at_its_own_length_equals_it_padded(request, which, small_merges):
    model = request.getfixturevalue(which)
    c = model.config.text.context_length
    ids = ids_of(ClipTokenizer(small_merges, c))
    lengths = own_lengths(ids)
    assert min(lengths) == 2 and max(lengths) == c and len(set(lengths)) >= 10
    weights = weight_rows(len(TEXTS), model.config.num_prompts)
    with torch.no_grad():
        full_yes = model.encode_text(ids)
        full_no = {name: model.encode_text_no(ids, w) for name, w in weights.items()}
        for row, own in enumerate(lengths):
            for length in sorted({own, min(c, own + 5)}):
                x = ids[row : row + 1, :length]
                torch.testing.assert_close(model.encode_text(x)[0], full_yes[row], rtol=0, atol=TOL)
                for name, w in weights.items():
                    got = model.encode_text_no(x, w[row : row + 1])[0]
                    torch.testing.assert_close(got, full_no[name][row], rtol=0, atol=TOL, msg=f"{name}, row {row}, length {length}")


@pytest.mark.parametrize("which", ["micro_model", "long_model"])
def test_the_graph_module_equals_the_model_at_any_length(request, which, small_merges):
    # What export.py traces (last block at EOT only) against model.encode_text / encode_text_no.
    model = request.getfixturevalue(which)
    c = model.config.text.context_length
    ids = ids_of(ClipTokenizer(small_merges, c))
    weights = weight_rows(len(TEXTS), model.config.num_prompts)["random"]
    yes_graph, no_graph = TextGraph(model, no=False), TextGraph(model, no=True)
    with torch.no_grad():
        torch.testing.assert_close(yes_graph(ids), model.encode_text(ids), rtol=0, atol=TOL)
        torch.testing.assert_close(no_graph(ids, weights), model.encode_text_no(ids, weights), rtol=0, atol=TOL)
        for length in sorted({2, 5, 9, c}):
            fits = [r for r, own in enumerate(own_lengths(ids)) if own <= length]  # rows whose EOT is inside
            x, w = ids[fits, :length], weights[fits]
            torch.testing.assert_close(yes_graph(x), model.encode_text(ids[fits]), rtol=0, atol=TOL)
            torch.testing.assert_close(no_graph(x, w), model.encode_text_no(ids[fits], w), rtol=0, atol=TOL)


def test_refresh_keeps_the_folder_settings_and_takes_any_length(tmp_path, micro_model, small_merges):
    out = tmp_path / "model"
    out.mkdir()
    save_checkpoint(out / "micro.pt", micro_model, epoch=1, name="micro")
    export_model(micro_model, small_merges, out, "micro-refresh", templates=["a {}."], extra={"checkpoint": "micro.pt", "quality": {"auroc": 0.5}})
    first = json.loads((out / "clipn.json").read_text())
    assert first["text_sequence"] == "variable"
    # A folder from before the variable-length export: no text_sequence field.
    old = {k: v for k, v in first.items() if k != "text_sequence"}
    (out / "clipn.json").write_text(json.dumps(old))
    manifest = refresh_folder(out)
    assert manifest == json.loads((out / "clipn.json").read_text())
    assert manifest["text_sequence"] == "variable"
    for key in ("name", "templates", "quality", "checkpoint", "preprocess", "graphs", "architecture"):
        assert manifest[key] == first[key], key
    assert manifest["files"] == first["files"]  # same weights, same exporter: the same bytes
    for name, digest in manifest["files"].items():
        assert sha256_file(out / name) == digest


def test_refresh_needs_a_checkpoint(tmp_path, micro_model, small_merges):
    export_model(micro_model, small_merges, tmp_path, "no-checkpoint")
    with pytest.raises(ValueError, match="names no checkpoint"):
        refresh_folder(tmp_path)
