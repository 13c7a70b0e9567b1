"""Fixtures for the widget tests: no PNG by default (Kaleido is slow), a comm that records what it would
send."""

from __future__ import annotations

import json

import comm
import pytest
import torch
from comm.base_comm import BaseComm

from course import DecoderLM, ModelConfig


@pytest.fixture(autouse=True)
def no_png(monkeypatch):
    monkeypatch.setenv("COURSE_VIZ_PNG", "0")


class RecordingComm(BaseComm):
    log: list = []

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        self.log.append((msg_type, data or {}, buffers or []))


class CommLog(list):
    def updates(self) -> list:
        """The state keys of every comm_msg update sent so far."""
        return [key for kind, data, _ in self if kind == "comm_msg" for key in data.get("state", {})]

    def nbytes(self) -> int:
        return sum(
            len(json.dumps(data, default=str)) + sum(len(memoryview(b).cast("B")) for b in buffers)
            for _, data, buffers in self
        )


@pytest.fixture
def comm_log(monkeypatch) -> CommLog:
    """Widgets created after this fixture publish into the returned list: (msg_type, data, buffers)."""
    log = CommLog()
    monkeypatch.setattr(RecordingComm, "log", log)
    monkeypatch.setattr(comm, "create_comm", lambda *a, **kw: RecordingComm(*a, **kw))
    return log


@pytest.fixture
def make_model():
    """A randomly initialised course model from a preset (+ overrides)."""

    def make(preset: str = "tiny", cls=DecoderLM, **overrides):
        return cls(ModelConfig.from_preset(preset, **overrides)).eval()

    return make


def random_tokens(model, T: int) -> torch.Tensor:
    return torch.randint(0, model.config.vocab_size, (T,))


@pytest.fixture
def tokens():
    return random_tokens
