"""The text model: a small GPT trained on real English (`course train text`), and the measurements of its
card.

    model, card, tokenizer = train_text(TextRecipe())   # what `course train text` runs
    heldout_loss(model, ids, tokenizer)     # loss (nats/token) and bits per byte on the held-out windows
    ngram_baselines(train_ids, held_ids, tokenizer, context=128)   # unigram and bigram on the same targets
    head_properties(model, held_ids)        # previous-token head, induction head (several periods), entropy

Pipeline: `course.corpus` text -> deterministic train/held-out split -> byte-level BPE trained on the train
part (`course.tokenizer`) -> a 4-layer DecoderLM (RoPE, d_model 128, context 128) trained with
`course.training.train`: first a short induction warm-up on repeated random tokens
(`course.data.tiled_repeats`: rows of 32 tokens, then of 128), then random windows of the train tokens, 1 row
in 8 still a repeat. Held-out figures use the non-overlapping windows of the held-out tokens; the baselines
score exactly the same target tokens. Bits per byte = total nats / ln 2 / UTF-8 bytes of the targets.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .config import ModelConfig
from .corpus import TokenStream, corpus_info, corpus_text, split
from .data import as_generator, repeated_tokens, tiled_repeats
from .models import DecoderLM
from .tokenizer import BPETokenizer, word_pieces
from .training import train

TEXT_MODEL = {
    "context_length": 128,
    "d_model": 128,
    "n_layers": 4,
    "n_heads": 4,
    "positional": "rope",
    "dropout": 0.0,
}
SAMPLE_PROMPTS = ("The", "A class", "When an exception is raised,")
SAMPLE_SETTINGS = {"max_new_tokens": 48, "temperature": 0.8, "top_k": 50}
DEMO_WORDS = ("statement", "exception", "iterator", "unconditionally", "transformer")
BIGRAM_ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
CURVE_WINDOWS = 32


@dataclass
class TextRecipe:
    """Tokenizer size, model shape (overrides of the "tiny" preset) and training hyper-parameters.

    `warmup`: stages (steps, batch_size, row length) on repeated random tokens before the text, where the
    induction head's phase change comes within a few hundred steps (on text alone it does not come within
    the budget). `repeat_fraction`: the share of text rows replaced by such repeats, so the head stays."""

    vocab_size: int = 2048
    model: dict = field(default_factory=lambda: dict(TEXT_MODEL))
    steps: int = 2000
    batch_size: int = 16
    lr: float = 3e-3
    seed: int = 0
    warmup: tuple = ((800, 64, 32), (300, 16, 128))
    repeat_fraction: float = 0.125


# ----------------------------------------------------------------------------- evaluation


def token_bytes(tokenizer: BPETokenizer) -> torch.Tensor:
    """(V,) UTF-8 length of each token's text."""
    return torch.tensor([len(b) for b in tokenizer.vocab], dtype=torch.float64)


def _bits_per_byte(nats: float, n_bytes: float) -> float:
    return nats / math.log(2) / n_bytes


@torch.no_grad()
def heldout_loss(
    model, ids: torch.Tensor, tokenizer: BPETokenizer, *, max_windows: int | None = None, batch_size: int = 32
) -> dict:
    """Mean next-token loss (nats) and bits per byte of `model` on the non-overlapping windows of `ids`
    (T,)."""
    x, y = TokenStream(ids, model.config.context_length).windows()  # (N, context) each
    x, y = x[:max_windows], y[:max_windows]
    was_training = model.training
    model.eval()
    nats = sum(
        F.cross_entropy(model(xb).double().flatten(0, 1), yb.flatten(), reduction="sum").item()
        for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True)
    )
    model.train(was_training)
    n_bytes = token_bytes(tokenizer)[y].sum().item()
    return {
        "loss": nats / y.numel(),
        "bits_per_byte": _bits_per_byte(nats, n_bytes),
        "tokens": y.numel(),
        "bytes": int(n_bytes),
        "windows": x.shape[0],
    }


