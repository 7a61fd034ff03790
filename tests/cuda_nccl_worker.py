"""Body of the 1-GPU NCCL test (run under torchrun by tests/test_cuda.py): one DDP training step
over NCCL, and the same step's loss and gradients without DDP.

    python -m torch.distributed.run --nproc_per_node 1 tests/cuda_nccl_worker.py CONFIG OUT_DIR
"""
from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from hiclip import create_model
from hiclip.train.distributed import DistInfo
from hiclip.train.step import StepOptions, accumulate_gradients


def batch(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 16, 16, generator=g)
    tokens = torch.zeros(8, 16, dtype=torch.long)
    for row in range(8):
        n = 2 + row
        tokens[row, 0], tokens[row, n + 1] = 49406, 49407
        tokens[row, 1:n + 1] = torch.randint(1, 49000, (n,), generator=g)
    return images.to(device), tokens.to(device)


def main(config: str, out_dir: str) -> None:
    dist.init_process_group("nccl")
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), 0, device)
    torch.manual_seed(0)
    plain = create_model(config).to(device)
    ddp = DistributedDataParallel(create_model(config).to(device), device_ids=[0])
    ddp.module.load_state_dict(plain.state_dict())
    opts = StepOptions(info, gather_with_grad=True)
    loss = accumulate_gradients(plain, [batch(device)], opts)
    ddp_loss = accumulate_gradients(ddp, [batch(device)], opts)
    before = {n: p.detach().clone() for n, p in ddp.module.named_parameters()}
    torch.optim.AdamW(ddp.parameters(), lr=1e-3).step()
    changed = any(not torch.equal(before[n], p) for n, p in ddp.module.named_parameters())
    torch.save({"backend": dist.get_backend(), "loss": loss.item(), "ddp_loss": ddp_loss.item(),
                "grads": {n: p.grad.cpu() for n, p in plain.named_parameters()},
                "ddp_grads": {n: p.grad.cpu() for n, p in ddp.module.named_parameters()},
                "params_changed": changed}, f"{out_dir}/result.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
