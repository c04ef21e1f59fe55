"""Export: files, manifest, hashes, dynamic batch (and token) axes, normalised outputs, parity fixture."""
import json

import numpy as np
import onnx
import pytest
import torch

from clipn.export import ImageEncoder, export_model, sha256_file
from clipn.tokenizer import ClipTokenizer


@pytest.fixture(scope="module")
def exported(tmp_path_factory, micro_model, small_merges):
    out = tmp_path_factory.mktemp("model")
    manifest = export_model(micro_model, small_merges, out, "micro-test", fp16=True, templates=["a photo of a {}."])
    return out, manifest


def test_manifest_lists_every_file_with_its_hash(exported):
    out, manifest = exported
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "clipn.json"}
    assert set(manifest["files"]) == on_disk
    for name, digest in manifest["files"].items():
        assert sha256_file(out / name) == digest
    assert json.loads((out / "clipn.json").read_text()) == manifest
    pre = manifest["preprocess"]
    assert pre["size"] == 16 and pre["resize_mode"] == "shortest" and pre["interpolation"] == "bicubic"
    assert pre["crop"] == "center" and len(pre["mean"]) == 3 and len(pre["std"]) == 3
    assert manifest["context_length"] == 16 and manifest["logit_scale"] == 100.0
    assert manifest["architecture"]["vision"]["patch_size"] == 8


@pytest.mark.parametrize("graph,inputs", [
    ("image", ["pixel_values"]), ("image_fp16", ["pixel_values"]),
    ("text", ["input_ids"]), ("text_no", ["input_ids", "prompt_weights"]),
])
def test_graphs_have_a_dynamic_batch_axis(exported, graph, inputs):
    out, manifest = exported
    model = onnx.load(str(out / manifest["graphs"][graph]))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == inputs
    for value in list(model.graph.input) + list(model.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch", value.name
        assert value.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64)
    for value in model.graph.input:  # text graphs: any token length up to the context
        if value.name == "input_ids":
            assert value.type.tensor_type.shape.dim[1].dim_param == "sequence"
            assert manifest["text_sequence"] == "variable"


def test_fixture_is_what_torch_computes_and_normalised(exported, micro_model, small_merges):
    out, manifest = exported
    fx = out / manifest["fixture"]
    load = lambda n: np.load(fx / f"{n}.npy")
    with torch.no_grad():
        image = micro_model.encode_image(torch.from_numpy(load("pixel_values"))).numpy()
        ids = torch.from_numpy(load("input_ids"))
        text_no = micro_model.encode_text_no(ids, torch.from_numpy(load("prompt_weights"))).numpy()
    np.testing.assert_allclose(load("image_embeds"), image, atol=1e-6)
    np.testing.assert_allclose(load("text_no_embeds"), text_no, atol=1e-6)
    for name in ("image_embeds", "text_embeds", "text_no_embeds"):
        np.testing.assert_allclose(np.linalg.norm(load(name), axis=1), 1.0, atol=1e-5)
    assert load("input_ids").dtype == np.int64
    tokens = json.loads((fx / "tokens.json").read_text())
    tok = ClipTokenizer(small_merges, 16)
    assert [t["ids"] for t in tokens] == tok.tokenize([t["text"] for t in tokens])


def test_prompt_weights_mix_the_learned_prompts(exported, micro_model):
    # Different mixing rows give different "no" features; the mean row equals the default.
    out, manifest = exported
    fx = out / manifest["fixture"]
    ids = torch.from_numpy(np.load(fx / "input_ids.npy"))[:1].repeat(3, 1)
    p = micro_model.config.num_prompts
    weights = torch.stack([torch.eye(p)[0], torch.eye(p)[1], torch.full((p,), 1.0 / p)])
    with torch.no_grad():
        f = micro_model.encode_text_no(ids, weights)
        default = micro_model.encode_text_no(ids[:1])
    assert not torch.allclose(f[0], f[1])
    assert torch.allclose(f[2], default[0], atol=1e-6)
    prompts = np.load(out / manifest["prompts"])
    assert prompts.shape == (p, 16, 32)
    np.testing.assert_array_equal(prompts, micro_model.prompt_no.detach().numpy())


def test_export_rejects_a_vocabulary_that_does_not_fit(tmp_path, micro_model, real_merges):
    with pytest.raises(ValueError, match="does not fit"):
        export_model(micro_model, real_merges, tmp_path, "x")


def test_the_image_graph_module_equals_encode_image(micro_model):
    """The exported image module runs the last block at the class token only; it must give
    model.encode_image's features (float32 rounding: max abs <= 1e-6 on unit-norm rows, and
    the unnormalised ones to 1e-5 relative)."""
    size = micro_model.config.vision.image_size
    pixels = torch.randn(5, 3, size, size, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = micro_model.encode_image(pixels)
        got = ImageEncoder(micro_model)(pixels)
        raw_want = micro_model.encode_image(pixels, normalize=False)
        raw_got = ImageEncoder(micro_model, normalize=False)(pixels)
    assert (got - want).abs().max().item() <= 1e-6
    assert ((raw_got - raw_want).abs().max() / raw_want.abs().max()).item() <= 1e-5
    # Not vacuous: the features depend on patches other than the class token's.
    with torch.no_grad():
        moved = pixels.clone()
        moved[:, :, -2:, -2:] += 1.0
        assert (ImageEncoder(micro_model)(moved) - got).abs().max().item() > 1e-4
