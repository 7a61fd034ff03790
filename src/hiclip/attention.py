"""Hierarchy-aware attention layer, residual block and transformer (DESIGN.md §1.5–1.6).

Parameter names follow open_clip's ``ResidualAttentionBlock`` (``ln_1``,
``attn.in_proj_weight``, ``attn.out_proj``, ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``) so
that a CLIP state dict loads unchanged; a hierarchy layer adds ``attn.link_q`` and
``attn.link_k`` (the neighbour projections ``Wq_g``, ``Wk_g``).

The topology a layer links over (text chain, image grid) is a :class:`Structure`; the
link state ``a^{l}`` flows from one hierarchy layer to the next through the transformer.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from . import hierarchy as hi
from .kernels import Prior, PriorTables, prior_attention

Links = tuple[torch.Tensor, ...]
"""Link affinities of one layer: ``(chain,)`` (B, N-1) or ``(h, v)`` (B, H, W-1), (B, H-1, W)."""


class Structure(Protocol):
    """Where tokens have neighbours: turns neighbour projections into links and a prior."""

    def links(self, q: torch.Tensor, k: torch.Tensor) -> Links:
        """(B, N, G) queries/keys of the full sequence -> this layer's ``â``."""

    def prior(self, links: Links) -> torch.Tensor:
        """Cumulative links ``a^l`` -> constituent prior C (B, N, N) over the full sequence."""

    def log_prior(self, links: Links) -> torch.Tensor:
        """Cumulative links ``a^l`` -> ``log C`` (B, N, N), finite, without the exp/log round trip."""

    def tables(self, links: Links) -> PriorTables:
        """Cumulative links ``a^l`` -> ``log C`` as O(N) tables (for kernels that never store C)."""


class ChainStructure:
    """Text: a chain over the tokens marked by ``inside`` (B, N): start, words and end of text
    (docs/design.md §1.6), or the words only; the others (padding) get ``C = 1``."""

    def __init__(self, inside: torch.Tensor):
        self.inside = inside

    def links(self, q: torch.Tensor, k: torch.Tensor) -> Links:
        return (hi.chain_links(q, k, self.inside),)

    def prior(self, links: Links) -> torch.Tensor:
        (a,) = links
        edge_ok = self.inside[:, :-1] & self.inside[:, 1:]
        c = hi.chain_prior(torch.where(edge_ok, a, torch.ones_like(a)))
        return hi.embed_prior(c, self.inside)

    def log_prior(self, links: Links) -> torch.Tensor:
        (a,) = links
        edge_ok = self.inside[:, :-1] & self.inside[:, 1:]
        return hi.embed_prior(hi.chain_log_prior(torch.where(edge_ok, a, torch.ones_like(a))), self.inside, fill=0.0)

    def tables(self, links: Links) -> PriorTables:
        (a,) = links
        edge_ok = self.inside[:, :-1] & self.inside[:, 1:]
        cost = hi.chain_costs(torch.where(edge_ok, a, torch.ones_like(a)))
        return PriorTables("chain", (cost, self.inside.to(cost.dtype)))


class GridStructure:
    """Image: an H×W patch grid after ``offset`` leading tokens (the CLS token)."""

    def __init__(self, grid: tuple[int, int], offset: int = 1):
        self.grid, self.offset = grid, offset

    def links(self, q: torch.Tensor, k: torch.Tensor) -> Links:
        o = self.offset
        return hi.grid_links(q[:, o:], k[:, o:], self.grid)

    def prior(self, links: Links) -> torch.Tensor:
        return hi.embed_prior(hi.grid_prior(*links), offset=self.offset)

    def log_prior(self, links: Links) -> torch.Tensor:
        return hi.embed_prior(hi.grid_log_prior(*links), offset=self.offset, fill=0.0)

    def tables(self, links: Links) -> PriorTables:
        return PriorTables("grid", hi.grid_costs(*links), (self.grid[1], self.offset))


