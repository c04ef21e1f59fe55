"""Exports a random-weight CLIPN model folder for the GPU benchmark (scripts/gpu/run.sh).

    PYTHONPATH=models python3 scripts/gpu/export_random.py --arch ViT-B-16 --out /tmp/vitb16 --fp16

The image tower has the named architecture's exact size (ViT-B-16: 35.1 GFLOP per image);
the tokenizer is a small BPE learned from the recipe's caption corpus (a few hundred tokens
instead of CLIP's 49,408), which shrinks only the text towers' embedding tables: image
throughput does not depend on it, and no CLIP merges file has to travel.

torch >= 2.9 makes `torch.onnx.export` default to the dynamo exporter (opset >= 18, other graph
shapes), while models/clipn/export.py and fp16.py were written for the TorchScript exporter
(opset 17, `axes` as an attribute of ReduceL2). `--exporter torchscript` (the default) passes
dynamo=False where the installed torch knows the argument; `--exporter as-is` calls the
project's exporter untouched, to find out whether it works on this torch (`--check` then
compares every graph with the PyTorch parity fixture in onnxruntime's Python CPU provider).
Prints one JSON line with what was done.
"""
from __future__ import annotations

import argparse
import inspect
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from clipn.config import get_config
from clipn.export import export_model
from clipn.model import CLIPN
from clipn.recipe import caption_corpus
from clipn.tokenizer import ClipTokenizer
from clipn.vocab import learn_merges, write_merges


def force_torchscript_exporter() -> str:
    """Makes torch.onnx.export default to dynamo=False (export.py calls it through the module)."""
    original = torch.onnx.export
    if "dynamo" not in inspect.signature(original).parameters:
        return "torchscript (this torch has no dynamo argument)"

    def export(*args, **kwargs):
        kwargs.setdefault("dynamo", False)
        return original(*args, **kwargs)

    torch.onnx.export = export
    return "torchscript (dynamo=False passed)"


def cosines(a: np.ndarray, b: np.ndarray) -> list:
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30
    return (num / den).tolist()


def check_folder(folder: Path) -> dict:
    """Every graph of the folder on onnxruntime (Python, CPU) against the parity fixture."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as err:
        return {"skipped": f"no onnxruntime/onnx for this Python ({err})"}
    manifest = json.loads((folder / "clipn.json").read_text())
    fixture = folder / manifest.get("fixture", "parity")
    load = lambda name: np.load(fixture / f"{name}.npy")  # noqa: E731
    feeds = {
        "image": ({"pixel_values": load("pixel_values")}, load("image_embeds")),
        "image_fp16": ({"pixel_values": load("pixel_values")}, load("image_embeds")),
        "text": ({"input_ids": load("input_ids")}, load("text_embeds")),
        "text_no": ({"input_ids": load("input_ids"), "prompt_weights": load("prompt_weights")}, load("text_no_embeds")),
    }
    out = {}
    for graph, file in manifest["graphs"].items():
        if graph not in feeds:
            continue
        inputs, want = feeds[graph]
        try:
            session = ort.InferenceSession(str(folder / file), providers=["CPUExecutionProvider"])
            model = onnx.load(str(folder / file), load_external_data=False)
            got = session.run(None, inputs)[0]
            out[graph] = {"min_cosine": round(min(cosines(got, want)), 6), "opset": [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]}
        except Exception as err:  # noqa: BLE001 - report, do not stop
            out[graph] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="ViT-B-16")
    p.add_argument("--out", required=True)
    p.add_argument("--merges", help="a merges file to use instead of the learned small one")
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--exporter", choices=["torchscript", "as-is"], default="torchscript")
    p.add_argument("--check", action="store_true", help="run every graph in onnxruntime (Python, CPU) against the fixture")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-fallback", dest="fallback", action="store_false", help="no retry with torch's default exporter")
    p.add_argument("--fallback-until-s", type=float, default=120.0, help="start no retry after this many seconds")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    original_export = torch.onnx.export
    exporter = force_torchscript_exporter() if args.exporter == "torchscript" else "as-is (torch default)"
    if args.merges:
        merges = Path(args.merges)
    else:
        merges = out.parent / f"{out.name}.merges.txt"
        write_merges(merges, learn_merges(caption_corpus()))
    vocab = ClipTokenizer(merges).vocab_size
    torch.manual_seed(args.seed)
    model = CLIPN(get_config(args.arch).with_vocab(vocab))
    with torch.no_grad():
        model.prompt_no.normal_(0.0, 0.02)
    t1 = time.perf_counter()
    info = {"arch": args.arch, "out": str(out), "torch": torch.__version__, "exporter": exporter, "vocab": vocab, "attempts": []}
    # Where the forced TorchScript exporter fails (a torch without it), fall back to torch's
    # default exporter, then to that without the fp16 graph; each attempt is recorded.
    attempts = [(exporter, args.fp16)]
    if args.exporter == "torchscript" and args.fallback:
        attempts += [("as-is (torch default)", args.fp16)] + ([("as-is (torch default)", False)] if args.fp16 else [])
    info["ok"] = False
    for name, fp16 in attempts:
        if info["attempts"] and time.perf_counter() - t0 > args.fallback_until_s:
            info["attempts"].append({"exporter": name, "fp16": fp16, "skipped": f"past {args.fallback_until_s} s"})
            break
        torch.onnx.export = original_export if name.startswith("as-is") else torch.onnx.export
        shutil.rmtree(out, ignore_errors=True)  # no file of a failed attempt may enter the manifest
        out.mkdir(parents=True)
        ta = time.perf_counter()
        try:
            export_model(model, merges, out, f"random-{args.arch}", fp16=fp16, kv=False)  # image benchmarks only
            info["attempts"].append({"exporter": name, "fp16": fp16, "ok": True, "s": round(time.perf_counter() - ta, 1)})
            info.update(ok=True, exporter=name, fp16=fp16)
            break
        except Exception as err:  # noqa: BLE001 - the caller wants the reason in its report
            msg = f"{type(err).__name__}: {str(err).splitlines()[0][:500] if str(err) else ''}"
            info["attempts"].append({"exporter": name, "fp16": fp16, "ok": False, "error": msg, "s": round(time.perf_counter() - ta, 1)})
            info["error"] = msg
    if info["ok"]:
        info.pop("error", None)
    info["build_s"] = round(t1 - t0, 1)
    info["export_s"] = round(time.perf_counter() - t1, 1)
    if info["ok"]:
        info["files_mb"] = {f.name: round(f.stat().st_size / 1e6, 1) for f in sorted(out.glob("*.onnx"))}
        if args.check:
            t2 = time.perf_counter()
            info["check"] = check_folder(out)
            info["check_s"] = round(time.perf_counter() - t2, 1)
    print(json.dumps(info))
    return 0 if info["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
