"""Training: losses, AdamW with warm-up + cosine decay, gradient clipping, and the `course train` command.

    lm_loss   next-token cross-entropy; targets are the inputs shifted by one (teacher forcing), averaged over
              the positions the loss mask keeps
    mlm_loss  masked-LM cross-entropy (encoder-only): predict the hidden tokens at their own positions
    train     the loop; bf16 autocast on CUDA only; a tqdm bar on stdout; callback(step, loss, model) every N steps
    RECIPES   the small models shipped in `course/weights/` (`course train copy --out course/weights`);
              `setup("induction")` gives a recipe's untrained (model, task)
    text      `course train text`: a small GPT on real English (`course.text_model`), with its BPE tokenizer
"""
from __future__ import annotations

import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .config import ModelConfig
from .data import Task, as_generator, make_task, mask_tokens
from .models import DecoderLM, EncoderLM

# ----------------------------------------------------------------------------- losses and metrics

def _check_targets(logits: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor | None) -> None:
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, T, vocab), got shape {tuple(logits.shape)}")
    if targets.shape != logits.shape[:2]:
        raise ValueError(f"targets of shape {tuple(targets.shape)} do not match logits (B, T) = "
                         f"{tuple(logits.shape[:2])}")
    if loss_mask is not None:
        if loss_mask.dtype != torch.bool or loss_mask.shape != targets.shape:
            raise ValueError(f"loss_mask must be a bool tensor of shape {tuple(targets.shape)}, got "
                             f"{loss_mask.dtype} {tuple(loss_mask.shape)}")
        if not loss_mask.any():
            raise ValueError("loss_mask selects no position: the loss would be 0/0")


def masked_cross_entropy(logits, targets, loss_mask=None) -> torch.Tensor:
    """Mean cross-entropy (in fp32) over the positions where `loss_mask` is True (all when None)."""
    _check_targets(logits, targets, loss_mask)
    losses = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    losses = losses.view_as(targets)  # (B, T)
    return losses.mean() if loss_mask is None else losses[loss_mask].mean()


def lm_loss(logits, targets, loss_mask=None) -> torch.Tensor:
    """Next-token loss. logits (B, T, V) from inputs x; targets (B, T) with targets[:, t] = the token after
    x[:, t]. Every position predicts in parallel from gold inputs (teacher forcing)."""
    return masked_cross_entropy(logits, targets, loss_mask)


def mlm_loss(logits, targets, loss_mask) -> torch.Tensor:
    """Masked-LM loss (see `course.data.mask_tokens`): targets are the original tokens at the same positions,
    scored only where they were hidden (loss_mask); visible tokens would be trivial to copy."""
    if loss_mask is None:
        raise ValueError("mlm_loss needs the loss_mask of hidden tokens")
    return masked_cross_entropy(logits, targets, loss_mask)


@torch.no_grad()
def accuracy(logits, targets, loss_mask=None) -> tuple[float, float]:
    """(token accuracy over scored positions, fraction of rows whose scored positions are all right)."""
    _check_targets(logits, targets, loss_mask)
    mask = torch.ones_like(targets, dtype=torch.bool) if loss_mask is None else loss_mask
    right = logits.argmax(-1) == targets
    token = right[mask].float().mean().item()
    sequence = (right | ~mask).all(-1).float().mean().item()
    return token, sequence


def _objective(model, task: Task, batch_size: int, generator, device):
    """(logits, targets, loss_mask, loss function) for one batch: next-token for decoders, MLM for encoders."""
    if isinstance(model, EncoderLM):
        tokens, _ = task.sequences(batch_size, generator)
        x, y, mask = (t.to(device) for t in mask_tokens(tokens, generator=generator))
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

