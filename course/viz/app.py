"""`course explore`: the attention explorer of a shipped model on your prompt, as a standalone app (Voilà).

    course explore                                  # the text model (a small GPT) on an English prompt
    course explore --model sort --prompt "^hbdafcge|abcdefgh" --port 8866

Voilà serves a one-cell notebook written to a temporary folder; it shows the widget and hides the code.
`explorer(model, prompt)` is the same explorer in any notebook; `course export-html` draws it without a
kernel. For the text model a prompt is any text, split by its BPE tokenizer (labels: the token pieces); the
default repeats a phrase, to show whether a head looks back to its first occurrence (its card: none does yet).
For the synthetic models, prompts are text in the model's alphabet (card: `task`), '^' (BOS) is added in front
when missing; the default prompt is a seeded example of the model's task (induction: `^ r r`, a random r seen
twice)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..data import BOS, SPECIALS
from ..recipes import RECIPES

DEFAULT_MODEL = "text"
MODELS = sorted([*RECIPES, "text"])
TEXT_PROMPT = (
    "When an exception is raised, the interpreter looks for a handler. When an exception is raised "
    "inside a try statement, the except clause runs."
)
PROMPT_SEED = 0


def add_model_arguments(parser) -> None:
    """--model and --prompt, shared by `course explore` and `course export-html`."""
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, choices=MODELS, help=f"a shipped model (default: {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--prompt",
        default=None,
        help="text for the text model; text in the model's alphabet for the others (default: an example)",
    )


def default_prompt(task) -> str:
    """A seeded example of the task, as text: `^ r r` for induction, `^ s | answer` for the others."""
    tokens = task.probe(1, PROMPT_SEED) if hasattr(task, "probe") else task.sequences(1, PROMPT_SEED)[0]
    return task.tokenizer.decode(tokens[0])


def load_prompt(name: str = DEFAULT_MODEL, prompt: str | None = None):
    """(model, card, ids (T,), labels): a shipped model and the prompt encoded by its task's tokenizer."""
    from ..pretrained import load, task_for

    if name not in MODELS:
        raise ValueError(f"model={name!r} is not a shipped model; expected one of {MODELS}")
    model, card = load(name)
    if name == "text":
        return (model, card, *_text_prompt(model, TEXT_PROMPT if prompt is None else prompt))
    task = task_for(card)
    text = default_prompt(task) if prompt is None else prompt
    text = text if text.startswith(SPECIALS[BOS]) else SPECIALS[BOS] + text
    context = model.config.context_length
    if len(text) > context:
        raise ValueError(f"prompt {text!r} has {len(text)} tokens; the {name} model reads at most {context}")
    return model, card, task.tokenizer.encode(text), list(text)  # ids (T,)


def _text_prompt(model, text: str):
    """(ids (T,), labels): `text` split by the text model's tokenizer, one label (piece) per token."""
    from ..pretrained import load_tokenizer

    tokenizer = load_tokenizer("text")
    ids = tokenizer.encode(text)
    if not 0 < len(ids) <= model.config.context_length:
        raise ValueError(
            f"prompt {text!r} has {len(ids)} tokens; the text model reads 1 to {model.config.context_length}"
        )
    return ids, [tokenizer.piece(i) for i in ids.tolist()]


def explorer(name: str = DEFAULT_MODEL, prompt: str | None = None):
    """The AttentionExplorer of shipped model `name` on `prompt`."""
    from .attention_explorer import AttentionExplorer

    model, _, ids, labels = load_prompt(name, prompt)
    return AttentionExplorer(model, ids, labels)


def app_notebook(name: str, prompt: str | None) -> dict:
    """The notebook Voilà serves: a heading and one cell that shows the explorer."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            f"# Attention explorer: the `{name}` model\n\n"
            "Pick a layer and a head; hover a cell to read its query, key and weight. Grey cells are masked "
            "(N/A: the model may not attend there). Click a tile of the overview to jump to that head."
        ),
        nbformat.v4.new_code_cell(f"from course.viz.app import explorer\n\nexplorer({name!r}, {prompt!r})"),
    ]
    return nb


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--port", type=int, default=8866, help="port on 127.0.0.1 (default: 8866)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a web browser")


def run(args) -> int:
    import nbformat

    try:
        load_prompt(args.model, args.prompt)  # a bad name or prompt fails here, before a server starts
    except ValueError as e:
        print(f"course explore: {e}", file=sys.stderr)
        return 2
    env = dict(os.environ, COURSE_VIZ_PNG="0", PYTHONWARNINGS="ignore")  # the live widget needs no PNG
    with tempfile.TemporaryDirectory(prefix="course-explore-") as tmp:
        nb = Path(tmp) / "attention-explorer.ipynb"
        nbformat.write(app_notebook(args.model, args.prompt), nb)
        cmd = [
            sys.executable,
            "-m",
            "voila",
            str(nb),
            f"--port={args.port}",
            "--Voila.port_retries=0",
            "--Voila.ip=127.0.0.1",
            "--strip_sources=True",
            "--theme=light",
        ]
        cmd += ["--no-browser"] if args.no_browser else []
        print(f"attention explorer: http://127.0.0.1:{args.port}/  (Ctrl-C stops it)", flush=True)
        return serve(cmd, env, tmp)


def serve(cmd: list[str], env: dict, cwd: str, grace_s: float = 20) -> int:
    """Run the Voilà server until it exits; on SIGTERM or SIGINT (Ctrl-C) stop it cleanly: Voilà gets SIGTERM,
    which makes it shut down its kernels, and is killed only if it has not exited after `grace_s` seconds."""
    import signal

    proc = subprocess.Popen(cmd, env=env, cwd=cwd, start_new_session=True)  # signals reach it through us

    def stop(signum, frame):
        raise KeyboardInterrupt

    # SIGINT too: a process started with SIGINT ignored (a background job, a pytest-xdist worker's child)
    # would otherwise never see Ctrl-C's KeyboardInterrupt.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
