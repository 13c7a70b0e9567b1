"""GPU checks (marked `gpu`; skipped cleanly where torch finds no CUDA device).

Tolerances: fp32 on CUDA within atol 2e-5 (kernels sum in other orders than the CPU's); bf16 against fp32 as a
relative error ‖out − ref‖ / ‖ref‖ < 1e-2 (bf16 keeps 8 significant bits, about 4e-3 per rounding).
"""

import pytest
import torch

import course
from course.attention import fused_attention, scaled_dot_product_attention
from course.masks import causal_mask, combine, lengths_to_padding, padding_mask
from course.static_decode import StaticDecoder

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CONFIGS = [
    ("tiny", {}),
    ("tiny-llama", {}),
    ("tiny-llama", {"n_kv_heads": 1}),
    ("tiny", {"positional": "alibi"}),
]


def _model(preset, seed, **overrides):
    torch.manual_seed(seed)
    return course.DecoderLM(course.ModelConfig.from_preset(preset, **overrides)).cuda().eval()


def _rel_err(out, ref):
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


@pytest.mark.parametrize("preset,overrides", CONFIGS)
def test_bf16_matches_fp32(preset, overrides):
    model = _model(preset, 0, **overrides)
    idx = torch.randint(0, model.config.vocab_size, (3, 40), device="cuda")
    with torch.no_grad():
        ref = model(idx)
        with torch.autocast("cuda", torch.bfloat16):
            autocast = model(idx)
        weights_bf16 = model.to(torch.bfloat16)(idx)
    assert autocast.dtype == torch.bfloat16 and weights_bf16.dtype == torch.bfloat16
    assert _rel_err(autocast, ref) < 1e-2
    assert _rel_err(weights_bf16, ref) < 1e-2


@pytest.mark.parametrize("B,H,T_q,T_k,d", [(2, 4, 16, 16, 32), (1, 8, 1, 37, 64), (3, 2, 24, 60, 16)])
def test_fused_equals_explicit_on_cuda(B, H, T_q, T_k, d):
    q = torch.randn(B, H, T_q, d, device="cuda")
    k, v = torch.randn(2, B, H, T_k, d, device="cuda").unbind(0)
    lengths = torch.randint(1, T_k + 1, (B,), device="cuda")
    mask = combine(causal_mask(T_q, T_k, device="cuda"), padding_mask(lengths_to_padding(lengths, T_k)))
    for m in (None, mask):
        torch.testing.assert_close(
            fused_attention(q, k, v, m), scaled_dot_product_attention(q, k, v, m)[0], atol=2e-5, rtol=1e-4
        )
    if T_q == T_k:
        torch.testing.assert_close(
            fused_attention(q, k, v, is_causal=True),
            scaled_dot_product_attention(q, k, v, causal_mask(T_q, device="cuda"))[0],
            atol=2e-5,
            rtol=1e-4,
        )
        qb, kb, vb = (x.bfloat16() for x in (q, k, v))
        assert (
            _rel_err(
                fused_attention(qb, kb, vb, is_causal=True),
                scaled_dot_product_attention(q, k, v, causal_mask(T_q, device="cuda"))[0],
            )
            < 1e-2
        )


@pytest.mark.parametrize("preset,overrides", CONFIGS)
def test_cached_equals_uncached_on_cuda(preset, overrides):
    model = _model(preset, 1, **overrides)
    idx = torch.randint(0, model.config.vocab_size, (2, 7), device="cuda")
    cached = model.generate(idx, 24, temperature=0, use_cache=True)
    assert torch.equal(cached, model.generate(idx, 24, temperature=0, use_cache=False))
    cache = course.KVCache.for_model(model, 2, cached.shape[1])
    with torch.no_grad():
        full = model(cached)
        steps = [model(cached[:, :7], cache=cache)] + [
            model(cached[:, t : t + 1], cache=cache) for t in range(7, cached.shape[1])
        ]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", ["eager", "graph", "compile"])
def test_static_decode_equals_generate_on_cuda(mode):
    configs = CONFIGS if mode != "compile" else CONFIGS[1:2]  # compiling is slow: one GQA model
    for preset, overrides in configs:
        model = _model(preset, 2, **overrides)
        dec = StaticDecoder(model, batch_size=2, max_len=48, mode=mode)
        for T in (5, 11):  # the captured step is replayed for a second prompt
            idx = torch.randint(0, model.config.vocab_size, (2, T), device="cuda")
            assert torch.equal(dec.generate(idx, 30, temperature=0), model.generate(idx, 30, temperature=0))


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_static_decode_bf16_logits_match_fp32_forward(mode):
    model = _model("tiny-llama", 4)
    tokens = torch.randint(0, model.config.vocab_size, (1, 32), device="cuda")
    with torch.no_grad():
        ref = model(tokens)[0]  # (T, V) fp32
    dec = StaticDecoder(model.to(torch.bfloat16), batch_size=1, max_len=32, mode=mode)
    dec.forward_at(tokens[:, :8], torch.arange(8, device="cuda"))
    steps = torch.stack([dec.step(tokens[:, t : t + 1], t)[0].clone() for t in range(8, 32)])
    assert _rel_err(steps, ref[8:]) < 1e-2
