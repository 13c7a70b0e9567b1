"""The sections of `course bench`: course vs Hugging Face, KV cache, attention, rooflines, GQA, GPU."""

from __future__ import annotations

import itertools
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from .. import costs
from ..attention import fused_attention, scaled_dot_product_attention
from ..config import ModelConfig
from ..generation import decode, greedy
from ..kv_cache import KVCache
from ..masks import causal_mask
from ..models import DecoderLM
from .hardware import gpu_peaks
from .timing import Clock, fmt, paired, paired_share


# --- models -------------------------------------------------------------------------------------------------
def _hf_gpt2(config: ModelConfig):
    from transformers import GPT2Config, GPT2LMHeadModel

    c = config
    hf_config = GPT2Config(
        vocab_size=c.vocab_size,
        n_positions=c.context_length,
        n_embd=c.d_model,
        n_layer=c.n_layers,
        n_head=c.n_heads,
        n_inner=None,
        activation_function="gelu_new",
        layer_norm_epsilon=c.norm_eps,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,
    )  # no EOS: n new tokens, unaltered
    return GPT2LMHeadModel(hf_config)


class Bench:
    """One run of the suite: its device, sizes and results."""

    def __init__(self, device: str, quick: bool):
        self.device = torch.device(device)
        self.quick, self.cuda = quick, self.device.type == "cuda"
        self.clock = Clock(self.device)
        self.pairs = 5 if quick else 7
        self.min_time = 0.02 if quick else 0.2
        self.results: dict = {}

    def randint(self, vocab: int, *shape) -> torch.Tensor:
        return torch.randint(0, vocab, shape, device=self.device)

    def log(self, text: str) -> None:
        print(text, flush=True)

    def models(self, preset: str, **overrides):
        """A HF GPT-2 with random weights and the course model converted from it (identical weights)."""
        from ..interop import from_hf

        torch.manual_seed(0)
        hf = _hf_gpt2(ModelConfig.from_preset(preset, **overrides)).to(self.device).eval()
        return hf, from_hf(hf)

    # --- training step against HF GPT-2 at the two shapes of docs/train_step_vs_nanogpt.py ---------------
    def train(self) -> None:
        """One training step (forward, cross-entropy, backward, clip at 1.0, AdamW, zero_grad), course / HF
        time, both sides with the course's `make_optimizer` (fused AdamW, no decay on 1-D tensors): the models
        alone."""
        from ..training import clip_grad_norm, make_optimizer

        shapes = {  # name: (preset, overrides, B, T)
            "4x256": (
                "gpt2-small",
                dict(n_layers=4, d_model=256, n_heads=4, vocab_size=256, context_length=256),
                4,
                256,
            ),
            "gpt2-small": ("gpt2-small", {}, 1, 128),
        }
        if self.quick:
            shapes = {"tiny": ("tiny", {}, 4, 64)}
        self.results["train"] = {}
        for name, (preset, overrides, B, T) in shapes.items():
            hf, course = self.models(preset, **overrides)
            V = course.config.vocab_size
            idx, targets = self.randint(V, B, T), self.randint(V, B, T)

            def step(model, logits_of, idx=idx, targets=targets):
                opt = make_optimizer(model, 1e-4)
                model.train()

                def fn():
                    with self._autocast():
                        logits = logits_of(model(idx))
                        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
                    loss.backward()
                    clip_grad_norm(model, 1.0)
                    opt.step()
                    opt.zero_grad(set_to_none=True)

                return fn

            r = paired(
                self.clock, step(course, lambda x: x), step(hf, lambda x: x.logits), self.pairs, self.min_time
            )
            self.results["train"][name] = {**r, "shape": f"{name} B={B} T={T} AdamW"}
            self.log(
                f"  train {name:<10} course/HF time {fmt(r)}   course {r['a_ms']:.1f} ms, "
                f"HF {r['b_ms']:.1f} ms  B={B} T={T}"
            )
            del hf, course

    # --- 1. course vs Hugging Face --------------------------------------------------------------------------
    def hf(self) -> None:
        shapes = ("tiny",) if self.quick else ("gpt2-small", "tiny")
        self.results["hf"] = {}
        for preset in shapes:
            hf, course = self.models(preset)
            big = preset == "gpt2-small"
            r = {
                "forward": self.hf_forward(hf, course, big),
                "train": self.hf_train(hf, course, big),
                "decode": self.hf_decode(hf, course, big),
            }
            self.results["hf"][preset] = r
            for name, v in r.items():
                self.log(
                    f"  hf {preset:<10} {name:<8} course/HF time {fmt(v)}   "
                    f"course {v['a_ms']:.2f} ms, HF {v['b_ms']:.2f} ms  {v.get('shape', '')}"
                )
            del hf, course
        main = self.results["hf"][shapes[0]]
        for name in ("forward", "train", "decode"):
            self.results[f"hf_{name}_ratio"] = main[name]["median"]

    def _autocast(self):
        return torch.autocast("cuda", torch.bfloat16) if self.cuda else torch.autocast("cpu", enabled=False)

    def hf_forward(self, hf, course, big: bool) -> dict:
        B, T = (8, 1024) if self.cuda and big else (1, 256) if big else (8, 64)
        idx = self.randint(course.config.vocab_size, B, T)

        def run_course():
            with torch.inference_mode(), self._autocast():
                course(idx)

        def run_hf():
            with torch.inference_mode(), self._autocast():
                hf(idx)

        r = paired(self.clock, run_course, run_hf, self.pairs, self.min_time)
        return {**r, "shape": f"B={B} T={T}"}

    def hf_train(self, hf, course, big: bool) -> dict:
        B, T = (8, 1024) if self.cuda and big else (1, 128) if big else (8, 64)
        V = course.config.vocab_size
        idx, targets = self.randint(V, B, T), self.randint(V, B, T)

        def step(model, opt, logits_of):
            def fn():
                with self._autocast():
                    loss = F.cross_entropy(logits_of(model(idx)).flatten(0, 1).float(), targets.flatten())
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            return fn

        # The steps change the weights, and differently on the two sides: Adam turns rounding differences in
        # tiny gradients into steps of size lr. Put the weights back so the decode compares identical models.
        saved = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in (course, hf)]
        course.train(), hf.train()
        opt_c = torch.optim.AdamW(course.parameters(), lr=1e-4)
        opt_h = torch.optim.AdamW(hf.parameters(), lr=1e-4)
        r = paired(
            self.clock,
            step(course, opt_c, lambda x: x),
            step(hf, opt_h, lambda x: x.logits),
            self.pairs,
            self.min_time,
        )
        course.eval(), hf.eval()
        del opt_c, opt_h
        for m, state in zip((course, hf), saved, strict=True):
            m.load_state_dict(state)
        return {**r, "shape": f"B={B} T={T} AdamW"}

    def hf_decode(self, hf, course, big: bool) -> dict:
        """Greedy decode with each library's KV cache, prompt P + n new tokens, batch 1."""
        P, n = (128, 128) if self.cuda and big else (64, 32) if big else (8, 32)
        if self.cuda:
            hf, course = hf.to(torch.bfloat16), course.to(torch.bfloat16)
        prompt = self.randint(course.config.vocab_size, 1, P)
        out = {}

        def run_course():
            out["course"] = course.generate(prompt, n, temperature=0)

        def run_hf():
            with torch.inference_mode():
                out["hf"] = hf.generate(
                    prompt,
                    do_sample=False,
                    max_new_tokens=n,
                    min_new_tokens=n,
                    pad_token_id=0,
                    disable_compile=True,
                )

        r = paired(self.clock, run_course, run_hf, self.pairs, self.min_time)
        if self.cuda:
            hf.float(), course.float()
        return {
            **r,
            "shape": f"prompt {P} + {n} tokens",
            "tokens_match": torch.equal(out["course"], out["hf"]),
        }

    # --- 2. KV cache vs recompute ---------------------------------------------------------------------------
    def decoder(self, preset: str, dtype=None, **overrides) -> DecoderLM:
        torch.manual_seed(0)
        model = DecoderLM(ModelConfig.from_preset(preset, **overrides)).to(self.device).eval()
        return model if dtype is None else model.to(dtype)

    def kv(self) -> None:
        """One decode step at context c: with the cache (c-1 positions stored, 1 new) vs the full c tokens."""
        if self.quick:
            model, contexts = self.decoder("tiny", context_length=256), (64, 256)
        else:
            model, contexts = (
                self.decoder("gpt2-small", torch.bfloat16 if self.cuda else None),
                (64, 256, 512, 1024),
            )
        V = model.config.vocab_size
        out = {}
        for c in contexts:
            idx = self.randint(V, 1, c)
            cache = KVCache.for_model(model, 1, c)
            with torch.inference_mode():
                model(idx[:, :-1], cache=cache)

            def recompute(idx=idx):
                with torch.inference_mode():
                    model(idx, last_only=True)

            r = paired(self.clock, recompute, self._cached_step(model, cache, idx), self.pairs, self.min_time)
            out[str(c)] = r
            self.log(
                f"  kv context {c:<5} recompute/cached {fmt(r)}   cached {r['b_ms']:.2f} ms, "
                f"recompute {r['a_ms']:.2f} ms"
            )
        self.results["kv"] = {"model": "tiny" if self.quick else "gpt2-small", **out}
        self.results["kv_speedup"] = {c: r["median"] for c, r in out.items()}

    # --- 3. fused vs explicit attention ---------------------------------------------------------------------
    def attention(self) -> None:
        lengths = (
            (256, 512) if self.quick else (256, 512, 1024, 2048, 4096) + ((8192, 16384) if self.cuda else ())
        )
        H, d = (4, 64) if self.quick else (12, 64)
        dtype = torch.bfloat16 if self.cuda else torch.float32
        peaks = self.attention_peaks(lengths, H, d, dtype)
        rows = {}
        for T in lengths:
            q, k, v = (torch.randn(1, H, T, d, device=self.device, dtype=dtype) for _ in range(3))
            mask = causal_mask(T, device=self.device)
            with torch.inference_mode():
                r = paired(
                    self.clock,
                    lambda q=q, k=k, v=v, m=mask: _attention_call("explicit", q, k, v, m),
                    lambda q=q, k=k, v=v: _attention_call("fused", q, k, v, None),
                    self.pairs,
                    self.min_time,
                )
            mem = {kind: peaks[kind, T] for kind in ("explicit", "fused")}
            rows[str(T)] = {
                "explicit_ms": r["a_ms"],
                "fused_ms": r["b_ms"],
                "explicit/fused": r,
                "explicit_peak_bytes": mem["explicit"],
                "fused_peak_bytes": mem["fused"],
                "score_bytes_formula": costs.score_memory_bytes(1, H, T, costs.bytes_per_element(dtype)),
            }
            self.log(
                f"  attention T={T:<5} explicit/fused time {fmt(r)}   explicit {r['a_ms']:.1f} ms, fused "
                f"{r['b_ms']:.1f} ms; extra peak {mem['explicit'] / 1e6:.1f} MB vs "
                f"{mem['fused'] / 1e6:.1f} MB"
            )
        keys = list(rows)
        for small, large in itertools.pairwise(keys):
            g = rows[large]
            for kind in ("explicit", "fused"):
                g[f"{kind}_time_growth"] = g[f"{kind}_ms"] / rows[small][f"{kind}_ms"]
                g[f"{kind}_memory_growth"] = g[f"{kind}_peak_bytes"] / max(
                    rows[small][f"{kind}_peak_bytes"], 1
                )
            self.log(
                f"  attention {small}→{large}: memory ×{g['explicit_memory_growth']:.2f} explicit, "
                f"×{g['fused_memory_growth']:.2f} fused; time ×{g['explicit_time_growth']:.2f} explicit, "
                f"×{g['fused_time_growth']:.2f} fused"
            )
        self.results["attention"] = {"heads": H, "d_head": d, "dtype": str(dtype), "by_length": rows}

    def attention_peaks(self, lengths, H: int, d: int, dtype) -> dict:
        """Extra peak bytes of one attention call per (kind, T): the GPU allocator's peak over the inputs, or
        on CPU a fresh process per point (run side by side, before any timing) reporting VmHWM − VmRSS."""
        points = [(kind, T) for T in lengths for kind in ("explicit", "fused")]
        if not self.cuda:
            code = "from course.bench.sections import attention_peak_child as f; f({!r}, {}, {}, {})"
            procs = {
                p: subprocess.Popen(
                    [sys.executable, "-c", code.format(*p, H, d)], stdout=subprocess.PIPE, text=True
                )
                for p in points
            }
            return {p: int(proc.communicate()[0].split()[-1]) for p, proc in procs.items()}
        out = {}
        for kind, T in points:
            q, k, v = (torch.randn(1, H, T, d, device=self.device, dtype=dtype) for _ in range(3))
            mask = causal_mask(T, device=self.device)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            with torch.inference_mode():
                _attention_call(kind, q, k, v, mask)
            torch.cuda.synchronize()
            out[kind, T] = torch.cuda.max_memory_allocated() - base
        return out

    # --- 4. rooflines ---------------------------------------------------------------------------------------
    def roofline(self) -> None:
        """Decode tokens/s as a share of bandwidth / bytes-per-token; a training step as a share of GEMM
        FLOP/s."""
        preset = "tiny" if self.quick else "gpt2-small"
        dtype = torch.bfloat16 if self.cuda else torch.float32
        bw = self.bandwidth_probe(dtype)
        gemm = self.gemm_probe(dtype)
        r = {"bandwidth": self.measure_bandwidth(bw), "gemm": self.measure_gemm(gemm)}
        model = self.decoder(preset, dtype)
        r["decode"] = self.decode_share(model, bw)
        r["train"] = self.train_share(self.decoder(preset), gemm)
        self.results["roofline"] = r
        self.results["decode_bandwidth_share"] = r["decode"]["median"]
        self.results["train_flops_share"] = r["train"]["median"]
        self.log(
            f"  roofline bandwidth {r['bandwidth']['copy_GBps']:.1f} GB/s copy, "
            f"{r['bandwidth']['read_GBps']:.1f}"
            f" GB/s read; GEMM {r['gemm']['TFLOPs'] * 1e3:.1f} GFLOP/s ({r['gemm']['dtype']})"
        )
        d, t = r["decode"], r["train"]
        self.log(
            f"  roofline decode {d['tokens_per_s']:.1f} tok/s, {d['bytes_per_token'] / 1e6:.1f} MB/token: "
            f"{fmt(d, '')} of the bandwidth bound"
        )
        self.log(
            f"  roofline train {t['tokens_per_s']:.1f} tok/s, {t['flops_per_token'] / 1e6:.1f} MFLOP/token: "
            f"{fmt(t, '')} of the GEMM rate"
        )

    def bandwidth_probe(self, dtype):
        """A large copy (reads + writes) and a large sum (reads): returns (fn, bytes moved per call) pairs."""
        n = (64 if self.quick else 512) * 2**20 // 4 * (8 if self.cuda else 1)
        a = torch.randn(n, device=self.device)
        b = torch.empty_like(a)
        return {
            "copy": (lambda: b.copy_(a), 2 * a.numel() * a.element_size()),
            "read": (lambda: a.sum(), a.numel() * a.element_size()),
        }

    def measure_bandwidth(self, probe) -> dict:
        out = {}
        for name, (fn, nbytes) in probe.items():
            reps = self.clock.reps_for(fn, self.min_time)
            out[f"{name}_GBps"] = (
                nbytes / statistics.median(self.clock.time(fn, reps) for _ in range(5)) / 1e9
            )
        return out

    def gemm_probe(self, dtype):
        n = 8192 if self.cuda else 512 if self.quick else 2048
        a, b = (torch.randn(n, n, device=self.device, dtype=dtype) for _ in range(2))
        return lambda: a @ b, 2 * n**3, str(dtype), n

    def measure_gemm(self, probe) -> dict:
        fn, flops, dtype, n = probe
        reps = self.clock.reps_for(fn, self.min_time)
        seconds = statistics.median(self.clock.time(fn, reps) for _ in range(5))
        return {"TFLOPs": flops / seconds / 1e12, "dtype": dtype, "n": n}

    def decode_share(self, model, probe) -> dict:
        """Cached greedy decode steps after a prompt, paired with the faster of the copy/read bandwidth
        probes."""
        c = model.config
        P, n = (32, 16) if self.quick else (128, 32)
        bpe = next(model.parameters()).element_size()
        nbytes = costs.decode_bytes_per_token(c, P + n // 2, "fp32" if bpe == 4 else "bf16")
        prompt = self.randint(c.vocab_size, 1, P)
        cache = KVCache.for_model(model, 1, P + n)
        with torch.inference_mode():
            first = greedy(model(prompt, cache=cache, last_only=True)[:, -1])  # (1, 1)

        def run():
            cache.length = P
            with torch.inference_mode():
                decode(lambda new, start: model(new, cache=cache, last_only=True)[:, -1], first, n)

        bws = self.measure_bandwidth(probe)
        limit = probe["copy"] if bws["copy_GBps"] >= bws["read_GBps"] else probe["read"]
        r = paired_share(self.clock, (run, n * nbytes), limit, self.pairs, self.min_time)
        return {
            **r,
            "tokens_per_s": n / (r["work_ms"] / 1e3),
            "bytes_per_token": nbytes,
            "context": P + n // 2,
            "bound": "copy" if limit is probe["copy"] else "read",
        }

    def train_share(self, model, probe) -> dict:
        """A training step (AdamW) in model FLOPs (6N + attention) per second over the same-run GEMM rate."""
        c = model.config
        B, T = (8, 1024) if self.cuda else (8, 32) if self.quick else (1, 128)
        fn_gemm, gemm_flops = probe[0], probe[1]
        idx, targets = self.randint(c.vocab_size, B, T), self.randint(c.vocab_size, B, T)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=self.cuda or None)
        model.train()

        def step():
            with self._autocast():
                loss = F.cross_entropy(model(idx).flatten(0, 1).float(), targets.flatten())
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        flops = costs.training_flops_per_token(c, T) * B * T
        r = paired_share(self.clock, (step, flops), (fn_gemm, gemm_flops), self.pairs, self.min_time)
        return {
            **r,
            "tokens_per_s": B * T / (r["work_ms"] / 1e3),
            "flops_per_token": flops // (B * T),
            "shape": f"B={B} T={T}",
        }

    # --- 5. GQA / MQA ---------------------------------------------------------------------------------------
    def gqa(self) -> None:
        """KV memory of MHA/GQA/MQA (measured bytes vs formula) and a decode step's speed relative to MHA."""
        preset, ctx = ("tiny", 64) if self.quick else ("gpt2-small", 1024)
        dtype = torch.bfloat16 if self.cuda else torch.float32
        H = ModelConfig.from_preset(preset).n_heads
        variants = {"MHA": H, "GQA": H // 4 if H >= 8 else H // 2, "MQA": 1}
        steps, out = {}, {}
        for name, n_kv in variants.items():
            model = self.decoder(preset, dtype, n_kv_heads=n_kv)
            cache = KVCache.for_model(model, 1, ctx)
            idx = self.randint(model.config.vocab_size, 1, ctx)
            with torch.inference_mode():
                model(idx[:, :-1], cache=cache)
            out[name] = {
                "n_kv_heads": n_kv,
                "kv_bytes_measured": costs.measured_cache_bytes(cache),
                "kv_bytes_formula": costs.kv_cache_bytes_for(model.config, ctx, 1, dtype),
            }
            steps[name] = self._cached_step(model, cache, idx)
        for name in ("GQA", "MQA"):
            r = paired(self.clock, steps["MHA"], steps[name], self.pairs, self.min_time)
            out[name]["speedup_vs_MHA"] = r
        for name, v in out.items():
            speed = f"step speed-up vs MHA {fmt(v['speedup_vs_MHA'])}" if "speedup_vs_MHA" in v else ""
            self.log(
                f"  gqa {name} (n_kv={v['n_kv_heads']:<2}) KV {v['kv_bytes_measured'] / 1e6:.2f} MB "
                "measured, "
                f"{v['kv_bytes_formula'] / 1e6:.2f} MB formula  {speed}"
            )
        self.results["gqa"] = {"model": preset, "context": ctx, **out}

    def _cached_step(self, model, cache, idx):
        n = idx.shape[1]

        def step():
            cache.length = n - 1
            with torch.inference_mode():
                model(idx[:, -1:], cache=cache, last_only=True)

        return step

    # --- GPU: MFU, compiled vs eager, static-cache decode ---------------------------------------------------
    def gpu(self) -> None:
        if not self.cuda:
            return
        name = torch.cuda.get_device_name()
        peaks = gpu_peaks(name)
        bw = self.measure_bandwidth(self.bandwidth_probe(torch.bfloat16))
        gemm = self.measure_gemm(self.gemm_probe(torch.bfloat16))
        r = {
            "name": name,
            "peak_bf16_flops": peaks and peaks[0],
            "peak_bandwidth": peaks and peaks[1],
            "bandwidth": bw,
            "gemm": gemm,
        }
        r["train"] = self.gpu_train(peaks, gemm)
        r["decode"] = self.gpu_decode(peaks, bw)
        self.results["gpu"] = r

    def gpu_train(self, peaks, gemm) -> dict:
        """GPT-2 124M training step, bf16 autocast, fused AdamW, SDPA: eager and torch.compile'd."""
        B, T = (4, 256) if self.quick else (16, 1024)
        out = {}
        steps = {}
        for mode in ("eager", "compiled"):
            torch.manual_seed(0)
            model = self.decoder("gpt2-small").train()
            fwd = torch.compile(model) if mode == "compiled" else model
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
            idx = self.randint(model.config.vocab_size, B, T)
            tgt = self.randint(model.config.vocab_size, B, T)

            def step(fwd=fwd, opt=opt, idx=idx, tgt=tgt):
                with torch.autocast("cuda", torch.bfloat16):
                    loss = F.cross_entropy(fwd(idx).flatten(0, 1).float(), tgt.flatten())
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            t0 = time.perf_counter()
            step(), step()
            torch.cuda.synchronize()
            out[f"{mode}_warmup_s"] = time.perf_counter() - t0
            steps[mode] = step
        r = paired(self.clock, steps["eager"], steps["compiled"], self.pairs, self.min_time)
        flops_tok = costs.training_flops_per_token(ModelConfig.from_preset("gpt2-small"), T)
        for mode, ms in (("eager", r["a_ms"]), ("compiled", r["b_ms"])):
            tps = B * T / (ms / 1e3)
            out[mode] = {
                "ms": ms,
                "tokens_per_s": tps,
                "TFLOPs": flops_tok * tps / 1e12,
                "mfu": flops_tok * tps / peaks[0] if peaks else None,
                "share_of_gemm": flops_tok * tps / (gemm["TFLOPs"] * 1e12),
            }
            mfu = f"MFU {out[mode]['mfu']:.1%}" if peaks else "MFU n/a (device not in GPU_PEAKS)"
            self.log(
                f"  gpu train {mode:<8} B={B} T={T}: {ms:.1f} ms/step, {tps:,.0f} tok/s, "
                f"{out[mode]['TFLOPs']:.0f} TFLOP/s, {mfu}, {out[mode]['share_of_gemm']:.1%} of same-run GEMM"
            )
        out["eager/compiled"] = r
        out["shape"] = f"B={B} T={T}"
        self.log(f"  gpu train eager/compiled time {fmt(r)}")
        return out

    def gpu_decode(self, peaks, bw) -> dict:
        """Batch-1 bf16 greedy decode of GPT-2 124M: the eager dynamic cache vs the static cache (eager step,
        CUDA-graph step, torch.compile'd step); HF `generate` with its static cache (compiled) for
        reference."""
        from ..static_decode import StaticDecoder

        hf, model = (m.to(torch.bfloat16) for m in self.models("gpt2-small"))
        c = model.config
        P, n = (32, 32) if self.quick else (128, 256)
        prompt = self.randint(c.vocab_size, 1, P)
        nbytes = costs.decode_bytes_per_token(c, P + n // 2, "bf16")
        runs = {"dynamic": lambda: model.generate(prompt, n, temperature=0)}
        for mode in ("eager", "graph", "compile"):
            dec = StaticDecoder(model, 1, P + n, mode)
            runs[f"static-{mode}"] = lambda dec=dec: dec.generate(prompt, n, temperature=0)
        if not self.quick:
            runs["hf-static-compiled"] = self.hf_static_generate(hf, prompt, n)
        ref = runs["dynamic"]()
        out = {"prompt": P, "new_tokens": n, "bytes_per_token": nbytes, "timed": "whole generate call / n"}
        for name, fn in list(runs.items()):
            t0 = time.perf_counter()
            try:
                match = torch.equal(fn()[:, : P + n], ref)
            except Exception as e:  # noqa: BLE001 — a backend that fails is reported, not fatal
                out[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
                self.log(f"  gpu decode {name}: failed: {out[name]['error']}")
                del runs[name]
                continue
            torch.cuda.synchronize()
            out[name] = {"first_call_s": time.perf_counter() - t0, "tokens_match_dynamic": match}
        base = "static-compile" if "static-compile" in runs else "static-graph"
        for name, fn in runs.items():
            if name != base:
                out[name][f"time/{base}"] = r = paired(self.clock, fn, runs[base], self.pairs, self.min_time)
                out[name]["ms"] = r["a_ms"]
                out[base].setdefault("ms_samples", []).append(r["b_ms"])
        out[base]["ms"] = statistics.median(out[base].pop("ms_samples"))
        for name in runs:
            tps = n / (out[name]["ms"] / 1e3)
            out[name].update(
                tokens_per_s=tps,
                mbu_measured=tps * nbytes / (bw["copy_GBps"] * 1e9),
                mbu_datasheet=tps * nbytes / peaks[1] if peaks else None,
            )
            self.log(
                f"  gpu decode {name:<18} {tps:8.0f} tok/s (prompt {P} + {n}), "
                f"{out[name]['mbu_measured']:.1%} of measured copy bandwidth"
                + (f", {out[name]['mbu_datasheet']:.1%} of datasheet" if peaks else "")
                + f"; tokens match dynamic: {out[name]['tokens_match_dynamic']}"
            )
        return out

    def hf_static_generate(self, hf, prompt, n):
        """HF `generate` with its static cache, which HF compiles on CUDA (`disable_compile` left off)."""

        def run():
            with torch.inference_mode():
                return hf.generate(
                    prompt,
                    do_sample=False,
                    max_new_tokens=n,
                    min_new_tokens=n,
                    pad_token_id=0,
                    cache_implementation="static",
                )

        return run


def _attention_call(kind: str, q, k, v, mask):
    if kind == "explicit":
        return scaled_dot_product_attention(q, k, v, mask)
    return fused_attention(q, k, v, is_causal=True)


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise ValueError(f"{field} not found in /proc/self/status")


def attention_peak_child(kind: str, T: int, H: int, d: int) -> None:
    """Run in a fresh process: print the peak RSS growth (bytes) of one CPU attention call over its inputs."""
    torch.set_num_threads(1)
    q, k, v = (torch.randn(1, H, T, d) for _ in range(3))
    mask = causal_mask(T)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = _proc_status_kb("VmRSS")
    with torch.inference_mode():
        _attention_call(kind, q, k, v, mask)
    print((_proc_status_kb("VmHWM") - base) * 1024)
