"""Evaluation orchestration: model x tasks x datasets -> result JSONs (what a CLI calls).

Dataset specs: ``"world"`` (every world dataset the task supports), ``"world/<task>"``
with task in shape / colour / size / count / holdout (``"world/holdout"`` is also the
held-out split for retrieval and compositional tests), an image folder
(``root/<class>/*``; with ``root/train`` and ``root/test`` it also serves the linear
probe, and zero-shot uses ``root/test``), a ``.csv`` of image paths and captions, or a
Karpathy-split ``.json`` (both retrieval), or a standard dataset by its CLIP_benchmark
name (``cifar10``, ``imagenet1k``, ``fashion_mnist``, ``mscoco_captions`` ... read from
``dataset_root``, see :mod:`hiclip.eval.standard`). A task that cannot run on a dataset is
skipped with a note. ``max_samples`` evaluates a seeded random subset of each split.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

from hiclip import factory
from hiclip.config import option
from hiclip.data.csvdata import CAPTION_KEY, IMAGE_KEY
from hiclip.data.images import DEFAULT_MAX_PIXELS, ImagePolicy
from hiclip.model import HiCLIP
from hiclip.protocols import ImageTextModel
from . import compositional, linear_probe, retrieval, standard, zeroshot
from .datasets import (DEFAULT_TEMPLATES, SkipBadImages, collate_skip_none, csv_captions,
                       image_folder, karpathy_json, read_templates, world_classification,
                       world_compositional, world_retrieval)
from .results import format_results, make_record, write_benchmark, write_result

TASKS = ("zeroshot_classification", "zeroshot_retrieval", "linear_probe", "compositional")
SUITES = {"paper": standard.PAPER_ZEROSHOT}
"""Benchmarks by name: zero-shot classification on these standard datasets."""
WORLD_TASKS = ("shape", "colour", "size", "count", "holdout")
OUTPUT_DIR = "results"  # where result JSONs go by default


@dataclass
class EvalSettings:
    """Options shared by all tasks (plain keyword arguments of :func:`run_eval`); the help texts are
    ``hiclip eval``'s (``hiclip.cli_options``), ``cli=False`` fields have no option."""
    batch_size: int = option(64, "images (or captions) per batch")
    num_workers: int = option(0, "data loader workers", flag="--workers")
    device: str = option("cpu", "torch device")
    amp: bool = option(False, "autocast", cli=False)
    world_size: int = option(500, "samples per world dataset")
    world_image_size: int = option(64, "world rendering size")
    world_split: str = option("test", "'val' when choosing settings (never tune on test)", cli=False)
    seed: int = option(0, "world seed, and the seed of the --max-samples subset")
    classnames_file: str | None = option(None, "class-name file for an image folder (one per line, sorted-folder "
                                               "order)", flag="--classnames")
    templates_file: str | None = option(None, "prompt template file (one per line, with {c} or {})",
                                        flag="--templates")
    image_root: str | None = option(None, "root for relative image paths in a .csv / Karpathy .json")
    karpathy_split: str = option("test", "split of a Karpathy .json", cli=False)
    csv_image_key: str = option(IMAGE_KEY, "CSV column of image paths", flag="--csv-img-key")
    csv_caption_key: str = option(CAPTION_KEY, "CSV column of captions")
    csv_sep: str | None = option(None, "CSV separator", default_help="',' for .csv, tab for .tsv")
    recall_k: Sequence[int] = option((1, 5, 10), "retrieval recalls @k", cli=False)
    c_grid: Sequence[float] = option(linear_probe.DEFAULT_C_GRID, "linear-probe C values", cli=False)
    chunk_size: int = option(1024, "retrieval similarity block size", cli=False)
    dataset_root: str | None = option(None, "folder holding the standard datasets in their usual layouts (DIR/NAME "
                                            "or DIR itself; '{dataset}' is replaced by the name); nothing is "
                                            "downloaded (default for fashion_mnist: /usr/share/datasets)")
    max_samples: int | None = option(None, "evaluate a seeded random subset of N items per split")
    max_pixels: int | None = option(DEFAULT_MAX_PIXELS, "skip (and count) image files larger than this",
                                    default_help=f"{DEFAULT_MAX_PIXELS}, PIL's limit")
    feature_cache: str | None = option(None, "linear-probe feature cache folder",
                                       default_help="OUTPUT_DIR/features")

    def __post_init__(self) -> None:
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {self.max_samples}")


