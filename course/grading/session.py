"""The trusted end of one submission's jail: run the learner's cells, call the learner's functions, serve
callbacks.

    session = Session(cells, limits)          # cells: [(number in the submission, source)]
    value = session.call("attention", (q, k, v), exercise="ex01", forbidden=(...), budget_s=60)
    value = session.get("UNNORMALIZED")

Only data comes back (`wire`), checked on arrival. A cell that hangs or kills the process is skipped and the
jail restarted without it; a call that hangs or kills the process fails that call only (the next call restarts
the jail). Nothing the learner's process reports about itself decides anything but its own outputs.
"""

from __future__ import annotations

import dataclasses
import inspect
import time

import torch
from torch import nn

from course.grading import jail, wire

CALLBACK_NUMEL = 1 << 16  # elements of one tensor the learner may send to a trusted model
MAX_CALLBACKS = 20_000  # callbacks during one call
STARTUP_S = 90.0  # jail start-up (bwrap, Python, torch) before the first cell


class LearnerError(Exception):
    """The learner's function raised, returned something unreadable, or the process ended or hung."""


class CallTimeout(LearnerError):
    pass


class InputModified(LearnerError):
    """The learner's function changed its input tensors in place."""


@dataclasses.dataclass
class CellRun:
    number: int
    error: str | None = None
    output: str = ""
    fate: str = "ok"  # ok | error | timeout | crashed


class Session:
    def __init__(self, cells: list[tuple[int, str]], limits: jail.Limits):
        self.cells, self.limits = cells, limits
        self.deadline = time.monotonic() + limits.wall_s
        self.runs: dict[int, CellRun] = {}
        self.proc, self.sock, self.starts = None, None, 0

    # --- lifecycle
    # ------------------------------------------------------------------------------------------------
    def _left(self, budget: float) -> float:
        return max(0.01, min(budget, self.deadline - time.monotonic()))

    def start(self) -> None:
        """(Re)start the jail and run every learner cell not yet known to hang or crash it."""
        while True:
            if time.monotonic() > self.deadline:
                raise CallTimeout("the submission's wall-clock limit was reached")
            self.close()
            self.starts += 1
            self.proc, self.sock = jail.start(limits=self.limits)
            todo = [(n, s) for n, s in self.cells if self.runs.get(n, CellRun(n)).fate in ("ok", "error")]
            tree, blobs = wire.encode([[n, s] for n, s in todo])
            wire.send(self.sock, {"op": "init", "cells": tree, "seed": 0}, blobs)
            if self._run_cells(todo):
                return

    def _run_cells(self, todo) -> bool:
        """True when every cell ran and the runner is ready; False after marking the cell that hung or
        crashed."""
        current, budget = None, STARTUP_S
        while True:
            try:
                message, _ = self._receive(self._left(budget))
            except TimeoutError:
                if current is None:
                    raise LearnerError("the grading jail did not start") from None
                self.runs[current] = CellRun(current, fate="timeout")
                return False
            except (EOFError, OSError, wire.WireError):
                if current is None:
                    if self.starts > 2:
                        raise LearnerError("the grading jail did not start") from None
                    return False
                self.runs[current] = CellRun(current, fate="crashed")
                return False
            op = message.get("op")
            if op == "cell_start" and type(message.get("cell")) is int:
                current, budget = message["cell"], self.limits.cell_s
            elif op == "cell_done" and message.get("cell") == current:
                error = message.get("error")
                self.runs.setdefault(
                    current,
                    CellRun(
                        current,
                        wire.clean(str(error))[:2000] if error else None,
                        _cut(wire.clean(str(message.get("output", ""))), self.limits.output_bytes),
                        "error" if error else "ok",
                    ),
                )
                current, budget = None, self.limits.cell_s
            elif op == "ready":
                return True
            else:
                self.runs[current or -1] = CellRun(current or -1, fate="crashed")
                return False

    def close(self) -> None:
        if self.proc is not None:
            jail.kill(self.proc)
            self.sock.close()
        self.proc = self.sock = None

    def _receive(self, timeout: float):
        self.sock.settimeout(timeout)
        return wire.receive(self.sock)

    # --- calls
    # ----------------------------------------------------------------------------------------------------
    def get(self, name: str, *, budget_s: float = 30.0):
        return self._request({"op": "get", "name": name}, budget_s, what=name)

    def call(
        self, name: str, args: tuple, kwargs: dict | None = None, *, forbidden=(), budget_s: float = 60.0
    ):
        handles: dict[int, object] = {}
        enc = wire.Encoder(handle=lambda obj: _handle(obj, handles, enc))
        message = {
            "op": "call",
            "name": name,
            "args": enc(list(args)),
            "kwargs": enc(dict(kwargs or {})),
            "forbidden": list(forbidden),
        }
        return self._request(message, budget_s, blobs=enc.blobs, handles=handles, what=f"{name}(...)")

    def _request(self, message: dict, budget_s: float, *, blobs=(), handles=None, what: str):
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        end = time.monotonic() + budget_s
        try:
            wire.send(self.sock, message, list(blobs))
            for _ in range(MAX_CALLBACKS):
                reply, reply_blobs = self._receive(self._left(end - time.monotonic()))
                if reply.get("op") == "callback":
                    self._callback(reply, reply_blobs, handles or {})
                    continue
                if reply.get("op") != "result":
                    raise LearnerError(f"{what}: the grading process answered out of turn")
                if "error" in reply:
                    raise LearnerError(f"{what} raised {wire.clean(str(reply['error']))[:1000]}")
                value = wire.Decoder(reply_blobs)(reply.get("value"))
                if reply.get("modified") is True:
                    raise InputModified(f"{what} changed its input tensors in place")
                return value, reply.get("forbidden") if type(reply.get("forbidden")) is str else None
            raise LearnerError(f"{what}: more than {MAX_CALLBACKS} calls of the model")
        except TimeoutError:
            self.close()
            raise CallTimeout(f"{what} did not return within its time budget") from None
        except (EOFError, ConnectionError, BrokenPipeError):
            self.close()
            raise LearnerError(
                f"the grading process ended during {what} (os._exit, a crash or a signal)"
            ) from None
        except wire.WireError as e:
            self.close()
            raise LearnerError(f"{what} returned a value the grader cannot read ({e})") from None

    def _callback(self, message: dict, blobs: list[bytes], handles: dict) -> None:
        """The learner's code called a trusted object: inputs are plain data, the output is plain data."""
        try:
            target = handles.get(message.get("handle"))
            method = message.get("method")
            if target is None:
                raise ValueError("unknown model")
            if method is not None:
                if method not in _methods(target):
                    raise ValueError(f"no method {wire.clean(str(method))[:40]!r}")
                target = getattr(target, method)
            args, kwargs = wire.Decoder(blobs, max_numel=CALLBACK_NUMEL)(message.get("args"))
            if type(args) is not list or type(kwargs) is not dict or any(type(k) is not str for k in kwargs):
                raise ValueError("bad arguments")
            with torch.no_grad():
                value = target(*args, **kwargs)
            tree, out = wire.encode(value)
            wire.send(self.sock, {"op": "callback_result", "value": tree}, out)
        except (EOFError, ConnectionError, BrokenPipeError):
            raise
        except Exception as e:  # noqa: BLE001 - the learner's inputs made the trusted model raise
            wire.send(self.sock, {"op": "callback_result", "error": f"{type(e).__name__}: {e}"[:500]})


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[output truncated at {limit} characters]\n"


