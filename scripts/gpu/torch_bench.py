"""PyTorch eager baseline for the GPU benchmark: CLIPN image encoding, images/s.

    PYTHONPATH=models python3 scripts/gpu/torch_bench.py --arch ViT-B-16 --json torch.json

The same computation as the exported `image` graph (`CLIPN.encode_image`, L2-normalised),
random weights, random pixels, under torch.inference_mode(). Per (precision, batch): warm-up
runs, then `--reps` timed samples of `--iters` back-to-back runs each, every sample closed by
torch.cuda.synchronize(); the figure is the median sample. Modes:
  - `device`: pixels already on the GPU, embeddings left there (what PyTorch is usually
    quoted at);
  - `host`: pixels copied from a (pageable) CPU tensor and embeddings copied back each run,
    which is what onnxruntime-node does with CPU tensors (no IO binding).
fp32 runs with TF32 off (PyTorch's default for matmuls): true fp32 arithmetic; `fp32-tf32`
turns it on for one row. `--device cpu` runs the same code on the CPU (for dry runs).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time

import torch

from clipn.config import get_config
from clipn.model import CLIPN


def vit_gflop(config) -> float:
    """Multiply-adds x 2 of the image tower (matmuls, attention, patch embedding, projection)."""
    v = config.vision
    grid = (v.image_size // v.patch_size) ** 2
    n, w, hidden = grid + 1, v.width, int(v.width * config.mlp_ratio)
    per_layer = 2 * n * w * 3 * w + 2 * 2 * n * n * w + 2 * n * w * w + 2 * 2 * n * w * hidden
    patch = 2 * grid * 3 * v.patch_size * v.patch_size * w
    return (v.layers * per_layer + patch + 2 * w * config.embed_dim) / 1e9


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(model, precision: str, batch: int, mode: str, device: str, iters: int, reps: int, warmup: int, size: int) -> dict:
    dtype = torch.float16 if precision == "fp16" else torch.float32
    host = torch.randn(batch, 3, size, size, dtype=torch.float32)
    dev = host.to(device=device, dtype=dtype)

    def step():
        if mode == "host":
            x = host.to(device=device).to(dtype)
            return model.encode_image(x).float().cpu()
        return model.encode_image(dev)

    with torch.inference_mode():
        for _ in range(warmup):
            step()
        sync(device)
        samples = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(iters):
                step()
            sync(device)
            samples.append((time.perf_counter() - t0) / iters)
    med = statistics.median(samples)
    return {
        "precision": precision, "batch": batch, "mode": mode,
        "images_per_s": round(batch / med, 1), "ms_per_batch": round(med * 1e3, 2),
        "spread_ms": [round(min(samples) * 1e3, 2), round(max(samples) * 1e3, 2)], "samples": reps, "iters": iters,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="ViT-B-16")
    p.add_argument("--batches", default="64,128,256")
    p.add_argument("--precisions", default="fp32,fp16")
    p.add_argument("--host-batches", default="128", help="batches also measured with host copies (mode host)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda")
    p.add_argument("--budget-s", type=float, default=120.0, help="stop starting new rows after this many seconds")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("torch_bench: CUDA is not available to this PyTorch", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    config = get_config(args.arch).with_vocab(600)  # text towers are unused; keep them small
    torch.manual_seed(0)
    base = CLIPN(config).eval()
    gflop = vit_gflop(config)
    info = {
        "arch": args.arch, "gflop_per_image": round(gflop, 2), "torch": torch.__version__,
        "cuda": torch.version.cuda, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "tf32": False, "results": [], "errors": [],
    }
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}) on {info['device']}; {args.arch} image tower {gflop:.1f} GFLOP/image", flush=True)
    batches = [int(b) for b in args.batches.split(",") if b]
    host_batches = {int(b) for b in args.host_batches.split(",") if b}
    plan = []
    for precision in args.precisions.split(","):
        for batch in batches:
            plan.append((precision, batch, "device"))
            if batch in host_batches:
                plan.append((precision, batch, "host"))
    if "fp32" in args.precisions.split(",") and batches:
        plan.append(("fp32-tf32", max(batches), "device"))
    models = {}
    for precision, batch, mode in plan:
        if time.perf_counter() - t_start > args.budget_s:
            info["errors"].append(f"{precision} b{batch} {mode}: skipped, over the {args.budget_s:.0f} s budget")
            continue
        try:
            key = "fp16" if precision == "fp16" else "fp32"
            if key not in models:
                m = copy.deepcopy(base)
                models[key] = (m.half() if key == "fp16" else m).to(device)
            tf32 = precision == "fp32-tf32"
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
            row = measure(models[key], "fp32" if tf32 else precision, batch, mode, device, args.iters, args.reps, args.warmup, config.vision.image_size)
            if tf32:
                row["precision"] = "fp32-tf32"
            row["tflops"] = round(row["images_per_s"] * gflop / 1e3, 1)
            info["results"].append(row)
            print(f"  {row['precision']:9s} b{batch:<4d} {mode:6s} {row['images_per_s']:9.1f} img/s  {row['ms_per_batch']:8.2f} ms/batch  "
                  f"{row['tflops']:6.1f} TFLOP/s  (min/max {row['spread_ms'][0]}/{row['spread_ms'][1]} ms)", flush=True)
        except Exception as err:  # noqa: BLE001 - e.g. out of memory: record it, go on
            msg = f"{precision} b{batch} {mode}: {type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
            info["errors"].append(msg)
            print("  " + msg, flush=True)
            if device == "cuda":
                torch.cuda.empty_cache()
    torch.backends.cuda.matmul.allow_tf32 = False
    info["seconds"] = round(time.perf_counter() - t_start, 1)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
    return 0 if info["results"] else 1


if __name__ == "__main__":
    sys.exit(main())
