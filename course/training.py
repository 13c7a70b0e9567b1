"""Training: AdamW with warm-up + cosine decay, gradient clipping, evaluation and the loop.

make_optimizer  AdamW; weight decay on matrices only (never on 1-D parameters: biases, norm gains)
lr_at           linear warm-up from 0, then cosine decay — Hugging Face's cosine schedule with warm-up
clip_grad_norm  rescale all gradients together so that their global L2 norm is at most max_norm
evaluate        loss and token accuracy on fresh batches of a task
train     the loop; bf16 autocast on CUDA only; a tqdm bar on stdout; callback(step, loss, model) every N
steps           (returning True stops early)
The shipped models' recipes, cards and the `course train` command are in `course.recipes`.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from .data import Task, as_generator, mask_tokens
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
]

# ----------------------------------------------------------------------------- evaluation


def _objective(model, task: Task, batch_size: int, generator, device):
    """(logits, targets, loss_mask, loss function) for one batch: next-token for decoders, MLM for
    encoders."""
    if isinstance(model, EncoderLM):
        tokens, _ = task.sequences(batch_size, generator)
        x, y, mask = (
            t.to(device) for t in mask_tokens(tokens, generator=generator, vocab_size=task.vocab_size)
        )
        return model(x), y, mask, mlm_loss
    if isinstance(model, DecoderLM):
        x, y, mask = (t.to(device) for t in task.batch(batch_size, generator))
        return model(x), y, mask, lm_loss
    raise ValueError(f"train() takes a DecoderLM or an EncoderLM, got {type(model).__name__}")


@torch.no_grad()
def evaluate(model, task: Task, batch_size: int = 512, generator=0) -> dict:
    """Loss and accuracies on a fresh batch (seeded by `generator`), model in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits, y, mask, loss_fn = _objective(model, task, batch_size, as_generator(generator), device)
    token, sequence = accuracy(logits, y, mask)
    model.train(was_training)
    return {"loss": loss_fn(logits, y, mask).item(), "token_accuracy": token, "sequence_accuracy": sequence}


# ----------------------------------------------------------------------------- optimizer and schedule


def _parameters(params) -> list[torch.nn.Parameter]:
    """The trainable tensors of a module or of an iterable of tensors, each once (tied weights appear
    once)."""
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
    matrices) and never to 1-D (or 0-D) tensors — biases and norm gains — as in nanoGPT, minGPT and Hugging
    Face's Trainer. Decaying a LayerNorm gain pulls it towards 0 and shrinks the normalized stream for no
    benefit. Parameters with requires_grad=False are left out; a tensor passed twice (tied weights) is kept
    once. Group 0 is the decayed one, group 1 the other (either may be empty).

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
    """Learning rate for update `step` (0-based) of `steps`: linear warm-up from 0, then cosine decay to
    min_lr.

    lr·step/warmup while step < warmup (0 at step 0, so the first update only warms AdamW's moments), the peak
    lr at step == warmup, then min_lr + (lr - min_lr)·½(1 + cos(π·progress)) with progress = (step - warmup) /
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
    them by min(1, max_norm / (total + 1e-6)) in place, so one bad batch can not take a giant step. Returns
    the norm before clipping (worth logging: spikes announce instabilities). Takes a model or parameters; the
    same arithmetic as `torch.nn.utils.clip_grad_norm_`, which does the work (with fused per-tensor
    kernels)."""
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
    `callback(step, loss, model)` runs after update `step` (1-based) every `callback_every` steps and after
    the last one, with the model in eval mode; if it returns True, training stops after that step (e.g. once a
    held-out accuracy is reached: `log.losses` then has one entry per step taken). The progress bar writes to
    stdout, and nothing when progress=False.
    """
    _check_train_args(steps, batch_size, lr, warmup, grad_clip, callback_every)
    warmup = steps // 10 if warmup is None else warmup
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    params = _parameters(model)
    optimizer = make_optimizer(params, lr, weight_decay)
    log = TrainLog()
    start, cpu_start = time.perf_counter(), time.process_time()
    model.train()
    bar = tqdm(
        range(steps), disable=not progress, file=sys.stdout, desc=f"train {task.name}", mininterval=0.5
    )
    for step in bar:
        lr_now = lr_at(step, steps, lr, warmup, lr * min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr_now
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits, y, mask, loss_fn = _objective(model, task, batch_size, generator, device)
        loss = loss_fn(logits, y, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            clip_grad_norm(params, grad_clip)
        optimizer.step()
        log.losses.append(loss.item())
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
