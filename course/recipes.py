"""The shipped small models: task recipes, model cards, save/load, and the `course train` command.

RECIPES   the small models shipped in `course/weights/` (`course train copy --out course/weights`);
          `setup("induction")` gives a recipe's untrained (model, task)
norm_study  chapter 5's Pre-LN vs Post-LN runs at growing depth, with and without warm-up; shipped as
          recorded curves, `course/weights/norm-study.json` (`course train norm-study --out course/weights`)
text      `course train text`: a small GPT on real English (`course.text_model`), with its BPE tokenizer
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .config import ModelConfig
from .costs import measured_params
from .data import Task, make_task
from .models import DecoderLM
from .training import TrainLog, evaluate, ranks, train

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
    """Pre-LN vs Post-LN decoders trained at growing depth, with and without learning-rate warm-up
    (chapter 5).

    Every run: the copy task, the "tiny" preset at `n_layers = depth`, untied head, token and position
    embeddings drawn with std `embedding_std` (unit scale, as the original Transformer's √D-scaled embeddings;
    GPT-2's 0.02 would make Post-LN fail even at depth 2, for a different reason), AdamW at peak `lr` with
    gradient clipping 1.0, `warmup` linear warm-up steps, then cosine decay. Per-block gradient norms on a
    fixed batch are recorded at initialization and every `grad_every` steps.
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
    """Every (depth, placement, warm-up) run of `study`, with a card: what was run, how, and how long
    it took."""
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
        help="a shipped recipe, 'text' (a small GPT on real English) or 'all'; 'norm-study' "
        "records chapter 5's Pre-/Post-LN training "
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
    parser.add_argument(
        "--warmup",
        help="text: induction warm-up stages STEPSxBATCHxLENGTH,... on repeated random tokens, or none "
        "(default: the recipe's, 800x64x32,300x16x128)",
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
