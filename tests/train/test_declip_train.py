"""DeCLIP training end to end: 2-process gloo equals 1 process, exact resume with the queue,
the new models on the embedded world, checkpoints, options."""
from __future__ import annotations

import logging

import pytest
import torch
import torch.multiprocessing as mp

import declip_ddp_worker as worker
import train_fakes as fakes
from hiclip import create_model, get_tokenizer
from hiclip.factory import load_for_inference
from hiclip.data.augment import two_view_transform
from hiclip.data.text_views import TextViews
from hiclip.data.world import ShapesWorld
from hiclip.train import TrainConfig, train
from hiclip.train.declip import TERMS, DeCLIPLoss
from hiclip.train.distributed import DistInfo
from hiclip.train.metrics import read_csv
from hiclip.train.step import StepOptions, autocast_factory, declip_gradients

WORLD_TINY = {**fakes.TINY, "vision_cfg": {**fakes.TINY["vision_cfg"]},
              "text_cfg": {**fakes.TINY["text_cfg"], "context_length": 16, "vocab_size": 49408}}


def declip_config(tmp_path, queue_size: int = 64) -> str:
    return fakes.write_config(tmp_path, "declip.json", objective="declip", declip={"queue_size": queue_size})


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("declip_ddp")
    config = declip_config(out)
    mp.spawn(worker.run, args=(2, config, str(out)), nprocs=2, join=True)
    return config, torch.load(out / "declip_rank0.pt", weights_only=False)


@pytest.mark.slow  # spawns two gloo processes
@pytest.mark.parametrize("variant", list(worker.VARIANTS))
def test_two_ranks_match_one_process_for_the_full_objective(two_ranks, variant):
    config, results = two_ranks
    torch.manual_seed(0)
    objective = DeCLIPLoss(create_model(config).double())
    single = worker.run_steps(objective, StepOptions(DistInfo()), slice(None))
    for step, (got, want) in enumerate(zip(results[variant], single)):
        assert got["terms"].keys() == want["terms"].keys() == {"loss", *TERMS}
        for k, v in want["terms"].items():
            assert got["terms"][k] == pytest.approx(v, abs=1e-10), (step, k)
        assert (want["terms"]["loss_nn"] > 0) == (step > 0)  # the second step uses the first step's texts
        for name, g in want["grads"].items():
            torch.testing.assert_close(got["grads"][name], g, atol=1e-10, rtol=1e-9, msg=f"step {step}: {name}")
        torch.testing.assert_close(got["queue"], want["queue"], atol=1e-12, rtol=0)  # filled from both ranks


def world_config(tmp_path, **changes) -> str:
    return fakes.write_config(tmp_path, "world.json", **{**WORLD_TINY, **changes})


def world_run(out, model: str, **changes) -> TrainConfig:
    base = dict(output_dir=str(out), model=model, world_samples=16, batch_size=4, steps=6, warmup_steps=1,
                val_samples=8, val_every=0, save_every=0, workers=0, tensorboard=False, progress=False, lr=1e-3)
    return TrainConfig(**{**base, **changes})


def test_exact_resume_restores_the_queue(tmp_path):
    config = world_config(tmp_path, objective="declip", declip={"queue_size": 12})  # wraps every 1.5 steps
    straight = train(world_run(tmp_path / "a", config))
    stopped = train(world_run(tmp_path / "b", config, max_minutes=0))  # stops after its first step
    assert stopped["steps"] == 1 and stopped["stopped"] == "time budget"
    saved = torch.load(tmp_path / "b" / "checkpoints" / "latest.pt", weights_only=False)["objective"]
    assert int(saved["queue.ptr"]) == 8 and int((saved["queue.epochs"] == 0).sum()) == 8
    resumed = train(world_run(tmp_path / "b", config, resume="latest"))
    assert straight["steps"] == resumed["steps"] == 6 and straight["epoch"] == 1  # across an epoch boundary
    a, b = read_csv(tmp_path / "a" / "metrics.csv"), read_csv(tmp_path / "b" / "metrics.csv")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(a, b):
        for key in ("loss", *TERMS):
            assert rb[key] == pytest.approx(ra[key], abs=2e-5), (ra["step"], key)
    assert a[4]["loss_nn"] == 0.0 and a[5]["loss_nn"] > 0  # step 5 opens epoch 1: the queue starts over


@pytest.mark.parametrize("model", ["HiDeCLIP-Tiny", "DeCLIP-Tiny"])
def test_new_tiny_models_train_end_to_end(tmp_path, model):
    summary = train(world_run(tmp_path, model, steps=2, world_samples=32, batch_size=8, val_every=2))
    rows = read_csv(tmp_path / "metrics.csv")
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor([r[k] for k in ("loss", *TERMS)])).all()
                                  for r in rows)
    assert rows[0]["loss_mlm"] == pytest.approx(torch.log(torch.tensor(49408.0)).item(), abs=0.5)
    assert summary["final_val"]["samples"] == 8
    ckpt = tmp_path / "checkpoints" / "latest.pt"
    evaluated, _, _ = load_for_inference(str(ckpt))  # what hiclip eval / parse / groups do
    assert evaluated.cfg.objective == "declip" and not evaluated.training


@pytest.mark.parametrize("model", ["HiDeCLIP-ViT-B-32", "DeCLIP-ViT-B-32"])
def test_vit_b32_models_take_a_step(model):
    torch.manual_seed(0)
    net = create_model(model)
    assert net.declip.mlm.kind == "linear" and net.cfg.declip.queue_size == 65536  # DeCLIP's settings
    world = ShapesWorld("train", 2, 224)
    images = torch.stack([two_view_transform(224, world=True)(s.image) for s in world])
    tokens = TextViews(get_tokenizer(model), 0, 0, wordnet=False)([s.caption for s in world])
    terms = declip_gradients(DeCLIPLoss(net), [(images, tokens)], StepOptions(DistInfo()))
    assert torch.isfinite(terms["loss"]) and net.declip.projector[0].weight.grad is not None


def test_objective_override_bf16_and_heads_dropped_for_evaluation(tmp_path, caplog):
    plain = world_config(tmp_path)
    train(world_run(tmp_path / "run", plain, objective="declip", steps=2, precision="bf16"))
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    assert set(TERMS) <= set(rows[0]) and all(r["loss"] == r["loss"] for r in rows)
    with caplog.at_level(logging.INFO, logger="hiclip.factory"):
        model = create_model(plain, pretrained=tmp_path / "run" / "checkpoints" / "latest.pt")
    assert not hasattr(model, "declip") and "not used" in caplog.text


def test_bf16_close_to_fp32(tmp_path):
    torch.manual_seed(0)
    objective = DeCLIPLoss(create_model(declip_config(tmp_path)))
    images, tokens = worker.declip_batch(0)
    fp32 = declip_gradients(objective, [(images.float(), tokens)], StepOptions(DistInfo()))
    objective.queue = type(objective.queue)(64, 16)
    bf16 = declip_gradients(objective, [(images.float(), tokens)],
                         StepOptions(DistInfo(), autocast_factory("bf16", torch.device("cpu"))))
    for k in ("loss", *TERMS):
        assert bf16[k].item() == pytest.approx(fp32[k].item(), abs=0.05), k


def test_accum_freq_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="accum-freq 2 is not supported with the DeCLIP objective"):
        train(world_run(tmp_path, declip_config(tmp_path), accum_freq=2))
