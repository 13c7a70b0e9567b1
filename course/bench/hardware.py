"""Hardware facts: datasheet peaks of GPUs, the CPU's name, the machine and versions a run is recorded with.
`course info` and `course bench` read the same facts."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess

import torch

# Dense bf16 tensor-core peak FLOP/s and memory bandwidth (bytes/s) by device name; the first fragment found
# in `torch.cuda.get_device_name()` wins, so specific names come first (datasheets; no sparsity).
GPU_PEAKS = (
    ("GH200", 989e12, 4.0e12),
    ("H200", 989e12, 4.8e12),
    ("H100 NVL", 835e12, 3.9e12),
    ("H100 PCIe", 756e12, 2.0e12),
    ("H100", 989e12, 3.35e12),  # SXM5, "NVIDIA H100 80GB HBM3"
    ("H800", 989e12, 3.35e12),
    ("A100-SXM4-40GB", 312e12, 1.555e12),
    ("A100-PCIE-40GB", 312e12, 1.555e12),
    ("A100", 312e12, 2.0e12),
    ("L40S", 362e12, 0.864e12),
    ("L4", 121e12, 0.3e12),
    ("A10", 125e12, 0.6e12),
    ("RTX 4090", 165e12, 1.008e12),
    ("RTX 3090", 71e12, 0.936e12),
)


def gpu_peaks(name: str) -> tuple[float, float] | None:
    """(bf16 FLOP/s, bytes/s) from the datasheet table for a device name, or None when it is not listed."""
    for fragment, flops, bandwidth in GPU_PEAKS:
        if fragment.lower() in name.lower():
            return flops, bandwidth
    return None


def machine(device: torch.device) -> dict:
    info = {
        "device": device.type,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name()
    else:
        info["device_name"] = cpu_name()
        info["threads"] = torch.get_num_threads()
    try:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        rev = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        )
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        )
        info["git_revision"] = (rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")) or None
    except OSError:
        info["git_revision"] = None
    return info


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or platform.machine()