def ngram_baselines(
    train_ids: torch.Tensor,
    held_ids: torch.Tensor,
    tokenizer: BPETokenizer,
    *,
    context: int,
    max_windows: int | None = None,
) -> dict:
    """Unigram (add-one) and bigram models counted on the train tokens, scored on the held-out targets that
    `heldout_loss` scores. The bigram interpolates with the unigram, P(b|a) = (C(a,b) + α P(b)) / (C(a) + α),
    with α the best of BIGRAM_ALPHAS on the held-out text itself: the baseline's best case."""
    V = tokenizer.vocab_size
    x, y = TokenStream(held_ids, context).windows()  # previous token x[:, t] of each target y[:, t]
    x, y = x[:max_windows].flatten(), y[:max_windows].flatten()
    n_bytes = token_bytes(tokenizer)[y].sum().item()
    unigram = (torch.bincount(train_ids, minlength=V).double() + 1) / (train_ids.numel() + V)  # (V,)
    pairs = torch.bincount(train_ids[:-1] * V + train_ids[1:], minlength=V * V).double().view(V, V)  # (V, V)
    rows = pairs.sum(1)  # (V,) C(a)

    def nats(alpha: float) -> float:
        p = (pairs[x, y] + alpha * unigram[y]) / (rows[x] + alpha)
        return -p.log().sum().item()

    alpha = min(BIGRAM_ALPHAS, key=nats)
    out = {"unigram": -unigram[y].log().sum().item(), "bigram": nats(alpha)}
    result = {k: {"loss": v / y.numel(), "bits_per_byte": _bits_per_byte(v, n_bytes)} for k, v in out.items()}
    result["bigram"]["alpha"] = alpha
    return result


def _best(scores: torch.Tensor) -> dict:
    """Best (layer, head) of an (L, H) score table, with the table."""
    layer, head = divmod(int(scores.argmax()), scores.shape[1])
    return {
        "score": round(scores.max().item(), 4),
        "head": [layer, head],
        "scores": [[round(v, 4) for v in row] for row in scores.tolist()],
    }


