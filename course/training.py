"""Training: AdamW with warm-up + cosine decay, gradient clipping, the loop, and the `course train` command.

make_optimizer  AdamW; weight decay on matrices only (never on 1-D parameters: biases, norm gains)
lr_at           linear warm-up from 0, then cosine decay — Hugging Face's cosine schedule with warm-up
clip_grad_norm  rescale all gradients together so that their global L2 norm is at most max_norm
train     the loop; bf16 autocast on CUDA only; a tqdm bar on stdout; callback(step, loss, model) every N steps
          (returning True stops early)
          Under `torchrun --nproc_per_node N`: DistributedDataParallel (gloo on the CPU, nccl on CUDA); every
          rank draws the same global batch and trains on its 1/N of the rows, the loss weighted so that the
          gradient is the one-process gradient of the global batch; only rank 0 writes (`course train`)
RECIPES   the small models shipped in `course/weights/` (`course train copy --out course/weights`);
          `setup("induction")` gives a recipe's untrained (model, task)
norm_study  chapter 5's Pre-LN vs Post-LN runs at growing depth, with and without warm-up; shipped as
          recorded curves, `course/weights/norm-study.json` (`course train norm-study --out course/weights`)
text      `course train text`: a small GPT on real English (`course.text_model`), with its BPE tokenizer
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from .config import ModelConfig
from .costs import measured_params
from .data import Task, as_generator, make_task, mask_tokens
from .losses import accuracy, lm_loss, masked_cross_entropy, mlm_loss
from .models import DecoderLM, EncoderLM

__all__ = [
    "lm_loss",
    "mlm_loss",
    "masked_cross_entropy",
    "accuracy",  # re-exported from course.losses
    "evaluate",
    "make_optimizer",
    "lr_at",
    "clip_grad_norm",
    "train",
    "TrainLog",
    "Recipe",
    "RECIPES",
    "build_model",
    "setup",
    "train_recipe",
    "make_card",
    "save",
]

# ----------------------------------------------------------------------------- evaluation


def _batch(model, task: Task, batch_size: int, generator):
    """(inputs, targets, loss_mask, loss function) of one batch, on the CPU: next-token for decoders, MLM for
    encoders."""
    if isinstance(model, EncoderLM):
        tokens, _ = task.sequences(batch_size, generator)
        return (*mask_tokens(tokens, generator=generator, vocab_size=task.vocab_size), mlm_loss)
    if isinstance(model, DecoderLM):
        return (*task.batch(batch_size, generator), lm_loss)
    raise ValueError(f"train() takes a DecoderLM or an EncoderLM, got {type(model).__name__}")


@torch.no_grad()
def evaluate(model, task: Task, batch_size: int = 512, generator=0) -> dict:
    """Loss and accuracies on a fresh batch (seeded by `generator`), model in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x, y, mask, loss_fn = _batch(model, task, batch_size, as_generator(generator))
    logits, y, mask = model(x.to(device)), y.to(device), mask.to(device)
    token, sequence = accuracy(logits, y, mask)
    model.train(was_training)
    return {"loss": loss_fn(logits, y, mask).item(), "token_accuracy": token, "sequence_accuracy": sequence}


# ----------------------------------------------------------------------------- data parallel (torchrun)


