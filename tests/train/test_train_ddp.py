"""2 CPU processes (gloo) give the loss and gradients of 1 process over the same global batch."""
from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

import ddp_worker
import train_fakes as fakes
from hiclip import create_model
from hiclip.train import TrainConfig, contrastive_loss, train
from hiclip.train.metrics import read_csv

pytestmark = pytest.mark.slow  # spawns two gloo processes


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    config = fakes.write_config(out)
    mp.spawn(ddp_worker.run, args=(2, config, str(out)), nprocs=2, join=True)
    return config, out, torch.load(out / "rank0.pt", weights_only=False)


def reference(config: str) -> tuple[float, dict[str, torch.Tensor]]:
    """One process, the whole global batch, plain autograd."""
    torch.manual_seed(0)
    model = create_model(config)
    images, tokens = fakes.global_batch(0, 0, 0, ddp_worker.GLOBAL_BATCH)
    out = model(images, tokens)
    loss = contrastive_loss(out["image_features"], out["text_features"], out["logit_scale"])
    loss.backward()
    return loss.item(), ddp_worker.grads_of(model)


@pytest.mark.parametrize("variant", list(ddp_worker.VARIANTS))
def test_two_ranks_match_one_process(two_ranks, variant):
    config, _, result = two_ranks
    loss, grads = reference(config)
    got = result["variants"][variant]
    assert got["loss"] == pytest.approx(loss, abs=1e-5)
    assert got["grads"].keys() == grads.keys()
    for name, g in grads.items():
        torch.testing.assert_close(got["grads"][name], g, atol=1e-5, rtol=1e-4, msg=name)


def test_two_rank_training_matches_one_rank(two_ranks, tmp_path):
    config, out, result = two_ranks
    single = train(TrainConfig(output_dir=str(tmp_path), model=config, val_data="none",
                               batch_size=4, steps=3, workers=0, save_every=0, tensorboard=False,
                               progress=False, warmup_steps=1), make_loader=fakes.loaders("fake:4"))
    both = [row["loss"] for row in read_csv(out / "run" / "metrics.csv")]
    one = [row["loss"] for row in read_csv(tmp_path / "metrics.csv")]
    assert len(both) == len(one) == 3
    assert both == pytest.approx(one, abs=1e-5)
    summary = result["summary"]
    assert summary["steps"] == single["steps"] == 3
    assert summary["skipped"] == {"fake reason": 2 * 3}  # each rank counts its own batches
    assert single["skipped"] == {"fake reason": 3}
