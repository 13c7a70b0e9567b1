"""Optional dependencies: which pip extra of `transformer-anatomy` brings each package only some users need.

    [instructor]  nbgrader      `course grade` (release, collect, autograde, feedback)
    [app]         voila         `course explore` (the attention explorer as a standalone web app)
    [hf]          transformers  `course bench`'s Hugging Face comparison, `course.from_hf` on real checkpoints
    [png]         kaleido       PNG fallbacks of plotly figures in saved notebooks
    [dev]         all of the above plus the test tools (`make install` installs it)

`require("voila")` raises `MissingExtra`, a ModuleNotFoundError whose message names the extra to install.
"""

from __future__ import annotations

import importlib.util

DISTRIBUTION = "transformer-anatomy"
EXTRAS = {"nbgrader": "instructor", "voila": "app", "transformers": "hf", "kaleido": "png"}


class MissingExtra(ModuleNotFoundError):
    """An optional package is not installed; the message says which extra installs it."""


def install_hint(module: str) -> str:
    extra = EXTRAS.get(module)
    if extra is None:
        return f"pip install {module}"
    return f"pip install '{DISTRIBUTION}[{extra}]' (or `make install`, which installs every extra)"


def message(module: str, purpose: str | None = None) -> str:
    """ "<purpose> needs the [extra] extra's package '<module>', which is not installed: pip install ..." """
    extra = EXTRAS.get(module)
    what = f"the [{extra}] extra's package {module!r}" if extra else f"the package {module!r}"
    return f"{purpose + ' ' if purpose else ''}needs {what}, which is not installed: {install_hint(module)}"


def available(module: str) -> bool:
    """Whether `module` can be imported (found without importing it: importing transformers takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, purpose: str | None = None) -> None:
    """Raise `MissingExtra` naming the extra when `module` is not installed."""
    if not available(module):
        raise MissingExtra(message(module, purpose), name=module)


def missing_extra(err: ModuleNotFoundError) -> str | None:
    """The top-level module of an import error when an extra provides it, else None."""
    root = (err.name or "").split(".")[0]
    return root if root in EXTRAS else None
