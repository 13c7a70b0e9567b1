"""The shipped models: they load, do their task (measured now, on fresh data) and the induction model has
an induction head. Card figures are checked against fresh measurements, never copied into the test."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from course import DecoderLM
from course.data import BOS, SEP
from course.diagnostics import ablate_heads, head_ablation_effects, induction_scores, previous_token_scores
from course.pretrained import WEIGHTS_DIR, available, load, load_card, task_for
from course.recipes import save
from course.training import evaluate, lm_loss

SHIPPED = ["copy", "induction", "reverse", "sort"]


def test_shipped_models_are_listed_and_small():
    assert set(SHIPPED) <= set(available())
    total = sum(p.stat().st_size for p in WEIGHTS_DIR.iterdir())
    assert total < 10 * 2**20, f"shipped weights take {total} bytes"  # the text model takes about 4.3 MB


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_does_its_task(name):
    model, card = load(name)
    assert isinstance(model, DecoderLM) and not model.training
    assert card["name"] == name and card["n_params"] == sum(p.numel() for p in model.parameters())
    assert model.config.to_dict() == card["config"]
    for key in (
        "task",
        "steps",
        "seed",
        "final_train_loss",
        "eval_loss",
        "token_accuracy",
        "command",
        "torch",
    ):
        assert key in card
    assert card["command"].startswith(f"course train {name} ")
    task = task_for(card)
    fresh = evaluate(model, task, batch_size=256, generator=12345)  # not the card's evaluation batch
    assert fresh["token_accuracy"] >= card["min_accuracy"]
    assert card["token_accuracy"] >= card["min_accuracy"]


@pytest.mark.parametrize(
    "name,answer", [("copy", lambda s: s), ("reverse", lambda s: s[::-1]), ("sort", sorted)]
)
def test_generation_completes_the_answer(name, answer):
    model, card = load(name)
    task = task_for(card)
    n = task.length
    tokens, _ = task.sequences(16, 99)
    prompt = tokens[:, : n + 2]  # ^ s |
    assert (prompt[:, 0] == BOS).all() and (prompt[:, -1] == SEP).all()
    out = model.generate(prompt, n, temperature=0)
    right = [out[i, n + 2 :].tolist() == answer(prompt[i, 1 : n + 1].tolist()) for i in range(16)]
    assert sum(right) >= 15


def test_induction_model_has_an_induction_head():
    model, card = load("induction")
    task = task_for(card)
    probe = task.probe(64, generator=777)  # fresh `^ r r` sequences
    scores = induction_scores(model, probe, task.length)
    layer, head = divmod(int(scores.argmax()), scores.shape[1])
    assert scores[layer, head] > 0.8
    assert [layer, head] == card["induction_head"]
    assert abs(scores[layer, head].item() - card["induction_score"]) < 0.05
    assert layer > 0, "an induction head needs an earlier layer to have written the previous token"
    prev = previous_token_scores(model, probe)
    p_layer, p_head = divmod(int(prev[:layer].argmax()), prev.shape[1])
    assert prev[p_layer, p_head] > 0.5  # a previous-token head in an earlier layer feeds it
    # the circuit is causal for the task: without the previous-token head, or without the induction layer's
    # heads, the scored predictions fail (loss up by more than a nat); other heads of that layer barely matter
    x, y, mask = task.batch(128, 5)
    with torch.no_grad():
        base = lm_loss(model(x), y, mask)
        effects = head_ablation_effects(model, x, y, mask)
        with ablate_heads(model, {layer: list(range(scores.shape[1]))}):
            without_layer = lm_loss(model(x), y, mask)
    assert effects.argmax().item() == p_layer * effects.shape[1] + p_head and effects[p_layer, p_head] > 1.0
    assert without_layer - base > 1.0
    with ablate_heads(model, {layer: [head]}):
        ablated = induction_scores(model, probe, task.length)[layer, head]
    assert ablated.item() == pytest.approx(scores[layer, head].item())  # ablation acts after the pattern


def test_save_and_load_round_trip(tmp_path):
    model, card = load("copy")
    save(model, card, tmp_path, "again")
    again, again_card = load("again", tmp_path)
    assert again_card == card
    idx = torch.randint(0, model.config.vocab_size, (3, 10))
    torch.testing.assert_close(again(idx), model(idx), atol=0, rtol=0)
    assert available(tmp_path) == ["again"]
    save(again, card, tmp_path, "twice")  # same weights, same bytes (no unordered metadata in the file)
    assert (tmp_path / "twice.safetensors").read_bytes() == (tmp_path / "again.safetensors").read_bytes()


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="no trained model 'nope'"):
        load("nope")
    card = load_card("copy")
    (tmp_path / "odd.json").write_text(json.dumps({**card, "model": "Mystery"}))
    (tmp_path / "odd.safetensors").write_bytes((WEIGHTS_DIR / "copy.safetensors").read_bytes())
    with pytest.raises(ValueError, match="Mystery"):
        load("odd", tmp_path)
    (tmp_path / "swapped.json").write_text(json.dumps(load_card("sort")))  # sort's card, copy's weights
    (tmp_path / "swapped.safetensors").write_bytes((WEIGHTS_DIR / "copy.safetensors").read_bytes())
    with pytest.raises(ValueError, match="does not fit"):
        load("swapped", tmp_path)
    state = load_file(WEIGHTS_DIR / "copy.safetensors")
    del state["transformer.blocks.1.mlp.up.bias"]
    save_file(state, tmp_path / "partial.safetensors")
    (tmp_path / "partial.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"mismatched tensors \['transformer.blocks.1.mlp.up.bias'\]"):
        load("partial", tmp_path)
