"""The static-cache decoder (course.static_decode) on CPU: same tokens and logits as the eager model.

Tolerances: fp32 logits within atol 1e-5 of the model's own uncached forward (the static step attends over all
max_len slots with the later ones masked out, so only the summation order can differ).
"""

import pytest
import torch

import course
from course.costs import kv_cache_bytes_for
from course.static_decode import StaticDecoder

CONFIGS = [
    ("tiny", {}),  # learned positions, LayerNorm, GELU, MHA
    ("tiny-llama", {}),  # RoPE, RMSNorm, SwiGLU, GQA
    ("tiny-llama", {"n_kv_heads": 1}),  # MQA
    ("tiny", {"positional": "alibi"}),
    ("tiny", {"positional": "relative"}),
    ("tiny", {"positional": "sinusoidal", "norm_placement": "post"}),
    ("tiny", {"positional": "none", "tie_weights": False}),
]


def _model(preset, seed, **overrides):
    torch.manual_seed(seed)
    return course.DecoderLM(course.ModelConfig.from_preset(preset, **overrides)).eval()


@pytest.mark.parametrize("preset,overrides", CONFIGS)
def test_greedy_tokens_equal_model_generate(preset, overrides):
    for seed, (B, T, n) in enumerate(((1, 3, 12), (3, 9, 20))):
        model = _model(preset, seed, **overrides)
        idx = torch.randint(0, model.config.vocab_size, (B, T))
        dec = StaticDecoder(model, batch_size=B, max_len=T + n + seed)
        assert torch.equal(dec.generate(idx, n, temperature=0), model.generate(idx, n, temperature=0))


@pytest.mark.parametrize("preset,overrides", CONFIGS[:3])
def test_each_step_logits_equal_full_forward(preset, overrides):
    model = _model(preset, 7, **overrides)
    B, T, n = 2, 5, 10
    tokens = torch.randint(0, model.config.vocab_size, (B, T + n))
    dec = StaticDecoder(model, batch_size=B, max_len=T + n)
    with torch.no_grad():
        full = model(tokens)  # (B, T + n, V)
        torch.testing.assert_close(
            dec.forward_at(tokens[:, :T], torch.arange(T)), full[:, T - 1], atol=1e-5, rtol=1e-5
        )
        for t in range(T, T + n):
            step = dec.step(tokens[:, t : t + 1], t)
            torch.testing.assert_close(step, full[:, t], atol=1e-5, rtol=1e-5)


def test_reused_decoder_and_sampling_match_model_generate():
    model = _model("tiny-llama", 3)
    dec = StaticDecoder(model, batch_size=2, max_len=40)
    for seed in (0, 1):  # a second prompt overwrites the first one's cache slots
        idx = torch.randint(0, model.config.vocab_size, (2, 4 + 3 * seed))
        assert torch.equal(dec.generate(idx, 16, temperature=0), model.generate(idx, 16, temperature=0))
        sampled = dec.generate(idx, 16, temperature=0.9, top_k=20, seed=seed)
        assert torch.equal(sampled, model.generate(idx, 16, temperature=0.9, top_k=20, seed=seed))


def test_cache_bytes_equal_formula():
    model = _model("tiny-llama", 0)
    dec = StaticDecoder(model, batch_size=3, max_len=50)
    assert dec.cache.nbytes() == kv_cache_bytes_for(model.config, 50, batch_size=3, dtype=torch.float32)


def test_bad_input_raises_value_error():
    model = _model("tiny", 0)
    idx = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="max_len=12"):
        StaticDecoder(model, batch_size=2, max_len=12).generate(idx, 8)
    with pytest.raises(ValueError, match="batch_size=1"):
        StaticDecoder(model, batch_size=1, max_len=20).generate(idx, 3)
    with pytest.raises(ValueError, match="mode='fast'"):
        StaticDecoder(model, mode="fast")
    with pytest.raises(ValueError, match="max_len=1000"):
        StaticDecoder(model, max_len=1000)
    with pytest.raises(ValueError, match="position=20"):
        StaticDecoder(model, batch_size=2, max_len=20).step(idx[:, :1], 20)
    with pytest.raises(ValueError, match=r"pass pos of shape \(1,\)"):
        model(idx[:, :1], cache=StaticDecoder(model, batch_size=2, max_len=20).cache)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            StaticDecoder(model, mode="graph")
