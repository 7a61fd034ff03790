"""Standard evaluation datasets by their CLIP_benchmark names, from local files only.

Nothing is ever downloaded: torchvision's dataset classes are built with
``download=False`` and only parse the split files; every image is then decoded by
hiclip's own loader (:mod:`hiclip.data.images`). Class names and prompt templates are
CLIP_benchmark's (its ``en_classnames.json`` / ``en_zeroshot_classification_templates.json``;
ImageNet's 80 templates for a dataset it has none for, as CLIP_benchmark does).

A dataset ``NAME`` is looked for in ``ROOT/NAME`` and then in ``ROOT`` itself
(``ROOT`` may contain ``{dataset}``, as CLIP_benchmark's ``--dataset_root``), in the
layout of :data:`LAYOUTS`.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from torchvision import datasets as tv

from hiclip.data.images import ImagePolicy
from .datasets import CaptionDataset, ListClassification, karpathy_json

DEBIAN_DATASETS = Path("/usr/share/datasets")
"""Where Debian's dataset packages (``dataset-fashion-mnist``) install their files."""
PAPER_ZEROSHOT = ("cifar10", "cifar100", "food101", "pets", "flowers", "sun397", "cars", "dtd",
                  "caltech101", "fgvc_aircraft", "imagenet1k")
"""The 11 zero-shot classification sets of the HiCLIP paper's Table 1 (ImageNet last)."""
LAYOUTS = {
    "cifar10": "cifar-10-batches-py/ (the python version)",
    "cifar100": "cifar-100-python/",
    "imagenet1k": "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (val sorted into class folders)",
    "food101": "food-101/{images,meta}/",
    "pets": "oxford-iiit-pet/{images,annotations}/",
    "flowers": "flowers-102/{jpg/,imagelabels.mat,setid.mat}",
    "sun397": "SUN397/ (ClassName.txt and the class folders); no split: all images",
    "cars": "stanford_cars/ (torchvision's layout: devkit/, cars_train/, cars_test/, cars_test_annos_withlabels.mat)",
    "dtd": "dtd/{images,labels}/",
    "caltech101": "caltech101/101_ObjectCategories/<class>/*.jpg (102 classes with BACKGROUND_Google); no split",
    "fgvc_aircraft": "fgvc-aircraft-2013b/data/ (variant labels)",
    "mnist": "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz], directly or in MNIST/raw/",
    "fashion_mnist": "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz], directly, in fashion-mnist/ or "
                     "FashionMNIST/raw/ (default root: /usr/share/datasets, Debian's dataset-fashion-mnist)",
    "mscoco_captions": "val2014/ with coco_test_karpathy.json (CLIP_benchmark's), or a Karpathy dataset_coco.json",
    "flickr30k": "the images with flickr30k_test_karpathy.txt (CLIP_benchmark's), or a Karpathy "
                 "dataset_flickr30k.json with flickr30k-images/",
}
CLASSIFICATION = tuple(n for n in LAYOUTS if n not in ("mscoco_captions", "flickr30k"))
RETRIEVAL = ("mscoco_captions", "flickr30k")
NO_SPLIT = ("sun397", "caltech101")
_FASHION = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
            "ankle boot"]


class DatasetMissing(ValueError):
    """The dataset's files are not under the given root (the message says where it looked)."""


@cache
def clip_benchmark_json(kind: str) -> dict[str, Any]:
    """CLIP_benchmark's ``en_{kind}.json`` (kind: 'classnames' or 'zeroshot_classification_templates')."""
    spec = importlib.util.find_spec("clip_benchmark")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("standard datasets take their class names and prompts from CLIP_benchmark: "
                         "pip install clip-benchmark")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / f"en_{kind}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def templates_for(name: str) -> list[str]:
    """CLIP_benchmark's prompt templates of ``name`` (ImageNet's when it has none)."""
    table = clip_benchmark_json("zeroshot_classification_templates")
    return list(table.get(name, table["imagenet1k"]))


def roots(name: str, root: str | Path | None) -> list[Path]:
    """The folders ``name`` is looked for in."""
    if root is None:
        return [DEBIAN_DATASETS / "fashion-mnist", DEBIAN_DATASETS] if name == "fashion_mnist" else []
    text = str(root)
    return [Path(text.format(dataset=name))] if "{dataset}" in text else [Path(text) / name, Path(text)]


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format; gzip'd or not) -> uint8 array (N, ...)."""
    data = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if data[2] != 8 or len(data) != 4 + 4 * ndim + int(np.prod(shape)):
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    prefix = "train" if split == "train" else "t10k"
    for base in (folder, folder / "fashion-mnist", folder / "FashionMNIST" / "raw", folder / "MNIST" / "raw"):
        for ext in ("", ".gz"):
            images, labels = base / f"{prefix}-images-idx3-ubyte{ext}", base / f"{prefix}-labels-idx1-ubyte{ext}"
            if images.is_file() and labels.is_file():
                return _read_idx(images), _read_idx(labels)
    return None


def _file_samples(ds: Any) -> tuple[list[str], list[int]]:
    """(image paths, labels) of a file-based torchvision dataset (its parsed split files)."""
    pairs = getattr(ds, "samples", None) or getattr(ds, "_samples", None)
    if pairs is not None:
        return [str(p) for p, _ in pairs], [int(t) for _, t in pairs]
    files = getattr(ds, "_image_files", None) or getattr(ds, "_images")
    return [str(p) for p in files], [int(t) for t in ds._labels]


def _spaced(classes: list[str]) -> list[str]:
    return [c.replace("_", " ").replace("/", " ").strip() for c in classes]


_Builder = Callable[[Path, bool], tuple[Any, Any, list[str]]]


