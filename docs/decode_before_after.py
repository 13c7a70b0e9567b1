"""Greedy decode of the course's DecoderLM now against the course package at an earlier revision, in one
process.

Same weights (the earlier model's state dict loaded into the current one), same prompt, CPU, one thread, fp32,
CPU time; the two sides alternate (A B, then B A, ...) after one warm-up each; figures are medians of per-pair
ratios (IQR). The tokens must be identical. Used for issue 14 §1 (one decode path), recorded in
docs/benchmarks.md.

    python docs/decode_before_after.py --before af04eac [--shape gpt2|tiny] [--pairs 9]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step_vs_nanogpt import course_package, measure, ratio  # noqa: E402

SHAPES = {  # name: (preset, prompt length, new tokens)
    "gpt2": ("gpt2-small", 64, 32),
    "tiny": ("tiny", 8, 32),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--before", metavar="REV", required=True, help="git revision of the earlier course package"
    )
    ap.add_argument("--shape", choices=SHAPES, default="gpt2", help="model and decode length (default: gpt2)")
    ap.add_argument("--pairs", type=int, default=9, help="rounds of alternated samples (default: 9)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    preset, P, n = SHAPES[args.shape]
    now, before = course_package(None), course_package(args.before)
    torch.manual_seed(0)
    old = before.DecoderLM(before.ModelConfig.from_preset(preset)).eval()
    new = now.DecoderLM(now.ModelConfig.from_preset(preset)).eval()
    new.load_state_dict(old.state_dict())
    prompt = torch.randint(0, new.config.vocab_size, (1, P))
    out = {}

    def run(name, model):
        def fn():
            out[name] = model.generate(prompt, n, temperature=0)

        return fn

    times = measure({"after": run("after", new), "before": run("before", old)}, args.pairs)
    assert torch.equal(out["after"], out["before"]), "the two revisions decode different tokens"
    ms = {k: 1e3 * sorted(v)[len(v) // 2] for k, v in times.items()}
    print(
        f"{preset}, prompt {P} + {n} tokens, {args.pairs} pairs: "
        f"after / before {ratio(times, 'after', 'before')}"
        f"; medians {ms['after']:.1f} ms vs {ms['before']:.1f} ms; tokens identical"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
