"""Static fallbacks: what a widget's output still shows with no kernel (reopened notebook, nbconvert, the
site).

A widget displays its fallback as its own output, just before the live view (`course.viz.widget`); it holds
  application/vnd.plotly.v1+json  the figure as JSON: JupyterLab draws it (hover, zoom) when the widget can't.
A kernel never draws PNGs (a headless Chromium per kernel costs ~400 MB). `make lab`'s server adds them when
it saves a notebook (`save_hook`: one Kaleido browser in the server, started by the first save needing it):
  image/png                       a Kaleido image of that figure, for nbconvert HTML / nbviewer / GitHub; only
                                  when a Chromium exists; COURSE_VIZ_PNG=0 skips it, =1 requires it.
Figure data never holds NaN (jupyter_client warns on stderr and the browser would get "nan"): use `grid`.
"""

from __future__ import annotations

import atexit
import base64
import functools
import importlib.util
import json
import os
import shutil
import warnings

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

PLOTLY_MIME = "application/vnd.plotly.v1+json"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def cells(matrix, decimals: int = 3) -> np.ndarray:
    """Array -> object array of floats rounded to `decimals`, None for NaN / ±inf (masked, N/A).

    Plotly takes object arrays without copying them element by element (5x faster than nested lists at
    T = 128) and sends them as JSON lists with null.
    """
    m = np.asarray(matrix, dtype=np.float64)
    out = np.round(m, decimals).astype(object)
    out[~np.isfinite(m)] = None
    return out


def grid(matrix, decimals: int = 3) -> list:
    """`cells` as nested lists (JSON-ready): what a figure's z holds."""
    return cells(matrix, decimals).tolist()


def figure_json(fig: go.BaseFigure) -> dict:
    """The plotly mimetype payload of a figure: plain JSON (no numpy, no NaN), no plotly.js inside."""
    payload = json.loads(pio.to_json(fig, validate=False, remove_uids=True))
    payload["config"] = {"displaylogo": False, "responsive": True}
    json.dumps(payload, allow_nan=False)  # raises ValueError if a NaN slipped through
    return payload


@functools.cache
def chromium_path() -> str | None:
    """The Chrome/Chromium Kaleido would use ($BROWSER_PATH first), or None."""
    pinned = os.environ.get("BROWSER_PATH")
    if pinned:
        return pinned if os.path.exists(pinned) else None
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def png_setting() -> str:
    """COURSE_VIZ_PNG as "off" (0), "on" (1) or "auto" (unset: a PNG when Kaleido and a Chromium exist)."""
    value = os.environ.get("COURSE_VIZ_PNG", "auto").strip().lower()
    return {
        "0": "off",
        "false": "off",
        "no": "off",
        "off": "off",
        "1": "on",
        "true": "on",
        "yes": "on",
        "on": "on",
    }.get(value, "auto")


def png_enabled() -> bool:
    """Whether bundles carry a PNG: off never, on always (an error without Chromium), auto when possible."""
    setting = png_setting()
    if setting == "off":
        return False
    if setting == "on":
        if chromium_path() is None:
            raise RuntimeError(
                "COURSE_VIZ_PNG=1 but no Chromium/Chrome was found (install Debian's `chromium`)"
            )
        return True
    return chromium_path() is not None and importlib.util.find_spec("kaleido") is not None


@functools.cache
def _kaleido_server() -> None:
    """Start one Kaleido browser per process (first image ~2 s of CPU, later ones ~0.3 s); stop it at exit."""
    import kaleido

    kaleido.start_sync_server(silence_warnings=True)
    atexit.register(kaleido.stop_sync_server, silence_warnings=True)


def png_bytes(fig: go.BaseFigure | dict) -> bytes:
    """A PNG of the figure (a figure or its JSON) drawn by Kaleido (needs a Chromium)."""
    _kaleido_server()
    with warnings.catch_warnings():  # plotly warns that its kaleido options are ignored by a running server
        warnings.simplefilter("ignore")
        return pio.to_image(fig, format="png", validate=False)


@functools.lru_cache(maxsize=256)
def _png_of(payload: str) -> str:
    """Base64 PNG of a plotly JSON payload; cached, since every save of a notebook sends the same figures."""
    figure = json.loads(payload)
    return base64.b64encode(png_bytes({"data": figure["data"], "layout": figure.get("layout", {})})).decode()


def add_pngs(nb: dict) -> int:
    """Add a PNG to each output holding a plotly figure and no PNG, in place; return how many were added."""
    added = 0
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = out.get("data", {})
            if PLOTLY_MIME in data and "image/png" not in data:
                data["image/png"] = _png_of(json.dumps(data[PLOTLY_MIME], sort_keys=True))
                added += 1
    return added


def save_hook(model: dict, **_) -> None:
    """`ContentsManager.pre_save_hook` of `make lab`: a saved notebook carries PNGs of its plotly figures.

    Auto mode: a browser that fails to start costs the PNGs only (the plotly JSON still shows the figures).
    """
    if model.get("type") != "notebook" or not png_enabled():
        return
    try:
        add_pngs(model["content"])
    except Exception:
        if png_setting() == "on":
            raise


def static_bundle(fig: go.BaseFigure) -> dict:
    """Mime entries of a static rendering: plotly JSON of `fig` (no PNG: see `save_hook`)."""
    return {PLOTLY_MIME: figure_json(fig)}
