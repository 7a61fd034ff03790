"""What evaluation and hierarchy induction need of a model and a tokenizer (docs/design.md §8).

:class:`hiclip.HiCLIP` satisfies all of them; any open_clip CLIP model (and the fakes in the
tests) satisfies :class:`ImageTextModel`, so ``hiclip.eval``'s functions take those too.
Whether a tower has hierarchy-aware attention is read from its config only
(``cfg.vision_cfg.has_hierarchy``, ``cfg.text_cfg.has_hierarchy``, ``cfg.has_hierarchy``).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

import torch

from .config import ModelCfg


@runtime_checkable
class ImageTextModel(Protocol):
    """CLIP's two encoders, all that ``hiclip.eval`` uses (besides ``nn.Module``'s ``to``, ``eval``
    and ``state_dict`` where it moves the model or caches features)."""

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, S, S) -> features (B, E)."""
        ...

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """token ids (B, N) -> features (B, E)."""
        ...


@runtime_checkable
class HierarchyModel(Protocol):
    """A model whose link read-outs ``hiclip.induce`` turns into trees and groups."""

    cfg: ModelCfg
    context_length: int

    @property
    def has_hierarchy(self) -> bool:
        ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
        ...

    def encode_image(self, images: torch.Tensor, normalize: bool = False, return_hierarchy: bool = False,
                     return_tokens: bool = False) -> Any:
        """images (B, 3, S, S) -> features (B, E) [, ImageHierarchy] [, TokenStates]."""
        ...

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False, return_hierarchy: bool = False,
                    return_tokens: bool = False) -> Any:
        """token ids (B, N) -> features (B, E) [, TextHierarchy] [, TokenStates]."""
        ...


@runtime_checkable
class Tokenizer(Protocol):
    """open_clip's ``SimpleTokenizer`` as induction uses it: batches of ids, one caption's BPE ids
    (without start / end), and the id -> piece table."""

    decoder: Mapping[int, str]

    def __call__(self, texts: str | list[str]) -> torch.Tensor:
        """-> (B, context_length) ids."""
        ...

    def encode(self, text: str) -> list[int]:
        ...
