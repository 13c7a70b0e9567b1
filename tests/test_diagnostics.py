"""Diagnostics: each check must pass a correct model and catch a planted bug; measurements are compared with
values derived independently (uniform attention, zeroed sub-layers, plain autograd)."""

import math

import pytest
import torch

import course.attention
from course import DecoderLM, EncoderLM, ModelConfig
from course.attention import scaled_dot_product_attention
from course.diagnostics import (
    ablate_heads,
    attention_entropy,
    causal_leak,
    check_attention_weights,
    check_model_shapes,
    check_shape,
    future_attention,
    gradient_norms,
    head_ablation_effects,
    induction_scores,
    max_causal_entropy,
    offset_attention,
    previous_token_scores,
    residual_norms,
)
from course.masks import causal_mask
from course.training import lm_loss

POSITIONAL = ["learned", "sinusoidal", "rope", "alibi", "relative"]


def sharp_model(seed=0, **overrides):
    """A random decoder with large weights, so attention patterns are far from uniform."""
    torch.manual_seed(seed)
    model = DecoderLM(ModelConfig.from_preset("tiny", **overrides))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    return model.eval()


def uniform_model(**overrides):
    """Queries zeroed: every score is 0, so each causal row attends uniformly to its i + 1 keys."""
    model = sharp_model(**overrides)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.q_proj.weight.zero_()
            block.attn.q_proj.bias.zero_()
    return model


# ----------------------------------------------------------------------------- shapes


def test_check_shape_names_the_wrong_axis():
    q = torch.zeros(2, 4, 8, 16)
    check_shape(q, "B H T d_head", "q", B=2, H=4, T=8, d_head=16)
    check_shape(q, "B H T d_head", "q", H=4)  # unspecified axes are only counted
    with pytest.raises(ValueError, match=r"q: axis 1 \(heads H\) has size 4, expected 8"):
        check_shape(q, "B H T d_head", "q", H=8)
    with pytest.raises(ValueError, match=r"axis 3 \(head size d_head\) has size 16, expected 32"):
        check_shape(q, "B H T d_head", "q", d_head=32)
    with pytest.raises(ValueError, match=r"axis 2 \(time T\)"):
        check_shape(q, "B H T d_head", "q", T=7)
    with pytest.raises(ValueError, match=r"x: expected 3 axes \(B, T, D\), got 4"):
        check_shape(q, "B T D", "x")
    with pytest.raises(ValueError, match=r"\['Z'\]"):
        check_shape(q, "B H T d_head", Z=3)


@pytest.mark.parametrize("preset", ["tiny", "tiny-llama"])
def test_check_model_shapes_passes_a_correct_model(preset):
    model = DecoderLM(ModelConfig.from_preset(preset)).eval()
    passed = check_model_shapes(model, torch.randint(0, 64, (3, 10)))
    L = model.config.n_layers
    assert any("blocks.1.attn.hook_pattern" in p for p in passed)
    assert len([p for p in passed if "hook_k (B, T, H_kv, d_head)" in p]) == L  # GQA: keys have n_kv_heads


def test_check_model_shapes_catches_a_wrong_head_count(monkeypatch):
    model = DecoderLM(ModelConfig.from_preset("tiny")).eval()
    model.config = model.config.replace(
        n_heads=2, n_kv_heads=2
    )  # the config lies about the module: 4 heads really run
    with pytest.raises(ValueError, match="heads H"):
        check_model_shapes(model, torch.randint(0, 64, (2, 6)))


# ----------------------------------------------------------------------------- causal leaks


@pytest.mark.parametrize("positional", POSITIONAL)
def test_causal_leak_passes_correct_decoders(positional):
    model = sharp_model(positional=positional)
    report = causal_leak(model, torch.randint(0, 64, (14,)))
    assert not report.leaks, str(report)
    assert report.max_change.shape == (13,)
    assert report.reference > 1e-2  # the perturbation does move its own and later positions
    assert "no causal leak" in str(report)


def test_causal_leak_catches_a_removed_mask():
    model = sharp_model()
    model.transformer.causal = False  # planted bug: bidirectional attention in a decoder
    report = causal_leak(model, torch.randint(0, 64, (1, 12)))
    assert report.leaks and report.leaky_positions == list(range(11))
    assert report.max_change.min() > 100 * report.tol
    assert "LEAK" in str(report)