class Attention(nn.Module):
    """Multi-head self-attention, optionally weighted by a constituent prior.

    ``C ⊙ softmax(QK^T/sqrt(d_h) + mask)`` (Tree Transformer; default) or, with
    ``renormalize``, ``softmax(QK^T/sqrt(d_h) + mask + log C)``. With no prior it is
    plain attention, numerically open_clip's ``nn.MultiheadAttention`` path.
    ``kernel`` (an attribute, from ``hierarchy.kernel``) picks how the prior is applied:
    ``auto`` | ``materialized`` | ``lean`` | ``flex`` (:mod:`hiclip.kernels`); all give the
    same result and gradients.
    """

    def __init__(self, width: int, heads: int, link_dim: int | None = None, renormalize: bool = False,
                 kernel: str = "auto"):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads, self.renormalize, self.kernel = heads, renormalize, kernel
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        self.hierarchical = link_dim is not None
        if self.hierarchical:
            self.link_q = nn.Linear(width, link_dim, bias=False)
            self.link_k = nn.Linear(width, link_dim, bias=False)

    def neighbour_qk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, D) -> neighbour queries and keys, each (B, N, G)."""
        return self.link_q(x), self.link_k(x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                prior: torch.Tensor | Prior | None = None) -> torch.Tensor:
        """x (B, N, D); mask additive, broadcastable to (B, heads, N, N); prior: C (B, N, N),
        or a :class:`Prior` (a structure and its links), which kernels evaluate without C."""
        B, N, D = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(B, N, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))
        if mask is not None:
            mask = mask.to(q.dtype)
        if prior is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            prior = Prior(dense=prior) if isinstance(prior, torch.Tensor) else prior
            out = prior_attention(q, k, v, mask, prior, not self.renormalize, self.kernel)
        return self.out_proj(out.transpose(1, 2).reshape(B, N, D))


class QuickGELU(nn.Module):
    """OpenAI CLIP's activation, ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualBlock(nn.Module):
    """Pre-norm block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, quick_gelu: bool = False,
                 link_dim: int | None = None, renormalize: bool = False, kernel: str = "auto"):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, link_dim, renormalize, kernel)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, hidden)),
            ("gelu", QuickGELU() if quick_gelu else nn.GELU()),
            ("c_proj", nn.Linear(hidden, width)),
        ]))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                structure: Structure | None = None, state: Links | None = None
                ) -> tuple[torch.Tensor, Links | None]:
        """x (B, N, D) -> (x, link state ``a^l``; unchanged when this layer has no hierarchy)."""
        h = self.ln_1(x)
        prior = None
        if self.attn.hierarchical and structure is not None:
            new = structure.links(*self.attn.neighbour_qk(h))
            state = new if state is None else tuple(hi.constrain(p, n) for p, n in zip(state, new))
            prior = Prior(structure, state)
        x = x + self.attn(h, mask, prior)
        return x + self.mlp(self.ln_2(x)), state


class Transformer(nn.Module):
    """A stack of residual blocks; ``hierarchy_layers`` selects those with hierarchy-aware attention."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float = 4.0,
                 quick_gelu: bool = False, hierarchy_layers: list[int] = (), link_dim: int | None = None,
                 renormalize: bool = False, kernel: str = "auto"):
        super().__init__()
        self.width, self.layers = width, layers
        self.hierarchy_layers = sorted(hierarchy_layers)  # from the config; blocks are built from it
        link_dim = link_dim or width // heads
        self.resblocks = nn.ModuleList([
            ResidualBlock(width, heads, mlp_ratio, quick_gelu,
                          link_dim if i in hierarchy_layers else None, renormalize, kernel)
            for i in range(layers)
        ])
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                structure: Structure | None = None) -> tuple[torch.Tensor, list[Links]]:
        """x (B, N, D) -> (x, per hierarchy layer the cumulative links ``a^l``)."""
        state, history = None, []
        for block in self.resblocks:
            if self.grad_checkpointing and self.training:
                x, new = torch.utils.checkpoint.checkpoint(block, x, mask, structure, state, use_reentrant=False)
            else:
                x, new = block(x, mask, structure, state)
            if block.attn.hierarchical and structure is not None:
                history.append(new)
            state = new
        return x, history

    def init_parameters(self) -> None:
        """open_clip's text-tower initialisation, applied to every block."""
        proj_std = self.width ** -0.5 * (2 * self.layers) ** -0.5
        attn_std = self.width ** -0.5
        fc_std = (2 * self.width) ** -0.5
        for block in self.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.zeros_(block.attn.out_proj.bias)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
            if block.attn.hierarchical:
                nn.init.normal_(block.attn.link_q.weight, std=attn_std)
                nn.init.normal_(block.attn.link_k.weight, std=attn_std)
