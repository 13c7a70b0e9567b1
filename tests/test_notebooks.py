"""Every notebook in notebooks/ runs top to bottom cleanly, is committed clean, and every chapter covers the
outline (its subsections as headings, objectives, a common mistake, a widget, a "Check yourself" block).

Execution times: `pytest tests/test_notebooks.py -n 2 --durations=0`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT_S = 300  # per cell: a hang fails, a busy CI machine does not

# The outline's subsections (../shared/outline.md, "Chapters and subsections"), chapter by chapter. A chapter
# covers one when a markdown heading starts with its name (case, punctuation, "and" and "/" are ignored).
SUBSECTIONS = {
    1: [
        "Sequence transduction",
        "Parallel token processing",
        "Context mixing",
        "Position information",
        "Stacked blocks",
    ],
    2: ["Queries, keys and values", "Score matrix", "Masking", "Attention weights", "Weighted values"],
    3: [
        "Head splitting",
        "Per-head dimension",
        "Concatenation and output projection",
        "Specialization",
        "GQA and MQA",
    ],
    4: ["Position-wise MLP", "Expansion ratio", "Activation", "Parameter count", "Token independence"],
    5: ["Residual stream", "Layer normalization", "Pre-LN block", "Post-LN block", "RMSNorm"],
    6: [
        "Encoder self-attention",
        "Decoder causal self-attention",
        "Cross-attention",
        "Encoder-only",
        "Decoder-only",
    ],
    7: ["Absolute positions", "Sinusoidal positions", "Relative bias", "RoPE", "ALiBi", "Length behaviour"],
    8: ["Attention FLOPs", "Attention score memory", "MLP FLOPs", "KV cache", "FlashAttention bridge"],
    9: [
        "Language-model loss",
        "Masked-LM loss",
        "Teacher forcing",
        "Attention masks vs loss masks",
        "Weight tying",
    ],
    10: ["Shape checks", "Mask tests", "Attention entropy", "Residual norms", "Ablations"],
    11: ["Prefill", "Decode", "KV cache", "Decoding strategies", "Compute-bound vs memory-bound"],
    12: [
        "Tokens to vectors",
        "Assembling the stack",
        "Final norm and tied head",
        "The loss of an untrained model",
        "Training",
        "Decoding",
        "Sampling",
    ],
}
CHAPTERS = {n: f"{n:02d}" for n in SUBSECTIONS}


def normalize(text: str) -> str:
    """Lower case; '/', '-', ',' and other punctuation become spaces; the word 'and' is dropped."""
    text = text.lower().replace("behavior", "behaviour")
    words = re.sub(r"[^0-9a-z√·]+", " ", text).split()
    return " ".join(w for w in words if w != "and")


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def headings(nb) -> list[str]:
    """Markdown headings (any level) with a leading section number such as '2.1' removed."""
    found = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                m = re.match(r"#{1,6}\s+(?:\d+(?:\.\d+)*\.?\s+)?(.*)", line.strip())
                if m:
                    found.append(m.group(1))
    return found


def chapter_path(n: int) -> Path | None:
    matches = [p for p in PATHS if p.name.startswith(CHAPTERS[n] + "-")]
    return matches[0] if matches else None


def has_heading(nb, name: str) -> bool:
    want = normalize(name)
    return any(normalize(h) == want or normalize(h).startswith(want + " ") for h in headings(nb))


def markdown(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def code(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def test_notebooks_exist():
    names = {p.name for p in PATHS}
    assert "00-start-here.ipynb" in names, f"notebooks/ holds {sorted(names)}"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_committed_clean(path):
    nb = read(path)
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata, f"{path.name}: metadata.widgets (stored widget state) must be absent"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", (
        f"{path.name}: kernelspec must be python3"
    )
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name}: cell {i} was committed with outputs"
            assert cell.execution_count is None, f"{path.name}: cell {i} has an execution count"


PLOTLY_MIME = "application/vnd.plotly.v1+json"


def figure_problems(fig: dict) -> list[str]:
    """Legibility rules for a figure's JSON (issue 13): a log axis chooses its ticks (plotly's default labels
    every digit of a short range, crowded; `course.viz.axes.log_axis`), and over bars the label of a reference
    line sits in the margin, where no bar can cover it."""
    layout, problems = fig.get("layout", {}), []
    for name, axis in layout.items():
        if name.startswith(("xaxis", "yaxis")) and axis.get("type") == "log":
            if "dtick" not in axis and "tickvals" not in axis:
                problems.append(f"{name}: a log axis with plotly's default (crowded) labels")
    if any(trace.get("type") == "bar" for trace in fig.get("data", [])):
        for note in layout.get("annotations", []):
            inside = str(note.get("xref", "")).endswith(("domain", "paper")) and 0 <= note.get("x", 0) < 1
            if inside or (note.get("x", 1) == 1 and note.get("xanchor") != "left"):
                problems.append(f"annotation {note.get('text')!r} drawn over the bars")
    return problems


def test_figure_problems_can_fail():
    crowded = {"layout": {"yaxis": {"type": "log"}}, "data": []}
    over_bars = {
        "data": [{"type": "bar"}],
        "layout": {"annotations": [{"text": "chance", "x": 1, "xref": "x domain", "xanchor": "right"}]},
    }
    assert figure_problems(crowded) and figure_problems(over_bars)
    fixed = {
        "data": [{"type": "bar"}],
        "layout": {
            "yaxis": {"type": "log", "dtick": 1},
            "annotations": [{"text": "chance", "x": 1, "xref": "x domain", "xanchor": "left"}],
        },
    }
    assert figure_problems(fixed) == []


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_executes_without_errors_or_stderr(path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = read(path)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        store_widget_state=False,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    # One thread per kernel (two run side by side under -n 2); no Kaleido PNG beside each widget (a Chromium
    # start per kernel, ~20 s; the widgets' own tests cover it) unless COURSE_VIZ_PNG is set.
    env = {
        **os.environ,
        "COURSE_THREADS": "1",
        "COURSE_VIZ_PNG": os.environ.get("COURSE_VIZ_PNG", "0"),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    try:
        client.execute(env=env)
    except CellExecutionError as e:
        pytest.fail(f"{path.name} raised:\n{e}")
    problems = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                problems.append(f"cell {i}: {out.ename}: {out.evalue}")
            elif out.output_type == "stream" and out.name == "stderr":
                problems.append(f"cell {i} wrote to stderr: {out.text[:500]}")
            elif PLOTLY_MIME in out.get("data", {}):
                problems += [f"cell {i}: {p}" for p in figure_problems(out["data"][PLOTLY_MIME])]
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
    assert "widgets" not in nb.metadata


@pytest.mark.parametrize("n", list(SUBSECTIONS), ids=[f"chapter{n:02d}" for n in SUBSECTIONS])
def test_outline_subsections_have_headings(n):
    path = chapter_path(n)
    assert path is not None, f"no notebook notebooks/{CHAPTERS[n]}-*.ipynb for chapter {n}"
    nb = read(path)
    missing = [name for name in SUBSECTIONS[n] if not has_heading(nb, name)]
    assert not missing, f"{path.name} lacks a heading for {missing}; its headings are {headings(nb)}"


CHAPTER_PATHS = [p for p in PATHS if re.match(r"\d\d-", p.name) and not p.name.startswith("00-")]


@pytest.mark.parametrize("path", CHAPTER_PATHS, ids=[p.stem for p in CHAPTER_PATHS])
def test_chapter_structure(path):
    nb = read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.lstrip().startswith("# "), (
        f"{path.name}: the first cell must be the chapter title ('# ...')"
    )
    text = markdown(nb).lower()
    assert "learning objectives" in text, f"{path.name}: no learning objectives"
    assert "common mistake" in text, f"{path.name}: no 'Common mistake' callout"
    assert "check yourself" in text, f"{path.name}: no 'Check yourself' block"
    check = text[text.index("check yourself") :]
    assert "<details>" in check and "</details>" in check, (
        f"{path.name}: the 'Check yourself' answers must sit in <details> blocks"
    )
    assert re.search(r"\bcourse\.viz\b", code(nb)), f"{path.name}: no widget from course.viz"


# ----------------------------------------------------------------------------- course.notebook helpers


def test_setup_seeds_every_generator_and_sets_threads(monkeypatch):
    import random

    import numpy as np
    import torch

    from course.notebook import setup

    before = torch.get_num_threads()
    try:
        draws = []
        for _ in range(2):
            setup(seed=123, threads=1)
            draws.append((random.random(), np.random.rand(), torch.rand(3)))
        assert draws[0][:2] == draws[1][:2] and torch.equal(draws[0][2], draws[1][2])
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("COURSE_THREADS", "2")
        setup(seed=0)
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="threads=-1"):
            setup(threads=-1)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("T", [1, 3, 7])
def test_influence_separates_position_wise_from_mixing_maps(T):
    import torch

    from course import ModelConfig
    from course.attention import MultiHeadAttention
    from course.feedforward import MLP
    from course.notebook import influence

    torch.manual_seed(T)
    config = ModelConfig.from_preset("tiny")
    x = torch.randn(2, T, config.d_model)
    diagonal = torch.eye(T, dtype=torch.bool)
    upper = torch.ones(T, T, dtype=torch.bool).triu()
    mlp = influence(MLP(config.d_model, config.d_ff), x)
    assert mlp.shape == (T, T)
    assert (mlp[~diagonal] == 0).all() and (mlp[diagonal] > 0).all()
    attn = MultiHeadAttention(config).eval()
    causal = influence(lambda h: attn(h, is_causal=True), x)
    assert (causal[~upper] == 0).all() and (causal[upper] > 0).all()
    full = influence(attn, x)
    assert (full > 0).all()


def test_influence_rejects_wrong_rank():
    import torch

    from course.notebook import influence

    with pytest.raises(ValueError, match=r"\(B, T, D\)"):
        influence(lambda h: h, torch.zeros(4, 8))
