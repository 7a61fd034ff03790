"""The HiCLIP model: two towers and a learned temperature, with open_clip CLIP's layout.

Text modules live at the top level (``token_embedding``, ``positional_embedding``,
``transformer``, ``ln_final``, ``text_projection``) and the image tower under
``visual``, so an open_clip / OpenAI CLIP state dict maps onto it key for key.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from . import hierarchy as hi
from .attention import ChainStructure
from .config import ModelCfg
from .heads import DeCLIPHeads
from .towers import (ImageHierarchy, TextHierarchy, TokenStates, VisionTower, build_text_parts, chain_mask,
                     content_mask, text_hierarchy)


class HiCLIP(nn.Module, PyTorchModelHubMixin, library_name="hiclip", license="mit",
             tags=["clip", "hiclip", "vision-language"]):
    """CLIP with hierarchy-aware attention; exactly CLIP when the hierarchy is off.

    ``save_pretrained(DIR)`` / ``HiCLIP.from_pretrained(DIR)`` (huggingface_hub's mixin) write and
    read a folder of ``config.json`` (``{"cfg": ModelCfg.to_dict()}``) and ``model.safetensors``;
    ``hiclip export --dir`` writes the same with a model card (:mod:`hiclip.export`).
    """

    def __init__(self, cfg: ModelCfg | dict):
        super().__init__()
        cfg = cfg if isinstance(cfg, ModelCfg) else ModelCfg.from_dict(cfg)  # from_pretrained passes a dict
        self.cfg = cfg
        self.visual = VisionTower(cfg.vision_cfg, cfg.embed_dim, cfg.quick_gelu)
        for name, part in build_text_parts(cfg.text_cfg, cfg.embed_dim, cfg.quick_gelu).items():
            setattr(self, name, part)
        self.context_length = cfg.text_cfg.context_length
        self.vocab_size = cfg.text_cfg.vocab_size
        causal = torch.full((self.context_length, self.context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", causal, persistent=False)
        self.logit_scale = nn.Parameter(torch.tensor(cfg.init_logit_scale))
        if cfg.declip is not None:  # training heads of the DeCLIP objective
            self.declip = DeCLIPHeads(cfg.declip, cfg.embed_dim, cfg.text_cfg.width, cfg.text_cfg.vocab_size)

    @classmethod
    def _from_pretrained(cls, *, strict: bool = True, **kwargs):  # the mixin loads non-strictly by default
        return super()._from_pretrained(strict=strict, **kwargs)

    @property
    def has_hierarchy(self) -> bool:
        return self.cfg.has_hierarchy

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the activations of both towers' blocks in the backward pass to save memory
        (open_clip's method of the same name); outputs and gradients do not change."""
        self.visual.set_grad_checkpointing(enable)
        self.transformer.grad_checkpointing = enable

    def encode_image(self, images: torch.Tensor, normalize: bool = False, return_hierarchy: bool = False,
                     return_tokens: bool = False) -> torch.Tensor | tuple:
        """images (B, 3, S, S) -> features (B, E) [, ImageHierarchy if ``return_hierarchy``]
        [, TokenStates (B, 1+H*W, D) if ``return_tokens``], in that order."""
        if return_hierarchy:
            self._require_hierarchy(self.cfg.vision_cfg.has_hierarchy, "image")
        out = self.visual(images, return_hierarchy=return_hierarchy, return_tokens=return_tokens)
        features = out[0] if isinstance(out, tuple) else out
        features = F.normalize(features, dim=-1) if normalize else features
        return (features, *out[1:]) if isinstance(out, tuple) else features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False, return_hierarchy: bool = False,
                    return_tokens: bool = False) -> torch.Tensor | tuple:
        """tokens (B, N<=ctx) ids -> features (B, E) at the end-of-text token [, TextHierarchy]
        [, TokenStates (B, N, D) if ``return_tokens``], in that order."""
        if return_hierarchy:
            self._require_hierarchy(self.cfg.text_cfg.has_hierarchy, "text")
        self._check_tokens(tokens)
        n = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:n].to(self.token_embedding.weight.dtype)
        content = content_mask(tokens)
        inside = chain_mask(tokens) if self.cfg.text_cfg.specials_in_chain else content
        x, history = self.transformer(x, self._text_mask(tokens), ChainStructure(inside))
        x = self.ln_final(x)
        pooled = self._pool_text(x, tokens) @ self.text_projection
        features = F.normalize(pooled, dim=-1) if normalize else pooled
        extras: list = []
        if return_hierarchy:
            extras.append(text_hierarchy(history, content, self.transformer.hierarchy_layers))
        if return_tokens:
            extras.append(TokenStates(x, chain_mask(tokens)))
        return (features, *extras) if extras else features

    def forward(self, images: torch.Tensor | None = None, tokens: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """-> ``{"image_features", "text_features"}`` (normalised, (B, E)) and ``logit_scale`` (exp'd)."""
        out = {"logit_scale": self.logit_scale.exp()}
        constituents = tokens is not None and self.training and self.cfg.constituent_loss > 0
        groups = constituents and images is not None and self.cfg.constituent_target == "groups"
        if groups:
            out["image_features"], image_hier, image_states = self.encode_image(
                images, normalize=True, return_hierarchy=True, return_tokens=True)
            out["group_features"] = self.group_features(image_hier, image_states.states)
        elif images is not None:
            out["image_features"] = self.encode_image(images, normalize=True)
        if constituents:
            out["text_features"], hier, states = self.encode_text(tokens, normalize=True, return_hierarchy=True,
                                                                  return_tokens=True)
            out["span_features"], out["span_weights"] = self.span_features(hier, states.states)
        elif tokens is not None:
            out["text_features"] = self.encode_text(tokens, normalize=True)
        return out

    def span_features(self, hier: TextHierarchy, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of every span of content tokens and how much it is a constituent (design §1.8).

        hier: the captions' :class:`TextHierarchy` (links (B, L, M-1) over M = N-2 content slots);
        states: (B, N, D) final token states (after ``ln_final``).
        Returns span features (B, S, E), normalised (the mean state of the span, projected), and
        weights (B, L, S) from :func:`hiclip.hierarchy.span_weights`: every span of 2 to
        ``cfg.constituent_max_span`` tokens (all lengths if None) of the batch's first M' slots,
        M' its longest caption's length (the spans beyond it would have weight 0)."""
        m = min(max(int(hier.lengths.max()), 2), states.shape[1] - 2)
        content = states[:, 1:1 + m]  # (B, M', D)
        spans = hi.span_index(m, self.cfg.constituent_max_span, device=states.device)
        inside = torch.arange(m, device=states.device) < hier.lengths[:, None]
        prefix = F.pad(torch.cumsum(content.float(), 1), (0, 0, 1, 0))  # (B, M+1, D)
        i, j = spans[:, 0], spans[:, 1]
        mean = (prefix[:, j + 1] - prefix[:, i]) / (j - i + 1).to(prefix.dtype)[:, None]
        feats = F.normalize(mean.to(states.dtype) @ self.text_projection, dim=-1)
        return feats, hi.span_weights(hier.links[:, :, : m - 1], inside, spans)

    def group_features(self, hier: ImageHierarchy, states: torch.Tensor) -> torch.Tensor:
        """Every patch's image group, as a feature (design §1.8, the ``groups`` target).

        hier: the images' :class:`ImageHierarchy` (L layers of links on the H×W grid);
        states: (B, 1+H*W, D) final token states (after ``ln_post``).
        Returns (B, H*W, E), normalised: the group of patch p = the mean of the patch states
        weighted by the constituent prior averaged over the hierarchy layers,
        ``mean_l C^l[p, :]`` (:func:`hiclip.hierarchy.grid_prior`), projected. With every link 1
        each group is the whole image (the avg-pooled feature)."""
        prior = hi.grid_prior(hier.h, hier.v).mean(1)  # (B, N, N)
        return F.normalize(hi.group_means(prior, states[:, 1:]) @ self.visual.proj, dim=-1)

    def _pool_text(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, D) final states -> (B, D): the end-of-text state, or the mean over start..end (``pool``)."""
        if self.cfg.text_cfg.pool == "eot":
            return x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        keep = chain_mask(tokens).unsqueeze(-1).to(x.dtype)
        return (x * keep).sum(1) / keep.sum(1)

    def _text_mask(self, tokens: torch.Tensor) -> torch.Tensor:
        """Causal (N, N) mask, or for bidirectional text a (B, 1, N, N) key-padding mask."""
        n = tokens.shape[1]
        if self.cfg.text_cfg.causal:
            return self.attn_mask[:n, :n]
        eot = tokens.argmax(dim=-1, keepdim=True)
        keys_ok = torch.arange(n, device=tokens.device) <= eot  # (B, N): start, content, end
        return torch.zeros(keys_ok.shape, device=tokens.device).masked_fill(~keys_ok, float("-inf"))[:, None, None, :]

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"expected token ids (B, N<={self.context_length}) of integer dtype, "
                             f"got shape {tuple(tokens.shape)} dtype {tokens.dtype}")
        if tokens.shape[1] > self.context_length:
            raise ValueError(f"expected at most {self.context_length} tokens per caption, got {tokens.shape[1]}; "
                             "tokenize with hiclip.get_tokenizer(name), which truncates")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), got range "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")

    @staticmethod
    def _require_hierarchy(enabled: bool, tower: str) -> None:
        if not enabled:
            raise ValueError(f"this model has no hierarchy-aware attention in its {tower} tower "
                             "(a CLIP config); use a HiCLIP-* model to read out hierarchies")

    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay besides norms and biases."""
        return {"logit_scale", "positional_embedding", "visual.positional_embedding", "visual.class_embedding"}
