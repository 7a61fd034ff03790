"""The ``hiclip`` console command: a thin argparse layer over the library.

Each subcommand parses its options and calls one library function; errors the user
can fix (bad names, files, inputs) print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

from . import factory
from .checkpoint import export_safetensors, read_info
from .data.images import DEFAULT_MAX_PIXELS, ImagePolicy, load_image
from .data.prepare import prepare
from .data.skips import Skip
from .demo import DemoConfig, run_demo
from .eval.results import benchmark_table, compare, markdown_table, read_results
from .cli_options import add_options, config_from_args
from .eval.run import OUTPUT_DIR, SUITES, TASKS, EvalSettings, run_benchmark, run_eval
from .eval.standard import LAYOUTS
from .induce.curve import checkpoint_curve, format_curve, plot_curve
from .induce.draw import draw_groups, draw_tree, groups_gif
from .induce.run import caption_trees, format_report, image_groups, induce_eval
from .induce.trees import METHODS, Readout
from .train import TrainConfig, TrainingDiverged, format_summary, train
from .vl import FinetuneConfig, evaluate_checkpoint, finetune
from .vl.evaluate import format_metrics


def _defaults(fn: Callable) -> dict[str, Any]:
    """The keyword defaults of a library function, so that an option's default is written once."""
    return {name: p.default for name, p in inspect.signature(fn).parameters.items()}


def _add_model_args(p: argparse.ArgumentParser, default: str = "HiCLIP-Tiny") -> None:
    p.add_argument("--model", default=default,
                   help="model name (see `hiclip models`), JSON config, or a checkpoint from `hiclip train` "
                        "(default: %(default)s)")
    p.add_argument("--pretrained", default=None, help="local weights file (open_clip / OpenAI state dict)")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=0.5, help="merge threshold tau (default: %(default)s)")


def _add_readout_args(p: argparse.ArgumentParser) -> None:
    d = Readout()
    p.add_argument("--readout", choices=METHODS, default=d.method,
                   help="tree read-out (docs/design.md §2; default: %(default)s, thresholds: --threshold)")
    p.add_argument("--down", type=float, default=d.down, help="tree_transformer: go down while the weakest "
                   "link exceeds this (default: %(default)s)")
    p.add_argument("--side", type=float, default=d.side, help="tree_transformer: a part goes one layer lower "
                   "when its weakest link exceeds this (default: %(default)s)")
    p.add_argument("--min-layer", type=int, default=d.min_layer, help="tree_transformer: spans merged at this "
                   "layer are flat (default: %(default)s)")
    p.add_argument("--flat", type=float, default=d.flat, help="aggregate: spans whose largest summed distance "
                   "is below this are flat (default: %(default)s)")


def _readout(args: argparse.Namespace):
    return Readout(args.readout, args.threshold, args.down, args.side, args.min_layer, args.flat)


def _cmd_models(args: argparse.Namespace) -> int:
    for name in factory.list_models():
        cfg = factory.load_config(name)
        n = sum(p.numel() for p in factory.HiCLIP(cfg).parameters()) if args.params else None
        hier = "hierarchy" if cfg.has_hierarchy else "plain CLIP"
        size = f"{cfg.vision_cfg.image_size}px/{cfg.vision_cfg.patch_size}"
        print(f"{name:18s} {size:8s} {hier:11s} {cfg.objective:7s}" + (f" {n / 1e6:7.1f}M params" if n else ""))
    return 0


def _cmd_parse(args: argparse.Namespace) -> int:
    model, _, tokenizer = factory.load_for_inference(args.model, args.pretrained, args.device)
    trees, _ = caption_trees(model, tokenizer, args.captions, readout=_readout(args))
    for i, tree in enumerate(trees):
        print(tree)
        if args.png:
            path = Path(args.png)
            path = path if len(trees) == 1 else path.with_name(f"{path.stem}-{i}{path.suffix}")
            draw_tree(tree, path)
            print(f"  picture: {path}")
    return 0


def _read_images(paths: list[str], policy) -> tuple[list[str], list]:
    """(paths, RGB images) of the readable ones; each unreadable one is named on stderr and left out."""
    kept, images = [], []
    for path in paths:
        try:
            images.append(load_image(path, policy))
            kept.append(path)
        except Skip as s:
            print(f"hiclip groups: skipping {path}: {s.reason}", file=sys.stderr)
    if not images:
        raise ValueError(f"cannot read image(s) {', '.join(paths)} (see above)")
    if len(kept) < len(paths):
        print(f"{len(paths) - len(kept)} of {len(paths)} image(s) skipped", file=sys.stderr)
    return kept, images


