"""Loading and saving checkpoints in the official CLIPN layout.

Official `epoch_N.pt`: {"epoch", "name", "state_dict" (keys prefixed `module.` by DDP),
"optimizer"}. We write the same, plus "clipn_config" so our own checkpoints need no
architecture flag. A plain open_clip CLIP checkpoint (no `*_no` keys) also loads: the
"no" tower starts as a copy of the text tower and the prompts at zero, as CLIPN does.
"""
from __future__ import annotations

import zipfile
import pickle
from dataclasses import replace
from pathlib import Path

import torch

from .config import CONFIGS, ClipnConfig, config_from_dict, get_config
from .model import CLIPN


class CheckpointError(ValueError):
    """One-line, user-facing: names the file and what is wrong with it."""


def _short_list(names, limit: int = 8) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def read_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        data = torch.load(path, map_location="cpu")
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        state = data["state_dict"]
    elif isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        state = data
    else:
        raise CheckpointError(f"{path}: no state_dict in this file (expected a dict with 'state_dict' or a bare state dict)")
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}
    return {"state_dict": state, "config": data.get("clipn_config") if isinstance(data, dict) else None, "raw": data}


def _block_shapes(prefix: str, width: int, layers: int, mlp_ratio: float) -> dict:
    hidden = int(width * mlp_ratio)
    shapes = {}
    for i in range(layers):
        b = f"{prefix}.resblocks.{i}."
        shapes.update({
            b + "ln_1.weight": (width,), b + "ln_1.bias": (width,),
            b + "attn.in_proj_weight": (3 * width, width), b + "attn.in_proj_bias": (3 * width,),
            b + "attn.out_proj.weight": (width, width), b + "attn.out_proj.bias": (width,),
            b + "ln_2.weight": (width,), b + "ln_2.bias": (width,),
            b + "mlp.c_fc.weight": (hidden, width), b + "mlp.c_fc.bias": (hidden,),
            b + "mlp.c_proj.weight": (width, hidden), b + "mlp.c_proj.bias": (width,),
        })
    return shapes


def expected_shapes(config: ClipnConfig) -> dict:
    """Every parameter's shape, without building the (possibly large) model."""
    v, t, d = config.vision, config.text, config.embed_dim
    grid = v.image_size // v.patch_size
    shapes = {
        "visual.class_embedding": (v.width,), "visual.positional_embedding": (grid * grid + 1, v.width),
        "visual.proj": (v.width, d), "visual.conv1.weight": (v.width, 3, v.patch_size, v.patch_size),
        "visual.ln_pre.weight": (v.width,), "visual.ln_pre.bias": (v.width,),
        "visual.ln_post.weight": (v.width,), "visual.ln_post.bias": (v.width,),
        "logit_scale": (), "prompt_no": (config.num_prompts, t.context_length, t.width),
    }
    shapes.update(_block_shapes("visual.transformer", v.width, v.layers, config.mlp_ratio))
    for suffix in ("", "_no"):
        shapes.update({
            f"token_embedding{suffix}.weight": (t.vocab_size, t.width),
            f"positional_embedding{suffix}": (t.context_length, t.width),
            f"text_projection{suffix}": (t.width, d),
            f"ln_final{suffix}.weight": (t.width,), f"ln_final{suffix}.bias": (t.width,),
        })
        shapes.update(_block_shapes(f"transformer{suffix}", t.width, t.layers, config.mlp_ratio))
    return shapes


def infer_config(state: dict, path: Path, activation: str | None) -> ClipnConfig:
    """Finds the known configuration whose parameter shapes match the checkpoint."""
    vocab = state.get("token_embedding.weight")
    candidates = []
    for config in CONFIGS.values():
        if vocab is not None:
            config = config.with_vocab(int(vocab.shape[0]))
        candidates.append(config)
    for config in candidates:
        shapes = expected_shapes(config)
        if all(tuple(state[k].shape) == s for k, s in shapes.items() if k in state) and all(k in state for k in shapes if not k.split(".")[0].endswith("_no")):
            return replace(config, activation=activation) if activation else config
    raise CheckpointError(
        f"{path}: parameter shapes match no known architecture ({', '.join(CONFIGS)}); pass --arch to see the differences"
    )


def check_state(state: dict, config: ClipnConfig, path: Path, plain_clip: bool) -> None:
    expected = expected_shapes(config)
    if plain_clip:
        expected = {k: s for k, s in expected.items() if not k.split(".")[0].endswith("_no")}
        state = {k: v for k, v in state.items() if k not in ("attn_mask",) and not k.startswith("visual.attn_mask")}
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    problems = []
    if missing:
        problems.append(f"missing keys: {_short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_short_list(unexpected)}")
    wrong = [f"{k} {tuple(state[k].shape)} != {expected[k]}" for k in sorted(set(expected) & set(state)) if tuple(state[k].shape) != expected[k]]
    if wrong:
        problems.append(f"shape mismatches: {_short_list(wrong, 4)}")
    if problems:
        raise CheckpointError(f"{path}: does not fit architecture {config.name}: " + "; ".join(problems))


def load_clipn(path: Path, arch: str | None = None, activation: str | None = None) -> CLIPN:
    """Loads an official CLIPN checkpoint (strict) or a plain open_clip CLIP one."""
    path = Path(path)
    loaded = read_checkpoint(path)
    state = loaded["state_dict"]
    plain_clip = "prompt_no" not in state and not any(k.startswith("transformer_no.") for k in state)
    if arch:
        config = get_config(arch, activation)
        if "token_embedding.weight" in state:
            config = config.with_vocab(int(state["token_embedding.weight"].shape[0]))
    elif loaded["config"]:
        config = config_from_dict(loaded["config"])
        config = replace(config, activation=activation) if activation else config
    else:
        config = infer_config(state, path, activation)
    check_state(state, config, path, plain_clip)
    model = CLIPN(config)
    if plain_clip:
        yes_state = {k: v for k, v in state.items() if k in model.state_dict()}
        missing, unexpected = model.load_state_dict(yes_state, strict=False)
        still_missing = [k for k in missing if not k.split(".")[0].endswith("_no")]
        if still_missing or unexpected:
            raise CheckpointError(f"{path}: missing {_short_list(still_missing)}; unexpected {_short_list(unexpected)}")
        model.init_no_from_yes()
    else:
        model.load_state_dict(state, strict=True)
    return model.eval()


def save_checkpoint(path: Path, model: CLIPN, epoch: int, name: str = "clipn", optimizer=None,
                    extra: dict | None = None, plain_clip: bool = False) -> None:
    """Writes the official layout: DDP-style `module.` keys under "state_dict".
    `plain_clip` leaves out the "no" tower (a CLIP checkpoint, as open_clip writes)."""
    state = {
        "module." + k: v.detach().clone()
        for k, v in model.state_dict().items()
        if not (plain_clip and k.split(".")[0].endswith("_no"))
    }
    data = {"epoch": epoch, "name": name, "state_dict": state, "clipn_config": model.config.to_dict()}
    if optimizer is not None:
        data["optimizer"] = optimizer.state_dict()
    if extra:
        data.update(extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(data, tmp)
    tmp.replace(path)
