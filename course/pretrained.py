"""The small trained models shipped in `course/weights/` (made by `course train <recipe> --out course/weights`).

    names = available()                  # ["copy", "induction", "reverse", "sort"]
    model, card = load("induction")      # DecoderLM in eval mode; card: task, config, steps, loss, accuracy...
    task = task_for(card)                # the task it was trained on, to draw fresh batches
"""
from __future__ import annotations

import json
from pathlib import Path

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
    """(model in eval mode, card dict) for a shipped model (or one written by `course train --out directory`)."""
    card = load_card(name, directory)
    if card.get("model") not in MODEL_CLASSES:
        raise ValueError(f"card {name!r} names model {card.get('model')!r}; expected one of {sorted(MODEL_CLASSES)}")
    model = MODEL_CLASSES[card["model"]](ModelConfig(**card["config"])).to(device)
    load_weights(model, Path(directory) / f"{name}.safetensors", device)
    return model.eval(), card


def load_curves(name: str = "norm-study", directory: str | Path = WEIGHTS_DIR) -> dict:
    """Recorded training curves shipped without weights, e.g. chapter 5's `norm-study.json` (made by
    `course train norm-study --out course/weights`; `course.training.norm_study` recomputes them)."""
    path = Path(directory) / f"{name}.json"
    if not path.exists():
        raise ValueError(f"no recorded curves {name!r} in {directory}")
    return json.loads(path.read_text())


def task_for(card: dict) -> Task:
    """The synthetic task a model was trained on, rebuilt from its card."""
    return make_task(card["task"]["name"], **card["task"]["args"])
