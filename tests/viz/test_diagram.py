"""The architecture diagram: a shape on every arrow, each shape one that a real forward pass produces (traced
with hooks), boxes that follow the config, and a well-formed, reproducible SVG."""

import xml.etree.ElementTree as ET

import pytest
import torch

from course import DecoderLM, ModelConfig
from course.trace import trace
from course.viz.diagram import architecture_svg, block_panel, model_panel, shape_text

CONFIGS = {
    "gpt2-like": ModelConfig.from_preset("tiny"),  # learned positions, GELU (tanh), LayerNorm, tied head
    "llama-like": ModelConfig.from_preset("tiny-llama"),  # GQA, SwiGLU, RMSNorm, RoPE, untied head
    "post-ln": ModelConfig.from_preset("tiny", norm_placement="post", positional="alibi"),
    "sinusoidal": ModelConfig.from_preset("tiny", positional="sinusoidal", n_kv_heads=1),
}
B, T = 3, 7  # distinct from every size in the configs, so a swapped B and T cannot pass


@pytest.mark.parametrize("name", CONFIGS)
def test_every_arrow_carries_a_shape_that_the_model_produces(name):
    c = CONFIGS[name]
    steps = trace(DecoderLM(c).eval(), torch.zeros(B, T, dtype=torch.long))
    produced = {(B, T)} | {s.out_shape for s in steps} | {s.in_shape for s in steps}
    for panel in (model_panel(c), block_panel(c)):
        keys = [b.key for b in panel.boxes]
        for arrow in panel.arrows:
            concrete = tuple({"B": B, "T": T}.get(s, s) for s in arrow.shape)
            assert concrete in produced, f"{name}: {arrow} is not a shape of the forward pass"
        chained = {(a.src, a.dst) for a in panel.arrows if not a.skip}
        assert chained == set(zip(keys, keys[1:], strict=False)), (
            f"{name}: an arrow between every pair of consecutive boxes"
        )


def test_boxes_follow_the_config():
    labels = lambda panel: [b.label for b in panel.boxes]  # noqa: E731
    gpt, llama, post = (CONFIGS[n] for n in ("gpt2-like", "llama-like", "post-ln"))
    assert "final LayerNorm" in labels(model_panel(gpt)) and "+ position embedding" in labels(
        model_panel(gpt)
    )
    assert "final RMSNorm" in labels(model_panel(llama)) and "+ position embedding" not in labels(
        model_panel(llama)
    )
    assert "SiLU(gate) ⊙ up" in labels(block_panel(llama)) and "GELU (tanh)" in labels(block_panel(gpt))
    assert any("RoPE" in label for label in labels(block_panel(llama)))
    assert "final LayerNorm" not in labels(model_panel(post)), (
        "Post-LN: the last block's output is normalized"
    )
    pre_order, post_order = labels(block_panel(gpt)), labels(block_panel(post))
    assert pre_order.index("LayerNorm 1") < pre_order.index("Q, K, V projections")  # x + F(LN(x))
    assert post_order.index("⊕ add to the stream") < post_order.index("LayerNorm 1")  # LN(x + F(x))
    kv = [a for a in block_panel(llama).arrows if a.name == "K, V"][0]
    assert kv.shape == ("B", llama.n_kv_heads, "T", llama.d_head)
    assert "tied" in model_panel(gpt).boxes[-2].note and "tied" not in model_panel(llama).boxes[-2].note


def test_svg_is_well_formed_labelled_and_reproducible():
    c = ModelConfig.from_preset("gpt2-small")
    svg = architecture_svg(c)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    shapes = [t.text for t in root.iter(f"{ns}text") if t.get("class") == "shape"]
    arrows = list(model_panel(c).arrows) + list(block_panel(c).arrows)
    assert sorted(shapes) == sorted((f"{a.name} " if a.name else "") + shape_text(a.shape) for a in arrows)
    assert "(B, 12, T, T)" in shapes and "(B, T, 50257)" in shapes
    assert svg == architecture_svg(ModelConfig.from_preset("gpt2-small")), "the same config, the same SVG"


def test_rejects_what_is_not_a_config():
    with pytest.raises(TypeError, match="ModelConfig"):
        architecture_svg({"d_model": 768})
