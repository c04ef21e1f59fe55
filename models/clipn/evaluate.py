"""Zero-shot ID accuracy and OOD detection of a CLIPN model on held-out synthetic data.

ID classes are named by the ID shapes only; images of the OOD shapes must be rejected.
Scores follow ../shared/spec/clipn.md (scale 100, CTW, ATD, MSP), AUROC from scikit-learn.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from .data import normalise
from .model import CLIPN
from .synthetic import ID_SHAPES, OOD_SHAPES, SHAPES, TEST_SEED, make_split
from .tokenizer import ClipTokenizer

DEFAULT_TEMPLATES = ["a photo of a {}.", "a {}.", "a picture of a {}.", "the {}.", "a drawing of the {}."]


@torch.no_grad()
def class_features(model: CLIPN, tokenizer: ClipTokenizer, classes: list, templates: list):
    """Per class: templates encoded, each L2-normalised, summed, normalised (both towers)."""
    yes, no = [], []
    for name in classes:
        tokens = torch.tensor(tokenizer.tokenize([t.format(name) for t in templates]), dtype=torch.long)
        for out, encode in ((yes, model.encode_text), (no, model.encode_text_no)):
            f = encode(tokens).sum(0)
            out.append(f / f.norm())
    return torch.stack(yes), torch.stack(no)


def clipn_scores(image: torch.Tensor, yes: torch.Tensor, no: torch.Tensor, scale: float = 100.0) -> dict:
    logits = scale * image @ yes.t()
    logits_no = scale * image @ no.t()
    p = logits.softmax(dim=-1)
    p_yes = torch.sigmoid(logits - logits_no)
    predicted = p.argmax(dim=-1)
    rows = torch.arange(image.shape[0])
    atd_id = (p_yes * p).sum(dim=-1)
    return {
        "predicted": predicted,
        "msp": p.max(dim=-1).values,
        "ctw": p_yes[rows, predicted],
        "atd": atd_id,
        "ctw_is_ood": p_yes[rows, predicted] < 0.5,
        "atd_is_ood": (1 - atd_id) > p.max(dim=-1).values,
    }


@torch.no_grad()
def evaluate(model: CLIPN, tokenizer: ClipTokenizer, count: int = 3000, seed: int = TEST_SEED, templates=None) -> dict:
    model.eval()
    size = model.config.vision.image_size
    images, _, labels = make_split(seed, count, size, SHAPES)
    features = torch.cat([model.encode_image(normalise(images[i : i + 500])) for i in range(0, count, 500)])
    yes, no = class_features(model, tokenizer, ID_SHAPES, templates or DEFAULT_TEMPLATES)
    s = clipn_scores(features, yes, no)
    is_id = torch.from_numpy(labels < len(ID_SHAPES))
    id_labels = torch.from_numpy(labels)[is_id]
    truth = is_id.numpy().astype(int)
    result = {
        "images": {"id": int(is_id.sum()), "ood": int((~is_id).sum())},
        "id_classes": ID_SHAPES,
        "ood_classes": OOD_SHAPES,
        "id_top1": float((s["predicted"][is_id] == id_labels).float().mean()),
    }
    for method in ("msp", "ctw", "atd"):
        result[f"{method}_auroc"] = float(roc_auc_score(truth, s[method].numpy().astype(np.float64)))
    return result
