"""Shared set-up for the course notebooks: one call at the top of every chapter, so that no notebook copies it."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def setup(seed: int = 0, threads: int | None = None) -> None:
    """Seed Python, NumPy and torch with `seed`; use `threads` CPU threads (default: `$COURSE_THREADS` if set,
    else torch's own choice). Test runs set COURSE_THREADS=1 so that parallel notebooks do not fight for cores."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    threads = threads or int(os.environ.get("COURSE_THREADS", "0")) or None
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads={threads!r} must be a positive integer")
        torch.set_num_threads(threads)
