"""Activation capture under TransformerLens names, and the samplers (statistically, not by RNG stream)."""

import pytest
import torch
from torch.testing import assert_close

from course import DecoderLM, EncoderDecoder, ModelConfig
from course.capture import run_with_cache
from course.generation import filter_logits, next_token_probs, sample_next


@pytest.mark.parametrize("positional", ["learned", "rope", "alibi"])
def test_run_with_cache_names_shapes_and_same_logits(positional):
    c = ModelConfig(
        vocab_size=30,
        context_length=16,
        d_model=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        positional=positional,
    )
    model = DecoderLM(c).eval()
    idx = torch.randint(0, 30, (2, 7))
    logits, cache = run_with_cache(model, idx)
    assert_close(logits, model(idx), rtol=1e-5, atol=1e-5)
    pattern = cache["blocks.1.attn.hook_pattern"]
    assert pattern.shape == (2, 4, 7, 7)
    assert torch.equal(cache["pattern", -1], pattern)
    assert_close(pattern.sum(-1), torch.ones(2, 4, 7))
    assert torch.all(pattern.triu(1) == 0)
    scores = cache["attn_scores", 0]
    future = ~torch.ones(7, 7, dtype=torch.bool).tril()
    assert torch.all(scores[..., future] == float("-inf")) and torch.isfinite(scores[..., ~future]).all()
    assert cache["blocks.0.attn.hook_q"].shape == (2, 7, 4, 8)
    assert cache["blocks.0.attn.hook_k"].shape == (2, 7, 2, 8)
    for name in (
        "hook_embed",
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_resid_mid",
        "blocks.1.hook_resid_post",
        "blocks.1.hook_attn_out",
        "blocks.1.hook_mlp_out",
        "blocks.0.attn.hook_z",
    ):
        assert name in cache
    # the residual stream adds the sub-layer updates (Pre-LN)
    assert_close(
        cache["blocks.0.hook_resid_mid"],
        cache["blocks.0.hook_resid_pre"] + cache["blocks.0.hook_attn_out"],
        rtol=1e-5,
        atol=1e-6,
    )
    assert cache.stack("pattern").shape == (2, 2, 4, 7, 7)
    if positional == "rope":
        assert "blocks.0.attn.hook_rot_q" in cache


def test_names_filter_and_hooks_removed():
    model = DecoderLM(ModelConfig(vocab_size=30, context_length=16, d_model=32, n_layers=2, n_heads=4))
    _, cache = run_with_cache(
        model, torch.randint(0, 30, (1, 5)), names_filter=lambda n: n.endswith("pattern")
    )
    assert sorted(cache) == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]
    assert not any(b.attn.hook_pattern.active for b in model.blocks)


def test_encoder_decoder_capture_prefixes_and_cross_pattern():
    model = EncoderDecoder(ModelConfig(vocab_size=30, context_length=16, d_model=32, n_layers=1, n_heads=4))
    from course.capture import recording

    with recording(model) as store:
        model(torch.randint(0, 30, (1, 6)), torch.randint(0, 30, (1, 4)))
    assert store["decoder.blocks.0.cross_attn.hook_pattern"].shape == (1, 4, 4, 6)
    assert store["encoder.blocks.0.attn.hook_pattern"].shape == (1, 4, 6, 6)


def test_top_k_and_top_p_filters():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    assert torch.isfinite(filter_logits(logits, top_k=2)).sum() == 2
    kept = torch.isfinite(filter_logits(logits, top_p=0.8)).squeeze().tolist()
    assert kept == [True, True, True, False, False]  # 0.5 + 0.2 < 0.8, adding 0.15 reaches it
    assert torch.isfinite(filter_logits(logits, top_p=0.01)).sum() == 1
    probs = next_token_probs(logits, temperature=1.0, top_k=2)
    assert_close(probs, torch.tensor([[5 / 7, 2 / 7, 0, 0, 0]]))
    hot, cold = next_token_probs(logits, 2.0), next_token_probs(logits, 0.5)
    assert hot.max() < 0.5 < cold.max()
    assert torch.equal(next_token_probs(logits, 0), torch.tensor([[1.0, 0, 0, 0, 0]]))


def test_sampling_frequencies_follow_the_distribution():
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1])).expand(20000, 3)
    gen = torch.Generator().manual_seed(1)
    draws = sample_next(logits, 1.0, generator=gen).squeeze(1)
    freq = torch.bincount(draws, minlength=3).float() / 20000
    assert_close(freq, torch.tensor([0.6, 0.3, 0.1]), atol=0.015, rtol=0)
    assert torch.equal(sample_next(logits[:3], 0), torch.zeros(3, 1, dtype=torch.long))


def test_seeded_generation_is_reproducible_and_sampler_errors():
    model = DecoderLM(ModelConfig(vocab_size=30, context_length=32, d_model=32, n_layers=1, n_heads=4)).eval()
    prompt = torch.randint(0, 30, (2, 3))
    a = model.generate(prompt, 10, temperature=1.0, top_k=5, seed=7)
    b = model.generate(prompt, 10, temperature=1.0, top_k=5, seed=7)
    assert torch.equal(a, b) and a.shape == (2, 13)
    with pytest.raises(ValueError, match="top_p=1.5"):
        filter_logits(torch.zeros(1, 3), top_p=1.5)
    with pytest.raises(ValueError, match="temperature=-1"):
        sample_next(torch.zeros(1, 3), -1)


def test_run_with_hooks_edits_activations_and_removes_its_hooks():
    """Zeroing head 2 of layer 1 in hook_z equals zeroing that head's columns of the output projection."""
    from course.capture import run_with_hooks

    torch.manual_seed(0)
    model = DecoderLM(ModelConfig(vocab_size=30, context_length=16, d_model=32, n_layers=2, n_heads=4)).eval()
    idx = torch.randint(0, 30, (2, 7))
    seen = {}

    def zero_head_2(z, hook):
        seen[hook.name] = z.shape
        return z.index_fill(2, torch.tensor([2]), 0.0)  # (B, T, H, d_head)

    edited = run_with_hooks(model, idx, fwd_hooks=[("blocks.1.attn.hook_z", zero_head_2)])
    assert seen == {"blocks.1.attn.hook_z": (2, 7, 4, 8)}
    assert not model.blocks[1].attn.hook_z.active
    with torch.no_grad():
        model.blocks[1].attn.o_proj.weight[:, 16:24] = 0.0  # head 2's d_head=8 input columns
        torch.testing.assert_close(edited, model(idx), atol=1e-6, rtol=1e-6)
    assert torch.equal(run_with_hooks(model, idx, [("hook_embed", lambda x, hook: None)]), model(idx))
    with pytest.raises(ValueError, match="blocks.9.attn.hook_z"):
        run_with_hooks(model, idx, [("blocks.9.attn.hook_z", zero_head_2)])
