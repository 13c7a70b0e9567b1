"""Whole models: KV cache == full forward for every positional scheme and norm placement, chunked prefill,
encoder-only and encoder-decoder forms, weight tying, dtype, and clear errors for bad input."""

import itertools

import pytest
import torch
from torch.testing import assert_close

from course import DecoderLM, EncoderDecoder, EncoderLM, KVCache, ModelConfig
from course.config import POSITIONAL

SCHEMES = list(itertools.product(POSITIONAL, ["pre", "post"]))


def tiny(**kw):
    base = dict(vocab_size=50, context_length=32, d_model=32, n_layers=2, n_heads=4)
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("positional,placement", SCHEMES)
def test_cached_steps_equal_full_forward(positional, placement):
    model = DecoderLM(tiny(positional=positional, norm_placement=placement, n_kv_heads=2)).eval()
    idx = torch.randint(0, 50, (2, 13))
    with torch.no_grad():
        full = model(idx)
        cache = KVCache.for_model(model, batch_size=2, max_len=13)
        pieces = [model(idx[:, a:b], cache=cache) for a, b in ((0, 5), (5, 6), (6, 10), (10, 13))]
    assert cache.length == 13
    assert_close(torch.cat(pieces, 1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("positional,placement", SCHEMES)
def test_cached_and_uncached_greedy_tokens_identical(positional, placement):
    model = DecoderLM(tiny(positional=positional, norm_placement=placement)).eval()
    prompt = torch.randint(0, 50, (2, 4))
    with_cache = model.generate(prompt, 20, temperature=0, use_cache=True)
    without = model.generate(prompt, 20, temperature=0, use_cache=False)
    assert with_cache.shape == (2, 24) and torch.equal(with_cache[:, :4], prompt)
    assert torch.equal(with_cache, without)


@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_chunked_prefill_equals_one_shot(chunk):
    model = DecoderLM(tiny(positional="rope", mlp="swiglu", norm="rmsnorm", n_kv_heads=1)).eval()
    idx = torch.randint(0, 50, (3, 17))
    with torch.no_grad():
        one_shot_cache = KVCache.for_model(model, 3, 17)
        one_shot = model(idx, cache=one_shot_cache)
        cache = KVCache.for_model(model, 3, 17)
        chunks = [model(idx[:, s : s + chunk], cache=cache) for s in range(0, 17, chunk)]
    assert_close(torch.cat(chunks, 1), one_shot, rtol=1e-5, atol=1e-5)
    for k_a, k_b in zip(one_shot_cache.keys, cache.keys, strict=True):
        assert_close(k_a, k_b, rtol=1e-5, atol=1e-6)


def test_padding_mask_keeps_real_tokens_independent_of_padding():
    model = DecoderLM(tiny()).eval()
    idx = torch.randint(0, 50, (1, 6))
    padded = torch.cat([idx, torch.randint(0, 50, (1, 3))], 1)
    is_token = torch.tensor([[True] * 6 + [False] * 3])
    with torch.no_grad():
        assert_close(model(padded, is_token=is_token)[:, :6], model(idx), rtol=1e-5, atol=1e-5)


def test_cache_layout_dtype_and_overflow():
    model = DecoderLM(tiny(n_kv_heads=2))
    cache = KVCache.for_model(model, batch_size=3, max_len=10)
    assert cache.keys[0].shape == (3, 2, 10, 8) and len(cache.values) == 2
    model(torch.randint(0, 50, (3, 8)), cache=cache)
    with pytest.raises(ValueError, match="overflow: 8 stored \\+ 3 new positions > max_len=10"):
        model(torch.randint(0, 50, (3, 3)), cache=cache)
    assert KVCache.for_model(model.to(torch.bfloat16), 1, 4).keys[0].dtype == torch.bfloat16


def test_encoder_is_bidirectional_decoder_is_causal():
    T = 8
    enc, dec = EncoderLM(tiny()).eval(), DecoderLM(tiny()).eval()
    idx = torch.randint(0, 50, (1, T))
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % 50
    with torch.no_grad():
        enc_delta = (enc(idx) - enc(changed)).abs().amax(-1)[0]
        dec_delta = (dec(idx) - dec(changed)).abs().amax(-1)[0]
    assert torch.all(enc_delta[:-1] > 1e-6), "encoder positions must see the last token"
    assert torch.all(dec_delta[:-1] == 0), "decoder positions must not see a future token"
    assert enc(idx).shape == (1, T, 50)


def test_encoder_decoder_forward_cross_attention_and_cached_generate():
    model = EncoderDecoder(tiny(n_encoder_layers=3)).eval()
    src, tgt = torch.randint(0, 50, (2, 9)), torch.randint(0, 50, (2, 5))
    src_is_token = torch.tensor([[True] * 9, [True] * 6 + [False] * 3])
    with torch.no_grad():
        logits = model(src, tgt, src_is_token)
        assert logits.shape == (2, 5, 50)
        other_src = src.clone()
        other_src[1, 6:] = (src[1, 6:] + 1) % 50  # only padding changes
        assert_close(model(other_src, tgt, src_is_token)[1], logits[1], rtol=1e-5, atol=1e-5)
        other_src[0, 0] = (src[0, 0] + 1) % 50  # a real source token changes every target position
        assert (model(other_src, tgt, src_is_token)[0] - logits[0]).abs().amax(-1).min() > 1e-6
    assert len(model.encoder.blocks) == 3 and model.decoder.blocks[0].cross_attn is not None
    assert torch.equal(
        model.generate(src, 1, 10, src_is_token, use_cache=True),
        model.generate(src, 1, 10, src_is_token, use_cache=False),
    )


@pytest.mark.parametrize("tie", [True, False])
def test_weight_tying(tie):
    model = DecoderLM(tiny(tie_weights=tie))
    shared = model.lm_head.weight.data_ptr() == model.transformer.tok_emb.weight.data_ptr()
    assert shared == tie
    from course.costs import param_count

    assert model.num_params() == param_count(model.config)["total"]


def test_bf16_forward_runs_and_stays_close():
    model = DecoderLM(tiny(positional="rope", norm="rmsnorm", mlp="swiglu")).eval()
    idx = torch.randint(0, 50, (2, 10))
    with torch.no_grad():
        ref = model(idx)
        low = model.to(torch.bfloat16)(idx)
    assert low.dtype == torch.bfloat16
    assert_close(low.float(), ref, rtol=0.05, atol=0.05)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(d_model=30, n_heads=4), "d_model=30 is not divisible by n_heads=4"),
        (dict(n_heads=4, n_kv_heads=3), "n_heads=4 is not divisible by n_kv_heads=3"),
        (dict(positional="rotary"), "positional='rotary'"),
        (dict(norm_placement="middle"), "norm_placement='middle'"),
        (dict(vocab_size=0), "vocab_size=0"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kwargs)


def test_bad_model_inputs_are_clear_errors():
    model = DecoderLM(tiny())
    with pytest.raises(ValueError, match="sequence length 33 exceeds context_length=32"):
        model(torch.randint(0, 50, (1, 33)))
    with pytest.raises(ValueError, match="integer tensor"):
        model(torch.randn(1, 4))
    with pytest.raises(ValueError, match="exceeds context_length=32"):
        model.generate(torch.randint(0, 50, (1, 30)), 5)
    with pytest.raises(ValueError, match="unknown preset 'gpt5'"):
        ModelConfig.from_preset("gpt5")


def test_presets_shapes():
    c = ModelConfig.from_preset("gpt2-small")
    assert (c.d_model, c.n_heads, c.d_head) == (768, 12, 64)
    llama = ModelConfig.from_preset("llama2-70b")
    assert (llama.n_layers, llama.d_model, llama.n_heads, llama.n_kv_heads) == (80, 8192, 64, 8)
    assert ModelConfig.from_preset("tiny", n_layers=3).n_layers == 3


@pytest.mark.parametrize(
    "name,formula",
    [
        ("silu", lambda x: x * torch.sigmoid(x)),
        ("relu", lambda x: x.clamp(min=0)),
        ("gelu", lambda x: 0.5 * x * (1 + torch.erf(x / 2**0.5))),
        ("gelu_tanh", lambda x: 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x**3)))),
    ],
)
def test_activations_follow_their_formulas_and_build_models(name, formula):
    from course.costs import param_count
    from course.feedforward import ACTIVATIONS, MLP

    x = torch.linspace(-6, 6, 101)
    assert_close(ACTIVATIONS[name](x), formula(x), rtol=1e-5, atol=1e-6)
    mlp = MLP(8, 16, name)
    h = torch.randn(2, 3, 8)
    assert_close(mlp(h), mlp.down(formula(mlp.up(h))), rtol=1e-5, atol=1e-6)
    model = DecoderLM(tiny(mlp=name))
    assert model.num_params() == param_count(model.config)["total"]
    assert model(torch.randint(0, 50, (1, 5))).shape == (1, 5, 50)


def test_every_model_counts_its_parameters_as_torch_does():
    c = ModelConfig.from_preset("tiny", n_encoder_layers=2)
    for model in (DecoderLM(c), EncoderLM(c), EncoderDecoder(c)):
        assert model.num_params() == sum(p.numel() for p in model.parameters()), type(model).__name__
