"""Attention: explicit vs fused vs torch, head splitting, MHA/GQA/MQA, fully masked rows. fp32 tolerances:
assert_close defaults (rtol 1.3e-6, atol 1e-5) unless stated."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from course import ModelConfig
from course.attention import (
    MultiHeadAttention,
    fused_attention,
    merge_heads,
    repeat_kv,
    scaled_dot_product_attention,
    softmax_rows,
    split_heads,
)
from course.masks import causal_mask, padding_mask

SHAPES = [(1, 1, 3, 3, 4), (2, 4, 7, 7, 8), (3, 2, 5, 9, 16), (2, 12, 33, 33, 64)]


def naive(q, k, v, mask=None):
    """Textbook formula in float64: softmax(q kᵀ / √d) v."""
    q, k, v = q.double(), k.double(), v.double()
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    w = torch.softmax(s, -1)
    return (w @ v).float(), w.float()


@pytest.mark.parametrize("B,H,Tq,Tk,d", SHAPES)
def test_explicit_matches_textbook_and_torch(B, H, Tq, Tk, d):
    q, k, v = torch.randn(B, H, Tq, d), torch.randn(B, H, Tk, d), torch.randn(B, H, Tk, d)
    out, w = scaled_dot_product_attention(q, k, v)
    ref_out, ref_w = naive(q, k, v)
    assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    assert_close(w, ref_w, rtol=1e-5, atol=1e-6)
    assert_close(out, F.scaled_dot_product_attention(q, k, v))
    assert_close(w.sum(-1), torch.ones(B, H, Tq))


@pytest.mark.parametrize("B,H,Tq,Tk,d", SHAPES)
def test_fused_equals_explicit_with_causal_and_padding_mask(B, H, Tq, Tk, d):
    q, k, v = torch.randn(B, H, Tq, d), torch.randn(B, H, Tk, d), torch.randn(B, H, Tk, d)
    lengths = torch.randint(1, Tk + 1, (B,))
    mask = causal_mask(Tq, Tk) & padding_mask(torch.arange(Tk)[None] < lengths[:, None])
    out, _ = scaled_dot_product_attention(q, k, v, mask)
    assert_close(fused_attention(q, k, v, mask), out, rtol=1e-5, atol=1e-5)
    ref_out, _ = naive(q, k, v, mask)
    rows_alive = mask.expand(B, H, Tq, Tk).any(-1, keepdim=True)
    assert_close(out, torch.where(rows_alive, ref_out.nan_to_num(0.0), 0.0), rtol=1e-5, atol=1e-5)


def test_is_causal_matches_explicit_causal_mask():
    q, k, v = (torch.randn(2, 3, 10, 8) for _ in range(3))
    out, w = scaled_dot_product_attention(q, k, v, causal_mask(10))
    assert_close(fused_attention(q, k, v, is_causal=True), out, rtol=1e-5, atol=1e-5)
    assert torch.all(w.triu(1) == 0), "a query attended to a future key"


def test_fully_masked_row_gives_zeros_not_nan():
    q, k, v = (torch.randn(1, 2, 4, 8) for _ in range(3))
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[2] = False  # query 2 may attend nothing
    out, w = scaled_dot_product_attention(q, k, v, mask)
    fused = fused_attention(q, k, v, mask)
    for t in (out, w, fused):
        assert not t.isnan().any()
    assert (
        torch.all(w[..., 2, :] == 0) and torch.all(out[..., 2, :] == 0) and torch.all(fused[..., 2, :] == 0)
    )
    assert_close(w[..., [0, 1, 3], :].sum(-1), torch.ones(1, 2, 3))


@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 3, 5), (2, 2, 3, 4, 5)])
def test_softmax_rows_any_leading_shape_zero_rows_where_torch_gives_nan(shape):
    scores = torch.randn(shape)
    dead = torch.rand(shape[:-1]) < 0.4  # rows whose keys are all masked
    scores = scores.masked_fill(dead[..., None], float("-inf"))
    w = softmax_rows(scores)
    assert w.shape == scores.shape and not w.isnan().any()
    torch_w = torch.softmax(scores, -1)
    assert torch_w[dead].isnan().all()  # PyTorch's softmax: NaN in a fully masked row
    assert torch.all(w[dead] == 0)  # the course's: zeros
    assert_close(w[~dead], torch_w[~dead], rtol=0, atol=0)  # elsewhere exactly torch's
    assert_close(w[~dead].sum(-1), torch.ones(int((~dead).sum())))


def test_softmax_rows_keeps_gradients_finite_and_rejects_0d():
    scores = torch.tensor([[0.0, 1.0], [float("-inf"), float("-inf")]], requires_grad=True)
    (softmax_rows(scores) * torch.tensor([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
    assert not scores.grad.isnan().any() and torch.all(scores.grad[1] == 0)
    # through attention: a query with no key to attend to gets zero output and finite gradients
    q, k, v = (torch.randn(1, 1, 3, 4, requires_grad=True) for _ in range(3))
    mask = torch.tensor([[True, False, False], [False, False, False], [True, True, True]])
    out, _ = scaled_dot_product_attention(q, k, v, mask)
    out.sum().backward()
    assert torch.all(out[..., 1, :] == 0) and all(t.grad.isfinite().all() for t in (q, k, v))
    with pytest.raises(ValueError, match="0-d"):
        softmax_rows(torch.tensor(1.0))


def test_bias_is_added_before_softmax():
    q, k, v = (torch.randn(2, 2, 5, 4) for _ in range(3))
    bias = torch.randn(2, 5, 5)
    _, w = scaled_dot_product_attention(q, k, v, bias=bias)
    expected = torch.softmax(q @ k.transpose(-2, -1) / 2.0 + bias, -1)
    assert_close(w, expected)
    assert_close(fused_attention(q, k, v, bias=bias), expected @ v, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("B,T,H,d", [(1, 1, 1, 4), (2, 5, 4, 8), (3, 7, 12, 64)])
def test_split_merge_round_trip_and_layout(B, T, H, d):
    x = torch.randn(B, T, H * d)
    heads = split_heads(x, H)
    assert heads.shape == (B, H, T, d)
    assert_close(merge_heads(heads), x, rtol=0, atol=0)
    # head h, position t holds features [h*d, (h+1)*d) of token t
    t, h = T - 1, H - 1
    assert torch.equal(heads[0, h, t], x[0, t, h * d : (h + 1) * d])


def test_split_heads_rejects_indivisible():
    with pytest.raises(ValueError, match="n_heads=5"):
        split_heads(torch.randn(1, 2, 12), 5)


def test_repeat_kv_groups_consecutive_query_heads():
    kv = torch.randn(2, 2, 3, 4)
    rep = repeat_kv(kv, 3)
    assert rep.shape == (2, 6, 3, 4)
    for h in range(6):
        assert torch.equal(rep[:, h], kv[:, h // 3])


def _copy_to_torch_mha(mha: MultiHeadAttention, d_model: int, n_heads: int):
    ref = torch.nn.MultiheadAttention(d_model, n_heads, bias=True, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mha.q_proj.weight, mha.k_proj.weight, mha.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([mha.q_proj.bias, mha.k_proj.bias, mha.v_proj.bias]))
        ref.out_proj.weight.copy_(mha.o_proj.weight)
        ref.out_proj.bias.copy_(mha.o_proj.bias)
    return ref.eval()


@pytest.mark.parametrize("d_model,n_heads,T", [(16, 2, 5), (32, 4, 9), (64, 8, 17)])
def test_mha_matches_torch_multihead_attention(d_model, n_heads, T):
    mha = MultiHeadAttention(ModelConfig(d_model=d_model, n_heads=n_heads)).eval()
    for p in mha.parameters():
        torch.nn.init.normal_(p, std=0.2)
    ref = _copy_to_torch_mha(mha, d_model, n_heads)
    x = torch.randn(3, T, d_model)
    causal = causal_mask(T)
    with torch.no_grad():
        expected, _ = ref(x, x, x, attn_mask=~causal, need_weights=False)  # torch: True = blocked
        assert_close(mha(x, mask=causal), expected, rtol=1e-5, atol=1e-5)
        assert_close(mha(x, is_causal=True), expected, rtol=1e-5, atol=1e-5)
        ctx = torch.randn(3, T + 3, d_model)
        expected_cross, _ = ref(x, ctx, ctx, need_weights=False)
        assert_close(mha(x, context=ctx), expected_cross, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4, 8])
def test_gqa_equals_mha_with_repeated_kv_weights(n_kv_heads):
    """GQA = MHA whose K/V projections repeat each KV head over its group of query heads."""
    H, d_model = 8, 64
    d_head = d_model // H
    gqa = MultiHeadAttention(ModelConfig(d_model=d_model, n_heads=H, n_kv_heads=n_kv_heads)).eval()
    mha = MultiHeadAttention(ModelConfig(d_model=d_model, n_heads=H)).eval()
    group = H // n_kv_heads

    def expand(w):  # (n_kv*d_head, ...) -> (H*d_head, ...)
        return (
            w.view(n_kv_heads, 1, d_head, *w.shape[1:])
            .expand(n_kv_heads, group, d_head, *w.shape[1:])
            .reshape(H * d_head, *w.shape[1:])
        )

    with torch.no_grad():
        for name in ("q_proj", "o_proj"):
            getattr(mha, name).load_state_dict(getattr(gqa, name).state_dict())
        for name in ("k_proj", "v_proj"):
            getattr(mha, name).weight.copy_(expand(getattr(gqa, name).weight))
            getattr(mha, name).bias.copy_(expand(getattr(gqa, name).bias))
        x = torch.randn(2, 11, d_model)
        assert_close(gqa(x, is_causal=True), mha(x, is_causal=True), rtol=1e-5, atol=1e-5)
    assert gqa.k_proj.weight.shape == (n_kv_heads * d_head, d_model)


def test_bad_mask_dtype_and_shape_are_clear_errors():
    q = k = v = torch.randn(1, 1, 4, 8)
    with pytest.raises(ValueError, match="torch.bool"):
        scaled_dot_product_attention(q, k, v, torch.ones(4, 4))
    with pytest.raises(ValueError, match=r"\(5, 4\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="d_k"):
        scaled_dot_product_attention(q, torch.randn(1, 1, 4, 6), v)
