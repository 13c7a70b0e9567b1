"""`course bench`: the course model measured against Hugging Face and against the hardware's own limits.

Method (see docs/benchmarks.md): every comparison is a ratio measured in one process, the two sides alternated
(A→B, then B→A), one warm-up each, the median of the per-pair ratios reported with its quartiles; one thread
on CPU. Rooflines (copy bandwidth, GEMM FLOP/s) are measured in the same run, paired with what they bound.
Benchmarks are never gates: tests only check that the command runs and writes its keys.

timing    the method: `Clock`, `paired` (ratios of alternated sides), `paired_share` (a share of a roofline)
hardware  datasheet GPU peaks, the CPU's name, the recorded machine facts (`course info` prints the same)
sections  what is measured: `Bench.hf`, `.kv`, `.attention`, `.roofline`, `.gqa`, `.gpu`
"""

from __future__ import annotations

import json
import sys
import time

import torch

from .hardware import gpu_peaks, machine
from .sections import Bench, attention_peak_child
from .timing import Clock, paired

SECTIONS = ("hf", "train", "kv", "attention", "roofline", "gqa", "gpu")
__all__ = [
    "SECTIONS",
    "Bench",
    "Clock",
    "paired",
    "gpu_peaks",
    "attention_peak_child",
    "add_arguments",
    "run",
]


def add_arguments(parser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="tiny shapes and fewer pairs (about a minute on CPU)"
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where to run (default: cpu, on one thread); cuda uses bf16 autocast and TF32",
    )
    parser.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")
    parser.add_argument("--only", metavar="SECTIONS", help=f"comma-separated subset of {','.join(SECTIONS)}")


def run(args) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        print("course bench: --device cuda, but torch finds no CUDA device", file=sys.stderr)
        return 2
    sections = SECTIONS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        print(
            f"course bench: unknown section(s) {unknown}; expected some of {list(SECTIONS)}", file=sys.stderr
        )
        return 2
    needs_hf = [s for s in sections if s in ("hf", "train")]
    if needs_hf:
        from ..extras import require

        require("transformers", f"the {needs_hf} section(s) (leave them out with --only)")
    if args.device == "cpu":
        torch.set_num_threads(1)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
    bench = Bench(args.device, args.quick)
    bench.results.update(
        machine(bench.device),
        quick=args.quick,
        command="course bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else []),
    )
    bench.log(
        f"course bench on {bench.results['device_name']} | torch {torch.__version__} | "
        f"rev {bench.results['git_revision']} | {'quick' if args.quick else 'full'}"
    )
    start = time.perf_counter()
    for name in sections:
        t0 = time.perf_counter()
        bench.log(f"[{name}]")
        getattr(bench, name)()
        bench.results.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t0, 1)
    bench.results["total_seconds"] = round(time.perf_counter() - start, 1)
    bench.log(f"done in {bench.results['total_seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(bench.results, f, indent=2, default=str)
    return 0
