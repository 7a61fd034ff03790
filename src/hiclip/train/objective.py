"""What ``train()`` needs from its objective: the model config, the module to differentiate
(and wrap in DDP), the training data views, the metric columns and the state to checkpoint.

The objective comes with the model config (``objective``: ``clip`` or ``declip``);
``hiclip train --objective`` overrides it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn

from ..config import ModelCfg, load_config
from ..data.augment import two_view_transform
from ..data.text_views import EDA_OPS, WORLD_EDA_OPS, TextViews
from .config import TrainConfig
from .declip import TERMS, DeCLIPLoss
from .distributed import DistInfo
from .step import Batch, StepOptions, clip_gradients, declip_gradients


def model_config(model: str, objective: str | None) -> ModelCfg:
    """The config of ``model`` with ``objective`` (None: the config's own)."""
    cfg = load_config(model)
    if objective is None or objective == cfg.objective:
        return cfg
    return dataclasses.replace(cfg, objective=objective, declip=None)  # declip: its defaults


class Objective:
    """The training objective of ``model`` (a HiCLIP built from ``model_config``).

    ``module``: what the step calls (DDP wraps it): the model itself for CLIP, a
    ``DeCLIPLoss`` around it for DeCLIP. ``backward``: the objective's own step (gradients of one
    optimizer step, :func:`~hiclip.train.step.clip_gradients` or ``declip_gradients``).
    ``terms``: extra metric columns.
    ``data_kind``: "world" gets caption-preserving views (see ``hiclip.data.augment``).
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, info: DistInfo, data_kind: str | None):
        if model.cfg.constituent_loss and cfg.accum_freq > 1:
            raise ValueError(f"--accum-freq {cfg.accum_freq} is not supported with constituent_loss (its spans are "
                             "scored against one micro-batch's images); use --accum-freq 1")
        self.declip = model.cfg.objective == "declip"
        if self.declip and cfg.accum_freq > 1:
            raise ValueError(f"--accum-freq {cfg.accum_freq} is not supported with the DeCLIP objective (its SimSiam "
                             "and masked-LM terms are per batch); use --accum-freq 1 with a larger --batch-size or "
                             "more ranks")
        self.module = (DeCLIPLoss(model, info, local_loss=cfg.local_loss, gather_with_grad=cfg.gather_with_grad)
                       if self.declip else model)
        self.terms = TERMS if self.declip else ()
        self._gradients = declip_gradients if self.declip else clip_gradients
        self.seed, self.world = cfg.seed, data_kind == "world"
        self.image_size, self.mlm_prob = model.cfg.vision_cfg.image_size, getattr(model.cfg.declip, "mlm_prob", 0)

    def backward(self, module: nn.Module, batches: list[Batch], opts: StepOptions, epoch: int
                 ) -> dict[str, torch.Tensor]:
        """Gradients of one optimizer step of ``module`` (``self.module``, maybe in DDP) on
        ``batches`` -> the detached loss terms, ``"loss"`` first."""
        return self._gradients(module, batches, opts, epoch)

    def train_transform(self, default: Callable) -> Callable:
        """PIL -> (3, S, S) for CLIP (``default``); -> (2, 3, S, S) views for DeCLIP."""
        return two_view_transform(self.image_size, world=self.world) if self.declip else default

    def train_tokenizer(self, tokenizer: Callable, epoch: int) -> Callable:
        """list[str] -> (B, ctx) for CLIP; -> (B, 3, ctx) text views of ``epoch`` for DeCLIP.
        On the world: no word swaps (they make its hard negatives) and no WordNet."""
        if not self.declip:
            return tokenizer
        return TextViews(tokenizer, self.seed, epoch, mlm_prob=self.mlm_prob,
                         ops=WORLD_EDA_OPS if self.world else EDA_OPS, wordnet=not self.world)

    def state_dict(self) -> dict[str, torch.Tensor] | None:
        """Tensors to checkpoint (the DeCLIP text queue); None for CLIP."""
        return self.module.objective_state() if self.declip else None

    def load_state_dict(self, state: dict[str, torch.Tensor] | None) -> None:
        if self.declip:
            if state is None:
                raise ValueError("the checkpoint has no DeCLIP objective state (text queue) to resume from")
            self.module.load_objective_state(state)
