"""The timing method: CPU time on CPU (other processes do not enter), synchronized wall time on CUDA; every
comparison a ratio of two sides alternated in one process, reported as the median of per-pair ratios."""

from __future__ import annotations

import math
import statistics
import time

import torch


class Clock:
    """Time of a callable: on CUDA wall time with the GPU synchronized around the region; on CPU the process's
    CPU time, so that other processes sharing the machine's cores do not enter the figures."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.now = time.perf_counter if self.cuda else time.process_time

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def time(self, fn, reps: int = 1) -> float:
        """Seconds per call of fn, averaged over `reps` back-to-back calls."""
        self.sync()
        start = self.now()
        for _ in range(reps):
            fn()
        self.sync()
        return (self.now() - start) / reps

    def reps_for(self, fn, min_time: float) -> int:
        """Warm fn up once, then how many calls make one sample last about `min_time` seconds."""
        fn()
        return max(1, math.ceil(min_time / max(self.time(fn), 1e-7)))


def summarize(values: list[float]) -> dict:
    """Median and quartiles (inclusive method) of per-pair values."""
    q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {"median": med, "q1": q1, "q3": q3, "n": len(values)}


def paired(clock: Clock, a, b, pairs: int, min_time: float) -> dict:
    """time(a) / time(b): a and b alternated, the order flipped every pair; median ratio, quartiles, times."""
    ra, rb = clock.reps_for(a, min_time), clock.reps_for(b, min_time)
    ta, tb = [], []
    for i in range(pairs):
        if i % 2 == 0:
            ta.append(clock.time(a, ra))
            tb.append(clock.time(b, rb))
        else:
            tb.append(clock.time(b, rb))
            ta.append(clock.time(a, ra))
    out = summarize([x / y for x, y in zip(ta, tb, strict=True)])
    out.update(a_ms=1e3 * statistics.median(ta), b_ms=1e3 * statistics.median(tb))
    return out


def paired_share(clock: Clock, work, limit, pairs: int, min_time: float) -> dict:
    """Per pair: rate(work) / rate(limit), each measured next to the other; `work`/`limit` are
    (fn, units per call) and the share is (units/s of work) / (units/s of limit)."""
    (fw, uw), (fl, ul) = work, limit
    r = paired(clock, fw, fl, pairs, min_time)
    # rate_w / rate_l = (uw / tw) / (ul / tl) = (uw / ul) / (tw / tl): the share from each pair's time ratio.
    shares = [(uw / ul) / x for x in (r["q3"], r["median"], r["q1"])]
    return {
        "median": shares[1],
        "q1": shares[0],
        "q3": shares[2],
        "n": r["n"],
        "work_ms": r["a_ms"],
        "limit_ms": r["b_ms"],
    }


def fmt(r: dict, unit: str = "×") -> str:
    return f"{r['median']:.3f}{unit} (IQR {r['q1']:.3f}–{r['q3']:.3f})"
