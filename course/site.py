"""`course site --out DIR`: execute every chapter and render it to static HTML that reads without Jupyter.

No widget state is stored, so live widgets cannot draw on a static page: each widget output is replaced by the
static fallback its bundle carries (a plotly figure, else a PNG). Plotly figures are drawn by one local copy
of plotly.js written beside the pages; MathJax, require.js and the widget manager are left out. Nothing loads
from a CDN.
"""

from __future__ import annotations

import html
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PLOTLY_JS = "plotly.min.js"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PLOTLY_JSON = "application/vnd.plotly.v1+json"

# The lab template, minus everything it would fetch from a CDN, plus the local plotly.js and a navigation bar.
TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}<script src="PLOTLY_JS"></script>{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<style>.course-nav{margin:1em 2em;font-family:sans-serif}</style>
{%- endblock extra_css -%}
{%- block body_header -%}{{ super() }}<nav class="course-nav">{{ resources.course_nav }}</nav>{%- endblock -%}
{%- block body_footer -%}<nav class="course-nav">{{ resources.course_nav }}</nav>{{ super() }}{%- endblock -%}
""".replace("PLOTLY_JS", PLOTLY_JS)


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="site", help="output folder (default: site)")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="chapter prefixes or names to render, e.g. 06 08 (default: every notebook)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="notebooks executed in parallel (default: 2)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default: 600)")


def chapters(only: list[str] | None = None, folder: Path = NOTEBOOKS) -> list[Path]:
    """The notebooks to render, in course order; `only` keeps those whose name starts with one of its
    entries."""
    paths = sorted(folder.glob("[0-9][0-9]-*.ipynb"))
    if only:
        paths = [p for p in paths if any(p.name.startswith(o) or p.stem == o for o in only)]
        if not paths:
            raise ValueError(f"--only {only} matches no notebook in {folder}")
    return paths


def kernel_env() -> dict[str, str]:
    """The kernels' environment: one torch thread each (parallel kernels must not fight for cores) and no
    Kaleido PNGs (the pages draw the plotly figures themselves); settings already in the environment win."""
    return {"COURSE_THREADS": "1", "COURSE_VIZ_PNG": "0", **os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


def execute(path: Path, timeout: int = 600):
    """Run a notebook top to bottom in its own folder (no widget state kept); return (notebook, seconds)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        store_widget_state=False,
        resources={"metadata": {"path": str(path.parent)}},
    ).execute(env=kernel_env())
    nb.metadata.pop("widgets", None)
    return nb, time.perf_counter() - start


def plotly_div(figure: dict) -> str:
    """A plotly figure (JSON dict) as an HTML div drawn by the page's local plotly.js."""
    import plotly.io as pio

    return pio.to_html(figure, include_plotlyjs=False, full_html=False, validate=False)


def static_bundle(data: dict) -> dict:
    """An output bundle with its live widget view dropped and any plotly figure turned into static HTML."""
    data = {k: v for k, v in data.items() if k != WIDGET_VIEW}
    if PLOTLY_JSON in data:
        return {"text/html": plotly_div(data[PLOTLY_JSON])}
    return data


def make_static(nb):
    """Replace every widget view by its static fallback in place; drop outputs left with nothing to show."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if "data" in out:
                was_widget = WIDGET_VIEW in out["data"]
                out["data"] = static_bundle(out["data"])
                if was_widget and set(out["data"]) <= {"text/plain"}:
                    continue  # a widget without a fallback: its repr ("VBox(...)") is noise on a page
            kept.append(out)
        cell["outputs"] = kept
    return nb


def title_of(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def nav_html(pages: list[tuple[str, str]], i: int) -> str:
    links = ['<a href="index.html">All chapters</a>']
    if i > 0:
        links.append(f'<a href="{pages[i - 1][0]}">← {html.escape(pages[i - 1][1])}</a>')
    if i + 1 < len(pages):
        links.append(f'<a href="{pages[i + 1][0]}">{html.escape(pages[i + 1][1])} →</a>')
    return " · ".join(links)


def render(nb, nav: str) -> str:
    """Static HTML of an executed notebook (lab look, no CDN)."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        extra_loaders=[DictLoader({"course_site.html.j2": TEMPLATE})], template_file="course_site.html.j2"
    )
    body, _ = exporter.from_notebook_node(make_static(nb), resources={"course_nav": nav})
    return body


def index_html(pages: list[tuple[str, str]]) -> str:
    items = "\n".join(f'<li><a href="{href}">{html.escape(title)}</a></li>' for href, title in pages)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Transformer Anatomy</title>'
        '</head>\n<body style="font-family:sans-serif;max-width:50em;margin:2em auto">'
        "<h1>Transformer Anatomy</h1>\n<p>Every chapter, executed. Figures are static; run the notebooks "
        "in JupyterLab (<code>make lab</code>) for the live widgets.</p>\n"
        f'<ol start="0">\n{items}\n</ol></body></html>\n'
    )


def _page(args) -> tuple[str, float]:
    """Worker: execute one notebook and render it; (HTML, seconds spent executing)."""
    path, nav, timeout = args
    nb, seconds = execute(Path(path), timeout)
    return render(nb, nav), seconds


def build(out: Path, paths: list[Path], jobs: int = 2, timeout: int = 600, log=print) -> dict[str, float]:
    """Execute and render `paths` into `out` (`jobs` at a time); return seconds spent executing each
    notebook."""
    import nbformat
    import plotly

    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(plotly.__file__).parent / "package_data" / PLOTLY_JS, out / PLOTLY_JS)
    pages = [(p.stem + ".html", title_of(nbformat.read(p, as_version=4), p.stem)) for p in paths]
    work = [(str(p), nav_html(pages, i), timeout) for i, p in enumerate(paths)]
    timings = {}
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        for (href, _), path, (page, seconds) in zip(pages, paths, pool.map(_page, work), strict=True):
            (out / href).write_text(page, encoding="utf-8")
            timings[path.name] = seconds
            log(f"  {path.name:<40} executed in {seconds:6.1f} s")
    (out / "index.html").write_text(index_html(pages), encoding="utf-8")
    return timings


def run(args) -> int:
    try:
        paths = chapters(args.only)
    except ValueError as err:
        print(f"course site: {err}", file=sys.stderr)
        return 2
    if args.jobs < 1 or args.timeout < 1:
        print(
            f"course site: --jobs ({args.jobs}) and --timeout ({args.timeout}) must be positive",
            file=sys.stderr,
        )
        return 2
    start = time.perf_counter()
    timings = build(Path(args.out), paths, args.jobs, args.timeout, log=partial(print, flush=True))
    print(f"site: {len(timings)} chapters in {args.out}/ ({time.perf_counter() - start:.1f} s)")
    return 0
