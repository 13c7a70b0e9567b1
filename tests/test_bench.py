"""`course bench`: it runs and writes its keys. No performance figure is asserted (benchmarks are not
gates)."""

import json
import math
import subprocess
import sys

import pytest
import torch

from course.bench import Clock, gpu_peaks, paired

REQUIRED = (
    "hf_forward_ratio",
    "hf_train_ratio",
    "hf_decode_ratio",
    "decode_bandwidth_share",
    "train_flops_share",
)


@pytest.mark.xdist_group("bench")
def test_quick_bench_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "course", "bench", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["quick"] is True
    for key in REQUIRED:
        assert isinstance(result[key], float) and math.isfinite(result[key]) and result[key] > 0, key
    assert result["hf"]["tiny"]["decode"]["tokens_match"] is True  # same weights, same greedy tokens as HF
    assert result["kv_speedup"] and all(int(c) > 0 and v > 0 for c, v in result["kv_speedup"].items())
    for section in ("hf", "train", "kv", "attention", "roofline", "gqa"):
        assert f"[{section}]" in proc.stdout
    assert result["train"]["tiny"]["median"] > 0 and result["train"]["tiny"]["n"] > 0
    gqa = result["gqa"]
    for name in ("MHA", "GQA", "MQA"):  # measured cache bytes equal the formula, and shrink with n_kv_heads
        assert gqa[name]["kv_bytes_measured"] == gqa[name]["kv_bytes_formula"]
    assert gqa["MQA"]["kv_bytes_measured"] * gqa["MHA"]["n_kv_heads"] == gqa["MHA"]["kv_bytes_measured"]


def test_pairs_alternate_order():
    calls = []
    r = paired(
        Clock(torch.device("cpu")),
        lambda: calls.append("a"),
        lambda: calls.append("b"),
        pairs=4,
        min_time=0.0,
    )
    timed = "".join(calls)[4:]  # after each side's warm-up and calibration calls
    assert timed == "ab" + "ba" + "ab" + "ba" and r["n"] == 4
    assert r["q1"] <= r["median"] <= r["q3"]


def test_gpu_peaks_pick_the_specific_name():
    sxm, pcie = gpu_peaks("NVIDIA H100 80GB HBM3"), gpu_peaks("NVIDIA H100 PCIe")
    assert sxm and pcie and pcie[0] < sxm[0] and pcie[1] < sxm[1]
    assert gpu_peaks("NVIDIA GH200 480GB") != gpu_peaks("NVIDIA H200")
    assert gpu_peaks("Some Unknown Accelerator") is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when no CUDA device exists")
def test_cuda_request_without_cuda_fails_clearly(capsys):
    from course.cli import main

    assert main(["bench", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
