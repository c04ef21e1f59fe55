"""Loading checkpoints: the official layout strictly, plain CLIP, and clear errors."""
import subprocess
import sys

import pytest
import torch

from clipn.checkpoint import CheckpointError, expected_shapes, load_clipn, save_checkpoint
from clipn.config import CONFIGS, get_config
from clipn.model import CLIPN

from conftest import MODELS


def official_shapes(shared_dir):
    rows = {}
    for line in (shared_dir / "data" / "clipn_vitb16_state_dict.tsv").read_text().splitlines():
        name, shape = line.split("\t")
        rows[name] = tuple(int(x) for x in shape.strip("[]").split(",") if x.strip())
    return rows


def test_vit_b16_parameters_match_the_official_list(shared_dir):
    model = CLIPN(get_config("ViT-B-16"))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == official_shapes(shared_dir)
    assert expected_shapes(get_config("ViT-B-16")) == ours


@pytest.mark.parametrize("name", ["ViT-B-32", "ViT-L-14", "tiny", "micro"])
def test_every_config_builds_what_it_declares(name):
    config = CONFIGS[name].with_vocab(600) if name in ("tiny", "micro") else CONFIGS[name]
    if name == "ViT-L-14":  # too large to build in a unit test: check the declared shapes only
        shapes = expected_shapes(config)
        assert shapes["visual.conv1.weight"] == (1024, 3, 14, 14)
        assert shapes["visual.positional_embedding"] == (257, 1024)
        assert shapes["text_projection_no"] == (768, 768)
        return
    model = CLIPN(config)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected_shapes(config)


def test_official_vit_b16_checkpoint_loads_strictly(tmp_path, shared_dir):
    # The official epoch_10.pt layout: {"epoch", "name", "state_dict": {"module.<name>": ...}, "optimizer"}
    generator = torch.Generator().manual_seed(0)
    state = {
        "module." + name: torch.randn(shape, generator=generator) * 0.02 if shape else torch.tensor(4.6052)
        for name, shape in official_shapes(shared_dir).items()
    }
    path = tmp_path / "epoch_10.pt"
    torch.save({"epoch": 10, "name": "clipn", "state_dict": state, "optimizer": {}}, path)
    model = load_clipn(path)  # architecture inferred from the shapes
    assert model.config.name == "ViT-B-16"
    loaded = model.state_dict()
    for name in ("prompt_no", "visual.proj", "transformer_no.resblocks.11.mlp.c_proj.weight", "logit_scale"):
        assert torch.equal(loaded[name], state["module." + name])
    with torch.no_grad():
        tokens = torch.zeros(1, 77, dtype=torch.long)
        tokens[0, :3] = torch.tensor([49406, 320, 49407])
        assert model.encode_text_no(tokens).shape == (1, 512)


def test_our_checkpoints_use_the_official_layout_and_round_trip(tmp_path, micro_model):
    path = tmp_path / "epoch_1.pt"
    save_checkpoint(path, micro_model, epoch=1)
    raw = torch.load(path)
    assert set(raw) >= {"epoch", "name", "state_dict"}
    assert all(k.startswith("module.") for k in raw["state_dict"])
    again = load_clipn(path)
    for k, v in micro_model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


def test_plain_clip_checkpoint_initialises_the_no_tower(tmp_path, micro_model):
    state = {k: v for k, v in micro_model.state_dict().items() if not k.split(".")[0].endswith("_no")}
    path = tmp_path / "open_clip.pt"
    torch.save({"state_dict": state}, path)
    model = load_clipn(path, arch="micro")
    sd = model.state_dict()
    assert torch.count_nonzero(sd["prompt_no"]) == 0
    for name in ("token_embedding.weight", "positional_embedding", "text_projection", "ln_final.weight"):
        no_name = name.replace("token_embedding", "token_embedding_no").replace("positional_embedding", "positional_embedding_no")
        no_name = no_name.replace("text_projection", "text_projection_no").replace("ln_final", "ln_final_no")
        assert torch.equal(sd[no_name], sd[name])
    assert torch.equal(sd["transformer_no.resblocks.1.attn.in_proj_weight"], sd["transformer.resblocks.1.attn.in_proj_weight"])


def test_missing_and_unexpected_keys_are_listed(tmp_path, micro_model):
    state = dict(micro_model.state_dict())
    state.pop("visual.proj")
    state["visual.extra_head"] = torch.zeros(3)
    path = tmp_path / "broken.pt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_clipn(path, arch="micro")
    message = str(err.value)
    assert str(path) in message and "visual.proj" in message and "visual.extra_head" in message
    assert "\n" not in message


def test_other_architecture_is_a_one_line_error(tmp_path, micro_model):
    path = tmp_path / "micro.pt"
    torch.save({"state_dict": micro_model.state_dict()}, path)
    with pytest.raises(CheckpointError) as err:
        load_clipn(path, arch="tiny")
    assert str(path) in str(err.value) and "shape mismatches" in str(err.value) and "\n" not in str(err.value)


def test_corrupt_and_missing_files(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.pt: not a readable PyTorch checkpoint"):
        load_clipn(corrupt)
    with pytest.raises(CheckpointError, match="nowhere.pt: checkpoint file not found"):
        load_clipn(tmp_path / "nowhere.pt")


@pytest.mark.parametrize("content,needle", [(None, "checkpoint file not found"), (b"garbage", "not a readable PyTorch checkpoint")])
def test_export_command_reports_bad_input_in_one_line(tmp_path, content, needle, small_merges):
    path = tmp_path / "epoch_10.pt"
    if content is not None:
        path.write_bytes(content)
    result = subprocess.run(
        [str(MODELS / "export"), str(path), "--out", str(tmp_path / "out"), "--merges", str(small_merges)],
        capture_output=True, text=True,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and needle in lines[0]
