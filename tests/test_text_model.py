"""The text model: corpus split, byte-level BPE, the shipped GPT's card against fresh measurements, the
reproducible `course train text`, the explorer's default, and `gpt2()` offline (no download, ever)."""

import functools
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course import DecoderLM
from course.cli import main
from course.corpus import TokenStream, chunks, corpus_info, corpus_text, split
from course.diagnostics import induction_scores, previous_token_scores
from course.pretrained import WEIGHTS_DIR, load, load_tokenizer
from course.text_model import CURVE_WINDOWS, heldout_loss, ngram_baselines
from course.tokenizer import BPETokenizer, merge, word_pieces


@functools.lru_cache(maxsize=1)
def _shipped_tokenizer():
    return load_tokenizer("text")


@pytest.fixture(scope="module")
def shipped():
    """(model, card, tokenizer, train ids, held-out ids) of the shipped text model, ids made fresh here."""
    model, card = load("text")
    tokenizer = load_tokenizer("text")
    train_text, held_text = split(corpus_text())
    return model, card, tokenizer, tokenizer.encode(train_text), tokenizer.encode(held_text)


# ----------------------------------------------------------------------------- corpus


def test_split_is_deterministic_disjoint_and_about_a_tenth():
    text = corpus_text()
    assert len(text) > 300_000 and "statement" in text
    paragraphs = text.split("\n\n")[:-1]
    assert len(set(paragraphs)) == len(paragraphs)  # repeated passages dropped
    train, held = split(text)
    assert (train, held) == split(corpus_text())
    parts = chunks(text)
    assert all(len(p) >= 2000 for p in parts[:-1])
    assert train == "".join(p for i, p in enumerate(parts) if i % 10 != 9)
    assert held == "".join(p for i, p in enumerate(parts) if i % 10 == 9)
    assert 0.07 < len(held) / len(text) < 0.13
    assert held[:500] not in train  # held-out chunks are not copies of training text
    with pytest.raises(ValueError, match="held_out_every=1"):
        split(text, held_out_every=1)


def test_token_stream_windows_and_batches():
    ids = torch.arange(50)
    stream = TokenStream(ids, context=8)
    x, y = stream.windows()  # (6, 8): 6 * 8 + 1 <= 50
    assert x.shape == y.shape == (6, 8) and torch.equal(y, x + 1) and x[1, 0] == 8
    xb, yb, mask = stream.batch(4, 0)
    assert xb.shape == (4, 8) and torch.equal(yb, xb + 1) and mask.all()
    assert torch.equal(stream.batch(4, 0)[0], xb)  # seeded
    with pytest.raises(ValueError, match="context=64"):
        TokenStream(ids, context=64)


# ----------------------------------------------------------------------------- tokenizer


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_shipped_tokenizer_round_trips_any_string(text):
    tokenizer = _shipped_tokenizer()
    ids = tokenizer.encode(text)
    assert ids.dtype == torch.long and ids.dim() == 1
    assert tokenizer.decode(ids) == text
    if text.isascii():  # a non-ASCII character may be cut between two tokens' pieces
        assert "".join(tokenizer.pieces(text)) == text


def test_bpe_learns_the_frequent_pairs_first(tmp_path):
    tok = BPETokenizer.train("low low low lower lowest newer wider", vocab_size=260)
    assert (
        tok.vocab[256] == b"lo" and tok.vocab[257] == b"low"
    )  # 'l o' is the most frequent pair, then 'lo w'
    assert [tok.vocab[i] for i in (258, 259)] == [b" low", b"er"]
    assert tok.pieces(" lowest") == [" low", "e", "s", "t"] and tok.pieces("lowered") == [
        "low",
        "er",
        "e",
        "d",
    ]
    assert tok.decode(tok.encode("lowered lowly ñ 日本")) == "lowered lowly ñ 日本"
    assert merge([1, 2, 1, 2, 2], (1, 2), 9) == [9, 9, 2]
    tok.save(tmp_path / "t.json")
    again = BPETokenizer.load(tmp_path / "t.json")
    assert again.vocab == tok.vocab
    with pytest.raises(ValueError, match="vocab_size=100"):
        BPETokenizer.train("abc", vocab_size=100)
    with pytest.raises(ValueError, match=r"\[300\]"):
        tok.decode([300])


def test_shipped_tokenizer_is_a_real_bpe(shipped):
    _, card, tokenizer, train_ids, _ = shipped
    assert tokenizer.vocab_size == card["tokenizer"]["vocab_size"] == card["config"]["vocab_size"] == 2048
    assert (WEIGHTS_DIR / card["tokenizer"]["file"]).exists()
    assert word_pieces(tokenizer, ["statement"]) == {
        "statement": [" statement"]
    }  # a frequent word is one token
    assert len(tokenizer.pieces(" unconditionally")) > 1  # a rare one splits into pieces
    assert card["tokenizer"]["demo"] == word_pieces(tokenizer, card["tokenizer"]["demo"])
    text_bytes = len(tokenizer.decode(train_ids).encode())
    assert text_bytes / train_ids.numel() > 3  # BPE compresses: over 3 bytes per token on this corpus