def induction_periods(context: int) -> list[int]:
    """Periods of the induction probe: context/8, context/4, context/2 (16, 32, 64 at context 128)."""
    return sorted({max(2, context // 8), max(2, context // 4), context // 2})


@torch.no_grad()
def head_properties(model, held_ids: torch.Tensor, *, n_windows: int = 16, seed: int = 0) -> dict:
    """Measured head roles: previous-token attention on held-out text, induction on repeated random tokens
    and each head's mean attention entropy on held-out text (nats; 0 = one key, log(i+1) = uniform).

    Induction is probed with `[r r]`, r of p distinct random ids, at every p of `induction_periods`; a head's
    score is its lowest over the periods. An induction head finds the earlier occurrence of the current
    token wherever it is; a head that looks back a fixed distance scores at one period only (a model trained
    on repeats of one period learns exactly that shortcut). In-context learning shows as a lower loss on the
    second copy (at p = context/2)."""
    from .diagnostics import attention_entropy, induction_scores, max_causal_entropy, previous_token_scores

    context, V = model.config.context_length, model.config.vocab_size
    text = TokenStream(held_ids, context).windows()[0][:n_windows]  # (N, context)
    periods = induction_periods(context)
    probes = {p: repeated_tokens(n_windows, p, V, generator=seed, offset=0, bos=None) for p in periods}
    per_period = torch.stack([induction_scores(model, probes[p], p) for p in periods])  # (P, L, H)
    period = periods[-1]
    repeated = probes[period]  # (N, 2 * period)
    losses = F.cross_entropy(model(repeated[:, :-1]).transpose(1, 2), repeated[:, 1:], reduction="none")
    entropy = attention_entropy(model, text)  # (L, H)
    return {
        "previous_token": _best(previous_token_scores(model, text)),
        "induction": {
            **_best(per_period.amin(0)),
            "periods": periods,
            "best_per_period": [round(s.max().item(), 4) for s in per_period],
            "period": period,
            "loss_first_copy": round(losses[:, : period - 1].mean().item(), 4),
            "loss_second_copy": round(losses[:, period:].mean().item(), 4),
        },
        "attention_entropy": {
            "min": round(entropy.min().item(), 4),
            "max": round(entropy.max().item(), 4),
            "std": round(entropy.std().item(), 4),
            "uniform": round(max_causal_entropy(context), 4),
            "per_head": [[round(v, 4) for v in row] for row in entropy.tolist()],
        },
    }


def sample_texts(model, tokenizer: BPETokenizer, *, seed: int = 0, prompts=SAMPLE_PROMPTS) -> list[dict]:
    """One seeded continuation per prompt (SAMPLE_SETTINGS), as text. A tiny context keeps the prompt's
    end."""
    out = []
    for prompt in prompts:
        ids = tokenizer.encode(prompt)[None, -(model.config.context_length // 2) :]  # (1, T)
        n = min(SAMPLE_SETTINGS["max_new_tokens"], model.config.context_length - ids.shape[1])
        settings = {**SAMPLE_SETTINGS, "max_new_tokens": n}
        new = model.generate(ids, seed=seed, **settings)[0, ids.shape[1] :]
        out.append({"prompt": prompt, **settings, "seed": seed, "text": tokenizer.decode(new)})
    return out


# ----------------------------------------------------------------------------- training and the card


def prepare(recipe: TextRecipe) -> dict:
    """Corpus, split, tokenizer (trained on the train part) and token ids: {"tokenizer", "train", "held_out",
    "corpus", "tokenizer_seconds"}."""
    text = corpus_text()
    train_text, held_text = split(text)
    start = time.perf_counter()
    tokenizer = BPETokenizer.train(train_text, vocab_size=recipe.vocab_size)
    seconds = time.perf_counter() - start
    return {
        "tokenizer": tokenizer,
        "train": tokenizer.encode(train_text),
        "held_out": tokenizer.encode(held_text),
        "corpus": corpus_info(text),
        "tokenizer_seconds": seconds,
    }


class Repeats:
    """Rows of `tiled_repeats` as a training task: (x, y, loss_mask), each (B, length)."""

    name = "repeats"

    def __init__(self, length: int, vocab_size: int):
        self.length, self.vocab_size = length, vocab_size

    def batch(self, batch_size: int, generator=None):
        tokens, scored = tiled_repeats(batch_size, self.length + 1, self.vocab_size, generator=generator)
        return tokens[:, :-1], tokens[:, 1:], scored[:, 1:]


class TextWithRepeats(TokenStream):
    """Text windows, each replaced with probability `fraction` by a `Repeats` row of the same length."""

    def __init__(self, ids: torch.Tensor, context: int, vocab_size: int, fraction: float):
        super().__init__(ids, context)
        self.repeats, self.fraction = Repeats(context, vocab_size), fraction

    def batch(self, batch_size: int, generator=None):
        g = as_generator(generator)
        x, y, scored = super().batch(batch_size, g)
        pick = torch.rand(batch_size, generator=g) < self.fraction  # (B,)
        if pick.any():
            x[pick], y[pick], scored[pick] = self.repeats.batch(int(pick.sum()), g)
        return x, y, scored


def build_text_model(recipe: TextRecipe, vocab_size: int) -> DecoderLM:
    config = ModelConfig.from_preset("tiny", **{**recipe.model, "vocab_size": vocab_size})
    torch.manual_seed(recipe.seed)
    return DecoderLM(config)


def train_text(
    recipe: TextRecipe,
    *,
    name: str = "text",
    command: str = "",
    progress: bool = True,
    curve_every: int = 200,
):
    """Build the tokenizer and the model, train, measure. Returns (model in eval mode, card, tokenizer).

    Every `curve_every` steps the held-out loss on its first CURVE_WINDOWS windows joins the card's
    "curve"."""
    context = ModelConfig.from_preset("tiny", **recipe.model).context_length
    too_long = [length for _, _, length in recipe.warmup if length > context]
    if too_long:  # checked before the tokenizer is trained
        raise ValueError(f"warm-up rows of {too_long[0]} tokens exceed the context of {context}")
    data = prepare(recipe)
    tokenizer = data["tokenizer"]
    model = build_text_model(recipe, tokenizer.vocab_size)
    V = tokenizer.vocab_size
    logs = []
    for i, (steps, batch_size, length) in enumerate(recipe.warmup):
        stage = train(
            model,
            Repeats(length, V),
            steps,
            batch_size,
            recipe.lr,
            weight_decay=0.0,
            warmup=steps // 5,  # a long learning-rate warm-up: with steps // 10 the phase change came later
            seed=recipe.seed + 1 + i,
            progress=progress,
        )
        logs.append(stage)
    stream = TextWithRepeats(data["train"], context, V, recipe.repeat_fraction)
    curve = []

    def record(step, loss, model):
        held = heldout_loss(model, data["held_out"], tokenizer, max_windows=CURVE_WINDOWS)["loss"]
        curve.append([step, round(loss, 4), round(held, 4)])

    log = train(
        model,
        stream,
        recipe.steps,
        recipe.batch_size,
        recipe.lr,
        seed=recipe.seed,
        progress=progress,
        callback=record,
        callback_every=curve_every,
    )
    card = text_card(name, model, tokenizer, data, recipe, [*logs, log], command)
    card["curve"] = {
        "columns": ["step", "train_loss", f"held_out_loss_first_{CURVE_WINDOWS}_windows"],
        "rows": curve,
    }
    return model, card, tokenizer


def _means(values: list[float], every: int) -> list[float]:
    return [
        round(sum(chunk) / len(chunk), 3)
        for i in range(0, len(values), every)
        if (chunk := values[i : i + every])
    ]


def _rounded(d: dict, digits: int = 4) -> dict:
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in d.items()}


def text_card(name, model, tokenizer, data, recipe: TextRecipe, logs, command: str) -> dict:
    """The card; `logs`: the TrainLog of each warm-up stage, then of the text stage."""
    log, context = logs[-1], model.config.context_length
    stages = [*recipe.warmup, (recipe.steps, recipe.batch_size, context)]  # (steps, batch, length) each
    tokens_seen = sum(steps * batch_size * length for steps, batch_size, length in stages)
    seconds = sum(stage.seconds for stage in logs)
    cpu_seconds = sum(stage.cpu_seconds for stage in logs)
    text_tokens = recipe.steps * recipe.batch_size * context * (1 - recipe.repeat_fraction)
    held = heldout_loss(model, data["held_out"], tokenizer)
    baselines = ngram_baselines(data["train"], data["held_out"], tokenizer, context=context)
    return {
        "name": name,
        "model": type(model).__name__,
        "task": {"name": "text", "args": {}},
        "config": model.config.to_dict(),
        "n_params": model.num_params(),
        "corpus": {
            **data["corpus"],
            "split": "chunks of >= 2000 characters of paragraphs; every 10th held out",
            "train_tokens": data["train"].numel(),
            "held_out_tokens": data["held_out"].numel(),
        },
        "tokenizer": {
            "file": f"{name}.tokenizer.json",
            "kind": "byte-level BPE",
            "vocab_size": tokenizer.vocab_size,
            "train_seconds": round(data["tokenizer_seconds"], 1),
            "demo": word_pieces(tokenizer, DEMO_WORDS),
        },
        "steps": recipe.steps,
        "batch_size": recipe.batch_size,
        "lr": recipe.lr,
        "seed": recipe.seed,
        "warmup": {
            "rows": "course.data.tiled_repeats: r r r ..., r = p distinct random ids, p in [4, length/2]",
            "stages": [
                {
                    "steps": s,
                    "batch_size": b,
                    "length": n,
                    "final_train_loss": round(stage.final_loss, 4),
                    "seconds": round(stage.seconds, 1),
                    "loss_per_25_steps": _means(stage.losses, 25),  # the phase change: a sudden drop
                }
                for (s, b, n), stage in zip(recipe.warmup, logs[:-1], strict=True)
            ],
            "repeat_fraction": recipe.repeat_fraction,
        },
        "tokens_seen": tokens_seen,
        "epochs": round(text_tokens / data["train"].numel(), 2),
        "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        "tokens_per_second": round(tokens_seen / seconds),
        "tokens_per_cpu_second": round(tokens_seen / cpu_seconds),
        "final_train_loss": round(log.final_loss, 4),
        "held_out": _rounded(held),
        "baselines": {k: _rounded(v) for k, v in baselines.items()},
        "heads": head_properties(model, data["held_out"], seed=recipe.seed),
        "samples": sample_texts(model, tokenizer, seed=recipe.seed),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "command": command,
    }


# ----------------------------------------------------------------------------- `course train text`


def recipe_from_args(args) -> TextRecipe:
    """The text recipe with the command line's changes (--steps, --batch-size, --lr, --seed, --vocab-size,
    --set)."""
    from .recipes import _parse_overrides

    unused = [
        flag
        for flag, value in (("--task", args.task), ("--length", args.length), ("--n-symbols", args.n_symbols))
        if value is not None
    ]
    if unused:
        raise ValueError(f"{', '.join(unused)} apply to the synthetic tasks, not to the text model")
    base = TextRecipe()
    updates = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "vocab_size": args.vocab_size,
    }
    if args.warmup is not None:
        updates["warmup"] = parse_warmup(args.warmup)
    updates = {k: v for k, v in updates.items() if v is not None}
    return TextRecipe(**{**base.__dict__, **updates, "model": {**base.model, **_parse_overrides(args.set)}})


def parse_warmup(text: str) -> tuple:
    """'900x64x32,300x16x128' -> ((900, 64, 32), (300, 16, 128)); 'none' -> ()."""
    if text.strip() == "none":
        return ()
    try:
        stages = tuple(tuple(int(n) for n in part.split("x")) for part in text.split(","))
    except ValueError:
        stages = ()
    if not stages or any(len(stage) != 3 or min(stage) < 1 for stage in stages):
        raise ValueError(
            f"--warmup {text!r}: expected STEPSxBATCHxLENGTH[,...] of positive integers, or none"
        )
    return stages


def format_warmup(stages: tuple) -> str:
    return ",".join("x".join(map(str, stage)) for stage in stages) or "none"


def text_command(name: str, recipe: TextRecipe, args) -> str:
    """A `course train text` line that reproduces this model."""
    import shlex

    base, parts = TextRecipe(), ["text"]
    parts += ["--name", name] if name != "text" else []
    for key in ("steps", "batch_size", "lr", "vocab_size"):
        if getattr(recipe, key) != getattr(base, key):
            parts += [f"--{key.replace('_', '-')}", str(getattr(recipe, key))]
    if recipe.warmup != base.warmup:
        parts += ["--warmup", format_warmup(recipe.warmup)]
    parts += [f"--set={k}={json.dumps(v)}" for k, v in recipe.model.items() if base.model.get(k, None) != v]
    parts += ["--seed", str(recipe.seed), "--threads", str(args.threads), "--out", args.out]
    return "course train " + shlex.join(parts)


def save_text(model, card: dict, tokenizer: BPETokenizer, out_dir, name: str):
    """`<name>.safetensors`, the `<name>.json` card and `<name>.tokenizer.json` in `out_dir`."""
    from pathlib import Path

    from .recipes import save

    weights, card_path = save(model, card, out_dir, name)
    tokenizer_path = Path(out_dir) / card["tokenizer"]["file"]
    tokenizer.save(tokenizer_path)
    return weights, card_path, tokenizer_path


def run_text(args) -> int:
    try:
        recipe = recipe_from_args(args)
        name = args.name if args.recipe == "text" and args.name else "text"
        model, card, tokenizer = train_text(
            recipe, name=name, command=text_command(name, recipe, args), progress=not args.no_progress
        )
    except ValueError as err:
        print(f"course train: {err}")
        return 2
    paths = save_text(model, card, tokenizer, args.out, name)
    held, base, heads = card["held_out"], card["baselines"], card["heads"]
    print(
        f"{name}: held-out loss {held['loss']:.4f} ({held['bits_per_byte']:.3f} bits/byte; bigram "
        f"{base['bigram']['loss']:.4f}, unigram {base['unigram']['loss']:.4f}), previous-token head "
        f"{heads['previous_token']['head']} {heads['previous_token']['score']:.3f}, induction head "
        f"{heads['induction']['head']} {heads['induction']['score']:.3f}, in {card['train_seconds']}s "
        f"({card['tokens_per_second']} tokens/s) -> {', '.join(map(str, paths))}"
    )
    return 0
