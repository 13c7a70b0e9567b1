"""The base of every course widget: one FigureWidget updated in place, controls, an error Output, a static
fallback.

Subclasses build `self.fig` (a `go.FigureWidget`, created once), their controls and `self.view` (the container
shown), and connect controls with `self.on_change(control, handler)`. Handlers update the figure inside
`fig.batch_update()`; an exception in a handler is printed into `self.output` instead of vanishing.

Displaying a widget (`w.show()` or leaving it last in a cell) emits two outputs: first the static fallback,
`static_figure()` as plotly JSON (a saved notebook gets its PNG at save time: `course.viz.static`); then the
live view (widget view + text/plain). JupyterLab's widget renderer never falls back to another mimetype of its
bundle, so the fallback needs its own output. With a kernel, `HideStaticCopy` (inside the live view)
hides that fallback output; a notebook reopened without a kernel cannot draw it, so the fallback stays
visible. No widget state is stored in notebooks.
"""

from __future__ import annotations

import contextlib
import os
import traceback

import anywidget
import ipywidgets as widgets
import plotly.graph_objects as go

from .static import static_bundle

SHARED_BUNDLE = "COURSE_PLOTLY_BUNDLE"  # "1" under `make lab`, whose server serves plotly's widget bundle


class SharedBundleFigureWidget(go.FigureWidget):
    """A FigureWidget whose front end imports plotly's widget bundle from the server, once per page.

    A plain FigureWidget carries the 5 MB bundle in its own state: every figure sends, parses and compiles it
    again (a reload restores them all at once), and anywidget gives a model only 2 s to load it before it
    drops the model's messages for good, which a busy machine misses. Here the state holds a short loader and
    the browser imports one cached module, served by `make lab` (`course/lab/jupyter_lab_config.py`).
    """

    _esm = """
    const config = JSON.parse(document.getElementById("jupyter-config-data")?.textContent ?? "{}");
    const url = new URL(`${config.baseUrl ?? "/"}static/widgetbundle.js`, location.origin).href;
    export default (await import(url)).default;
    """


def figure_widget(*args, **kwargs) -> go.FigureWidget:
    """A FigureWidget: one that shares the server's plotly bundle under `make lab`, else plotly's own."""
    cls = SharedBundleFigureWidget if os.environ.get(SHARED_BUNDLE) == "1" else go.FigureWidget
    return cls(*args, **kwargs)


class HideStaticCopy(anywidget.AnyWidget):
    """Invisible: hides the output just before the one it is drawn in (the static copy of a live figure), once
    the live view beside it has drawn its figure — never before, so a widget never ends blank.

    A figure widget's front end can fail to start (anywidget gives up after ~2 s on a busy machine) or draw
    bare axes; then the static copy stays and a note says what to do. If the live view draws later, the copy
    and the note go. Its CSS also hides the "Error displaying widget" line of a course widget whose model a
    reloaded page could not restore, where its static copy shows the figure. A no-op outside an output area.
    """

    _esm = """
    const drawn = (gd) => Array.isArray(gd.data) && gd.data.length > 0 && !!gd._fullLayout
                          && !!gd.querySelector('.main-svg');
    function render({ el }) {
      const start = Date.now();
      let note = null;
      const check = () => {
        if (!el.isConnected && Date.now() - start > 5000) return;  // the output was cleared
        const output = el.closest('.jp-OutputArea-child');
        const copy = output && output.previousElementSibling;
        if (output && copy && copy.classList.contains('jp-OutputArea-child')) {
          const plots = [...output.querySelectorAll('.js-plotly-plot')];
          if (plots.length > 0 && plots.every(drawn)) {
            copy.style.display = 'none';
            if (note) { note.remove(); note = null; }
            return;
          }
          if (!note && Date.now() - start > 15000) {
            note = document.createElement('div');
            note.className = 'course-live-note';
            note.textContent = 'The live figure has not started (the machine may be busy): the static figure '
              + 'above shows the result. Run this cell again for the interactive one.';
            el.appendChild(note);
          }
        }
        if (Date.now() - start < 600000) setTimeout(check, 200);
      };
      check();
    }
    export default { render };
    """
    _css = """
    .course-live-note { color: #7a5b00; background: #fff8e1; padding: 4px 8px; font-size: 12px; }
    .jp-OutputArea-child:has(> .jp-OutputArea-output[data-mime-type="application/vnd.plotly.v1+json"])
      + .jp-OutputArea-child:has(> .jp-OutputArea-output.jupyter-widgets:not(:has(*))) { display: none; }
    """


