"""Loading a fine-tuned checkpoint and evaluating it on a split (``hiclip finetune-eval``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from .. import factory
from ..checkpoint import TaskHead, read_info
from ..train.distributed import resolve_device
from .data import make_loader
from .evaluate import evaluate, write_results
from .model import HeadCfg, VLModel
from .tasks import load_task


def load_finetuned(path: str | Path, device: str | torch.device = "cpu"
                   ) -> tuple[VLModel, Callable, Callable, TaskHead, str]:
    """-> (model in eval mode, eval transform, tokenizer, the checkpoint's :class:`TaskHead`, its model name)."""
    info = read_info(path)
    if info.get("vl") is None:
        raise ValueError(f"{path} is not a checkpoint of `hiclip finetune` (it has no task head)")
    vl, name = TaskHead.from_dict(info["vl"], path), info["model"]
    encoder, _, transform = factory.create_model_and_transforms(name, path, device)
    model = VLModel(encoder, HeadCfg(**vl.head), vl.freeze_encoders).to(device)
    model.head.load_state_dict(vl.head_state_dict)
    return model.eval(), transform, factory.get_tokenizer(name), vl, name


def evaluate_checkpoint(checkpoint: str | Path, split: str = "val", task: str | None = None,
                        samples: int | None = None, batch_size: int = 64, workers: int = 0,
                        device: str = "auto", output_dir: str | Path | None = None,
                        predictions: bool = False) -> dict[str, Any]:
    """Evaluate a ``hiclip finetune`` checkpoint on ``split`` of its task (or of ``task``, a spec
    with the same classes, e.g. the same dataset in another folder); ``samples``: the first N
    examples only. Writes the results JSON (and predictions) to ``output_dir`` (default: the
    run directory of the checkpoint). Returns the metrics with ``results``: the JSON's path."""
    dev = resolve_device(device)
    model, transform, tokenizer, head, name = load_finetuned(checkpoint, dev)
    size = model.encoder.cfg.vision_cfg.image_size
    data = load_task(task or head.task, split, size, samples if split != "train" else None, answers=head.answers)
    loader = make_loader(data, transform, tokenizer, batch_size, workers=workers, train=False, limit=samples)
    metrics, preds = evaluate(model, data, loader, dev)
    out = Path(output_dir) if output_dir else Path(checkpoint).resolve().parent.parent
    path = write_results(metrics, preds if predictions else None, out, data, name, str(checkpoint))
    return {**metrics, "results": str(path)}
