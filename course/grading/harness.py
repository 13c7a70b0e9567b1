"""Grading harness of the exercise notebook: a quiet, deterministic kernel and comparisons learner code cannot bend.

Contract (the notebook's first locked cell runs `import torch; from course.grading import harness as H; H.setup()`):
- importing this module snapshots, before any learner code runs, every binding the tests rely on (`WATCHED`:
  torch / numpy / math / builtins comparison functions, `torch.Tensor` operators, every function of the `course`
  modules used as references, this module's own helpers) plus the `sys.modules` entries of their modules;
- `setup()` seeds every RNG, uses one CPU thread, silences warnings (and, in a kernel, sends stderr to stdout so
  noise never costs points) and records the notebook names the tests use (`H`, `torch`);
- tests compare through `expect_close` / `expect_equal` / `expect_mask`, which call the captured originals and,
  on failure, name the likely mistake from `course.grading.diagnoses`;
- references come from `ref` (captured `course` functions), evaluated in float64;
- `integrity_report()` lists every snapshotted binding that has changed (or was defined in the notebook);
- hidden tests call the learner's function inside `with own_work(exercise):`, which fails the test when that call
  ran the library the exercise asks the learner to implement (`FORBIDDEN`, the one list per exercise).
"""
from __future__ import annotations

import builtins
import functools
import importlib
import inspect
import math
import os
import random
import subprocess
import sys
import threading
import types
import warnings
from typing import NamedTuple, Self

import numpy as np
import torch

from course import attention, blocks, config, costs, feedforward, masks, norms
from course.grading import diagnoses, planted

WATCHED = {  # owner: attributes whose bindings the tests rely on
    "builtins": ("abs", "all", "any", "bool", "callable", "dict", "float", "getattr", "hasattr", "int",
                 "isinstance", "issubclass", "len", "list", "max", "min", "print", "range", "repr", "round",
                 "set", "sorted", "str", "sum", "tuple", "type", "zip", "AssertionError", "Exception",
                 "NotImplementedError", "__import__", "__build_class__"),
    "math": ("isclose", "isfinite", "isnan", "sqrt"),
    "torch": ("allclose", "isclose", "equal", "as_tensor", "tensor", "broadcast_tensors", "broadcast_shapes", "isnan",
              "softmax", "matmul", "ones", "zeros", "randn", "Generator", "manual_seed", "where", "tril", "triu",
              "Tensor", "nn", "testing", "float64", "float32", "bool"),
    "torch.Tensor": ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__float__",
                     "__int__", "__index__", "__len__", "__getitem__", "__matmul__", "__mul__", "__add__",
                     "__sub__", "__truediv__", "__invert__", "__and__", "allclose", "equal", "isclose", "all",
                     "any", "item", "tolist", "to", "double", "float", "abs", "max", "sum", "clone", "detach",
                     "softmax", "masked_fill", "transpose", "view", "reshape", "expand", "shape", "dtype"),
    "torch.testing": ("assert_close",),
    "torch.nn.functional": ("softmax", "layer_norm", "scaled_dot_product_attention", "gelu", "silu", "linear"),
    "torch.nn.Module": ("__call__", "forward", "parameters", "state_dict", "load_state_dict"),
    "torch.nn.Linear": ("forward",),
    "numpy": ("allclose", "isclose", "array_equal"),
    "numpy.testing": ("assert_allclose", "assert_array_equal", "assert_equal"),
    "course.grading.harness._OwnWork": ("__enter__", "__exit__"),
    "course.grading.harness._Watch": ("__call__", "_python", "_c"),
}
COURSE_MODULES = ("course.attention", "course.masks", "course.norms", "course.costs", "course.blocks",
                  "course.feedforward", "course.config", "course.grading.diagnoses", "course.grading.planted",
                  "course.grading.harness")
NAMESPACE = ("H", "torch")  # notebook globals the test cells use
_MISSING = object()
ATOL, RTOL = 1e-5, 1e-4  # float32 answers against float64 references

# Captured references: tests call these, never whatever the module attribute is bound to at test time.
ref = types.SimpleNamespace(
    **{name: getattr(m, name) for m, names in (
        (attention, ("scaled_dot_product_attention", "attention_scores", "softmax_rows", "split_heads",
                     "merge_heads", "MultiHeadAttention")),
        (masks, ("causal_mask", "padding_mask", "encoder_mask", "decoder_mask", "cross_mask", "combine")),
        (norms, ("layer_norm", "rms_norm", "LayerNorm", "RMSNorm")),
        (costs, ("attention_params", "mlp_params", "kv_cache_bytes", "kv_cache_bytes_for", "bytes_per_element")),
        (blocks, ("Block",)), (feedforward, ("MLP", "SwiGLU")), (config, ("ModelConfig",)),
        (planted, ("SuspectBlock",)),
    ) for name in names})
