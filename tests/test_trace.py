"""The per-operation trace: steps in call order, shapes from the config's arithmetic, parameters that add up
to a Hugging Face model's of the same shape."""

import pytest
import torch

from course import DecoderLM, ModelConfig
from course.trace import block_of, format_trace, trace


def test_gpt2_small_on_meta_matches_hugging_face_parameter_count():
    transformers = pytest.importorskip("transformers")
    c = ModelConfig.from_preset("gpt2-small")
    with torch.device("meta"):
        ours = DecoderLM(c)
        theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config())  # 768 wide, 12 layers, tied head
    steps = trace(ours, torch.zeros(1, 1024, dtype=torch.long, device="meta"))
    assert sum(s.params for s in steps) == sum(p.numel() for p in theirs.parameters()) == 124_439_808
    D = 768
    for layer in range(12):
        assert sum(s.params for s in steps if block_of(s) == layer) == 12 * D**2 + 13 * D
    head = steps[-1]
    assert (head.name, head.params, head.tied_to, head.out_shape) == (
        "lm_head",
        0,
        "tok_emb",
        (1, 1024, 50257),
    )
    assert not any(s.name.endswith("hook_pattern") for s in steps), "meta: no weights step (values are read)"


def test_steps_order_and_shapes_follow_the_config():
    c = ModelConfig.from_preset("tiny-llama")  # GQA (4 query, 2 KV heads), SwiGLU, RMSNorm, RoPE, untied
    model = DecoderLM(c).eval()
    B, T, H, H_kv, d = 3, 5, c.n_heads, c.n_kv_heads, c.d_model // c.n_heads
    steps = trace(model, torch.zeros(B, T, dtype=torch.long))
    block0 = [(s.name.removeprefix("blocks.0."), s.out_shape) for s in steps if block_of(s) == 0]
    assert block0 == [
        ("ln1", (B, T, c.d_model)),
        ("attn.q_proj", (B, T, H * d)),
        ("attn.hook_q", (B, H, T, d)),
        ("attn.k_proj", (B, T, H_kv * d)),
        ("attn.hook_k", (B, H_kv, T, d)),
        ("attn.v_proj", (B, T, H_kv * d)),
        ("attn.hook_v", (B, H_kv, T, d)),
        ("attn.hook_pattern", (B, H, T, T)),
        ("attn.hook_z", (B, H, T, d)),
        ("attn.o_proj", (B, T, c.d_model)),
        ("ln2", (B, T, c.d_model)),
        ("mlp.gate", (B, T, c.d_ff)),
        ("mlp.up", (B, T, c.d_ff)),
        ("mlp.down", (B, T, c.d_model)),
    ]
    assert [s.name for s in steps if block_of(s) is None] == ["tok_emb", "ln_f", "lm_head"]
    assert steps[0].in_shape == (B, T) and steps[-1].out_shape == (B, T, c.vocab_size)
    assert steps[-1].params == c.vocab_size * c.d_model and steps[-1].tied_to is None  # untied head
    assert sum(s.params for s in steps) == sum(p.numel() for p in model.parameters())
    leftover = [m for m in model.modules() if m._forward_hooks]
    assert not leftover, "trace must remove its hooks"
    with torch.no_grad():  # and the model still runs its fused path
        assert model(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, c.vocab_size)


def test_format_trace_folds_the_other_blocks():
    c = ModelConfig.from_preset("tiny", n_layers=4)
    steps = trace(DecoderLM(c), torch.zeros(1, 6, dtype=torch.long))
    text = format_trace(steps)
    per_block = 12 * 64**2 + 13 * 64
    assert "blocks.0.mlp.down" in text and "blocks.1.mlp" not in text
    assert "blocks.1–3" in text and "3 more blocks, same steps" in text and f"{per_block:,} each" in text
    assert text.splitlines()[-1].split()[-1] == f"{sum(p.numel() for p in DecoderLM(c).parameters()):,}"
    assert "blocks.2.ln1" in format_trace(steps, show_blocks=(0, 2))
