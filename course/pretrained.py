"""The small trained models shipped in `course/weights/` (made by `course train <recipe> --out
course/weights`).

names = available()                  # ["copy", "induction", "reverse", "sort"]
model, card = load("induction")      # DecoderLM in eval mode; card: task, config, steps, loss, accuracy...
task = task_for(card)                # the task it was trained on, to draw fresh batches

model, card = load("text")           # a small GPT trained on real English (`course train text`)
tokenizer = load_tokenizer("text")   # its byte-level BPE: tokenizer.encode(str) -> ids (T,), .decode(ids)
lm = gpt2()                          # (model, tokenizer, name): Hugging Face GPT-2 when online, else "text"
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from .config import ModelConfig
from .data import Task, make_task
from .models import DecoderLM, EncoderDecoder, EncoderLM

WEIGHTS_DIR = Path(__file__).parent / "weights"
MODEL_CLASSES = {cls.__name__: cls for cls in (DecoderLM, EncoderLM, EncoderDecoder)}


def available(directory: str | Path = WEIGHTS_DIR) -> list[str]:
    """Names of the models that have both `<name>.safetensors` and `<name>.json` in `directory`."""
    directory = Path(directory)
    return sorted(p.stem for p in directory.glob("*.safetensors") if p.with_suffix(".json").exists())


def load_card(name: str, directory: str | Path = WEIGHTS_DIR) -> dict:
    path = Path(directory) / f"{name}.json"
    if not path.exists():
        raise ValueError(f"no trained model {name!r} in {directory}; available: {available(directory)}")
    return json.loads(path.read_text())


def save_weights(model, path) -> None:
    """Write the model's tensors to a safetensors file, a tied weight once (under its first name), and no
    metadata: the JSON card describes the model, and the same weights always give the same bytes."""
    from safetensors.torch import save_file

    state, seen = {}, set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            state[name] = tensor.detach().contiguous()
    save_file(state, str(path))


def load_weights(model, path, device="cpu") -> None:
    """Fill `model` from `save_weights`' file; only tied aliases of stored tensors may be absent from it."""
    from safetensors.torch import load_file

    state = load_file(str(path), device=str(device))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch
        raise ValueError(f"{path} does not fit the model its card describes: {err}") from err
    own = model.state_dict()
    stored = {own[name].data_ptr() for name in state if name in own}
    bad = sorted(unexpected) + [name for name in missing if own[name].data_ptr() not in stored]
    if bad:
        raise ValueError(f"{path} does not fit the model its card describes: mismatched tensors {bad}")


def load(name: str, directory: str | Path = WEIGHTS_DIR, device="cpu"):
    """(model in eval mode, card dict) for a shipped model (or one written by `course train --out
    directory`)."""
    card = load_card(name, directory)
    if card.get("model") not in MODEL_CLASSES:
        raise ValueError(
            f"card {name!r} names model {card.get('model')!r}; expected one of {sorted(MODEL_CLASSES)}"
        )
    model = MODEL_CLASSES[card["model"]](ModelConfig(**card["config"])).to(device)
    load_weights(model, Path(directory) / f"{name}.safetensors", device)
    return model.eval(), card


def load_curves(name: str = "norm-study", directory: str | Path = WEIGHTS_DIR) -> dict:
    """Recorded training curves shipped without weights, e.g. chapter 5's `norm-study.json` (made by
    `course train norm-study --out course/weights`; `course.recipes.norm_study` recomputes them)."""
    path = Path(directory) / f"{name}.json"
    if not path.exists():
        raise ValueError(f"no recorded curves {name!r} in {directory}")
    return json.loads(path.read_text())


def task_for(card: dict) -> Task:
    """The synthetic task a model was trained on, rebuilt from its card."""
    if card["task"]["name"] == "text":
        raise ValueError(
            f"model {card['name']!r} was trained on real text, not a synthetic task: its data is "
            f"course.corpus, its tokenizer load_tokenizer({card['name']!r})"
        )
    return make_task(card["task"]["name"], **card["task"]["args"])


def load_tokenizer(name: str = "text", directory: str | Path = WEIGHTS_DIR):
    """The BPE tokenizer saved beside a text model (its card names the file)."""
    from .tokenizer import BPETokenizer

    card = load_card(name, directory)
    if "tokenizer" not in card:
        raise ValueError(
            f"model {name!r} has no tokenizer: it was trained on the synthetic task "
            f"{card.get('task', {}).get('name')!r} (use task_for(card).tokenizer)"
        )
    return BPETokenizer.load(Path(directory) / card["tokenizer"]["file"])


class LanguageModel(NamedTuple):
    """A DecoderLM with the tokenizer it reads: `tokenizer.encode(str)` -> ids (T,),
    `tokenizer.decode(ids)`."""

    model: DecoderLM
    tokenizer: object
    name: str


class HFTokenizer:
    """A Hugging Face tokenizer behind the course's interface: encode -> (T,) long tensor, decode, pieces."""

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer
        self.vocab_size = len(hf_tokenizer)

    def encode(self, text: str):
        import torch

        return torch.tensor(self.hf.encode(text), dtype=torch.long)

    def decode(self, ids) -> str:
        return self.hf.decode(ids.tolist() if hasattr(ids, "tolist") else list(ids))

    def pieces(self, text: str) -> list[str]:
        return [self.hf.decode([i]) for i in self.hf.encode(text)]


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether a TCP connection to `host`:443 opens within `timeout` seconds (offline: False, at once)."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def gpt2(name: str = "gpt2", *, timeout: float = 3.0) -> LanguageModel:
    """Hugging Face's GPT-2 (`from_pretrained(name)`, converted by `course.from_hf`) as a course DecoderLM.

    Needs `transformers`, and the network or a Hugging Face cache. When huggingface.co does not answer within
    `timeout` seconds, only the cache is tried (no minute of download retries). When loading fails, prints why
    and returns the offline text model instead: check `.name` ("gpt2" or "text").
    """
    local_only = not hub_reachable(timeout=timeout)
    try:
        from transformers import AutoTokenizer, GPT2LMHeadModel

        hf_model = GPT2LMHeadModel.from_pretrained(name, local_files_only=local_only)
        hf_tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
    except Exception as err:  # noqa: BLE001 -- offline, not cached, no transformers: fall back
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        where = " (huggingface.co is unreachable, so the cache only)" if local_only else ""
        print(
            f"course.pretrained.gpt2: could not load {name!r} from Hugging Face{where}: "
            f"{type(err).__name__}: "
            f"{reason}\nUsing the offline text model instead: course.pretrained.load('text'), a "
            f"{load_card('text')['n_params']:,}-parameter GPT trained on Python's documentation."
        )
        model, _ = load("text")
        return LanguageModel(model, load_tokenizer("text"), "text")
    from .interop import from_hf

    return LanguageModel(from_hf(hf_model), HFTokenizer(hf_tokenizer), name)