def _cmd_groups(args: argparse.Namespace) -> int:
    model, transform, _ = factory.load_for_inference(args.model, args.pretrained, args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths, images = _read_images(args.images, ImagePolicy(args.max_pixels, min_side=model.cfg.vision_cfg.image_size))
    labels, _ = image_groups(model, transform, images, args.threshold)
    for path, image, lab in zip(paths, images, labels):
        view = factory.unnormalise(transform(image))  # the crop the model saw
        stem = Path(path).stem
        draw_groups(view, lab, out / f"{stem}-groups.png")
        groups_gif(view, lab, out / f"{stem}-groups.gif")
        counts = " ".join(str(len(set(layer.ravel().tolist()))) for layer in lab)
        print(f"{path}: regions per layer {counts} -> {out / (stem + '-groups.png')}, {stem}-groups.gif")
    return 0


def _cmd_induce_eval(args: argparse.Namespace) -> int:
    tune = None if args.tune_split == "none" else args.tune_split
    if args.checkpoints:
        rows = checkpoint_curve(args.checkpoints, n=args.n, tune_n=args.tune_n, device=args.device)
        print(format_curve(rows))
        png = plot_curve(rows, Path(args.out).with_suffix(".png") if args.out else Path(args.checkpoints) / "curve.png")
        print(f"plot: {png}")
        if args.out:
            Path(args.out).write_text(json.dumps(rows, indent=2))
            print(f"wrote {args.out}")
        return 0
    model, transform, tokenizer = factory.load_for_inference(args.model, args.pretrained, args.device)
    report = induce_eval(model, transform, tokenizer, n=args.n, threshold=args.threshold, seed=args.seed,
                         split=args.split, gold_trees=args.gold_trees, tune_split=tune, tune_n=args.tune_n)
    report["model"], report["pretrained"] = args.model, args.pretrained
    print(format_report(report))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.compare:
        if any(Path(p).is_dir() for p in args.compare):  # one folder of results per model
            print(markdown_table(*benchmark_table(read_results(args.compare), SUITES["paper"])))
        else:
            print(compare(args.compare))
        return 0
    feature_cache = args.feature_cache or str(Path(args.output_dir) / "features")
    settings = config_from_args(args, EvalSettings, feature_cache=feature_cache)
    options = {**dataclasses.asdict(settings), "output_dir": args.output_dir}
    if args.benchmark:
        run_benchmark(args.model, args.pretrained, args.benchmark, **options)
    else:
        run_eval(args.model, args.pretrained, tasks=args.tasks, datasets=args.datasets, **options)
    return 0


def _add_eval_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("eval", help="zero-shot classification, retrieval, linear probe, compositional tests",
                       description="Evaluate a model; one CLIP_benchmark-style JSON per model x dataset x task.")
    e.add_argument("--model", help="model name, or a checkpoint from `hiclip train` (its model is read from it)")
    e.add_argument("--pretrained", help="weights file (a `hiclip train` checkpoint or a CLIP state dict)")
    e.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, metavar="TASK",
                   help=f"tasks (default: all of {', '.join(TASKS)})")
    e.add_argument("--datasets", nargs="+", default=list(_defaults(run_eval)["datasets"]),
                   help="'world', 'world/<shape|colour|size|count|holdout>', a standard dataset by its "
                        f"CLIP_benchmark name ({', '.join(LAYOUTS)}; files under --dataset-root), an image "
                        "folder root/<class>/* (with train/ and test/ also for linear_probe), a .csv / .tsv "
                        "(image path, caption) or a COCO/Flickr30k Karpathy .json (default: world)")
    e.add_argument("--benchmark", choices=["paper"], help="'paper': zero-shot on the HiCLIP paper's 11 datasets "
                                                          "present under --dataset-root; writes a Table-1-shaped "
                                                          "benchmark_paper.csv / .md beside the JSONs")
    e.add_argument("--output-dir", default=OUTPUT_DIR, help="where result JSONs go (default: %(default)s)")
    add_options(e, EvalSettings)
    e.add_argument("--compare", nargs="+", metavar="RESULTS",
                   help="result JSON files: metrics side by side; result folders (one per model): "
                        "the Table-1 shape of their zero-shot top-1 accuracies. Prints and exits")
    e.set_defaults(func=_cmd_eval)


def _cmd_prepare(args: argparse.Namespace) -> int:
    summary = prepare(args.csv, args.out, img_key=args.csv_img_key, caption_key=args.csv_caption_key,
                      sep=args.csv_sep, image_root=args.image_root, size=args.size, max_pixels=args.max_pixels,
                      samples_per_shard=args.samples_per_shard, quality=args.quality, workers=args.workers)
    skipped = ", ".join(f"{k}: {v}" for k, v in sorted(summary["skipped"].items())) or "none"
    print(f"wrote {summary['samples']} samples in {len(summary['shards'])} shard(s) to {args.out} "
          f"(skipped: {skipped})\ntrain on them with: hiclip train --data \"wds:{summary['pattern']}\" ...")
    return 0


