"""Live training view: the loss curve and one head's attention pattern, redrawn while a small model learns.

    from course import DecoderLM, ModelConfig
    from course.data import make_task
    from course.viz import TrainingView
    task = make_task("induction", length=8, n_symbols=16)
    model = DecoderLM(ModelConfig.from_preset("tiny", vocab_size=task.vocab_size))
    probe = task.probe(1)[0]                                            # token ids (T,): ^ r r
    view = TrainingView(model, probe, list(task.tokenizer.decode(probe)))
    view.show()
    view.train(task, steps=300, callback_every=25)  # course.training.train(..., callback=view.callback)

`view.callback(step, loss, model)` is the `course.training.train` callback: it appends the loss and redraws
the pattern of the selected (layer, head) on the probe tokens (an induction probe `^ r r` shows the induction
stripe appear). The layer and head controls redraw the pattern from the model as it is now. The figure is
updated in place, so it animates while the training cell runs; keep runs short (a few hundred steps).
"""

from __future__ import annotations

import ipywidgets as widgets

from .attention_view import AttentionView
from .heatmap import BACKGROUND, PROB_SCALE, hover_grid, main_trace, overlay_trace, overlay_z, ticks
from .static import cells
from .widget import CourseWidget, figure_widget


class TrainingView(CourseWidget):
    def __init__(self, model, probe, labels=None, layer: int | None = None, head: int = 0):
        super().__init__()
        self.model, self.probe, self._labels = model, probe, labels
        self.steps: list[int] = []
        self.losses: list[float] = []
        c = model.config
        self.layer = widgets.IntSlider(
            c.n_layers - 1 if layer is None else layer,
            min=0,
            max=c.n_layers - 1,
            description="layer",
            continuous_update=False,
        )
        self.head = widgets.ToggleButtons(
            options=[(f"H{h}", h) for h in range(c.n_heads)],
            value=head,
            description="head",
            style={"button_width": "44px"},
        )
        view = self._attention()
        hm = view.heatmap(self.layer.value, self.head.value)
        custom = hover_grid(view.q_labels, view.k_labels)
        self.fig = figure_widget(
            [
                dict(
                    type="scatter",
                    x=[],
                    y=[],
                    mode="lines+markers",
                    name="loss",
                    hovertemplate="step %{x}: loss %{y:.4f}<extra></extra>",
                ),
                main_trace(cells(hm.z), custom, 0.0, 1.0, PROB_SCALE, xaxis="x2", yaxis="y2"),
                overlay_trace(hm.allowed, custom, xaxis="x2", yaxis="y2"),
            ]
        )
        self.fig.update_layout(
            width=980,
            height=480,
            plot_bgcolor=BACKGROUND,
            showlegend=False,
            title=dict(text=self._title(hm)),
            xaxis=dict(domain=[0, 0.38], title="step"),
            yaxis=dict(title="training loss", rangemode="tozero"),
            xaxis2=dict(domain=[0.5, 0.95], anchor="y2", title="key", **ticks(view.k_labels)),
            yaxis2=dict(anchor="x2", autorange="reversed", title="query", **ticks(view.q_labels)),
        )
        self.on_change(self.layer)
        self.on_change(self.head)
        self.view = widgets.VBox([widgets.HBox([self.layer]), self.head, self.fig, self.output])

    def _attention(self) -> AttentionView:
        return AttentionView.from_model(self.model, self.probe, self._labels)

    def _title(self, hm) -> str:
        where = f"step {self.steps[-1]}, loss {self.losses[-1]:.4f}" if self.steps else "before training"
        return f"{where} · {hm.title}"

    def refresh(self) -> None:
        hm = self._attention().heatmap(self.layer.value, self.head.value)
        with self.fig.batch_update():
            self.fig.data[0].update(x=self.steps, y=[round(v, 5) for v in self.losses])
            self.fig.data[1].z = cells(hm.z)
            self.fig.data[2].z = overlay_z(hm.allowed)
            self.fig.layout.title.text = self._title(hm)

    def callback(self, step: int, loss: float, model=None) -> None:
        """`course.training.train` callback: record (step, loss) and redraw from the model being trained."""
        if model is not None:
            self.model = model
        self.steps.append(int(step))
        self.losses.append(float(loss))
        self.guarded(self.refresh)()

    def train(self, task, steps: int, callback_every: int = 25, **train_kwargs):
        """Train `self.model` on `task` with `course.training.train`, redrawing every `callback_every`
        steps."""
        from ..training import train

        log = train(
            self.model,
            task,
            steps,
            callback=self.callback,
            callback_every=callback_every,
            progress=False,
            **train_kwargs,
        )
        self.update_static()
        return log
