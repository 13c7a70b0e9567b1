"""Grading harness of the exercise notebook: a quiet, deterministic kernel, the references and the
comparisons.

The learner's notebook imports it for the visible tests (`course check`, Validate): its first locked cell runs
`import torch; from course.grading import harness as H; H.setup()`. `course grade` imports it on the trusted
side, where every test (visible and hidden) runs against values brought back from the jail; there it never
shares a process with learner code.
- `setup()` seeds every RNG, uses one CPU thread, silences warnings (and, in a kernel, sends stderr to
  stdout so noise never costs points);
- tests compare through `expect_close` / `expect_equal` / `expect_mask` / `expect_number` /
  `expect_value`, and on failure name the likely mistake from `course.grading.diagnoses`;
- references come from `ref` (`course` functions), evaluated in float64.
"""

from __future__ import annotations

import builtins
import math
import os
import random
import subprocess
import sys
import types
import warnings

import numpy as np
import torch

from course import attention, blocks, config, costs, feedforward, masks, norms
from course.grading import capstone, diagnoses, planted

NAMESPACE = ("H", "torch")  # notebook globals the test cells use
_MISSING = object()
ATOL, RTOL = 1e-5, 1e-4  # float32 answers against float64 references

# Captured references: tests call these, never whatever the module attribute is bound to at test time.
ref = types.SimpleNamespace(
    **{
        name: getattr(m, name)
        for m, names in (
            (
                attention,
                (
                    "scaled_dot_product_attention",
                    "attention_scores",
                    "softmax_rows",
                    "split_heads",
                    "merge_heads",
                    "repeat_kv",
                    "MultiHeadAttention",
                ),
            ),
            (masks, ("causal_mask", "padding_mask", "encoder_mask", "decoder_mask", "cross_mask", "combine")),
            (norms, ("layer_norm", "rms_norm", "LayerNorm", "RMSNorm")),
            (
                costs,
                (
                    "attention_params",
                    "mlp_params",
                    "kv_cache_bytes",
                    "kv_cache_bytes_for",
                    "bytes_per_element",
                ),
            ),
            (blocks, ("Block",)),
            (feedforward, ("MLP", "SwiGLU")),
            (config, ("ModelConfig",)),
            (planted, ("SuspectBlock",)),
        )
        for name in names
    }
)
diag = diagnoses
cap = capstone  # the capstone's references and mistake signatures


_allclose, _equal, _isnan = torch.allclose, torch.equal, torch.isnan
_isinstance, _len, _type, _float, _int = (
    builtins.isinstance,
    builtins.len,
    builtins.type,
    builtins.float,
    builtins.int,
)


def _in_kernel() -> bool:
    return _type(sys.stdout).__module__.startswith("ipykernel")


def setup(seed: int = 0) -> None:
    """Run by the notebook's first locked cell, before any learner code."""
    os.environ["PYTHONWARNINGS"] = "ignore"
    warnings.simplefilter("ignore")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    torch.set_printoptions(precision=4, sci_mode=False)
    if _in_kernel():
        sys.stderr = sys.stdout  # a warning or a progress bar must never zero a test cell
        _track_cells()
        _show_verdicts()


_ran: dict[str, str] = {}  # cell id -> the source of its last run in this kernel


def _remember(info) -> None:
    if getattr(info, "cell_id", None):  # JupyterLab sends each cell's id with its code
        _ran[info.cell_id] = info.raw_cell


def _track_cells() -> None:
    """Remember, from now on, the source of each cell run (`self_check` compares it with the saved file)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None and _remember not in shell.events.callbacks["pre_run_cell"]:
        shell.events.register("pre_run_cell", _remember)


def _is_test_cell(source: str) -> bool:
    return source.lstrip().startswith("# Visible test")  # every graded test cell opens so


def _tick(result) -> None:
    """After a test cell ran without an error: say so (a silent pass reads like nothing happened)."""
    if result.success and _is_test_cell(result.info.raw_cell):
        print("✓ passed")


def _verdict(shell, etype, value, tb, tb_offset=None) -> None:
    """Show a failed check of this harness as the learner should read it: the likely mistake first, then the
    test cell's line that made the check, no frames inside the harness. Any other AssertionError: IPython's
    own traceback. The error output keeps its ename and evalue (`course check` and Validate read them)."""
    frames = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    if frames and frames[-1].tb_frame.f_code.co_filename == __file__:
        import linecache

        cell = [f for f in frames if f.tb_frame.f_code.co_filename != __file__][-1:]
        where = [
            f"  (test cell, line {f.tb_lineno}: "
            f"{linecache.getline(f.tb_frame.f_code.co_filename, f.tb_lineno).strip()})"
            for f in cell
        ]
        stb = [f"✗ {diagnoses.diagnosis_first(str(value))}", *where]
    else:
        stb = shell.InteractiveTB.structured_traceback(etype, value, frames[0] if frames else None, tb_offset)
    shell._showtraceback(etype, value, stb)


def _show_verdicts() -> None:
    """In a kernel: harness failures print as verdicts, passing test cells print a tick."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return
    shell.set_custom_exc((AssertionError,), _verdict)
    if _tick not in shell.events.callbacks["post_run_cell"]:
        shell.events.register("post_run_cell", _tick)


