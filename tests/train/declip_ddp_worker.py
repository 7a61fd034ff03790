"""Body of the 2-process gloo test of the DeCLIP objective (spawned by test_declip_train)."""
from __future__ import annotations


import torch
from torch.nn.parallel import DistributedDataParallel

from ddp_worker import join_process_group
from hiclip import create_model
from hiclip.train.declip import DeCLIPLoss
from hiclip.train.distributed import cleanup, init_distributed, mean_over_ranks
from hiclip.train.step import StepOptions, declip_gradients

GLOBAL_BATCH, STEPS = 8, 2
VARIANTS = {"global": False, "local_loss": True}


def declip_batch(step: int, size: int = GLOBAL_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-view images (size, 2, 3, 16, 16) float64, text views (size, 3, 8) of the fake vocabulary."""
    g = torch.Generator().manual_seed(100 + step)
    images = torch.randn(size, 2, 3, 16, 16, generator=g, dtype=torch.float64)
    tokens = torch.zeros(size, 3, 8, dtype=torch.long)
    for row in range(size):
        n = int(torch.randint(2, 7, (), generator=g))
        words = torch.randint(1, 60, (2, n), generator=g)
        tokens[row, :2, 0], tokens[row, :2, n + 1] = 62, 63
        tokens[row, :2, 1:n + 1] = words
        tokens[row, 2] = -100
        tokens[row, 2, 1] = words[0, 0]  # the first word of the masked view is a target
        tokens[row, 0, 1] = 62  # ... and masked
    return images, tokens


def grads_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def run_steps(module: torch.nn.Module, opts: StepOptions, rows: slice) -> list[dict]:
    """STEPS forward / backward passes over this process's rows; -> per step: terms (mean over
    ranks), gradients of the model, the queue."""
    out = []
    for step in range(STEPS):
        images, tokens = declip_batch(step)
        terms = declip_gradients(module, [(images[rows], tokens[rows])], opts, epoch=0)
        model = module.module.model if isinstance(module, DistributedDataParallel) else module.model
        queue = (module.module if isinstance(module, DistributedDataParallel) else module).queue
        out.append({"terms": {k: mean_over_ranks(v, opts.info).item() for k, v in terms.items()},
                    "grads": grads_of(model), "queue": queue.features.clone()})
        model.zero_grad(set_to_none=True)
    return out


def run(rank: int, world: int, config: str, out_dir: str) -> None:
    join_process_group(rank, world, out_dir)
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    b = GLOBAL_BATCH // world
    results = {}
    for name, local_loss in VARIANTS.items():
        torch.manual_seed(0)
        objective = DeCLIPLoss(create_model(config).double(), info, local_loss=local_loss, gather_with_grad=True)
        opts = StepOptions(info, local_loss=local_loss, gather_with_grad=True)
        results[name] = run_steps(DistributedDataParallel(objective), opts, slice(rank * b, (rank + 1) * b))
    if rank == 0:
        torch.save(results, f"{out_dir}/declip_rank0.pt")
    cleanup(info)