class CourseWidget:
    fig: go.FigureWidget
    view: widgets.Widget

    def __init__(self):
        self.output = widgets.Output()
        self._muted = False
        self._live = None  # the view plus its HideStaticCopy, built at the first display

    # --- callbacks
    # ---------------------------------------------------------------------------------------------
    def guarded(self, fn):
        """Wrap a callback so that its exceptions are shown in `self.output` (Voila and Lab hide them
        otherwise).

        A ValueError (bad input) shows its message only, anything else the full traceback; the next call that
        succeeds clears it.
        """

        def wrapper(*args, **kwargs):
            if self.output.outputs:
                self.output.outputs = ()
            try:
                result = fn(*args, **kwargs)
                self._keep_state_current()
                return result
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

    def _keep_state_current(self) -> None:
        """Point the figure's synced state at its current data and layout, without sending anything.

        FigureWidget sends updates as restyle/relayout messages and leaves `_widget_data` / `_widget_layout`
        as they were when it was created; a front end that restores the widget from the kernel (a page reload
        with the kernel alive) would draw that stale state (a layout set after creation lost: query 0 at the
        bottom, no axis titles). The front end already holds the current figure, so nothing needs sending: the
        trait values are set directly (no change notification, no message), and `get_state()` reads them at
        restore."""
        fig = getattr(self, "fig", None)
        if isinstance(fig, go.FigureWidget):
            fig._trait_values["_widget_data"] = fig._data
            fig._trait_values["_widget_layout"] = fig._layout

    def refresh(self) -> None:
        """Redraw the figure from the controls' current values (in place, inside `fig.batch_update()`)."""
        raise NotImplementedError

    # --- display
    # -----------------------------------------------------------------------------------------------
    def to_static(self) -> go.Figure:
        """A plain `go.Figure` of what the widget shows now (no kernel needed to view it)."""
        return go.Figure(self.fig)

    def static_figure(self) -> go.Figure:
        """The figure a saved notebook keeps for readers without a kernel (default: `to_static()`)."""
        return self.to_static()

    def show(self) -> None:
        """Display the static fallback, then the live view; `update_static()` later refreshes that
        fallback."""
        from IPython.display import display

        self._display = display(self.fallback_bundle(), raw=True, display_id=True)
        display(self._repr_mimebundle_(), raw=True)

    def _ipython_display_(self) -> None:
        self.show()

    def update_static(self) -> None:
        """Re-send the shown fallback output so that it holds the current figure (e.g. after training)."""
        handle = getattr(self, "_display", None)
        if handle is not None:
            handle.update(self.fallback_bundle(), raw=True)

    def fallback_bundle(self) -> dict:
        """The static output's bundle: plotly JSON of `static_figure()` (no PNG: kernels start no browser)."""
        bundle = static_bundle(self.static_figure())
        bundle["text/plain"] = f"<{type(self).__name__}: static figure; run the notebook to use it>"
        return bundle

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """The live output's bundle: the view (with its `HideStaticCopy`) and text/plain only."""
        self._keep_state_current()
        if self._live is None:
            self._live = widgets.VBox([self.view, HideStaticCopy()])
        bundle = self._live._repr_mimebundle_()
        bundle["text/plain"] = f"<{type(self).__name__}: interactive figure>"
        return bundle
