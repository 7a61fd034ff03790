"""Caption trees from per-layer chain link affinities (DESIGN.md §2, top-down).

Token links `links` (L, N-1): `links[l, k]` is the cumulative affinity at layer l
(0 = lowest) between content tokens k and k+1 of one caption. Word pieces are
grouped into words first (:func:`word_spans`); the link between two words is the
link between the last piece of the first and the first piece of the second, and
links inside a word are dropped, so a word is never split.

Induction over word links `w` (L, M-1), threshold τ. A span of >= 2 words is
*merged at layer l* when all its links at l are >= τ. ``_build(span, top)``:

1. A single word is a leaf (``layer=None``).
2. Look for the highest layer l <= top at which the span is not merged. If there is
   none (merged at every layer up to ``top``), the span is a flat constituent whose
   children are its words.
3. Otherwise split the span at its weakest link at layer l (ties: the leftmost) into
   two parts and build each with ``top = l``.

The root is built with ``top = L-1``: split at the top layer unless merged there, else
at the highest layer where it is not merged. Trees are binary except for flat constituents. A node's ``layer`` is the
layer at which it formed: the lowest layer l such that it is merged at every layer
>= l; ``None`` for single words and for spans not merged even at the top layer.

Two more read-outs (:class:`Readout`, docs/design.md §2), chosen on the validation split:

* ``tree_transformer`` (Tree Transformer's parser): a span starts at a layer (the root at
  the top); while its weakest link there exceeds ``down`` and the layer is above
  ``min_layer`` it goes one layer down; still merged above ``down`` at ``min_layer``, it
  is emitted flat. Otherwise it splits at its weakest link at that layer; a part whose
  weakest link there exceeds ``side`` continues one layer lower, the other part at the same layer.
* ``aggregate``: word distance ``d_k = Σ_l (1 - a^l_k)`` over all layers; a span splits at
  its largest distance (ties: the leftmost), and is flat when its largest distance is
  below ``flat`` (0: always binary).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import nltk
import numpy as np
from open_clip.tokenizer import SimpleTokenizer

END_OF_WORD = "</w>"
SPECIAL_PIECES = ("<start_of_text>", "<end_of_text>")


def to_numpy(x: Any) -> np.ndarray:
    """A torch tensor (any device, with or without grad) or array-like as a float64 array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    return SimpleTokenizer()


def caption_pieces(text: str, context_length: int = 77) -> tuple[list[str], bool]:
    """The content word pieces of a caption as the text tower sees them, and whether
    they were truncated (the tokenizer keeps ``context_length - 2`` pieces)."""
    tok = _tokenizer()
    ids = tok.encode(text)
    keep = context_length - 2
    return [tok.decoder[i] for i in ids[:keep]], len(ids) > keep


def _as_pieces(tokens: Sequence[int] | Sequence[str], decoder: Mapping[int, str] | None) -> list[str]:
    if all(isinstance(t, str) for t in tokens):
        pieces = list(tokens)
    elif all(isinstance(t, (int, np.integer)) for t in tokens):
        table = decoder if decoder is not None else _tokenizer().decoder
        missing = [int(t) for t in tokens if int(t) not in table]
        if missing:
            raise ValueError(f"token ids {missing[:5]} are not in the tokenizer's vocabulary")
        pieces = [table[int(t)] for t in tokens]
    else:
        raise ValueError("expected a list of token ids (int) or of word pieces (str), got a mix")
    special = [p for p in pieces if p in SPECIAL_PIECES]
    if special:
        raise ValueError(f"expected content tokens only, got special tokens {special}")
    return pieces


def word_spans(
    tokens: Sequence[int] | Sequence[str], decoder: Mapping[int, str] | None = None
) -> list[tuple[int, int]]:
    """Group word pieces into words: half-open piece spans ``[(start, end), ...]``.

    ``tokens``: N content token ids (decoded with ``decoder``, default open_clip's
    SimpleTokenizer) or N pieces. A piece ending in "</w>" ends a word; trailing pieces
    without one (a caption truncated mid-word) form a last word.
    """
    pieces = _as_pieces(tokens, decoder)
    spans, start = [], 0
    for i, piece in enumerate(pieces):
        if piece.endswith(END_OF_WORD) or i == len(pieces) - 1:
            spans.append((start, i + 1))
            start = i + 1
    return spans


def _piece_text(pieces: Sequence[str]) -> str:
    text = "".join(p.removesuffix(END_OF_WORD) for p in pieces)
    if text.isascii():  # printable ASCII bytes map to themselves in CLIP's byte encoding
        return text
    byte_decoder = _tokenizer().byte_decoder
    if not all(c in byte_decoder for c in text):
        return text
    return bytearray(byte_decoder[c] for c in text).decode("utf-8", errors="replace")