diag = diagnoses


def _owner(path: str):
    try:
        return importlib.import_module(path)
    except ImportError:
        module, attr = path.rsplit(".", 1)
        return getattr(_owner(module), attr)


def _take_snapshot() -> dict[str, tuple[object, str, object]]:
    snap = {}
    for path, attrs in WATCHED.items():
        owner = _owner(path)
        for attr in attrs:
            snap[f"{path}.{attr}"] = (owner, attr, inspect.getattr_static(owner, attr))
    for path in COURSE_MODULES:
        module = sys.modules.get(path) or importlib.import_module(path)
        for attr, value in vars(module).items():
            kept = (inspect.isfunction(value) or inspect.isclass(value) or inspect.isbuiltin(value)
                    or isinstance(value, (dict, types.MappingProxyType, types.ModuleType)))
            if isinstance(value, types.SimpleNamespace):  # `ref`: the namespace and each reference in it
                kept = True
                snap.update({f"{path}.{attr}.{name}": (value, name, obj) for name, obj in vars(value).items()})
            if kept and not attr.startswith("__"):
                snap[f"{path}.{attr}"] = (module, attr, value)
    return snap


def _modules() -> dict[str, types.ModuleType]:
    names = [p for p in WATCHED if isinstance(_owner(p), types.ModuleType)] + list(COURSE_MODULES)
    return {n: sys.modules[n] for n in names if n in sys.modules}


_SNAPSHOT: dict[str, tuple[object, str, object]] = {}
_SYS_MODULES: dict[str, types.ModuleType] = {}
_NAMESPACE: tuple[dict, dict] | None = None  # (notebook globals, {name: object at setup})
_allclose, _equal, _isnan = torch.allclose, torch.equal, torch.isnan
_isinstance, _len, _type, _float, _int = builtins.isinstance, builtins.len, builtins.type, builtins.float, builtins.int


def _in_kernel() -> bool:
    return _type(sys.stdout).__module__.startswith("ipykernel")


def setup(seed: int = 0) -> None:
    """Run by the notebook's first locked cell, before any learner code."""
    global _NAMESPACE
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
    ns = sys._getframe(1).f_globals
    if _NAMESPACE is None or _NAMESPACE[0] is not ns:
        _NAMESPACE = (ns, {n: ns[n] for n in NAMESPACE if n in ns})


def _defined_in_notebook(obj) -> bool:
    code = getattr(obj, "__code__", None)
    return getattr(obj, "__module__", None) == "__main__" or (
        code is not None and not os.path.isabs(code.co_filename) or "ipykernel" in getattr(code, "co_filename", ""))


def integrity_report() -> list[str]:
    """One line per snapshotted binding that no longer holds its original object (empty: untouched)."""
    problems = []
    for name, (owner, attr, original) in _SNAPSHOT.items():
        now = inspect.getattr_static(owner, attr, _MISSING)
        if now is not original:
            problems.append(f"{name} was rebound")
        elif name.split(".")[0] != "course" and _defined_in_notebook(original):
            problems.append(f"{name} was replaced before the grading harness was imported")
    for name, module in _SYS_MODULES.items():
        if sys.modules.get(name) is not module:
            problems.append(f"sys.modules[{name!r}] was replaced")
    if _NAMESPACE is not None:
        ns, names = _NAMESPACE
        problems += [f"notebook name {n!r} was rebound" for n, obj in names.items() if ns.get(n, _MISSING) is not obj]
    return problems


# --- comparisons ---------------------------------------------------------------------------------------------
def _tensor(value, name: str) -> torch.Tensor:
    if _type(value) is torch.Tensor:
        return value
    if _isinstance(value, torch.Tensor):
        raise AssertionError(f"{name}: return a plain torch.Tensor, not a {_type(value).__name__}")
    raise AssertionError(f"{name}: expected a torch.Tensor, got {_type(value).__name__}")


def _matches(actual: torch.Tensor, wrong) -> bool:
    if _type(wrong) is not torch.Tensor or tuple(actual.shape) != tuple(wrong.shape):
        return False
    if actual.dtype == torch.bool or wrong.dtype == torch.bool:
        return _equal(actual.to(torch.bool), wrong.to(torch.bool))
    return _allclose(actual.detach().double(), wrong.detach().double(), rtol=RTOL, atol=ATOL, equal_nan=True)


