"""Kernels of prior-weighted attention (docs/design.md §1.7).

Per head, with scores ``s = QKᵀ/√d + mask`` and the shared constituent prior C (B, N, N):

* multiplicative (default): ``C ⊙ softmax(s)``, then ``· V``;
* renormalised: ``softmax(s + log C)``, then ``· V``.

Since ``C_ij softmax(s)_ij = r_i softmax(s + log C)_ij`` with
``r_i = exp(LSE_i(s + log C) − LSE_i(s))``, both are one fused attention call with the
additive bias ``log C`` and its row log-sum-exp, plus (multiplicative) the log-sum-exp of the
plain scores. The kernels:

* ``materialized``: the reference; builds C and the (B, heads, N, N) weights, which
  autograd keeps for backward.
* ``lean`` (CPU default): :class:`LeanAttention`, a custom autograd function that keeps
  q, k, v, the output, per-row log-sum-exps and ``log C`` (B, N, N) for backward (no
  per-head N×N) and recomputes the weights head by head in backward. ``log C`` is
  built from O(N) cost tables under activation checkpointing.
* ``flex`` (CUDA default): ``torch.nn.attention.flex_attention`` with ``log C`` computed
  inside the kernel from the O(N) cost tables (:mod:`hiclip.kernels_flex`); nothing N×N
  is ever stored. Falls back to ``lean`` (one log line) where flex cannot compile.
* ``auto``: ``flex`` on CUDA, ``lean`` elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.checkpoint import checkpoint

from . import hierarchy as hi
from .config import KERNELS
CHUNK_BYTES = 16 << 20
"""Backward of :class:`LeanAttention` handles as many heads at once as fit this many bytes per (B, h, N, N) buffer."""


def _dense_log_prior_at(log_c: torch.Tensor, b, i, j) -> torch.Tensor:
    return log_c[b, i, j]


LOG_PRIOR_AT: dict[str, Callable[..., torch.Tensor]] = {
    "chain": hi.chain_log_prior_at, "grid": hi.grid_log_prior_at, "dense": _dense_log_prior_at}
"""``kind`` -> ``f(*tables, *geometry, b, i, j)`` giving ``log C`` at index tensors b, i, j."""


@dataclass(frozen=True)
class PriorTables:
    """``log C`` as a function of (batch, query, key) indices: O(N) tables (or a given dense log C).

    kind: a key of :data:`LOG_PRIOR_AT`; tables: its tensors (float64 for structures);
    geometry: its integer arguments (grid width and offset).
    """

    kind: str
    tables: tuple[torch.Tensor, ...]
    geometry: tuple[int, ...] = ()

    def at(self, b, i, j) -> torch.Tensor:
        return LOG_PRIOR_AT[self.kind](*self.tables, *self.geometry, b, i, j)

    def log_dense(self, n: int) -> torch.Tensor:
        """(B, N, N) ``log C`` over the full sequence of ``n`` tokens."""
        device = self.tables[0].device
        b = torch.arange(self.tables[0].shape[0], device=device)[:, None, None]
        idx = torch.arange(n, device=device)
        return self.at(b, idx[None, :, None], idx[None, None, :])


class Prior:
    """The constituent prior of one layer, evaluated the way a kernel needs it.

    Either a structure and its link state (C built on demand), or a given C (B, N, N).
    """

    def __init__(self, structure=None, links=None, dense: torch.Tensor | None = None):
        self.structure, self.links, self._dense = structure, links, dense

    def dense(self) -> torch.Tensor:
        """C (B, N, N), materialised (the reference computation)."""
        return self._dense if self._dense is not None else self.structure.prior(self.links)

    def tables(self) -> PriorTables:
        if self._dense is not None:
            return PriorTables("dense", (torch.log(self._dense.clamp_min(torch.finfo(self._dense.dtype).tiny)),))
        return self.structure.tables(self.links)

    def log_dense(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        """(B, N, N) log C in ``dtype``; from a structure under checkpointing (only links kept)."""
        if self._dense is not None:
            return self.tables().log_dense(n).to(dtype)
        return checkpoint(lambda *links: self.structure.tables(links).log_dense(n).to(dtype),
                          *self.links, use_reentrant=False)


def materialized_attention(q, k, v, mask, prior: Prior, multiplicative: bool) -> torch.Tensor:
    """The reference: (B, h, N, d) q, k, v -> (B, h, N, d), building the per-head weights."""
    c = prior.dense()
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
    if mask is not None:
        scores = scores + mask
    if multiplicative:
        weights = torch.softmax(scores, dim=-1) * c.unsqueeze(1)
    else:
        weights = torch.softmax(scores + torch.log(c.clamp_min(1e-30)).unsqueeze(1).to(scores.dtype), dim=-1)
    return weights.to(v.dtype) @ v


def _attend_math(q, k, v, bias):
    """softmax(QKᵀ/√d + bias) V and its row log-sum-exp (B, h, N), by matmuls (any device)."""
    s = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
    if bias is not None:
        s = s + bias
    lse = torch.logsumexp(s, dim=-1)
    return torch.exp(s - lse.unsqueeze(-1)) @ v, lse


def _attend(q, k, v, bias):
    """As :func:`_attend_math`; torch's fused flash kernel on CPU (it returns the log-sum-exp)."""
    if q.device.type != "cpu":
        return _attend_math(q, k, v, bias)
    bias = None if bias is None else bias.to(q.dtype)
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=bias)