def ranks() -> tuple[int, int]:
    """(rank, world size) of this process under torchrun (its RANK, WORLD_SIZE); (0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _data_parallel(model) -> torch.nn.Module:
    """Join torchrun's process group (nccl for a model on CUDA, which must sit on cuda:LOCAL_RANK; gloo on
    the CPU) and wrap `model` in DistributedDataParallel, which averages the gradients over the ranks in
    backward."""
    import torch.distributed as dist

    device = next(model.parameters()).device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None
    )


def _summed(value: torch.Tensor, world: int) -> float:
    """`value` summed over the ranks (itself on one process)."""
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(value)
    return value.item()


# ----------------------------------------------------------------------------- optimizer and schedule


def _parameters(params) -> list[torch.nn.Parameter]:
    """The trainable tensors of a module or of an iterable of tensors, each once (tied weights appear once)."""
    if isinstance(params, torch.nn.Module):
        params = params.parameters()
    elif isinstance(params, torch.Tensor):
        params = [params]
    out, seen = [], set()
    for p in params:
        if isinstance(p, dict):
            raise TypeError("pass a model or an iterable of parameters, not parameter groups (dicts)")
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"expected a model or tensors, got an iterable holding {type(p).__name__}")
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


_FUSED_ADAMW = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 4)  # fused AdamW on CPU too


def make_optimizer(
    params,
    lr: float,
    weight_decay: float = 0.1,
    betas=(0.9, 0.95),
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over a model's parameters (or any iterable of parameters) in two groups.

    The no-decay rule: weight decay applies to tensors with 2 or more dimensions (linear and embedding
    matrices) and never to 1-D (or 0-D) tensors — biases and norm gains — as in nanoGPT, minGPT and Hugging Face's
    Trainer. Decaying a LayerNorm gain pulls it towards 0 and shrinks the normalized stream for no benefit.
    Parameters with requires_grad=False are left out; a tensor passed twice (tied weights) is kept once.
    Group 0 is the decayed one, group 1 the other (either may be empty).

    `fused` (default: wherever torch has it for these parameters — CPU and CUDA floating-point tensors, torch
    >= 2.4) updates all tensors in one kernel: the same AdamW arithmetic, about 3x faster than the per-op
    `foreach` path on CPU (docs/benchmarks.md), equal to it within float rounding.
    """
    params = _parameters(params)
    if not params:
        raise ValueError("make_optimizer got no trainable parameters")
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    if fused is None:
        fused = _FUSED_ADAMW and all(
            p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params
        )
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)


def lr_at(step: int, steps: int, lr: float, warmup: int, min_lr: float = 0.0) -> float:
    """Learning rate for update `step` (0-based) of `steps`: linear warm-up from 0, then cosine decay to min_lr.

    lr·step/warmup while step < warmup (0 at step 0, so the first update only warms AdamW's moments), the peak lr
    at step == warmup, then min_lr + (lr - min_lr)·½(1 + cos(π·progress)) with progress = (step - warmup) /
    (steps - warmup), reaching min_lr at step == steps. This is exactly Hugging Face's
    `get_cosine_schedule_with_warmup(opt, warmup, steps)` (min_lr = 0) and
    `get_cosine_with_min_lr_schedule_with_warmup(..., min_lr_rate=min_lr / lr)`, where the scheduler's
    `step()` follows each optimizer step — the tests compare them. Past `steps` it stays at min_lr (Hugging
    Face's would climb back up the cosine).
    """
    if step < warmup:
        return lr * step / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def clip_grad_norm(params, max_norm: float) -> float:
    """Gradient clipping by global norm: with total = sqrt(Σ_p ‖grad_p‖²) over every gradient, multiply all of
    them by min(1, max_norm / (total + 1e-6)) in place, so one bad batch can not take a giant step. Returns the
    norm before clipping (worth logging: spikes announce instabilities). Takes a model or parameters; the same
    arithmetic as `torch.nn.utils.clip_grad_norm_`, which does the work (with fused per-tensor kernels)."""
    if not max_norm > 0:
        raise ValueError(f"max_norm={max_norm} must be > 0")
    params = [p for p in _parameters(params) if p.grad is not None]
    if not params:
        return 0.0
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))


@dataclass
class TrainLog:
    losses: list[float] = field(default_factory=list)  # one per step
    lrs: list[float] = field(default_factory=list)
    seconds: float = 0.0  # wall clock
    cpu_seconds: float = 0.0  # CPU time of this process (steady on a busy machine)

    @property
    def final_loss(self) -> float:
        """Mean training loss over the last 10 steps (less noisy than the very last one)."""
        tail = self.losses[-10:]
        return sum(tail) / len(tail)


