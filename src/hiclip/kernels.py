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
  q, k, v, the output, the row log-sum-exp and ``log C`` (B, N, N) for backward (no
  per-head N×N) and recomputes the weights by chunks of heads in backward. Forward:
  torch's CPU flash kernel (renormalised) or one pass over the scores (multiplicative).
  ``log C`` is built from the links under activation checkpointing (only the links kept).
* ``flex`` (CUDA default): ``torch.nn.attention.flex_attention`` with ``log C`` computed
  inside the kernel from O(N) cost tables (:class:`PriorTables`, :mod:`hiclip.kernels_flex`);
  nothing N×N is ever stored. Falls back to ``lean`` (one log line) where flex cannot compile.
* ``auto``: ``flex`` on CUDA, ``lean`` elsewhere.
"""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from . import kernels_flex
from .config import KERNELS
from .hierarchy import PriorTables

CHUNK_BYTES = 16 << 20
"""Backward of :class:`LeanAttention` handles as many heads at once as fit this many bytes per (B, h, N, N) buffer."""


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
        """``log C`` as O(N) tables (a given C: its log as a dense table)."""
        if self._dense is not None:
            return PriorTables("dense", (self._log_given(),))
        return self.structure.tables(self.links)

    def log_dense(self, dtype: torch.dtype) -> torch.Tensor:
        """(B, N, N) log C in ``dtype``; from a structure under checkpointing (only the links are kept)."""
        if self._dense is not None:
            return self._log_given().to(dtype)
        return checkpoint(lambda *links: self.structure.log_prior(links).to(dtype), *self.links, use_reentrant=False)

    def _log_given(self) -> torch.Tensor:
        return torch.log(self._dense.clamp_min(torch.finfo(self._dense.dtype).tiny))


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


def _scores_by_head_chunk(q, k, mask):
    """Yields (heads slice, ``QKᵀ/√d + mask`` (B, c, N, N)) for chunks of c heads (:data:`CHUNK_BYTES`)."""
    B, H, N, d = q.shape
    step = max(1, min(H, CHUNK_BYTES // max(1, B * N * N * q.element_size())))
    for h0 in range(0, H, step):
        sl = slice(h0, h0 + step)
        s = (q[:, sl] * d ** -0.5) @ k[:, sl].transpose(-1, -2)
        if mask is not None:
            s += mask
        yield sl, s


def _multiplicative_forward(q, k, v, log_c, mask):
    """``(C ⊙ softmax(s)) V`` and ``LSE(s)`` (B, h, N), head chunk by head chunk: one exp per score.

    ``C ⊙ softmax(s) = (C ⊙ exp(s − m)) / Σ exp(s − m)`` with m the row maximum; equal to
    ``r_i softmax(s + log C)`` (docs/design.md §1.7), computed here in one pass over the scores.
    """
    c = log_c.exp().unsqueeze(1)
    out, lse = torch.empty_like(q), q.new_empty(q.shape[:-1])
    for sl, s in _scores_by_head_chunk(q, k, mask):
        m = s.amax(-1, keepdim=True)
        e = s.sub_(m).exp_()
        z = e.sum(-1, keepdim=True)
        out[:, sl] = (e.mul_(c) @ v[:, sl]) / z
        lse[:, sl] = (m + z.log()).squeeze(-1)
    return out, lse


class LeanAttention(torch.autograd.Function):
    """Prior-weighted attention keeping no per-head N×N tensor for backward.

    forward(q, k, v (B, h, N, d), log_c (B, N, N), mask (additive, broadcastable to
    (B, h, N, N), no gradient) or None, multiplicative) -> (B, h, N, d).
    Gradients flow to q, k, v and ``log_c`` (hence to the links).
    """

    @staticmethod
    def forward(ctx, q, k, v, log_c, mask, multiplicative):
        if multiplicative:
            out, lse = _multiplicative_forward(q, k, v, log_c, mask)
        else:
            out, lse = _attend(q, k, v, log_c.unsqueeze(1) if mask is None else log_c.unsqueeze(1) + mask)
        ctx.multiplicative = multiplicative
        ctx.save_for_backward(q, k, v, log_c, mask, out, lse)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, log_c, mask, out, lse = ctx.saved_tensors
        dout = dout.contiguous()
        scale = q.shape[-1] ** -0.5
        delta = (dout * out).sum(-1, keepdim=True)  # (B, h, N, 1)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dlog_c = torch.zeros_like(log_c)
        c = log_c.exp().unsqueeze(1) if ctx.multiplicative else None
        for sl, s in _scores_by_head_chunk(q, k, mask):
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
    """:class:`LeanAttention` with ``log C`` from the prior; half precision is computed in float32."""
    dtype = q.dtype
    work = torch.promote_types(dtype, torch.float32)
    q, k, v = (t.to(work).contiguous() for t in (q, k, v))  # (B, h, N, d) batches of matrices for bmm
    mask = None if mask is None else mask.to(work)
    log_c = prior.log_dense(work)
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

    ``mask``: additive, broadcastable to (B, h, N, N) (no gradient), or None. Under autocast the
    lean and flex kernels take q, k, v as they come (bf16/fp16 from the projections) and run
    their own arithmetic outside autocast.
    """
    kernel = resolve(kernel, q.device)
    if kernel == "materialized":
        return materialized_attention(q, k, v, mask, prior, multiplicative)
    with torch.autocast(q.device.type, enabled=False):
        if kernel == "flex":
            out = kernels_flex.flex_prior_attention(q, k, v, mask, prior.tables(), multiplicative)
            if out is not None:
                return out
        return lean_attention(q, k, v, mask, prior, multiplicative)
