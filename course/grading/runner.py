"""The learner's side of grading: runs inside the jail as `python -I runner.py FD`, next to `wire.py` only.

It executes the learner's cells (IPython syntax, so magics work), then serves the trusted grader's requests on
the channel FD until it closes:

    {"op": "call", "name", "args", "kwargs", "forbidden"}
        -> {"op": "result", "value"} | {"op": "result", "error"}
    {"op": "get", "name"}
        -> the same, for a plain value (UNNORMALIZED, ...)

Arguments may hold handles to trusted objects (a suspect model, a LayerNorm); calling one sends a callback
request back and waits for its result. Nothing here is trusted: the learner's code shares this process and may
change any of it. The grader only ever reads data from this side.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import random
import socket
import sys
import types
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import wire  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

OUTPUT_CAP = 1_000_000  # characters of output kept per cell (the grader keeps less, and notes the cut)


class _Capped(io.StringIO):
    def write(self, s) -> int:
        if self.tell() < OUTPUT_CAP:
            super().write(str(s)[: OUTPUT_CAP - self.tell()])
        return len(s)


class _Watch(TorchFunctionMode):
    """Notes the first call of a torch function whose name is in `names` (own work: advisory evidence)."""

    def __init__(self, names):
        super().__init__()
        self.names, self.found = frozenset(names), None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if self.found is None and name in self.names:
            owner = (
                "torch.nn.functional"
                if getattr(torch.nn.functional, name, None) is func
                else (getattr(func, "__module__", None) or "torch")
            )
            self.found = f"{owner}.{name}"
        return func(*args, **(kwargs or {}))


class Remote:
    """A trusted object the learner may call: attributes are plain values, methods and calls go to the
    grader."""

    def __init__(self, channel, tree: dict, decoder: wire.Decoder):
        self._channel, self._id = channel, tree["__handle__"]
        self._type = str(tree.get("type", "object"))
        for name, value in (tree.get("attrs") or {}).items():
            object.__setattr__(self, name, decoder(value))
        for name in tree.get("methods") or ():
            object.__setattr__(self, name, types.MethodType(_method(name), self))
        self._callable = bool(tree.get("callable"))

    def __call__(self, *args, **kwargs):
        if not self._callable:
            raise TypeError(f"'{self._type}' object is not callable")
        return self._channel.callback(self._id, None, args, kwargs)

    def __repr__(self) -> str:
        return f"<{self._type}>"


def _method(name):
    def call(self, *args, **kwargs):
        return self._channel.callback(self._id, name, args, kwargs)

    call.__name__ = name
    return call


class Channel:
    def __init__(self, fd: int):
        self.sock = socket.socket(fileno=fd)

    def send(self, message: dict, value=None, key: str = "value") -> None:
        if value is not None or key in message:
            tree, blobs = wire.encode(value)
            message = {**message, key: tree}
        else:
            blobs = []
        wire.send(self.sock, message, blobs)

    def receive(self):
        message, blobs = wire.receive(self.sock)
        decoder = wire.Decoder(
            blobs,
            handle=lambda tree, dec: Remote(self, tree, dec),
            record=lambda tree, dec: _record(tree, dec),
        )
        return message, decoder

    def callback(self, handle: int, method, args, kwargs):
        tree, blobs = wire.encode([list(args), dict(kwargs)])
        wire.send(self.sock, {"op": "callback", "handle": handle, "method": method, "args": tree}, blobs)
        message, decoder = self.receive()
        if message.get("op") != "callback_result":
            raise RuntimeError("the grader did not answer the callback")
        if "error" in message:
            raise RuntimeError(str(message["error"]))
        return decoder(message.get("value"))


def _record(tree: dict, decoder: wire.Decoder):
    """A read-only record (a ModelConfig): its fields as attributes."""
    fields = {name: decoder(value) for name, value in (tree.get("attrs") or {}).items()}
    cls = type(
        str(tree.get("type", "Record")),
        (types.SimpleNamespace,),
        {
            "__setattr__": lambda self, name, value: (_ for _ in ()).throw(
                AttributeError(f"{name} is read-only")
            )
        },
    )
    record = cls()
    record.__dict__.update(fields)
    return record


def _shell():
    try:
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config
    except ImportError:
        return None
    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "NoColor"
    shell = InteractiveShell.instance(config=config)
    shell.showtraceback = lambda *args, **kwargs: None  # the error's one line goes back with the cell instead
    shell.showsyntaxerror = lambda *args, **kwargs: None
    return shell


def _prelude(ns: dict, seed: int) -> None:
    """What the notebook's locked set-up cell does, without the instructor's harness."""
    warnings.simplefilter("ignore")
    random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    ns.update(
        math=math,
        torch=torch,
        H=types.SimpleNamespace(setup=lambda *a, **k: None, self_check=lambda *a, **k: None),
    )


def run_cells(channel: Channel, cells: list, seed: int):
    shell = _shell()
    ns = shell.user_ns if shell is not None else {"__name__": "__main__"}
    _prelude(ns, seed)
    for number, source in cells:
        channel.send({"op": "cell_start", "cell": number})
        out = _Capped()
        error = None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                if shell is not None:
                    result = shell.run_cell(source, store_history=False)
                    exc = result.error_in_exec or result.error_before_exec
                    if exc is not None:
                        error = f"{type(exc).__name__}: {exc}"
                else:
                    exec(compile(source, f"<cell {number}>", "exec"), ns)
            except BaseException as e:  # noqa: BLE001 - the learner's cell, whatever it raised
                error = f"{type(e).__name__}: {e}"
        channel.send({"op": "cell_done", "cell": number, "error": error, "output": out.getvalue()})
    return ns


def serve(channel: Channel, ns: dict) -> None:
    while True:
        try:
            message, decoder = channel.receive()
        except EOFError:
            return
        name = str(message.get("name", ""))
        if name not in ns:
            channel.send({"op": "result", "error": f"NameError: name {name!r} is not defined"})
            continue
        if message.get("op") == "get":
            try:
                channel.send({"op": "result"}, ns[name])
            except (wire.WireError, RecursionError, OverflowError) as e:
                channel.send({"op": "result", "error": f"the value cannot be sent to the grader ({e})"[:500]})
            continue
        watch, out = _Watch(message.get("forbidden") or ()), _Capped()
        try:
            args, kwargs = decoder(message.get("args")), decoder(message.get("kwargs"))
            inputs = [t for t in [*args, *kwargs.values()] if isinstance(t, torch.Tensor)]
            before = [t.clone() for t in inputs]
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), watch:
                value = ns[name](*args, **kwargs)
            modified = any(not torch.equal(a, b) for a, b in zip(before, inputs, strict=False))
        except BaseException as e:  # noqa: BLE001 - the learner's function, whatever it raised
            channel.send({"op": "result", "error": f"{type(e).__name__}: {e}"[:2000]})
            continue
        try:
            channel.send({"op": "result", "forbidden": watch.found, "modified": modified}, value)
        except (wire.WireError, RecursionError, OverflowError) as e:
            channel.send({"op": "result", "error": f"the value cannot be sent to the grader ({e})"[:500]})


def main() -> None:
    channel = Channel(int(sys.argv[1]))
    message, decoder = channel.receive()
    ns = run_cells(channel, decoder(message["cells"]), int(message.get("seed", 0)))
    channel.send({"op": "ready"})
    serve(channel, ns)


if __name__ == "__main__":
    main()
