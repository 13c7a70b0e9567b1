"""The base of every course widget: one FigureWidget updated in place, controls, an error Output, a static fallback.

Subclasses build `self.fig` (a `go.FigureWidget`, created once), their controls and `self.view` (the container
shown), and connect controls with `self.on_change(control, handler)`. Handlers update the figure inside
`fig.batch_update()`; an exception in a handler is printed into `self.output` instead of vanishing.

Displaying a widget (`w.show()` or leaving it last in a cell) emits one output whose bundle holds the live view,
`static_figure()` as plotly JSON and, when a Chromium exists, a PNG (see `course.viz.static`). No widget state is
stored in notebooks.
"""
from __future__ import annotations

import contextlib
import traceback

import ipywidgets as widgets
import plotly.graph_objects as go

from .static import static_bundle


class CourseWidget:
    fig: go.FigureWidget
    view: widgets.Widget

    def __init__(self):
        self.output = widgets.Output()
        self._muted = False

    # --- callbacks ---------------------------------------------------------------------------------------------
    def guarded(self, fn):
        """Wrap a callback so that its exceptions are shown in `self.output` (Voila and Lab hide them otherwise).

        A ValueError (bad input) shows its message only, anything else the full traceback; the next call that
        succeeds clears it.
        """
        def wrapper(*args, **kwargs):
            if self.output.outputs:
                self.output.outputs = ()
            try:
                return fn(*args, **kwargs)
            except ValueError as e:
                self.output.append_stderr("".join(traceback.format_exception_only(e)))
            except Exception:
                self.output.append_stderr(traceback.format_exc())
        return wrapper

    def on_change(self, control: widgets.ValueWidget, handler=None) -> None:
        """Call `handler(change)` (default: `self.refresh()`) when the control's value changes."""
        handler = handler or (lambda change: self.refresh())

        def fire(change):
            if not self._muted:
                handler(change)
        control.observe(self.guarded(fire), names="value")

    @contextlib.contextmanager
    def muted(self):
        """Set several controls without a refresh per control; refresh once afterwards."""
        self._muted = True
        try:
            yield
        finally:
            self._muted = False
        self.guarded(self.refresh)()

    def refresh(self) -> None:
        """Redraw the figure from the controls' current values (in place, inside `fig.batch_update()`)."""
        raise NotImplementedError

    # --- display -----------------------------------------------------------------------------------------------
    def to_static(self) -> go.Figure:
        """A plain `go.Figure` of what the widget shows now (no kernel needed to view it)."""
        return go.Figure(self.fig)

    def static_figure(self) -> go.Figure:
        """The figure a saved notebook keeps for readers without a kernel (default: `to_static()`)."""
        return self.to_static()

    def show(self) -> None:
        """Display the widget; `update_static()` later refreshes the saved fallback of this same output."""
        from IPython.display import display
        self._display = display(self, display_id=True)

    def update_static(self) -> None:
        """Re-send the shown output so that its static fallback holds the current figure (e.g. after training)."""
        handle = getattr(self, "_display", None)
        if handle is not None:
            handle.update(self)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle = self.view._repr_mimebundle_()
        bundle.update(static_bundle(self.static_figure(), png_fig=go.Figure(self.fig)))
        bundle["text/plain"] = f"<{type(self).__name__}: interactive figure; run the notebook to use it>"
        return bundle
