"""`course train` under torchrun: two CPU processes (gloo) with DistributedDataParallel give the loss curve
and the weights of one process on the same global batch.

Tolerance (fp32): losses within 1e-5, weights within 5e-5, absolute. The two runs add the same numbers in a
different order (per-rank means, then the ranks' sum), so they are not bitwise equal; measured on 2 CPU cores:
2.4e-7 (losses) and 2.8e-6 (weights, after 8 AdamW steps, whose normalised updates amplify rounding)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchrun_probe import CLI, curve_run

from course.cli import build_parser
from course.pretrained import load_weights
from course.recipes import _recipes_from_args, setup
from course.training import train

pytestmark = pytest.mark.slow
LOSS_ATOL, WEIGHT_ATOL = 1e-5, 5e-5


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("torchrun")
    probe = Path(__file__).with_name("torchrun_probe.py")
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", probe, out],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_loss_curve_and_weights_match_one_process(two_ranks):
    torch.set_num_threads(1)
    losses, state = curve_run()  # one process, the same global batch of 8
    got = torch.load(two_ranks / "curve.pt")
    assert len(got["losses"]) == len(losses) == 8
    assert torch.allclose(torch.tensor(got["losses"]), torch.tensor(losses), rtol=0, atol=LOSS_ATOL), (
        got["losses"],
        losses,
    )
    assert losses[0] - losses[-1] > 0.1  # it trained: the comparison is not between two untouched models
    for name, value in state.items():
        assert torch.allclose(got["state"][name], value, rtol=0, atol=WEIGHT_ATOL), name


def test_the_course_train_command_runs_unchanged_and_only_rank_0_writes(two_ranks):
    assert sorted(p.name for p in two_ranks.iterdir()) == ["curve.pt", "rank0"]
    args = build_parser("train").parse_args(CLI[1:])
    [(name, recipe)] = _recipes_from_args(args)
    model, task = setup(recipe)
    torch.set_num_threads(1)
    train(model, task, recipe.steps, recipe.batch_size, recipe.lr, seed=recipe.seed, progress=False)
    saved, _ = setup(recipe)
    load_weights(saved, two_ranks / "rank0" / f"{name}.safetensors")
    for (key, got), value in zip(saved.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.allclose(got, value, rtol=0, atol=WEIGHT_ATOL), key
    assert not torch.equal(saved.state_dict()[key], setup(recipe)[0].state_dict()[key])  # trained, not fresh
