"""Measure each chapter's execution time: `python tests/notebook_times.py [PATTERN ...]`.

Every notebook runs top to bottom in a fresh kernel (nbclient, as tests/test_notebooks.py does, one torch
thread: COURSE_THREADS=1) in its own process. Printed per notebook: the kernel's CPU seconds (user + system,
start-up and imports included — steady on a busy machine) and the wall-clock seconds of the execution. The
course's budget is 30 s of CPU per chapter (issue 12); a chapter over it makes the script exit 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
BUDGET_CPU_S = 30.0

RUNNER = r"""
import json, os, resource, sys, time
import nbformat
from nbclient import NotebookClient
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
env = {**os.environ, "COURSE_THREADS": "1", "COURSE_VIZ_PNG": "0", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
client = NotebookClient(nb, timeout=600, kernel_name="python3", store_widget_state=False,
                        resources={"metadata": {"path": os.path.dirname(path)}})
start = time.perf_counter()
client.execute(env=env)
wall = time.perf_counter() - start
kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel, reaped at shutdown
print(json.dumps({"kernel_cpu_s": kids.ru_utime + kids.ru_stime, "wall_s": wall}))
"""


def measure(path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", RUNNER, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(patterns: list[str]) -> int:
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    if patterns:
        paths = [p for p in paths if any(pat in p.name for pat in patterns)]
    over = []
    print(f"{'notebook':<42} {'kernel CPU s':>12} {'wall s':>8}")
    for path in paths:
        r = measure(path)
        flag = "  OVER BUDGET" if r["kernel_cpu_s"] > BUDGET_CPU_S else ""
        print(f"{path.name:<42} {r['kernel_cpu_s']:>12.1f} {r['wall_s']:>8.1f}{flag}", flush=True)
        if flag:
            over.append(path.name)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