def _add_prepare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="turn a CSV of local images into resized WebDataset shards",
                       description="Decode every image of a CSV / TSV once (pixel limit, EXIF, transparency as "
                                   "in training), shrink it to a shorter side of --size, and write JPEG + caption "
                                   "WebDataset shards with a sizes.json, so that training is not decode-bound.")
    p.add_argument("csv", nargs="+", help="CSV / TSV files with an image-path and a caption column")
    p.add_argument("--out", required=True, help="output folder for the shards")
    d = _defaults(prepare)
    p.add_argument("--size", type=int, default=d["size"],
                   help="shorter side in pixels, never enlarged (default: %(default)s)")
    p.add_argument("--csv-img-key", default=d["img_key"], help="(default: %(default)s)")
    p.add_argument("--csv-caption-key", default=d["caption_key"], help="(default: %(default)s)")
    p.add_argument("--csv-sep", default=d["sep"], help="(default: ',' for .csv, tab for .tsv)")
    p.add_argument("--image-root", help="root for relative image paths (default: each CSV's folder)")
    p.add_argument("--max-pixels", type=int, default=d["max_pixels"],
                   help="skip (and count) larger images (default: %(default)s, PIL's limit)")
    p.add_argument("--samples-per-shard", type=int, default=d["samples_per_shard"], help="(default: %(default)s)")
    p.add_argument("--quality", type=int, default=d["quality"], help="JPEG quality (default: %(default)s)")
    p.add_argument("--workers", type=int, default=d["workers"],
                   help="decoding processes, 0: in this one (default: %(default)s)")
    p.set_defaults(func=_cmd_prepare)


def _cmd_export(args: argparse.Namespace) -> int:
    out = export_safetensors(args.checkpoint, args.out)
    info = read_info(out)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, model {info.get('model', 'unnamed')}, "
          f"step {info.get('step', '-')}); load it with --model {out} or pretrained={out}")
    return 0


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a checkpoint's weights as a .safetensors file",
                       description="Copy the model weights of a `hiclip train` checkpoint (or any state dict "
                                   "file) to a .safetensors file, which loads without pickle; the model name "
                                   "and config go into its metadata.")
    p.add_argument("checkpoint", help="a checkpoint or state dict file (.pt)")
    p.add_argument("--out", required=True, help="the .safetensors file to write")
    p.set_defaults(func=_cmd_export)


def _cmd_demo(args: argparse.Namespace) -> int:
    command = "hiclip " + " ".join(sys.argv[1:])
    run_demo(config_from_args(args, DemoConfig, commands=[command]))  # bad values: ValueError, see main
    return 0


def _add_demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train HiCLIP-Tiny and CLIP-Tiny alike, evaluate both, write a report",
                       description="The main job: HiCLIP-Tiny vs CLIP-Tiny on the embedded world, same data, "
                                   "steps and seeds; evaluation, hierarchy induction and OUT/report.md + .html. "
                                   "Rerunning continues an interrupted run.")
    add_options(p, DemoConfig)
    p.set_defaults(func=_cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hiclip", description="HiCLIP: CLIP with hierarchy-aware attention.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("models", help="list the built-in model configs")
    m.add_argument("--params", action="store_true", help="also count parameters (builds each model)")
    m.set_defaults(func=_cmd_models)

    pa = sub.add_parser("parse", help="print (and draw) the induced parse tree of captions")
    pa.add_argument("captions", nargs="+", help="one or more captions")
    pa.add_argument("--png", help="also draw the tree to this PNG/SVG file (numbered when several)")
    _add_model_args(pa)
    _add_readout_args(pa)
    pa.set_defaults(func=_cmd_parse)

    g = sub.add_parser("groups", help="write per-layer region overlays (PNG + GIF) of images")
    g.add_argument("images", nargs="+", help="image files")
    g.add_argument("--out", default="groups_out", help="output directory (default: %(default)s)")
    g.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="skip images larger than this many pixels (default: %(default)s, PIL's limit)")
    _add_model_args(g)
    g.set_defaults(func=_cmd_groups)

    ie = sub.add_parser("induce-eval", help="score induced trees and groups against gold, with baselines")
    _add_model_args(ie)
    ie.add_argument("--n", type=int, default=500, help="captions / images from the embedded world (default: %(default)s)")
    ie.add_argument("--split", default="test", help="embedded-world split (default: %(default)s)")
    ie.add_argument("--seed", type=int, default=0, help="world seed (default: %(default)s)")
    ie.add_argument("--gold-trees", help="file of PTB-style bracketed trees, one per line, to score captions against")
    ie.add_argument("--tune-split", default="val", help="world split on which the tree read-out and the image-group "
                    "layer/threshold are chosen, or 'none' for top-down at --threshold (default: %(default)s)")
    ie.add_argument("--tune-n", type=int, default=None, help="samples of the tuning split (default: --n)")
    ie.add_argument("--checkpoints", help="a run's checkpoint folder: score every step_N.pt / latest.pt and plot "
                    "tree F1 and ARI against the training step")
    ie.add_argument("--out", help="write the JSON report here (with --checkpoints: the rows, and a PNG beside it)")
    ie.set_defaults(func=_cmd_induce_eval)

    _add_optional_commands(sub)
    return p


