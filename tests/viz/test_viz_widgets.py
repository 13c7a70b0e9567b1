"""Mask builder, head split, positional, norms, KV calculator, sampling, training view: view models checked
against independent definitions, widgets driven as the front end drives them."""

from __future__ import annotations

import json
import math
import random

import ipywidgets as widgets
import numpy as np
import pytest
import torch

from course import DecoderLM, KVCache, ModelConfig
from course.viz import (
    HeadSplitView,
    KVCacheCalculator,
    MaskBuilder,
    NormExplorer,
    PositionalExplorer,
    SamplingExplorer,
    TrainingView,
)
from course.viz.head_split import split_grid
from course.viz.heatmap import unique_labels
from course.viz.kv_calculator import KVShape, kv_figures, predicted_vs_measured
from course.viz.mask_builder import mask_grid
from course.viz.norm_explorer import norm_bars, parse_vector
from course.viz.positional_explorer import positional_panels
from course.viz.sampling_explorer import sampling_bars
from course.viz.static import grid


def z_of(trace) -> list:
    return [list(row) for row in trace.z]


# --- mask builder
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T,S,pad", [(1, 1, 0), (5, 7, 2), (9, 4, 3)])
def test_mask_grid_matches_the_definitions(T, S, pad):
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    expected = {
        "causal": j <= i,
        "padding": np.broadcast_to(j < T - pad, (T, T)),
        "decoder": (j <= i) & (j < T - pad),
        "encoder": np.broadcast_to(np.arange(S) < S - pad, (S, S)),
        "cross": np.broadcast_to(np.arange(S) < S - pad, (T, S)),
    }
    for kind, want in expected.items():
        mg = mask_grid(kind, T, S, pad)
        assert np.array_equal(mg.allowed, want), kind
        assert (len(mg.q_labels), len(mg.k_labels)) == want.shape
        assert len(set(unique_labels(mg.k_labels))) == len(mg.k_labels)
        padded_keys = {"causal": 0}.get(kind, pad)
        assert mg.k_labels.count("<pad>") == padded_keys and "True = may attend" in mg.title


def test_mask_grid_rejects_bad_input():
    for args, word in [
        (("sliding", 4), "kind='sliding'"),
        (("decoder", 4, 4, 4), "pad=4"),
        (("causal", 0), "T=0"),
        (("cross", 3, 0), "S=0"),
    ]:
        with pytest.raises(ValueError, match=word):
            mask_grid(*args)


def test_mask_builder_widget_updates_in_place():
    w = MaskBuilder(kind="causal", T=5, S=6, pad=1)
    model_id = w.fig.model_id
    w.kind.set_state({"index": list(w.kind.options).index(("cross-attention (decoder → encoder)", "cross"))})
    w.S.set_state({"value": 3})
    mg = mask_grid("cross", 5, 3, 1)
    assert z_of(w.fig.data[0]) == grid(np.where(mg.allowed, 1.0, np.nan))
    assert z_of(w.fig.data[1])[0] == [None, None, 0]  # grey overlay on the padded source key
    assert w.fig.layout.title.text == mg.title and w.fig.model_id == model_id
    w.pad.value = 9  # more padding than keys: clamped to keep one real token
    assert w.output.outputs == () and sum(v == 1 for v in z_of(w.fig.data[0])[0]) == 1


# --- head split
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T,D,H", [(1, 4, 2), (5, 12, 3), (6, 16, 4), (3, 8, 8)])
def test_split_heads_gives_every_head_every_token(T, D, H):
    d = D // H
    sg = split_grid(T, D, H, correct=True)
    assert sg.token.shape == (H * (T + 1) - 1, d) and sg.wrong_rows == 0
    for h in range(H):
        block_t, block_f = sg.token[h * (T + 1) : h * (T + 1) + T], sg.feature[h * (T + 1) : h * (T + 1) + T]
        assert (block_t == np.arange(T)[:, None]).all()
        assert (block_f == h * d + np.arange(d)[None, :]).all()
    assert np.isnan(sg.token[T :: T + 1]).all()  # gutters between heads
    bug = split_grid(T, D, H, correct=False)
    assert bug.wrong_rows == (0 if T == 1 or H == 1 else bug.wrong_rows) and "bug" in bug.title
    if T > 1 and H > 1:
        assert bug.wrong_rows > 0
    with pytest.raises(ValueError, match="D=10 is not divisible by H=4"):
        split_grid(3, 10, 4)