def _check_train_args(steps, batch_size, lr, warmup, grad_clip, callback_every) -> None:
    for name, value in (("steps", steps), ("batch_size", batch_size), ("callback_every", callback_every)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    if not lr > 0:
        raise ValueError(f"lr={lr} must be > 0")
    if warmup is not None and not 0 <= warmup <= steps:
        raise ValueError(f"warmup={warmup} must lie in [0, steps={steps}]")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip={grad_clip} must be > 0 (or None for no clipping)")


def train(
    model,
    task: Task,
    steps: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 0.1,
    warmup: int | None = None,
    min_lr_ratio: float = 0.1,
    grad_clip: float | None = 1.0,
    seed: int = 0,
    progress: bool = True,
    callback=None,
    callback_every: int = 50,
) -> TrainLog:
    """Train `model` in place on batches of `task` drawn from a generator seeded by `seed`.

    Decoders learn next-token prediction (`lm_loss`), encoders masked-LM (`mlm_loss`). The device is the
    model's; on CUDA the forward pass runs under bf16 autocast. `warmup` defaults to steps // 10.
    `callback(step, loss, model)` runs after update `step` (1-based) every `callback_every` steps and after the
    last one, with the model in eval mode; if it returns True, training stops after that step (e.g. once a
    held-out accuracy is reached: `log.losses` then has one entry per step taken). The progress bar writes to
    stdout, and nothing when progress=False.
    """
    _check_train_args(steps, batch_size, lr, warmup, grad_clip, callback_every)
    rank, world = ranks()
    if batch_size % world:
        raise ValueError(f"batch_size={batch_size} must split evenly over torchrun's {world} processes")
    warmup = steps // 10 if warmup is None else warmup
    device = next(model.parameters()).device
    forward = _data_parallel(model) if world > 1 else model
    mine = slice(rank * batch_size // world, (rank + 1) * batch_size // world)  # this rank's rows
    generator = torch.Generator().manual_seed(seed)
    params = _parameters(model)
    optimizer = make_optimizer(params, lr, weight_decay)
    log = TrainLog()
    start, cpu_start = time.perf_counter(), time.process_time()
    model.train()
    bar = tqdm(
        range(steps),
        disable=not progress or rank > 0,
        file=sys.stdout,
        desc=f"train {task.name}",
        mininterval=0.5,
    )
    for step in bar:
        lr_now = lr_at(step, steps, lr, warmup, lr * min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr_now
        x, y, mask, loss_fn = _batch(model, task, batch_size, generator)  # the global batch, on every rank
        share = mask[mine].sum() / mask.sum()  # this rank's part of the scored positions (1 on one process)
        x, y, mask = x[mine].to(device), y[mine].to(device), mask[mine].to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = forward(x)
        loss = loss_fn(logits, y, mask) * share.to(device)  # this rank's term of the global mean
        optimizer.zero_grad(set_to_none=True)
        (
            loss * world
        ).backward()  # DistributedDataParallel averages the ranks' gradients: the sum of the terms
        if grad_clip is not None:
            clip_grad_norm(params, grad_clip)
        optimizer.step()
        log.losses.append(_summed(loss.detach(), world))
        log.lrs.append(lr_now)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{log.losses[-1]:.4f}")
        if callback is not None and ((step + 1) % callback_every == 0 or step + 1 == steps):
            model.eval()
            stop = callback(step + 1, log.losses[-1], model)
            model.train()
            if stop is True:
                break
    model.eval()
    log.seconds = time.perf_counter() - start
    log.cpu_seconds = time.process_time() - cpu_start
    return log


# ----------------------------------------------------------------------------- recipes, cards, the CLI


@dataclass
class Recipe:
    """A shipped model: task, model shape (overrides of the "tiny" preset) and training hyper-parameters."""

    task: str
    task_args: dict
    model: dict = field(default_factory=dict)
    steps: int = 500
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    min_accuracy: float = 0.95  # token accuracy the card promises (a test retrains and checks it)


RECIPES: dict[str, Recipe] = {
    "copy": Recipe("copy", {"length": 8, "n_symbols": 16}, steps=120, min_accuracy=0.99),
    "reverse": Recipe("reverse", {"length": 8, "n_symbols": 16}, steps=200, min_accuracy=0.99),
    "sort": Recipe("sort", {"length": 8, "n_symbols": 10}, steps=600, min_accuracy=0.98),
    # RoPE makes the previous-token head (layer 0) easy to learn; the induction head (layer 1) builds on it.
    # Few symbols keep the copying (OV) job within one head's d_head = 16.
    "induction": Recipe(
        "induction",
        {"length": 8, "n_symbols": 12, "min_length": 4},
        {"positional": "rope", "d_ff": 128},
        steps=1000,
        min_accuracy=0.98,
    ),
}


def build_model(task: Task, seed: int = 0, model_cls=DecoderLM, **overrides):
    """A fresh model for `task`: the "tiny" preset sized to the task's vocabulary and length, seeded init."""
    config = ModelConfig.from_preset(
        "tiny", vocab_size=task.vocab_size, context_length=task.seq_len, **overrides
    )
    torch.manual_seed(seed)
    return model_cls(config)


def induction_summary(model, task: Task, seed: int = 0) -> dict:
    """Best induction head and previous-token head on clean `^ r r` probes (scores in [0, 1])."""
    from .diagnostics import induction_scores, previous_token_scores

    probe = task.probe(64, seed)
    ind = induction_scores(model, probe, task.length)  # (L, H)
    prev = previous_token_scores(model, probe)
    best = lambda s: divmod(int(s.argmax()), s.shape[1])
    return {
        "induction_score": round(ind.max().item(), 4),
        "induction_head": list(best(ind)),
        "induction_scores": [[round(v, 4) for v in row] for row in ind.tolist()],
        "previous_token_score": round(prev.max().item(), 4),
        "previous_token_head": list(best(prev)),
        "previous_token_scores": [[round(v, 4) for v in row] for row in prev.tolist()],
    }


def make_card(name: str, model, task: Task, recipe: Recipe, log: TrainLog, command: str) -> dict:
    metrics = evaluate(model, task, generator=recipe.seed + 10_000)
    card = {
        "name": name,
        "model": type(model).__name__,
        "task": {"name": task.name, "args": task.args()},
        "config": model.config.to_dict(),
        "n_params": measured_params(model),
        "steps": recipe.steps,
        "batch_size": recipe.batch_size,
        "lr": recipe.lr,
        "seed": recipe.seed,
        "final_train_loss": round(log.final_loss, 5),
        "eval_loss": round(metrics["loss"], 5),
        "token_accuracy": round(metrics["token_accuracy"], 4),
        "sequence_accuracy": round(metrics["sequence_accuracy"], 4),
        "min_accuracy": recipe.min_accuracy,
        "train_seconds": round(log.seconds, 1),
        "train_cpu_seconds": round(log.cpu_seconds, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "command": command,
    }
    if task.name == "induction" and isinstance(model, DecoderLM):
        card.update(induction_summary(model, task, recipe.seed))
    return card


def setup(recipe: Recipe | str) -> tuple[DecoderLM, Task]:
    """(untrained model, task) of a recipe, e.g. for a live view: `model, task = setup("induction")`, then
    `train(model, task, RECIPES["induction"].steps, callback=...)`."""
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; expected one of {sorted(RECIPES)}")
        recipe = RECIPES[recipe]
    task = make_task(recipe.task, **recipe.task_args)
    return build_model(task, recipe.seed, **recipe.model), task


def train_recipe(
    recipe: Recipe, name: str = "model", command: str = "", progress: bool = True, callback=None
):
    """Build, train and evaluate one recipe. Returns (model in eval mode, card)."""
    model, task = setup(recipe)
    log = train(
        model,
        task,
        recipe.steps,
        recipe.batch_size,
        recipe.lr,
        seed=recipe.seed,
        progress=progress,
        callback=callback,
    )
    return model, make_card(name, model, task, recipe, log, command)


# ----------------------------------------------------------------------------- the Pre-LN / Post-LN study


@dataclass
class NormStudy:
    """Pre-LN vs Post-LN decoders trained at growing depth, with and without learning-rate warm-up (chapter 5).

    Every run: the copy task, the "tiny" preset at `n_layers = depth`, untied head, token and position
    embeddings drawn with std `embedding_std` (unit scale, as the original Transformer's √D-scaled embeddings;
    GPT-2's 0.02 would make Post-LN fail even at depth 2, for a different reason), AdamW at peak `lr` with
    gradient clipping 1.0, `warmup` linear warm-up steps, then cosine decay. Per-block gradient norms on a fixed
    batch are recorded at initialization and every `grad_every` steps.
    """

    depths: tuple[int, ...] = (2, 6, 12)
    warmups: tuple[int, ...] = (0, 100)
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    embedding_std: float = 1.0
    seed: int = 0
    grad_every: int = 25


def norm_study_run(depth: int, placement: str, warmup: int, study: NormStudy | None = None) -> dict:
    """One run of the study: losses per step, per-block gradient norms over training, final evaluation."""
    from .diagnostics import gradient_norms

    study = NormStudy() if study is None else study

    task = make_task("copy", length=8, n_symbols=16)
    model = build_model(task, study.seed, n_layers=depth, norm_placement=placement, tie_weights=False)
    torch.nn.init.normal_(model.transformer.tok_emb.weight, std=study.embedding_std)
    torch.nn.init.normal_(model.transformer.pos_emb.weight, std=study.embedding_std)
    gx, gy, gmask = task.batch(study.batch_size, generator=study.seed + 1)  # fixed batch for gradient norms
    grad_steps, grads = [0], [gradient_norms(model, gx, gy, gmask).tolist()]

    def record(step, loss, m):
        grad_steps.append(step)
        grads.append(gradient_norms(m, gx, gy, gmask).tolist())

    log = train(
        model,
        task,
        study.steps,
        study.batch_size,
        study.lr,
        warmup=warmup,
        seed=study.seed,
        progress=False,
        callback=record,
        callback_every=study.grad_every,
    )
    metrics = evaluate(model, task, generator=study.seed + 10_000)
    return {
        "depth": depth,
        "placement": placement,
        "warmup": warmup,
        "losses": [round(v, 4) for v in log.losses],
        "grad_steps": grad_steps,
        "grad_norms": [[round(v, 5) for v in row] for row in grads],
        "final_train_loss": round(log.final_loss, 4),
        "eval_loss": round(metrics["loss"], 4),
        "token_accuracy": round(metrics["token_accuracy"], 4),
        "cpu_seconds": round(log.cpu_seconds, 1),
    }


def norm_study(study: NormStudy | None = None, command: str = "", progress: bool = True) -> dict:
    """Every (depth, placement, warm-up) run of `study`, with a card: what was run, how, and how long it took."""
    study = NormStudy() if study is None else study
    start, cpu_start = time.perf_counter(), time.process_time()
    runs = []
    for depth in study.depths:
        for placement in ("pre", "post"):
            for warmup in study.warmups:
                runs.append(norm_study_run(depth, placement, warmup, study))
                if progress:
                    r = runs[-1]
                    print(
                        f"  {placement}-LN, {depth:>2} layers, warm-up {warmup:>3}: final loss "
                        f"{r['final_train_loss']:.3f}, token accuracy {r['token_accuracy']:.3f}",
                        flush=True,
                    )
    return {
        "name": "norm-study",
        "task": {"name": "copy", "args": {"length": 8, "n_symbols": 16}},
        "model": "tiny preset, n_layers = depth, tie_weights = False",
        "study": asdict(study),
        "runs": runs,
        "train_seconds": round(time.perf_counter() - start, 1),
        "train_cpu_seconds": round(time.process_time() - cpu_start, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "command": command,
    }


def save(model, card: dict, out_dir, name: str) -> tuple[Path, Path]:
    """Write `<name>.safetensors` and the `<name>.json` card into `out_dir`."""
    from .pretrained import save_weights

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights, card_path = out / f"{name}.safetensors", out / f"{name}.json"
    save_weights(model, weights)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return weights, card_path


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be a positive integer")
    return value


def add_arguments(parser) -> None:
    parser.add_argument(
        "recipe",
        nargs="?",
        choices=[*RECIPES, "text", "all", "norm-study"],
        help="a shipped recipe, 'text' (a small GPT on real English) or 'all'; 'norm-study' records chapter 5's Pre-/Post-LN training "
        "curves (norm-study.json, no weights); omit it and give --task for a custom model",
    )
    parser.add_argument(
        "--task",
        choices=["copy", "reverse", "sort", "induction"],
        help="train a custom model on this task, starting from its recipe's settings",
    )
    parser.add_argument(
        "--length",
        type=int,
        help="with --task: sequence length (the period for induction); not with a recipe",
    )
    parser.add_argument("--n-symbols", type=int, help="with --task: number of symbols; not with a recipe")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --task: model config override on the 'tiny' preset, e.g. --set n_layers=3 "
        "(repeatable); not with a recipe",
    )
    parser.add_argument("--steps", type=_positive_int, help="training steps (default: the recipe's)")
    parser.add_argument("--batch-size", type=_positive_int, help="batch size (default: the recipe's)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    parser.add_argument(
        "--seed", type=int, help="seed for initialisation and batches (default: the recipe's)"
    )
    parser.add_argument("--name", help="output name (default: the recipe or task name); not with 'all'")
    parser.add_argument("--out", default=".", help="output folder (default: .); course/weights ships models")
    parser.add_argument(
        "--vocab-size", type=int, help="text: BPE vocabulary size (default: the recipe's, 2048)"
    )
    parser.add_argument("--threads", type=_positive_int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parse_overrides(pairs: list[str]) -> dict:
    known = ModelConfig.__dataclass_fields__
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in known:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {sorted(known)}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare string such as rope or rmsnorm
    return out


CUSTOM_ONLY = (("--length", "length"), ("--n-symbols", "n_symbols"), ("--set", "set"))  # options of --task


def _recipes_from_args(args) -> list[tuple[str, Recipe]]:
    if args.recipe is None and args.task is None:
        raise ValueError("give a recipe (" + ", ".join(RECIPES) + ", all) or --task for a custom model")
    if args.recipe is not None and args.task is not None:
        raise ValueError("give either a recipe or --task, not both")
    if args.recipe is not None:  # a recipe fixes its task and its model: refuse options that would be ignored
        ignored = [flag for flag, attr in CUSTOM_ONLY if getattr(args, attr)]
        if ignored:
            task = args.recipe if args.recipe in RECIPES else "TASK"
            raise ValueError(
                f"{' and '.join(ignored)} only apply to a custom model; a recipe fixes its task "
                f"and model. For a variant of {args.recipe!r} use: course train --task {task} "
                f"{' '.join(ignored)} ..."
            )
        if args.recipe == "all" and args.name:
            raise ValueError("--name names one model; 'all' trains several, each under its recipe's name")
    if args.task is not None:  # a custom model starts from the task's shipped recipe, if there is one
        base = RECIPES.get(args.task, Recipe(args.task, {}))
        task_args = dict(base.task_args)
        task_args.update(
            {k: v for k, v in (("length", args.length), ("n_symbols", args.n_symbols)) if v is not None}
        )
        if task_args.get("min_length", 0) > task_args.get("length", 0):
            task_args.pop("min_length")
        recipe = replace(base, task_args=task_args, model={**base.model, **_parse_overrides(args.set)})
        chosen = [(args.name or args.task, recipe)]
    else:
        names = list(RECIPES) if args.recipe == "all" else [args.recipe]
        chosen = [(args.name if args.name and len(names) == 1 else n, RECIPES[n]) for n in names]
    updates = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    updates = {k: v for k, v in updates.items() if v is not None}
    return [(name, Recipe(**{**asdict(r), **updates})) for name, r in chosen]


def _command(name: str, recipe: Recipe, args) -> str:
    """A `course train` line that reproduces this model."""
    base = RECIPES.get(name)
    if base is not None and asdict(base) == asdict(recipe):
        parts = [name, "--seed", str(recipe.seed)]
    else:
        parts = [
            "--task",
            recipe.task,
            "--name",
            name,
            "--steps",
            str(recipe.steps),
            "--batch-size",
            str(recipe.batch_size),
            "--lr",
            str(recipe.lr),
            "--seed",
            str(recipe.seed),
        ]
        parts += [
            f"--{k.replace('_', '-')}" + f"={v}" for k, v in recipe.task_args.items() if k != "min_length"
        ]
        parts += [f"--set={k}={json.dumps(v)}" for k, v in recipe.model.items()]
    return "course train " + shlex.join(parts + ["--threads", str(args.threads), "--out", args.out])


def run(args) -> int:
    torch.set_num_threads(args.threads)
    if ranks()[1] > 1 and args.recipe in ("text", "all", "norm-study"):
        print(
            f"course train: {args.recipe!r} does not run under torchrun yet (the synthetic recipes and "
            "--task do)",
            file=sys.stderr,
        )
        return 2
    if args.recipe == "norm-study":
        command = f"course train norm-study --threads {args.threads} --out {args.out}"
        study = norm_study(command=command, progress=not args.no_progress)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "norm-study.json").write_text(json.dumps(study) + "\n")
        print(
            f"norm-study: {len(study['runs'])} runs in {study['train_seconds']}s "
            f"({study['train_cpu_seconds']}s CPU) -> {out / 'norm-study.json'}"
        )
        return 0
    if args.recipe == "text":
        from .text_model import run_text

        return run_text(args)
    try:
        chosen = _recipes_from_args(args)
    except ValueError as err:
        print(f"course train: {err}", file=sys.stderr)
        return 2
    status = _run_recipes(chosen, args)
    if ranks()[1] > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    if status == 0 and args.recipe == "all":
        from .text_model import run_text

        return run_text(args)
    return status


def _run_recipes(chosen: list[tuple[str, Recipe]], args) -> int:
    for name, recipe in chosen:
        try:
            model, card = train_recipe(
                recipe, name, _command(name, recipe, args), progress=not args.no_progress
            )
        except ValueError as err:  # a bad task or model setting
            print(f"course train: {err}", file=sys.stderr)
            return 2
        if ranks()[0] > 0:  # under torchrun every rank holds the same model; rank 0 writes it
            continue
        try:
            weights, card_path = save(model, card, args.out, name)
        except OSError as err:
            print(f"course train: can not write {name} to {args.out}: {err}", file=sys.stderr)
            return 1
        extra = f", induction score {card['induction_score']:.3f}" if "induction_score" in card else ""
        print(
            f"{name}: loss {card['eval_loss']:.4f}, token accuracy {card['token_accuracy']:.4f}, sequence "
            f"accuracy {card['sequence_accuracy']:.4f}{extra} in {card['train_seconds']}s "
            f"({card['train_cpu_seconds']}s CPU) -> {weights}, {card_path}"
        )
        if card["token_accuracy"] < recipe.min_accuracy:
            print(
                f"course train: warning: {name} is below the recipe's min_accuracy={recipe.min_accuracy}",
                file=sys.stderr,
            )
    return 0
