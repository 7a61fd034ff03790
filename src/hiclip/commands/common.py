"""What several commands share: the device (``auto`` resolved once, by the training code's helper) and
the model loaded for inference, with one warning line when its weights are random."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from .. import factory
from ..train.distributed import resolve_device
from .options import ModelOptions


def device(name: str) -> str:
    """``auto`` -> ``cuda:0`` when CUDA is available, else ``cpu``; other names are checked as they are."""
    return str(resolve_device(name))


def warn_if_random(command: str, model: str | None, pretrained: str | Path | None) -> None:
    """One line on stderr when ``model`` is a bare config name or JSON (no checkpoint, no weights file)."""
    if model is None:
        return
    _, weights = factory.resolve_model(model, pretrained)
    if weights is None:
        print(f"hiclip {command}: warning: {model} has random weights (no checkpoint given); pass a checkpoint "
              "as --model, or --pretrained FILE, for a trained model", file=sys.stderr)


def load_model(command: str, opts: ModelOptions) -> tuple[factory.HiCLIP, Callable, Callable]:
    """-> (model in eval mode, eval transform, tokenizer) for ``opts``, warning when the weights are random."""
    warn_if_random(command, opts.model, opts.pretrained)
    return factory.load_for_inference(opts.model, opts.pretrained, device(opts.device))
