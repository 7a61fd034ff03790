"""Hierarchy-aware attention layer, residual block and transformer (DESIGN.md §1.5–1.6).

Parameter names follow open_clip's ``ResidualAttentionBlock`` (``ln_1``,
``attn.in_proj_weight``, ``attn.out_proj``, ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``) so
that a CLIP state dict loads unchanged; a hierarchy layer adds ``attn.link_q`` and
``attn.link_k`` (the neighbour projections ``Wq_g``, ``Wk_g``).

The topology a layer links over (text chain, image grid) is a :class:`Structure`; the
link state ``a^{l}`` flows from one hierarchy layer to the next through the transformer.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from . import hierarchy as hi
from .kernels import Prior, PriorTables, prior_attention

Links = tuple[torch.Tensor, ...]
"""Link affinities of one layer: ``(chain,)`` (B, N-1) or ``(h, v)`` (B, H, W-1), (B, H-1, W)."""


class LinkState(NamedTuple):
    """What flows from one hierarchy layer to the next: the cumulative links ``a^l`` and, for the
    ``distance`` rule, the shared per-edge scores ``−δ`` (shaped like ``links``) and the threshold ``τ_l``."""

    links: Links
    mean: Links | None = None
    tau: torch.Tensor | None = None


class Structure(Protocol):
    """Where tokens have neighbours: turns neighbour projections into links and a prior."""

    def links(self, q: torch.Tensor, k: torch.Tensor) -> Links:
        """(B, N, G) queries/keys of the full sequence -> this layer's ``â`` by the paper's rule."""

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> hi.EdgeScores:
        """(B, N, G) queries/keys of the full sequence -> per-edge scores ``(s_ij, s_ji)``."""

    def softmax(self, scores: hi.EdgeScores, none: torch.Tensor | None = None) -> Links:
        """Neighbour-softmax links from scores, with an optional "none" logit."""

    def restrict(self, links: Links) -> Links:
        """Links that are 0 on edges outside the structure (a chain's padding), unchanged elsewhere."""

    def edges(self) -> tuple[torch.Tensor, ...] | None:
        """Per family a bool mask of the edges inside the structure (None: every edge)."""

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

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> hi.EdgeScores:
        return hi.chain_scores(q, k)

    def softmax(self, scores: hi.EdgeScores, none: torch.Tensor | None = None) -> Links:
        return (hi.chain_softmax(scores, self.inside, none),)

    def restrict(self, links: Links) -> Links:
        (a,) = links
        return (a * (self.inside[:, :-1] & self.inside[:, 1:]),)

    def edges(self) -> tuple[torch.Tensor, ...] | None:
        return (self.inside[:, :-1] & self.inside[:, 1:],)

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

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> hi.EdgeScores:
        o = self.offset
        return hi.grid_scores(q[:, o:], k[:, o:], self.grid)

    def softmax(self, scores: hi.EdgeScores, none: torch.Tensor | None = None) -> Links:
        return hi.grid_softmax(scores, none)

    def restrict(self, links: Links) -> Links:
        return links

    def edges(self) -> tuple[torch.Tensor, ...] | None:
        return None

    def prior(self, links: Links) -> torch.Tensor:
        return hi.embed_prior(hi.grid_prior(*links), offset=self.offset)

    def log_prior(self, links: Links) -> torch.Tensor:
        return hi.embed_prior(hi.grid_log_prior(*links), offset=self.offset, fill=0.0)

    def tables(self, links: Links) -> PriorTables:
        return PriorTables("grid", hi.grid_costs(*links), (self.grid[1], self.offset))


LINK_BIAS_INIT = {"softmax_none": math.log(8.0), "sigmoid": math.log(0.1 / 0.9), "distance": math.log(0.1 / 0.9)}
BUDGET_SCALE_INIT = math.log(math.expm1(2.0))
"""With ``hierarchy.budget``: the first layer's logit starts the sharpness ``s = softplus(b)`` at 2."""
"""Start of each rule's per-layer logit ``b_l``: a layer with no preference links with about 0.1
(``softmax_none``: ``p = 1/10`` for each of a chain token's two neighbours; ``sigmoid``: ``σ(b) = 0.1``;
``distance``: the first threshold ``τ_0``, the later layers' increments set by :func:`distance_steps`)."""


def distance_steps(count: int, top: float = 0.9) -> float:
    """The ``distance`` rule's start for a later layer's logit: ``softplus(b) = Δτ`` with thresholds rising
    evenly from ``σ(τ_0) = 0.1`` to ``σ(τ_last) = top`` over ``count`` hierarchy layers (needs count > 1)."""
    step = (math.log(top / (1 - top)) - LINK_BIAS_INIT["distance"]) / (count - 1)
    return math.log(math.expm1(step))


class Attention(nn.Module):
    """Multi-head self-attention, optionally weighted by a constituent prior.

    A hierarchy layer (``link_dim`` given) holds its neighbour projections ``link_q``/``link_k`` and,
    for every rule but ``softmax``, a scalar logit ``link_bias`` (started at ``link_bias``, default
    :data:`LINK_BIAS_INIT`); with ``shares_scores`` (a later ``distance`` layer) it has no projections
    and its logit is the threshold's increment ``τ_l − τ_{l−1} = softplus(b_l)``. With
    ``budget_share`` (``hierarchy.budget``) a ``distance`` layer merges that share of each sample's
    edges: the first layer's logit is the sharpness ``softplus(b)``, later layers hold no parameter.

    ``C ⊙ softmax(QK^T/sqrt(d_h) + mask)`` (Tree Transformer; default) or, with
    ``renormalize``, ``softmax(QK^T/sqrt(d_h) + mask + log C)``. With no prior it is
    plain attention, numerically open_clip's ``nn.MultiheadAttention`` path.
    ``kernel`` (an attribute, from ``hierarchy.kernel``) picks how the prior is applied:
    ``auto`` | ``materialized`` | ``lean`` | ``flex`` (:mod:`hiclip.kernels`); all give the
    same result and gradients.
    """

    def __init__(self, width: int, heads: int, link_dim: int | None = None, renormalize: bool = False,
                 kernel: str = "auto", link_rule: str = "softmax", link_bias: float | None = None,
                 shares_scores: bool = False, budget_share: float | None = None):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        if link_rule not in hi.LINK_RULES:
            raise ValueError(f"hierarchy.link must be one of {hi.LINK_RULES}, got {link_rule!r}")
        self.heads, self.renormalize, self.kernel = heads, renormalize, kernel
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        self.hierarchical = link_dim is not None
        self.link_rule = link_rule
        # a later layer of the distance rule reuses the first one's scores: no projections of its own
        self.has_link_projections = self.hierarchical and not shares_scores
        if self.has_link_projections:
            self.link_q = nn.Linear(width, link_dim, bias=False)
            self.link_k = nn.Linear(width, link_dim, bias=False)
        if budget_share is not None and link_rule != "distance":
            raise ValueError(f"a link budget needs the distance rule, got {link_rule!r}")
        self.budget_share = budget_share
        if budget_share is not None:
            if not shares_scores:
                self.link_bias = nn.Parameter(torch.tensor(BUDGET_SCALE_INIT))
        elif self.hierarchical and link_rule != "softmax":
            self.link_bias = nn.Parameter(torch.tensor(LINK_BIAS_INIT[link_rule] if link_bias is None else link_bias))

    def neighbour_qk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, D) -> neighbour queries and keys, each (B, N, G)."""
        return self.link_q(x), self.link_k(x)

    def link_state(self, x: torch.Tensor, structure: Structure, state: LinkState | None) -> LinkState:
        """This layer's cumulative links ``a^l`` from x (B, N, D) and the previous layer's state, by
        ``link_rule`` (:data:`hiclip.hierarchy.LINK_RULES`)."""
        rule = self.link_rule
        if self.budget_share is not None:  # the distance rule at fixed shares of standardised scores
            if state is None or state.mean is None:
                scores = hi.edge_mean(structure.scores(*self.neighbour_qk(x)))
                z, scale = hi.standardize_edges(scores, structure.edges()), F.softplus(self.link_bias)
            else:
                z, scale = state.mean, state.tau
            return LinkState(structure.restrict(hi.budget_links(z, scale, self.budget_share)), z, scale)
        if rule == "distance":
            if state is None or state.mean is None:  # the first hierarchy layer: the shared scores
                mean, tau = hi.edge_mean(structure.scores(*self.neighbour_qk(x))), self.link_bias
            else:
                mean, tau = state.mean, state.tau + F.softplus(self.link_bias)
            return LinkState(structure.restrict(hi.sigmoid_links(mean, tau)), mean, tau)
        scores = structure.scores(*self.neighbour_qk(x))
        if rule == "sigmoid":
            new = structure.restrict(hi.sigmoid_links(hi.edge_mean(scores), self.link_bias))
        else:
            new = structure.softmax(scores, self.link_bias if rule == "softmax_none" else None)
        if state is not None:
            new = tuple(hi.constrain(p, n) for p, n in zip(state.links, new))
        return LinkState(new)

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
                 link_dim: int | None = None, renormalize: bool = False, kernel: str = "auto",
                 link_rule: str = "softmax", link_bias: float | None = None, shares_scores: bool = False,
                 budget_share: float | None = None):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, link_dim, renormalize, kernel, link_rule, link_bias, shares_scores,
                              budget_share)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, hidden)),
            ("gelu", QuickGELU() if quick_gelu else nn.GELU()),
            ("c_proj", nn.Linear(hidden, width)),
        ]))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                structure: Structure | None = None, state: LinkState | None = None
                ) -> tuple[torch.Tensor, LinkState | None]:
        """x (B, N, D) -> (x, link state with ``a^l``; unchanged when this layer has no hierarchy)."""
        h = self.ln_1(x)
        prior = None
        if self.attn.hierarchical and structure is not None:
            state = self.attn.link_state(h, structure, state)
            prior = Prior(structure, state.links)
        x = x + self.attn(h, mask, prior)
        return x + self.mlp(self.ln_2(x)), state


class Transformer(nn.Module):
    """A stack of residual blocks; ``hierarchy_layers`` selects those with hierarchy-aware attention."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float = 4.0,
                 quick_gelu: bool = False, hierarchy_layers: list[int] = (), link_dim: int | None = None,
                 renormalize: bool = False, kernel: str = "auto", link_rule: str = "softmax",
                 budget: list[float] | None = None):
        super().__init__()
        self.width, self.layers = width, layers
        self.hierarchy_layers = sorted(hierarchy_layers)  # from the config; blocks are built from it
        if budget is not None and len(budget) != len(self.hierarchy_layers):
            raise ValueError(f"hierarchy.budget {budget}: one share per hierarchy layer ({len(self.hierarchy_layers)})")
        share = dict(zip(self.hierarchy_layers, budget)) if budget is not None else {}
        link_dim = link_dim or width // heads
        first = self.hierarchy_layers[0] if self.hierarchy_layers else None
        later = link_rule == "distance" and len(self.hierarchy_layers) > 1
        self.resblocks = nn.ModuleList([
            ResidualBlock(width, heads, mlp_ratio, quick_gelu, link_dim if i in hierarchy_layers else None,
                          renormalize, kernel, link_rule,
                          distance_steps(len(self.hierarchy_layers)) if later and i != first else None,
                          shares_scores=link_rule == "distance" and i != first, budget_share=share.get(i))
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
                history.append(new.links)
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
            if block.attn.has_link_projections:
                nn.init.normal_(block.attn.link_q.weight, std=attn_std)
                nn.init.normal_(block.attn.link_k.weight, std=attn_std)
