"""Arbitrary token positions (`model(idx, pos=...)`, (T,) or (B, T)): left-padded batches and packed
sequences give what each sequence gives alone, and what Hugging Face gives with the same position_ids; cached
decoding of a left-padded batch follows the per-sequence runs. Tolerances: fp32 summation-order differences
(atol 1e-5)."""

import pytest
import torch
from torch.testing import assert_close

import course
from course import DecoderLM, KVCache, ModelConfig

SCHEMES = [
    ("tiny", {}),  # learned
    ("tiny-llama", {}),  # RoPE, GQA
    ("tiny", {"positional": "sinusoidal"}),
    ("tiny", {"positional": "alibi"}),
    ("tiny", {"positional": "relative"}),
]


def _model(preset, seed=0, **overrides):
    torch.manual_seed(seed)
    return DecoderLM(ModelConfig.from_preset(preset, **overrides)).eval()


def _left_padded(seqs, pad=0):
    """Rows padded on the left: ids (B, T), is_token (B, T), positions (B, T) counting real tokens from 0."""
    T = max(len(s) for s in seqs)
    ids = torch.tensor([[pad] * (T - len(s)) + s for s in seqs])
    is_token = torch.tensor([[False] * (T - len(s)) + [True] * len(s) for s in seqs])
    pos = (is_token.long().cumsum(1) - 1).clamp(min=0)
    return ids, is_token, pos


@pytest.mark.parametrize("preset,overrides", SCHEMES)
def test_left_padded_batch_equals_each_sequence_alone(preset, overrides):
    model = _model(preset, **overrides)
    seqs = [[5, 9, 2, 7, 1, 3], [8, 4], [6, 6, 1, 9]]
    ids, is_token, pos = _left_padded(seqs)
    with torch.no_grad():
        batch = model(ids, pos=pos, is_token=is_token)  # (B, T, V)
        for b, s in enumerate(seqs):
            alone = model(torch.tensor([s]))[0]  # (len, V)
            assert_close(batch[b, -len(s) :], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("preset,overrides", SCHEMES)
def test_shared_positions_equal_the_default_and_an_offset_run(preset, overrides):
    model = _model(preset, **overrides)
    idx = torch.randint(0, model.config.vocab_size, (2, 9))
    with torch.no_grad():
        assert_close(model(idx, pos=torch.arange(9)), model(idx))
        assert_close(model(idx, pos=torch.arange(9)[None].expand(2, 9)), model(idx))
        cache = KVCache.for_model(model, 2, 9)
        model(idx[:, :4], cache=cache)
        tail = model(idx[:, 4:], cache=cache)
    assert_close(tail, model(idx)[:, 4:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("preset,overrides", SCHEMES[:2])
def test_cached_decode_of_a_left_padded_batch_follows_each_sequence(preset, overrides):
    model = _model(preset, 3, **overrides)
    seqs = [[5, 9, 2, 7, 1], [8, 4, 3]]
    ids, is_token, pos = _left_padded(seqs)
    n = 6
    B, T = ids.shape
    cache = KVCache.for_model(model, B, T + n)
    with torch.no_grad():
        logits = model(ids, pos=pos, is_token=is_token, cache=cache, last_only=True)[:, -1]
        out = []
        for _ in range(n):
            nxt = logits.argmax(-1, keepdim=True)  # (B, 1)
            out.append(nxt)
            is_token = torch.cat((is_token, torch.ones(B, 1, dtype=torch.bool)), 1)
            pos = pos[:, -1:] + 1
            logits = model(nxt, pos=pos, is_token=is_token, cache=cache, last_only=True)[:, -1]
    batched = torch.cat(out, 1)
    for b, s in enumerate(seqs):
        alone = model.generate(torch.tensor([s]), n, temperature=0)[0, len(s) :]
        assert torch.equal(batched[b], alone), f"row {b}"


transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


def _hf_pair(kind):
    from tests.test_interop import gpt2, llama

    torch.manual_seed(0)
    hf = gpt2() if kind == "gpt2" else llama(2)
    return hf, course.from_hf(hf).eval()


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_position_ids_match_hugging_face(kind):
    """Packed sequences (positions restart at each document) and left-padded rows, as HF's position_ids."""
    hf, ours = _hf_pair(kind)
    idx = torch.randint(0, 97, (2, 10))
    packed = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 0, 1, 2], [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]])
    with torch.no_grad():
        assert_close(ours(idx, pos=packed), hf(idx, position_ids=packed).logits, atol=1e-5, rtol=1e-5)
        ids, is_token, pos = _left_padded([[5, 9, 2, 7, 1, 3], [8, 4, 6]])
        theirs = hf(ids, attention_mask=is_token.long(), position_ids=pos).logits
        mine = ours(ids, pos=pos, is_token=is_token)
    real = is_token[..., None].expand_as(mine)  # HF's padded rows hold unspecified values
    assert_close(mine[real], theirs[real], atol=1e-5, rtol=1e-5)


def test_packed_documents_first_equals_alone():
    """Packed without a document mask, the first document cannot see the next one (causality), so its logits
    are the document's own; the second document's positions restart at 0."""
    model = _model("tiny-llama", 1)
    a, b = torch.tensor([[4, 7, 1, 9]]), torch.tensor([[3, 8, 2]])
    pos = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    with torch.no_grad():
        packed = model(torch.cat((a, b), 1), pos=pos)
        assert_close(packed[:, :4], model(a), atol=1e-5, rtol=1e-5)
