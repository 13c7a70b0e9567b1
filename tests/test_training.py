"""Losses, schedule, optimizer groups, the training loop, recipes and the `course train` command."""

import argparse
import json
import math
import shlex
from dataclasses import asdict, replace
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F

from course import DecoderLM, EncoderDecoder, EncoderLM, ModelConfig
from course.cli import main
from course.data import make_task
from course.pretrained import load_card
from course.recipes import RECIPES, _recipes_from_args, add_arguments, build_model, setup, train_recipe
from course.training import (
    accuracy,
    clip_grad_norm,
    lm_loss,
    lr_at,
    make_optimizer,
    masked_cross_entropy,
    mlm_loss,
    train,
)


def manual_ce(logits, targets, mask):
    """Cross-entropy written out: -log softmax at the target, averaged over the kept positions."""
    logp = logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]
    return -(logp * mask).sum() / mask.sum()


@pytest.mark.parametrize("B,T,V", [(1, 1, 3), (2, 7, 11), (5, 13, 64)])
def test_lm_loss_matches_cross_entropy_written_out(B, T, V):
    logits, targets = torch.randn(B, T, V), torch.randint(0, V, (B, T))
    mask = torch.rand(B, T) < 0.6
    mask[0, 0] = True
    torch.testing.assert_close(
        lm_loss(logits, targets), F.cross_entropy(logits.reshape(-1, V), targets.flatten())
    )
    torch.testing.assert_close(
        lm_loss(logits, targets, mask), manual_ce(logits, targets, mask.float()), atol=1e-5, rtol=1e-5
    )
    # positions outside the loss mask do not matter at all
    noisy = logits.masked_fill(~mask[..., None], 1e4)
    torch.testing.assert_close(lm_loss(noisy, targets, mask), lm_loss(logits, targets, mask))


def test_loss_errors():
    logits, targets = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    with pytest.raises(ValueError, match=r"targets of shape \(2, 4\)"):
        lm_loss(logits, targets[:, :4])
    with pytest.raises(ValueError, match="loss_mask must be a bool"):
        lm_loss(logits, targets, torch.ones(2, 5))
    with pytest.raises(ValueError, match="no position"):
        lm_loss(logits, targets, torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B, T, vocab\)"):
        lm_loss(logits[0], targets[0])
    with pytest.raises(ValueError, match="loss_mask of hidden tokens"):
        mlm_loss(logits, targets, None)


def test_accuracy_counts_tokens_and_whole_rows():
    targets = torch.tensor([[1, 2, 3], [0, 1, 2]])
    logits = F.one_hot(torch.tensor([[1, 2, 0], [0, 1, 2]]), 4).float()  # one error, in row 0 position 2
    assert accuracy(logits, targets) == pytest.approx((5 / 6, 0.5))
    mask = torch.tensor([[True, True, False], [True, True, True]])  # the error is not scored
    assert accuracy(logits, targets, mask) == (1.0, 1.0)


@pytest.mark.parametrize("shape", [(), (7,), (2, 5), (2, 3, 4)])
def test_masked_cross_entropy_takes_any_leading_shape(shape):
    V = 5
    logits, targets = torch.randn(*shape, V), torch.randint(0, V, shape)
    mask = torch.rand(shape) < 0.5
    mask.view(-1)[0] = True
    flat = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none")
    torch.testing.assert_close(masked_cross_entropy(logits, targets), flat.mean())
    torch.testing.assert_close(masked_cross_entropy(logits, targets, mask), flat[mask.reshape(-1)].mean())
    with pytest.raises(ValueError, match="targets of shape"):
        masked_cross_entropy(logits, targets[..., None])
    with pytest.raises(ValueError, match="0-d"):
        masked_cross_entropy(torch.tensor(1.0), torch.tensor(0))


def test_masked_cross_entropy_is_fp32_for_half_logits():
    logits, targets = torch.randn(2, 3, 7).bfloat16(), torch.randint(0, 7, (2, 3))
    loss = masked_cross_entropy(logits, targets)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(logits.float().reshape(-1, 7), targets.flatten()))


