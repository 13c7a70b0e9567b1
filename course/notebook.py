"""Helpers shared by the course notebooks, so that no chapter copies them: set-up and the token-influence
probe."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def setup(seed: int = 0, threads: int | None = None) -> None:
    """Seed Python, NumPy and torch with `seed`; use `threads` CPU threads (default: `$COURSE_THREADS` if set,
    else torch's own choice). Test runs set COURSE_THREADS=1 so that parallel notebooks do not fight for
    cores."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    threads = threads or int(os.environ.get("COURSE_THREADS", "0")) or None
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads={threads!r} must be a positive integer")
        torch.set_num_threads(threads)


@torch.no_grad()
def influence(fn, x: torch.Tensor, eps: float = 0.5) -> torch.Tensor:
    """(T, T) matrix: entry [j, i] is how far output position i moves when input position j is shifted by
    `eps`.

    `fn` maps (B, T, D) -> (B, T, D') position by position in its output; the distance is the L2 norm over
    features, averaged over the batch. A position-wise map (MLP, norm) gives a diagonal matrix; causal
    attention an upper-triangular one (row j is non-zero only for outputs i >= j); bidirectional attention a
    full one."""
    if x.dim() != 3:
        raise ValueError(f"x must be (B, T, D), got shape {tuple(x.shape)}")
    base = fn(x)
    rows = []
    for j in range(x.shape[1]):
        bumped = x.clone()
        bumped[:, j] += eps
        rows.append((fn(bumped) - base).norm(dim=-1).mean(0))  # (T,)
    return torch.stack(rows)
