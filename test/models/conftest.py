import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(MODELS))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def real_merges() -> Path:
    path = SHARED / "data" / "bpe_simple_vocab_16e6.txt.gz"
    assert path.is_file(), f"{path}: the real CLIP vocabulary must sit in ../shared/data"
    return path


@pytest.fixture(scope="session")
def small_merges(tmp_path_factory) -> Path:
    from clipn.recipe import caption_corpus
    from clipn.vocab import learn_merges, write_merges

    path = tmp_path_factory.mktemp("vocab") / "bpe_simple_vocab.txt.gz"
    write_merges(path, learn_merges(caption_corpus()))
    return path


@pytest.fixture(scope="session")
def micro_model(small_merges):
    import torch
    from clipn.config import get_config
    from clipn.model import CLIPN
    from clipn.tokenizer import ClipTokenizer

    torch.manual_seed(0)
    vocab = ClipTokenizer(small_merges).vocab_size
    model = CLIPN(get_config("micro").with_vocab(vocab))
    with torch.no_grad():  # non-zero prompts, so prompt mixing is really exercised
        model.prompt_no.normal_(std=0.5)
        model.text_projection_no.add_(0.1 * torch.randn_like(model.text_projection_no))
    return model.eval()
