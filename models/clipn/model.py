"""CLIPN: CLIP's image and text towers plus a trainable "no" text tower.

Parameter names follow open_clip (and the official CLIPN code built on it) so that an
official checkpoint loads with strict=True; see ../shared/data/clipn_vitb16_state_dict.tsv.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .config import ClipnConfig


class QuickGELU(nn.Module):
    """OpenAI CLIP's activation; LAION-trained weights (CLIPN's backbone) use nn.GELU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def make_activation(name: str) -> nn.Module:
    if name == "gelu":
        return nn.GELU()
    if name == "quick_gelu":
        return QuickGELU()
    raise ValueError(f"unknown activation {name!r} (expected 'gelu' or 'quick_gelu')")


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float, activation: str):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", nn.Linear(width, hidden)), ("gelu", make_activation(activation)), ("c_proj", nn.Linear(hidden, width))]
            )
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """Sequence-first (L, N, D) stack of pre-norm blocks, as open_clip's `resblocks`."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, activation: str):
        super().__init__()
        self.resblocks = nn.ModuleList(
            [ResidualAttentionBlock(width, heads, mlp_ratio, activation) for _ in range(layers)]
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, config: ClipnConfig):
        super().__init__()
        v = config.vision
        if v.image_size % v.patch_size:
            raise ValueError(f"image size {v.image_size} is not a multiple of patch size {v.patch_size}")
        grid = v.image_size // v.patch_size
        scale = v.width**-0.5
        self.conv1 = nn.Conv2d(3, v.width, kernel_size=v.patch_size, stride=v.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(v.width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, v.width))
        self.ln_pre = nn.LayerNorm(v.width)
        self.transformer = Transformer(v.width, v.layers, v.heads, config.mlp_ratio, config.activation)
        self.ln_post = nn.LayerNorm(v.width)
        self.proj = nn.Parameter(scale * torch.randn(v.width, config.embed_dim))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.conv1(pixels).flatten(2).transpose(1, 2)  # N, grid*grid, width
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x).permute(1, 0, 2)
        x = self.transformer(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


def causal_mask(length: int) -> torch.Tensor:
    mask = torch.full((length, length), float("-inf"))
    return mask.triu_(1)


class CLIPN(nn.Module):
    def __init__(self, config: ClipnConfig):
        super().__init__()
        self.config = config
        t = config.text
        self.visual = VisionTransformer(config)
        self.token_embedding = nn.Embedding(t.vocab_size, t.width)
        self.positional_embedding = nn.Parameter(torch.empty(t.context_length, t.width))
        self.transformer = Transformer(t.width, t.layers, t.heads, config.mlp_ratio, config.activation)
        self.ln_final = nn.LayerNorm(t.width)
        self.text_projection = nn.Parameter(torch.empty(t.width, config.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(float(torch.log(torch.tensor(1 / 0.07)))))
        # The "no" tower: a full copy of the text tower, plus additive learnable prompts.
        self.token_embedding_no = nn.Embedding(t.vocab_size, t.width)
        self.positional_embedding_no = nn.Parameter(torch.empty(t.context_length, t.width))
        self.transformer_no = Transformer(t.width, t.layers, t.heads, config.mlp_ratio, config.activation)
        self.ln_final_no = nn.LayerNorm(t.width)
        self.text_projection_no = nn.Parameter(torch.empty(t.width, config.embed_dim))
        self.prompt_no = nn.Parameter(torch.zeros(config.num_prompts, t.context_length, t.width))
        self.register_buffer("attn_mask", causal_mask(t.context_length), persistent=False)
        self.reset_text_parameters()

    def reset_text_parameters(self) -> None:
        """open_clip's initialisation, for training from scratch."""
        t = self.config.text
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        proj_std = (t.width**-0.5) * ((2 * t.layers) ** -0.5)
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=t.width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * t.width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=t.width**-0.5)
        self.init_no_from_yes()

    @torch.no_grad()
    def init_no_from_yes(self) -> None:
        """CLIPN starts its "no" tower as a copy of the text tower, prompts at zero."""
        self.token_embedding_no.load_state_dict(self.token_embedding.state_dict())
        self.positional_embedding_no.copy_(self.positional_embedding)
        self.transformer_no.load_state_dict(self.transformer.state_dict())
        self.ln_final_no.load_state_dict(self.ln_final.state_dict())
        self.text_projection_no.copy_(self.text_projection)
        self.prompt_no.zero_()

    def no_parameters(self):
        return [(name, p) for name, p in self.named_parameters() if name.split(".")[0].endswith("_no")]

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.visual(pixels)
        return F.normalize(features, dim=-1) if normalize else features

    def text_tower(self, no: bool = False):
        """(transformer, ln_final, projection) of the yes tower, or of the "no" tower."""
        if no:
            return self.transformer_no, self.ln_final_no, self.text_projection_no
        return self.transformer, self.ln_final, self.text_projection

    def text_input(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, L] ids -> [B, L, width] token + positional embeddings, for any L <= context."""
        return self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]]

    def text_no_input(self, tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The "no" tower's input: its embeddings plus the mixed prompt offsets, cut to L."""
        length = tokens.shape[1]
        return self.token_embedding_no(tokens) + self.positional_embedding_no[:length] + self.prompt_offset(weights, length)

    def _encode(self, x, tokens, transformer, ln_final, projection) -> torch.Tensor:
        # The mask is causal, so positions after EOT never reach it: a text runs the same at
        # its own length as padded to the context. LayerNorm is per token, so ln_final on the
        # EOT row alone equals gathering after it, and skips the other rows.
        length = tokens.shape[1]
        x = transformer(x.permute(1, 0, 2), attn_mask=self.attn_mask[:length, :length]).permute(1, 0, 2)
        eot = tokens.argmax(dim=-1)  # EOT has the largest id in CLIP's vocabulary
        return ln_final(x[torch.arange(x.shape[0]), eot]) @ projection

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """[B, L] ids, any L <= context_length (zero padding after EOT may be cut off)."""
        features = self._encode(self.text_input(tokens), tokens, *self.text_tower())
        return F.normalize(features, dim=-1) if normalize else features

    def prompt_offset(self, weights: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """[B, P] mixing weights -> [B, length, width] offsets: sum_k w_k prompt_no[k, :length]."""
        p, c, w = self.prompt_no.shape
        # Mix at full context, then cut: in an exported graph the right operand stays a constant
        # [P, C*W] matrix, which onnxruntime's CPU MatMul gives a row the same bits in any batch
        # (a sliced, non-constant operand did not, breaking the text memo's premise).
        offsets = (weights @ self.prompt_no.reshape(p, c * w)).reshape(-1, c, w)
        return offsets if length is None else offsets[:, :length]

    def encode_text_no(self, tokens: torch.Tensor, weights: torch.Tensor | None = None, normalize: bool = True):
        """The "no" tower on [B, L] ids (L <= context). `weights` [B, P] mixes the learned prompts; None = their mean."""
        if weights is None:
            weights = mean_prompt_weights(tokens.shape[0], self.config.num_prompts, self.prompt_no.dtype)
        x = self.text_no_input(tokens, weights)
        features = self._encode(x, tokens, *self.text_tower(no=True))
        return F.normalize(features, dim=-1) if normalize else features

    def freeze_all_but_no(self) -> None:
        """Only the `*_no` parameters train in CLIPN."""
        for name, param in self.named_parameters():
            param.requires_grad_(name.split(".")[0].endswith("_no"))


def mean_prompt_weights(batch: int, prompts: int, dtype=torch.float32) -> torch.Tensor:
    return torch.full((batch, prompts), 1.0 / prompts, dtype=dtype)


def one_hot_prompt_weights(indices: torch.Tensor, prompts: int) -> torch.Tensor:
    """Index `prompts` means "the mean of all prompts" (training draws it as a 17th choice)."""
    weights = torch.zeros(indices.shape[0], prompts)
    single = indices < prompts
    weights[single, indices[single]] = 1.0
    weights[~single] = 1.0 / prompts
    return weights
