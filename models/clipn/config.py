"""Architecture configurations (open_clip's numbers for the real ones)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class VisionConfig:
    image_size: int
    patch_size: int
    width: int
    layers: int
    heads: int


@dataclass(frozen=True)
class TextConfig:
    context_length: int
    vocab_size: int
    width: int
    layers: int
    heads: int


@dataclass(frozen=True)
class ClipnConfig:
    name: str
    embed_dim: int
    vision: VisionConfig
    text: TextConfig
    activation: str = "gelu"  # "gelu" (LAION/open_clip) or "quick_gelu" (OpenAI weights)
    num_prompts: int = 16
    mlp_ratio: float = 4.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("extra")
        data["config"] = data.pop("name")
        return data

    def with_vocab(self, vocab_size: int) -> "ClipnConfig":
        return replace(self, text=replace(self.text, vocab_size=vocab_size))


_CLIP_TEXT = TextConfig(context_length=77, vocab_size=49408, width=512, layers=12, heads=8)

CONFIGS = {
    "ViT-B-16": ClipnConfig("ViT-B-16", 512, VisionConfig(224, 16, 768, 12, 12), _CLIP_TEXT),
    "ViT-B-32": ClipnConfig("ViT-B-32", 512, VisionConfig(224, 32, 768, 12, 12), _CLIP_TEXT),
    "ViT-L-14": ClipnConfig(
        "ViT-L-14",
        768,
        VisionConfig(224, 14, 1024, 24, 16),
        TextConfig(context_length=77, vocab_size=49408, width=768, layers=12, heads=12),
    ),
    # The bundled default model: small enough to train on 2 CPU cores in minutes.
    "tiny": ClipnConfig(
        "tiny",
        128,
        VisionConfig(32, 8, 128, 4, 4),
        TextConfig(context_length=16, vocab_size=49408, width=128, layers=3, heads=4),
    ),
    # For unit tests: builds and runs in milliseconds.
    "micro": ClipnConfig(
        "micro",
        32,
        VisionConfig(16, 8, 32, 2, 2),
        TextConfig(context_length=16, vocab_size=49408, width=32, layers=2, heads=2),
        num_prompts=4,
    ),
}


def get_config(name: str, activation: str | None = None) -> ClipnConfig:
    if name not in CONFIGS:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(CONFIGS)}")
    config = CONFIGS[name]
    return replace(config, activation=activation) if activation else config


def config_from_dict(data: dict) -> ClipnConfig:
    return ClipnConfig(
        name=data["config"],
        embed_dim=data["embed_dim"],
        vision=VisionConfig(**data["vision"]),
        text=TextConfig(**data["text"]),
        activation=data.get("activation", "gelu"),
        num_prompts=data.get("num_prompts", 16),
        mlp_ratio=data.get("mlp_ratio", 4.0),
    )