def test_head_split_widget():
    w = HeadSplitView(T=4, D=12, H=3)
    model_id = w.fig.model_id
    w.split.set_state({"index": 1})
    assert "no transpose" in w.fig.layout.title.text
    assert z_of(w.fig.data[1]) == grid(split_grid(4, 12, 3, correct=False).token)
    w.D.set_state({"index": list(w.D.options).index(16)})
    assert (
        16 % w.H.value == 0
        and f"(1, 4, 16) → (1, {w.H.value}, 4, {16 // w.H.value})" in w.fig.layout.title.text
    )
    assert w.fig.model_id == model_id and w.output.outputs == ()


# --- positional
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T,d", [(9, 8), (16, 32)])
def test_positional_panels(T, d):
    sin = positional_panels("sinusoidal", T, d, index=1)
    p = T // 2
    sims = np.array(sin.top.y)
    assert int(np.argmax(sims)) == p
    k = min(p, T - 1 - p)
    np.testing.assert_allclose(
        sims[p - k : p][::-1], sims[p + 1 : p + k + 1], atol=1e-3
    )  # depends on |p − j|
    np.testing.assert_allclose(sin.bottom.y, np.round(np.sin(np.arange(T) * 10000 ** (-2 / d)), 4), atol=2e-4)

    index = random.randrange(d // 2)
    rope = positional_panels("rope", T, d, index=index)
    x, y = np.array(rope.top.x), np.array(rope.top.y)
    np.testing.assert_allclose(np.hypot(x, y), 1.0, atol=1e-3)  # a rotation keeps the length
    theta = 10000 ** (-2 * index / d)
    np.testing.assert_allclose(np.cos(np.arange(T) * theta), x, atol=1e-3)
    diff, scores = np.array(rope.bottom.x), np.array(rope.bottom.y)
    for r in set(diff.tolist()):
        assert np.ptp(scores[diff == r]) < 1e-3  # only i − j matters

    heads = 8
    alibi = positional_panels("alibi", T, heads, index=3)
    slopes = np.array(alibi.top.y)
    np.testing.assert_allclose(slopes, 2.0 ** (-8 * np.arange(1, heads + 1) / heads), rtol=1e-4)
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    np.testing.assert_allclose(alibi.z, -slopes[3] * np.abs(i - j), atol=1e-4)
    with pytest.raises(ValueError, match="index=8 is out of range"):
        positional_panels("alibi", T, heads, index=8)
    with pytest.raises(ValueError, match="mode='xpos'"):
        positional_panels("xpos", T, d)


def test_positional_widget_switches_modes_in_place():
    w = PositionalExplorer(T=12, d=8)
    model_id, n_traces = w.fig.model_id, len(w.fig.data)
    w.mode.set_state({"index": 2})  # ALiBi: the index slider becomes a head slider
    assert w.index.description == "head" and w.index.max == 7 and w.fig.layout.title.text.startswith("ALiBi")
    w.index.set_state({"value": 6})
    w.mode.set_state({"index": 1})  # back to RoPE: 4 pairs, the index is clamped
    assert w.index.max == 3 and w.index.value == 3 and "pair 3" in w.fig.layout.title.text
    assert z_of(w.fig.data[0]) == grid(positional_panels("rope", 12, 8, 3).z)
    assert w.fig.model_id == model_id and len(w.fig.data) == n_traces and w.output.outputs == ()


def test_alibi_explorer_created_in_alibi_mode():
    """Created as mode="alibi": head/heads labels, every head reachable, each head on its own colour range."""
    w = PositionalExplorer(mode="alibi", T=16, d=8)
    assert (w.index.description, w.d.description, w.index.max) == ("head", "heads", 7)
    w.index.value = 7
    assert "head 7" in w.fig.layout.title.text and w.output.outputs == ()
    for h in range(8):
        p = positional_panels("alibi", 16, 8, h)
        assert p.zmin == pytest.approx(p.z.min()) and p.zmax == 0  # the flattest head spans the whole scale
    assert w.fig.data[0].zmin == pytest.approx(positional_panels("alibi", 16, 8, 7).z.min())


# --- norms
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("D", [2, 5, 64])
def test_layernorm_ignores_shift_rmsnorm_does_not(D):
    x = torch.randn(D, dtype=torch.float64) + 1.0
    base, shifted, scaled = norm_bars(x), norm_bars(x, shift=3.0), norm_bars(x, scale=7.0)
    assert abs(base.ln.mean()) < 1e-9 and abs(base.ln.std() - 1) < 1e-3
    assert abs(np.sqrt((base.rms**2).mean()) - 1) < 1e-3
    np.testing.assert_allclose(shifted.ln, base.ln, atol=1e-4)
    assert np.abs(shifted.rms - base.rms).max() > 1e-2
    np.testing.assert_allclose(scaled.ln, base.ln, atol=1e-4)  # equal up to eps = 1e-5 in the variance
    np.testing.assert_allclose(scaled.rms, base.rms, atol=1e-4)


def test_norm_widget_shows_bad_input_then_recovers():
    assert parse_vector("1, 2.5 -3") == [1.0, 2.5, -3.0]
    w = NormExplorer([1, 2, 3])
    w.vector.set_state({"value": "1, two"})
    (err,) = w.output.outputs
    assert "ValueError: could not read '1, two'" in err["text"]
    w.vector.set_state({"value": "4, 0, -2, 6"})
    assert w.output.outputs == () and list(w.fig.data[0].y) == [4, 0, -2, 6]
    np.testing.assert_allclose(w.fig.data[1].y, np.round(norm_bars([4, 0, -2, 6]).ln, 4))


# --- KV cache
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["gpt2-small", "llama2-70b", "llama3-8b"])
def test_kv_bytes_equal_the_formula(preset):
    c = ModelConfig.from_preset(preset)
    T, B = random.choice([1, 777, 4096]), random.choice([1, 3])
    s = KVShape.from_preset(preset, seq_len=T, batch_size=B, dtype="bf16")
    assert s.nbytes() == 2 * c.n_layers * T * c.n_kv_heads * (c.d_model // c.n_heads) * B * 2
    f = kv_figures(s)
    at = f.seq_lens.index(T)
    assert math.isclose(f.gib[at], s.nbytes() / 2**30, rel_tol=1e-4, abs_tol=1e-6)
    assert (
        math.isclose(f.mha_gib[at] / max(f.gib[at], 1e-12), c.n_heads / c.n_kv_heads, rel_tol=1e-3) or T == 1
    )


@pytest.mark.parametrize("preset,dtype", [("tiny", "fp32"), ("tiny-llama", "bf16"), ("tiny-llama", "fp8")])
def test_kv_formula_equals_the_measured_cache(preset, dtype):
    model = DecoderLM(ModelConfig.from_preset(preset))
    B, T = random.randint(1, 4), random.randint(1, 64)
    predicted, measured = predicted_vs_measured(model, B, T, dtype)
    assert predicted == measured
    assert (
        measured
        == KVCache.for_model(
            model, B, T, {"fp32": torch.float32, "bf16": torch.bfloat16, "fp8": torch.float8_e4m3fn}[dtype]
        ).nbytes()
    )


def test_kv_widget_presets_and_sliders(comm_log):
    w = KVCacheCalculator(preset="gpt2-small")
    model_id = w.fig.model_id
    comm_log.clear()
    w.preset.set_state({"index": list(w.preset.options).index("llama2-70b")})
    assert (w.n_layers.value, w.n_kv_heads.value, w.d_head.value) == (80, 8, 128)
    assert (
        "1.25 GiB" in w.fig.layout.title.text
        and "MHA (64 KV heads) would need 10.00 GiB" in w.fig.layout.title.text
    )
    w.batch.set_state({"value": 2})
    w.dtype.set_state({"index": list(w.dtype.options).index("fp32")})
    assert "5.00 GiB" in w.fig.layout.title.text and w.fig.data[1].visible
    predicted, measured = predicted_vs_measured(w.model, 2, 64, "fp32")
    assert f"{predicted:,} B" in w.measured.value and "equal" in w.measured.value
    assert w.fig.model_id == model_id and "_esm" not in comm_log.updates() and comm_log.nbytes() < 50_000


def test_kv_seq_len_slider_steps_in_powers_of_two():
    """One arrow key doubles or halves the length (a linear slider stepped 8192 -> 8193); 4096 sits
    mid-way."""
    w = KVCacheCalculator(preset="llama2-70b")
    lengths = [t for _, t in w.seq_len.options]
    assert w.seq_len.value == 4096 and lengths[0] == 1 and lengths[-1] == 131072
    assert all(b == 2 * a for a, b in zip(lengths, lengths[1:], strict=False))
    assert 0.4 < lengths.index(4096) / (len(lengths) - 1) < 0.8
    w.seq_len.set_state({"index": w.seq_len.index + 1})  # what the front end sends for one arrow-key press
    assert w.seq_len.value == 8192 and "8,192 tokens" in w.fig.layout.title.text
    assert [round(v) for v in w.fig.data[2].x] == [8192]


# --- sampling
# ------------------------------------------------------------------------------------------------
def test_sampling_filters_keep_the_right_tokens():
    V = 50
    logits = torch.randn(V, dtype=torch.float64) * 2
    probs = logits.softmax(-1)
    b = sampling_bars(logits, show=V)
    np.testing.assert_allclose(b.probs, b.base) and np.testing.assert_allclose(b.probs.sum(), 1.0)
    k = random.randint(1, V)
    assert sampling_bars(logits, top_k=k, show=V).n_kept == k
    p = random.uniform(0.1, 0.95)
    sorted_p = probs.sort(descending=True).values
    need = int((sorted_p.cumsum(0) < p).sum()) + 1  # smallest prefix whose mass reaches p
    bp = sampling_bars(logits, top_p=p, show=V)
    assert bp.n_kept == need and math.isclose(bp.probs.sum(), 1.0, rel_tol=1e-9)
    greedy = sampling_bars(logits, temperature=0, show=V)
    assert greedy.n_kept == 1 and greedy.ids[0] == int(logits.argmax()) and greedy.probs[0] == 1.0
    entropies = [sampling_bars(logits, temperature=t).entropy for t in (0.3, 0.7, 1.0, 1.8)]
    assert entropies == sorted(entropies)
    with pytest.raises(ValueError, match=r"\(V,\)"):
        sampling_bars(torch.zeros(2, 3))


def test_sampling_widget(make_model, tokens):
    model = make_model("tiny")
    w = SamplingExplorer.from_model(model, tokens(model, 6), labels=[f"t{i}" for i in range(64)], show=10)
    w.top_k.set_state({"value": 4})
    assert list(w.fig.data[2].x) == list(range(4, 10)) and all(y == 0 for y in w.fig.data[1].y[4:])
    assert w.fig.layout.xaxis.ticktext[0] == f"t{int(w.logits.argmax())}"
    w.temperature.set_state({"value": 0.0})
    assert w.fig.layout.title.text.startswith("greedy") and list(w.fig.data[1].y[:1]) == [1.0]
    with pytest.raises(ValueError, match="got 3 labels for a vocabulary of 64"):
        SamplingExplorer(w.logits, labels=["a", "b", "c"])


# --- training view
# -------------------------------------------------------------------------------------------
def test_training_view_callback_redraws_loss_and_pattern(make_model, tokens):
    model = make_model("tiny")
    probe = tokens(model, 8)
    w = TrainingView(model, probe, head=1)
    model_id = w.fig.model_id
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)  # "training" moved the weights
    w.callback(10, 3.5, model)
    w.callback(20, 2.25, model)
    from course.viz import AttentionView

    expected = AttentionView.from_model(model, probe).heatmap(model.config.n_layers - 1, 1)
    assert list(w.fig.data[0].x) == [10, 20] and list(w.fig.data[0].y) == [3.5, 2.25]
    assert z_of(w.fig.data[1]) == grid(expected.z)
    assert w.fig.layout.title.text.startswith("step 20, loss 2.2500") and w.fig.model_id == model_id