def unsaved_cells(path: str) -> list[str]:
    """Ids of the code cells whose last run in this kernel differs from their source in the saved file."""
    import nbformat

    try:
        saved = {
            c.get("id"): c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"
        }
    except (OSError, ValueError):
        return []
    return [i for i, source in _ran.items() if i in saved and saved[i].strip() != source.strip()]


# --- comparisons
# ---------------------------------------------------------------------------------------------
def _tensor(value, name: str) -> torch.Tensor:
    if _type(value) is torch.Tensor:
        return value
    if _isinstance(value, torch.Tensor):
        raise AssertionError(f"{name}: return a plain torch.Tensor, not a {_type(value).__name__}")
    raise AssertionError(f"{name}: expected a torch.Tensor, got {_type(value).__name__}")


def _matches(actual: torch.Tensor, wrong, atol: float, rtol: float) -> bool:
    if _type(wrong) is not torch.Tensor or tuple(actual.shape) != tuple(wrong.shape):
        return False
    if actual.dtype == torch.bool or wrong.dtype == torch.bool:
        return _equal(actual.to(torch.bool), wrong.to(torch.bool))
    return _allclose(actual.detach().double(), wrong.detach().double(), rtol=rtol, atol=atol, equal_nan=True)


def _diagnosis(actual, variants, atol: float = ATOL, rtol: float = RTOL) -> str:
    """' Likely mistake: ...' for the first variant `actual` equals: within the tolerance the check itself
    grants the right answer (a tighter one would miss a mistake on a CPU that rounds differently)."""
    number = (int, float, np.integer, np.floating)
    for key, wrong in (variants or {}).items():
        if _type(actual) is torch.Tensor:
            same = _matches(actual, wrong, atol, rtol)
        elif _isinstance(actual, number) and _isinstance(wrong, number):
            same = math.isclose(_float(actual), _float(wrong), rel_tol=1e-6)
        else:
            same = wrong is not None and actual == wrong
        if same:
            return f" Likely mistake: {diagnoses.message(key)}"
    return ""


def _fail(name: str, what: str, actual, variants, atol: float = ATOL, rtol: float = RTOL) -> None:
    raise AssertionError(f"{name}: {what}.{_diagnosis(actual, variants, atol, rtol)}")


def expect_close(
    actual, expected, name: str, variants: dict | None = None, atol: float = ATOL, rtol: float = RTOL
) -> None:
    """Floating tensors: same shape, finite where the reference is, within tolerance of the float64
    reference."""
    actual, expected = _tensor(actual, name), _tensor(expected, f"{name} (reference)")
    if not actual.dtype.is_floating_point:
        raise AssertionError(f"{name}: expected a floating-point tensor, got dtype {actual.dtype}")
    if tuple(actual.shape) != tuple(expected.shape):
        _fail(
            name,
            f"shape {tuple(actual.shape)}, expected {tuple(expected.shape)}",
            actual,
            variants,
            atol,
            rtol,
        )
    a, e = actual.detach().double(), expected.detach().double()
    if (_isnan(a) & ~_isnan(e)).any().item():
        _fail(name, "contains NaN where the reference is a number", actual, variants, atol, rtol)
    if not _allclose(a, e, rtol=rtol, atol=atol, equal_nan=True):
        err = (a - e).abs().nan_to_num(math.inf)
        _fail(
            name,
            f"differs from the reference (max |error| {err.max().item():.3g} at index "
            f"{tuple(int(i) for i in np.unravel_index(err.argmax().item(), tuple(a.shape)))}; "
            f"tolerance atol={atol}, "
            f"rtol={rtol})",
            actual,
            variants,
            atol,
            rtol,
        )


def expect_mask(actual, expected, name: str, variants: dict | None = None) -> None:
    """Boolean masks. `expected` has the full scores shape; `actual` may be any shape that broadcasts to
    it."""
    actual, expected = _tensor(actual, name), _tensor(expected, f"{name} (reference)")
    if actual.dtype != torch.bool:
        raise AssertionError(
            f"{name}: masks are torch.bool tensors (True = may attend), got dtype {actual.dtype}"
        )
    if not _broadcasts(actual, expected):
        _fail(
            name,
            f"shape {tuple(actual.shape)} does not broadcast to the scores' shape {tuple(expected.shape)}",
            actual,
            variants,
        )
    a = actual.expand(expected.shape)
    if not _equal(a, expected):
        wrong = {k: v.expand(expected.shape) for k, v in (variants or {}).items() if _broadcasts(v, expected)}
        bad = tuple((a != expected).nonzero()[0].tolist())
        _fail(
            name,
            f"differs from the expected mask (first difference at index {bad}: got {a[bad].item()}, "
            f"expected {expected[bad].item()})",
            a,
            wrong,
        )


def _broadcasts(x, y: torch.Tensor) -> bool:
    try:
        return _type(x) is torch.Tensor and tuple(torch.broadcast_shapes(x.shape, y.shape)) == tuple(y.shape)
    except RuntimeError:
        return False


