"""Training step of the course's DecoderLM against nanoGPT's model.py, same config and same weights (CPU, 1
thread).

    python docs/train_step_vs_nanogpt.py                       # 4 layers x 256 wide, B=4, T=256, vocab 256
    python docs/train_step_vs_nanogpt.py --shape gpt2 --pairs 5  # GPT-2 124M, B=1, T=128
    python docs/train_step_vs_nanogpt.py --before REV            # also the course as of git revision REV
    python docs/train_step_vs_nanogpt.py --profile               # top ops of one step of each model

One process; the contenders run in turn, the order reversed every pair (A B C, C B A, ...); each sample is one
training step after one warm-up step; the figure is the median over pairs of the per-pair ratio of CPU times
(`time.process_time`, steady on a shared machine). A step is: forward, cross-entropy, backward, gradient
clipping at 1.0, AdamW (decay on matrices only), zero_grad — what nanoGPT's train.py does, without compile.
Each side uses its own optimizer set-up: nanoGPT's configure_optimizers (fused AdamW on CUDA only, so foreach
on CPU) and the course's make_optimizer; `--same-optimizer` gives every side nanoGPT's, to compare the models
alone.

The nanoGPT model below is nanoGPT's model.py (https://github.com/karpathy/nanoGPT, MIT licence, Copyright (c)
2022 Andrej Karpathy) cut to what a training step runs, with its GELU switched to the tanh form GPT-2 (and the
course's gelu_tanh) use, so that both models compute the same function: the script checks equal losses first.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- nanoGPT (model.py, abridged)
class LayerNorm(nn.Module):
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.attn_dropout, self.resid_dropout = nn.Dropout(0.0), nn.Dropout(0.0)
        self.n_head, self.n_embd = n_head, n_embd

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, n_embd):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.gelu = nn.GELU(approximate="tanh")  # nanoGPT: nn.GELU() (erf); tanh = GPT-2's and the course's
        self.c_proj = nn.Linear(4 * n_embd, n_embd)
        self.dropout = nn.Dropout(0.0)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.ln_1, self.attn = LayerNorm(n_embd, True), CausalSelfAttention(n_embd, n_head)
        self.ln_2, self.mlp = LayerNorm(n_embd, True), MLP(n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd):
        super().__init__()
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab_size, n_embd),
                wpe=nn.Embedding(block_size, n_embd),
                drop=nn.Dropout(0.0),
                h=nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)]),
                ln_f=LayerNorm(n_embd, True),
            )
        )
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx, targets):
        t = idx.size(1)
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)


def nanogpt_from_course(model) -> GPT:
    """nanoGPT's GPT holding the course model's weights (c_attn = [q | k | v])."""
    c = model.config
    gpt = GPT(c.vocab_size, c.context_length, c.n_layers, c.n_heads, c.d_model)
    sd, t = {}, "transformer."
    src = {k: v.detach().clone() for k, v in model.state_dict().items()}
    sd[t + "wte.weight"] = sd["lm_head.weight"] = src[t + "tok_emb.weight"]
    sd[t + "wpe.weight"] = src[t + "pos_emb.weight"]
    for kind in ("weight", "bias"):
        sd[f"{t}ln_f.{kind}"] = src[f"{t}ln_f.{kind}"]
    for i in range(c.n_layers):
        h, b = f"{t}h.{i}.", f"{t}blocks.{i}."
        for kind in ("weight", "bias"):
            sd[f"{h}ln_1.{kind}"], sd[f"{h}ln_2.{kind}"] = src[f"{b}ln1.{kind}"], src[f"{b}ln2.{kind}"]
            sd[f"{h}attn.c_attn.{kind}"] = torch.cat([src[f"{b}attn.{n}_proj.{kind}"] for n in "qkv"])
            sd[f"{h}attn.c_proj.{kind}"] = src[f"{b}attn.o_proj.{kind}"]
            sd[f"{h}mlp.c_fc.{kind}"], sd[f"{h}mlp.c_proj.{kind}"] = (
                src[f"{b}mlp.up.{kind}"],
                src[f"{b}mlp.down.{kind}"],
            )
    gpt.load_state_dict(sd, strict=True)
    return gpt


# ----------------------------------------------------------------------------- the fused-QKV experiment
class _StackedQKV:
    """q_proj, k_proj and v_proj of one attention layer computed by one matmul on [W_q; W_k; W_v] (nanoGPT's
    c_attn), the weights staying three parameters. Tried for the course model and not landed: no gain on CPU
    (docs/benchmarks.md)."""

    def __init__(self, q, k, v):
        self.linears, self.outputs = (q, k, v), None

    def part(self, i, x):
        if i == 0:
            q, k, v = self.linears
            weight = torch.cat([q.weight, k.weight, v.weight])
            bias = None if q.bias is None else torch.cat([q.bias, k.bias, v.bias])
            self.outputs = F.linear(x, weight, bias).split([m.out_features for m in self.linears], -1)
        return self.outputs[i]


class _Part(nn.Module):
    def __init__(self, stack, i):
        super().__init__()
        object.__setattr__(self, "stack", stack)
        self.i = i

    def forward(self, x):
        return self.stack.part(self.i, x)


def stack_qkv(model) -> None:
    for block in model.transformer.blocks:
        attn = block.attn
        attn.separate = nn.ModuleList([attn.q_proj, attn.k_proj, attn.v_proj])  # keeps the parameters
        stack = _StackedQKV(attn.q_proj, attn.k_proj, attn.v_proj)
        attn.q_proj, attn.k_proj, attn.v_proj = (_Part(stack, i) for i in range(3))


# ----------------------------------------------------------------------------- contenders
def course_package(rev: str | None):
    """The course package of this checkout, or (rev) a copy of `course/` at a git revision, imported under
    another name so that both live in one process."""
    if rev is None:
        sys.path.insert(0, str(ROOT))
        return importlib.import_module("course")
    name = "course_" + "".join(ch for ch in rev if ch.isalnum())
    tmp = Path(tempfile.mkdtemp(prefix="course-rev-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "course"], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
    (tmp / "course").rename(tmp / name)
    sys.path.insert(0, str(tmp))
    return importlib.import_module(name)


SHAPES = {  # name: (config overrides on the GPT-2 layout, batch, time)
    "small": (dict(vocab_size=256, context_length=256, d_model=256, n_layers=4, n_heads=4), 4, 256),
    "gpt2": (dict(vocab_size=50257, context_length=1024, d_model=768, n_layers=12, n_heads=12), 1, 128),
}


def course_model(pkg, overrides):
    config = pkg.ModelConfig(
        positional="learned",
        norm="layernorm",
        norm_placement="pre",
        mlp="gelu_tanh",
        bias=True,
        tie_weights=True,
        **overrides,
    )
    torch.manual_seed(0)
    return pkg.DecoderLM(config)


def nanogpt_optimizer(model):
    """nanoGPT's configure_optimizers: decay on >= 2-D tensors, fused AdamW on CUDA only (foreach on CPU)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=1e-4,
        betas=(0.9, 0.95),
    )