# --- every widget: static fallback, no NaN
# ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda m, t: MaskBuilder(),
        lambda m, t: HeadSplitView(),
        lambda m, t: PositionalExplorer(mode="rope"),
        lambda m, t: NormExplorer(),
        lambda m, t: KVCacheCalculator(m),
        lambda m, t: SamplingExplorer.from_model(m, t),
        lambda m, t: TrainingView(m, t),
    ],
    ids=["mask", "split", "positional", "norm", "kv", "sampling", "training"],
)
def test_every_widget_bundle_has_a_static_figure(make, make_model, tokens):
    model = make_model("tiny-llama")
    w = make(model, tokens(model, 7))
    live = w._repr_mimebundle_()
    assert set(live) == {"application/vnd.jupyter.widget-view+json", "text/plain"}
    assert (
        w.view
        in widgets.Widget.widgets[live["application/vnd.jupyter.widget-view+json"]["model_id"]].children
    )
    static = w.fallback_bundle()["application/vnd.plotly.v1+json"]
    json.dumps(static, allow_nan=False)
    assert (
        len(static["data"]) == len(w.fig.data)
        and static["layout"]["title"]["text"] == w.fig.layout.title.text
    )
    json.dumps(w.fig.to_plotly_json(), allow_nan=False, default=lambda a: a.tolist())


