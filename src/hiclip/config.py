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
LINK_RULES = ("softmax", "softmax_none", "sigmoid", "distance")
"""``hierarchy.link``; the rules are described at :data:`hiclip.hierarchy.LINK_RULES`."""
MAX_TOKENS = 4096  # context_length and image patches: attention keeps N x N maps per head (memory)
_AT_LEAST_1 = ("embed_dim", "image_size", "patch_size", "width", "layers", "heads", "vocab_size", "dim",
               "projector_dim", "predictor_dim", "queue_size")


CONSTITUENT_TARGETS = ("image", "groups")
"""What the constituent loss matches a span against (docs/design.md §1.8)."""


def _bad(key: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"model config: {key} = {json.dumps(value)}; allowed: {allowed}")


def _check_sizes(cfg: Any, where: str) -> None:
    """Every size field of ``cfg`` that is set is >= 1; ``mlp_ratio`` > 0."""
    for name in _AT_LEAST_1:
        value = getattr(cfg, name, None)
        if isinstance(value, (int, float)) and value < 1:  # (hierarchy.layers is a list: checked elsewhere)
            raise _bad(f"{where}{name}", value, "an integer >= 1")
    if getattr(cfg, "mlp_ratio", 1) <= 0:
        raise _bad(f"{where}mlp_ratio", cfg.mlp_ratio, "a number > 0")


def _check_width(cfg: Any, where: str) -> None:
    if cfg.width % cfg.heads:
        raise _bad(f"{where}heads", cfg.heads, f"a divisor of {where}width ({cfg.width})")


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
    link: how a layer's neighbour scores become links, one of :data:`LINK_RULES` (docs/design.md
        §1.2): ``softmax`` (the paper's, Tree Transformer's neighbour softmax), ``softmax_none``,
        ``sigmoid``, ``distance``.
    budget: with ``link: distance``, the share of each sample's edges merged at each hierarchy
        layer (one increasing number in (0, 1) per hierarchy layer; None: the learned thresholds):
        the scores are standardised per sample and thresholded at fixed quantiles
        (:func:`hiclip.hierarchy.budget_links`), so no sample can collapse into one region.
    """

    enabled: bool = False
    layers: list[int] | None = None
    dim: int | None = None
    renormalize: bool = False
    kernel: str = "auto"
    link: str = "softmax"
    budget: list[float] | None = None

    def __post_init__(self) -> None:
        _check_sizes(self, "hierarchy.")
        if self.budget is not None:
            b = self.budget
            if self.link != "distance":
                raise _bad("hierarchy.budget", b, f"null unless hierarchy.link is \"distance\" (it is {self.link!r})")
            if (not isinstance(b, list) or not b or not all(isinstance(x, (int, float)) and 0 < x < 1 for x in b)
                    or any(x >= y for x, y in zip(b, b[1:]))):
                raise _bad("hierarchy.budget", b, "a list of increasing shares, each in (0, 1)")
        if self.kernel not in KERNELS:
            raise ValueError(f"hierarchy.kernel must be one of {KERNELS}, got {self.kernel!r}")
        if self.link not in LINK_RULES:
            raise ValueError(f"hierarchy.link must be one of {LINK_RULES}, got {self.link!r}")
        if self.enabled and self.layers is not None and not self.layers:
            raise ValueError("hierarchy.layers is empty while hierarchy.enabled is true; "
                             "list at least one layer, or set enabled to false")

    def active(self, layer: int) -> bool:
        return self.enabled and (self.layers is None or layer in self.layers)

    def layer_indices(self, n_layers: int) -> list[int]:
        """The layers (of ``n_layers``) with hierarchy-aware attention: the one reading of the switch."""
        if self.layers is not None and any(not 0 <= i < n_layers for i in self.layers):
            raise ValueError(f"hierarchy.layers {self.layers} out of range for {n_layers} layers")
        return [i for i in range(n_layers) if self.active(i)]


class _Tower:
    """What both tower configs derive from ``hierarchy`` and ``layers`` (nothing else stores it)."""

    hierarchy: HierarchyCfg
    layers: int

    def _check_budget(self, where: str) -> None:
        budget, n = self.hierarchy.budget, len(self.hierarchy_layers)
        if budget is not None and len(budget) != n:
            raise _bad(f"{where}hierarchy.budget", budget, f"one share per hierarchy layer ({n})")

    @property
    def hierarchy_layers(self) -> list[int]:
        return self.hierarchy.layer_indices(self.layers)

    @property
    def has_hierarchy(self) -> bool:
        return bool(self.hierarchy_layers)


POOLS = ("tok", "avg", "tok_avg")


@dataclass
class VisionCfg(_Tower):
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
        _check_sizes(self, "vision_cfg.")
        _check_width(self, "vision_cfg.")
        self._check_budget("vision_cfg.")
        if self.image_size % self.patch_size:
            raise _bad("vision_cfg.patch_size", self.patch_size, f"a divisor of vision_cfg.image_size ({self.image_size})")
        if (self.image_size // self.patch_size) ** 2 > MAX_TOKENS:
            raise _bad("vision_cfg.image_size", self.image_size, f"at most {MAX_TOKENS} patches of "
                       f"{self.patch_size} pixels (image_size <= {int(MAX_TOKENS ** 0.5) * self.patch_size})")
        if self.pool not in POOLS:
            raise ValueError(f"vision_cfg.pool must be one of {POOLS}, got {self.pool!r}")

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size // self.patch_size, self.image_size // self.patch_size


TEXT_POOLS = ("eot", "avg")


@dataclass
class TextCfg(_Tower):
    """Text transformer. ``specials_in_chain``: the start and end tokens are links of the
    chain (``SOT – words – EOT``, docs/design.md §1.6); False keeps them outside with C = 1.
    ``pool``: ``eot`` the end-of-text token (CLIP), ``avg`` the mean of the start, word and
    end tokens (padding excluded); both after ``ln_final``."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0
    causal: bool = True
    specials_in_chain: bool = True
    pool: str = "eot"
    hierarchy: HierarchyCfg = field(default_factory=HierarchyCfg)

    def __post_init__(self) -> None:
        _check_sizes(self, "text_cfg.")
        _check_width(self, "text_cfg.")
        self._check_budget("text_cfg.")
        if not 3 <= self.context_length <= MAX_TOKENS:  # start, one word, end
            raise _bad("text_cfg.context_length", self.context_length, f"3 to {MAX_TOKENS} tokens")
        if self.pool not in TEXT_POOLS:
            raise ValueError(f"text_cfg.pool must be one of {TEXT_POOLS}, got {self.pool!r}")


