"""From a model to hierarchies: caption trees and image groups for `hiclip parse`, `hiclip groups`
and `hiclip induce-eval` (the model's link read-out -> :mod:`trees` / :mod:`groups` -> :mod:`scores`).
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import nltk
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data.skips import Skip, check_caption
from ..data.world import ShapesWorld
from ..protocols import HierarchyModel, Tokenizer
from .diagnose import colour_links, edge_table, gap_table, indifference, patch_colours, raw_links
from .groups import group_labels
from .scores import bracket_report, group_report, layer_scores, masks_to_grid, read_trees
from .select import (COLOUR_THRESHOLDS, ari_at, choose_grouping, choose_readout, label_recall, mean_links,
                     readout_candidates, root_splits)
from .trees import CaptionWords, Readout, Tree, caption_words, tree_of

_WORD = re.compile(r"\w", re.UNICODE)


def _device_of(model: HierarchyModel) -> torch.device:
    return next(model.parameters()).device


def parseable(text: str) -> None:
    """A caption with words to parse, by training's caption check plus a word: ValueError otherwise."""
    try:
        check_caption(text)
    except Skip as s:
        raise ValueError(f"caption {text!r}: {s.reason}, nothing to parse") from None
    if not _WORD.search(text):
        raise ValueError(f"caption {text!r} is only punctuation: nothing to parse")


CaptionLinks = tuple[np.ndarray, list[int], bool]
"""One caption's token links (L, n-1), its n content token ids, and whether it was truncated."""


@torch.no_grad()
def caption_links(model: HierarchyModel, tokenizer: Tokenizer, captions: Sequence[str], batch_size: int = 256,
                  progress: bool = False) -> tuple[list[CaptionLinks], float]:
    """Per caption its link table, ids and truncation flag; and the encoder seconds.

    Captions longer than the context are truncated by the tokenizer (flag set)."""
    for c in captions:
        parseable(c)
    ctx = model.context_length
    out, forward_s = [], 0.0
    for start in tqdm(range(0, len(captions), batch_size), desc="captions", disable=not progress):
        chunk = list(captions[start:start + batch_size])
        tokens = tokenizer(chunk).to(_device_of(model))
        t0 = time.perf_counter()
        _, hier = model.encode_text(tokens, return_hierarchy=True)
        forward_s += time.perf_counter() - t0
        links = hier.links.double().cpu().numpy()
        for b, text in enumerate(chunk):
            n = int(hier.lengths[b])
            out.append((links[b, :, :max(n - 1, 0)], tokens[b, 1:1 + n].tolist(),
                        len(tokenizer.encode(text)) > ctx - 2))
    return out, forward_s


def trees_from_links(items: Sequence[CaptionLinks], readout: Readout, decoder: Mapping[int, str] | None = None
                     ) -> list[Tree]:
    """Trees of :func:`caption_links` output under one read-out."""
    return [tree_of(c, readout) for c in prepared_captions(items, decoder)]


def prepared_captions(items: Sequence[CaptionLinks], decoder: Mapping[int, str] | None = None) -> list[CaptionWords]:
    """:func:`caption_links` output as words and word links, ready for any read-out."""
    return [caption_words(links, ids, truncated, decoder) for links, ids, truncated in items]


def caption_trees(model: HierarchyModel, tokenizer: Tokenizer, captions: Sequence[str], threshold: float = 0.5,
                  batch_size: int = 256, progress: bool = False, readout: Readout | None = None
                  ) -> tuple[list[Tree], float]:
    """Induce a tree per caption (``readout``, default top-down at ``threshold``).
    Returns (trees, seconds spent in the encoder forward pass); truncated captions'
    trees are marked ``truncated`` (printed with a trailing "…")."""
    items, forward_s = caption_links(model, tokenizer, captions, batch_size, progress)
    readout = Readout(threshold=threshold) if readout is None else readout
    return trees_from_links(items, readout, tokenizer.decoder), forward_s