@pytest.mark.parametrize("steps,warmup", [(100, 10), (37, 0), (10, 10), (5, 1)])
def test_lr_schedule_warms_up_from_zero_then_decays_to_min(steps, warmup):
    lr, min_lr = 1e-3, 1e-4
    lrs = [lr_at(s, steps, lr, warmup, min_lr) for s in range(steps + 1)]
    if warmup:
        assert lrs[0] == 0.0  # the first update only warms up AdamW's moments
        assert all(a < b for a, b in pairwise(lrs[: warmup + 1]))  # rising linearly ...
        assert lrs[1] == pytest.approx(lr / warmup)
    assert lrs[warmup] == pytest.approx(lr)  # ... to the peak at step == warmup, held for one step only
    if warmup < steps:
        assert lrs[warmup + 1] < lrs[warmup]
    after = lrs[warmup:]
    assert all(a >= b for a, b in pairwise(after))
    if steps > warmup and (steps - warmup) % 2 == 0:  # half way through the cosine: the mean of lr and min_lr
        assert lrs[warmup + (steps - warmup) // 2] == pytest.approx((lr + min_lr) / 2)
    if warmup < steps:
        assert lrs[steps] == pytest.approx(min_lr)
        assert lr_at(steps + 5, steps, lr, warmup, min_lr) == pytest.approx(min_lr)  # stays there
    assert all(0 <= v <= lr + 1e-12 for v in lrs) and all(v >= min_lr - 1e-12 for v in lrs[warmup:])


@pytest.mark.parametrize("steps,warmup", [(100, 10), (37, 0), (10, 10), (12, 1), (1, 0), (30, 7)])
@pytest.mark.parametrize("min_lr_ratio", [0.0, 0.1])
def test_lr_schedule_is_hugging_faces_cosine_with_warmup(steps, warmup, min_lr_ratio):
    """The lr each update uses equals what HF's LambdaLR gives an optimizer stepped in the usual order
    (optimizer.step(), then scheduler.step())."""
    transformers = pytest.importorskip("transformers")
    lr = 3e-3
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    if min_lr_ratio:
        sched = transformers.get_cosine_with_min_lr_schedule_with_warmup(
            opt, warmup, steps, min_lr_rate=min_lr_ratio
        )
    else:
        sched = transformers.get_cosine_schedule_with_warmup(opt, warmup, steps)
    hf = []
    for _ in range(steps):
        hf.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = [lr_at(s, steps, lr, warmup, lr * min_lr_ratio) for s in range(steps)]
    assert ours == pytest.approx(hf, rel=1e-12, abs=1e-15)


def test_train_uses_the_schedule_it_logs():
    _, _, log = small_run(steps=20, warmup=4)
    assert log.lrs == pytest.approx([lr_at(s, 20, 3e-3, 4, 3e-3 * 0.1) for s in range(20)], rel=1e-12)
    assert log.lrs[0] == 0.0 and log.lrs[4] == pytest.approx(3e-3) and max(log.lrs) == log.lrs[4]


def test_weight_decay_applies_to_matrices_only():
    model = DecoderLM(ModelConfig.from_preset("tiny"))
    decay, no_decay = make_optimizer(model, 1e-3, 0.1).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(set(ids)) == len(ids)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    # the no-decay rule: every bias and every norm gain, and nothing else
    assert no_decay_names == {n for n, p in model.named_parameters() if n.endswith("bias") or ".ln" in n}
    assert "transformer.blocks.0.ln1.weight" in no_decay_names and "transformer.ln_f.weight" in no_decay_names
    assert "transformer.blocks.0.attn.q_proj.bias" in no_decay_names
    assert {names[id(p)] for p in decay["params"]} >= {
        "transformer.tok_emb.weight",
        "transformer.pos_emb.weight",
    }


def test_make_optimizer_takes_parameters_and_eps():
    model = DecoderLM(ModelConfig.from_preset("tiny"))
    params = list(model.parameters())
    opt = make_optimizer(iter(params), 1e-3, weight_decay=0.05, betas=(0.8, 0.9), eps=1e-6)
    assert isinstance(opt, torch.optim.AdamW)
    assert all(g["eps"] == 1e-6 and g["betas"] == (0.8, 0.9) and g["lr"] == 1e-3 for g in opt.param_groups)
    assert [len(g["params"]) for g in opt.param_groups] == [
        sum(p.dim() >= 2 for p in params),
        sum(p.dim() < 2 for p in params),
    ]
    # a tied weight listed twice and a frozen tensor: kept once, and left out
    frozen = torch.zeros(3, 3)
    opt = make_optimizer([params[0], params[0], frozen], 1e-3)
    assert opt.param_groups[0]["params"] == [params[0]] and opt.param_groups[1]["params"] == []
    assert make_optimizer(model.transformer.ln_f.parameters(), 1e-3).param_groups[0]["params"] == []
    with pytest.raises(ValueError, match="no trainable parameters"):
        make_optimizer([frozen], 1e-3)
    with pytest.raises(TypeError, match="parameter groups"):
        make_optimizer([{"params": params}], 1e-3)


def test_make_optimizer_same_steps_as_plain_adamw_groups():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    ours = make_optimizer(a, 0.1, weight_decay=0.5, eps=1e-6)
    ref = torch.optim.AdamW(
        [{"params": [b.weight], "weight_decay": 0.5}, {"params": [b.bias], "weight_decay": 0.0}],
        lr=0.1,
        betas=(0.9, 0.95),
        eps=1e-6,
    )
    x = torch.randn(8, 4)
    for model, opt in ((a, ours), (b, ref)):
        for _ in range(3):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    torch.testing.assert_close(
        a.weight, b.weight, rtol=1e-6, atol=1e-7
    )  # fused kernel vs per-op: rounding only
    torch.testing.assert_close(a.bias, b.bias, rtol=1e-6, atol=1e-7)
    assert ours.defaults["fused"] == (tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 4))
    assert not make_optimizer(a, 0.1, fused=False).defaults["fused"]


