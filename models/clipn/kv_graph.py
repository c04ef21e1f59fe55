"""The "no" tower run on part of a text, given the keys and values of the part before it.

Many prompts share their beginning: "a photo of no {}." filled with a hundred class names is a
hundred texts whose first five tokens are the same. The tower is causal, so those tokens'
states, and each layer's keys and values at them, do not depend on what follows; a prompt
pool ablation computes them once per template (and prompt mix) and runs each class only on
its own tokens (the class name, the rest of the template, EOT), attending to the shared ones.

KvGraph (exported as `text_no_kv`) computes, for input_ids [B, S] at positions P..P+S-1, each
row continuing past number past_index[b] of G pasts of P tokens (past_keys / past_values
[layers, G, heads, P, head width]: each layer's key and value projections, split into heads):
  - embeds [B, D]: the normalised feature at EOT (the row's largest id), which equals
    encode_text_no on the whole text up to float rounding;
  - present_keys / present_values [layers, B, heads, S, head width]: this call's own.
Prefixes are run with an empty past (P = 0; their embeds are then meaningless and ignored), and
their present_* become the pasts of the texts that continue them. Every op treats each row on
its own (the pasts are gathered per row), so a row's result does not depend on its batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .model import CLIPN


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """[L, B, W] -> [B, H, L, d]."""
    length, batch, width = t.shape
    return t.reshape(length, batch, heads, width // heads).permute(1, 2, 0, 3)


def _attend(q, k, v, past_k, past_v, mask):
    """q [B, H, S', d] (scaled), k, v [B, H, S, d]; past_k/v [B, H, P, d]; mask [S, S] causal
    (or [B, 1, 1, S] for one query row per sequence). -> [B, H, S', d]."""
    past_len = past_k.shape[2]
    scores = torch.cat([q @ past_k.transpose(-1, -2), q @ k.transpose(-1, -2) + mask], dim=-1)
    weights = scores.softmax(dim=-1)
    return weights[..., :past_len] @ past_v + weights[..., past_len:] @ v


class KvGraph(nn.Module):
    """The "no" tower on the tokens after a shared past; see the module comment."""

    def __init__(self, model: CLIPN):
        super().__init__()
        self.model = model

    def forward(self, input_ids, prompt_weights, past_keys, past_values, past_index):
        m = self.model
        transformer, ln_final, projection = m.text_tower(no=True)
        blocks = transformer.resblocks
        heads = blocks[0].attn.num_heads
        past_len = past_keys.shape[3]
        length = input_ids.shape[1]
        end = past_len + length
        offsets = m.prompt_offset(prompt_weights)[:, past_len:end]
        x = m.token_embedding_no(input_ids) + m.positional_embedding_no[past_len:end] + offsets
        x = x.permute(1, 0, 2)  # S, B, W
        batch, width = x.shape[1], x.shape[2]
        head = width // heads
        mask = m.attn_mask[:length, :length]
        eot = input_ids.argmax(dim=-1)
        rows = torch.arange(batch)
        keys, values = [], []
        for index, block in enumerate(blocks):
            y = block.ln_1(x)
            wq, wk, wv = block.attn.in_proj_weight.chunk(3)
            bq, bk, bv = block.attn.in_proj_bias.chunk(3)
            k, v = _heads(F.linear(y, wk, bk), heads), _heads(F.linear(y, wv, bv), heads)
            keys.append(k)
            values.append(v)
            # Already split into heads: a reshape of an empty past (P = 0) fails in onnxruntime.
            pk, pv = past_keys[index][past_index], past_values[index][past_index]  # B, H, P, d
            if index < len(blocks) - 1:
                q = _heads(F.linear(y, wq, bq), heads) * head**-0.5
                attended = _attend(q, k, v, pk, pv, mask)
                x = x + block.attn.out_proj(attended.permute(2, 0, 1, 3).reshape(length, batch, width))
                x = x + block.mlp(block.ln_2(x))
                continue
            # The last block only at EOT (its query, out-projection and MLP): nothing else of it
            # reaches the feature; its keys and values at every position are the present.
            q_eot = F.linear(y[eot, rows], wq, bq).reshape(batch, heads, 1, head) * head**-0.5
            later = torch.arange(length).unsqueeze(0) > eot.unsqueeze(1)  # B, S: after EOT
            hidden = torch.zeros(batch, length).masked_fill(later, float("-inf"))
            attended = _attend(q_eot, k, v, pk, pv, hidden[:, None, None, :]).reshape(batch, width)
            out = x[eot, rows] + block.attn.out_proj(attended)
            x_eot = out + block.mlp(block.ln_2(out))
        embeds = F.normalize(ln_final(x_eot) @ projection, dim=-1)
        return embeds, torch.stack(keys), torch.stack(values)


def empty_past(model: CLIPN) -> torch.Tensor:
    t = model.config.text
    return torch.zeros(t.layers, 1, t.heads, 0, t.width // t.heads)


def run_with_prefix(model: CLIPN, ids: torch.Tensor, split: int, weights: torch.Tensor) -> torch.Tensor:
    """Features of ids [B, L] (rows sharing ids[:, :split] and weights) computed as the engine
    does: the prefix once, then every row's own tokens against its keys and values."""
    graph = KvGraph(model)
    zero = torch.zeros(1, dtype=torch.long)
    _, keys, values = graph(ids[:1, :split], weights[:1], empty_past(model), empty_past(model), zero)
    embeds, _, _ = graph(ids[:, split:], weights, keys, values, zero.expand(ids.shape[0]))
    return embeds


KV_INPUTS = ["input_ids", "prompt_weights", "past_keys", "past_values", "past_index"]
KV_OUTPUTS = ["embeds", "present_keys", "present_values"]


def export_kv_graph(model: CLIPN, path, opset: int, extra: dict) -> None:
    """Writes the `text_no_kv` graph (FORMAT.md); `extra` carries torch.onnx.export options."""
    t = model.config.text
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, t.vocab_size - 1, (3, 4), generator=generator)
    ids[:, -1] = t.vocab_size - 1
    weights = torch.rand(3, model.config.num_prompts, generator=generator)
    past = torch.randn(t.layers, 2, t.heads, 5, t.width // t.heads, generator=generator)
    index = torch.tensor([0, 1, 1])
    axes = {
        "input_ids": {0: "batch", 1: "sequence"}, "prompt_weights": {0: "batch"},
        "past_keys": {1: "pasts", 3: "past"}, "past_values": {1: "pasts", 3: "past"}, "past_index": {0: "batch"},
        "embeds": {0: "batch"}, "present_keys": {1: "batch", 3: "sequence"}, "present_values": {1: "batch", 3: "sequence"},
    }
    with torch.no_grad():
        torch.onnx.export(
            KvGraph(model), (ids, weights, past, past.clone(), index), str(path), input_names=KV_INPUTS,
            output_names=KV_OUTPUTS, dynamic_axes=axes, opset_version=opset, do_constant_folding=True, **extra,
        )
