"""Task heads on the pretrained towers (METER / CLIP-ViL style) and the fine-tuning model.

- ``fusion`` (default): both towers' final token states (``return_tokens=True``) are
  projected to one width W, a learned type embedding (image / text) is added, and L
  pre-norm transformer layers attend over all image and (unpadded) text tokens at once
  (METER's "merged attention"). The fused CLS token and the fused end-of-text token,
  concatenated, go into the classifier.
- ``mlp``: ``[v; t; v*t; |v - t|]`` of the L2-normalised pooled features into the classifier.

Classifier (METER's): Linear(d, d) -> LayerNorm -> GELU -> Linear(d, classes).
Defaults: W = the text tower's width, L = half the text tower's layers (2 for Tiny, 6 for
B models, as METER), heads = the text tower's.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..model import HiCLIP

HEADS = ("fusion", "mlp")


@dataclass
class HeadCfg:
    """The head; None fields take the defaults of the module docstring (``resolve``)."""

    kind: str = "fusion"
    num_classes: int = 2
    width: int | None = None
    layers: int | None = None
    heads: int | None = None
    dropout: float = 0.0

    def resolve(self, encoder: HiCLIP) -> "HeadCfg":
        if self.kind not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.kind!r}")
        text = encoder.cfg.text_cfg
        cfg = dataclasses.replace(self, width=self.width or text.width, layers=self.layers or max(1, text.layers // 2),
                                  heads=self.heads or text.heads)
        if cfg.width % cfg.heads:
            raise ValueError(f"fusion width {cfg.width} is not a multiple of its {cfg.heads} heads")
        if cfg.num_classes < 2:
            raise ValueError(f"need at least 2 classes, got {cfg.num_classes}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def classifier(dim: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.GELU(), nn.Linear(dim, num_classes))


class FusionHead(nn.Module):
    """Merged-attention fusion of token states -> logits (B, C)."""

    def __init__(self, cfg: HeadCfg, image_width: int, text_width: int):
        super().__init__()
        w = cfg.width
        self.image_proj, self.text_proj = nn.Linear(image_width, w), nn.Linear(text_width, w)
        self.type_embedding = nn.Embedding(2, w)
        layer = nn.TransformerEncoderLayer(w, cfg.heads, 4 * w, dropout=cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.fusion = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(w)
        self.classifier = classifier(2 * w, cfg.num_classes)

    def forward(self, image: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, eot: torch.Tensor
                ) -> torch.Tensor:
        """image (B, Ni, Dv), text (B, Nt, Dt) token states; text_mask (B, Nt) real tokens; eot (B,)."""
        x = torch.cat([self.image_proj(image) + self.type_embedding.weight[0],
                       self.text_proj(text) + self.type_embedding.weight[1]], dim=1)
        keep = torch.cat([torch.ones(image.shape[:2], dtype=torch.bool, device=x.device), text_mask], dim=1)
        x = self.ln(self.fusion(x, src_key_padding_mask=~keep))
        pooled = torch.cat([x[:, 0], x[torch.arange(x.shape[0], device=x.device), image.shape[1] + eot]], dim=-1)
        return self.classifier(pooled)


class MlpHead(nn.Module):
    """``[v; t; v*t; |v-t|]`` of normalised pooled features -> logits (B, C)."""

    def __init__(self, cfg: HeadCfg, embed_dim: int):
        super().__init__()
        self.classifier = classifier(4 * embed_dim, cfg.num_classes)

    def forward(self, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v, t = F.normalize(v, dim=-1), F.normalize(t, dim=-1)
        return self.classifier(torch.cat([v, t, v * t, (v - t).abs()], dim=-1))


class VLModel(nn.Module):
    """A HiCLIP encoder and a head: ``forward(images (B, 3, S, S), tokens (B, N)) -> logits (B, C)``.

    ``freeze_encoders``: the towers get no gradients and run under ``no_grad`` (only the
    head trains). The encoder's ``logit_scale`` is unused and frozen.
    """

    def __init__(self, encoder: HiCLIP, head: HeadCfg, freeze_encoders: bool = False):
        super().__init__()
        self.head_cfg = head.resolve(encoder)
        self.encoder, self.freeze_encoders = encoder, freeze_encoders
        if self.head_cfg.kind == "fusion":
            self.head: nn.Module = FusionHead(self.head_cfg, encoder.cfg.vision_cfg.width, encoder.cfg.text_cfg.width)
        else:
            self.head = MlpHead(self.head_cfg, encoder.cfg.embed_dim)
        encoder.logit_scale.requires_grad_(False)
        if freeze_encoders:
            encoder.requires_grad_(False)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """images (B, 3, S, S), tokens (B, N) -> logits (B, C). Text is cut after the batch's longest
        caption (padding changes no real token's state, so only time is saved)."""
        tokens = tokens[:, :int(tokens.argmax(dim=-1).max()) + 1]
        with torch.no_grad() if self.freeze_encoders else contextlib.nullcontext():
            if self.head_cfg.kind == "mlp":
                v, t = self.encoder.encode_image(images), self.encoder.encode_text(tokens)
            else:
                _, image = self.encoder.encode_image(images, return_tokens=True)
                _, text = self.encoder.encode_text(tokens, return_tokens=True)
        if self.head_cfg.kind == "mlp":
            return self.head(v, t)
        return self.head(image.states, text.states, text.mask, tokens.argmax(dim=-1))

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Trainable parameters by learning-rate group: "encoder", "fusion", "head" (the classifier)."""
        groups: dict[str, list] = {"encoder": [], "fusion": [], "head": []}
        for name, p in self.named_parameters():
            if p.requires_grad:
                key = ("encoder" if name.startswith("encoder.") else
                       "head" if name.startswith("head.classifier.") else "fusion")
                groups[key].append((name, p))
        return groups

    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()}
