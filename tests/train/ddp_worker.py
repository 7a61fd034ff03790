"""Body of the 2-process gloo test (run by torch.multiprocessing.spawn from test_train_ddp)."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import train_fakes as fakes
from hiclip import create_model
from hiclip.train import TrainConfig, train
from hiclip.train.distributed import init_distributed, mean_over_ranks
from hiclip.train.step import StepOptions, accumulate_gradients

GLOBAL_BATCH = 8
VARIANTS = {"global": (False, 1), "local_loss": (True, 1), "global_accum2": (False, 2), "local_accum2": (True, 2)}


def join_process_group(rank: int, world: int, out_dir: str) -> None:
    """Join a gloo group through a file in ``out_dir`` (no TCP port to pick, so no port race); the
    environment says the rest, and ``init_distributed`` finds the group already made."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/process_group", rank=rank, world_size=world)


def grads_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def run(rank: int, world: int, config: str, out_dir: str) -> None:
    join_process_group(rank, world, out_dir)
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    torch.manual_seed(0)
    model = DistributedDataParallel(create_model(config))
    images, tokens = fakes.global_batch(0, 0, 0, GLOBAL_BATCH)
    b = GLOBAL_BATCH // world
    mine = images[rank * b:(rank + 1) * b], tokens[rank * b:(rank + 1) * b]
    results = {}
    for name, (local_loss, accum) in VARIANTS.items():
        opts = StepOptions(info, local_loss=local_loss, gather_with_grad=True)
        micro = [(mine[0][i::accum], mine[1][i::accum]) for i in range(accum)]
        loss = accumulate_gradients(model, micro, opts)
        results[name] = {"loss": mean_over_ranks(loss, info).item(), "grads": grads_of(model.module)}
        model.zero_grad(set_to_none=True)
    summary = train(TrainConfig(output_dir=f"{out_dir}/run", model=config, val_data="none",
                                batch_size=2, steps=3, workers=0, save_every=0, tensorboard=False,
                                progress=False, gather_with_grad=True, warmup_steps=1),
                    make_loader=fakes.loaders("fake:4"))
    if rank == 0:
        torch.save({"variants": results, "summary": summary}, f"{out_dir}/rank0.pt")
