"""Deterministic captioned images: coloured shapes on varied backgrounds.

The world has twelve shape classes. Like web-scale CLIP, the small default model is
trained on captions of all of them; an evaluation then names only the ID shapes, and
images of the OOD shapes are what CLIPN must reject. Every image is a pure function of
(seed, index), so splits are reproducible and never overlap (different seeds).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ID_SHAPES = ["circle", "square", "triangle", "star", "cross", "arrow"]
OOD_SHAPES = ["ring", "diamond", "hourglass", "crescent", "bar", "heart"]
SHAPES = ID_SHAPES + OOD_SHAPES
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 20),
    "purple": (140, 40, 180),
    "orange": (250, 140, 0),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
BACKGROUNDS = ["plain", "gradient", "noise", "stripes", "checkered", "dotted"]
CAPTIONS = [
    "a photo of a {c} {s} on a {b} background.",
    "a {c} {s}.",
    "a photo of a {s}.",
    "a {s} on a {b} background.",
    "a picture of a {c} {s}.",
    "a drawing of the {s}, coloured {c}.",
    "the {s}.",
    "a {b} background with a {c} {s}.",
]

# Seeds for the splits used by the recipe and the quality figures.
TRAIN_SEED, VAL_SEED, TEST_SEED, SAMPLE_SEED = 1, 2, 3, 4


@dataclass(frozen=True)
class Sample:
    image: Image.Image
    shape: str
    colour: str
    background: str
    caption: str


def _polygon(cx: float, cy: float, radius: float, points: list, angle: float) -> list:
    out = []
    for r, t in points:
        a = t + angle
        out.append((cx + r * radius * math.cos(a), cy + r * radius * math.sin(a)))
    return out


def _regular(n: int, start: float = -math.pi / 2) -> list:
    return [(1.0, start + 2 * math.pi * k / n) for k in range(n)]


def _star() -> list:
    return [(1.0 if k % 2 == 0 else 0.42, -math.pi / 2 + math.pi * k / 5) for k in range(10)]


def _cross(thickness: float = 0.34) -> list:
    t = thickness
    xy = [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1), (-t, t), (-1, t), (-1, -t), (-t, -t)]
    return [(math.hypot(x, y), math.atan2(y, x)) for x, y in xy]


def _arrow() -> list:
    xy = [(-1, -0.25), (0.2, -0.25), (0.2, -0.7), (1, 0), (0.2, 0.7), (0.2, 0.25), (-1, 0.25)]
    return [(math.hypot(x, y), math.atan2(y, x)) for x, y in xy]


def _hourglass() -> list:
    xy = [(-0.75, -1), (0.75, -1), (0.12, 0), (0.75, 1), (-0.75, 1), (-0.12, 0)]
    return [(math.hypot(x, y), math.atan2(y, x)) for x, y in xy]


def _heart() -> list:
    pts = []
    for k in range(40):
        t = 2 * math.pi * k / 40
        x = 16 * math.sin(t) ** 3 / 17
        y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)) / 17
        pts.append((math.hypot(x, y), math.atan2(y, x)))
    return pts


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx, cy, radius, angle, fill, background) -> None:
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
    elif shape == "ring":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
        inner = radius * 0.55
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=background)
    elif shape == "crescent":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
        dx, dy = radius * 0.5 * math.cos(angle), radius * 0.5 * math.sin(angle)
        draw.ellipse([cx - radius + dx, cy - radius + dy, cx + radius + dx, cy + radius + dy], fill=background)
    else:
        points = {
            "square": _regular(4, math.pi / 4),
            "diamond": [(1.0, 0), (0.5, math.pi / 2), (1.0, math.pi), (0.5, 3 * math.pi / 2)],
            "triangle": _regular(3),
            "hourglass": _hourglass(),
            "star": _star(),
            "cross": _cross(),
            "arrow": _arrow(),
            "bar": [(1.0, 0.2), (1.0, math.pi - 0.2), (1.0, math.pi + 0.2), (1.0, -0.2)],
            "heart": _heart(),
        }[shape]
        draw.polygon(_polygon(cx, cy, radius, points, angle), fill=fill)


def _background(rng: np.random.Generator, kind: str, size: tuple, colours: list) -> Image.Image:
    w, h = size
    a = np.array(colours[0], dtype=np.float32)
    b = np.array(colours[1], dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "plain":
        arr = np.broadcast_to(a, (h, w, 3)).copy()
    elif kind == "gradient":
        t = ((xx / max(w - 1, 1)) * math.cos(rng.uniform(0, 6.3)) + (yy / max(h - 1, 1))) / 2
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        arr = a * (1 - t[..., None]) + b * t[..., None]
    elif kind == "noise":
        arr = a + rng.normal(0, 25, (h, w, 3))
    elif kind == "stripes":
        period = rng.uniform(6, 12) * w / 32
        arr = np.where(((xx + yy * rng.uniform(-1, 1)) // period % 2 == 0)[..., None], a, b)
    elif kind == "checkered":
        period = max(int(rng.uniform(5, 10) * w / 32), 1)
        arr = np.where((((xx // period) + (yy // period)) % 2 == 0)[..., None], a, b)
    else:  # dotted
        period = rng.uniform(6, 11) * w / 32
        arr = np.where(((xx % period < period / 3) & (yy % period < period / 3))[..., None], b, a)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def render(seed: int, index: int, shapes: list = SHAPES, size: tuple | None = None) -> Sample:
    """The image and caption at (seed, index): same inputs, same pixels."""
    rng = np.random.default_rng([seed, index])
    shape = shapes[int(rng.integers(len(shapes)))]
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    others = [c for c in COLOURS if c != colour]
    bg_colours = [COLOURS[others[int(i)]] for i in rng.choice(len(others), 2, replace=False)]
    if size is None:
        side = int(rng.integers(40, 97))
        size = (side, side)
    image = _background(rng, background, size, bg_colours)
    w, h = size
    side = min(w, h)
    radius = side * rng.uniform(0.3, 0.42)
    cx = w / 2 + rng.uniform(-0.08, 0.08) * side
    cy = h / 2 + rng.uniform(-0.08, 0.08) * side
    angle = rng.uniform(-0.25, 0.25)
    fill = COLOURS[colour]
    # Holes in rings and crescents show a flat colour taken from the background.
    _draw_shape(ImageDraw.Draw(image), shape, cx, cy, radius, angle, fill, tuple(int(v) for v in bg_colours[0]))
    if rng.uniform() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0) * side / 48))
    template = CAPTIONS[int(rng.integers(len(CAPTIONS)))]
    caption = template.format(c=colour, s=shape, b=background)
    return Sample(image, shape, colour, background, caption)


def to_model_input(image: Image.Image, size: int) -> np.ndarray:
    """Eval preprocessing up to the uint8 stage: shorter side to `size` (bicubic), centre crop."""
    image = image.convert("RGB")
    w, h = image.size
    # torchvision's Resize(int): the shorter side becomes `size`, the longer one is truncated.
    new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    image = image.resize(new, Image.BICUBIC)
    left, top = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def make_split(seed: int, count: int, size: int, shapes: list = SHAPES):
    """uint8 images [N, size, size, 3], captions, and shape labels (indices into `shapes`)."""
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    captions, labels = [], []
    for i in range(count):
        sample = render(seed, i, shapes)
        images[i] = to_model_input(sample.image, size)
        captions.append(sample.caption)
        labels.append(shapes.index(sample.shape))
    return images, captions, np.array(labels, dtype=np.int64)


def write_image_folder(root: Path, seed: int, per_class: int, shapes: list, fmt: str = "png") -> list:
    """Folders-as-classes image set (e.g. samples/): root/<shape>/<shape>_<i>.<fmt>."""
    root = Path(root)
    written = []
    counts = {s: 0 for s in shapes}
    index = 0
    while min(counts.values()) < per_class:
        sample = render(seed, index, shapes)
        index += 1
        if counts[sample.shape] >= per_class:
            continue
        folder = root / sample.shape
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{sample.shape}_{counts[sample.shape]:03d}.{fmt}"
        sample.image.save(path, quality=92) if fmt == "jpg" else sample.image.save(path)
        counts[sample.shape] += 1
        written.append(path)
    return written
