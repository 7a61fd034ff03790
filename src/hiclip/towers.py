"""The two encoders: a ViT (CLS token, patch grid) and a CLIP text transformer (EOT pooling).

Both mirror open_clip's parameter layout; hierarchy-aware attention links patches
over the grid (:class:`GridStructure`) and words over the chain of content tokens
(:class:`ChainStructure`). Link read-outs are returned as :class:`ImageHierarchy` /
:class:`TextHierarchy`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .attention import ChainStructure, GridStructure, Transformer
from .config import TextCfg, VisionCfg


@dataclass
class ImageHierarchy:
    """Per hierarchy layer cumulative link affinities of the patch grid.

    h: (B, L, H, W-1) links (r, c)-(r, c+1);  v: (B, L, H-1, W) links (r, c)-(r+1, c).
    layers: the transformer layer index of each of the L entries.
    """

    h: torch.Tensor
    v: torch.Tensor
    layers: list[int]


@dataclass
class TokenStates:
    """A tower's final token states, before the projection (``return_tokens=True``).

    states: (B, N, D) after the tower's last LayerNorm (``ln_post`` / ``ln_final``), D the
    tower's width. Image: N = 1 + H*W, the CLS token then the patches in row-major order.
    Text: N = the token ids' length, start token first.
    mask: (B, N) bool, True for real tokens (image: all; text: start, words and
    end-of-text; False for the padding after end-of-text).
    """

    states: torch.Tensor
    mask: torch.Tensor


@dataclass
class TextHierarchy:
    """Per hierarchy layer cumulative link affinities between consecutive content tokens.

    Content tokens are positions 1 .. ctx-2 (after the start token, before the last
    slot); ``links[b, l, k]`` joins content tokens k and k+1.

    links: (B, L, ctx-3), 0 where ``mask`` is False.
    mask: (B, ctx-3) bool, both ends are real content tokens (not end-of-text / padding).
    lengths: (B,) number of content tokens of each caption.
    layers: the transformer layer index of each of the L entries.
    """

    links: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor
    layers: list[int]


def build_transformer(cfg: VisionCfg | TextCfg, quick_gelu: bool) -> Transformer:
    h = cfg.hierarchy
    return Transformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_ratio, quick_gelu,
                       cfg.hierarchy_layers, h.dim, h.renormalize, h.kernel, h.link, h.budget)


class VisionTower(nn.Module):
    """ViT: patches (conv1) + CLS + positions -> ln_pre -> transformer -> ln_post(CLS) @ proj."""

    def __init__(self, cfg: VisionCfg, embed_dim: int, quick_gelu: bool = False):
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
        self.cfg = cfg
        self.grid = cfg.grid
        width, scale = cfg.width, cfg.width ** -0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid[0] * self.grid[1] + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = build_transformer(cfg, quick_gelu)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, embed_dim))
        self.transformer.init_parameters()

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1+H*W, D) final token states -> (B, D) by ``cfg.pool`` (CLS, patch mean, or both)."""
        if self.cfg.pool == "tok":
            return x[:, 0]
        patches = x[:, 1:].mean(dim=1)
        return patches if self.cfg.pool == "avg" else 0.5 * (x[:, 0] + patches)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass (training only), as open_clip."""
        self.transformer.grad_checkpointing = enable

    def check_input(self, images: torch.Tensor) -> None:
        s = self.cfg.image_size
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2:] != (s, s):
            raise ValueError(f"expected images of shape (B, 3, {s}, {s}), got {tuple(images.shape)}")

    def forward(self, images: torch.Tensor, return_hierarchy: bool = False, return_tokens: bool = False
                ) -> torch.Tensor | tuple:
        """images (B, 3, S, S) -> features (B, E) [, ImageHierarchy] [, TokenStates]."""
        self.check_input(images)
        x = self.conv1(images).flatten(2).transpose(1, 2)  # (B, H*W, D)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        x, history = self.transformer(x, structure=GridStructure(self.grid, offset=1))
        states = self.ln_post(x)
        pooled = self.pool(states) @ self.proj
        extras: list = []
        if return_hierarchy:
            h = torch.stack([links[0] for links in history], 1)
            v = torch.stack([links[1] for links in history], 1)
            extras.append(ImageHierarchy(h, v, self.transformer.hierarchy_layers))
        if return_tokens:
            extras.append(TokenStates(states, torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)))
        return (pooled, *extras) if extras else pooled


def content_mask(tokens: torch.Tensor) -> torch.Tensor:
    """(B, N) token ids -> (B, N) bool: between the start token and end-of-text (argmax id)."""
    pos = torch.arange(tokens.shape[1], device=tokens.device)
    eot = tokens.argmax(dim=-1, keepdim=True)
    return (pos >= 1) & (pos < eot)


def chain_mask(tokens: torch.Tensor) -> torch.Tensor:
    """(B, N) token ids -> (B, N) bool: the start token, the words and end-of-text (no padding)."""
    pos = torch.arange(tokens.shape[1], device=tokens.device)
    return pos <= tokens.argmax(dim=-1, keepdim=True)


def text_hierarchy(history: list, content: torch.Tensor, layers: list[int]) -> TextHierarchy:
    """Stack per-layer chain links over the full sequence into a :class:`TextHierarchy`.

    ``content`` (B, N) marks the words: links to the start / end token are not read out.
    """
    n = content.shape[1]
    links = torch.stack([a[0] for a in history], 1)[:, :, 1:n - 2]  # edges between content slots
    mask = (content[:, :-1] & content[:, 1:])[:, 1:n - 2]
    return TextHierarchy(links * mask.unsqueeze(1), mask, content.sum(-1), layers)


def build_text_parts(cfg: TextCfg, embed_dim: int, quick_gelu: bool = False) -> dict[str, nn.Module | torch.Tensor]:
    """open_clip CLIP's text modules, kept at the model's top level for state-dict parity."""
    width = cfg.width
    token_embedding = nn.Embedding(cfg.vocab_size, width)
    nn.init.normal_(token_embedding.weight, std=0.02)
    positional_embedding = nn.Parameter(torch.empty(cfg.context_length, width))
    nn.init.normal_(positional_embedding, std=0.01)
    transformer = build_transformer(cfg, quick_gelu)
    transformer.init_parameters()
    text_projection = nn.Parameter(torch.empty(width, embed_dim))
    nn.init.normal_(text_projection, std=width ** -0.5)
    return dict(token_embedding=token_embedding, positional_embedding=positional_embedding,
                transformer=transformer, ln_final=nn.LayerNorm(width), text_projection=text_projection)
