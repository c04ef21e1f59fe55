"""Export a CLIPN checkpoint to a model folder (see models/FORMAT.md).

Three ONNX graphs with a dynamic batch axis and L2-normalised outputs (image encoder,
text encoder, "no" text encoder taking prompt mixing weights; the text graphs also take any
token length up to the context), the learned prompts, the tokenizer merges, a parity
fixture computed by PyTorch, and the manifest `clipn.json`.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointError, load_clipn
from .data import CLIP_MEAN, CLIP_STD
from .fp16 import convert_to_fp16
from .kv_graph import export_kv_graph
from .model import CLIPN
from .quantize import quantize_file
from .tokenizer import ClipTokenizer

OPSET = 17
FORMAT_VERSION = 1
INFERENCE_SCALE = 100.0  # CLIPN evaluates with a fixed logit scale of 100
FIXTURE_PROMPTS = [
    "a photo of a circle.",
    "a photo of no circle.",
    "a bad photo of the Golden Retriever!",
    "itap of a café, 3 röntgen & co.",
    "",
    " ".join(["a very long prompt"] * 30),
]


class ImageEncoder(nn.Module):
    """What the image graphs compute: model.encode_image rearranged for inference only. The
    feature is read at the class token, so the last block runs only there (keys and values
    from every patch): 1/12 less work for ViT-B/16, a fifth for the 4-layer default model."""

    def __init__(self, model: CLIPN, normalize: bool = True):
        super().__init__()
        self.model = model
        self.normalize = normalize

    def forward(self, pixel_values):
        visual = self.model.visual
        x = visual.conv1(pixel_values).flatten(2).transpose(1, 2)  # N, grid*grid, width
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = visual.ln_pre(x).permute(1, 0, 2)
        for block in visual.transformer.resblocks[:-1]:
            x = block(x, None)
        at = torch.zeros(x.shape[1], dtype=torch.long)
        x = last_block_at(visual.transformer.resblocks[-1], x, at, causal=False)
        features = visual.ln_post(x) @ visual.proj
        return F.normalize(features, dim=-1) if self.normalize else features


def last_block_at(block: nn.Module, x: torch.Tensor, at: torch.Tensor, causal: bool) -> torch.Tensor:
    """A residual block whose output is needed only at one row per sequence (EOT for text, the
    class token for images): keys and values from every position, the query, out-projection,
    ln_2 and MLP at that row.

    x [L, B, W] (sequence first, as Transformer), at [B] -> [B, W]. With `causal`, keys after
    `at` are hidden (the text towers' causal mask seen from that row); the result equals
    block(x, mask)[at, arange(B)].
    """
    length, batch, width = x.shape
    heads = block.attn.num_heads
    head = width // heads
    rows = torch.arange(batch)
    y = block.ln_1(x)
    wq, wk, wv = block.attn.in_proj_weight.chunk(3)
    bq, bk, bv = block.attn.in_proj_bias.chunk(3)
    q = F.linear(y[at, rows], wq, bq).reshape(batch, heads, 1, head) * head**-0.5
    k = F.linear(y, wk, bk).reshape(length, batch, heads, head).permute(1, 2, 3, 0)  # B, H, d, L
    v = F.linear(y, wv, bv).reshape(length, batch, heads, head).permute(1, 2, 0, 3)  # B, H, L, d
    scores = q @ k  # B, H, 1, L
    if causal:
        hidden = torch.arange(length).unsqueeze(0) > at.unsqueeze(1)  # B, L
        scores = scores.masked_fill(hidden[:, None, None, :], float("-inf"))
    attended = (scores.softmax(dim=-1) @ v).reshape(batch, width)
    out = x[at, rows] + block.attn.out_proj(attended)
    return out + block.mlp(block.ln_2(out))


class TextGraph(nn.Module):
    """What the text graphs compute: model.encode_text / encode_text_no, rearranged for
    inference only. input_ids [B, L] for any L <= context; the last block runs only at EOT,
    as nothing else of it reaches the output (a quarter less work for a 3-layer tower)."""

    def __init__(self, model: CLIPN, no: bool):
        super().__init__()
        self.model = model
        self.no = no

    def forward(self, input_ids, prompt_weights=None):
        m = self.model
        transformer, ln_final, projection = m.text_tower(self.no)
        x = m.text_no_input(input_ids, prompt_weights) if self.no else m.text_input(input_ids)
        length = input_ids.shape[1]
        mask = m.attn_mask[:length, :length]
        x = x.permute(1, 0, 2)
        for block in transformer.resblocks[:-1]:
            x = block(x, mask)
        eot = input_ids.argmax(dim=-1)  # EOT has the largest id in CLIP's vocabulary
        x = last_block_at(transformer.resblocks[-1], x, eot, causal=True)
        return F.normalize(ln_final(x) @ projection, dim=-1)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _layer_norm_written_out(self: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    width = x.shape[-1]
    mean = x.sum(-1, keepdim=True) * (1.0 / width)
    centred = x - mean
    variance = (centred * centred).sum(-1, keepdim=True) * (1.0 / width)
    return centred * torch.reciprocal(torch.sqrt(variance + self.eps)) * self.weight + self.bias


@contextlib.contextmanager
def layer_norms_written_out():
    """Exports LayerNorm as ReduceSum/Sub/Mul/Sqrt/Reciprocal ops. onnxruntime's CPU
    LayerNormalization kernel takes ~3 ns per element at the text towers' widths, 2.5-3x the same
    arithmetic as separate ops (measured on the 2-core machine: 10 x [10240, 128] in 94 vs 36 ms),
    and its fusion pass, which matches ReduceMean, leaves this form alone. Same function (features
    within ~1e-7 of LayerNormalization's); used for the text graphs, where LayerNorm is ~15% of
    the time; the image graphs keep the op (4% there)."""
    original = nn.LayerNorm.forward
    nn.LayerNorm.forward = _layer_norm_written_out
    try:
        yield
    finally:
        nn.LayerNorm.forward = original


def _exporter_options() -> dict:
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        # torch >= 2.9 defaults to the dynamo exporter; the TorchScript one gives the graphs
        # (opset, names, dynamic axes) this project checks, on old and new torch alike.
        return {"dynamo": False}
    return {}


def _export(module: nn.Module, inputs: tuple, names: list, path: Path) -> None:
    axes = {name: {0: "batch"} for name in names}
    if "input_ids" in axes:
        axes["input_ids"][1] = "sequence"  # any length up to the context (manifest: text_sequence)
    axes["embeds"] = {0: "batch"}
    torch.onnx.export(
        module, inputs, str(path), input_names=names, output_names=["embeds"],
        dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, **_exporter_options(),
    )


def fixture_inputs(model: CLIPN, tokenizer: ClipTokenizer, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    size = model.config.vision.image_size
    pixels = torch.randn(3, 3, size, size, generator=generator)
    ids = torch.tensor(tokenizer.tokenize(FIXTURE_PROMPTS), dtype=torch.long)
    p = model.config.num_prompts
    weights = torch.zeros(len(FIXTURE_PROMPTS), p)
    weights[0, 0] = 1.0  # a single learned prompt
    weights[1, :] = 1.0 / p  # the mean (the paper's evaluation)
    weights[2, : max(1, p // 2)] = 1.0 / max(1, p // 2)  # a subset
    weights[3, p - 1] = 1.0
    # row 4 stays zero: the bare "no" tower; row 5 random mixing
    weights[5] = torch.rand(p, generator=generator)
    return pixels, ids, weights


def write_fixture(folder: Path, model: CLIPN, tokenizer: ClipTokenizer) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pixels, ids, weights = fixture_inputs(model, tokenizer)
    with torch.no_grad():
        arrays = {
            "pixel_values": pixels.numpy(),
            "image_embeds": model.encode_image(pixels).numpy(),
            "input_ids": ids.numpy().astype(np.int64),
            "text_embeds": model.encode_text(ids).numpy(),
            "prompt_weights": weights.numpy(),
            "text_no_embeds": model.encode_text_no(ids, weights).numpy(),
        }
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    tokens = [{"text": t, "ids": row} for t, row in zip(FIXTURE_PROMPTS, tokenizer.tokenize(FIXTURE_PROMPTS))]
    (folder / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def export_model(model: CLIPN, merges: Path, out: Path, name: str, fp16: bool = False,
                 templates: list | None = None, preprocess: dict | None = None, extra: dict | None = None,
                 int8: bool = False, kv: bool = True) -> dict:
    """Writes the model folder and returns its manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    config = model.config
    merges = Path(merges)
    tokenizer = ClipTokenizer(merges, config.text.context_length)
    if tokenizer.vocab_size != config.text.vocab_size:
        raise ValueError(f"{merges}: vocabulary of {tokenizer.vocab_size} tokens does not fit the model's {config.text.vocab_size}")
    merges_name = "bpe_simple_vocab.txt.gz" if merges.suffix == ".gz" else "bpe_simple_vocab.txt"
    if not (out / merges_name).exists() or not (out / merges_name).samefile(merges):
        shutil.copyfile(merges, out / merges_name)
    pixels, ids, weights = fixture_inputs(model, tokenizer)
    graphs = {"image": "image_encoder.onnx", "text": "text_encoder.onnx", "text_no": "text_no_encoder.onnx"}
    with torch.no_grad():
        _export(ImageEncoder(model), (pixels,), ["pixel_values"], out / graphs["image"])
        with layer_norms_written_out():
            _export(TextGraph(model, no=False), (ids,), ["input_ids"], out / graphs["text"])
            _export(TextGraph(model, no=True), (ids, weights), ["input_ids", "prompt_weights"], out / graphs["text_no"])
            if kv:  # the "no" tower after shared prompt beginnings (kv_graph.py)
                graphs["text_no_kv"] = "text_no_kv.onnx"
                export_kv_graph(model, out / graphs["text_no_kv"], OPSET, _exporter_options())
    if fp16:
        graphs["image_fp16"] = "image_encoder.fp16.onnx"
        raw = out / "image_encoder.raw.onnx"
        with torch.no_grad():
            _export(ImageEncoder(model, normalize=False), (pixels,), ["pixel_values"], raw)
        convert_to_fp16(raw, out / graphs["image_fp16"])
        raw.unlink()
    if int8:  # int8 dynamic image encoder (models/clipn/quantize.py), same IO as the fp32 graph
        graphs["image_int8"] = "image_encoder.int8.onnx"
        quantize_file(out / graphs["image"], out / graphs["image_int8"])
    np.save(out / "prompt_no.npy", model.prompt_no.detach().numpy().astype(np.float32))
    write_fixture(out / "parity", model, tokenizer)
    size = config.vision.image_size
    manifest = {
        "format": "clipn-lab-model",
        "format_version": FORMAT_VERSION,
        "name": name,
        "architecture": {**config.to_dict()},
        "embed_dim": config.embed_dim,
        "context_length": config.text.context_length,
        "num_prompts": config.num_prompts,
        "logit_scale": INFERENCE_SCALE,
        "trained_logit_scale": float(model.logit_scale.exp().item()),
        "preprocess": preprocess or {
            "size": size, "resize_mode": "shortest", "interpolation": "bicubic", "crop": "center",
            "mean": list(CLIP_MEAN), "std": list(CLIP_STD),
        },
        "tokenizer": {"type": "clip-bpe", "merges": merges_name},
        "graphs": graphs,
        "io": {"image": ["pixel_values"], "text": ["input_ids"], "text_no": ["input_ids", "prompt_weights"], "output": "embeds"},
        # The text graphs take input_ids [B, L] for any 1 <= L <= context_length (FORMAT.md).
        "text_sequence": "variable",
        "prompts": "prompt_no.npy",
        "fixture": "parity",
    }
    if templates:
        manifest["templates"] = templates
    if extra:
        manifest.update(extra)
    manifest["files"] = {
        str(p.relative_to(out)): sha256_file(p)
        for p in sorted(out.rglob("*")) if p.is_file() and p.name != "clipn.json"
    }
    (out / "clipn.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


# Manifest keys export_model writes itself; refresh_folder keeps every other key as it was.
OWN_KEYS = {
    "format", "format_version", "name", "architecture", "embed_dim", "context_length", "num_prompts", "logit_scale",
    "trained_logit_scale", "preprocess", "tokenizer", "graphs", "io", "text_sequence", "prompts", "fixture", "templates", "files",
}


def refresh_folder(folder: Path, kv: bool = True) -> dict:
    """Re-exports a model folder in place from the checkpoint its manifest names (no training):
    same name, merges, preprocessing, templates, optional graphs and extra keys (quality,
    recipe, ...); new graphs, fixture and hashes from this exporter."""
    folder = Path(folder)
    old = json.loads((folder / "clipn.json").read_text(encoding="utf-8"))
    if "checkpoint" not in old:
        raise ValueError(f"{folder / 'clipn.json'}: names no checkpoint to re-export from; export the checkpoint with --out")
    model = load_clipn(folder / old["checkpoint"])
    return export_model(
        model, folder / old["tokenizer"]["merges"], folder, old["name"], fp16="image_fp16" in old["graphs"],
        templates=old.get("templates"), preprocess=old["preprocess"], int8="image_int8" in old["graphs"], kv=kv,
        extra={k: v for k, v in old.items() if k not in OWN_KEYS},
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="models/export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="CLIPN epoch_N.pt, or an open_clip CLIP checkpoint")
    p.add_argument("--out", help="model folder to write")
    p.add_argument("--merges", help="tokenizer merges (open_clip's bpe_simple_vocab_16e6.txt.gz)")
    p.add_argument("--refresh", metavar="FOLDER", help="re-export FOLDER in place from the checkpoint its clipn.json names, keeping its settings")
    p.add_argument("--arch", help="architecture name; default: read from the checkpoint or inferred from its shapes")
    p.add_argument("--activation", choices=["gelu", "quick_gelu"], help="quick_gelu for OpenAI CLIP weights")
    p.add_argument("--name", help="model name in the manifest (default: the output folder name)")
    p.add_argument("--fp16", action="store_true", help="also write an fp16 image encoder")
    p.add_argument("--int8", action="store_true", help="also write an int8 dynamically quantised image encoder")
    p.add_argument("--no-kv", action="store_true", help="skip the text_no_kv graph (the no tower after shared prompt beginnings; engines then encode whole texts)")
    args = p.parse_args(argv)
    if not args.refresh and not (args.checkpoint and args.out and args.merges):
        p.error("give CHECKPOINT --out DIR --merges VOCAB, or --refresh FOLDER")
    try:
        if args.refresh:
            args.out = args.refresh
            manifest = refresh_folder(Path(args.refresh), kv=not args.no_kv)
        else:
            model = load_clipn(Path(args.checkpoint), args.arch, args.activation)
            manifest = export_model(model, Path(args.merges), Path(args.out), args.name or Path(args.out).name, fp16=args.fp16, int8=args.int8, kv=not args.no_kv)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {len(manifest['files'])} files, embed dim {manifest['embed_dim']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