# ----------------------------------------------------------------------------- the shipped model


def test_shipped_text_model_card_matches_its_weights(shipped):
    model, card, tokenizer, train_ids, held_ids = shipped
    assert isinstance(model, DecoderLM) and model.config.to_dict() == card["config"]
    assert card["n_params"] == sum(p.numel() for p in model.parameters())
    step, _, card_slice = card["curve"]["rows"][
        -1
    ]  # held-out loss on the first CURVE_WINDOWS, after training
    assert step == card["steps"]
    fresh = heldout_loss(model, held_ids, tokenizer, max_windows=CURVE_WINDOWS)  # recomputed from the weights
    if corpus_info()["sha256"] == card["corpus"]["sha256"]:  # another Python's stdlib has other docstrings
        assert fresh["loss"] == pytest.approx(card_slice, abs=2e-4)  # the card rounds to 4 decimals
    assert (
        abs(fresh["loss"] - card["held_out"]["loss"]) < 0.3
    )  # the slice is typical of the whole held-out text
    base = ngram_baselines(
        train_ids, held_ids, tokenizer, context=model.config.context_length, max_windows=CURVE_WINDOWS
    )  # the same target tokens
    assert fresh["loss"] < base["bigram"]["loss"] - 0.3 and base["bigram"]["loss"] < base["unigram"]["loss"]
    held, baselines = card["held_out"], card["baselines"]
    assert held["loss"] < baselines["bigram"]["loss"] < baselines["unigram"]["loss"]
    for figures in (held, baselines["bigram"], baselines["unigram"]):  # bits per byte follow from the loss
        ratio = held["tokens"] / held["bytes"] / math.log(2)
        assert figures["bits_per_byte"] == pytest.approx(figures["loss"] * ratio, abs=2e-3)
    assert card["train_cpu_seconds"] <= 12 * 60 and card["tokens_per_second"] > 0  # wall time depends on load
    assert card["command"].startswith("course train text ") and "--threads 1" in card["command"]
    total = sum(
        (WEIGHTS_DIR / f).stat().st_size for f in ("text.safetensors", "text.json", "text.tokenizer.json")
    )
    assert total < 10 * 2**20


def test_shipped_text_model_has_the_heads_its_card_states(shipped):
    """Head figures of the card, measured again on other held-out windows and other random sequences."""
    from course.data import repeated_tokens
    from course.diagnostics import attention_entropy

    model, card, _, _, held_ids = shipped
    heads = card["heads"]
    text = TokenStream(held_ids, model.config.context_length).windows()[0][-16:]  # not the card's windows
    prev = previous_token_scores(model, text)  # (L, H)
    assert list(divmod(int(prev.argmax()), prev.shape[1])) == heads["previous_token"]["head"]
    assert prev.max().item() == pytest.approx(heads["previous_token"]["score"], abs=0.05)
    assert prev.max() > 3 * prev.median()  # one head stands out
    ind = heads["induction"]
    V = model.config.vocab_size
    per_period = torch.stack(
        [
            induction_scores(model, repeated_tokens(16, p, V, generator=123, offset=0, bos=None), p)
            for p in ind["periods"]
        ]
    )  # (P, L, H), on other random sequences than the card's
    assert per_period.amin(0).max().item() == pytest.approx(ind["score"], abs=0.05)
    assert per_period.amax(dim=(1, 2)).tolist() == pytest.approx(ind["best_per_period"], abs=0.05)
    entropy = attention_entropy(model, text)  # (L, H) nats
    spread = heads["attention_entropy"]
    assert entropy.min().item() == pytest.approx(spread["min"], abs=0.3)
    assert entropy.max().item() == pytest.approx(spread["max"], abs=0.3)
    assert spread["min"] < spread["max"] - 1.0 <= spread["uniform"] - 1.0  # sharp and diffuse heads
    # the circuit: a previous-token head, then an induction head in a later layer that reads it
    assert ind["score"] > 0.5 and heads["previous_token"]["head"][0] < ind["head"][0]
    assert ind["loss_second_copy"] < 0.1 * ind["loss_first_copy"]


