"""CLIPN's training losses, as ../shared/spec/clipn.md gives them.

All features are L2-normalised. With s = exp(logit_scale):
  p_no_ij  = exp(s f_i.g_no_j) / (exp(s f_i.g_j) + exp(s f_i.g_no_j)) = sigmoid(s f_i.(g_no_j - g_j))
  L_yes    = -(1/N) sum_i log p_yes_ii
  L_no     = -(1/(N^2 - N)) sum_{i != j} log p_no_ij
  L_tso    = mean_i [2 - sqrt(2 - 2 g_i.g_no_i + 1e-4)]
  total    = 0.5 (L_yes + L_no + L_tso)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ClipnLoss:
    total: torch.Tensor
    yes: torch.Tensor
    no: torch.Tensor
    tso: torch.Tensor


def itbo_loss(image: torch.Tensor, text: torch.Tensor, text_no: torch.Tensor, scale: torch.Tensor):
    """Image-text binary-opposite loss: returns (L_yes, L_no)."""
    n = image.shape[0]
    if n < 2:
        raise ValueError("ITBO needs at least two image-text pairs (its 'no' term averages over i != j)")
    logits_yes = scale * image @ text.t()
    logits_no = scale * image @ text_no.t()
    # log p_yes = log sigmoid(yes - no), log p_no = log sigmoid(no - yes): stable two-way softmax.
    diag = torch.arange(n, device=image.device)
    log_p_yes = F.logsigmoid(logits_yes[diag, diag] - logits_no[diag, diag])
    log_p_no = F.logsigmoid(logits_no - logits_yes)
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=image.device)
    loss_yes = -log_p_yes.mean()
    loss_no = -log_p_no[off_diagonal].sum() / (n * n - n)
    return loss_yes, loss_no


def tso_loss(text: torch.Tensor, text_no: torch.Tensor) -> torch.Tensor:
    """Text semantic-opposite loss: 0 when each yes/no pair points in opposite directions."""
    cosine = (text * text_no).sum(dim=-1)
    return (2.0 - torch.sqrt(2.0 - 2.0 * cosine + 1e-4)).mean()


def clipn_loss(image, text, text_no, scale) -> ClipnLoss:
    loss_yes, loss_no = itbo_loss(image, text, text_no, scale)
    loss_tso = tso_loss(text, text_no)
    return ClipnLoss(0.5 * (loss_yes + loss_no + loss_tso), loss_yes, loss_no, loss_tso)


def clip_contrastive_loss(image, text, scale) -> torch.Tensor:
    """Symmetric InfoNCE, used only to pretrain the small default CLIP (not by CLIPN)."""
    logits = scale * image @ text.t()
    target = torch.arange(image.shape[0], device=image.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
