"""hiclip: HiCLIP (Geng et al., ICLR 2023) — CLIP with hierarchy-aware attention.

Entry points mirror open_clip: :func:`list_models`, :func:`create_model`,
:func:`create_model_and_transforms`, :func:`get_tokenizer`. They are imported on first use
(PEP 562), so that ``import hiclip.cli`` and ``hiclip --help`` do not load torch.
"""
from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version as _version
from typing import Any

try:
    __version__ = _version("hiclip")
except PackageNotFoundError:  # a source tree on PYTHONPATH, not installed
    __version__ = "0+unknown"

_LAZY = {  # public name -> the module that defines it
    "HierarchyCfg": "config", "ModelCfg": "config", "TextCfg": "config", "VisionCfg": "config",
    "create_model": "factory", "create_model_and_transforms": "factory", "get_tokenizer": "factory",
    "list_models": "factory", "HiCLIP": "model",
    "ImageHierarchy": "towers", "TextHierarchy": "towers", "TokenStates": "towers",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'hiclip' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
