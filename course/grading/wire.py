"""The grading channel: length-prefixed frames of JSON plus raw tensor bytes, and the codec of plain values.

This file runs on both sides of the jail and imports nothing from `course` (inside the jail it is a lone file
next to `runner.py`). Only data crosses: None, bool, int, float, str, list, tuple, set, dict, torch dtypes,
tensors (dtype, shape and the raw little-endian bytes, like safetensors) and, from the trusted side only,
read-only records (`ModelConfig`) and handles to trusted objects (a suspect model, a LayerNorm) that the jail
can only call. No pickle, no Python objects: whatever the learner's process sends is checked on arrival.

    frame = u32 json_len | u32 n_blobs | json | (u64 blob_len | blob)*
"""

from __future__ import annotations

import json
import math
import socket
import struct

import torch

MAX_FRAME = 64 << 20  # bytes of one frame, blobs included
MAX_DEPTH = 24  # nesting of lists / dicts in one value
MAX_ITEMS = 100_000  # list items, dict entries and tensors in one value
DTYPES = {
    name: getattr(torch, name)
    for name in (
        "float64",
        "float32",
        "float16",
        "bfloat16",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint8",
        "bool",
    )
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


class WireError(ValueError):
    """A frame or a value that is not what the protocol allows."""


# --- frames
# ------------------------------------------------------------------------------------------------------
def send(sock: socket.socket, message: dict, blobs: list[bytes] = ()) -> None:
    body = json.dumps(message, allow_nan=True, ensure_ascii=True).encode("ascii")
    parts = [struct.pack("<II", len(body), len(blobs)), body]
    for blob in blobs:
        parts += [struct.pack("<Q", len(blob)), blob]
    sock.sendall(b"".join(parts))


def _exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("the channel closed")
        buf += chunk
    return bytes(buf)


def receive(sock: socket.socket, max_bytes: int = MAX_FRAME) -> tuple[dict, list[bytes]]:
    """One frame: (message, blobs). Raises EOFError when the peer is gone, WireError when the frame is
    malformed or larger than `max_bytes`."""
    size, count = struct.unpack("<II", _exactly(sock, 8))
    if size > max_bytes or count > MAX_ITEMS:
        raise WireError(f"frame too large ({size} bytes of JSON, {count} blobs)")
    try:
        message = json.loads(_exactly(sock, size).decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise WireError(f"unreadable frame ({type(e).__name__})") from None
    if type(message) is not dict:
        raise WireError("a frame must hold a JSON object")
    blobs, total = [], size
    for _ in range(count):
        (n,) = struct.unpack("<Q", _exactly(sock, 8))
        total += n
        if total > max_bytes:
            raise WireError(f"frame larger than {max_bytes} bytes")
        blobs.append(_exactly(sock, n))
    return message, blobs


# --- values
# ------------------------------------------------------------------------------------------------------
class Encoder:
    """value -> (JSON-able tree, blobs). `handle(obj)` turns objects the codec does not know into a tagged
    dict (the trusted side registers handles; the jail side marks them unsupported)."""

    def __init__(self, handle=None):
        self.blobs: list[bytes] = []
        self.handle = handle or (lambda obj: {"__unsupported__": type(obj).__name__[:80]})

    def __call__(self, value, depth: int = 0):
        if depth > MAX_DEPTH:
            raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
        if value is None or type(value) in (bool, str):
            return value
        if type(value) is int:
            return value if abs(value) < 2**63 else {"__bigint__": str(value)}
        if type(value) is float:
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, torch.dtype):
            return {"__dtype__": DTYPE_NAMES.get(value, str(value))}
        if isinstance(value, torch.Tensor):
            return self.tensor(value)
        if isinstance(value, (list, tuple, set, frozenset)):
            items = [self(v, depth + 1) for v in value]
            return (
                items
                if type(value) is list
                else {("__tuple__" if isinstance(value, tuple) else "__set__"): items}
            )
        if isinstance(value, dict):
            return {"__dict__": [[self(k, depth + 1), self(v, depth + 1)] for k, v in value.items()]}
        if type(value).__module__ == "numpy" and hasattr(value, "item"):
            return self(torch.as_tensor(value) if getattr(value, "ndim", 0) else value.item(), depth)
        return self.handle(value)

    def tensor(self, t: torch.Tensor) -> dict:
        t = t.detach().as_subclass(torch.Tensor)  # a subclass travels as its plain data
        if t.dtype not in DTYPE_NAMES or t.is_complex():
            return {"__unsupported__": f"tensor of dtype {t.dtype}"}
        t = t.cpu().contiguous()
        self.blobs.append(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return {"__tensor__": len(self.blobs) - 1, "dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape)}


class Decoder:
    """(JSON tree, blobs) -> value, checking every tag, dtype, shape and size. `handle(tree)` builds the
    object for a handle tag (jail side); without it, handles are refused (trusted side). `record(tree)`
    likewise."""

    def __init__(self, blobs: list[bytes], *, handle=None, record=None, max_numel: int = 1 << 24):
        self.blobs, self.handle, self.record, self.max_numel, self.items = blobs, handle, record, max_numel, 0

    def __call__(self, tree, depth: int = 0):
        self.items += 1
        if depth > MAX_DEPTH or self.items > MAX_ITEMS:
            raise WireError("value too deeply nested or too large")
        if tree is None or type(tree) in (bool, int, float):
            return tree
        if type(tree) is str:
            return clean(tree)
        if type(tree) is list:
            return [self(v, depth + 1) for v in tree]
        if type(tree) is not dict or len(tree) < 1:
            raise WireError(f"unexpected {type(tree).__name__} in a value")
        tag = next(iter(tree))
        body = tree[tag]
        if tag == "__tuple__" and type(body) is list:
            return tuple(self(v, depth + 1) for v in body)
        if tag == "__set__" and type(body) is list:
            items = [self(v, depth + 1) for v in body]
            try:
                return set(items)
            except TypeError:
                raise WireError("a set of unhashable values") from None
        if tag == "__dict__" and type(body) is list:
            out = {}
            for pair in body:
                if type(pair) is not list or len(pair) != 2:
                    raise WireError("a dict entry must be a [key, value] pair")
                key = self(pair[0], depth + 1)
                if type(key) not in (str, int, bool, float, tuple) and key is not None:
                    raise WireError(f"a dict key of type {type(key).__name__}")
                out[key] = self(pair[1], depth + 1)
            return out
        if tag == "__tensor__":
            return self.tensor(tree)
        if tag == "__dtype__" and body in DTYPES:
            return DTYPES[body]
        if tag == "__bigint__" and type(body) is str and len(body) < 400 and body.lstrip("-").isdigit():
            return int(body)
        if tag == "__float__" and body in ("nan", "inf", "-inf"):
            return float(body)
        if tag == "__unsupported__":
            return Unsupported(clean(str(body))[:80])
        if tag == "__handle__" and self.handle is not None:
            return self.handle(tree, self)
        if tag == "__record__" and self.record is not None:
            return self.record(tree, self)
        raise WireError(f"unknown tag {clean(str(tag))[:40]!r}")

    def tensor(self, tree: dict) -> torch.Tensor:
        index, dtype, shape = tree.get("__tensor__"), tree.get("dtype"), tree.get("shape")
        if type(index) is not int or not 0 <= index < len(self.blobs) or dtype not in DTYPES:
            raise WireError("a tensor with a bad blob index or dtype")
        if type(shape) is not list or len(shape) > 8 or any(type(n) is not int or n < 0 for n in shape):
            raise WireError("a tensor with a bad shape")
        numel = math.prod(shape)
        blob, dt = self.blobs[index], DTYPES[dtype]
        if numel > self.max_numel:
            raise WireError(f"a tensor of {numel} elements (at most {self.max_numel})")
        if len(blob) != numel * dt.itemsize:
            raise WireError(
                f"a tensor of shape {shape} and dtype {dtype} needs {numel * dt.itemsize} bytes, got "
                f"{len(blob)}"
            )
        if numel == 0:
            return torch.empty(shape, dtype=dt)
        t = torch.frombuffer(bytearray(blob), dtype=torch.uint8).view(dt).reshape(shape)
        if dt == torch.bool and bool((t.view(torch.uint8) > 1).any()):
            raise WireError("a bool tensor holding values other than 0 and 1")
        return t


class Unsupported:
    """A value the learner's function returned that the codec cannot carry (the type name only)."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<a {self.type_name}>"


def clean(text: str) -> str:
    """A str that encodes as UTF-8 (lone surrogates replaced), safe to write to CSV and HTML."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def encode(value, handle=None) -> tuple[object, list[bytes]]:
    enc = Encoder(handle)
    return enc(value), enc.blobs
