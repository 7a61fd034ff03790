"""hiclip.induce.run and the parse / groups / induce-eval commands, end to end on HiCLIP-Tiny."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import hiclip
from hiclip.cli import main
from hiclip.data import ShapesWorld
from hiclip.induce import group_labels, induce_tree
from hiclip.induce.run import caption_trees, image_groups, induce_eval


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, _, transform = hiclip.create_model_and_transforms("HiCLIP-Tiny")
    return model.eval(), transform, hiclip.get_tokenizer("HiCLIP-Tiny")


def test_caption_trees_follow_the_models_links(tiny):
    model, _, tok = tiny
    text = "a large red circle to the left of a small blue square"
    trees, seconds = caption_trees(model, tok, [text, "a green star"])
    assert seconds > 0 and not trees[0].truncated
    with torch.no_grad():
        _, hier = model.encode_text(tok([text]), return_hierarchy=True)
    n = int(hier.lengths[0])
    expect = induce_tree(hier.links[0, :, :n - 1], tok.encode(text), decoder=tok.decoder)
    assert str(trees[0]) == str(expect)
    assert trees[0].words == text.split() and trees[1].words == ["a", "green", "star"]


def test_long_caption_is_truncated_and_marked(tiny):
    model, _, tok = tiny
    trees, _ = caption_trees(model, tok, [" ".join(["red circle"] * 30)])
    assert trees[0].truncated and str(trees[0]).endswith("…")
    assert len(trees[0].words) == model.context_length - 2


@pytest.mark.parametrize("text,match", [("", "empty caption"), ("   ", "empty caption"),
                                        ("?! ...", "only punctuation")])
def test_bad_captions(tiny, text, match):
    model, _, tok = tiny
    with pytest.raises(ValueError, match=match):
        caption_trees(model, tok, [text])


def test_image_groups_match_links(tiny):
    model, transform, _ = tiny
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    labels, _ = image_groups(model, transform, [image], threshold=0.5)
    with torch.no_grad():
        _, hier = model.encode_image(transform(image)[None], return_hierarchy=True)
    assert labels[0].shape == (4, 8, 8)
    np.testing.assert_array_equal(labels[0], group_labels(hier.h[0].numpy(), hier.v[0].numpy(), 0.5))


def test_induce_eval_reports_scores_and_baselines(tiny):
    model, transform, tok = tiny
    report = induce_eval(model, transform, tok, n=12, progress=False)
    assert report["trees"]["induced"]["n_sentences"] == 12
    for key in ("left_branching", "right_branching", "random"):
        assert 0 <= report["trees"][key]["corpus_f1"] <= 1
    assert len(report["groups"]["ari"]) == 4 and "baseline_blocks2" in report["groups"]
    json.dumps(report)  # JSON-ready


def test_induce_eval_chooses_between_cumulative_and_raw_links_and_scores_the_colour_control(tiny):
    """The chosen grouping is the better (on validation) of the cumulative and the per-layer links; its
    test ARI is recomputed here from the links; the colour control is scored at its validation τ."""
    from hiclip.induce.diagnose import colour_links, patch_colours, raw_links
    from hiclip.induce.run import _world_samples, image_links
    from hiclip.induce.scores import masks_to_grid
    from sklearn.metrics import adjusted_rand_score
    model, transform, tok = tiny
    report = induce_eval(model, transform, tok, n=10, progress=False)
    g = report["groups"]
    chosen, cumulative, colour = g["chosen"], g["chosen_cumulative"], g["baseline_colour"]
    assert chosen["kind"] in ("cumulative", "raw") and cumulative["kind"] == "cumulative"
    assert chosen["val_ari"] >= cumulative["val_ari"]
    samples = _world_samples(model, "test", 10, 0, False)
    gold = [masks_to_grid(s.masks, 8, 8) for s in samples]
    h, v, _ = image_links(model, transform, [s.image for s in samples])
    if chosen["kind"] == "raw":
        h, v = raw_links(h, axis=1), raw_links(v, axis=1)
    labels = group_labels(h[:, chosen["layer"]], v[:, chosen["layer"]], chosen["threshold"])
    assert chosen["ari"] == pytest.approx(np.mean([adjusted_rand_score(a.ravel(), b.ravel())
                                                   for a, b in zip(gold, labels)]))
    ch, cv = colour_links(np.stack([patch_colours(s.image, 8, 8) for s in samples]))
    labels = group_labels(ch, cv, colour["threshold"])
    assert colour["ari"] == pytest.approx(np.mean([adjusted_rand_score(a.ravel(), b.ravel())
                                                   for a, b in zip(gold, labels)]))
    assert len(g["mean_raw_link_per_layer"]) == 4 and set(g["edge_types"]) == {"inside", "boundary", "background"}
    assert report["trees"]["indifference"] == 0.5 and report["trees"]["gap_types"]


def test_clip_model_has_no_hierarchy(tmp_path, capsys):
    assert main(["parse", "--model", "CLIP-Tiny", "a red circle"]) == 2
    assert "this model has no hierarchy-aware attention" in capsys.readouterr().err


def test_parse_and_groups_commands(tmp_path, capsys):
    png = tmp_path / "tree.png"
    assert main(["parse", "a small red circle above a blue square", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("(") and png.stat().st_size > 0
    img = tmp_path / "scene.png"
    ShapesWorld(split="test", size=1)[0].image.save(img)
    assert main(["groups", str(img), "--out", str(tmp_path / "g")]) == 0
    assert (tmp_path / "g" / "scene-groups.png").stat().st_size > 0
    with Image.open(tmp_path / "g" / "scene-groups.gif") as gif:
        assert gif.n_frames == 4
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["groups", str(bad), "--out", str(tmp_path / "g")]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_induce_eval_command_with_gold_file(tmp_path, capsys):
    gold = tmp_path / "gold.txt"
    gold.write_text("(S (NP (DT a) (JJ red) (NN circle)) (VP (VBZ is) (ADJP (JJ big))))\n"
                    "(NP (DT a) (NN star))\n")
    out = tmp_path / "r.json"
    assert main(["induce-eval", "--n", "4", "--gold-trees", str(gold), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n_captions"] == 2 and "right_branching" in capsys.readouterr().out
