"""Masks (polarity True = may attend), positional schemes (RoPE conventions and the i − j property, ALiBi,
sinusoidal, T5 buckets) and norms against torch.nn.LayerNorm / torch.nn.RMSNorm."""

import math

import pytest
import torch
from torch.testing import assert_close

from course import masks
from course.norms import LayerNorm, RMSNorm, layer_norm, rms_norm
from course.positional import (
    RelativePositionBias,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    interleaved_to_split_half,
    relative_bucket,
    rope_angles,
    sinusoidal_table,
)


# --- masks
# -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 2, 5, 16])
def test_causal_mask_polarity_and_diagonal(T):
    m = masks.causal_mask(T)
    assert m.dtype == torch.bool and m.shape == (T, T)
    for i in range(T):
        for j in range(T):
            assert bool(m[i, j]) == (j <= i)


def test_causal_mask_bottom_right_for_cached_queries():
    m = masks.causal_mask(2, 5)  # queries are positions 3 and 4 of 5
    assert m.tolist() == [[True, True, True, True, False], [True] * 5]


def test_padding_and_combined_masks():
    is_token = masks.lengths_to_padding([3, 1], 4)
    assert is_token.tolist() == [[True, True, True, False], [True, False, False, False]]
    dec = masks.decoder_mask(4, is_token)
    assert dec.shape == (2, 1, 4, 4)
    assert dec[0, 0].tolist() == [
        [True, False, False, False],
        [True, True, False, False],
        [True, True, True, False],
        [True, True, True, False],
    ]
    enc = masks.encoder_mask(is_token)
    assert enc.shape == (2, 1, 1, 4) and enc[1, 0, 0].tolist() == [True, False, False, False]
    cross = masks.cross_mask(is_token, T_tgt=3)
    assert cross.shape == (2, 1, 3, 4) and torch.equal(cross[0, 0, 2], is_token[0])


def test_mask_errors_name_the_value():
    with pytest.raises(ValueError, match="float32"):
        masks.padding_mask(torch.ones(2, 3))
    with pytest.raises(ValueError, match="T=4, T_k=3"):
        masks.causal_mask(4, 3)
    with pytest.raises(ValueError, match="does not broadcast"):
        masks.check_mask(torch.ones(3, 3, dtype=torch.bool), 4, 4)


# --- RoPE
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("convention", ["split_half", "interleaved"])
@pytest.mark.parametrize("d_head", [4, 16, 64])
def test_rope_score_depends_only_on_offset(convention, d_head):
    q, k = torch.randn(d_head, dtype=torch.float64), torch.randn(d_head, dtype=torch.float64)
    cos, sin = rope_angles(64, d_head)
    cos, sin = cos.double(), sin.double()

    def rotated(x, pos):
        return apply_rope(x[None], cos[pos : pos + 1], sin[pos : pos + 1], convention)[0]

    for delta in (0, 1, 7):
        scores = [rotated(q, i + delta) @ rotated(k, i) for i in (0, 5, 20, 40)]
        # angles are computed in fp32 (as Hugging Face does), hence 1e-5 rather than float64 precision
        assert max(scores) - min(scores) < 1e-5, f"score changed with absolute position at i-j={delta}"
    # and it does depend on the offset
    assert abs(rotated(q, 3) @ rotated(k, 0) - rotated(q, 9) @ rotated(k, 0)) > 1e-6


def test_rope_preserves_norm_and_position_zero_is_identity():
    x = torch.randn(2, 3, 8, 16)
    cos, sin = rope_angles(8, 16)
    for conv in ("split_half", "interleaved"):
        y = apply_rope(x, cos, sin, conv)
        assert_close(y.norm(dim=-1), x.norm(dim=-1))
        assert_close(y[..., 0, :], x[..., 0, :])


@pytest.mark.parametrize("d_head", [2, 8, 32])
def test_rope_conventions_agree_up_to_a_fixed_permutation(d_head):
    x = torch.randn(2, 3, 10, d_head)
    cos, sin = rope_angles(10, d_head)
    P = interleaved_to_split_half(d_head)
    inv = torch.argsort(P)
    assert_close(
        apply_rope(x, cos, sin, "interleaved"), apply_rope(x[..., P], cos, sin, "split_half")[..., inv]
    )
    if d_head > 2:  # with one pair the two layouts coincide
        assert not torch.allclose(
            apply_rope(x, cos, sin, "interleaved"), apply_rope(x, cos, sin, "split_half")
        )


def test_rope_matches_hugging_face_llama():
    pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    d_head, T = 16, 12
    q, k = torch.randn(2, 4, T, d_head), torch.randn(2, 4, T, d_head)
    cos, sin = rope_angles(T, d_head)
    hf_q, hf_k = apply_rotary_pos_emb(q, k, torch.cat([cos, cos], -1)[None], torch.cat([sin, sin], -1)[None])
    assert_close(apply_rope(q, cos, sin), hf_q)
    assert_close(apply_rope(k, cos, sin), hf_k)


def test_rope_rejects_unknown_convention():
    cos, sin = rope_angles(2, 4)
    with pytest.raises(ValueError, match="'meta'"):
        apply_rope(torch.randn(1, 1, 2, 4), cos, sin, "meta")


