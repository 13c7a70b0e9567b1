"""Property-based tests (hypothesis): shapes and mask invariants over many random sizes."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course.attention import merge_heads, scaled_dot_product_attention, split_heads
from course.masks import causal_mask, combine, lengths_to_padding, padding_mask

settings.register_profile("course", max_examples=40, deadline=None)
settings.load_profile("course")


@given(T=st.integers(1, 40), extra=st.integers(0, 20))
def test_causal_mask_invariants(T, extra):
    m = causal_mask(T, T + extra)
    assert m.shape == (T, T + extra)
    assert m[:, : extra + 1].all(), "every query sees the first key (and all cached ones)"
    assert m.sum().item() == T * extra + T * (T + 1) // 2
    assert torch.equal(m[-1], torch.ones(T + extra, dtype=torch.bool)), "the last query sees every key"


@given(B=st.integers(1, 4), H=st.integers(1, 6), T=st.integers(1, 12), d=st.integers(1, 9))
def test_split_merge_inverse(B, H, T, d):
    x = torch.randn(B, T, H * d)
    assert torch.equal(merge_heads(split_heads(x, H)), x)
    assert split_heads(x, H).shape == (B, H, T, d)


@given(B=st.integers(1, 3), T=st.integers(1, 10), data=st.data())
def test_attention_rows_are_distributions_over_allowed_keys(B, T, data):
    lengths = data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
    mask = combine(causal_mask(T), padding_mask(lengths_to_padding(lengths, T)))
    q, k, v = (torch.randn(B, 2, T, 4) for _ in range(3))
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert out.shape == (B, 2, T, 4) and not w.isnan().any() and not out.isnan().any()
    assert torch.all(w[~mask.expand_as(w)] == 0), "blocked cells carry weight"
    sums = w.sum(-1)
    alive = mask.expand_as(w).any(-1)
    assert torch.allclose(sums[alive], torch.ones_like(sums[alive]), atol=1e-5)
    assert torch.all(sums[~alive] == 0)
