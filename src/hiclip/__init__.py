"""hiclip: HiCLIP (Geng et al., ICLR 2023) — CLIP with hierarchy-aware attention.

Entry points mirror open_clip: :func:`list_models`, :func:`create_model`,
:func:`create_model_and_transforms`, :func:`get_tokenizer`.
"""
from .config import HierarchyCfg, ModelCfg, TextCfg, VisionCfg
from .factory import create_model, create_model_and_transforms, get_tokenizer, list_models
from .model import HiCLIP
from .towers import ImageHierarchy, TextHierarchy, TokenStates

__version__ = "0.1.0"
__all__ = [
    "HiCLIP", "ModelCfg", "VisionCfg", "TextCfg", "HierarchyCfg", "ImageHierarchy", "TextHierarchy", "TokenStates",
    "create_model", "create_model_and_transforms", "get_tokenizer", "list_models",
]