def _diagnosis(actual, variants) -> str:
    number = (int, float, np.integer, np.floating)
    for key, wrong in (variants or {}).items():
        if _type(actual) is torch.Tensor:
            same = _matches(actual, wrong)
        elif _isinstance(actual, number) and _isinstance(wrong, number):
            same = math.isclose(_float(actual), _float(wrong), rel_tol=1e-6)
        else:
            same = wrong is not None and actual == wrong
        if same:
            return f" Likely mistake: {diagnoses.message(key)}"
    return ""


def _fail(name: str, what: str, actual, variants) -> None:
    raise AssertionError(f"{name}: {what}.{_diagnosis(actual, variants)}")


def expect_close(actual, expected, name: str, variants: dict | None = None, atol: float = ATOL,
                 rtol: float = RTOL) -> None:
    """Floating tensors: same shape, finite where the reference is, within tolerance of the float64 reference."""
    actual, expected = _tensor(actual, name), _tensor(expected, f"{name} (reference)")
    if not actual.dtype.is_floating_point:
        raise AssertionError(f"{name}: expected a floating-point tensor, got dtype {actual.dtype}")
    if tuple(actual.shape) != tuple(expected.shape):
        _fail(name, f"shape {tuple(actual.shape)}, expected {tuple(expected.shape)}", actual, variants)
    a, e = actual.detach().double(), expected.detach().double()
    if (_isnan(a) & ~_isnan(e)).any().item():
        _fail(name, "contains NaN where the reference is a number", actual, variants)
    if not _allclose(a, e, rtol=rtol, atol=atol, equal_nan=True):
        err = (a - e).abs().nan_to_num(math.inf)
        _fail(name, f"differs from the reference (max |error| {err.max().item():.3g} at index "
                    f"{tuple(np.unravel_index(err.argmax().item(), tuple(a.shape)))}; tolerance atol={atol}, "
                    f"rtol={rtol})", actual, variants)


def expect_mask(actual, expected, name: str, variants: dict | None = None) -> None:
    """Boolean masks. `expected` has the full scores shape; `actual` may be any shape that broadcasts to it."""
    actual, expected = _tensor(actual, name), _tensor(expected, f"{name} (reference)")
    if actual.dtype != torch.bool:
        raise AssertionError(f"{name}: masks are torch.bool tensors (True = may attend), got dtype {actual.dtype}")
    if not _broadcasts(actual, expected):
        _fail(name, f"shape {tuple(actual.shape)} does not broadcast to the scores' shape {tuple(expected.shape)}",
              actual, variants)
    a = actual.expand(expected.shape)
    if not _equal(a, expected):
        wrong = {k: v.expand(expected.shape) for k, v in (variants or {}).items() if _broadcasts(v, expected)}
        bad = tuple((a != expected).nonzero()[0].tolist())
        _fail(name, f"differs from the expected mask (first difference at index {bad}: got {a[bad].item()}, "
                    f"expected {expected[bad].item()})", a, wrong)


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


def expect_number(actual, expected: float, name: str, variants: dict | None = None, rtol: float = 1e-6) -> None:
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


