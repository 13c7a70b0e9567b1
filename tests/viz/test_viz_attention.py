"""Attention explorer: the view model against the model's own captured attention, and the widget driven as the
front end drives it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from course import EncoderDecoder, EncoderLM, ModelConfig
from course.capture import run_with_cache
from course.viz import AttentionExplorer, AttentionView
from course.viz.heatmap import unique_labels
from course.viz.static import PLOTLY_MIME, grid

CONFIGS = [
    ("tiny", {}),
    ("tiny-llama", {}),
    ("tiny", {"positional": "alibi", "n_heads": 8}),
    ("tiny", {"positional": "relative"}),
    ("tiny", {"positional": "sinusoidal", "n_layers": 3}),
]


def captured(model, idx):
    _, cache = run_with_cache(model, idx[None])
    return cache.stack("attn_scores")[:, 0].double(), cache.stack("pattern")[:, 0].double()


@pytest.mark.parametrize("preset,overrides", CONFIGS)
@pytest.mark.parametrize("T", [1, 7, 19])
def test_view_matches_the_models_attention(make_model, tokens, preset, overrides, T):
    model = make_model(preset, **overrides)
    idx = tokens(model, T)
    view = AttentionView.from_model(model, idx)
    scores, pattern = captured(model, idx)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    assert torch.equal(view.allowed, causal.expand_as(view.allowed))
    # unmasked scores agree with the model's masked scores wherever the model did not mask (tolerance 1e-5)
    torch.testing.assert_close(view.scores[:, :, causal], scores[:, :, causal], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(view.weights(masked=True), pattern, atol=1e-6, rtol=1e-5)
    assert (view.n_layers, view.n_heads, view.T_q, view.T_k) == (
        model.config.n_layers,
        model.config.n_heads,
        T,
        T,
    )


@pytest.mark.parametrize("T", [5, 12])
def test_stages_masked_cells_are_nan_and_rows_sum_to_one(make_model, tokens, T):
    model = make_model("tiny")
    view = AttentionView.from_model(model, tokens(model, T))
    layer, head = np.random.randint(model.config.n_layers), np.random.randint(model.config.n_heads)
    future = ~np.tri(T, dtype=bool)
    soft = view.heatmap(layer, head, "softmax")
    np.testing.assert_allclose(np.nansum(soft.z, axis=1), 1.0, atol=1e-9)
    assert np.isnan(soft.z[future]).all() and np.isfinite(soft.z[~future]).all()
    assert (soft.zmin, soft.zmax) == (0.0, 1.0) and np.array_equal(soft.allowed, ~future)
    masked = view.heatmap(layer, head, "masked")
    assert np.isnan(masked.z[future]).all()
    np.testing.assert_allclose(masked.z[~future], view.scores[layer, head].numpy()[~future])
    raw = view.heatmap(layer, head, "scores")
    assert np.isfinite(raw.z).all() and raw.allowed.all() and raw.zmin == -raw.zmax
    assert raw.zmax >= np.abs(view.scores.numpy()).max() - 1e-12
    # masked cells travel as None, never as 0
    z = grid(soft.z)
    assert all(z[i][j] is None for i, j in zip(*np.nonzero(future), strict=True))
    # mask off: every key gets weight, rows still sum to 1 — the leak the mask prevents
    leak = view.heatmap(layer, head, "softmax", masked=False)
    assert np.isfinite(leak.z).all() and (leak.z[future] > 0).all() and "mask OFF" in leak.title
    np.testing.assert_allclose(leak.z.sum(1), 1.0, atol=1e-9)


def test_encoder_has_no_masked_cells_and_padding_is_masked(make_model, tokens):
    model = make_model("tiny-encoder", cls=EncoderLM)
    idx = tokens(model, 9)
    assert AttentionView.from_model(model, idx).allowed.all()
    is_token = torch.arange(9)[None] < 6
    view = AttentionView.from_model(model, idx, is_token=is_token)
    assert not view.allowed[..., 6:].any() and view.allowed[..., :6].all()
    hm = view.heatmap(1, 3, "softmax")
    assert np.isnan(hm.z[:, 6:]).all()
    np.testing.assert_allclose(np.nansum(hm.z, 1), 1.0, atol=1e-9)


def test_labels_unique_even_for_repeated_tokens(make_model):
    model = make_model("tiny")
    ids = [5, 7, 5, 5, 7]
    view = AttentionView.from_model(model, ids, labels=["a", "b", "a", "a", "b"])
    names = unique_labels(view.q_labels)
    assert len(set(names)) == len(ids)
    assert AttentionView.from_model(model, ids).q_labels == [str(i) for i in ids]


@pytest.mark.parametrize("T,max_tile", [(6, 32), (40, 32), (70, 16)])
@pytest.mark.parametrize("preset", ["tiny", "tiny-llama"])
def test_overview_tiles_map_to_layer_and_head(make_model, tokens, preset, T, max_tile):
    model = make_model(preset, n_layers=3, context_length=128)
    view = AttentionView.from_model(model, tokens(model, T))
    over = view.overview(max_tile)
    f, tq, tk = view.tile_shape(max_tile)
    assert max(tq, tk) <= max_tile and over.shape == (3 * (tq + 1) - 1, 4 * (tk + 1) - 1)
    weights = view.weights().masked_fill(~view.allowed, float("nan")).numpy()
    for row in range(over.shape[0]):
        for col in range(over.shape[1]):
            tile = view.tile_at(row, col, max_tile)
            if tile is None:
                assert np.isnan(over[row, col])  # gutter
                continue
            layer, head = tile
            x0, x1, y0, y1 = view.tile_box(layer, head, max_tile)
            assert x0 < col < x1 and y0 < row < y1
            r, c = row - layer * (tq + 1), col - head * (tk + 1)
            block = weights[layer, head, r * f : (r + 1) * f, c * f : (c + 1) * f]
            expected = np.nanmean(block) if np.isfinite(block).any() else np.nan
            np.testing.assert_allclose(over[row, col], expected, atol=1e-12, equal_nan=True)


def test_bad_input_is_a_clear_value_error(make_model):
    model = make_model("tiny")
    view = AttentionView.from_model(model, [1, 2, 3])
    for call, word in [
        (lambda: view.heatmap(2, 0), "layer=2"),
        (lambda: view.heatmap(0, 4), "head=4"),
        (lambda: view.heatmap(0, 0, "logits"), "stage='logits'"),
        (lambda: AttentionView.from_model(model, [1, 2], labels=["x"]), "1 labels for 2"),
        (lambda: AttentionView.from_model(model, [[1, 2], [3, 4]]), "shape (2, 2)"),
        (lambda: AttentionView(torch.zeros(2, 3, 3), True, "abc"), "(layers, heads"),
        (
            lambda: AttentionView.from_model(EncoderDecoder(ModelConfig.from_preset("tiny")), [1]),
            "EncoderDecoder",
        ),
    ]:
        with pytest.raises(ValueError, match=word.replace("(", r"\(").replace(")", r"\)")):
            call()


# --- the widget
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def explorer(make_model, tokens):
    model = make_model("tiny", n_layers=3)
    return AttentionExplorer(model, tokens(model, 10), labels=list("abcdefghij"))


def test_controls_update_the_figure_in_place(explorer):
    fig, view = explorer.fig, explorer.attention
    model_id = fig.model_id
    explorer.layer.set_state({"value": 2})
    explorer.head.set_state({"index": 3})
    assert fig.layout.title.text == "Layer 2 · head 3 · softmax weights"
    assert list(map(list, fig.data[0].z)) == grid(view.heatmap(2, 3).z)
    explorer.stage.set_state({"index": 1})  # masked scores
    hm = view.heatmap(2, 3, "masked")
    assert list(map(list, fig.data[0].z)) == grid(hm.z) and fig.data[0].zmin == -view.score_range
    assert fig.data[1].z[0][1] == 0 and fig.data[1].z[1][0] is None  # grey overlay on masked cells only
    explorer.mask.set_state({"value": False})
    assert "mask OFF" in fig.layout.title.text
    assert all(v is None for row in fig.data[1].z for v in row) and None not in fig.data[0].z[0]
    assert fig.model_id == model_id and len(fig.data) == 4
    assert fig.data[0].hoverongaps is False and "query '%{customdata[0]}'" in fig.data[0].hovertemplate
    assert list(fig.data[0].customdata[4][2]) == ["e", "c"]  # query "e" (4), key "c" (2)
    assert explorer.output.outputs == ()


def test_clicking_an_overview_tile_selects_layer_and_head(explorer):
    view, fig = explorer.attention, explorer.fig
    x0, x1, y0, y1 = view.tile_box(1, 2)
    row, col = int(y0 + 1.5), int(x0 + 1.5)
    click(fig, 2, row, col)
    assert (explorer.layer.value, explorer.head.value) == (1, 2)
    assert fig.layout.title.text.startswith("Layer 1 · head 2")
    assert (fig.layout.shapes[0].x0, fig.layout.shapes[0].y0) == (x0, y0)
    assert list(map(list, fig.data[0].z)) == grid(view.heatmap(1, 2).z)


def click(fig, trace: int, row: int, col: int) -> None:
    """What plotly.js sends on a click on cell (row, col) of trace `trace`."""
    fig._js2py_pointsCallback = {
        "event_type": "plotly_click",
        "device_state": None,
        "selector": None,
        "points": {"xs": [col], "ys": [row], "point_indexes": [[row, col]], "trace_indexes": [trace]},
    }


def test_clicking_the_grey_masked_part_of_a_tile_selects_its_head(explorer):
    view, fig = explorer.attention, explorer.fig
    x0, x1, y0, y1 = view.tile_box(2, 1)
    row, col = int(y0 + 0.5), int(x1 - 0.5)  # query 0, last key: masked (causal)
    assert fig.data[2].z[row][col] is None and fig.data[3].z[row][col] == 0  # drawn grey, by the overlay
    click(fig, 3, row, col)
    assert (explorer.layer.value, explorer.head.value) == (2, 1)
    n_grey = sum(v == 0 for r in fig.data[3].z for v in r)
    assert n_grey == int((view.in_tiles() & np.isnan(view.overview())).sum()) > 0


def test_overview_follows_apply_mask(explorer):
    view, fig = explorer.attention, explorer.fig
    assert list(map(list, fig.data[2].z)) == grid(view.overview())
    explorer.mask.value = False
    without = view.overview(masked=False)
    assert list(map(list, fig.data[2].z)) == grid(without)
    assert np.isfinite(without[view.in_tiles()]).all()  # every future key has a weight: the leak shows
    assert all(v is None for r in fig.data[3].z for v in r)  # nothing grey
    explorer.mask.value = True
    assert list(map(list, fig.data[2].z)) == grid(view.overview())


def test_overview_draws_no_grid_lines_across_its_tiles(explorer):
    for axis in (explorer.fig.layout.xaxis2, explorer.fig.layout.yaxis2):
        assert axis.showgrid is False and axis.zeroline is False


@pytest.mark.parametrize("L,H", [(1, 1), (1, 4), (3, 1)])
def test_controls_that_cannot_change_anything_are_hidden(L, H):
    T = 4
    view = AttentionView(torch.randn(L, H, T, T), torch.ones(T, T, dtype=torch.bool).tril(), "abcd")
    explorer = AttentionExplorer.from_view(view)
    assert (explorer.layer.layout.display == "none") == (L == 1)
    assert (explorer.head.layout.display == "none") == (H == 1)


def test_in_tiles_marks_the_tiles_not_the_gutters(make_model, tokens):
    model = make_model("tiny", n_layers=3)
    view = AttentionView.from_model(model, tokens(model, 7))
    inside = view.in_tiles()
    for row, col in np.ndindex(inside.shape):
        assert inside[row, col] == (view.tile_at(row, col) is not None)


def test_callback_errors_go_to_the_output_widget(explorer, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom in a callback")

    monkeypatch.setattr(explorer.attention, "heatmap", broken)
    explorer.layer.value = 1  # must not raise into the front end's event loop
    (out,) = explorer.output.outputs
    assert out["name"] == "stderr" and "boom in a callback" in out["text"]


def test_update_sends_a_small_restyle_and_never_the_bundle_again(comm_log, make_model, tokens):
    model = make_model("tiny", context_length=128)
    explorer = AttentionExplorer(model, tokens(model, 128))
    assert "_esm" in {k for kind, data, _ in comm_log if kind == "comm_open" for k in data["state"]}
    for control, value in [
        (explorer.layer, 1),
        (explorer.head, 2),
        (explorer.stage, "masked"),
        (explorer.mask, False),
    ]:
        comm_log.clear()
        control.value = value
        sent = comm_log.updates()
        assert "_py2js_update" in sent and "_esm" not in sent, sent
        assert not [kind for kind, _, _ in comm_log if kind == "comm_open"]  # no new widget per update
        assert comm_log.nbytes() < 400_000, (control.description, comm_log.nbytes())  # mask: overview too
    # a saved notebook keeps the current view at this size, not 2·H full maps per layer
    saved = explorer.fallback_bundle()[PLOTLY_MIME]
    assert len(saved["data"]) == len(explorer.fig.data) and len(json.dumps(saved)) < 1_500_000


def test_display_bundle_carries_a_static_fallback(explorer):
    bundle = explorer.fallback_bundle()
    assert "application/vnd.jupyter.widget-view+json" not in bundle
    static = bundle[PLOTLY_MIME]
    json.dumps(static, allow_nan=False)
    assert len(static["data"]) == 2 * explorer.attention.n_heads and "image/png" not in bundle


def test_to_static_dropdowns_select_layer_and_head(explorer):
    view = explorer.attention
    fig = explorer.to_static()
    H = view.n_heads
    layer_menu, head_menu = fig.layout.updatemenus
    assert len(layer_menu.buttons) == view.n_layers and len(head_menu.buttons) == H
    for layer, button in enumerate(layer_menu.buttons):
        update, traces = json.loads(json.dumps(button.args))
        assert traces == list(range(2 * H))
        for h in range(H):
            hm = view.heatmap(layer, h)
            assert update["z"][h] == grid(hm.z)
            assert [v is not None for v in np.ravel(np.array(update["z"][H + h], dtype=object))] == list(
                (~hm.allowed).ravel()
            )
    for h, button in enumerate(head_menu.buttons):
        assert list(button.args[0]["visible"]) == [k == h for k in range(H)] * 2
    assert [t.visible for t in fig.data] == [True] + [False] * (H - 1) + [True] + [False] * (H - 1)
    json.dumps(fig.to_plotly_json(), allow_nan=False, default=lambda a: a.tolist())


def test_explorer_on_a_shipped_model():
    from course import pretrained

    names = pretrained.available()
    assert names, "course/weights/ ships no model"
    model, card = pretrained.load(names[0])
    task = pretrained.task_for(card)
    ids = task.sequences(1, 0)[0][0, :-1]
    explorer = AttentionExplorer(model, ids, list(task.tokenizer.decode(ids)))
    view = explorer.attention
    assert (view.n_layers, view.n_heads) == (model.config.n_layers, model.config.n_heads)
    _, pattern = captured(model, ids)
    torch.testing.assert_close(view.weights(), pattern, atol=1e-6, rtol=1e-5)
    explorer.select(view.n_layers - 1, view.n_heads - 1)
    assert list(map(list, explorer.fig.data[0].z)) == grid(
        view.heatmap(view.n_layers - 1, view.n_heads - 1).z
    )