def word_links(links: Any, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Token links (L, N-1) -> word links (L, M-1) for M word ``spans`` over N pieces."""
    arr = to_numpy(links)
    return arr[:, [end - 1 for _, end in spans[:-1]]]


@dataclass
class Tree:
    """A constituent over words ``span = (start, end)`` (half-open) of a caption.

    ``words`` are the words of this span; ``layer`` is the layer at which it formed
    (see module doc; ``None`` for single words and never-merged spans);
    ``truncated`` marks a root whose caption was cut by the context length.
    """

    span: tuple[int, int]
    children: list[Tree]
    layer: int | None
    words: list[str]
    truncated: bool = False

    def __str__(self) -> str:
        text = self.words[0] if not self.children else "(" + " ".join(str(c) for c in self.children) + ")"
        return text + " …" if self.truncated else text

    def spans(self) -> set[tuple[int, int]]:
        """All constituent spans, single words and the whole span included."""
        out = {self.span}
        for child in self.children:
            out |= child.spans()
        return out

    def to_nltk(self) -> nltk.Tree:
        """An ``nltk.Tree`` whose leaves are the words; internal labels "L<layer>" or "X"."""
        label = "X" if self.layer is None else f"L{self.layer}"
        if not self.children:
            return nltk.Tree(label, [self.words[0]])
        return nltk.Tree(label, [c.words[0] if not c.children else c.to_nltk() for c in self.children])


def _check_links(arr: np.ndarray, n_tokens: int) -> None:
    if arr.ndim != 2 or arr.shape[1] != max(n_tokens - 1, 0) or arr.shape[0] < 1:
        want = max(n_tokens - 1, 0)
        raise ValueError(f"expected links of shape (L>=1, {want}) for {n_tokens} tokens, got {arr.shape}")
    if not np.all(np.isfinite(arr)) or arr.min(initial=0.0) < 0 or arr.max(initial=0.0) > 1:
        raise ValueError("expected link affinities in [0, 1] (finite)")


METHODS = ("topdown", "tree_transformer", "aggregate")


@dataclass(frozen=True)
class Readout:
    """How a tree is read from the links (module doc): ``method`` and its thresholds.

    ``threshold``: merge threshold of ``topdown`` (and of every node's ``layer``);
    ``down``, ``side``, ``min_layer``: ``tree_transformer``; ``flat``: ``aggregate``.
    """

    method: str = "topdown"
    threshold: float = 0.5
    down: float = 0.8
    side: float = 0.7
    min_layer: int = 0
    flat: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"read-out method must be one of {METHODS}, got {self.method!r}")

    def label(self) -> str:
        """A short name with the parameters that matter for ``method``."""
        if self.method == "topdown":
            return f"topdown(τ={self.threshold:g})"
        if self.method == "tree_transformer":
            return f"tree_transformer(down={self.down:g}, side={self.side:g}, min_layer={self.min_layer})"
        return f"aggregate(flat={self.flat:g})"


def _leaf(words: list[str], i: int) -> Tree:
    return Tree((i, i + 1), [], None, [words[i]])


def _flat(words: list[str], start: int, end: int, layer: int | None) -> Tree:
    return Tree((start, end), [_leaf(words, i) for i in range(start, end)], layer, words[start:end])


def _formed(mins: np.ndarray, threshold: float) -> tuple[np.ndarray, int | None]:
    """Layers where a span with weakest links ``mins`` (L,) is unmerged, and the layer it formed at."""
    unmerged = np.flatnonzero(mins < threshold)
    formed = 0 if unmerged.size == 0 else int(unmerged[-1]) + 1
    return unmerged, (formed if formed < len(mins) else None)


def _build(w: np.ndarray, words: list[str], start: int, end: int, top: int, threshold: float) -> Tree:
    if end - start == 1:
        return _leaf(words, start)
    unmerged, layer = _formed(w[:, start : end - 1].min(axis=1), threshold)
    below = unmerged[unmerged <= top]
    if below.size == 0:
        return _flat(words, start, end, layer)
    split_layer = int(below[-1])
    cut = start + int(np.argmin(w[split_layer, start : end - 1])) + 1
    kids = [_build(w, words, start, cut, split_layer, threshold), _build(w, words, cut, end, split_layer, threshold)]
    return Tree((start, end), kids, layer, words[start:end])


def _build_tt(w: np.ndarray, words: list[str], start: int, end: int, level: int, r: Readout) -> Tree:
    """Tree Transformer's parser from ``level`` down (see module doc)."""
    if end - start == 1:
        return _leaf(words, start)
    links = w[:, start : end - 1]
    _, layer = _formed(links.min(axis=1), r.threshold)
    while level > r.min_layer and links[level].min() > r.down:
        level -= 1
    if links[level].min() > r.down:
        return _flat(words, start, end, layer)
    cut = start + int(np.argmin(links[level])) + 1
    kids = []
    for s, e in ((start, cut), (cut, end)):
        lower = e - s > 1 and level > r.min_layer and w[level, s : e - 1].min() > r.side
        kids.append(_build_tt(w, words, s, e, level - 1 if lower else level, r))
    return Tree((start, end), kids, layer, words[start:end])


def _build_agg(w: np.ndarray, dist: np.ndarray, words: list[str], start: int, end: int, r: Readout) -> Tree:
    """Split at the largest summed distance (see module doc)."""
    if end - start == 1:
        return _leaf(words, start)
    _, layer = _formed(w[:, start : end - 1].min(axis=1), r.threshold)
    d = dist[start : end - 1]
    if d.max() < r.flat:
        return _flat(words, start, end, layer)
    cut = start + int(np.argmax(d)) + 1
    kids = [_build_agg(w, dist, words, start, cut, r), _build_agg(w, dist, words, cut, end, r)]
    return Tree((start, end), kids, layer, words[start:end])


def build_tree(w: np.ndarray, words: list[str], readout: Readout) -> Tree:
    """The tree over ``words`` from word links ``w`` (L, M-1) by ``readout``."""
    top = w.shape[0] - 1
    if readout.method == "topdown":
        return _build(w, words, 0, len(words), top, readout.threshold)
    if readout.method == "tree_transformer":
        return _build_tt(w, words, 0, len(words), top, readout)
    return _build_agg(w, (1.0 - w).sum(axis=0), words, 0, len(words), readout)


@dataclass
class CaptionWords:
    """One caption ready for any read-out: its ``words``, word links ``links`` (L, M-1) and
    whether it was ``truncated`` (cut by the context length, or its last piece ends no word)."""

    words: list[str]
    links: np.ndarray
    truncated: bool


def caption_words(
    links: Any,
    tokens: Sequence[int] | Sequence[str],
    truncated: bool = False,
    decoder: Mapping[int, str] | None = None,
) -> CaptionWords:
    """Token links (L, N-1) and N content tokens (ids or pieces) -> :class:`CaptionWords`
    (the part of :func:`induce_tree` that no read-out changes: compute it once per caption)."""
    pieces = _as_pieces(tokens, decoder)
    if not pieces:
        raise ValueError("expected at least one content token, got none")
    arr = to_numpy(links)
    _check_links(arr, len(pieces))
    spans = word_spans(pieces)
    words = [_piece_text(pieces[s:e]) for s, e in spans]
    return CaptionWords(words, word_links(arr, spans), truncated or not pieces[-1].endswith(END_OF_WORD))


def tree_of(caption: CaptionWords, readout: Readout) -> Tree:
    """The tree of a prepared caption under ``readout`` (a ``min_layer`` above the top layer
    reads as the top layer)."""
    if readout.min_layer >= caption.links.shape[0]:
        readout = replace(readout, min_layer=caption.links.shape[0] - 1)
    tree = build_tree(caption.links, caption.words, readout)
    tree.truncated = caption.truncated
    return tree


def induce_tree(
    links: Any,
    tokens: Sequence[int] | Sequence[str],
    threshold: float = 0.5,
    truncated: bool = False,
    decoder: Mapping[int, str] | None = None,
    readout: Readout | None = None,
) -> Tree:
    """The tree of one caption from its token links (L, N-1) and N content tokens
    (ids or pieces). ``truncated`` is set on the root (also when the last piece does
    not end a word). ``readout`` (default: top-down at ``threshold``) picks the read-out."""
    readout = Readout(threshold=threshold) if readout is None else readout
    return tree_of(caption_words(links, tokens, truncated, decoder), readout)


def induce_trees(
    links: Any,
    tokens: Sequence[Sequence[int] | Sequence[str]],
    threshold: float = 0.5,
    truncated: Sequence[bool] | None = None,
    decoder: Mapping[int, str] | None = None,
    readout: Readout | None = None,
) -> list[Tree]:
    """Trees for a batch: ``links`` padded (B, L, Nmax-1) or a list of (L, N_b-1);
    caption b uses ``links[b][:, :N_b-1]`` with N_b = ``len(tokens[b])``."""
    if len(links) != len(tokens):
        raise ValueError(f"expected as many link tables as captions, got {len(links)} and {len(tokens)}")
    flags = truncated if truncated is not None else [False] * len(tokens)
    return [
        induce_tree(to_numpy(lk)[:, : max(len(tk) - 1, 0)], tk, threshold, fl, decoder, readout)
        for lk, tk, fl in zip(links, tokens, flags)
    ]
