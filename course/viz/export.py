"""`course export-html`: one self-contained HTML page of a shipped model's attention, for any browser,
offline.

    course export-html --out attention.html [--model induction] [--prompt "^uvwxyzabcdefgabcdefg"]

The page is the explorer's static figure (`AttentionExplorer.to_static()`: layer and head menus, hover with
query, key and weight, masked cells grey) with plotly.js embedded: no kernel, no CDN, no network request.
"""

from __future__ import annotations

import html
import sys
from pathlib import Path

from .app import DEFAULT_MODEL, add_model_arguments

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def page_html(name: str = DEFAULT_MODEL, prompt: str | None = None) -> str:
    """The whole page: the static explorer of model `name` on `prompt`, plotly.js inline."""
    from .app import explorer

    view = explorer(name, prompt)
    fig = view.to_static()
    # The page's whole width and most of its height; the title on the left, clear of plotly's toolbar (right).
    fig.update_layout(
        title=dict(
            text=f"The {name} model: attention weights (choose a layer and a head)", x=0, xanchor="left"
        ),
        width=None,
        height=None,
        autosize=True,
    )
    page = fig.to_html(
        include_plotlyjs=True,
        include_mathjax=False,
        full_html=True,
        config=PLOTLY_CONFIG,
        div_id="attention-explorer",
        default_width="100%",
        default_height="92vh",
    )
    title = f"<title>Attention explorer: {html.escape(name)} model</title>"
    return page.replace("<head>", f"<head>{title}", 1)


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    add_model_arguments(parser)


def run(args) -> int:
    try:
        page = page_html(args.model, args.prompt)
    except ValueError as e:
        print(f"course export-html: {e}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page, encoding="utf-8")
    print(
        f"wrote {args.out} ({len(page.encode()) / 1e6:.1f} MB): the {args.model} model, open it in a browser"
    )
    return 0
