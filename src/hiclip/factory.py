"""open_clip-shaped factory: ``list_models``, ``create_model``, ``create_model_and_transforms``,
``get_tokenizer``, and loading of local CLIP / HiCLIP weights (nothing is ever downloaded).

A model name ``local-dir:PATH`` (as in open_clip) names a folder written by ``hiclip export --dir``
(:mod:`hiclip.export`): ``config.json`` (the model config under ``"cfg"``), ``model.safetensors``
and a model card ``README.md``, the layout of huggingface_hub's ``save_pretrained``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transform import image_transform
from PIL import Image
from torchvision.transforms.functional import to_pil_image

from . import checkpoint
from .config import ModelCfg, list_configs, load_config
from .model import HiCLIP

log = logging.getLogger(__name__)

HIERARCHY_KEYS = (".attn.link_q.", ".attn.link_k.", ".attn.link_bias")
"""Substrings of parameter names that belong to hierarchy-aware attention."""
TRAINING_HEADS = "declip."
"""Prefix of the DeCLIP objective's training heads: fresh when absent, dropped when not wanted."""
LOCAL_DIR = "local-dir:"
"""Prefix of a model name that is a folder written by ``hiclip export --dir`` (module docstring)."""
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"  # huggingface_hub's names


def read_local_dir(name: str) -> tuple[ModelCfg, Path, dict]:
    """``local-dir:PATH`` -> (its model config, its weights file, all of its config.json)."""
    folder = Path(name.removeprefix(LOCAL_DIR))
    config_file, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_file, weights):
        if not path.is_file():
            raise FileNotFoundError(f"{name}: no {path.name} in {folder} (write one with "
                                    "`hiclip export --checkpoint CKPT --dir PATH`)")
    try:
        meta = json.loads(config_file.read_text(encoding="utf-8"))
        return ModelCfg.from_dict(meta["cfg"]), weights, meta
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{config_file}: not a hiclip model config ({type(err).__name__}: {err})") from None


def list_models() -> list[str]:
    """Names of the built-in model configs."""
    return list_configs()


def create_model(name: str, pretrained: str | Path | None = None, device: str | torch.device = "cpu",
                 config: ModelCfg | None = None) -> HiCLIP:
    """Build model ``name`` (or from ``config``) and optionally load a local weights file.

    ``pretrained``: a ``torch.save``'d open_clip / OpenAI CLIP state dict, a checkpoint
    written by ``hiclip train``, or a ``.safetensors`` file; every file is read with
    ``weights_only=True`` (a file that could run code is refused, see :mod:`hiclip.checkpoint`). For a HiCLIP
    model loaded from CLIP weights the hierarchy parameters keep their fresh
    initialisation (listed in a log line); any other missing or unexpected key is an error.
    ``name`` ``local-dir:PATH``: the folder's config and weights (module docstring).
    """
    if name.startswith(LOCAL_DIR):
        cfg, weights, _ = read_local_dir(name)
        config, pretrained = config or cfg, pretrained or weights
    cfg = config or load_config(name)
    model = HiCLIP(cfg)
    if pretrained is not None:
        load_weights(model, pretrained, expected_name=None if config else name)
    return model.to(device)


def create_model_and_transforms(name: str, pretrained: str | Path | None = None,
                                device: str | torch.device = "cpu", config: ModelCfg | None = None
                                ) -> tuple[HiCLIP, Callable, Callable]:
    """-> ``(model, train_transform, eval_transform)``; transforms are open_clip's (PIL -> (3, S, S))."""
    model = create_model(name, pretrained, device, config)
    size = model.cfg.vision_cfg.image_size
    return model, image_transform(size, is_train=True), image_transform(size, is_train=False)


def unnormalise(images: torch.Tensor) -> "Image.Image":
    """A (3, S, S) tensor from the eval transform -> the PIL image the model saw."""
    mean = torch.tensor(OPENAI_DATASET_MEAN)[:, None, None]
    std = torch.tensor(OPENAI_DATASET_STD)[:, None, None]
    return to_pil_image((images * std + mean).clamp(0, 1))


