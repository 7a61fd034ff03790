"""The ``hiclip`` console command: a thin argparse layer over the library.

Each subcommand parses its options and calls one library function; errors the user
can fix (bad names, files, inputs) print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from . import factory


def _add_model_args(p: argparse.ArgumentParser, default: str = "HiCLIP-Tiny") -> None:
    p.add_argument("--model", default=default,
                   help="model name (see `hiclip models`), JSON config, or a checkpoint from `hiclip train` "
                        "(default: %(default)s)")
    p.add_argument("--pretrained", default=None, help="local weights file (open_clip / OpenAI state dict)")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=0.5, help="merge threshold tau (default: %(default)s)")


def _cmd_models(args: argparse.Namespace) -> int:
    for name in factory.list_models():
        cfg = factory.load_config(name)
        n = sum(p.numel() for p in factory.HiCLIP(cfg).parameters()) if args.params else None
        hier = "hierarchy" if cfg.has_hierarchy else "plain CLIP"
        size = f"{cfg.vision_cfg.image_size}px/{cfg.vision_cfg.patch_size}"
        print(f"{name:18s} {size:8s} {hier:11s}" + (f" {n / 1e6:7.1f}M params" if n else ""))
    return 0


def _cmd_parse(args: argparse.Namespace) -> int:
    from .induce.draw import draw_tree
    from .induce.run import caption_trees
    model, _, tokenizer = factory.load_for_inference(args.model, args.pretrained, args.device)
    trees, _ = caption_trees(model, tokenizer, args.captions, args.threshold)
    for i, tree in enumerate(trees):
        print(tree)
        if args.png:
            path = Path(args.png)
            path = path if len(trees) == 1 else path.with_name(f"{path.stem}-{i}{path.suffix}")
            draw_tree(tree, path)
            print(f"  picture: {path}")
    return 0


def _cmd_groups(args: argparse.Namespace) -> int:
    from .induce.draw import draw_groups, groups_gif
    from .induce.run import image_groups, load_image
    model, transform, _ = factory.load_for_inference(args.model, args.pretrained, args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = [load_image(p) for p in args.images]
    labels, _ = image_groups(model, transform, images, args.threshold)
    for path, image, lab in zip(args.images, images, labels):
        view = factory.unnormalise(transform(image))  # the crop the model saw
        stem = Path(path).stem
        draw_groups(view, lab, out / f"{stem}-groups.png")
        groups_gif(view, lab, out / f"{stem}-groups.gif")
        counts = " ".join(str(len(set(layer.ravel().tolist()))) for layer in lab)
        print(f"{path}: regions per layer {counts} -> {out / (stem + '-groups.png')}, {stem}-groups.gif")
    return 0


def _cmd_induce_eval(args: argparse.Namespace) -> int:
    from .induce.run import format_report, induce_eval
    model, transform, tokenizer = factory.load_for_inference(args.model, args.pretrained, args.device)
    report = induce_eval(model, transform, tokenizer, n=args.n, threshold=args.threshold, seed=args.seed,
                         split=args.split, gold_trees=args.gold_trees)
    report["model"], report["pretrained"] = args.model, args.pretrained
    print(format_report(report))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .eval.results import compare
    from .eval.run import run_eval
    if args.compare:
        print(compare(args.compare))
        return 0
    run_eval(args.model, args.pretrained, tasks=args.tasks, datasets=args.datasets, batch_size=args.batch_size,
             device=args.device, output_dir=args.output_dir, num_workers=args.workers,
             world_size=args.world_size, world_image_size=args.world_image_size, seed=args.seed,
             classnames_file=args.classnames, templates_file=args.templates, image_root=args.image_root,
             csv_image_key=args.csv_img_key, csv_caption_key=args.csv_caption_key, csv_sep=args.csv_sep)
    return 0


def _add_eval_parser(sub: argparse._SubParsersAction) -> None:
    from .eval.run import TASKS
    e = sub.add_parser("eval", help="zero-shot classification, retrieval, linear probe, compositional tests",
                       description="Evaluate a model; one CLIP_benchmark-style JSON per model x dataset x task.")
    e.add_argument("--model", help="model name, or a checkpoint from `hiclip train` (its model is read from it)")
    e.add_argument("--pretrained", help="weights file (a `hiclip train` checkpoint or a CLIP state dict)")
    e.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, metavar="TASK",
                   help=f"tasks (default: all of {', '.join(TASKS)})")
    e.add_argument("--datasets", nargs="+", default=["world"],
                   help="'world', 'world/<shape|colour|size|count|holdout>', an image folder root/<class>/*, "
                        "a .csv (image path, caption) or a COCO/Flickr30k Karpathy .json (default: world)")
    e.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    e.add_argument("--device", default="cpu", help="(default: %(default)s)")
    e.add_argument("--workers", type=int, default=0, help="data loader workers (default: %(default)s)")
    e.add_argument("--output-dir", default="results", help="where result JSONs go (default: %(default)s)")
    e.add_argument("--world-size", type=int, default=500, help="samples per world dataset (default: %(default)s)")
    e.add_argument("--world-image-size", type=int, default=64, help="world rendering size (default: %(default)s)")
    e.add_argument("--seed", type=int, default=0, help="world seed (default: %(default)s)")
    e.add_argument("--classnames", help="class-name file for an image folder (one per line, sorted-folder order)")
    e.add_argument("--templates", help="prompt template file (one per line, with {c} or {})")
    e.add_argument("--image-root", help="root for relative image paths in a .csv / Karpathy .json")
    e.add_argument("--csv-img-key", default="filepath", help="(default: %(default)s)")
    e.add_argument("--csv-caption-key", default="title", help="(default: %(default)s)")
    e.add_argument("--csv-sep", default=",", help="(default: %(default)r)")
    e.add_argument("--compare", nargs="+", metavar="RESULT_JSON", help="print result files side by side and exit")
    e.set_defaults(func=_cmd_eval)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo
    command = "hiclip " + " ".join(sys.argv[1:])
    cfg = DemoConfig(out=args.out, budget_minutes=args.budget_minutes, seeds=args.seeds, seed=args.seed,
                     device=args.device, steps=args.steps, lr=args.lr, eval_samples=args.eval_samples,
                     induce_samples=args.induce_samples, progress=not args.no_progress, commands=[command])
    run_demo(cfg)
    return 0


def _add_demo_parser(sub: argparse._SubParsersAction) -> None:
    from .demo import DemoConfig
    d = DemoConfig()
    p = sub.add_parser("demo", help="train HiCLIP-Tiny and CLIP-Tiny alike, evaluate both, write a report",
                       description="The main job: HiCLIP-Tiny vs CLIP-Tiny on the embedded world, same data, "
                                   "steps and seeds; evaluation, hierarchy induction and OUT/report.md + .html. "
                                   "Rerunning continues an interrupted run.")
    p.add_argument("--out", default=d.out, help="output directory (default: %(default)s)")
    p.add_argument("--budget-minutes", type=float, default=d.budget_minutes,
                   help="time budget; training steps are lowered to fit it (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=d.seeds, help="seeds per model, for mean ± sd (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="first seed (default: %(default)s)")
    p.add_argument("--steps", type=int, default=d.steps, help="training steps per run at most (default: %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate of both models (default: %(default)s)")
    p.add_argument("--eval-samples", type=int, default=d.eval_samples,
                   help="samples per evaluation dataset (default: %(default)s)")
    p.add_argument("--induce-samples", type=int, default=d.induce_samples,
                   help="captions / images scored for induced hierarchies (default: %(default)s)")
    p.add_argument("--device", default=d.device, help="(default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
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
    pa.set_defaults(func=_cmd_parse)

    g = sub.add_parser("groups", help="write per-layer region overlays (PNG + GIF) of images")
    g.add_argument("images", nargs="+", help="image files")
    g.add_argument("--out", default="groups_out", help="output directory (default: %(default)s)")
    _add_model_args(g)
    g.set_defaults(func=_cmd_groups)

    ie = sub.add_parser("induce-eval", help="score induced trees and groups against gold, with baselines")
    _add_model_args(ie)
    ie.add_argument("--n", type=int, default=500, help="captions / images from the embedded world (default: %(default)s)")
    ie.add_argument("--split", default="test", help="embedded-world split (default: %(default)s)")
    ie.add_argument("--seed", type=int, default=0, help="world seed (default: %(default)s)")
    ie.add_argument("--gold-trees", help="file of PTB-style bracketed trees, one per line, to score captions against")
    ie.add_argument("--out", help="write the JSON report here")
    ie.set_defaults(func=_cmd_induce_eval)

    _add_optional_commands(sub)
    return p


def _add_optional_commands(sub: argparse._SubParsersAction) -> None:
    """Commands whose modules register their own options: train, eval, demo, finetune."""
    _add_eval_parser(sub)
    _add_demo_parser(sub)
    from .train.cli_args import add_train_arguments, run_from_args
    t = sub.add_parser("train", help="pretrain a model (embedded world, WebDataset or CSV; DDP with torchrun)")
    add_train_arguments(t)
    t.set_defaults(func=run_from_args)
    _add_finetune_parsers(sub)


def _cmd_finetune(args: argparse.Namespace) -> int:
    from .train.cli_args import config_from_args
    from .train.loop import TrainingDiverged
    from .vl import FinetuneConfig, finetune
    from .vl.evaluate import format_metrics
    try:
        s = finetune(config_from_args(args, FinetuneConfig))
    except TrainingDiverged as e:
        print(f"hiclip finetune: error: {e}", file=sys.stderr)
        return 3
    print(f"fine-tuning {s['stopped']}: step {s['steps']}/{s['total_steps']}, {s['time_s']:.1f} s, "
          f"{s['samples_per_s']:.1f} samples/s, final train loss {s['final_loss']:.4f}")
    print("skipped examples: " + (", ".join(f"{r}: {n}" for r, n in sorted(s["skipped"].items())) or "none"))
    if s["final_val"]:
        print(f"val ({int(s['final_val']['samples'])} examples): {format_metrics(s['final_val'])}")
        print(f"results: {s['final_val']['results']}")
    print(f"checkpoint: {s['checkpoint']}")
    return 0


def _cmd_finetune_eval(args: argparse.Namespace) -> int:
    from .vl import evaluate_checkpoint
    from .vl.evaluate import format_metrics
    m = evaluate_checkpoint(args.checkpoint, args.split, args.task, args.samples, args.batch_size, args.workers,
                            args.device, args.output_dir, args.predictions)
    print(f"{args.split} ({int(m['samples'])} examples): {format_metrics(m)}\nresults: {m['results']}")
    return 0


def _add_finetune_parsers(sub: argparse._SubParsersAction) -> None:
    from .train.cli_args import add_train_arguments
    from .vl import FinetuneConfig
    f = sub.add_parser("finetune", help="fine-tune on VQA or visual entailment (world, VQA v2, SNLI-VE)",
                       description="Fine-tune a model's towers with a task head; ends with an evaluation on the "
                                   "validation split (results JSON in the output directory).")
    add_train_arguments(f, FinetuneConfig)
    f.set_defaults(func=_cmd_finetune)
    e = sub.add_parser("finetune-eval", help="evaluate a `hiclip finetune` checkpoint on a split",
                       description="Accuracy overall and per question type; a CLIP_benchmark-style results JSON.")
    e.add_argument("--checkpoint", required=True, help="a checkpoint written by `hiclip finetune`")
    e.add_argument("--split", default="val", help="val, test, holdout (world tasks) or train (default: %(default)s)")
    e.add_argument("--task", help="evaluate on this task spec instead of the checkpoint's (same classes)")
    e.add_argument("--samples", type=int, help="the first N examples only (world tasks: the split's size)")
    e.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    e.add_argument("--workers", type=int, default=0, help="data loader workers (default: %(default)s)")
    e.add_argument("--device", default="auto", help="(default: %(default)s)")
    e.add_argument("--output-dir", help="where the results JSON goes (default: the checkpoint's run directory)")
    e.add_argument("--predictions", action="store_true", help="also write per-example predictions (.jsonl)")
    e.set_defaults(func=_cmd_finetune_eval)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"hiclip {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