def _methods(obj) -> set[str]:
    """Public methods a learner may call on a trusted module: those its own classes define (not
    nn.Module's)."""
    names = set()
    for cls in type(obj).__mro__:
        if cls is nn.Module or cls is object:
            break
        names |= {
            n
            for n, v in vars(cls).items()
            if inspect.isfunction(v) and not n.startswith("_") and n != "forward"
        }
    return names


def _handle(obj, handles: dict, enc: wire.Encoder) -> dict:
    """A trusted object as the jail sees it: plain attributes, parameters, child handles, callable methods."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        attrs = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        attrs.update({n: getattr(obj, n) for n, v in vars(type(obj)).items() if isinstance(v, property)})
        return {
            "__record__": 0,
            "type": type(obj).__name__,
            "attrs": {k: enc(v) for k, v in attrs.items() if not k.startswith("_")},
        }
    if not isinstance(obj, nn.Module):
        raise wire.WireError(f"the grader cannot send a {type(obj).__name__}")
    handles[len(handles)] = obj
    attrs = {
        n: v
        for n, v in vars(obj).items()
        if not n.startswith("_") and n != "training" and type(v) in (int, float, bool, str)
    }
    attrs.update(dict(obj.named_parameters(recurse=False)))
    attrs.update(dict(obj.named_children()))
    return {
        "__handle__": len(handles) - 1,
        "type": type(obj).__name__,
        "callable": True,
        "attrs": {n: enc(v) for n, v in attrs.items()},
        "methods": sorted(_methods(obj)),
    }
