"""Interactive widgets of the course (plotly FigureWidget + ipywidgets), each with a static fallback.

    from course.viz import AttentionExplorer
    AttentionExplorer(model, tokens, labels).show()

Every widget: state -> figure logic in a pure view model (unit-tested without a browser), one FigureWidget
created once and updated in place, callback errors shown in an Output under the figure, `to_static()` -> a
plain `go.Figure`, and a display bundle that still shows the figure without a kernel (`course.viz.static`).
"""
from .attention_explorer import AttentionExplorer
from .attention_view import AttentionView

__all__ = ["AttentionExplorer", "AttentionView"]