def _torchvision(make: Callable[[Path, bool], Any], names: Callable[[Any], list[str]]) -> _Builder:
    def build(root: Path, train: bool) -> tuple[Any, Any, list[str]]:
        ds = make(root, train)
        images, labels = (ds.data, ds.targets) if hasattr(ds, "data") else _file_samples(ds)
        return images, labels, names(ds)
    return build


def _cb_names(name: str) -> Callable[[Any], list[str]]:
    return lambda ds: list(clip_benchmark_json("classnames")[name])


def _folder(sub: Callable[[bool], str], name: str) -> _Builder:
    return _torchvision(lambda r, train: tv.ImageFolder(str(r / sub(train))), _cb_names(name))


def _idx(classes: list[str]) -> _Builder:
    def build(root: Path, train: bool) -> tuple[Any, Any, list[str]]:
        found = _idx_split(root, "train" if train else "test")
        if found is None:
            raise FileNotFoundError(f"no {'train' if train else 't10k'}-images-idx3-ubyte[.gz] in {root}")
        return found[0], found[1].tolist(), list(classes)
    return build


def _split(cls: type, train: str, test: str, names: Callable[[Any], list[str]]) -> _Builder:
    return _torchvision(lambda r, t: cls(str(r), split=train if t else test, download=False), names)


def _own_names(ds: Any) -> list[str]:
    return list(ds.classes)


_BUILDERS: dict[str, _Builder] = {
    "cifar10": _torchvision(lambda r, t: tv.CIFAR10(str(r), train=t, download=False), _own_names),
    "cifar100": _torchvision(lambda r, t: tv.CIFAR100(str(r), train=t, download=False), _own_names),
    "imagenet1k": _folder(lambda t: "train" if t else "val", "imagenet1k"),
    "food101": _split(tv.Food101, "train", "test", lambda ds: _spaced(ds.classes)),
    "pets": _split(tv.OxfordIIITPet, "trainval", "test", _cb_names("pets")),
    "flowers": _split(tv.Flowers102, "train", "test", _cb_names("flowers")),
    "sun397": _torchvision(lambda r, t: tv.SUN397(str(r), download=False), lambda ds: _spaced(ds.classes)),
    "cars": _split(tv.StanfordCars, "train", "test", _own_names),
    "dtd": _split(tv.DTD, "train", "test", _own_names),
    "caltech101": _folder(lambda t: "caltech101/101_ObjectCategories", "caltech101"),
    "fgvc_aircraft": _split(tv.FGVCAircraft, "trainval", "test", _own_names),
    "mnist": _idx([str(i) for i in range(10)]),
    "fashion_mnist": _idx(_FASHION),
}


def _missing(name: str, tried: list[Path], errors: list[str]) -> DatasetMissing:
    where = ", ".join(str(p) for p in tried) or "nowhere (no --dataset-root given)"
    detail = f" ({errors[-1]})" if errors else ""
    return DatasetMissing(f"{name}: not found in {where}; expected {LAYOUTS[name]}{detail}")


def classification(name: str, root: str | Path | None, split: str, transform: Callable,
                   policy: ImagePolicy = ImagePolicy()) -> ListClassification:
    """Standard classification set ``name`` ('train' or 'test' split) with ``.classes`` and
    ``.templates``; DatasetMissing when its files are not under ``root``."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; standard ones are {', '.join(LAYOUTS)}")
    tried, errors = roots(name, root), []
    for folder in tried:
        try:
            images, labels, classes = _BUILDERS[name](folder, split == "train")
        except (RuntimeError, FileNotFoundError, OSError, ValueError) as e:  # torchvision: "Dataset not found"
            errors.append(str(e).splitlines()[0] if str(e) else type(e).__name__)
            continue
        dataset = ListClassification(images, labels, classes, transform, policy)
        dataset.templates = templates_for(name)
        return dataset
    raise _missing(name, tried, errors)


def _coco_captions(folder: Path) -> tuple[list[Path], list[list[str]]] | None:
    ann = folder / "coco_test_karpathy.json"
    if not ann.is_file():
        return None
    data = json.loads(ann.read_text(encoding="utf-8"))
    files = {im["id"]: folder / "val2014" / im["file_name"] for im in data["images"]}
    captions: dict[Any, list[str]] = {k: [] for k in files}
    for a in data["annotations"]:
        captions[a["image_id"]].append(a["caption"])
    return list(files.values()), list(captions.values())


def _flickr_txt(folder: Path) -> tuple[list[Path], list[list[str]]] | None:
    ann = folder / "flickr30k_test_karpathy.txt"
    if not ann.is_file():
        return None
    groups: dict[str, list[str]] = {}
    for line in ann.read_text(encoding="utf-8", errors="surrogateescape").splitlines()[1:]:
        image, sep, caption = line.partition(".jpg,")  # captions hold unquoted commas
        if sep:
            groups.setdefault(image + ".jpg", []).append(caption)
    return [folder / p for p in groups], list(groups.values())


def retrieval(name: str, root: str | Path | None, transform: Callable,
              policy: ImagePolicy = ImagePolicy()) -> CaptionDataset:
    """The test split of ``mscoco_captions`` or ``flickr30k`` (layouts in :data:`LAYOUTS`)."""
    reader, karpathy, images = ((_coco_captions, "dataset_coco.json", "") if name == "mscoco_captions"
                                else (_flickr_txt, "dataset_flickr30k.json", "flickr30k-images"))
    tried = roots(name, root)
    for folder in tried:
        found = reader(folder)
        if found is not None:
            return CaptionDataset(*found, transform, policy)
        if (folder / karpathy).is_file():
            image_root = folder / images if (folder / images).is_dir() else folder
            return karpathy_json(folder / karpathy, transform, image_root, "test", policy)
    raise _missing(name, tried, [])