def test_text_batches_keep_the_stated_share_of_repeat_rows():
    """TextWithRepeats: each row is a contiguous text window, all scored, or a tiled repeat, scored from its
    second copy; about `fraction` of them are repeats."""
    from course.text_model import TextWithRepeats

    ids = torch.arange(5000) % 997  # text whose windows are never periodic with a period <= 32
    x, y, scored = TextWithRepeats(ids, 64, 2048, fraction=0.25).batch(800, generator=0)
    assert x.shape == y.shape == scored.shape == (800, 64) and torch.equal(x[:, 1:], y[:, :-1])
    text = (y - x == 1) | (x == 996)  # consecutive ids: a window of `ids`
    is_text = text.all(1)
    assert scored[is_text].all()
    repeats = ~is_text
    assert 0.2 < repeats.float().mean() < 0.3
    for row, mask in zip(torch.cat([x, y[:, -1:]], 1)[repeats], scored[repeats], strict=True):
        p = next(q for q in range(4, 33) if torch.equal(row[q:], row[:-q]))
        assert torch.equal(mask, torch.arange(1, 65) >= p)  # targets y[t] = token t + 1, scored from copy two


def test_the_induction_probe_is_not_fooled_by_a_fixed_look_back(monkeypatch):
    """Head 0 looks back a fixed context/2 - 1 positions (what a model trained on repeats of one period
    learns); head 1 attends to the token after the previous occurrence of the current one (an induction
    head). Both score 1 at period context/2; the card's score, each head's lowest over the periods, is the
    induction head's alone."""
    import course.diagnostics as diagnostics
    from course.config import ModelConfig
    from course.text_model import head_properties, induction_periods

    config = ModelConfig.from_preset(
        "tiny", vocab_size=512, context_length=64, n_layers=1, n_heads=2, d_model=16
    )
    look_back = config.context_length // 2 - 1

    def patterns(model, idx):  # (L=1, B, H=2, T, T), one key per query
        B, T = idx.shape
        A = torch.zeros(1, B, 2, T, T)
        for b in range(B):
            for i in range(T):
                A[0, b, 0, i, i - look_back if i >= look_back else 0] = 1
                earlier = [j for j in range(i) if idx[b, j] == idx[b, i]]
                A[0, b, 1, i, earlier[-1] + 1 if earlier else 0] = 1
        return A

    monkeypatch.setattr(diagnostics, "_patterns", patterns)
    held = torch.randint(0, 512, (64 * 20,), generator=torch.Generator().manual_seed(0))
    ind = head_properties(DecoderLM(config), held, n_windows=4)["induction"]
    assert ind["periods"] == induction_periods(64) == [8, 16, 32]
    assert ind["best_per_period"][-1] == 1.0  # at period 32 both heads score 1
    assert ind["scores"][0][0] < 0.1 and ind["scores"][0][1] == 1.0 and ind["head"] == [0, 1]


def test_samples_in_the_card_are_reproducible(shipped):
    from course.text_model import sample_texts

    model, card, tokenizer, _, _ = shipped
    first = card["samples"][0]
    again = sample_texts(model, tokenizer, seed=first["seed"], prompts=[first["prompt"]])[0]
    assert again == first and len(again["text"]) > 40


# ----------------------------------------------------------------------------- course train text

TINY = [
    "train",
    "text",
    "--steps",
    "3",
    "--batch-size",
    "2",
    "--vocab-size",
    "262",
    "--set",
    "n_layers=1",
    "--set",
    "d_model=16",
    "--set",
    "n_heads=2",
    "--set",
    "context_length=16",
    "--warmup",
    "2x2x8,1x2x16",
    "--no-progress",
]


