"""Child process of the crash tests: ``python crash_child.py CONFIG_JSON STEP``.

For each point below, a forked process trains with the fake loader (``fake:5``) as
``TrainConfig(**json)`` says, with ``output_dir`` ``OUTPUT_DIR/POINT``, and SIGKILLs itself at
that point of the checkpoint save of step STEP (no cleanup of any kind runs, as in a power cut).
Its wait status goes to ``OUTPUT_DIR/status.json``. (One interpreter imports torch once; each
run is a fork of it that has computed nothing yet.) The points:

- ``mid_step_file``: half of ``step_N.pt`` written to its temporary file;
- ``after_step_file``: ``step_N.pt`` complete, ``latest.pt`` not yet pointed at it;
- ``after_latest``: ``latest.pt`` is the new checkpoint, older step files not yet pruned;
- ``after_prune``: the save is complete.
"""
from __future__ import annotations

import io
import json
import os
import signal
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[2] / "src")]

import torch  # noqa: E402

import train_fakes  # noqa: E402
from hiclip import checkpoint as ckpt  # noqa: E402
from hiclip.train import TrainConfig, train  # noqa: E402

POINTS = ("mid_step_file", "after_step_file", "after_latest", "after_prune")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def instrument(point: str, step: int) -> None:
    """Wrap the save path's three stages so that the process dies at ``point`` of step ``step``'s save."""
    real_save, real_alias, real_prune = torch.save, ckpt._atomic_alias, ckpt.RunPaths.prune
    current = {"step": None}

    def save(obj, f, *args, **kwargs):
        if point == "mid_step_file" and isinstance(obj, dict) and obj.get("step") == step:
            buf = io.BytesIO()
            real_save(obj, buf, *args, **kwargs)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            die()
        return real_save(obj, f, *args, **kwargs)

    def alias(src: Path, dst: Path) -> None:
        current["step"] = int(src.stem.removeprefix("step_"))
        if point == "after_step_file" and current["step"] == step:
            die()
        real_alias(src, dst)

    def prune(self, keep: int) -> None:
        if point == "after_latest" and current["step"] == step:
            die()
        real_prune(self, keep)
        if point == "after_prune" and current["step"] == step:
            die()

    ckpt.torch.save, ckpt._atomic_alias, ckpt.RunPaths.prune = save, alias, prune


def crash(config: dict, point: str, step: int) -> int:
    """Run ``point``'s training in a forked child; returns its raw wait status."""
    pid = os.fork()
    if pid == 0:
        try:
            instrument(point, step)
            train(TrainConfig(**{**config, "output_dir": str(Path(config["output_dir"]) / point)}),
                  make_loader=train_fakes.loaders("fake:5"))
        finally:
            os._exit(1)  # the save never reached the point
    return os.waitpid(pid, 0)[1]


if __name__ == "__main__":
    config, at = json.loads(Path(sys.argv[1]).read_text()), int(sys.argv[2])
    torch.set_num_threads(1)
    status = {point: crash(config, point, at) for point in POINTS}
    Path(config["output_dir"], "status.json").write_text(json.dumps(status))
