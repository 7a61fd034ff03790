"""DeCLIP's objective (Li et al., ICLR 2022) on any hiclip model: ``DeCLIPLoss``.

Per step, with b pairs on this rank and B = world_size * b over all ranks (docs/design.md):

- multi-view: the CLIP loss of each (image view, text view) pair, 2 image views x (masked
  caption, EDA caption), averaged over the 4 pairs;
- nearest neighbour: each text view's nearest neighbour in a FIFO queue of earlier text
  embeddings (``TextQueue``) is an extra positive for both image views (image -> text
  cross-entropy over the B neighbours, averaged over the 4 pairs);
- SimSiam between the two image views (projector and predictor in ``model.declip``);
- masked language modelling on the masked caption's final token states.

``loss = w_clip * clip + w_nn * nn + w_simsiam * simsiam + w_mlm * mlm`` (``DeCLIPCfg``).
Batches come from the DeCLIP data views: images (b, 2, 3, S, S) from
``hiclip.data.augment``, tokens (b, 3, ctx) from ``hiclip.data.text_views``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data.text_views import EDA, IGNORE, MASKED, TARGETS
from .distributed import DistInfo, gather_features
from .loss import full, gathered_contrastive_loss, image_to_text_loss

TERMS = ("loss_clip", "loss_nn", "loss_simsiam", "loss_mlm")


class TextQueue:
    """A FIFO of ``size`` normalised text embeddings, each tagged with the epoch that made it.

    ``nearest`` looks only at entries of the current epoch: empty slots (epoch -1) never
    match, and neither does a caption's own copy from an earlier pass over the data.
    The state (``state_dict``) is plain tensors, saved in checkpoints for exact resume.
    """

    def __init__(self, size: int, dim: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.features = torch.zeros(size, dim, device=device, dtype=dtype)
        self.epochs = torch.full((size,), -1, dtype=torch.long, device=device)
        self.ptr = torch.zeros((), dtype=torch.long, device=device)

    @property
    def size(self) -> int:
        return self.features.shape[0]

    def valid(self, epoch: int) -> torch.Tensor:
        """(size,) bool: entries that may be matched in ``epoch``."""
        return self.epochs == epoch

    @torch.no_grad()
    def nearest(self, queries: torch.Tensor, epoch: int) -> torch.Tensor | None:
        """queries (n, E) normalised -> their nearest valid entries (n, E) by cosine; None when
        the queue holds no valid entry."""
        valid = self.valid(epoch)
        if not bool(valid.any()):
            return None
        sims = queries.to(self.features.dtype) @ self.features.T  # (n, size)
        sims.masked_fill_(~valid, -math.inf)
        return self.features[sims.argmax(dim=1)]

    @torch.no_grad()
    def push(self, features: torch.Tensor, epoch: int) -> None:
        """Append features (n, E), overwriting the oldest entries; with n > size only the last
        ``size`` are kept."""
        n = features.shape[0]
        start = int(self.ptr) + max(n - self.size, 0)
        index = (start + torch.arange(min(n, self.size), device=self.features.device)) % self.size
        self.features[index] = features[-self.size:].to(self.features.dtype)
        self.epochs[index] = epoch
        self.ptr.fill_((int(self.ptr) + n) % self.size)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"features": self.features.clone(), "epochs": self.epochs.clone(), "ptr": self.ptr.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state["features"].shape != self.features.shape:
            raise ValueError(f"text queue of shape {tuple(state['features'].shape)} in the checkpoint, "
                             f"expected {tuple(self.features.shape)} (declip.queue_size x embed_dim)")
        for name in ("features", "epochs", "ptr"):
            getattr(self, name).copy_(state[name])


def simsiam_loss(p1: torch.Tensor, z1: torch.Tensor, p2: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """SimSiam's symmetric negative cosine, ``-(cos(p1, sg z2) + cos(p2, sg z1)) / 2``, batch mean.
    p*, z*: (N, P). The targets z get no gradient (stop-gradient)."""
    return -0.5 * (F.cosine_similarity(p1, z2.detach(), dim=-1).mean()
                   + F.cosine_similarity(p2, z1.detach(), dim=-1).mean())


def mlm_loss(logits: torch.Tensor, targets: torch.Tensor, info: DistInfo = DistInfo()) -> torch.Tensor:
    """Cross-entropy of logits (M, V) at this rank's M masked positions, targets (M,).

    Normalised by the masked positions of *all* ranks, times world_size: the mean over
    ranks (DDP's gradient average) is then the mean over every masked position. 0 when
    no rank masked anything.
    """
    total = logits.new_tensor([float(targets.numel())])
    total = gather_features((total,), info, local_loss=True)[0].sum()
    summed = F.cross_entropy(logits, targets, reduction="sum")
    return summed * info.world_size / total.clamp(min=1)


class DeCLIPLoss(nn.Module):
    """The DeCLIP objective around a model with ``objective: "declip"`` (wrap this in DDP).

    ``forward(images (b, 2, 3, S, S), tokens (b, 3, ctx), epoch)`` -> ``{"loss", *TERMS}``,
    scalars; ``loss`` carries the gradient. Training mode also pushes this step's text
    embeddings (both views, every rank's) to the queue, after the neighbours were looked up.
    Features are gathered across ranks like the CLIP loss (``local_loss``,
    ``gather_with_grad``); SimSiam's BatchNorm sees every rank's images.
    """

    def __init__(self, model: nn.Module, info: DistInfo = DistInfo(), *, local_loss: bool = False,
                 gather_with_grad: bool = False):
        super().__init__()
        if getattr(model.cfg, "declip", None) is None:
            raise ValueError("the DeCLIP objective needs a model whose config has \"objective\": \"declip\"")
        self.model, self.info, self.cfg = model, info, model.cfg.declip
        self.local_loss, self.gather_with_grad = local_loss, gather_with_grad
        self.queue = TextQueue(self.cfg.queue_size, model.cfg.embed_dim, info.device, full(model.logit_scale).dtype)

    def _gather(self, *features: torch.Tensor, grad: bool = True, local: bool | None = None) -> list[torch.Tensor]:
        return gather_features(features, self.info, local_loss=self.local_loss if local is None else local,
                               gather_with_grad=self.gather_with_grad and grad)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, epoch: int = 0) -> dict[str, torch.Tensor]:
        b = images.shape[0]
        if images.dim() != 5 or images.shape[1] != 2 or tokens.dim() != 3 or tokens.shape[:2] != (b, 3):
            raise ValueError(f"the DeCLIP objective expects images (b, 2, 3, S, S) and tokens (b, 3, ctx) from its "
                             f"data views, got {tuple(images.shape)} and {tuple(tokens.shape)}")
        image = self.model.encode_image(images.transpose(0, 1).flatten(0, 1))  # (2b, E), view-major
        text, token_states = self.model.encode_text(tokens[:, [MASKED, EDA]].transpose(0, 1).flatten(0, 1),
                                                    return_tokens=True)
        states = token_states.states
        with torch.autocast(images.device.type, enabled=False):  # losses in float32
            image, text, states = full(image), full(text), full(states[:b])
            scale = full(self.model.logit_scale.exp())
            img, txt = F.normalize(image, dim=-1).split(b), F.normalize(text, dim=-1).split(b)
            all_img, all_txt = self._gather(*img), self._gather(*txt)
            terms = {"loss_clip": self._multi_view(img, txt, all_img, all_txt, scale),
                     "loss_nn": self._nearest_neighbour(img, txt, scale, epoch),
                     "loss_simsiam": self._simsiam(image.split(b)),
                     "loss_mlm": self._mlm(states, tokens[:, TARGETS])}
        if self.training:
            self.queue.push(torch.cat(all_txt).detach(), epoch)
        loss = (self.cfg.w_clip * terms["loss_clip"] + self.cfg.w_nn * terms["loss_nn"]
                + self.cfg.w_simsiam * terms["loss_simsiam"] + self.cfg.w_mlm * terms["loss_mlm"])
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}

    def _multi_view(self, img, txt, all_img, all_txt, scale) -> torch.Tensor:
        """CLIP loss averaged over the 4 (image view, text view) pairs."""
        pairs = [gathered_contrastive_loss(img[v], txt[t], all_img[v], all_txt[t], scale, self.info,
                                           local_loss=self.local_loss) for v in range(2) for t in range(2)]
        return torch.stack(pairs).mean()

    def _nearest_neighbour(self, img, txt, scale, epoch: int) -> torch.Tensor:
        """Image -> nearest-neighbour text cross-entropy, averaged over the 4 view pairs; 0
        while the queue holds nothing of this epoch (the first step of each epoch)."""
        found = [self.queue.nearest(t.detach(), epoch) for t in txt]
        if found[0] is None:
            return scale.new_zeros(())
        neighbours = self._gather(*found, grad=False, local=True)
        return torch.stack([image_to_text_loss(i, n, scale, self.info) for i in img for n in neighbours]).mean()

    def _simsiam(self, views) -> torch.Tensor:
        heads = self.model.declip
        z = [heads.projector(v) for v in self._gather(*views, local=False)]  # every rank's images
        p = [heads.predictor(zv) for zv in z]
        return simsiam_loss(p[0], z[0], p[1], z[1])

    def _mlm(self, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        chosen = targets != IGNORE  # (b, N)
        logits = self.model.declip.mlm(states[chosen], full(self.model.token_embedding.weight))
        return mlm_loss(logits, targets[chosen], self.info)

    def objective_state(self) -> dict[str, torch.Tensor]:
        """The objective's state for checkpoints (plain tensors): the text queue."""
        return {f"queue.{k}": v.cpu() for k, v in self.queue.state_dict().items()}

    def load_objective_state(self, state: dict[str, torch.Tensor]) -> None:
        dev = self.queue.features.device
        self.queue.load_state_dict({k.removeprefix("queue."): v.to(dev) for k, v in state.items()})
