"""The committed default model: intact, small, as good as its manifest and README say,
and the recipe that built it is deterministic."""
import json
import re
import subprocess

import numpy as np
import pytest
import torch

from clipn.checkpoint import load_clipn
from clipn.evaluate import evaluate
from clipn.export import sha256_file
from clipn.tokenizer import ClipTokenizer

from conftest import MODELS

DEFAULT = MODELS / "default"
MAX_BYTES = 25 * 1024 * 1024


@pytest.fixture(scope="module")
def manifest():
    return json.loads((DEFAULT / "clipn.json").read_text())


def test_files_are_intact_and_small(manifest):
    total = 0
    for name, digest in manifest["files"].items():
        assert sha256_file(DEFAULT / name) == digest, name
        total += (DEFAULT / name).stat().st_size
    total += (DEFAULT / "clipn.json").stat().st_size
    assert total <= MAX_BYTES, f"default model is {total / 2**20:.1f} MB"


def test_quality_recomputed_from_committed_files(manifest):
    model = load_clipn(DEFAULT / manifest["checkpoint"])
    tokenizer = ClipTokenizer(DEFAULT / manifest["tokenizer"]["merges"], manifest["context_length"])
    quality = evaluate(model, tokenizer, manifest["recipe"]["eval_count"], templates=manifest["templates"])
    recorded = manifest["quality"]
    assert quality["images"] == recorded["images"]
    # Same data and weights; BLAS differences between machines move scores by ~1e-6 at most.
    assert quality["id_top1"] == pytest.approx(recorded["id_top1"], abs=1 / quality["images"]["id"])
    for key in ("msp_auroc", "ctw_auroc", "atd_auroc"):
        assert quality[key] == pytest.approx(recorded[key], abs=1e-3), key
    assert quality["id_top1"] >= 0.90
    assert quality["atd_auroc"] >= 0.90


def test_readme_states_the_recorded_figures(manifest):
    readme = (MODELS / "README.md").read_text()
    q = manifest["quality"]
    for figure in (f"{100 * q['id_top1']:.1f}%", f"{q['atd_auroc']:.4f}", f"{q['ctw_auroc']:.4f}"):
        assert figure in readme, figure


def test_parity_fixture_matches_the_checkpoint(manifest):
    model = load_clipn(DEFAULT / manifest["checkpoint"])
    fx = DEFAULT / manifest["fixture"]
    with torch.no_grad():
        image = model.encode_image(torch.from_numpy(np.load(fx / "pixel_values.npy"))).numpy()
        ids = torch.from_numpy(np.load(fx / "input_ids.npy"))
        no = model.encode_text_no(ids, torch.from_numpy(np.load(fx / "prompt_weights.npy"))).numpy()
    np.testing.assert_allclose(np.load(fx / "image_embeds.npy"), image, atol=1e-5)
    np.testing.assert_allclose(np.load(fx / "text_no_embeds.npy"), no, atol=1e-5)


def test_recipe_is_deterministic(tmp_path):
    # The same steps at smoke size, twice: identical weights and identical exported files.
    manifests = []
    for run in ("a", "b"):
        result = subprocess.run(
            [str(MODELS / "recipe"), "--smoke", "--out", str(tmp_path / run), "--work", str(tmp_path / f"{run}-work")],
            capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        manifests.append(json.loads((tmp_path / run / "clipn.json").read_text()))
    assert manifests[0]["files"] == manifests[1]["files"]
    assert manifests[0]["quality"] == manifests[1]["quality"]
    assert re.fullmatch(r"[0-9a-f]{64}", manifests[0]["files"]["image_encoder.onnx"])