def expand_dataset(task: str, spec: str) -> list[str]:
    """Concrete dataset names that ``task`` runs on for one dataset spec ([] if none)."""
    if spec == "world":
        return {"zeroshot_classification": [f"world/{t}" for t in WORLD_TASKS],
                "linear_probe": [f"world/{t}" for t in WORLD_TASKS if t != "holdout"]
                }.get(task, ["world"])
    if spec.startswith("world/"):
        if spec[6:] not in WORLD_TASKS:
            raise ValueError(f"unknown world dataset {spec!r}; expected one of "
                             f"{['world'] + [f'world/{t}' for t in WORLD_TASKS]}")
        holdout = spec == "world/holdout"
        fits = {"zeroshot_classification": True, "linear_probe": not holdout}.get(task, holdout)
        return [spec] if fits else []
    if spec in standard.LAYOUTS:
        fits = {"zeroshot_classification": spec in standard.CLASSIFICATION,
                "linear_probe": spec in standard.CLASSIFICATION and spec not in standard.NO_SPLIT,
                "zeroshot_retrieval": spec in standard.RETRIEVAL}
        return [spec] if fits.get(task, False) else []
    path = Path(spec)
    if not path.exists():
        raise ValueError(f"dataset {spec!r}: expected 'world', 'world/<task>', a standard dataset name "
                         f"({', '.join(standard.LAYOUTS)}), an image folder, a .csv or a Karpathy .json "
                         "file; no such file or folder")
    fits = {"zeroshot_classification": path.is_dir(),
            "linear_probe": (path / "train").is_dir() and (path / "test").is_dir(),
            "zeroshot_retrieval": path.is_file() and path.suffix.lower() in (".csv", ".tsv", ".json")}
    return [spec] if fits.get(task, False) else []


def subset(n: int, max_samples: int | None, seed: int) -> list[int] | None:
    """Sorted indices of a seeded random subset of ``max_samples`` of ``n`` items (None: all)."""
    if max_samples is None or max_samples >= n:
        return None
    return sorted(np.random.default_rng(seed).choice(n, max_samples, replace=False).tolist())


def _loader(dataset: Dataset, s: EvalSettings) -> DataLoader:
    return DataLoader(SkipBadImages(dataset, subset(len(dataset), s.max_samples, s.seed)),
                      batch_size=s.batch_size, shuffle=False, num_workers=s.num_workers,
                      collate_fn=collate_skip_none)


def _policy(transform: Callable, s: EvalSettings) -> ImagePolicy:
    """The image policy: ``max_pixels``, decoding at (at least) the size the transform outputs."""
    sizes = [getattr(t, "size", None) for t in getattr(transform, "transforms", [])]
    side = next((min(z) if isinstance(z, (tuple, list)) else z for z in sizes if z), None)
    return ImagePolicy(s.max_pixels, min_side=side if isinstance(side, int) else None)


def _classification_set(name: str, part: str, transform: Callable, s: EvalSettings
                        ) -> tuple[Dataset, list[str]]:
    """(dataset with ``.classes``, templates) for a world task, a standard dataset or an image folder."""
    templates = read_templates(s.templates_file) if s.templates_file else None
    if name.startswith("world/"):
        split = s.world_split if part == "test" else part
        dataset, world_templates = world_classification(
            name[6:], s.world_size, transform, split=split, seed=s.seed, image_size=s.world_image_size)
        return dataset, templates or world_templates
    if name in standard.LAYOUTS:
        dataset = standard.classification(name, s.dataset_root, part, transform, _policy(transform, s))
        return dataset, templates or dataset.templates
    root = Path(name) / part if (Path(name) / part).is_dir() else Path(name)
    return (image_folder(root, transform, s.classnames_file, _policy(transform, s)),
            templates or DEFAULT_TEMPLATES)