def _heads_per_chunk(q: torch.Tensor) -> int:
    B, H, N, _ = q.shape
    return max(1, min(H, CHUNK_BYTES // max(1, B * N * N * q.element_size())))


class LeanAttention(torch.autograd.Function):
    """Prior-weighted attention keeping no per-head N×N tensor for backward.

    forward(q, k, v (B, h, N, d), log_c (B, N, N), mask (additive, broadcastable to
    (B, h, N, N), no gradient) or None, multiplicative) -> (B, h, N, d).
    Gradients flow to q, k, v and ``log_c`` (hence to the links).
    """

    @staticmethod
    def forward(ctx, q, k, v, log_c, mask, multiplicative):
        bias = log_c.unsqueeze(1) if mask is None else log_c.unsqueeze(1) + mask
        out, lse_c = _attend(q, k, v, bias)
        if multiplicative:
            lse = _attend(q, k, v, mask)[1]
            out = out * torch.exp(lse_c - lse).unsqueeze(-1)
        else:
            lse = lse_c
        ctx.multiplicative = multiplicative
        ctx.save_for_backward(q, k, v, log_c, mask, out, lse)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, log_c, mask, out, lse = ctx.saved_tensors
        scale = q.shape[-1] ** -0.5
        delta = (dout * out).sum(-1, keepdim=True)  # (B, h, N, 1)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dlog_c = torch.zeros_like(log_c)
        c = log_c.exp().unsqueeze(1) if ctx.multiplicative else None
        step = _heads_per_chunk(q)
        for h0 in range(0, q.shape[1], step):
            sl = slice(h0, h0 + step)
            s = (q[:, sl] * scale) @ k[:, sl].transpose(-1, -2)
            if mask is not None:
                s += mask
            dw = dout[:, sl] @ v[:, sl].transpose(-1, -2)
            if ctx.multiplicative:  # W = C ⊙ P, dS = W ⊙ dW − P δ, d log C = Σ_h W ⊙ dW
                p = s.sub_(lse[:, sl].unsqueeze(-1)).exp_()
                w = p * c
                dv[:, sl] = w.transpose(-1, -2) @ dout[:, sl]
                ds = dw.mul_(w)
                dlog_c += ds.sum(1)
                ds -= p.mul_(delta[:, sl])
            else:  # A = softmax(s + log C), dS = A ⊙ (dA − δ), d log C = Σ_h dS
                a = s.add_(log_c.unsqueeze(1)).sub_(lse[:, sl].unsqueeze(-1)).exp_()
                dv[:, sl] = a.transpose(-1, -2) @ dout[:, sl]
                ds = dw.sub_(delta[:, sl]).mul_(a)
                dlog_c += ds.sum(1)
            dq[:, sl] = (ds @ k[:, sl]) * scale
            dk[:, sl] = (ds.transpose(-1, -2) @ q[:, sl]) * scale
        return dq, dk, dv, dlog_c, None, None


def lean_attention(q, k, v, mask, prior: Prior, multiplicative: bool) -> torch.Tensor:
    """:class:`LeanAttention` with ``log C`` from the prior's tables; half precision is computed in float32."""
    dtype = q.dtype
    work = torch.promote_types(dtype, torch.float32)
    q, k, v = (t.to(work) for t in (q, k, v))
    mask = None if mask is None else mask.to(work)
    log_c = prior.log_dense(q.shape[-2], work)
    return LeanAttention.apply(q, k, v, log_c, mask, multiplicative).to(dtype)


def resolve(kernel: str, device: torch.device) -> str:
    """``auto`` -> ``flex`` on CUDA, ``lean`` elsewhere; ``flex`` off CUDA -> ``lean``."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown attention kernel {kernel!r}; expected one of {KERNELS}")
    if kernel in ("auto", "flex"):
        return "flex" if device.type == "cuda" else "lean"
    return kernel


def prior_attention(q, k, v, mask, prior: Prior, multiplicative: bool, kernel: str = "auto") -> torch.Tensor:
    """Prior-weighted attention of (B, h, N, d) q, k, v with the chosen kernel -> (B, h, N, d).

    ``mask``: additive, broadcastable to (B, h, N, N) (no gradient), or None.
    """
    kernel = resolve(kernel, q.device)
    if kernel == "flex":
        from . import kernels_flex  # imported on CUDA only
        out = kernels_flex.flex_prior_attention(q, k, v, mask, prior.tables(), multiplicative)
        if out is not None:
            return out
        kernel = "lean"
    if kernel == "lean":
        return lean_attention(q, k, v, mask, prior, multiplicative)
    return materialized_attention(q, k, v, mask, prior, multiplicative)