def test_training_view_follows_a_real_training_run():
    from course.data import make_task

    task = make_task("induction", length=4, n_symbols=8)
    model = DecoderLM(ModelConfig.from_preset("tiny", vocab_size=task.vocab_size, n_layers=1, d_model=32))
    probe = task.probe(1)[0]
    w = TrainingView(model, probe, list(task.tokenizer.decode(probe)))
    log = w.train(task, steps=12, callback_every=5, batch_size=8)
    assert list(w.fig.data[0].x) == [5, 10, 12]
    np.testing.assert_allclose(w.fig.data[0].y, [log.losses[4], log.losses[9], log.losses[11]], atol=1e-5)
    from course.viz import AttentionView

    assert z_of(w.fig.data[1]) == grid(AttentionView.from_model(model, probe).heatmap(0, 0).z)
    assert w.output.outputs == ()


def test_show_displays_the_static_copy_then_the_live_view(monkeypatch, make_model, tokens):
    """Two outputs: the fallback (its own, refreshed through the handle) before the live view."""
    import IPython.display

    shown = []

    class Handle:
        def update(self, obj, raw=False):
            shown.append(("update", obj))

    def display(obj, raw=False, display_id=None):
        assert raw, "bundles are displayed raw"
        shown.append(("display", obj))
        return Handle() if display_id else None

    monkeypatch.setattr(IPython.display, "display", display)
    model = make_model("tiny-llama")
    w = TrainingView(model, tokens(model, 7))
    w.show()
    (_, static), (_, live) = shown
    assert (
        "application/vnd.plotly.v1+json" in static
        and "application/vnd.jupyter.widget-view+json" not in static
    )
    assert set(live) == {"application/vnd.jupyter.widget-view+json", "text/plain"}
    w.fig.layout.title.text = f"changed {random.random()}"
    w.update_static()
    kind, updated = shown[2]
    assert kind == "update" and updated["application/vnd.plotly.v1+json"]["layout"]["title"]["text"] == (
        w.fig.layout.title.text
    )


