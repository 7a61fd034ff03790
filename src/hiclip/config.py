"""Typed model configuration: dataclasses mirrored by the JSON files in ``model_configs/``.

With every ``hierarchy`` switch off, a config describes open_clip's CLIP with the
same parameter names and shapes (``CLIP-*`` configs); ``HiCLIP-*`` configs turn on
hierarchy-aware attention in every layer of both towers.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


KERNELS = ("auto", "materialized", "lean", "flex")


@dataclass
class HierarchyCfg:
    """Hierarchy-aware attention of one tower (DESIGN.md §1).

    enabled: switch for the whole tower.
    layers: indices of the layers that use it (None: every layer).
    dim: width ``d_g`` of the neighbour projections (None: one head's width).
    renormalize: use ``softmax(QK^T/sqrt(d) + log C)`` instead of ``C * softmax(QK^T/sqrt(d))``.
    kernel: how attention applies the prior, one of :data:`KERNELS` (same results; docs/design.md
        §1.7): ``auto`` (fused ``flex`` on CUDA, ``lean`` elsewhere), ``materialized`` (reference),
        ``lean`` (no per-head N×N kept for backward), ``flex`` (CUDA; else as ``lean``).
    """

    enabled: bool = False
    layers: list[int] | None = None
    dim: int | None = None
    renormalize: bool = False
    kernel: str = "auto"

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"hierarchy.kernel must be one of {KERNELS}, got {self.kernel!r}")
        if self.enabled and self.layers is not None and not self.layers:
            raise ValueError("hierarchy.layers is empty while hierarchy.enabled is true; "
                             "list at least one layer, or set enabled to false")

    def active(self, layer: int) -> bool:
        return self.enabled and (self.layers is None or layer in self.layers)


POOLS = ("tok", "avg", "tok_avg")


@dataclass
class VisionCfg:
    """ViT. ``pool``: the pooled token (docs/design.md §1.6): ``tok`` the CLS token (CLIP),
    ``avg`` the mean of the patch tokens, ``tok_avg`` the mean of those two; all after ``ln_post``."""

    image_size: int = 224
    patch_size: int = 32
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    pool: str = "tok"
    hierarchy: HierarchyCfg = field(default_factory=HierarchyCfg)

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ValueError(f"vision_cfg.pool must be one of {POOLS}, got {self.pool!r}")

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size // self.patch_size, self.image_size // self.patch_size


@dataclass
class TextCfg:
    """Text transformer. ``specials_in_chain``: the start and end tokens are links of the
    chain (``SOT – words – EOT``, docs/design.md §1.6); False keeps them outside with C = 1."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0
    causal: bool = True
    specials_in_chain: bool = True
    hierarchy: HierarchyCfg = field(default_factory=HierarchyCfg)


@dataclass
class ModelCfg:
    embed_dim: int = 512
    vision_cfg: VisionCfg = field(default_factory=VisionCfg)
    text_cfg: TextCfg = field(default_factory=TextCfg)
    quick_gelu: bool = False
    init_logit_scale: float = 2.659260036932778  # ln(1 / 0.07)

    @property
    def has_hierarchy(self) -> bool:
        return self.vision_cfg.hierarchy.enabled or self.text_cfg.hierarchy.enabled

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCfg":
        """Build from a (possibly partial) nested dict; unknown keys are an error."""
        d = dict(d)
        vision = _build(VisionCfg, d.pop("vision_cfg", {}), "vision_cfg")
        text = _build(TextCfg, d.pop("text_cfg", {}), "text_cfg")
        return _build(cls, d, "model config", vision_cfg=vision, text_cfg=text)


def _build(kind: type, d: dict[str, Any], where: str, **fixed: Any) -> Any:
    d = dict(d)
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; expected some of {sorted(names)}")
    if "hierarchy" in d:
        d["hierarchy"] = _build(HierarchyCfg, d["hierarchy"], f"{where}.hierarchy")
    return kind(**d, **fixed)


CONFIG_DIR = Path(__file__).parent / "model_configs"


def list_configs() -> list[str]:
    """Names of the JSON model configs shipped in the package, sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(name_or_path: str) -> ModelCfg:
    """Config by model name (``HiCLIP-Tiny``) or path to a JSON file."""
    path = Path(name_or_path)
    if not (path.suffix == ".json" and path.is_file()):
        path = CONFIG_DIR / f"{name_or_path}.json"
        if not path.is_file():
            raise ValueError(f"unknown model {name_or_path!r}; expected one of {list_configs()} "
                             "or a path to a JSON config")
    return ModelCfg.from_dict(json.loads(path.read_text()))
