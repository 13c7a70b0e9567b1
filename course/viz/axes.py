"""Axis settings for the chapters' plotly figures.

Plotly labels a log axis that spans a decade or two with every digit (2, 3, … 9 in small type, crowded);
`log_axis` gives it a few readable labels instead: 1-2-5 steps over up to two and a half decades, powers of
ten beyond.

    fig.update_yaxes(**log_axis(values, title_text="gradient norm"))
"""

from __future__ import annotations

import math

import numpy as np


def log_axis(values, **settings) -> dict:
    """Settings of a log axis for data `values` (non-positive values, which a log axis cannot draw, are
    ignored); extra keyword settings (a title, …) are passed through."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        raise ValueError("log_axis needs at least one positive, finite value")
    low, high = math.floor(math.log10(v.min())), math.ceil(math.log10(v.max()))
    if (
        math.log10(v.max() / v.min()) > 2.5
    ):  # many decades: one label per power of ten, unlabelled minor grid lines between
        ticks = {"dtick": 1, "minor": {"dtick": "D1", "showgrid": True}}
    else:
        steps = [m * 10.0**e for e in range(low, high + 1) for m in (1, 2, 5)]
        ticks = {"tickvals": [t for t in steps if v.min() / 2 <= t <= v.max() * 2]}
    return {"type": "log", "exponentformat": "power", **ticks, **settings}
