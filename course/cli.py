"""The `course` command line. Each sub-command lives in its own module exposing
`add_arguments(parser)` and `run(args) -> int`; it is imported only when called (fast start-up)."""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys

COMMANDS = {  # name: (module, one-line help)
    "info": ("course.cli", "versions, the device found and the config presets"),
    "train": ("course.training", "train a small model on a synthetic task and save it with its card"),
    "check": ("course.grading.check", "run the visible tests of your exercise notebook and diagnose failures"),
    "grade": ("course.grading.pipeline", "instructor pipeline: release, collect, autograde, feedback, CSV"),
    "explore": ("course.viz.app", "serve the attention explorer as a standalone app (Voila)"),
    "export-html": ("course.viz.export", "write a self-contained offline HTML attention explorer"),
    "bench": ("course.bench", "benchmarks: course vs Hugging Face, KV cache, fused attention, rooflines"),
    "site": ("course.site", "render every chapter, executed, to static HTML"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`course info` takes no arguments."""


def run(args) -> int:
    import platform

    import torch

    from . import __version__
    from .config import PRESETS, ModelConfig
    from .costs import param_count

    print(f"course {__version__} | python {platform.python_version()} | torch {torch.__version__}")
    for name in ("transformers", "nbgrader", "jupyterlab", "plotly", "ipywidgets"):
        try:  # package metadata, not an import: importing transformers alone takes ~15 s on a small CPU
            print(f"  {name:<12} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            print(f"  {name:<12} (not installed)")
    if torch.cuda.is_available():
        print(f"device: cuda — {torch.cuda.get_device_name()} (bf16: {torch.cuda.is_bf16_supported()})")
    else:
        print(f"device: cpu — {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print("presets:")
    for name in PRESETS:
        c = ModelConfig.from_preset(name)
        print(f"  {name:<13} L={c.n_layers:<3} d_model={c.d_model:<6} heads={c.n_heads:<3} kv_heads="
              f"{c.n_kv_heads:<3} d_ff={c.d_ff:<6} pos={c.positional:<8} {c.norm}/{c.norm_placement} "
              f"{c.mlp:<9} params={param_count(c)['total']:,}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: course <command> [options]\n\ncommands:")
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:<12} {help_text}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\ncourse: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"course {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(rest)) or 0)


if __name__ == "__main__":
    sys.exit(main())
