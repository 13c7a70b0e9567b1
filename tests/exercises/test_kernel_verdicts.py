"""In the learner's kernel (after `H.setup()`): a passing test cell prints a tick; a failed check of the
harness shows the likely mistake first and the test cell's line, no frames inside the harness; any other error
keeps IPython's traceback. The error outputs keep their ename and evalue (`course check` and Validate read
them)."""

import nbformat
import pytest
from nbclient import NotebookClient

from course.grading.diagnoses import CATALOGUE

pytestmark = pytest.mark.xdist_group("exercise-kernels")

CELLS = {
    "setup": "import torch\nfrom course.grading import harness as H\nH.setup()",
    "pass": "# Visible test: ones.\nH.expect_close(torch.ones(2, 2), torch.ones(2, 2), 'x')",
    "fail": "# Visible test: ones.\nx = torch.ones(2, 2)\nx[0, 1] = 5\n"
    "H.expect_close(x, torch.ones(2, 2), 'x', {'softmax_axis': x})",
    "not a test": "y = 1",
    "own assert": "assert 1 == 2, 'my own assert'",
    "own error": "def f():\n    raise ValueError('boom')\nf()",
}


@pytest.fixture(scope="module")
def outputs():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS.values()])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, allow_errors=True, kernel_name="python3", timeout=120).execute()
    return dict(zip(CELLS, (c.outputs for c in nb.cells), strict=True))


def test_a_passing_test_cell_prints_a_tick_and_other_cells_nothing(outputs):
    assert [o.get("text") for o in outputs["pass"]] == ["✓ passed\n"]
    assert outputs["not a test"] == []


def test_a_failed_check_shows_the_mistake_first_without_harness_frames(outputs):
    (error,) = outputs["fail"]
    assert error.output_type == "error" and error.ename == "AssertionError"
    assert "differs from the reference" in error.evalue  # what course check and Validate read
    first, *rest = error.traceback
    assert first.startswith(f"✗ Likely mistake: {CATALOGUE['softmax_axis']}")
    assert "index (0, 1)" in first and "np.int64" not in first
    assert rest == ["  (test cell, line 4: H.expect_close(x, torch.ones(2, 2), 'x', {'softmax_axis': x}))"]


@pytest.mark.parametrize("cell, ename, text", [("own assert", "AssertionError", "my own assert"),
                                               ("own error", "ValueError", "boom")])
def test_other_errors_keep_their_traceback(outputs, cell, ename, text):
    (error,) = outputs[cell]
    joined = "\n".join(error.traceback)
    assert error.ename == ename and "Traceback" in joined and text in joined
