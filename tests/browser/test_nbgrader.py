"""nbgrader's JupyterLab extension: the assignment list shows the released exercise (from a throw-away
exchange), Fetch downloads it, and Validate runs its tests: every graded test cell of the untouched release
fails on the stub's NotImplementedError, and nothing fails for another reason; the dialog
opens with the totals and a line per exercise (`course.grading.validate`)."""

import json
import shutil

import pytest
from traitlets.config import Config

from course.grading.release import ASSIGNMENT, EXERCISES, NOTEBOOK, RELEASE, configure

from .pages import Lab

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("jupyterlab")]


ROW_STATE_JS = """name => {
  const item = [...document.querySelectorAll('#fetched_assignments_list .list_item')]
    .find(i => i.querySelector('.assignment-notebooks-link')?.innerText.trim() === name);
  const link = item?.querySelector('.assignment-notebooks-link'), rows = item?.querySelector('.collapse');
  // not rendered, or its toggle not wired yet
  if (!link || !rows || !link.querySelector('i.fa')) return null;
  return rows.classList.contains('in') ? 'expanded' : 'collapsed';
}"""


def test_assignment_list_fetch_and_validate(lab_server, page):
    c = Config()
    configure(c, lab_server.root)
    outbound = lab_server.exchange / c.CourseDirectory.course_id / "outbound" / ASSIGNMENT
    outbound.mkdir(parents=True)
    shutil.copy(RELEASE, outbound / NOTEBOOK)
    cells = json.loads(RELEASE.read_text())["cells"]
    graded = [x for x in cells if x["cell_type"] == "code" and x["metadata"].get("nbgrader", {}).get("grade")]

    lab = Lab(page, lab_server)
    lab.start()
    lab.command("nbgrader:open-assignment-list")
    released = page.locator("#released_assignments_list")
    released.get_by_text(ASSIGNMENT, exact=True).wait_for()
    released.get_by_role("button", name="Fetch").click()
    fetched = page.locator("#fetched_assignments_list")
    link = fetched.locator(".assignment-notebooks-link").filter(has_text=ASSIGNMENT)
    link.wait_for()
    assert (lab_server.root / ASSIGNMENT / NOTEBOOK).exists()
    # A fetched assignment's notebooks are listed under its row once expanded. Wait until the row has rendered
    # completely (its toggle's caret icon is the last thing added), then expand it if it is collapsed.
    state = page.wait_for_function(ROW_STATE_JS, arg=ASSIGNMENT).json_value()
    validate = (
        fetched.locator(".nested_list_item")
        .filter(has_text=NOTEBOOK.removesuffix(".ipynb"))
        .get_by_role("button", name="Validate")
    )
    if state == "collapsed":
        link.click()
        page.wait_for_function(f"name => ({ROW_STATE_JS})(name) === 'expanded'", arg=ASSIGNMENT)
    validate.click()
    dialog = page.locator(".jp-Dialog").filter(has_text="Validation Results")
    dialog.wait_for(timeout=300_000)
    text = dialog.inner_text()
    assert text.count("The following cell failed") == len(graded) > 0, text[:3000]
    assert text.count("NotImplementedError") >= len(graded), text[:3000]
    assert "ModuleNotFoundError" not in text and "Success" not in text
    # the course's Validate: totals and a line per exercise first, a diagnosis per test, no harness traceback
    first_box = text.split("The following cell failed")[1]
    assert "visible tests: 0/" in first_box, text[:3000]
    assert first_box.count("not attempted  0/") == len(EXERCISES), text[:3000]
    assert text.count("not attempted yet") == len(graded) and "Traceback" not in text, text[:3000]
