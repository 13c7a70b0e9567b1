"""Cost formulas against the figures the course cites and against real allocated models and caches."""

import pytest
import torch

from course import DecoderLM, KVCache, ModelConfig, costs


def test_gpt2_small_parameter_count():
    counts = costs.param_count(ModelConfig.from_preset("gpt2-small"))
    assert counts["total"] == 124_439_808
    # embeddings 50257·768 and positions 1024·768, both counted once (the LM head is tied)
    assert counts["embeddings"] == 50257 * 768 and counts["positional"] == 1024 * 768 and counts["head"] == 0


@pytest.mark.parametrize("d", [64, 768, 4096])
def test_block_is_twelve_d_squared_plus_thirteen_d(d):
    """MHA with biases (4d² + 4d), GELU MLP at F = 4d (8d² + 5d), two LayerNorms (4d): 12d² + 13d."""
    c = ModelConfig(d_model=d, n_heads=16 if d >= 64 else 4, vocab_size=10, context_length=8)
    assert costs.block_params(c) == 12 * d * d + 13 * d
    assert costs.attention_params(d, c.n_heads, bias=False) == 4 * d * d
    assert costs.mlp_params(d, 4 * d, bias=False) == 8 * d * d


def test_seven_billion_scale():
    c = ModelConfig(
        d_model=4096,
        n_layers=32,
        n_heads=32,
        vocab_size=50_000,
        context_length=2048,
        bias=False,
        tie_weights=True,
        positional="rope",
        norm="rmsnorm",
    )
    per_block = costs.block_params(c)
    assert abs(per_block - 201e6) / 201e6 < 0.01  # ≈ 201M per block
    blocks = 32 * per_block
    assert abs(blocks - 6.44e9) / 6.44e9 < 0.01  # ≈ 6.4B in blocks
    assert costs.param_count(c)["embeddings"] == 204_800_000  # ≈ 200M
    assert abs(costs.attention_params(4096, 32, bias=False) - 67e6) / 67e6 < 0.01
    assert costs.param_count(ModelConfig.from_preset("llama2-7b"))["total"] == 6_738_415_616  # Meta's count


def test_kv_cache_bytes_figures():
    full = costs.kv_cache_bytes(
        n_layers=32, seq_len=8192, n_kv_heads=32, d_head=128, batch_size=1, bytes_per_element=2
    )
    assert full == 4_294_967_296
    gqa = costs.kv_cache_bytes(32, 8192, 8, 128)  # 8 KV heads: llama2-70b style grouping
    assert gqa * 4 == full
    assert costs.kv_cache_bytes(80, 8192, 8, 128) * 8 == costs.kv_cache_bytes(80, 8192, 64, 128)
    assert costs.kv_cache_bytes_for(ModelConfig.from_preset("llama2-7b"), 8192) == full


@pytest.mark.parametrize("n_kv_heads,dtype", [(4, torch.float32), (2, torch.bfloat16), (1, torch.float16)])
def test_measured_cache_bytes_equal_formula(n_kv_heads, dtype):
    c = ModelConfig(
        vocab_size=40, context_length=24, d_model=32, n_layers=3, n_heads=4, n_kv_heads=n_kv_heads
    )
    cache = KVCache.for_model(DecoderLM(c).to(dtype), batch_size=2, max_len=24)
    expected = costs.kv_cache_bytes(3, 24, n_kv_heads, 8, 2, costs.bytes_per_element(dtype))
    assert costs.measured_cache_bytes(cache) == expected


@pytest.mark.parametrize("preset", ["tiny", "tiny-llama", "tiny-encoder"])
def test_param_formula_matches_real_model(preset):
    c = ModelConfig.from_preset(preset, tie_weights=preset != "tiny-llama")
    model = DecoderLM(c)
    assert costs.measured_params(model) == costs.param_count(c)["total"]
    assert costs.measured_param_bytes(model) == 4 * costs.param_count(c)["total"]


def test_flops_and_score_memory():
    c = ModelConfig.from_preset("gpt2-small")
    per_token = costs.training_flops_per_token(c, 1024)
    assert abs(per_token - 855e6) / 855e6 < 0.01  # 6N + 12·L·H·Q·T ≈ 855 MFLOP (PaLM appendix B)
    small, big = costs.attention_flops(512, 768), costs.attention_flops(1024, 768)
    assert big["scores_and_values"] == 4 * small["scores_and_values"]  # quadratic in T
    assert big["projections"] == 2 * small["projections"]  # linear in T
    assert costs.mlp_flops(1024, 768, 3072) == 2 * costs.mlp_flops(512, 768, 3072)
    assert costs.score_memory_bytes(1, 1, 128) == 128 * 128 * 4


def test_bad_cost_inputs():
    with pytest.raises(ValueError, match="seq_len=-1"):
        costs.kv_cache_bytes(2, -1, 2, 2)
    with pytest.raises(ValueError, match="'fp7'"):
        costs.bytes_per_element("fp7")
    assert costs.bytes_per_element(torch.bfloat16) == 2 and costs.bytes_per_element("fp32") == 4