@torch.no_grad()
def image_links(model: HierarchyModel, transform: Callable, images: Sequence[Image.Image], batch_size: int = 128,
                progress: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """Grid links of every image: h (B, L, H, W-1), v (B, L, H-1, W); and the encoder seconds."""
    hs, vs, forward_s = [], [], 0.0
    for start in tqdm(range(0, len(images), batch_size), desc="images", disable=not progress):
        batch = torch.stack([transform(im) for im in images[start:start + batch_size]]).to(_device_of(model))
        t0 = time.perf_counter()
        _, hier = model.encode_image(batch, return_hierarchy=True)
        forward_s += time.perf_counter() - t0
        hs.append(hier.h.double().cpu().numpy())
        vs.append(hier.v.double().cpu().numpy())
    return np.concatenate(hs), np.concatenate(vs), forward_s


def image_groups(model: HierarchyModel, transform: Callable, images: Sequence[Image.Image], threshold: float = 0.5,
                 batch_size: int = 128, progress: bool = False) -> tuple[list[np.ndarray], float]:
    """Per image the per-layer region labels (L, H, W). Returns (labels, encoder seconds)."""
    h, v, forward_s = image_links(model, transform, images, batch_size, progress)
    return list(group_labels(h, v, threshold)), forward_s


def _nanmean_layers(tables: Sequence[np.ndarray]) -> list[float]:
    """Per-layer mean over tables (L, n) each, NaN (already joined) entries left out."""
    return np.nanmean(np.concatenate(tables, axis=1), axis=1).tolist() if tables else []


def _world_samples(model: HierarchyModel, split: str, n: int, seed: int, progress: bool) -> list:
    world = ShapesWorld(split=split, size=n, image_size=model.cfg.vision_cfg.image_size, seed=seed)
    return [world[i] for i in tqdm(range(n), desc=f"rendering {split}", disable=not progress)]


def _gold_grids(model: HierarchyModel, samples: Sequence) -> list[np.ndarray]:
    return [masks_to_grid(s.masks, *model.cfg.vision_cfg.grid) for s in samples]


def _colours(model: HierarchyModel, samples: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """The no-model control's links (B, 1, H, W-1), (B, 1, H-1, W): mean-colour similarity of patches."""
    grid = model.cfg.vision_cfg.grid
    h, v = colour_links(np.stack([patch_colours(s.image, *grid) for s in samples]))
    return h[:, None], v[:, None]


def _grouping_links(h: np.ndarray, v: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The links a grouping thresholds: the cumulative ``a^l`` or each layer's own (``raw``) links."""
    return (h, v) if kind == "cumulative" else (raw_links(h, axis=1), raw_links(v, axis=1))


def tune_readouts(model: HierarchyModel, transform: Callable, tokenizer: Tokenizer, samples: Sequence,
                  progress: bool = False) -> dict[str, Any]:
    """Choose the caption-tree read-out and the image-group (layer, threshold) on ``samples``
    (world samples of a validation split): ``{"readout": Readout, "grouping": {...}, ...}``."""
    out: dict[str, Any] = {"n": len(samples)}
    if model.cfg.text_cfg.has_hierarchy:
        items, _ = caption_links(model, tokenizer, [s.caption for s in samples], progress=progress)
        gold = [nltk.Tree.fromstring(s.tree) for s in samples]
        captions = prepared_captions(items, tokenizer.decoder)  # once, for all read-outs
        best, table = choose_readout(lambda r: [tree_of(c, r) for c in captions],
                                     readout_candidates(items[0][0].shape[0]), gold)
        out["readout"], out["readout_f1"] = best, table
    if model.cfg.vision_cfg.has_hierarchy:
        h, v, _ = image_links(model, transform, [s.image for s in samples], progress=progress)
        grids = _gold_grids(model, samples)
        choices = [choose_grouping(*_grouping_links(h, v, kind), grids) | {"kind": kind}
                   for kind in ("cumulative", "raw")]
        out["grouping"] = max(choices, key=lambda c: c["ari"])  # ties: cumulative
        out["grouping_cumulative"] = choices[0]
        out["colour"] = choose_grouping(*_colours(model, samples), grids, COLOUR_THRESHOLDS)
    return out


def score_hierarchies(model: HierarchyModel, transform: Callable, tokenizer: Tokenizer, samples: Sequence,
                      tuned: dict[str, Any] | None = None, threshold: float = 0.5, seed: int = 0,
                      gold: Sequence | None = None, progress: bool = False) -> dict[str, Any]:
    """Trees and groups of ``samples`` scored against their gold structure, with the read-out
    settings of ``tuned`` (from :func:`tune_readouts` on another split) and, for reference,
    the fixed top-down read-out at ``threshold``. ``gold`` replaces the samples' trees
    (the captions are then the gold trees' leaves)."""
    tuned = tuned or {}
    report: dict[str, Any] = {}
    if model.cfg.text_cfg.has_hierarchy:
        gold = list(gold) if gold is not None else [nltk.Tree.fromstring(s.tree) for s in samples]
        t0 = time.perf_counter()
        items, fwd = caption_links(model, tokenizer, [" ".join(g.leaves()) for g in gold], progress=progress)
        fixed = Readout(threshold=threshold)
        readout = tuned.get("readout", fixed)
        captions = prepared_captions(items, tokenizer.decoder)
        trees = [tree_of(c, readout) for c in captions]
        t = bracket_report(trees, gold, seed=seed)
        t["readout"] = readout.label()
        t["readout_params"] = asdict(readout)
        if readout != fixed:
            t["fixed_readout"] = {"readout": fixed.label(), **bracket_report(
                [tree_of(c, fixed) for c in captions], gold, seed=seed, draws=0)["induced"]}
        kept = [i for i, tr in enumerate(trees) if not tr.truncated]
        t["label_recall"] = label_recall([trees[i] for i in kept], [gold[i] for i in kept])
        t["root_splits"] = root_splits(trees)
        t["mean_link_per_layer"] = mean_links([links for links, _, _ in items])
        t["mean_raw_link_per_layer"] = _nanmean_layers([raw_links(links) for links, _, _ in items if links.size])
        t["indifference"] = 0.5  # the neighbour softmax's "no preference" link of a chain token
        t["gap_types"] = gap_table(items, gold, tokenizer.decoder)
        t["timing_s"] = {"encoder": fwd, "induction": time.perf_counter() - t0 - fwd}
        report["trees"] = t
        report["examples"] = [str(tr) for tr in trees[:5]]
    if model.cfg.vision_cfg.has_hierarchy:
        t0 = time.perf_counter()
        h, v, fwd = image_links(model, transform, [s.image for s in samples], progress=progress)
        grids = _gold_grids(model, samples)
        g = group_report(list(group_labels(h, v, threshold)), grids)
        for key, name in (("grouping", "chosen"), ("grouping_cumulative", "chosen_cumulative")):
            if key in tuned:
                c = tuned[key]
                g[name] = {"kind": c.get("kind", "cumulative"), "layer": c["layer"], "threshold": c["threshold"],
                           "ari": ari_at(*_grouping_links(h, v, c.get("kind", "cumulative")), grids,
                                         c["layer"], c["threshold"]), "val_ari": c["ari"]}
        if "colour" in tuned:
            tau = tuned["colour"]["threshold"]
            labels = group_labels(*_colours(model, samples), tau)
            per = [layer_scores(lab, gold_grid) for lab, gold_grid in zip(labels, grids)]
            g["baseline_colour"] = {"threshold": tau, "ari": float(np.mean([p["ari"][0] for p in per])),
                                    "best_iou": float(np.nanmean([p["best_iou"][0] for p in per]))}
        g["mean_link_per_layer"] = [float(np.concatenate([h[:, l].ravel(), v[:, l].ravel()]).mean())
                                    for l in range(h.shape[1])]
        rh, rv = _grouping_links(h, v, "raw")
        g["mean_raw_link_per_layer"] = [float(np.nanmean(np.concatenate([rh[:, l].ravel(), rv[:, l].ravel()])))
                                        for l in range(h.shape[1])]
        ih, iv = indifference(*grids[0].shape)
        g["indifference"] = float(np.concatenate([ih.ravel(), iv.ravel()]).mean())
        g["edge_types"] = edge_table(h, v, grids)
        g["timing_s"] = {"encoder": fwd, "induction": time.perf_counter() - t0 - fwd}
        report["groups"] = g
    return report


def induce_eval(model: HierarchyModel, transform: Callable, tokenizer: Tokenizer, n: int = 500, threshold: float = 0.5,
                seed: int = 0, split: str = "test", gold_trees: str | Path | None = None,
                progress: bool = True, tune_split: str | None = "val", tune_n: int | None = None
                ) -> dict[str, Any]:
    """Score induced caption trees and image groups against gold structure.

    Read-out settings (tree read-out and thresholds, image-group layer and threshold) are
    chosen on the world's ``tune_split`` (``tune_n`` samples, default ``n``; None: no
    tuning, the top-down read-out at ``threshold``), then ``n`` samples of ``split`` are
    scored. Captions and gold trees come from the world's ``split``, or from
    ``gold_trees``: a file of PTB-style bracketed trees, one per line, whose leaves are the
    sentence. Images and gold masks come from the embedded world. Returns a JSON-ready
    dict with the scores, the baselines, diagnostics and timings.
    """
    if tune_split is not None and tune_split == split:
        raise ValueError(f"read-outs must be chosen on another split than the one scored ({split!r})")
    tuned = {}
    if tune_split is not None:
        tuned = tune_readouts(model, transform, tokenizer,
                              _world_samples(model, tune_split, tune_n or n, seed, progress), progress)
    samples = _world_samples(model, split, n, seed, progress)
    gold = read_trees(gold_trees) if gold_trees is not None else None
    report: dict[str, Any] = {"n_captions": len(gold) if gold is not None else n, "n_images": n,
                              "threshold": threshold, "split": split, "tune_split": tune_split}
    report |= score_hierarchies(model, transform, tokenizer, samples, tuned, threshold, seed, gold, progress)
    if "grouping" in tuned:
        report["groups"]["validation"] = tuned["grouping"]
    if "readout_f1" in tuned:
        report["trees"]["validation"] = sorted(tuned["readout_f1"], key=lambda x: -x[1])[:10]
    return report


def validation_report(model: HierarchyModel, transform: Callable, tokenizer: Tokenizer, n: int = 400, seed: int = 0
                      ) -> dict[str, Any]:
    """Hierarchy scores for ablations, on the validation split only: read-outs chosen on its
    first half and scored on its second half: the flat keys of :func:`flatten_report` and the
    full report under ``report``."""
    samples = _world_samples(model, "val", n, seed, progress=False)
    tuned = tune_readouts(model, transform, tokenizer, samples[: n // 2])
    report = score_hierarchies(model, transform, tokenizer, samples[n // 2:], tuned, seed=seed)
    return flatten_report(report) | {"report": report}


def flatten_report(report: dict[str, Any]) -> dict[str, Any]:
    """The headline scores of a report (:func:`induce_eval`, :func:`score_hierarchies`), flat.

    Trees: ``tree_f1`` (the chosen read-out), ``tree_f1_topdown`` (top-down, τ 0.5), ``readout``,
    the baselines ``right_branching_f1``, ``left_branching_f1``, ``random_f1``, and ``np_recall``
    (noun phrases found). Groups with a chosen layer and threshold: ``ari`` there, ``grouping``
    (the choice: links kind, layer, τ), ``ari_cumulative`` (the best cumulative-link choice),
    ``colour_ari`` (the no-model colour control), ``blocks_ari`` (the better of the 2×2 and 4×4 block
    baselines) and ``best_iou`` (the chosen layer at the fixed threshold). Keys of a missing part are absent."""
    flat: dict[str, Any] = {}
    if "trees" in report:
        t = report["trees"]
        flat["tree_f1"] = t["induced"]["corpus_f1"]
        flat["tree_f1_topdown"] = t.get("fixed_readout", t["induced"])["corpus_f1"]
        flat["readout"] = t["readout"]
        for name in ("right_branching", "left_branching", "random"):
            flat[f"{name}_f1"] = t[name]["corpus_f1"]
        if "NP" in t.get("label_recall", {}):
            flat["np_recall"] = t["label_recall"]["NP"]["recall"]
    if "chosen" in report.get("groups", {}):
        g = report["groups"]
        chosen = g["chosen"]
        flat["ari"] = chosen["ari"]
        flat["grouping"] = {k: chosen[k] for k in ("kind", "layer", "threshold") if k in chosen}
        flat["blocks_ari"] = max(g["baseline_blocks2"]["ari"], g["baseline_blocks4"]["ari"])
        flat["best_iou"] = g["best_iou"][chosen["layer"]]
        if "chosen_cumulative" in g:
            flat["ari_cumulative"] = g["chosen_cumulative"]["ari"]
        if "baseline_colour" in g:
            flat["colour_ari"] = g["baseline_colour"]["ari"]
    return flat


def format_report(report: dict[str, Any]) -> str:
    """A short plain-text table of an :func:`induce_eval` report."""
    lines = []
    tuned = f", read-outs chosen on '{report['tune_split']}'" if report.get("tune_split") else ""
    if "trees" in report:
        t = report["trees"]
        lines.append(f"Caption trees ({report['n_captions']} captions of '{report.get('split', 'test')}'{tuned}; "
                     "unlabeled bracket F1, corpus / sentence):")
        rows = [(f"induced {t['readout']}" if "readout" in t else "induced", t["induced"])]
        if "fixed_readout" in t:
            rows.append((f"induced {t['fixed_readout']['readout']}", t["fixed_readout"]))
        rows += [(name, t[name]) for name in ("left_branching", "right_branching", "random")]
        width = max(len(name) for name, _ in rows)
        for name, r in rows:
            lines.append(f"  {name:{width}s}  F1 {r['corpus_f1']:.3f} / {r['sentence_f1']:.3f}   "
                         f"P {r['corpus_precision']:.3f}  R {r['corpus_recall']:.3f}")
        if "label_recall" in t:
            lines.append("  recall by gold label: " + "  ".join(
                f"{k} {v['recall']:.2f} (n={v['count']})" for k, v in t["label_recall"].items()))
            lines.append("  root split between: " + ", ".join(f"'{pair}' ×{c}" for pair, c in t["root_splits"][:6]))
            lines.append("  mean link per layer: " + " ".join(f"{x:.2f}" for x in t["mean_link_per_layer"]))
        if "mean_raw_link_per_layer" in t:
            lines.append("  mean raw link per layer: " + " ".join(f"{x:.2f}" for x in t["mean_raw_link_per_layer"])
                         + f"  (no preference under the neighbour softmax: {t['indifference']:.2f})")
        for gap, row in list(t.get("gap_types", {}).items())[:6]:
            lines.append(f"    gap {gap:8s} (n={row['count']}): raw link " + " ".join(
                f"{x:.2f}" if x is not None else "  - " for x in row["mean_raw_link"]))
    if "groups" in report:
        g = report["groups"]
        lines.append(f"Image groups ({g['n_images']} images; per layer, low -> high, τ {report['threshold']}):")
        lines.append("  ARI       " + "  ".join(f"{x:.3f}" for x in g["ari"]))
        lines.append("  best IoU  " + "  ".join(f"{x:.3f}" if x is not None else "  -  " for x in g["best_iou"]))
        if "chosen" in g:
            c = g["chosen"]
            lines.append(f"  chosen on validation: {c.get('kind', 'cumulative')} links, layer {c['layer']}, "
                         f"τ {c['threshold']}: ARI {c['ari']:.3f} (validation {c['val_ari']:.3f})")
        for name in [k for k in g if k.startswith("baseline_")]:
            b = g[name]
            lines.append(f"  {name[9:]:8s}  ARI {b['ari']:.3f}  best IoU {b['best_iou']:.3f}")
        if "mean_link_per_layer" in g:
            lines.append("  mean link per layer: " + " ".join(f"{x:.2f}" for x in g["mean_link_per_layer"]))
        if "mean_raw_link_per_layer" in g:
            lines.append("  mean raw link per layer: " + " ".join(f"{x:.2f}" for x in g["mean_raw_link_per_layer"])
                         + f"  (no preference under the neighbour softmax: {g['indifference']:.2f})")
        for kind, row in g.get("edge_types", {}).items():
            lines.append(f"    {kind:10s} edges (n={row['count']}): raw link " + " ".join(
                f"{x:.2f}" if x is not None else "  - " for x in row["mean_raw_link"]))
    return "\n".join(lines)
