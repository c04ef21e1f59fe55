"""Writes the sample image sets (samples/images/{id,ood}/<shape>/...) from the synthetic world.

Held-out seed: none of these images was seen in training or in the quality evaluation.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .synthetic import ID_SHAPES, OOD_SHAPES, SAMPLE_SEED, write_image_folder

REPO = Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="models/samples", description=__doc__)
    p.add_argument("--out", default=str(REPO / "samples" / "images"))
    p.add_argument("--per-class", type=int, default=12)
    p.add_argument("--format", choices=["jpg", "png"], default="jpg")
    args = p.parse_args(argv)
    out = Path(args.out)
    ids = write_image_folder(out / "id", SAMPLE_SEED, args.per_class, ID_SHAPES, args.format)
    oods = write_image_folder(out / "ood", SAMPLE_SEED + 100, args.per_class, OOD_SHAPES, args.format)
    print(f"wrote {len(ids)} ID and {len(oods)} OOD images under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
