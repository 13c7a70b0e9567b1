"""Static fallbacks: what a widget's output still shows with no kernel (reopened notebook, nbconvert, the
site).

A widget displays its fallback as its own output, just before the live view (`course.viz.widget`); it holds:
  application/vnd.plotly.v1+json   the figure as JSON: JupyterLab draws it (hover, zoom) when the
                                   widget cannot
  image/png                        a Kaleido image, for nbconvert HTML / nbviewer / GitHub — only when
                                   a Chromium exists; set COURSE_VIZ_PNG=0 to skip it (fast tests),
                                   =1 to require it.
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


def png_bytes(fig: go.BaseFigure) -> bytes:
    """A PNG of the figure drawn by Kaleido (needs a Chromium)."""
    _kaleido_server()
    with warnings.catch_warnings():  # plotly warns that its kaleido options are ignored by a running server
        warnings.simplefilter("ignore")
        return pio.to_image(go.Figure(fig), format="png", validate=False)


def static_bundle(fig: go.BaseFigure, png_fig: go.BaseFigure | None = None) -> dict:
    """Mime entries of a static rendering: plotly JSON of `fig`, plus a PNG of `png_fig` (default `fig`)."""
    bundle = {PLOTLY_MIME: figure_json(fig)}
    if png_enabled():
        try:
            bundle["image/png"] = base64.b64encode(
                png_bytes(png_fig if png_fig is not None else fig)
            ).decode()
        except Exception:
            if png_setting() == "on":
                raise
            # auto: a browser that fails to start costs the PNG only; the plotly JSON still shows the figure
    return bundle