@pytest.mark.parametrize("max_norm", [1e-3, 1.0, 1e6])
def test_clip_grad_norm_rescales_by_the_global_norm(max_norm):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 2))
    model(torch.randn(3, 5)).sum().backward()
    before = [p.grad.clone() for p in model.parameters()]
    total = math.sqrt(sum(g.pow(2).sum().item() for g in before))  # written out
    norm = clip_grad_norm(model, max_norm)
    assert isinstance(norm, float) and norm == pytest.approx(total, rel=1e-5)
    scale = min(1.0, max_norm / (total + 1e-6))
    for g0, p in zip(before, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g0 * scale)
    after = math.sqrt(sum(p.grad.pow(2).sum().item() for p in model.parameters()))
    assert after <= max_norm * (1 + 1e-5) or scale == 1.0


def test_clip_grad_norm_takes_parameters_and_skips_missing_grads():
    w, unused = torch.nn.Parameter(torch.tensor([3.0, 4.0])), torch.nn.Parameter(torch.ones(2))
    (w * torch.tensor([3.0, 4.0])).sum().backward()  # grad (3, 4): norm 5
    assert clip_grad_norm([w, unused], 1.0) == pytest.approx(5.0)
    torch.testing.assert_close(w.grad, torch.tensor([0.6, 0.8]), atol=1e-6, rtol=1e-6)
    assert unused.grad is None
    assert clip_grad_norm([unused], 1.0) == 0.0
    with pytest.raises(ValueError, match="max_norm=0"):
        clip_grad_norm([w], 0)


def small_run(seed=0, steps=30, **kwargs):
    task = make_task("copy", length=4, n_symbols=6)
    model = build_model(task, seed, d_model=32, n_heads=2)
    return model, task, train(model, task, steps, batch_size=16, seed=seed, progress=False, **kwargs)


def test_train_is_deterministic_and_learns():
    model_a, _, log_a = small_run()
    model_b, _, log_b = small_run()
    assert log_a.losses == log_b.losses
    assert all(
        torch.equal(a, b)
        for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True)
    )
    _, _, log_c = small_run(seed=1)
    assert log_c.losses != log_a.losses
    assert log_a.final_loss < 0.85 * log_a.losses[0]
    assert not model_a.training  # returned in eval mode
    assert len(log_a.lrs) == 30 and max(log_a.lrs) == pytest.approx(3e-3)


def test_callback_runs_every_n_steps_in_eval_mode():
    calls = []
    small_run(
        steps=23,
        callback=lambda step, loss, model: calls.append((step, loss, model.training)),
        callback_every=5,
    )
    assert [c[0] for c in calls] == [5, 10, 15, 20, 23]
    assert all(isinstance(loss, float) and not training for _, loss, training in calls)


def test_callback_returning_true_stops_training():
    calls = []

    def stop_at_10(step, loss, model):
        calls.append(step)
        return step >= 10

    model, _, log = small_run(steps=23, callback=stop_at_10, callback_every=5)
    assert calls == [5, 10] and len(log.losses) == 10 and len(log.lrs) == 10
    assert not model.training


def test_progress_bar_goes_to_stdout_and_is_silent_when_disabled(capfd):
    small_run(steps=3)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    task = make_task("copy", length=4, n_symbols=6)
    train(build_model(task, 0, d_model=32, n_heads=2), task, 3, 8, progress=True)
    out, err = capfd.readouterr()
    assert "train copy" in out and err == ""


def test_encoder_learns_masked_lm():
    task = make_task("copy", length=6, n_symbols=6)
    model = build_model(task, 0, EncoderLM, d_model=32, n_heads=2)
    log = train(model, task, 40, batch_size=32, progress=False)
    assert log.final_loss < 0.8 * log.losses[0]


def test_train_rejects_bad_arguments():
    task = make_task("copy", length=4, n_symbols=6)
    model = build_model(task, 0)
    with pytest.raises(ValueError, match="steps=0"):
        train(model, task, 0, progress=False)
    with pytest.raises(ValueError, match="lr=-1"):
        train(model, task, 5, lr=-1, progress=False)
    with pytest.raises(ValueError, match="warmup=9"):
        train(model, task, 5, warmup=9, progress=False)
    with pytest.raises(ValueError, match="EncoderDecoder"):
        train(EncoderDecoder(model.config), task, 2, progress=False)