def option(default: Any, help: str, **extra: Any) -> Any:
    """A field of an options dataclass (TrainConfig, EvalSettings, ...) with its help text; ``extra``
    goes into ``metadata`` too (``choices``, ``flag``, ``cli``...: see ``hiclip.cli_options``)."""
    return field(default=default, metadata={"help": help, **extra})


OBJECTIVES = ("clip", "declip")
MLM_HEADS = ("tied", "linear")


@dataclass
class DeCLIPCfg:
    """DeCLIP's extra supervision (Li et al., ICLR 2022; docs/design.md, "HiDeCLIP").

    Loss weights (DeCLIP's YFCC15M config): ``w_clip`` multi-view CLIP loss, ``w_nn``
    nearest-neighbour supervision, ``w_simsiam`` image self-supervision, ``w_mlm`` masked
    language modelling. ``projector_dim`` / ``predictor_dim``: SimSiam's projector width
    (hidden and output) and predictor bottleneck (None: 2 x and 1 x ``embed_dim``, DeCLIP's
    1024 / 512 at ``embed_dim`` 512). ``mlm_head``: ``linear`` (DeCLIP: width -> vocabulary)
    or ``tied`` (BERT's transform, decoder tied to the token embedding). ``mlm_prob``: share
    of content tokens masked. ``queue_size``: text embeddings kept for nearest neighbours.
    """

    w_clip: float = 0.4
    w_nn: float = 0.2
    w_simsiam: float = 0.2
    w_mlm: float = 0.2
    projector_dim: int | None = None
    predictor_dim: int | None = None
    mlm_head: str = "linear"
    mlm_prob: float = 0.15
    queue_size: int = 65536

    def __post_init__(self) -> None:
        _check_sizes(self, "declip.")
        if self.mlm_head not in MLM_HEADS:
            raise ValueError(f"declip.mlm_head must be one of {MLM_HEADS}, got {self.mlm_head!r}")
        if not 0 < self.mlm_prob < 1 or self.queue_size < 1:
            raise ValueError(f"declip: need 0 < mlm_prob < 1 and queue_size >= 1, got "
                             f"{self.mlm_prob} and {self.queue_size}")
        if min(self.w_clip, self.w_nn, self.w_simsiam, self.w_mlm) < 0:
            raise ValueError("declip: loss weights must be >= 0")