def test_course_train_text_is_bit_reproducible(tmp_path, capsys):
    for run in ("a", "b"):
        assert main([*TINY, "--seed", "0", "--threads", "1", "--out", str(tmp_path / run)]) == 0
    assert "held-out loss" in capsys.readouterr().out
    for name in ("text.safetensors", "text.tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    card = json.loads((tmp_path / "a" / "text.json").read_text())
    assert card["config"]["n_layers"] == 1 and card["tokenizer"]["vocab_size"] == 262
    assert math.isfinite(card["held_out"]["loss"]) and card["steps"] == 3
    assert [(s["steps"], s["batch_size"], s["length"]) for s in card["warmup"]["stages"]] == [
        (2, 2, 8),
        (1, 2, 16),
    ]
    assert card["tokens_seen"] == 2 * 2 * 8 + 1 * 2 * 16 + 3 * 2 * 16
    assert "--warmup 2x2x8,1x2x16" in card["command"]
    model, _ = load("text", tmp_path / "a")
    assert model.config.d_model == 16
    assert main([*TINY, "--seed", "1", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "text.safetensors").read_bytes() != (
        tmp_path / "a" / "text.safetensors"
    ).read_bytes()


def test_course_train_text_rejects_task_options(capsys):
    assert main(["train", "text", "--length", "4", "--no-progress"]) == 2
    assert "--length apply to the synthetic tasks" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["900x64", "0x2x8", "ax2x8", "", "8x2x32"])
def test_course_train_text_rejects_a_bad_warmup(bad, tmp_path, capsys):
    """A malformed stage, or rows longer than the context (32 > 16), exit 2 naming the value."""
    args = [*TINY[: TINY.index("--warmup")], "--warmup", bad, "--no-progress", "--out", str(tmp_path)]
    assert main(args) == 2
    out = capsys.readouterr().out
    assert "--warmup" in out or "exceed the context of 16" in out
    assert not (tmp_path / "text.safetensors").exists()


# ----------------------------------------------------------------------------- explorer default


def test_explore_defaults_to_the_text_model_on_english():
    from course.viz.app import DEFAULT_MODEL, app_notebook, load_prompt

    assert DEFAULT_MODEL == "text"
    model, card, ids, labels = load_prompt()
    assert card["name"] == "text" and ids.dim() == 1 and len(labels) == len(ids) > 10
    assert "".join(labels).startswith("When an exception") and " exception" in labels
    with torch.no_grad():
        assert model(ids[None]).shape == (1, len(ids), model.config.vocab_size)
    _, _, _, labels2 = load_prompt("text", "The statement")
    assert labels2 == ["The", " statement"]
    _, _, _, labels3 = load_prompt("copy", "^abc|abc")  # the synthetic models stay selectable
    assert labels3 == list("^abc|abc")
    with pytest.raises(ValueError, match="tokens; the text model reads"):
        load_prompt("text", "word " * 200)
    assert "explorer('text', None)" in app_notebook("text", None).cells[1].source


def test_explorer_and_export_default_to_the_text_model():
    from course.viz.app import explorer
    from course.viz.export import page_html

    view = explorer().attention
    assert (view.n_layers, view.n_heads) == (4, 4) and view.q_labels[:3] == ["When", " an", " exception"]
    assert "The text model" in page_html()


# ----------------------------------------------------------------------------- GPT-2, offline


def _tiny_hf_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=300, n_positions=32, n_embd=32, n_layer=2, n_head=2)).eval()


class _FakeHFTokenizer:
    def __init__(self):
        self.bpe = load_tokenizer("text")

    def __len__(self):
        return 300

    def encode(self, text):
        return [i % 300 for i in self.bpe.encode(text).tolist()]

    def decode(self, ids):
        return " ".join(map(str, ids))


def test_gpt2_goes_through_from_pretrained_and_from_hf(monkeypatch):
    transformers = pytest.importorskip("transformers")
    from course import pretrained

    hf = _tiny_hf_gpt2()
    calls = []
    monkeypatch.setattr(pretrained, "hub_reachable", lambda **kw: True)
    monkeypatch.setattr(
        transformers.GPT2LMHeadModel,
        "from_pretrained",
        classmethod(lambda cls, name, **kw: calls.append((name, kw)) or hf),
    )
    monkeypatch.setattr(
        transformers.AutoTokenizer,
        "from_pretrained",
        classmethod(lambda cls, name, **kw: calls.append((name, kw)) or _FakeHFTokenizer()),
    )
    lm = pretrained.gpt2()
    assert lm.name == "gpt2" and calls == [("gpt2", {"local_files_only": False})] * 2
    ids = lm.tokenizer.encode("The if statement")[None]  # (1, T)
    with torch.no_grad():
        torch.testing.assert_close(lm.model(ids), hf(ids).logits, atol=1e-5, rtol=1e-4)


def test_gpt2_falls_back_to_the_text_model_offline(monkeypatch, capsys):
    transformers = pytest.importorskip("transformers")
    from course import pretrained

    def offline(cls, name, *, local_files_only):
        assert local_files_only, "an unreachable hub must not be retried for a minute"
        raise OSError(f"We couldn't connect to 'https://huggingface.co' to load the files of {name}.")

    monkeypatch.setattr(pretrained, "hub_reachable", lambda **kw: False)
    monkeypatch.setattr(transformers.GPT2LMHeadModel, "from_pretrained", classmethod(offline))
    lm = pretrained.gpt2()
    out = capsys.readouterr().out
    assert lm.name == "text" and isinstance(lm.model, DecoderLM)
    assert "could not load 'gpt2'" in out and "unreachable" in out and "OSError: We couldn't connect" in out
    assert "offline text model" in out
    assert lm.tokenizer.decode(lm.tokenizer.encode("an offline model")) == "an offline model"


def test_text_and_synthetic_models_say_what_they_lack():
    from course.pretrained import load_card, task_for

    with pytest.raises(ValueError, match="trained on real text"):
        task_for(load_card("text"))
    with pytest.raises(ValueError, match="'copy' has no tokenizer"):
        load_tokenizer("copy")