def expect_equal(actual, expected, name: str, variants: dict | None = None) -> None:
    """Exact numbers (counts, bytes): an int, or a float / 0-d tensor holding a whole number."""
    value = actual.item() if _isinstance(actual, torch.Tensor) and actual.numel() == 1 else actual
    if _isinstance(value, bool) or not _isinstance(value, (int, float, np.integer, np.floating)):
        raise AssertionError(f"{name}: expected a number, got {_type(actual).__name__}")
    if _float(value) != _float(expected):
        _fail(name, f"got {value:,}, expected {expected:,}", value, variants)


def expect_number(
    actual, expected: float, name: str, variants: dict | None = None, rtol: float = 1e-6
) -> None:
    """A real number within relative tolerance `rtol`."""
    if _isinstance(actual, bool) or not _isinstance(actual, (int, float, np.integer, np.floating)):
        raise AssertionError(f"{name}: expected a number, got {_type(actual).__name__}")
    if not math.isclose(_float(actual), _float(expected), rel_tol=rtol):
        _fail(name, f"got {actual:.6g}, expected {expected:.6g}", actual, variants)


def expect_unchanged(before: torch.Tensor, after: torch.Tensor, name: str) -> None:
    """The learner's function must not modify its inputs in place."""
    if not _equal(before, after):
        raise AssertionError(f"{name}: {diagnoses.message('input_modified')}")


def expect_value(actual, expected, name: str, variants: dict | None = None) -> None:
    """Plain Python values (strings, sets) compared with ==."""
    if _type(actual) is not _type(expected) or actual != expected:
        _fail(name, f"got {actual!r}", actual, variants)


def f64(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Detached float64 copies: references and diagnoses are computed in float64."""
    return tuple(t.detach().double() for t in tensors)


def perturb(module: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """Add seeded noise to every parameter (in place), so that parts built alike (ln1, ln2) differ."""
    with torch.no_grad():
        for i, p in enumerate(module.parameters()):
            p.add_(randn(*p.shape, seed=seed * 1000 + i, dtype=p.dtype) * scale)
    return module


def randn(*shape: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    """Test inputs from a private generator, so the learner's use of the global RNG never changes them."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def decode_reference(q, k_new, v_new, k_cache, v_cache) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exercise 8: (output, keys, values) of one cached decoding step — the new token's row of causal GQA
    attention over the cached positions and itself, each KV head serving its group of query heads."""
    k, v = torch.cat([k_cache, k_new], -2), torch.cat([v_cache, v_new], -2)  # (B, H_kv, T + 1, d_head)
    group = q.shape[-3] // k.shape[-3]
    mask = ref.causal_mask(1, k.shape[-2])  # the last position: every key allowed
    out, _ = ref.scaled_dot_product_attention(q, ref.repeat_kv(k, group), ref.repeat_kv(v, group), mask=mask)
    return out, k, v


def decode_inputs(B: int, n_heads: int, n_kv_heads: int, T: int, d_head: int, *, seed: int):
    """Exercise 8: (q, k_new, v_new, k_cache, v_cache) of one decoding step after T cached positions."""
    return (
        randn(B, n_heads, 1, d_head, seed=seed),
        randn(B, n_kv_heads, 1, d_head, seed=seed + 1),
        randn(B, n_kv_heads, 1, d_head, seed=seed + 2),
        randn(B, n_kv_heads, T, d_head, seed=seed + 3),
        randn(B, n_kv_heads, T, d_head, seed=seed + 4),
    )


class _Sealed(torch.nn.Module):
    """A block the learner may call and measure (`d_model`), but not look inside."""

    def __init__(self, block: torch.nn.Module, d_model: int):
        super().__init__()
        self.__dict__["_block"] = block  # not a child module: its parts never cross to the jail
        self.d_model = d_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.__dict__["_block"](x)


def sealed(block: torch.nn.Module, d_model: int) -> torch.nn.Module:
    """Exercise 7: `block` as a callable of width `d_model` whose parts and settings stay hidden."""
    return _Sealed(block, d_model)


def expect_check(check, bug: str, **model_kwargs) -> None:
    """Exercise 10: `check` must pass the correct model and flag the model with the planted `bug`."""
    planted.expect_check(check, bug, **model_kwargs)


def self_check(path: str | None = None) -> None:
    """The notebook's last cell: run `course check` on the saved notebook in a fresh kernel."""
    if os.environ.get("NBGRADER_EXECUTION") or os.environ.get("COURSE_CHECK"):
        return  # grading, or already inside `course check`
    path = path or os.environ.get("JPY_SESSION_NAME") or "exercises.ipynb"
    unsaved = unsaved_cells(path)
    if unsaved:
        print(
            f"Not checked: you changed and ran {', '.join(unsaved)} since the last save, and the check reads "
            "the saved file. Save the notebook (Ctrl+S), then run this cell again."
        )
        return
    print(f"Checking the saved {os.path.basename(path)} in a fresh kernel (save it first) ...", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "course", "check", path],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    print(done.stdout or done.stderr)
