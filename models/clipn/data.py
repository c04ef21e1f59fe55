"""Training data: the synthetic caption world, or a CSV of image paths and captions."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .synthetic import TRAIN_SEED, make_split, to_model_input
from .tokenizer import ClipTokenizer

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def normalise(images_uint8: np.ndarray, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """[N, H, W, 3] uint8 -> [N, 3, H, W] float32, as torchvision's ToTensor + Normalize."""
    x = torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


class SyntheticCaptions(Dataset):
    def __init__(self, tokenizer: ClipTokenizer, count: int, image_size: int, seed: int = TRAIN_SEED):
        images, captions, labels = make_split(seed, count, image_size)
        self.images = normalise(images)
        self.tokens = torch.tensor(tokenizer.tokenize(captions), dtype=torch.long)
        self.captions = captions
        self.labels = torch.from_numpy(labels)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i], self.tokens[i], i


class CsvCaptions(Dataset):
    """open_clip's CSV layout: a column of image paths and one of captions."""

    def __init__(self, path: Path, tokenizer: ClipTokenizer, image_size: int, img_key="filepath", caption_key="title", sep="\t"):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: training CSV not found")
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter=sep))
        if not rows:
            raise ValueError(f"{path}: no rows")
        for key in (img_key, caption_key):
            if key not in rows[0]:
                raise ValueError(f"{path}: no column {key!r} (columns: {', '.join(rows[0])})")
        self.root = path.parent
        self.paths = [row[img_key] for row in rows]
        self.tokens = torch.tensor(tokenizer.tokenize([row[caption_key] for row in rows]), dtype=torch.long)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        path = self.root / self.paths[i]
        with Image.open(path) as image:
            pixels = to_model_input(image.convert("RGB"), self.image_size)
        return normalise(pixels[None])[0], self.tokens[i], i
