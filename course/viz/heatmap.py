"""Heatmap conventions shared by the widgets (plain dicts, no widget state).

Keys on x, queries on y, query 0 on top; numeric axes with tick labels (repeated tokens never merge);
hover from `customdata` + `hovertemplate`; masked cells are None (gaps, `hoverongaps=False`) drawn grey by an
overlay trace whose hover says "N/A", so a masked cell never looks like a weight of 0.
"""

from __future__ import annotations

import html

import numpy as np

from .static import cells

MASK_GREY = "#c8c8c8"
BACKGROUND = "#ececec"
PROB_SCALE = "Blues"
SCORE_SCALE = "RdBu_r"
HOVER = "query '%{customdata[0]}' (%{y}) → key '%{customdata[1]}' (%{x}): %{z:.3f}<extra></extra>"
NA_HOVER = "query '%{customdata[0]}' (%{y}) → key '%{customdata[1]}' (%{x}): N/A (masked)<extra></extra>"


def token_labels(tokens, labels=None) -> list[str]:
    """Display labels of T tokens: `labels` when given (length checked), else the ids as strings."""
    tokens = [int(t) for t in tokens]
    if labels is None:
        return [str(t) for t in tokens]
    labels = [str(s) for s in labels]
    if len(labels) != len(tokens):
        raise ValueError(f"got {len(labels)} labels for {len(tokens)} tokens; expected one label per token")
    return labels


def unique_labels(labels) -> list[str]:
    """'tok (i)' for every position: unique even when tokens repeat."""
    return [f"{s} ({i})" for i, s in enumerate(labels)]


def hover_grid(q_labels, k_labels) -> np.ndarray:
    """customdata (T_q, T_k, 2) object array: the query and key label of each cell, HTML-escaped."""
    out = np.empty((len(q_labels), len(k_labels), 2), dtype=object)
    out[..., 0] = np.array([html.escape(s) for s in q_labels], dtype=object)[:, None]
    out[..., 1] = np.array([html.escape(s) for s in k_labels], dtype=object)[None, :]
    return out


def ticks(labels, max_ticks: int = 40) -> dict:
    """Axis settings: numeric positions 0..T-1 labelled 'tok (i)', thinned to at most `max_ticks` ticks."""
    step = max(1, -(-len(labels) // max_ticks))
    vals = list(range(0, len(labels), step))
    text = [html.escape(s) for s in unique_labels(labels)]
    return dict(tickmode="array", tickvals=vals, ticktext=[text[i] for i in vals])


def overlay_z(allowed) -> np.ndarray:
    """z of the mask overlay: 0 on masked cells (drawn grey), None elsewhere (transparent gap)."""
    allowed = np.asarray(allowed, dtype=bool)
    return cells(np.where(allowed, np.nan, 0.0))


def main_trace(z, customdata, zmin, zmax, colorscale, **kw) -> dict:
    """The heatmap of values (None = masked or N/A)."""
    return (
        dict(
            type="heatmap",
            z=z,
            customdata=customdata,
            zmin=zmin,
            zmax=zmax,
            colorscale=colorscale,
            hoverongaps=False,
            hovertemplate=HOVER,
        )
        | kw
    )


def overlay_trace(allowed, customdata, **kw) -> dict:
    """Grey cells with an 'N/A' hover wherever `allowed` is False."""
    return (
        dict(
            type="heatmap",
            z=overlay_z(allowed),
            customdata=customdata,
            zmin=0,
            zmax=1,
            colorscale=[[0, MASK_GREY], [1, MASK_GREY]],
            showscale=False,
            hoverongaps=False,
            hovertemplate=NA_HOVER,
            name="masked",
        )
        | kw
    )
