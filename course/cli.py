"""The `course` command line. Each sub-command lives in its own module exposing
`add_arguments(parser)` and `run(args) -> int`; it is imported only when called (fast start-up)."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys

from . import extras

COMMANDS = {  # name: (module, one-line help)
    "info": ("course.cli", "versions, the device found and the config presets"),
    "train": ("course.recipes", "train a small model on a synthetic task and save it with its card"),
    "check": (
        "course.grading.check",
        "run the visible tests of your exercise notebook and diagnose failures",
    ),
    "grade": ("course.grading.cli", "instructor pipeline: release, collect, autograde, feedback, CSV"),
    "explore": ("course.viz.app", "serve the attention explorer as a standalone app (Voila)"),
    "export-html": ("course.viz.export", "write a self-contained offline HTML attention explorer"),
    "bench": ("course.bench", "benchmarks: course vs Hugging Face, KV cache, fused attention, rooflines"),
    "site": ("course.site", "render every chapter, executed, to static HTML"),
}
NEEDS = {"grade": ("nbgrader",), "explore": ("voila",)}  # packages of extras a command can not run without


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`course info` takes no arguments."""


def run(args) -> int:
    import platform

    import torch

    from . import __version__
    from .bench.hardware import cpu_name, gpu_peaks
    from .config import PRESETS, ModelConfig
    from .costs import param_count

    print(f"course {__version__} | python {platform.python_version()} | torch {torch.__version__}")
    for name in ("jupyterlab", "plotly", "ipywidgets", *extras.EXTRAS):
        extra = f"[{extras.EXTRAS[name]}]" if name in extras.EXTRAS else ""
        try:  # package metadata, not an import: importing transformers alone takes ~15 s on a small CPU
            print(f"  {name:<12} {importlib.metadata.version(name):<10} {extra}".rstrip())
        except importlib.metadata.PackageNotFoundError:
            print(f"  {name:<12} (not installed: pip install '{extras.DISTRIBUTION}{extra}')")
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        peaks = gpu_peaks(name)
        peak = f", {peaks[0] / 1e12:.0f} TFLOP/s bf16, {peaks[1] / 1e12:.2f} TB/s" if peaks else ""
        print(f"device: cuda — {name} (bf16: {torch.cuda.is_bf16_supported()}{peak})")
    else:
        print(f"device: cpu — {cpu_name()}, {torch.get_num_threads()} threads")
    print("presets:")
    for name in PRESETS:
        c = ModelConfig.from_preset(name)
        print(
            f"  {name:<13} L={c.n_layers:<3} d_model={c.d_model:<6} heads={c.n_heads:<3} kv_heads="
            f"{c.n_kv_heads:<3} d_ff={c.d_ff:<6} pos={c.positional:<8} {c.norm}/{c.norm_placement} "
            f"{c.mlp:<9} params={param_count(c)['total']:,}"
        )
    return 0


def usage() -> str:
    lines = ["usage: course [--version] <command> [options]", "", "commands:"]
    lines += [f"  {name:<12} {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += ["", "`course <command> --help` lists a command's options."]
    return "\n".join(lines)


def build_parser(name: str) -> argparse.ArgumentParser:
    """The argument parser of one command (imports its module)."""
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"course {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    return parser


def _needs_extras(name: str) -> int:
    """Exit status 1 with a message naming the extra when a package that `name` always needs is missing."""
    for module in NEEDS.get(name, ()):
        if not extras.available(module):
            print(f"course {name}: {extras.message(module)}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `course <command> [options]`; returns the exit status. Errors and usage mistakes go to stderr with
    a non-zero status (2 for a bad command line, as argparse does); help and --version go to stdout."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"course {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        what = "option" if argv[0].startswith("-") else "command"
        print(f"{usage()}\n\ncourse: unknown {what} {argv[0]!r}", file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    status = _needs_extras(name)
    if status:
        return status
    try:
        parser = build_parser(name)
        try:
            args = parser.parse_args(rest)
        except SystemExit as exit_:  # argparse: --help (0), or a bad option (2, message already on stderr)
            return exit_.code if isinstance(exit_.code, int) else 2
        return int(importlib.import_module(COMMANDS[name][0]).run(args) or 0)
    except ModuleNotFoundError as err:
        module = extras.missing_extra(err)
        if module is None:
            raise
        text = str(err) if isinstance(err, extras.MissingExtra) else extras.message(module)
        print(f"course {name}: {text}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