def test_causal_leak_catches_a_head_split_without_transpose(monkeypatch):
    def bad_split(x, n_heads):  # (B, T, D) -> (B, H, T, d) by a bare reshape: heads and positions mixed
        B, T, D = x.shape
        return x.reshape(B, n_heads, T, D // n_heads)

    monkeypatch.setattr(course.attention, "split_heads", bad_split)
    report = causal_leak(sharp_model(), torch.randint(0, 64, (12,)))
    assert report.leaks, str(report)


def test_an_encoder_is_not_causal():
    torch.manual_seed(0)
    encoder = EncoderLM(ModelConfig.from_preset("tiny-encoder")).eval()
    assert causal_leak(encoder, torch.randint(4, 64, (9,))).leaks


def test_causal_leak_rejects_a_batch():
    with pytest.raises(ValueError, match="one sequence"):
        causal_leak(sharp_model(), torch.zeros(2, 5, dtype=torch.long))


def causal_self_attention(x):
    """q = k = v = x (B, T, D), the causal mask applied to the scores (correct)."""
    return scaled_dot_product_attention(x, x, x, causal_mask(x.shape[1]))[0]


def mask_after_softmax(x):
    """Planted bug: softmax over all keys, then future weights zeroed (rows no longer sum to 1)."""
    T, D = x.shape[1:]
    weights = torch.softmax(x @ x.transpose(-2, -1) / math.sqrt(D), -1) * causal_mask(T)
    return weights @ x


@pytest.mark.parametrize("T,D", [(2, 4), (9, 16)])
def test_causal_leak_on_attention_functions(T, D):
    x = torch.randn(T, D)
    assert not causal_leak(causal_self_attention, x).leaks
    report = causal_leak(mask_after_softmax, x[None])
    assert report.leaks and 0 in report.leaky_positions
    with pytest.raises(ValueError, match="config.vocab_size"):
        causal_leak(causal_self_attention, torch.zeros(T, dtype=torch.long))


def test_check_attention_weights_catches_a_mask_after_softmax():
    q, k, v = (torch.randn(2, 3, 7, 8) for _ in range(3))
    mask = causal_mask(7).clone()
    mask[2] = False  # a fully masked query row: the course gives it zero weights
    _, weights = scaled_dot_product_attention(q, k, v, mask)
    check_attention_weights(weights, mask)
    check_attention_weights(torch.softmax(torch.randn(4, 5), -1))  # no mask: rows sum to 1
    after = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(8), -1) * mask
    with pytest.raises(ValueError, match="sum to 1"):
        check_attention_weights(after, mask)
    unmasked = torch.softmax(q @ k.transpose(-2, -1), -1)
    with pytest.raises(ValueError, match="masked"):
        check_attention_weights(unmasked, mask)
    with pytest.raises(ValueError, match=">= 0"):
        check_attention_weights(weights - 0.1, mask)


def test_future_attention_is_zero_only_with_the_mask():
    model, idx = sharp_model(), torch.randint(0, 64, (2, 10))
    assert future_attention(model, idx).shape == (2, 4)
    assert future_attention(model, idx).max() == 0
    model.transformer.causal = False
    assert future_attention(model, idx).min() > 1e-3


# ----------------------------------------------------------------------------- attention statistics


@pytest.mark.parametrize("T", [5, 12])
def test_entropy_of_uniform_attention_is_the_maximum(T):
    model = uniform_model()
    idx = torch.randint(0, 64, (3, T))
    expected = sum(math.log(i + 1) for i in range(T)) / T  # row i spreads over i + 1 keys
    assert max_causal_entropy(T) == pytest.approx(expected)
    torch.testing.assert_close(attention_entropy(model, idx), torch.full((2, 4), expected), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        attention_entropy(model, idx, normalized=True), torch.ones(2, 4), atol=1e-5, rtol=0
    )
    sharp = attention_entropy(sharp_model(), idx)
    assert (sharp < expected - 0.05).all() and (sharp >= 0).all()


def test_entropy_of_a_uniform_encoder_uses_all_keys():
    torch.manual_seed(0)
    encoder = EncoderLM(ModelConfig.from_preset("tiny-encoder")).eval()
    with torch.no_grad():
        for block in encoder.blocks:
            block.attn.q_proj.weight.zero_()
            block.attn.q_proj.bias.zero_()
    idx = torch.randint(4, 64, (2, 9))
    torch.testing.assert_close(
        attention_entropy(encoder, idx), torch.full((2, 4), math.log(9)), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        attention_entropy(encoder, idx, normalized=True), torch.ones(2, 4), atol=1e-5, rtol=0
    )


