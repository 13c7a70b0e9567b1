"""Tokenizers and synthetic tasks: the answers are checked with plain Python, independent of the tensor
code."""

import random

import pytest
import torch

from course.data import (
    BOS,
    MASK,
    SEP,
    SPECIALS,
    ByteTokenizer,
    CharTokenizer,
    InductionTask,
    as_generator,
    make_task,
    mask_tokens,
    repeated_tokens,
    tiled_repeats,
)

MAP_TASKS = {"copy": lambda s: list(s), "reverse": lambda s: s[::-1], "sort": sorted}


def test_byte_tokenizer_round_trips_any_text():
    rng = random.Random(0)
    tok = ByteTokenizer()
    for _ in range(20):
        text = "".join(
            chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x400, 0x4FF), 0x1F600]))
            for _ in range(rng.randrange(0, 30))
        )
        ids = tok.encode(text)
        assert ids.dtype == torch.long and ids.shape == (len(text.encode("utf-8")),)
        assert tok.vocab_size == 256 and all(0 <= i < 256 for i in ids.tolist())
        assert tok.decode(ids) == text
    with pytest.raises(ValueError, match="256"):
        tok.decode([65, 300])


def test_char_tokenizer_round_trip_and_errors():
    text = "the quick brown fox"
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == len(set(text))
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode(text).tolist()) == text
    with pytest.raises(ValueError, match=r"\['Z'\]"):
        tok.encode("Zoo")
    with pytest.raises(ValueError, match="distinct"):
        CharTokenizer("abca")
    with pytest.raises(ValueError, match=r"\[0, "):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(torch.zeros(2, 3, dtype=torch.long))


def test_tiled_repeats_repeat_a_row_of_distinct_ids_with_a_period_per_row():
    tokens, scored = tiled_repeats(200, 33, 50, min_period=4, generator=3)
    assert tokens.shape == scored.shape == (200, 33) and tokens.dtype == torch.long
    assert 0 <= tokens.min() and tokens.max() < 50
    periods = []
    for row, mask in zip(tokens.tolist(), scored.tolist(), strict=True):
        p = next(q for q in range(1, 34) if all(row[i] == row[i % q] for i in range(33)))  # smallest period
        assert len(set(row[:p])) == p  # distinct within one copy, so the period is exact
        assert mask == [i >= p for i in range(33)]  # scored from the second copy on
        periods.append(p)
    assert min(periods) == 4 and max(periods) == 16  # [min_period, length // 2], each row its own
    again, _ = tiled_repeats(200, 33, 50, min_period=4, generator=3)
    assert torch.equal(tokens, again)
    with pytest.raises(ValueError, match="min_period=1"):
        tiled_repeats(2, 32, 50, min_period=1)
    with pytest.raises(ValueError, match="n_symbols=8"):
        tiled_repeats(2, 32, 8)


@pytest.mark.parametrize("name", sorted(MAP_TASKS))
@pytest.mark.parametrize("length,n_symbols", [(3, 5), (8, 16), (11, 30)])
def test_map_tasks_shapes_shift_and_answers(name, length, n_symbols):
    task = make_task(name, length=length, n_symbols=n_symbols)
    B = 7
    x, y, loss_mask = task.batch(B, torch.Generator().manual_seed(length))
    T = 2 * length + 1
    assert x.shape == y.shape == loss_mask.shape == (B, T) and loss_mask.dtype == torch.bool
    assert task.seq_len == T + 1 and task.vocab_size == len(SPECIALS) + n_symbols
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
    assert int(torch.cat([x, y], 1).max()) < task.vocab_size
    for row in range(B):
        tokens = x[row].tolist() + [y[row, -1].item()]
        question, answer = tokens[1 : length + 1], tokens[length + 2 :]
        assert tokens[0] == BOS and tokens[length + 1] == SEP
        assert answer == MAP_TASKS[name](question)
        # exactly the answer tokens are scored: the targets under the loss mask are the answer
        assert y[row][loss_mask[row]].tolist() == answer
        text = task.tokenizer.decode(tokens)
        assert text[0] == "^" and text[length + 1] == "|" and len(text) == T + 1


@pytest.mark.parametrize("length,n_symbols,min_length", [(4, 5, 2), (8, 12, 4), (10, 30, 10)])
def test_induction_targets_follow_the_previous_occurrence(length, n_symbols, min_length):
    task = InductionTask(length, n_symbols, min_length)
    x, y, loss_mask = task.batch(64, 3)
    assert x.shape == (64, 2 * length)
    periods = set()
    for row in range(64):
        seq = x[row].tolist()
        scored = loss_mask[row].nonzero().flatten().tolist()
        assert scored, "every row scores part of its second copy"
        for t in scored:
            earlier = [j for j in range(t) if seq[j] == seq[t]]
            assert earlier, "a scored input token occurred before"
            assert y[row, t].item() == seq[earlier[-1] + 1]  # the token that followed it last time
        n = len(scored) + 1  # the first token of the second copy is not scored (unpredictable)
        periods.add(n)
        r = seq[len(seq) - 2 * n + 1 : len(seq) - n + 1]  # first copy (x lacks the final token)
        assert len(set(r)) == n
        assert seq[len(seq) - n + 1 :] + [y[row, -1].item()] == r
    assert min(periods) >= min_length and max(periods) <= length
    if min_length < length:
        assert len(periods) > 1, "the period varies across rows"


