"""Training: CLIPN's "no" tower with ITBO + TSO (phase "clipn"), or contrastive CLIP
pretraining of the yes towers (phase "clip", used only for the small default model).

Single process, or many through `torchrun` (DDP; gloo on CPU, nccl on GPU). As in the
official code, every rank gathers the features of all ranks and computes the loss over the
global batch; its own slice keeps its gradient.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from .checkpoint import CheckpointError, load_clipn, read_checkpoint, save_checkpoint
from .config import get_config
from .data import CsvCaptions, SyntheticCaptions
from .losses import clip_contrastive_loss, clipn_loss
from .model import CLIPN, one_hot_prompt_weights
from .tokenizer import ClipTokenizer

# The spec's recipe (CC3M, 10 epochs, global batch 2048, 4 GPUs).
DEFAULTS = dict(lr=3e-4, beta1=0.9, beta2=0.98, eps=1e-6, wd=0.2, epochs=10, batch_size=512, warmup=10000)


def cosine_lr(base_lr: float, warmup: int, total: int):
    """open_clip's schedule: linear warm-up, then cosine decay to zero."""

    def lr_at(step: int) -> float:
        if step < warmup:
            return base_lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * progress)) * base_lr

    return lr_at


def param_groups(named_params, wd: float):
    """No weight decay on gains, biases, norms and the logit scale (open_clip's rule)."""

    def exclude(name, p):
        return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name

    decay = [p for n, p in named_params if not exclude(n, p)]
    no_decay = [p for n, p in named_params if exclude(n, p)]
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": wd}]


class TrainStep(nn.Module):
    """What DDP wraps: the forward pass of one phase, returning the features to gather."""

    def __init__(self, model: CLIPN, phase: str):
        super().__init__()
        self.model = model
        self.phase = phase

    def forward(self, images, tokens, prompt_index=None):
        if self.phase == "clip":
            return self.model.encode_image(images), self.model.encode_text(tokens)
        with torch.no_grad():  # the image and yes-text towers are frozen
            image = self.model.encode_image(images)
            text = self.model.encode_text(tokens)
        weights = one_hot_prompt_weights(prompt_index, self.model.config.num_prompts).to(images.device)
        return image, text, self.model.encode_text_no(tokens, weights)