def test_offset_attention_on_hand_made_patterns():
    T = 6
    prev = torch.zeros(1, 1, 1, T, T)
    prev[..., 0, 0] = 1
    prev[..., torch.arange(1, T), torch.arange(T - 1)] = 1  # every query looks one back
    assert offset_attention(prev, 1, 1).item() == 1.0
    assert offset_attention(prev, 0, 1).item() == 0.0
    assert offset_attention(prev, 0, 0).item() == pytest.approx(1 / T)
    with pytest.raises(ValueError, match="offset=3"):
        offset_attention(prev, 3, 2)


def test_previous_token_and_induction_scores_of_uniform_attention():
    model, period = uniform_model(), 5
    idx = torch.randint(4, 64, (2, 1 + 2 * period))
    T = idx.shape[1]
    prev = sum(1 / (i + 1) for i in range(1, T)) / (T - 1)  # query i gives 1/(i+1) to each key
    ind = sum(1 / (i + 1) for i in range(T - period, T)) / period
    torch.testing.assert_close(previous_token_scores(model, idx), torch.full((2, 4), prev), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        induction_scores(model, idx, period), torch.full((2, 4), ind), atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="period=6"):
        induction_scores(model, idx, 6)


# ----------------------------------------------------------------------------- norms and gradients


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_residual_norms(placement):
    model = sharp_model(norm_placement=placement)
    idx = torch.randint(0, 64, (2, 9))
    norms = residual_norms(model, idx)
    assert norms["resid"].shape == (3,) and norms["attn_update"].shape == norms["mlp_update"].shape == (2,)
    embedded = model.transformer.embed(idx)  # what enters block 0
    assert norms["resid"][0].item() == pytest.approx(embedded.norm(dim=-1).mean().item(), rel=1e-5)
    with torch.no_grad():  # silence every sub-layer: no updates at all
        for block in model.blocks:
            for lin in (block.attn.o_proj, block.mlp.down):
                lin.weight.zero_()
                lin.bias.zero_()
    silent = residual_norms(model, idx)
    assert silent["attn_update"].abs().max() == 0 and silent["mlp_update"].abs().max() == 0
    if placement == "pre":  # Pre-LN: the stream passes untouched
        assert silent["update_ratio"].abs().max() == 0


def test_gradient_norms_match_autograd_and_leave_grads_alone():
    model = sharp_model().train()
    idx = torch.randint(0, 64, (4, 11))
    norms = gradient_norms(model, idx)
    assert all(p.grad is None for p in model.parameters())
    lm_loss(model(idx[:, :-1]), idx[:, 1:]).backward()
    for layer, block in enumerate(model.blocks):
        expected = torch.sqrt(sum(p.grad.pow(2).sum() for p in block.parameters()))
        assert norms[layer].item() == pytest.approx(expected.item(), rel=1e-5)


# ----------------------------------------------------------------------------- ablations


def test_ablating_every_head_equals_zeroing_the_output_projection():
    model, idx = sharp_model(), torch.randint(0, 64, (2, 8))
    with ablate_heads(model, {1: [0, 1, 2, 3]}):
        ablated = model(idx)
    reference = sharp_model()
    with torch.no_grad():
        reference.blocks[1].attn.o_proj.weight.zero_()
    torch.testing.assert_close(ablated, reference(idx), atol=1e-5, rtol=1e-5)
    assert not model.blocks[1].attn.hook_z.active  # the hook is gone


def test_ablate_heads_changes_only_inside_and_restores_on_error():
    model, idx = sharp_model(), torch.randint(0, 64, (2, 8))
    before = model(idx)
    with ablate_heads(model, [(0, 2)]):
        assert model.blocks[0].attn.hook_z.active and not model.blocks[1].attn.hook_z.active
        assert not torch.allclose(model(idx), before)
    torch.testing.assert_close(model(idx), before, atol=0, rtol=0)
    with pytest.raises(RuntimeError, match="boom"), ablate_heads(model, {-1: [1]}):
        raise RuntimeError("boom")
    assert not any(block.attn.hook_z.active for block in model.blocks)
    with pytest.raises(ValueError, match="layer=5"), ablate_heads(model, {5: [0]}):
        pass
    with pytest.raises(ValueError, match=r"heads \[4\]"), ablate_heads(model, {0: [4]}):
        pass


def test_head_ablation_effects_matches_single_ablations():
    model = sharp_model()
    x = torch.randint(0, 64, (2, 9))
    y = torch.randint(0, 64, (2, 9))
    effects = head_ablation_effects(model, x, y)
    assert effects.shape == (2, 4)
    with torch.no_grad(), ablate_heads(model, {1: [3]}):
        expected = lm_loss(model(x), y) - lm_loss(sharp_model()(x), y)
    assert effects[1, 3].item() == pytest.approx(expected.item(), abs=1e-6)