def _world_split(name: str, s: EvalSettings) -> str:
    return "holdout" if name == "world/holdout" else s.world_split


def run_task(task: str, name: str, model: ImageTextModel, transform: Callable, tokenizer: Callable,
             s: EvalSettings) -> dict[str, float]:
    """Metrics of one task on one concrete dataset name (see :func:`expand_dataset`)."""
    if task == "zeroshot_classification":
        dataset, templates = _classification_set(name, "test", transform, s)
        return zeroshot.evaluate(model, _loader(dataset, s), tokenizer, dataset.classes,
                                 templates, s.device, s.amp)
    if task == "linear_probe":
        train, _ = _classification_set(name, "train", transform, s)
        test, _ = _classification_set(name, "test", transform, s)
        key = {"dataset": name, "root": s.dataset_root, "max_samples": s.max_samples, "seed": s.seed,
               "max_pixels": s.max_pixels}
        return linear_probe.evaluate(model, _loader(train, s), _loader(test, s), s.device,
                                     s.amp, s.c_grid, seed=s.seed, cache_dir=s.feature_cache, cache_key=key)
    if task == "zeroshot_retrieval":
        policy = _policy(transform, s)
        if name.startswith("world"):
            dataset = world_retrieval(s.world_size, transform, _world_split(name, s), s.seed,
                                      s.world_image_size)
        elif name in standard.RETRIEVAL:
            dataset = standard.retrieval(name, s.dataset_root, transform, policy)
        elif name.lower().endswith((".csv", ".tsv")):
            dataset = csv_captions(name, transform, s.csv_image_key, s.csv_caption_key,
                                   s.csv_sep, s.image_root, policy)
        else:
            dataset = karpathy_json(name, transform, s.image_root, s.karpathy_split, policy)
        return retrieval.evaluate(model, _loader(dataset, s), tokenizer, s.device, s.amp,
                                  s.recall_k, s.chunk_size)
    dataset = world_compositional(s.world_size, transform, _world_split(name, s), s.seed,
                                  s.world_image_size)
    return compositional.evaluate(model, _loader(dataset, s), tokenizer, s.device, s.amp)