def randn(*shape: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    """Test inputs from a private generator, so the learner's use of the global RNG never changes them."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def expect_check(check, bug: str, **model_kwargs) -> None:
    """Exercise 10: `check` must pass the correct model and flag the model with the planted `bug`."""
    planted.expect_check(check, bug, **model_kwargs)


# --- own work: an answer must not run the library its exercise asks the learner to implement -------------------
class Forbidden(NamedTuple):
    task: str  # "exercise N asks you to <task>"
    library: tuple[str, ...]  # dotted paths: a package or module (all its code), a class or a function
    ops: tuple[str, ...] = ()  # parts of torch builtin / ATen op names, also caught when called from C++


_ATTENTION = ("course", "torch.nn.functional.scaled_dot_product_attention",
              "torch.nn.functional.multi_head_attention_forward", "torch.nn.MultiheadAttention",
              "torch.nn.modules.transformer")
_ATTENTION_OPS = ("scaled_dot_product", "multi_head_attention", "flash_attention", "efficient_attention",
                  "transformer_encoder_layer")
_NORMS = ("course", "torch.nn.functional.layer_norm", "torch.nn.functional.rms_norm", "torch.nn.functional.group_norm",
          "torch.nn.functional.batch_norm", "torch.nn.functional.instance_norm", "torch.nn.modules.normalization",
          "torch.nn.modules.batchnorm", "torch.nn.modules.instancenorm")
FORBIDDEN = types.MappingProxyType({
    "ex01": Forbidden("compute attention yourself", _ATTENTION, _ATTENTION_OPS),
    "ex02": Forbidden("build the causal mask and the masked softmax yourself", _ATTENTION, _ATTENTION_OPS),
    "ex03": Forbidden("split and merge the heads yourself", _ATTENTION),
    "ex04": Forbidden("count the projections' parameters yourself", _ATTENTION),
    "ex05": Forbidden("count the MLP's parameters yourself", _ATTENTION),
    "ex06": Forbidden("compute LayerNorm and RMSNorm yourself", _NORMS,
                      ("layer_norm", "rms_norm", "group_norm", "batch_norm", "instance_norm")),
    "ex07": Forbidden("wire the Pre-LN and Post-LN blocks yourself",  # the test hands it course norms, attention, MLP
                      ("course.blocks", "course.models", "torch.nn.modules.transformer")),
    "ex08": Forbidden("compute the KV-cache size yourself", ("course",)),
    "ex09": Forbidden("build the masks yourself", ("course", "torch.nn.modules.transformer")),
})
ALLOWED = ("course.config", "course.grading.harness")  # a ModelConfig is an input; the harness runs the check


class _Rules(NamedTuple):
    files: types.MappingProxyType  # source file -> module name: all its code is forbidden
    names: types.MappingProxyType  # (source file, top-level name in it) -> dotted path of a function or class
    c_functions: types.MappingProxyType  # C function -> dotted path
    ops: tuple[str, ...]


def _module_files(module: types.ModuleType) -> dict[str, str]:
    """{source file: module name} of a module, or of every module of a package (imported or not)."""
    found, root = {module.__file__: module.__name__}, os.path.dirname(module.__file__)
    for folder, _, names in os.walk(root) if hasattr(module, "__path__") else ():
        for name in names:
            if name.endswith(".py"):
                dotted = os.path.relpath(os.path.join(folder, name), root)[:-3].replace(os.sep, ".")
                found[os.path.join(folder, name)] = f"{module.__name__}.{dotted}".removesuffix(".__init__")
    files = {}
    for path, dotted in found.items():  # every spelling an imported code object may carry
        loaded = getattr(sys.modules.get(dotted), "__file__", None)
        files.update({p: dotted for p in (path, os.path.realpath(path), loaded) if p})
    return files


def _resolve(rule: Forbidden) -> _Rules:
    files, names, c_functions = {}, {}, {}
    for path in rule.library:
        obj = _owner(path)
        if _isinstance(obj, types.ModuleType):
            files.update(_module_files(obj))
        elif inspect.isclass(obj):
            names[(sys.modules[obj.__module__].__file__, obj.__qualname__.partition(".")[0])] = path
        elif inspect.isfunction(inspect.unwrap(obj)):
            code = inspect.unwrap(obj).__code__
            names[(code.co_filename, code.co_qualname.partition(".")[0])] = path
        else:
            c_functions[obj] = path
    for path in ALLOWED:
        for file in _module_files(importlib.import_module(path)):
            files.pop(file, None)
    return _Rules(*map(types.MappingProxyType, (files, names, c_functions)), rule.ops)


_RULES = types.MappingProxyType({exercise: _resolve(rule) for exercise, rule in FORBIDDEN.items()})
_OP_CALLS = (torch._ops.OpOverloadPacket.__call__.__code__, torch._ops.OpOverload.__call__.__code__)  # torch.ops.*
_SWITCHES = (sys.setprofile, threading.setprofile.__code__)  # calling either inside the answer turns the watch off
_setprofile, _getprofile = sys.setprofile, sys.getprofile
_thread_setprofile, _thread_getprofile = threading.setprofile, threading.getprofile
# torch's legacy RecordFunction profiler: every ATen op, called from Python or C++ (TorchScript, `map` over a torch
# builtin), without Kineto's log lines on stderr
_ops_on = functools.partial(torch._C._autograd._enable_profiler_legacy, torch._C._profiler.ProfilerConfig(
    torch._C._profiler.ProfilerState.CPU, False, False, False, False, False, torch._C._profiler._ExperimentalConfig(),
    ""))
_ops_off = torch._C._autograd._disable_profiler_legacy


def _op_named(name: str, parts: tuple[str, ...]) -> bool:
    for part in parts:
        if part in name:
            return True
    return False


class _Watch:
    """A profile function (sys.setprofile) that records the first forbidden Python or C call it sees."""

    def __init__(self, rules: _Rules):
        self.rules, self.found, self.switched_off, self.open = rules, None, None, True

    def __call__(self, frame, event, arg) -> None:
        if not self.open or self.found is not None:
            return
        try:
            if event == "call":
                self._python(frame, frame.f_code)
            elif event == "c_call":
                self._c(arg)
        except Exception:  # noqa: BLE001, S110 - a profile function that raises is switched off: never raise
            pass

    def _python(self, frame, code) -> None:
        module = self.rules.files.get(code.co_filename)
        top = (code.co_filename, code.co_qualname.partition(".")[0])
        if module is not None:
            self.found = module if code.co_qualname == "<module>" else f"{module}.{code.co_qualname}"
        elif top in self.rules.names:
            self.found = self.rules.names[top]
        elif code in _OP_CALLS and _op_named(name := str(getattr(frame.f_locals.get("self"), "__name__", "")),
                                             self.rules.ops):
            self.found = f"torch.ops.aten.{name}"
        elif code is _SWITCHES[1]:
            self.switched_off = "threading.setprofile"

    def _c(self, function) -> None:
        name = str(getattr(function, "__name__", ""))
        if function is _SWITCHES[0] or "profiler" in name:
            self.switched_off = f"{getattr(function, '__module__', None)}.{name}"
        elif function in self.rules.c_functions:
            self.found = self.rules.c_functions[function]
        elif _op_named(name, self.rules.ops):
            self.found = f"{getattr(function, '__module__', None) or 'torch'}.{name}"


class _OwnWork:
    """The context manager `own_work` returns."""

    def __init__(self, exercise: str):
        self.exercise, self.rules = exercise, _RULES[exercise]

    def __enter__(self) -> Self:
        self.watch, self.previous = _Watch(self.rules), (_getprofile(), _thread_getprofile())
        if self.rules.ops:
            _ops_on()
        _thread_setprofile(self.watch)  # threads the answer starts are watched too
        _setprofile(self.watch)
        return self

    def __exit__(self, *exc) -> bool:
        watch = self.watch
        watch.open = False
        intact = _getprofile() is watch and _thread_getprofile() is watch
        _setprofile(self.previous[0])
        _thread_setprofile(self.previous[1])
        found = watch.found
        if self.rules.ops:
            try:
                ran = [e.name().removeprefix("aten::") for thread in _ops_off() for e in thread if e.kind() == "push"]
            except RuntimeError:  # the answer stopped the op profiler
                intact, ran = False, []
            found = found or next((f"torch.ops.aten.{op}" for op in ran if _op_named(op, self.rules.ops)), None)
        number = _int(self.exercise[2:])
        if watch.switched_off or not intact:
            how = watch.switched_off or "its profilers were replaced or stopped"
            raise AssertionError(f"exercise {number}: your answer switched off the grader's check for library calls"
                                 f" ({how})")
        if found is not None:
            raise AssertionError(f"exercise {number} asks you to {FORBIDDEN[self.exercise].task}; your answer "
                                 f"called {found}")
        return False


def own_work(exercise: str) -> _OwnWork:
    """`with H.own_work("ex01"): out, weights = attention(q, k, v)`: the block fails with an AssertionError when it
    ran what `FORBIDDEN[exercise]` lists (under any name the learner gave it) or switched this check off.
    Keep only the learner's call in the block: references computed inside it would count as the answer's calls."""
    if exercise not in _RULES:
        raise ValueError(f"exercise={exercise!r} has no list of forbidden library calls; expected one of "
                         f"{sorted(_RULES)}")
    return _OwnWork(exercise)


def self_check(path: str | None = None) -> None:
    """The notebook's last cell: run `course check` on the saved notebook in a fresh kernel."""
    if os.environ.get("NBGRADER_EXECUTION") or os.environ.get("COURSE_CHECK"):
        return  # grading, or already inside `course check`
    path = path or os.environ.get("JPY_SESSION_NAME") or "exercises.ipynb"
    print(f"Checking the saved {os.path.basename(path)} in a fresh kernel (save it first) ...", flush=True)
    done = subprocess.run([sys.executable, "-m", "course", "check", path], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    print(done.stdout or done.stderr)


_SNAPSHOT.update(_take_snapshot())
_SYS_MODULES.update(_modules())