def _add_optional_commands(sub: argparse._SubParsersAction) -> None:
    """Commands whose modules register their own options: train, eval, demo, finetune."""
    _add_eval_parser(sub)
    _add_export_parser(sub)
    _add_prepare_parser(sub)
    _add_demo_parser(sub)
    t = sub.add_parser("train", help="pretrain a model (embedded world, WebDataset or CSV; DDP with torchrun)",
                       description="Contrastive pretraining; under torchrun, `python -m hiclip.train` takes the "
                                   "same options.")
    add_options(t, TrainConfig)
    t.set_defaults(func=_cmd_train)
    _add_finetune_parsers(sub)


def _cmd_train(args: argparse.Namespace) -> int:
    summary = train(config_from_args(args, TrainConfig))
    if os.environ.get("RANK", "0") == "0":
        print(format_summary(summary))
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    s = finetune(config_from_args(args, FinetuneConfig))
    print(f"fine-tuning {s['stopped']}: step {s['steps']}/{s['total_steps']}, {s['time_s']:.1f} s, "
          f"{s['samples_per_s']:.1f} samples/s, final train loss {s['final_loss']:.4f}")
    print("skipped examples: " + (", ".join(f"{r}: {n}" for r, n in sorted(s["skipped"].items())) or "none"))
    if s["final_val"]:
        print(f"val ({int(s['final_val']['samples'])} examples): {format_metrics(s['final_val'])}")
        print(f"results: {s['final_val']['results']}")
    print(f"checkpoint: {s['checkpoint']}")
    return 0


def _cmd_finetune_eval(args: argparse.Namespace) -> int:
    m = evaluate_checkpoint(args.checkpoint, args.split, args.task, args.samples, args.batch_size, args.workers,
                            args.device, args.output_dir, args.predictions)
    print(f"{args.split} ({int(m['samples'])} examples): {format_metrics(m)}\nresults: {m['results']}")
    return 0


def _add_finetune_parsers(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("finetune", help="fine-tune on VQA or visual entailment (world, VQA v2, SNLI-VE)",
                       description="Fine-tune a model's towers with a task head; ends with an evaluation on the "
                                   "validation split (results JSON in the output directory).")
    add_options(f, FinetuneConfig)
    f.set_defaults(func=_cmd_finetune)
    e = sub.add_parser("finetune-eval", help="evaluate a `hiclip finetune` checkpoint on a split",
                       description="Accuracy overall and per question type; a CLIP_benchmark-style results JSON.")
    e.add_argument("--checkpoint", required=True, help="a checkpoint written by `hiclip finetune`")
    d = _defaults(evaluate_checkpoint)
    e.add_argument("--split", default=d["split"], help="val, test, holdout (world tasks) or train "
                                                       "(default: %(default)s)")
    e.add_argument("--task", help="evaluate on this task spec instead of the checkpoint's (same classes)")
    e.add_argument("--samples", type=int, help="the first N examples only (world tasks: the split's size)")
    e.add_argument("--batch-size", type=int, default=d["batch_size"], help="(default: %(default)s)")
    e.add_argument("--workers", type=int, default=d["workers"], help="data loader workers (default: %(default)s)")
    e.add_argument("--device", default=d["device"], help="(default: %(default)s)")
    e.add_argument("--output-dir", help="where the results JSON goes (default: the checkpoint's run directory)")
    e.add_argument("--predictions", action="store_true", help="also write per-example predictions (.jsonl)")
    e.set_defaults(func=_cmd_finetune_eval)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:  # bad input, a missing or unwritable file, a full disk, a folder in use
        print(f"hiclip {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a third Ctrl-C (the first asks for a clean stop with a checkpoint)
        print(f"hiclip {args.command}: interrupted; the last complete checkpoint is kept", file=sys.stderr)
        return 130
    except TrainingDiverged as e:  # train, finetune
        print(f"hiclip {args.command}: error: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