def gather_features(*features):
    """All ranks' features, with this rank's slice the local tensor (so it keeps its grad)."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return features
    rank, world = dist.get_rank(), dist.get_world_size()
    gathered = []
    for f in features:
        parts = [torch.zeros_like(f) for _ in range(world)]
        dist.all_gather(parts, f.detach().contiguous())
        parts[rank] = f
        gathered.append(torch.cat(parts, dim=0))
    return tuple(gathered)


def setup_distributed():
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        rank = dist.get_rank()
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        return rank, dist.get_world_size()
    return 0, 1


def build_model(args, tokenizer: ClipTokenizer) -> CLIPN:
    if args.init:
        model = load_clipn(Path(args.init), args.arch, args.activation)
    else:
        model = CLIPN(get_config(args.arch, args.activation).with_vocab(tokenizer.vocab_size))
    if model.config.text.vocab_size != tokenizer.vocab_size:
        raise SystemExit(f"{args.merges}: vocabulary of {tokenizer.vocab_size} tokens does not fit the model's {model.config.text.vocab_size}")
    return model


def train(args) -> Path:
    rank, world = setup_distributed()
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    tokenizer = ClipTokenizer(Path(args.merges))
    model = build_model(args, tokenizer)
    tokenizer.context_length = model.config.text.context_length
    if args.phase == "clipn":
        model.freeze_all_but_no()
    else:  # pretraining a CLIP: the "no" tower is not part of it
        for name, param in model.no_parameters():
            param.requires_grad_(False)
    model.to(device)
    size = model.config.vision.image_size
    if args.csv:
        dataset = CsvCaptions(Path(args.csv), tokenizer, size, args.csv_img_key, args.csv_caption_key, args.csv_separator)
    else:
        dataset = SyntheticCaptions(tokenizer, args.synthetic_count, size, args.synthetic_seed)
    sampler = DistributedSampler(dataset, world, rank, shuffle=True, seed=args.seed, drop_last=True)
    loader = DataLoader(dataset, batch_size=args.batch_size // world, sampler=sampler, drop_last=True, num_workers=args.workers)
    if len(loader) == 0:
        raise SystemExit(f"dataset of {len(dataset)} items is smaller than one global batch of {args.batch_size}")
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(trainable, args.wd), lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)
    total_steps = len(loader) * args.epochs
    lr_at = cosine_lr(args.lr, args.warmup, total_steps)
    start_epoch = 0
    if args.resume:
        state = read_checkpoint(Path(args.resume))["raw"]
        missing, unexpected = model.load_state_dict({k[len("module."):]: v for k, v in state["state_dict"].items()}, strict=False)
        missing = [k for k in missing if not (args.phase == "clip" and k.split(".")[0].endswith("_no"))]
        if missing or unexpected:
            raise CheckpointError(f"{args.resume}: cannot resume: missing {missing[:5]}, unexpected {unexpected[:5]}")
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
    step_module = TrainStep(model, args.phase)
    if world > 1:
        step_module = nn.parallel.DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None)
    out = Path(args.out)
    last = None
    for epoch in range(start_epoch, args.epochs):
        sampler.set_epoch(epoch)
        model.train()
        # Prompt draws depend on (seed, epoch, sample), not on the rank: any world size
        # sees the same global batches with the same prompts.
        prompt_table = torch.randint(
            0, model.config.num_prompts + 1, (len(dataset),), generator=torch.Generator().manual_seed(args.seed * 100003 + epoch)
        )
        started = time.time()
        for i, (images, tokens, indices) in enumerate(loader):
            step = epoch * len(loader) + i
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            images, tokens = images.to(device), tokens.to(device)
            with torch.autocast(device.type, enabled=args.amp and device.type == "cuda"):
                if args.phase == "clip":
                    image, text = gather_features(*step_module(images, tokens))
                    loss = clip_contrastive_loss(image.float(), text.float(), model.logit_scale.exp().clamp(max=100))
                    parts = ""
                else:
                    index = prompt_table[indices]
                    image, text, text_no = gather_features(*step_module(images, tokens, index))
                    losses = clipn_loss(image.float(), text.float(), text_no.float(), model.logit_scale.exp())
                    loss = losses.total
                    parts = f" yes {losses.yes.item():.4f} no {losses.no.item():.4f} tso {losses.tso.item():.4f}"
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if rank == 0 and (i % args.log_every == 0 or i == len(loader) - 1):
                print(f"epoch {epoch + 1}/{args.epochs} step {i + 1}/{len(loader)} loss {loss.item():.4f}{parts} lr {lr_at(step):.2e}", flush=True)
        if rank == 0:
            last = out / f"epoch_{epoch + 1}.pt"
            # A pretrained CLIP is saved without the "no" tower, like an open_clip checkpoint,
            # so CLIPN training starts that tower from the trained text tower.
            save_checkpoint(last, model, epoch + 1, name=args.name, optimizer=optimizer, plain_clip=args.phase == "clip")
            print(f"epoch {epoch + 1} done in {time.time() - started:.1f}s -> {last}", flush=True)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return last


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="models/train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phase", choices=["clipn", "clip"], default="clipn")
    p.add_argument("--arch", default="ViT-B-16", help="architecture (models/clipn/config.py)")
    p.add_argument("--activation", choices=["gelu", "quick_gelu"], default=None)
    p.add_argument("--init", help="start from this checkpoint (open_clip CLIP or CLIPN)")
    p.add_argument("--resume", help="continue from an epoch_N.pt written by this trainer")
    p.add_argument("--merges", required=True, help="tokenizer merges file (bpe_simple_vocab_16e6.txt.gz)")
    p.add_argument("--csv", help="training CSV (image path column + caption column); default: synthetic data")
    p.add_argument("--csv-img-key", default="filepath")
    p.add_argument("--csv-caption-key", default="title")
    p.add_argument("--csv-separator", default="\t")
    p.add_argument("--synthetic-count", type=int, default=20000)
    p.add_argument("--synthetic-seed", type=int, default=1)
    p.add_argument("--out", required=True, help="folder for epoch_N.pt checkpoints")
    p.add_argument("--name", default="clipn")
    for key in ("lr", "beta1", "beta2", "eps", "wd"):
        p.add_argument(f"--{key}", type=float, default=DEFAULTS[key])
    for key in ("epochs", "batch_size", "warmup"):
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=int, default=DEFAULTS[key])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--amp", action="store_true", default=True)
    p.add_argument("--no-amp", dest="amp", action="store_false")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even where CUDA is available")
    p.add_argument("--log-every", type=int, default=20)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        train(args)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
