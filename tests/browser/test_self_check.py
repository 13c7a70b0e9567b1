"""The exercise notebook's self-check cell checks the saved file: after a change that was run but not saved,
it says so (save, then run it again) instead of reporting the saved file's old result."""

import nbformat
import pytest

from .pages import Lab

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("jupyterlab")]
CELLS = ["from course.grading import harness as H\n\nH.setup()", "answer = 1", "H.self_check()"]
# The self-check cell has finished and printed: its prompt shows an execution count, not [*] (a check runs the
# saved notebook in a fresh kernel: a minute or more on a loaded 2-core machine).
CHECK_DONE = """text => {
  const cell = document.querySelectorAll('.jp-CodeCell')[2];
  const prompt = cell && cell.querySelector('.jp-InputPrompt');
  const out = cell && cell.querySelector('.jp-OutputArea-output');
  return !!prompt && /\\[\\d+\\]/.test(prompt.textContent) && !!out && out.innerText.includes(text);
}"""


def test_self_check_warns_about_unsaved_changes(lab_server, page):
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(code) for code in CELLS]
    nbformat.write(nb, lab_server.root / "self-check.ipynb")
    lab = Lab(page, lab_server)
    lab.open("self-check.ipynb")
    lab.run_all()
    page.wait_for_function(CHECK_DONE, arg="Checking the saved", timeout=240_000)
    output = page.locator(".jp-CodeCell").nth(2).locator(".jp-OutputArea-output")
    assert "Not checked" not in output.inner_text()  # saved and run alike: the check runs

    # change the answer and run it, without saving
    editor = page.locator(".jp-CodeCell").nth(1).locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.type("answer = 2")
    lab.command("notebook:run-cell")
    lab.wait_kernel_idle()
    page.locator(".jp-CodeCell").nth(2).click()
    lab.command("notebook:run-cell")
    lab.wait_kernel_idle()
    page.wait_for_function(
        "el => el.innerText.includes('Not checked')", arg=output.element_handle(), timeout=60_000
    )
    text = output.inner_text()
    assert "since the last save" in text and "Ctrl+S" in text, text

    lab.save()  # saved: the check runs again
    lab.command("notebook:run-cell")
    page.wait_for_function(CHECK_DONE, arg="Checking the saved", timeout=240_000)
    assert "Not checked" not in output.inner_text()