def test_kernel_side_state_follows_the_figure_without_resending_it(comm_log):
    """A page reloaded with the kernel alive restores the figure from `get_state()`: it must hold the current
    data and layout (not the empty figure of construction time), yet updates send no full state."""
    w = PositionalExplorer(mode="alibi", T=6, d=8)  # built empty, filled by add_* and update_layout
    w._repr_mimebundle_()
    sent = len(comm_log)
    w.index.value = 5
    state = w.fig.get_state()
    assert state["_widget_layout"]["title"]["text"] == w.fig.layout.title.text
    assert state["_widget_layout"]["yaxis"]["autorange"] == "reversed"
    assert len(state["_widget_data"]) == 3
    assert state["_widget_data"][0]["z"] == z_of(w.fig.data[0]) != []
    keys = [key for kind, data, _ in comm_log[sent:] if kind == "comm_msg" for key in data.get("state", {})]
    assert "_py2js_restyle" in keys or "_py2js_update" in keys
    assert "_widget_data" not in keys and "_widget_layout" not in keys, "an update re-sent the whole figure"


def test_under_make_lab_a_figure_imports_the_servers_plotly_bundle(comm_log, monkeypatch):
    """`make lab` serves plotly's 5 MB widget bundle once; a figure's state then holds a short loader."""
    from course.viz.widget import SHARED_BUNDLE

    monkeypatch.setenv(SHARED_BUNDLE, "1")
    MaskBuilder(kind="causal", T=4)
    opened = [data["state"] for kind, data, _ in comm_log if kind == "comm_open" and "_esm" in data["state"]]
    figure = next(
        state for state in opened if state["_model_name"] == "AnyModel" and "widgetbundle" in state["_esm"]
    )
    assert len(figure["_esm"]) < 1_000 and "static/widgetbundle.js" in figure["_esm"]
    monkeypatch.delenv(SHARED_BUNDLE)
    comm_log.clear()
    MaskBuilder(kind="causal", T=4)
    assert max(len(data["state"].get("_esm", "")) for kind, data, _ in comm_log if kind == "comm_open") > 1e6