def make_optimizer(model, lr: float, weight_decay: float = 0.1, betas=(0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (linear and embedding weights) only, never on biases or norm gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def lr_at(step: int, steps: int, lr: float, warmup: int, min_lr: float = 0.0) -> float:
    """Learning rate for update `step` (0-based): linear warm-up over `warmup` steps, then cosine to `min_lr`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * min(1.0, progress)))


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


def train(model, task: Task, steps: int, batch_size: int = 64, lr: float = 3e-3, weight_decay: float = 0.1,
          warmup: int | None = None, min_lr_ratio: float = 0.1, grad_clip: float | None = 1.0,
          seed: int = 0, progress: bool = True, callback=None, callback_every: int = 50) -> TrainLog:
    """Train `model` in place on batches of `task` drawn from a generator seeded by `seed`.

    Decoders learn next-token prediction (`lm_loss`), encoders masked-LM (`mlm_loss`). The device is the
    model's; on CUDA the forward pass runs under bf16 autocast. `warmup` defaults to steps // 10.
    `callback(step, loss, model)` runs after update `step` (1-based) every `callback_every` steps and after the
    last one, with the model in eval mode. The progress bar writes to stdout, and nothing when progress=False.
    """
    _check_train_args(steps, batch_size, lr, warmup, grad_clip, callback_every)
    warmup = steps // 10 if warmup is None else warmup
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(model, lr, weight_decay)
    log = TrainLog()
    start, cpu_start = time.perf_counter(), time.process_time()
    model.train()
    bar = tqdm(range(steps), disable=not progress, file=sys.stdout, desc=f"train {task.name}", mininterval=0.5)
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
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        log.losses.append(loss.item())
        log.lrs.append(lr_now)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{log.losses[-1]:.4f}")
        if callback is not None and ((step + 1) % callback_every == 0 or step + 1 == steps):
            model.eval()
            callback(step + 1, log.losses[-1], model)
            model.train()
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
    "induction": Recipe("induction", {"length": 8, "n_symbols": 12, "min_length": 4},
                        {"positional": "rope", "d_ff": 128}, steps=1000, min_accuracy=0.98),
}


def build_model(task: Task, seed: int = 0, model_cls=DecoderLM, **overrides):
    """A fresh model for `task`: the "tiny" preset sized to the task's vocabulary and length, seeded init."""
    config = ModelConfig.from_preset("tiny", vocab_size=task.vocab_size, context_length=task.seq_len,
                                     **overrides)
    torch.manual_seed(seed)
    return model_cls(config)


def induction_summary(model, task: Task, seed: int = 0) -> dict:
    """Best induction head and previous-token head on clean `^ r r` probes (scores in [0, 1])."""
    from .diagnostics import induction_scores, previous_token_scores

    probe = task.probe(64, seed)
    ind = induction_scores(model, probe, task.length)  # (L, H)
    prev = previous_token_scores(model, probe)
    best = lambda s: divmod(int(s.argmax()), s.shape[1])
    return {"induction_score": round(ind.max().item(), 4), "induction_head": list(best(ind)),
            "induction_scores": [[round(v, 4) for v in row] for row in ind.tolist()],
            "previous_token_score": round(prev.max().item(), 4), "previous_token_head": list(best(prev)),
            "previous_token_scores": [[round(v, 4) for v in row] for row in prev.tolist()]}


def make_card(name: str, model, task: Task, recipe: Recipe, log: TrainLog, command: str) -> dict:
    metrics = evaluate(model, task, generator=recipe.seed + 10_000)
    card = {"name": name, "model": type(model).__name__, "task": {"name": task.name, "args": task.args()},
            "config": model.config.to_dict(), "n_params": sum(p.numel() for p in model.parameters()),
            "steps": recipe.steps, "batch_size": recipe.batch_size, "lr": recipe.lr, "seed": recipe.seed,
            "final_train_loss": round(log.final_loss, 5), "eval_loss": round(metrics["loss"], 5),
            "token_accuracy": round(metrics["token_accuracy"], 4),
            "sequence_accuracy": round(metrics["sequence_accuracy"], 4),
            "min_accuracy": recipe.min_accuracy, "train_seconds": round(log.seconds, 1),
            "train_cpu_seconds": round(log.cpu_seconds, 1),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "command": command}
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


def train_recipe(recipe: Recipe, name: str = "model", command: str = "", progress: bool = True,
                 callback=None):
    """Build, train and evaluate one recipe. Returns (model in eval mode, card)."""
    model, task = setup(recipe)
    log = train(model, task, recipe.steps, recipe.batch_size, recipe.lr, seed=recipe.seed, progress=progress,
                callback=callback)
    return model, make_card(name, model, task, recipe, log, command)


def save(model, card: dict, out_dir, name: str) -> tuple[Path, Path]:
    """Write `<name>.safetensors` and the `<name>.json` card into `out_dir`."""
    from .pretrained import save_weights

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights, card_path = out / f"{name}.safetensors", out / f"{name}.json"
    save_weights(model, weights)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return weights, card_path


def add_arguments(parser) -> None:
    parser.add_argument("recipe", nargs="?", choices=[*RECIPES, "text", "all"],
                        help="a shipped recipe, 'text' (a small GPT on real English) or 'all'; omit it and give "
                             "--task for a custom model")
    parser.add_argument("--task", choices=["copy", "reverse", "sort", "induction"], help="custom task")
    parser.add_argument("--length", type=int, help="custom task: sequence length (the period for induction)")
    parser.add_argument("--n-symbols", type=int, help="custom task: number of symbols")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="model config override on the 'tiny' preset, e.g. --set n_layers=3 (repeatable)")
    parser.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, help="batch size (default: the recipe's)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--seed", type=int, help="seed for initialisation and batches (default: the recipe's)")
    parser.add_argument("--name", help="output name (default: the recipe or task name)")
    parser.add_argument("--out", default=".", help="output folder (default: .); course/weights ships models")
    parser.add_argument("--vocab-size", type=int, help="text: BPE vocabulary size (default: the recipe's, 2048)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
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


def _recipes_from_args(args) -> list[tuple[str, Recipe]]:
    if args.recipe is None and args.task is None:
        raise ValueError("give a recipe (" + ", ".join(RECIPES) + ", all) or --task for a custom model")
    if args.recipe is not None and args.task is not None:
        raise ValueError("give either a recipe or --task, not both")
    if args.task is not None:  # a custom model starts from the task's shipped recipe, if there is one
        base = RECIPES.get(args.task, Recipe(args.task, {}))
        task_args = dict(base.task_args)
        task_args.update({k: v for k, v in (("length", args.length), ("n_symbols", args.n_symbols))
                          if v is not None})
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
        parts = ["--task", recipe.task, "--name", name, "--steps", str(recipe.steps), "--batch-size",
                 str(recipe.batch_size), "--lr", str(recipe.lr), "--seed", str(recipe.seed)]
        parts += [f"--{k.replace('_', '-')}" + f"={v}" for k, v in recipe.task_args.items() if k != "min_length"]
        parts += [f"--set={k}={json.dumps(v)}" for k, v in recipe.model.items()]
    return "course train " + shlex.join(parts + ["--threads", str(args.threads), "--out", args.out])


def run(args) -> int:
    torch.set_num_threads(args.threads)
    if args.recipe == "text":
        from .text_model import run_text
        return run_text(args)
    try:
        chosen = _recipes_from_args(args)
    except ValueError as err:
        print(f"course train: {err}")
        return 2
    status = _run_recipes(chosen, args)
    if status == 0 and args.recipe == "all":
        from .text_model import run_text
        return run_text(args)
    return status


def _run_recipes(chosen: list[tuple[str, Recipe]], args) -> int:
    for name, recipe in chosen:
        try:
            model, card = train_recipe(recipe, name, _command(name, recipe, args), progress=not args.no_progress)
        except ValueError as err:  # a bad task or model setting
            print(f"course train: {err}")
            return 2
        weights, card_path = save(model, card, args.out, name)
        extra = f", induction score {card['induction_score']:.3f}" if "induction_score" in card else ""
        print(f"{name}: loss {card['eval_loss']:.4f}, token accuracy {card['token_accuracy']:.4f}, sequence "
              f"accuracy {card['sequence_accuracy']:.4f}{extra} in {card['train_seconds']}s "
              f"({card['train_cpu_seconds']}s CPU) -> {weights}, {card_path}")
        if card["token_accuracy"] < recipe.min_accuracy:
            print(f"warning: {name} is below the recipe's min_accuracy={recipe.min_accuracy}")
    return 0
