"""DeCLIP's training heads: SimSiam's projector and predictor, and the masked-language-model head.

They belong to a model whose config has ``objective: "declip"`` (``HiCLIP.declip``), are
saved with its weights, and are used only by training (``hiclip.train.declip``);
encoding and evaluation never touch them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import DeCLIPCfg


def _bn_layer(d_in: int, d_out: int, relu: bool) -> list[nn.Module]:
    return [nn.Linear(d_in, d_out), nn.BatchNorm1d(d_out)] + ([nn.ReLU(inplace=True)] if relu else [])


class Projector(nn.Sequential):
    """SimSiam's projection MLP: 3 linear layers, each followed by BatchNorm, ReLU between them
    (none after the last). (N, E) -> (N, dim)."""

    def __init__(self, embed_dim: int, dim: int):
        super().__init__(*_bn_layer(embed_dim, dim, True), *_bn_layer(dim, dim, True), *_bn_layer(dim, dim, False))


class Predictor(nn.Sequential):
    """SimSiam's prediction MLP, a bottleneck: linear + BatchNorm + ReLU, then a plain linear.
    (N, dim) -> (N, dim)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(*_bn_layer(dim, hidden, True), nn.Linear(hidden, dim))


class MLMHead(nn.Module):
    """Vocabulary logits of final text-token states (after ``ln_final``): (M, W) -> (M, V).

    ``linear``: one ``Linear(W, V)`` (DeCLIP). ``tied``: BERT's head, ``Linear(W, W)``, GELU,
    LayerNorm, then the token embedding ``(V, W)`` as decoder plus a per-token bias; it adds
    ``W^2 + 2W + V`` parameters instead of ``(W + 1) V``.
    """

    def __init__(self, kind: str, width: int, vocab_size: int):
        super().__init__()
        self.kind = kind
        if kind == "linear":
            self.decoder = nn.Linear(width, vocab_size)
        else:
            self.transform = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.LayerNorm(width))
            self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, states: torch.Tensor, token_embedding: torch.Tensor) -> torch.Tensor:
        """states (M, W), token_embedding (V, W) (used by the tied head) -> logits (M, V)."""
        if self.kind == "linear":
            return self.decoder(states)
        return F.linear(self.transform(states), token_embedding, self.bias)


class DeCLIPHeads(nn.Module):
    """``projector`` (E -> P), ``predictor`` (P -> P) and ``mlm`` (W -> V) of a DeCLIP model."""

    def __init__(self, cfg: DeCLIPCfg, embed_dim: int, text_width: int, vocab_size: int):
        super().__init__()
        proj = cfg.projector_dim or 2 * embed_dim
        self.projector = Projector(embed_dim, proj)
        self.predictor = Predictor(proj, cfg.predictor_dim or embed_dim)
        self.mlm = MLMHead(cfg.mlm_head, text_width, vocab_size)
