"""The fused GPU kernel of prior-weighted attention: ``flex_attention`` with ``log C`` in the kernel.

Used only when a CUDA tensor asks for the ``flex`` kernel (docs/design.md §1.7); torch's flex
attention itself is imported on first use. The
score modification adds ``mask + log C(b, i, j)``, with ``log C`` evaluated from the O(N)
cost tables of :class:`hiclip.hierarchy.PriorTables` (text: ``−|L_i − L_j|``; grid: minus the
cheaper L-shaped path), so nothing N×N is stored, forward or backward. Multiplicative form:
``out = exp(LSE(s + log C) − LSE(s)) · flex(s + log C)``, a second call giving ``LSE(s)``.
Gradients reach the tables (hence the links) through flex's captured-buffer gradients.

:func:`flex_prior_attention` compiles once per shape and dtype (``torch.compile``'s cache,
``dynamic=False``; beyond torch's recompile limit, 8 variants, new shapes run unfused); the
first call with gradients for a shape also runs a backward on copies, so that forward and
backward compile there. If compiling fails it logs one line and returns None, and the caller
uses the lean kernel.
"""
from __future__ import annotations

import logging

import torch

from .hierarchy import LOG_PRIOR_AT, PriorTables

log = logging.getLogger(__name__)

_compiled = None
_failed: str | None = None
_flex = _aux_request = None  # torch.nn.attention.flex_attention's, imported on first use


def _mask_at(mask: torch.Tensor | None):
    """Additive mask broadcastable to (B, h, N, N), heads broadcast -> ``f(b, i, j)`` (or None)."""
    if mask is None:
        return None
    m = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))
    if m.shape[1] != 1:
        raise ValueError("the flex kernel takes masks shared by all heads")
    m = m[:, 0]

    def at(b, i, j):
        return m[b if m.shape[0] > 1 else 0, i if m.shape[1] > 1 else 0, j if m.shape[2] > 1 else 0]
    return at


def attention_with_tables(attend, q, k, v, mask, kind: str, tables: tuple, geometry: tuple,
                          multiplicative: bool) -> torch.Tensor:
    """The flex path's arithmetic, with ``attend(q, k, v, score_mod) -> (out, lse)`` a flex call.

    Kept apart from the compiled entry point so that tests can run it on CPU with a dense
    ``attend`` that evaluates ``score_mod`` over broadcast index grids.
    """
    prior_at, mask_at = LOG_PRIOR_AT[kind], _mask_at(mask)

    def plain(score, b, h, i, j):
        return score if mask_at is None else score + mask_at(b, i, j)

    def with_prior(score, b, h, i, j):
        return plain(score, b, h, i, j) + prior_at(*tables, *geometry, b, i, j)

    out, lse_c = attend(q, k, v, with_prior)
    if not multiplicative:
        return out
    lse = attend(q, k, v, plain)[1]
    return (out * torch.exp(lse_c - lse).unsqueeze(-1)).to(q.dtype)


def _flex_attend(q, k, v, score_mod):
    out, aux = _flex(q, k, v, score_mod=score_mod, return_aux=_aux_request(lse=True))
    return out, aux.lse


def _entry(q, k, v, mask, kind, tables, geometry, multiplicative):
    return attention_with_tables(_flex_attend, q, k, v, mask, kind, tables, geometry, multiplicative)


def _probe(args: tuple) -> None:
    """Forward and backward once on detached copies of ``args``: compiles the backward now, inside
    the caller's ``try``, so that a backward that cannot compile falls back instead of failing later."""
    def copy(a):
        return a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a
    copies = [tuple(map(copy, a)) if isinstance(a, tuple) else copy(a) for a in args]
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):  # not an enclosing checkpoint's
        _compiled(*copies).float().sum().backward()


def _signature(args: tuple) -> tuple:
    return tuple((tuple(a.shape), a.stride(), a.dtype, a.requires_grad) if isinstance(a, torch.Tensor)
                 else _signature(a) if isinstance(a, tuple) else a for a in args)


_probed: set = set()


def flex_prior_attention(q, k, v, mask, prior: PriorTables, multiplicative: bool) -> torch.Tensor | None:
    """(B, h, N, d) q, k, v -> (B, h, N, d) through compiled flex attention; None if unavailable."""
    global _compiled, _failed, _flex, _aux_request
    if _failed is not None:
        return None
    work = torch.promote_types(q.dtype, torch.float32)
    args = (q, k, v, mask, prior.kind, tuple(t.to(work) for t in prior.tables), prior.geometry, multiplicative)
    try:
        if _compiled is None:
            # deferred: flex_attention pulls in torch's compiler stack, and may be missing or broken
            from torch.nn.attention.flex_attention import AuxRequest, flex_attention
            _flex, _aux_request = flex_attention, AuxRequest
            _compiled = torch.compile(_entry, dynamic=False, fullgraph=True)
        key = _signature(args)
        grads = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, *args[5]))
        if grads and key not in _probed:
            _probe(args)
            _probed.add(key)
        return _compiled(*args)
    except Exception as err:  # noqa: BLE001 - any compile/backend failure means: use the lean kernel
        _failed = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        log.warning("flex attention unavailable (%s); using the lean attention kernel", _failed)
        return None
