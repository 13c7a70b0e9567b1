"""Real English text, offline: the documentation that ships inside CPython's standard library.

Sources (nothing is downloaded):
  topics      `pydoc_data.topics`, the module behind `help("if")`, `help("assert")`, ... in every CPython
              install: about 80 sections of the Python Language and Library Reference (statements,
              expressions, data model, ...), 0.46 MB of English prose with some grammar rules and code
              examples.
  docstrings  the docstrings (of modules, classes and functions, over 80 characters) of the standard
              library's own .py files, read with `ast` (never imported), tests, idlelib, tkinter and
              turtledemo left out: about 1.35 MB more, which keeps a 1M-parameter model from memorising the
              topics alone (with topics only, held-out loss rose again after 13 epochs, 600 steps).

Licence: the Python documentation and the standard library are Copyright (c) 2001 Python Software Foundation,
distributed under the PSF License Agreement (Python Software Foundation License Version 2),
https://docs.python.org/3/license.html. The text differs between Python versions; `corpus_info()` records the
version and a SHA-256.

Many passages repeat (the "specialnames" topic repeats "attribute-access", "customization", ...: a fifth of
the topics). `corpus_text()` keeps only the first copy of each paragraph, so held-out text is never a verbatim
copy of training text.

    text = corpus_text()                         # topics (sorted by name), then docstrings; repeats dropped
    train, held_out = split(text)                # deterministic: every 10th chunk of paragraphs is held out
    stream = TokenStream(ids, context=128)       # random (x, y) windows for training, like a course Task
"""

from __future__ import annotations

import ast
import functools
import hashlib
import platform
import sysconfig
from pathlib import Path

import torch

from .data import as_generator

SOURCE = (
    "CPython standard library: module pydoc_data.topics (the Python documentation behind help()), then the "
    "docstrings of the standard library's .py files"
)
SKIPPED_PACKAGES = (
    "test",
    "tests",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "site-packages",
    "ensurepip",
)
LICENCE = (
    "PSF License Agreement (Python Software Foundation License Version 2); Copyright (c) 2001 Python "
    "Software Foundation; https://docs.python.org/3/license.html"
)


def topic_texts() -> list[str]:
    """The topics of `pydoc_data.topics`, sorted by name."""
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics)]


def docstring_texts(*, min_chars: int = 80) -> list[str]:
    """Docstrings of the standard library's .py files (sorted by path, then `ast.walk` order), parsed, not
    imported."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.rglob("*.py")):
        if set(path.relative_to(root).parts) & set(SKIPPED_PACKAGES):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= min_chars:
                    out.append(doc)
    return out


@functools.lru_cache(maxsize=1)
def corpus_text() -> str:
    """Topics then docstrings, as paragraphs separated by blank lines; a paragraph seen before is dropped."""
    seen, out = set(), []
    for document in topic_texts() + docstring_texts():
        for paragraph in document.strip("\n").split("\n\n"):
            if paragraph.strip() and paragraph not in seen:
                seen.add(paragraph)
                out.append(paragraph + "\n\n")
    return "".join(out)


def corpus_info(text: str | None = None) -> dict:
    """Source, licence, Python version and size/hash of the corpus, for model cards."""
    text = corpus_text() if text is None else text
    data = text.encode("utf-8")
    return {
        "source": SOURCE,
        "licence": LICENCE,
        "python": platform.python_version(),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def chunks(text: str, *, chunk_chars: int = 2000) -> list[str]:
    """Consecutive paragraphs (split at blank lines) grouped into chunks of at least `chunk_chars`
    characters."""
    if chunk_chars < 1:
        raise ValueError(f"chunk_chars={chunk_chars} must be >= 1")
    out, current = [], ""
    for paragraph in text.split("\n\n"):
        current += paragraph + "\n\n"
        if len(current) >= chunk_chars:
            out.append(current)
            current = ""
    return out + ([current] if current else [])


def split(text: str, *, held_out_every: int = 10, chunk_chars: int = 2000) -> tuple[str, str]:
    """(train, held_out): chunk i goes to held_out when i % held_out_every == held_out_every - 1 (about 10%).

    Whole chunks of paragraphs are held out, so the held-out text is prose the model never saw, from the same
    documents (and so the same distribution) as the training text.
    """
    if held_out_every < 2:
        raise ValueError(f"held_out_every={held_out_every} must be >= 2")
    parts = chunks(text, chunk_chars=chunk_chars)
    held = [i % held_out_every == held_out_every - 1 for i in range(len(parts))]
    return (
        "".join(p for p, h in zip(parts, held, strict=True) if not h),
        "".join(p for p, h in zip(parts, held, strict=True) if h),
    )


class TokenStream:
    """A long 1-D tensor of token ids served as windows of `context` inputs, like a course `Task`.

    `batch(B, generator)` -> (x, y, loss_mask), each (B, context): random windows, y = x shifted by one,
    every position scored. `windows()` -> (x, y), each (N, context): the non-overlapping windows, for
    evaluation."""

    name = "text"

    def __init__(self, ids: torch.Tensor, context: int):
        if ids.dim() != 1 or ids.numel() < context + 1:
            raise ValueError(
                f"ids must be 1-D with more than context={context} tokens, got shape {tuple(ids.shape)}"
            )
        self.ids, self.context = ids.long(), context

    def batch(self, batch_size: int, generator=None):
        starts = torch.randint(
            0, self.ids.numel() - self.context, (batch_size,), generator=as_generator(generator)
        )
        tokens = self.ids[starts[:, None] + torch.arange(self.context + 1)]  # (B, context + 1)
        return tokens[:, :-1], tokens[:, 1:], torch.ones(batch_size, self.context, dtype=torch.bool)

    def windows(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = (self.ids.numel() - 1) // self.context
        x = self.ids[: n * self.context].view(n, self.context)  # (N, context)
        y = self.ids[1 : n * self.context + 1].view(n, self.context)  # (N, context)
        return x, y