@dataclass
class ModelCfg:
    """``objective``: what ``hiclip train`` optimises, ``clip`` or ``declip`` (then ``declip``
    holds its settings, defaults when omitted; the model gains the DeCLIP heads).
    ``constituent_loss``: weight of the span–image constituent loss added to the CLIP loss
    (docs/design.md §1.8; 0: off; needs a text hierarchy). ``constituent_target``: what a span
    must pick out, the paired ``"image"`` (its pooled feature) or its best-matching ``"groups"``
    feature (one image group per patch, under the image prior averaged over the hierarchy layers;
    needs an image hierarchy too).
    ``constituent_max_span``: the longest span (in tokens) the loss scores; ``None``: every span."""

    embed_dim: int = 512
    vision_cfg: VisionCfg = field(default_factory=VisionCfg)
    text_cfg: TextCfg = field(default_factory=TextCfg)
    quick_gelu: bool = False
    init_logit_scale: float = 2.659260036932778  # ln(1 / 0.07)
    objective: str = "clip"
    declip: DeCLIPCfg | None = None
    constituent_loss: float = 0.0
    constituent_target: str = "image"
    constituent_max_span: int | None = None

    def __post_init__(self) -> None:
        if not self.constituent_loss >= 0:
            raise ValueError(f"constituent_loss must be >= 0, got {self.constituent_loss!r}")
        if self.constituent_target not in CONSTITUENT_TARGETS:
            raise _bad("constituent_target", self.constituent_target, " or ".join(map(json.dumps, CONSTITUENT_TARGETS)))
        span = self.constituent_max_span
        if span is not None and (isinstance(span, bool) or not isinstance(span, int) or span < 2):
            raise _bad("constituent_max_span", span, "null (every span) or an integer >= 2")
        if self.constituent_loss and self.constituent_target == "groups" and not self.vision_cfg.has_hierarchy:
            raise _bad("constituent_target", "groups", "\"image\" when the image tower has no hierarchy "
                       "(vision_cfg.hierarchy.enabled is false)")
        if self.constituent_loss and not self.text_cfg.has_hierarchy:
            raise ValueError("constituent_loss needs a text hierarchy (text_cfg.hierarchy.enabled)")
        if self.constituent_loss and self.objective != "clip":
            raise ValueError(f"constituent_loss is added to the clip objective, not to {self.objective!r}")
        _check_sizes(self, "")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.objective == "declip" and self.declip is None:
            self.declip = DeCLIPCfg()
        if self.objective != "declip" and self.declip is not None:
            raise ValueError(f"declip settings given for objective {self.objective!r}; "
                             "set \"objective\": \"declip\"")

    @property
    def has_hierarchy(self) -> bool:
        return self.vision_cfg.has_hierarchy or self.text_cfg.has_hierarchy

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> "ModelCfg":
        """Build from a (possibly partial) nested dict; unknown keys, wrong types and values out of
        range are a ValueError naming the key, its value and what is allowed."""
        d = dict(_object(d, "(top level)"))
        vision = _build(VisionCfg, d.pop("vision_cfg", {}), "vision_cfg")
        text = _build(TextCfg, d.pop("text_cfg", {}), "text_cfg")
        declip = d.pop("declip", None)
        declip = None if declip is None else _build(DeCLIPCfg, declip, "declip")
        return _build(cls, d, "", vision_cfg=vision, text_cfg=text, declip=declip)


def _object(d: Any, where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise _bad(where, d, "an object ({...})")
    return d


_TYPES = {"int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
          "float": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
          "bool": ("true or false", lambda v: isinstance(v, bool)),
          "str": ("a string", lambda v: isinstance(v, str)),
          "list[int]": ("a list of integers",
                        lambda v: isinstance(v, list) and all(_TYPES["int"][1](x) for x in v)),
          "list[float]": ("a list of numbers",
                          lambda v: isinstance(v, list) and all(_TYPES["float"][1](x) for x in v)),
          "None": ("null", lambda v: v is None)}


def _check_type(key: str, value: Any, annotation: str) -> None:
    """ValueError unless ``value`` has the JSON type the field's annotation (e.g. ``int | None``) names."""
    kinds = [_TYPES[a.strip()] for a in annotation.split("|") if a.strip() in _TYPES]
    if kinds and not any(ok(value) for _, ok in kinds):
        raise _bad(key, value, " or ".join(desc for desc, _ in kinds))


def _build(kind: type, d: Any, where: str, **fixed: Any) -> Any:
    d = dict(_object(d, where or "model config"))
    prefix = f"{where}." if where else ""
    types = {f.name: f.type for f in dataclasses.fields(kind)}
    unknown = sorted(set(d) - set(types))
    if unknown:
        raise ValueError(f"{where or 'model config'}: unknown keys {unknown}; expected some of {sorted(types)}")
    for key, value in d.items():
        if key != "hierarchy":
            _check_type(prefix + key, value, str(types[key]))
    if "hierarchy" in d:
        d["hierarchy"] = _build(HierarchyCfg, d["hierarchy"], f"{prefix}hierarchy")
    return kind(**d, **fixed)


CONFIG_DIR = Path(__file__).parent / "model_configs"


def list_configs() -> list[str]:
    """Names of the JSON model configs shipped in the package, sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(name_or_path: str) -> ModelCfg:
    """Config by model name (``HiCLIP-Tiny``) or path to a JSON file."""
    return ModelCfg.from_dict(_read_json(name_or_path, ()))


def _read_json(name_or_path: str, seen: tuple[str, ...]) -> dict[str, Any]:
    """A config's dict; a ``"base": NAME`` entry starts from that config, updated key by key."""
    path = Path(name_or_path)
    if not (path.suffix == ".json" and path.is_file()):
        path = CONFIG_DIR / f"{name_or_path}.json"
        if not path.is_file():
            raise ValueError(f"unknown model {name_or_path!r}; expected one of {list_configs()} "
                             "or a path to a JSON config")
    try:
        d = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"model config {path} is not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise _bad(str(path), d, "a JSON object ({...})")
    if "base" not in d:
        return d
    base = d.pop("base")
    if base in seen:
        raise ValueError(f"model config {name_or_path!r}: circular \"base\" chain {[*seen, base]}")
    return _merge(_read_json(base, (*seen, str(name_or_path))), d)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        both_dicts = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both_dicts else value
    return out
