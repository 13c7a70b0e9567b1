"""Run by tests/test_distributed.py under torchrun: `course.training.train` on a tiny model (rank 0 saves the
loss curve and the weights to OUT/curve.pt), then the `course train` command itself, unchanged, each rank
told to write to OUT/rank<RANK>/ (only rank 0 may)."""

import os
import sys
from pathlib import Path

import torch

from course.cli import main
from course.data import make_task
from course.recipes import build_model
from course.training import ranks, train

TINY = {"n_layers": 1, "d_ff": 64}  # a tiny induction model: its rows score different numbers of tokens


def curve_run() -> tuple[list[float], dict]:
    torch.manual_seed(0)
    task = make_task("induction", length=8, n_symbols=12, min_length=4)
    model = build_model(task, 0, positional="rope", **TINY)
    log = train(model, task, 8, 8, 3e-3, seed=1, progress=False)
    return log.losses, model.state_dict()


CLI = ["train", "--task", "copy", "--steps", "6", "--batch-size", "8", "--seed", "2", "--set", "n_layers=1"]

if __name__ == "__main__":
    out = Path(sys.argv[1])
    losses, state = curve_run()
    if ranks()[0] == 0:
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"losses": losses, "state": state}, out / "curve.pt")
    sys.exit(main([*CLI, "--no-progress", "--out", str(out / f"rank{os.environ['RANK']}")]))
