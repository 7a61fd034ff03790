"""Sharing a model offline: a checkpoint -> a ``local-dir:`` folder (``hiclip export --dir``).

The folder is what huggingface_hub's ``save_pretrained`` writes for :class:`~hiclip.model.HiCLIP`
(``config.json`` with the model config under ``"cfg"``, ``model.safetensors``) plus a model card
``README.md`` saying what the weights are and how to load them; ``config.json`` also records the
model name, the training step and the source file. Nothing is uploaded: load the folder with
``--model local-dir:PATH``, ``hiclip.create_model_and_transforms("local-dir:PATH")`` or
``HiCLIP.from_pretrained(PATH)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import checkpoint, factory
from .config import ModelCfg, load_config
from .model import HiCLIP


def model_from_checkpoint(path: str | Path) -> tuple[HiCLIP, dict[str, Any]]:
    """The model a checkpoint (or ``.safetensors`` export) holds, with its config as trained,
    and the file's other fields (``model``, ``step``...). A bare state dict names no model: ValueError."""
    info = checkpoint.read_info(path)
    name = info.get("model")
    if not isinstance(name, str):
        raise ValueError(f"{path} does not name its model (a bare state dict); "
                         "export a checkpoint written by `hiclip train`")
    cfg = ModelCfg.from_dict(info["model_config"]) if isinstance(info.get("model_config"), dict) else load_config(name)
    return factory.create_model(name, path, config=cfg).eval(), info


def model_card(name: str, model: HiCLIP, info: dict[str, Any], source: str) -> str:
    """The README.md of an exported folder (YAML front matter as the Hugging Face hub reads it)."""
    cfg = model.cfg
    n_params = sum(p.numel() for p in model.parameters())
    towers = ", ".join(t for t, c in (("image", cfg.vision_cfg), ("text", cfg.text_cfg)) if c.has_hierarchy)
    step = info.get("step")
    return "\n".join([
        "---", "library_name: hiclip", "license: mit", "tags:", "- clip", "- hiclip", "- vision-language", "---",
        "", f"# {name}" + (f" (step {step})" if step is not None else ""), "",
        f"A {name} model exported by `hiclip export` from `{source}`.", "",
        f"- {n_params / 1e6:.2f}M parameters; images {cfg.vision_cfg.image_size} px in patches of "
        f"{cfg.vision_cfg.patch_size}; captions of at most {cfg.text_cfg.context_length} tokens",
        f"- hierarchy-aware attention: {towers or 'none (plain CLIP)'}; training objective: {cfg.objective}",
        f"- trained for {step} steps" if step is not None else "- training step: not recorded", "",
        "Files: `config.json` (the model config under `cfg`), `model.safetensors` (the weights), this card.", "",
        "## Loading (offline)", "", "```",
        "hiclip parse --model local-dir:PATH \"a red circle above a blue square\"",
        "hiclip explore --model local-dir:PATH", "```", "", "```python",
        "import hiclip", "model, _, transform = hiclip.create_model_and_transforms(\"local-dir:PATH\")",
        "tokenizer = hiclip.get_tokenizer(\"local-dir:PATH\")", "",
        "from hiclip.model import HiCLIP", "model = HiCLIP.from_pretrained(\"PATH\")  # huggingface_hub's mixin",
        "```", ""])


def export_dir(src: str | Path, directory: str | Path) -> Path:
    """Write the model of checkpoint ``src`` to ``directory`` (module docstring) -> the folder.

    An existing card is replaced, so that a re-export never keeps a stale one."""
    model, info = model_from_checkpoint(src)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    name = info["model"]
    (out / "README.md").write_text(model_card(name, model, info, str(src)), encoding="utf-8")
    meta = {"cfg": model.cfg.to_dict(), "model": name, "step": info.get("step"), "source": str(src)}
    model.save_pretrained(out, config=meta)  # keeps our README.md
    return out