def course_optimizer(model, pkg):
    """The course's own: `make_optimizer` (fused AdamW where torch has it, in this checkout)."""
    return importlib.import_module(pkg.__name__ + ".training").make_optimizer(model, 1e-4, 0.1)


def step_fn(model, idx, targets, nano: bool, opt):
    model.train()

    def step():
        if nano:
            _, loss = model(idx, targets)
        else:
            logits = model(idx)
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def first_loss(model, idx, targets, nano: bool) -> float:
    with torch.no_grad():
        if nano:
            return model(idx, targets)[1].item()
        return F.cross_entropy(model(idx).flatten(0, 1), targets.flatten()).item()


def measure(fns: dict, pairs: int) -> dict:
    names = list(fns)
    for fn in fns.values():  # warm-up
        fn()
    times = {n: [] for n in names}
    for i in range(pairs):
        for n in names if i % 2 == 0 else names[::-1]:
            t0 = time.process_time()
            fns[n]()
            times[n].append(time.process_time() - t0)
    return times


def ratio(times, a, b) -> str:
    r = sorted(x / y for x, y in zip(times[a], times[b], strict=False))
    q = statistics.quantiles(r, n=4) if len(r) > 1 else [r[0]] * 3
    return f"{statistics.median(r):.3f} (IQR {q[0]:.3f}-{q[2]:.3f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=SHAPES, default="small", help="model and batch shape (default: small)")
    ap.add_argument("--pairs", type=int, default=9, help="rounds of alternated samples (default: 9)")
    ap.add_argument("--before", metavar="REV", help="also time the course package as of this git revision")
    ap.add_argument("--profile", action="store_true", help="print the top ops of one step of each model")
    ap.add_argument(
        "--same-optimizer",
        action="store_true",
        help="give the course models nanoGPT's optimizer too (compares the models alone)",
    )
    ap.add_argument(
        "--ablate",
        action="store_true",
        help="also time the course model with one q/k/v matmul, and with written-out norms",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    overrides, B, T = SHAPES[args.shape]
    contenders = {"course": course_package(None)}
    if args.before:
        contenders["before"] = course_package(args.before)
    models = {name: course_model(pkg, overrides) for name, pkg in contenders.items()}
    models["nanogpt"] = nanogpt_from_course(models["course"])
    if "before" in models:
        models["before"].load_state_dict(models["course"].state_dict())
    if args.ablate:
        pkg = contenders["course"]
        models["fused_qkv"] = course_model(pkg, overrides)
        stack_qkv(models["fused_qkv"])
        models["written_ln"] = course_model(pkg, overrides)
        for m in models["written_ln"].modules():
            if hasattr(m, "fused"):
                m.fused = False
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, overrides["vocab_size"], (B, T), generator=g)
    targets = torch.randint(0, overrides["vocab_size"], (B, T), generator=g)
    losses = {n: first_loss(m, idx, targets, n == "nanogpt") for n, m in models.items()}
    print(f"shape {args.shape}: {overrides}, B={B}, T={T}; torch {torch.__version__}, 1 thread")
    print("initial losses (must agree):", {n: round(v, 6) for n, v in losses.items()})
    assert max(losses.values()) - min(losses.values()) < 1e-4, losses
    pkgs = {**contenders, "fused_qkv": contenders["course"], "written_ln": contenders["course"]}
    opts = {
        n: nanogpt_optimizer(m) if n == "nanogpt" or args.same_optimizer else course_optimizer(m, pkgs[n])
        for n, m in models.items()
    }
    print("optimizers:", {n: "fused" if o.defaults.get("fused") else "foreach" for n, o in opts.items()})
    fns = {n: step_fn(m, idx, targets, n == "nanogpt", opts[n]) for n, m in models.items()}
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for n, fn in fns.items():
            fn()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn()
            print(f"--- {n}")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
        return 0
    times = measure(fns, args.pairs)
    for n, ts in times.items():
        print(f"  {n:<8} median step {1e3 * statistics.median(ts):8.1f} ms CPU")
    print(f"course / nanoGPT step time: {ratio(times, 'course', 'nanogpt')}")
    for other in ("before", "fused_qkv", "written_ln"):
        if other in times:
            print(f"{other} / nanoGPT step time: {ratio(times, other, 'nanogpt')}")
            print(f"course / {other} step time: {ratio(times, 'course', other)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