# --- sinusoidal, ALiBi, relative
# ---------------------------------------------------------------------------------
def test_sinusoidal_table_follows_the_formula():
    T, D = 20, 16
    table = sinusoidal_table(T, D)
    for pos in (0, 3, 19):
        for i in range(D // 2):
            angle = pos / 10000 ** (2 * i / D)
            assert math.isclose(table[pos, 2 * i].item(), math.sin(angle), abs_tol=1e-5)
            assert math.isclose(table[pos, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-5)
    assert_close(sinusoidal_table(torch.arange(7, 12), D), table[7:12])


def test_alibi_slopes_and_bias():
    assert_close(alibi_slopes(8), torch.tensor([2 ** (-i) for i in range(1, 9)], dtype=torch.float32))
    assert alibi_slopes(12).shape == (12,) and torch.all(alibi_slopes(12) > 0)
    bias = alibi_bias(4, 3, 5)  # queries at positions 2, 3, 4
    slopes = alibi_slopes(4)
    for h in range(4):
        for qi, i in enumerate((2, 3, 4)):
            for j in range(5):
                assert math.isclose(bias[h, qi, j].item(), -slopes[h].item() * abs(i - j), rel_tol=1e-6)


def test_relative_buckets_exact_nearby_and_monotone():
    rel = torch.arange(-200, 1)
    b = relative_bucket(rel, bidirectional=False, n_buckets=32, max_distance=128)
    assert torch.equal(b[-16:], torch.arange(15, -1, -1)), "small distances get their own bucket"
    assert torch.all(b[:-1] >= b[1:]) and b.max() == 31
    bias = RelativePositionBias(4)(3, 6)
    assert bias.shape == (4, 3, 6)


# --- norms
# -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(7,), (2, 5, 16), (3, 4, 768)])
@pytest.mark.parametrize("eps", [1e-5, 1e-2, 1.0])
def test_layernorm_equals_torch(shape, eps):
    d = shape[-1]
    ours, ref = LayerNorm(d, eps), torch.nn.LayerNorm(d, eps)
    with torch.no_grad():
        w, b = torch.randn(d), torch.randn(d)
        ours.weight.copy_(w), ours.bias.copy_(b), ref.weight.copy_(w), ref.bias.copy_(b)
    x = torch.randn(*shape) * 3 + 1
    assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(7,), (2, 5, 16), (3, 4, 768)])
@pytest.mark.parametrize("eps", [1e-6, 1e-2, 1.0])
def test_rmsnorm_equals_torch(shape, eps):
    d = shape[-1]
    ours, ref = RMSNorm(d, eps), torch.nn.RMSNorm(d, eps=eps)
    with torch.no_grad():
        w = torch.randn(d)
        ours.weight.copy_(w), ref.weight.copy_(w)
    x = torch.randn(*shape) * 3 + 1
    assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["layernorm", "layernorm_nobias", "rmsnorm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_norm_modules_equal_the_written_out_formulas(kind, dtype):
    """The models' norm modules run fused kernels; values and gradients must be the written-out formulas'."""
    d = 48
    make = {
        "layernorm": lambda f: LayerNorm(d, 1e-5, fused=f),
        "layernorm_nobias": lambda f: LayerNorm(d, 1e-5, False, f),
        "rmsnorm": lambda f: RMSNorm(d, 1e-6, fused=f),
    }[kind]
    fused, written = make(True), make(False)
    with torch.no_grad():
        for p in fused.parameters():
            p.copy_(torch.randn(p.shape))
    written.load_state_dict(fused.state_dict())
    fused, written = fused.to(dtype), written.to(dtype)
    x = (torch.randn(3, 5, d) * 3 + 1).to(dtype)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = fused(xa), written(xb)
    assert ya.dtype == yb.dtype == dtype
    tol = {} if dtype == torch.float32 else {"rtol": 1.6e-2, "atol": 1e-2}
    assert_close(ya, yb, **tol)
    g = torch.randn_like(ya)
    ya.backward(g), yb.backward(g)
    assert_close(xa.grad, xb.grad, **({"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else tol))
    for pa, pb in zip(fused.parameters(), written.parameters(), strict=True):
        assert_close(pa.grad, pb.grad, **({"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else tol))
    # and the formulas themselves
    if kind != "rmsnorm" and dtype == torch.float32:
        b = None if fused.bias is None else fused.bias
        assert_close(fused(x), layer_norm(x, fused.weight, b, 1e-5))
    if kind == "rmsnorm" and dtype == torch.float32:
        assert_close(fused(x), rms_norm(x, fused.weight, 1e-6))


def test_norm_statistics_and_difference():
    x = torch.randn(4, 32) * 5 + 3
    y = layer_norm(x)
    assert_close(y.mean(-1), torch.zeros(4), atol=1e-5, rtol=0)
    assert_close(y.var(-1, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    r = rms_norm(x)
    assert_close(r.pow(2).mean(-1), torch.ones(4), atol=1e-4, rtol=0)
    assert r.mean(-1).abs().min() > 0.1, "RMSNorm must not subtract the mean"