def get_tokenizer(name: str | None = None, context_length: int | None = None) -> SimpleTokenizer:
    """CLIP's BPE tokenizer (vocabulary from the open-clip-torch wheel).

    Callable: ``tokenizer(list_of_str) -> LongTensor (B, context_length)``. Captions
    longer than the context are truncated, keeping the end-of-text token last.
    """
    if context_length is None and name and name.startswith(LOCAL_DIR):
        context_length = read_local_dir(name)[0].text_cfg.context_length
    if context_length is None:
        context_length = load_config(name).text_cfg.context_length if name else 77
    return SimpleTokenizer(context_length=context_length)


def load_weights(model: HiCLIP, path: str | Path, expected_name: str | None = None) -> list[str]:
    """Load a state dict file into ``model``; returns the newly initialised hierarchy keys.

    ``expected_name``: when the file is a ``hiclip train`` checkpoint naming its model,
    a different name is an error.
    """
    sd, info = checkpoint.read_weights(path)
    trained_as = info.get("model")
    if expected_name and isinstance(trained_as, str) and trained_as != expected_name:
        raise ValueError(f"{path} is a checkpoint of model {trained_as!r}, not {expected_name!r}; "
                         f"use --model {trained_as}")
    own = model.state_dict()
    dropped = [k for k in sd if k.startswith(TRAINING_HEADS) and k not in own]
    heads = [k for k in own if k.startswith(TRAINING_HEADS) and k not in sd]
    sd = {k: v for k, v in sd.items() if k not in dropped}
    missing = [k for k in own if k not in sd and k not in heads]
    fresh = [k for k in missing if any(s in k for s in HIERARCHY_KEYS)]
    missing = [k for k in missing if k not in fresh]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k}: expected {tuple(own[k].shape)}, got {tuple(sd[k].shape)}"
             for k in sd if k in own and own[k].shape != sd[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(_mismatch_message(path, missing, unexpected, wrong))
    model.load_state_dict(sd, strict=False)
    if fresh:
        log.info("%s: %d hierarchy parameters newly initialised (not in the file): %s",
                 Path(path).name, len(fresh), ", ".join(fresh))
    if heads or dropped:
        log.info("%s: DeCLIP training heads: %d tensors newly initialised, %d in the file not used",
                 Path(path).name, len(heads), len(dropped))
    return fresh


def _mismatch_message(path: str | Path, missing: list[str], unexpected: list[str], wrong: list[str]) -> str:
    def few(keys: list[str]) -> str:
        return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")
    parts = [f"{path} does not match this model's architecture:"]
    if missing:
        parts.append(f"missing keys: {few(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {few(unexpected)}")
    if wrong:
        parts.append(f"shape mismatches: {few(wrong)}")
    return "\n  ".join(parts)


def resolve_model(model: str, pretrained: str | Path | None = None) -> tuple[str, str | Path | None]:
    """Accept a model name, or a checkpoint file written by ``hiclip train`` in place of it.

    -> ``(model name or config path, weights file or None)``; a ``local-dir:`` name is kept.
    """
    if model.startswith(LOCAL_DIR):
        return model, pretrained
    path = Path(model)
    if path.suffix in (".pt", ".pth", ".bin", ".safetensors") or (path.is_file() and path.suffix != ".json"):
        name = checkpoint.read_info(path).get("model")
        if not isinstance(name, str):
            raise ValueError(f"{path} does not name its model (a bare state dict): "
                             "pass --model NAME --pretrained FILE instead")
        return name, path
    return model, pretrained


def load_for_inference(model: str, pretrained: str | Path | None = None, device: str = "cpu"
                       ) -> tuple[HiCLIP, Callable, SimpleTokenizer]:
    """-> ``(model in eval mode, eval transform, tokenizer)`` from a name (+ weights) or a checkpoint."""
    name, weights = resolve_model(model, pretrained)
    net, _, transform = create_model_and_transforms(name, weights, device=device)
    return net.eval(), transform, get_tokenizer(name)