def evaluate_model(model: ImageTextModel, transform: Callable, tokenizer: Callable, *, model_name: str,
                   pretrained: str | None, tasks: Sequence[str] = TASKS,
                   datasets: Sequence[str] = ("world",), output_dir: str | Path = OUTPUT_DIR,
                   verbose: bool = True, skip_missing: bool = False, settings: EvalSettings | None = None,
                   **options: Any) -> list[dict[str, Any]]:
    """Run every task on every dataset it supports with a loaded model (eval transform,
    tokenizer); write one JSON each under ``output_dir``; return the records. With
    ``skip_missing`` a standard dataset whose files are absent is listed, not an error.
    ``settings``, or else ``options`` (its fields as keywords), set the :class:`EvalSettings`."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise ValueError(f"unknown task(s) {unknown or tasks}; expected some of {list(TASKS)}")
    s = _settings(settings, options)
    jobs = []
    for task in tasks:
        for spec in datasets:
            names = expand_dataset(task, spec)
            if not names and verbose:
                print(f"skipping {task} on {spec}: not a dataset this task can use")
            jobs += [(task, name) for name in names]
    jobs = list(dict.fromkeys(jobs))  # "world" and "world/count" overlap
    if not jobs:
        raise ValueError(f"none of the tasks {list(tasks)} can run on datasets {list(datasets)}")
    model = model.to(s.device).eval()
    records = []
    missing = []
    for task, name in jobs:
        try:
            metrics = run_task(task, name, model, transform, tokenizer, s)
        except standard.DatasetMissing as err:
            if not skip_missing:
                raise
            missing.append(str(err))
            continue
        record = make_record(name, model_name, pretrained, task, metrics)
        path = write_result(record, output_dir)
        records.append(record)
        if verbose:
            print(f"wrote {path}")
    if verbose and records:
        print(format_results(records))
    if verbose and missing:
        print(f"{len(missing)} dataset(s) not present, left out:\n  " + "\n  ".join(missing))
    return records


def _settings(settings: EvalSettings | None, options: dict[str, Any]) -> EvalSettings:
    """``settings`` as given, or built from keyword ``options`` (not both)."""
    if settings is not None:
        if options:
            raise ValueError(f"pass settings or keyword options, not both (got {sorted(options)})")
        return settings
    try:
        return EvalSettings(**options)
    except TypeError as err:
        raise ValueError(f"unknown evaluation option: {err}") from err


def load_model(model: str | None, pretrained: str | None, device: str = "cpu"
               ) -> tuple[HiCLIP, Callable, Callable, str, str | None]:
    """(model, eval transform, tokenizer, model name, weights file) from the hiclip factory. ``model`` may
    be omitted when ``pretrained`` is a ``hiclip train`` checkpoint (it names its model); the
    factory's clear errors (unknown name, missing file, mismatched checkpoint) pass through."""
    if model is None:
        if pretrained is None:
            raise ValueError("expected a model name, or a checkpoint that records one; got neither")
        model, pretrained = pretrained, None  # a checkpoint stands in for its model name
    name, weights = factory.resolve_model(model, pretrained)
    net, transform, tokenizer = factory.load_for_inference(name, weights, device)
    return net, transform, tokenizer, name, None if weights is None else str(weights)


def run_eval(model: str | None, pretrained: str | None = None, tasks: Sequence[str] = TASKS,
             datasets: Sequence[str] = ("world",), output_dir: str | Path = OUTPUT_DIR, verbose: bool = True,
             settings: EvalSettings | None = None, **options: Any) -> list[dict[str, Any]]:
    """Evaluate a hiclip model (name and/or checkpoint path) on tasks x datasets with ``settings``,
    or else keyword options, the fields of :class:`EvalSettings` (``batch_size``, ``device``...).
    Returns the result records."""
    s = _settings(settings, options)
    net, transform, tokenizer, name, weights = load_model(model, pretrained, s.device)
    return evaluate_model(net, transform, tokenizer, model_name=name, pretrained=weights,
                          tasks=tasks, datasets=datasets, output_dir=output_dir, verbose=verbose, settings=s)


def run_benchmark(model: str | None, pretrained: str | None = None, suite: str = "paper",
                  output_dir: str | Path = OUTPUT_DIR, verbose: bool = True, settings: EvalSettings | None = None,
                  **options: Any) -> tuple[list[dict[str, Any]], str]:
    """Zero-shot classification on the datasets of ``suite`` that are present under
    ``dataset_root`` (the others are listed); writes the JSONs and ``benchmark_{suite}.csv`` /
    ``.md`` (one column per dataset and the average) to ``output_dir``. -> (records, Markdown)."""
    if suite not in SUITES:
        raise ValueError(f"unknown benchmark {suite!r}; expected one of {list(SUITES)}")
    s = _settings(settings, options)
    net, transform, tokenizer, name, weights = load_model(model, pretrained, s.device)
    records = evaluate_model(net, transform, tokenizer, model_name=name, pretrained=weights,
                             tasks=("zeroshot_classification",), datasets=SUITES[suite], output_dir=output_dir,
                             verbose=verbose, skip_missing=True, settings=s)
    if not records:
        raise ValueError(f"none of the {len(SUITES[suite])} datasets of benchmark {suite!r} is under "
                         f"--dataset-root {s.dataset_root}")
    csv_path, md_path, text = write_benchmark(records, SUITES[suite], output_dir, f"benchmark_{suite}")
    if verbose:
        print(f"\n{text}\n\nwrote {csv_path} and {md_path}")
    return records, text