def test_copy_recipe_reaches_the_shipped_card_accuracy():
    """Retrain the cheapest shipped recipe from its seed: it must reach the accuracy its card promises."""
    card = load_card("copy")
    recipe = RECIPES["copy"]
    assert card["steps"] == recipe.steps and card["seed"] == recipe.seed
    _, new_card = train_recipe(recipe, "copy", progress=False)
    assert new_card["token_accuracy"] >= card["min_accuracy"] == recipe.min_accuracy
    assert new_card["config"] == card["config"] and new_card["n_params"] == card["n_params"]


def test_setup_builds_a_recipe_untrained():
    model, task = setup("induction")
    assert task.args() == RECIPES["induction"].task_args
    assert model.config.positional == "rope" and model.config.vocab_size == task.vocab_size
    again, _ = setup(RECIPES["induction"])
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    )
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        setup("nope")


def parser():
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p


def test_course_train_writes_weights_and_a_reproducing_card(tmp_path, capsys):
    argv = [
        "train",
        "--task",
        "sort",
        "--length",
        "4",
        "--n-symbols",
        "6",
        "--steps",
        "30",
        "--batch-size",
        "16",
        "--set",
        "d_model=32",
        "--set",
        "n_heads=2",
        "--out",
        str(tmp_path),
        "--name",
        "mini",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "mini: loss" in capsys.readouterr().out
    card = json.loads((tmp_path / "mini.json").read_text())
    assert (tmp_path / "mini.safetensors").stat().st_size > 0
    assert card["task"] == {"name": "sort", "args": {"length": 4, "n_symbols": 6}}
    assert card["config"]["d_model"] == 32 and card["steps"] == 30 and card["seed"] == 0
    for key in ("final_train_loss", "eval_loss", "token_accuracy", "sequence_accuracy", "torch", "command"):
        assert key in card
    assert math.isfinite(card["eval_loss"])
    # the recorded command rebuilds the same recipe
    words = shlex.split(card["command"])
    assert words[:2] == ["course", "train"]
    ((name, recipe),) = _recipes_from_args(parser().parse_args(words[2:]))
    ((name0, recipe0),) = _recipes_from_args(parser().parse_args(argv[1:]))
    assert name == name0 == "mini" and asdict(recipe) == asdict(recipe0)


def test_recipe_commands_and_cli_errors(capsys):
    ((name, recipe),) = _recipes_from_args(parser().parse_args(["induction", "--steps", "7"]))
    assert name == "induction" and recipe == replace(RECIPES["induction"], steps=7)
    assert [n for n, _ in _recipes_from_args(parser().parse_args(["all"]))] == list(RECIPES)
    assert main(["train"]) == 2
    assert main(["train", "copy", "--task", "copy"]) == 2
    assert "either a recipe or --task" in capsys.readouterr().err
    assert main(["train", "--task", "copy", "--length", "1", "--no-progress"]) == 2
    assert "length=1 must be an integer >= 2" in capsys.readouterr().err
    # a custom model starts from its task's recipe: induction keeps RoPE unless told otherwise
    ((name, custom),) = _recipes_from_args(
        parser().parse_args(["--task", "induction", "--length", "6", "--set", "n_layers=3"])
    )
    assert custom.model == {**RECIPES["induction"].model, "n_layers": 3}
    assert custom.task_args == {**RECIPES["induction"].task_args, "length": 6}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        _recipes_from_args(parser().parse_args(["--task", "copy", "--set", "nonsense=3"]))


def test_norm_study_run_records_losses_and_gradients():
    from course.recipes import NormStudy, norm_study_run

    study = NormStudy(depths=(2,), steps=10, batch_size=8, grad_every=5)
    run = norm_study_run(2, "post", 0, study)
    assert len(run["losses"]) == 10 and run["grad_steps"] == [0, 5, 10]
    assert all(len(row) == 2 for row in run["grad_norms"])


def test_shipped_norm_study_shows_deep_post_ln_stalling_without_warmup():
    """The recorded curves chapter 5 reads (course train norm-study) hold the claims the chapter asserts."""
    from course.pretrained import load_curves

    study = load_curves("norm-study")
    runs = {(r["depth"], r["placement"], r["warmup"]): r for r in study["runs"]}
    assert len(runs) == 12 and study["command"].startswith("course train norm-study")
    assert all(r["token_accuracy"] > 0.99 for (d, p, w), r in runs.items() if p == "pre")
    assert runs[6, "post", 0]["token_accuracy"] < 0.2 and runs[6, "post", 100]["token_accuracy"] > 0.99
    assert all(len(r["losses"]) == study["study"]["steps"] for r in runs.values())