def test_batches_are_reproducible_from_the_generator():
    task = make_task("sort", length=6, n_symbols=9)
    a = task.batch(16, torch.Generator().manual_seed(5))
    b = task.batch(16, 5)  # an int seeds a generator the same way
    c = task.batch(16, 6)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


def test_repeated_tokens_and_probe():
    r = repeated_tokens(5, 6, 10, generator=1)
    assert r.shape == (5, 13) and (r[:, 0] == BOS).all()
    assert torch.equal(r[:, 1:7], r[:, 7:])
    assert all(len(set(row[1:7].tolist())) == 6 for row in r)
    assert repeated_tokens(2, 3, 3, generator=1, bos=None).shape == (2, 6)
    probe = InductionTask(8, 12).probe(4, 0)
    assert probe.shape == (4, InductionTask(8, 12).seq_len)
    with pytest.raises(ValueError, match="n_symbols >= 6"):
        repeated_tokens(2, 6, 5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"name": "copy", "length": 1, "n_symbols": 5}, "length=1"),
        ({"name": "copy", "length": 4, "n_symbols": 1}, "n_symbols=1"),
        ({"name": "sort", "length": 4, "n_symbols": 500}, "n_symbols=500"),
        ({"name": "zip", "length": 4, "n_symbols": 5}, "unknown task 'zip'"),
        ({"name": "induction", "length": 8, "n_symbols": 8}, "n_symbols=8 must exceed length=8"),
        ({"name": "induction", "length": 8, "n_symbols": 20, "min_length": 9}, "min_length=9"),
    ],
)
def test_bad_task_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_task(**kwargs)


def test_bad_batch_arguments():
    task = make_task("copy", length=4, n_symbols=6)
    with pytest.raises(ValueError, match="batch_size=0"):
        task.batch(0)
    with pytest.raises(ValueError, match="generator"):
        as_generator("seed")


def test_mask_tokens_hides_only_symbols_at_the_rate_asked():
    task = make_task("copy", length=16, n_symbols=20)
    tokens, _ = task.sequences(256, 0)
    inputs, targets, hidden = mask_tokens(tokens, 0.25, generator=1, split=None)
    assert torch.equal(targets, tokens)
    assert (inputs[hidden] == MASK).all() and torch.equal(inputs[~hidden], tokens[~hidden])
    assert not hidden[tokens < len(SPECIALS)].any()  # BOS / SEP never hidden
    assert hidden.any(-1).all()
    rate = hidden.sum() / (tokens >= len(SPECIALS)).sum()
    assert abs(rate - 0.25) < 0.03  # 8192 symbols: the binomial std is ~0.005
    with pytest.raises(ValueError, match="mask_prob=0"):
        mask_tokens(tokens, 0.0)
    with pytest.raises(ValueError, match="non-special"):
        mask_tokens(torch.full((2, 3), SEP), 0.5)
    with pytest.raises(ValueError, match="split"):
        mask_tokens(tokens, 0.5, split=(0.8, 0.1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_tokens_follows_berts_80_10_10_rule(seed):
    """Of the chosen tokens, 80 % become [MASK], 10 % a uniformly random symbol, 10 % stay: counted over ~50k
    chosen tokens, each share lands within 5 standard deviations (std <= 0.0018) of the documented rule."""
    task = make_task("copy", length=64, n_symbols=10)
    tokens, _ = task.sequences(2048, seed)
    inputs, targets, chosen = mask_tokens(tokens, generator=seed + 100, vocab_size=task.vocab_size)
    assert torch.equal(targets, tokens)
    assert torch.equal(inputs[~chosen], tokens[~chosen]), "tokens not chosen are never changed"
    assert not chosen[tokens < len(SPECIALS)].any()
    n = chosen.sum().item()
    rate = n / (tokens >= len(SPECIALS)).sum().item()
    assert abs(rate - 0.15) < 0.005, rate
    masked = (inputs == MASK) & chosen
    changed = (inputs != MASK) & (inputs != tokens) & chosen  # random draws that differ from the original
    same = (inputs == tokens) & chosen  # left unchanged, or a random draw that hit the original (1 in 10)
    share = lambda m: m.sum().item() / n
    tol = 5 * (0.8 * 0.2 / n) ** 0.5
    assert abs(share(masked) - 0.8) < tol, share(masked)
    assert abs(share(changed) - 0.1 * (1 - 1 / task.n_symbols)) < tol, share(changed)
    assert abs(share(same) - (0.1 + 0.1 / task.n_symbols)) < tol, share(same)
    random_ids = inputs[changed]
    assert ((random_ids >= len(SPECIALS)) & (random_ids < task.vocab_size)).all(), "random tokens are symbols"
    counts = torch.bincount(random_ids - len(SPECIALS), minlength=task.n_symbols).double()
    assert (counts / counts.mean() - 1).abs().max() < 0.25, (
        f"random symbols are not uniform: {counts.tolist()}"
    )


def test_mask_tokens_split_none_is_the_old_rule_and_split_is_configurable():
    task = make_task("copy", length=16, n_symbols=20)
    tokens, _ = task.sequences(64, 0)
    all_masked = mask_tokens(tokens, 0.3, generator=5, split=None)
    also = mask_tokens(tokens, 0.3, generator=5, split=(1, 0, 0))
    assert all(torch.equal(a, b) for a, b in zip(all_masked, also, strict=True))
    inputs, _, chosen = mask_tokens(tokens, 0.3, generator=5, split=(0, 0, 1))  # choose but never change
    assert torch.equal(inputs, tokens) and torch.equal(chosen, all_masked[2])
