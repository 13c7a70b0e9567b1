"""nbgrader's Validate button with the course's feedback: totals and per-exercise lines first, then for each
failing test its likely mistake instead of a traceback through the harness.

nbgrader's Lab extension shows what `Validator.validate` returns: one "The following cell failed" box per
failing test cell, holding that cell's traceback (31 boxes and ~48,000 characters for an untouched release).
`CourseValidator` keeps the boxes and rewrites their text with `course check`'s report (`check.report`) on
the first and a one-line diagnosis on each (`check.explain`); an error the learner's own code raised keeps its
traceback below the line, to find the failing line. `install()` makes the Lab's Validate handler use it;
`make lab` and the class hub call it from `course/lab/jupyter_lab_config.py`. Validation is feedback, never
a grade: `course grade` does not read it.
"""

from __future__ import annotations

import html

from nbgrader.validator import Validator

from course.grading.check import _meta, _result, report, stubbed_exercises


class CourseValidator(Validator):
    def _preprocess(self, nb):
        self._executed = super()._preprocess(nb)
        return self._executed

    def validate(self, filename: str) -> dict:
        results = super().validate(filename)
        if results.get("failed"):
            results["failed"] = self._with_diagnoses(results["failed"])
        return results

    def _with_diagnoses(self, failed: list[dict]) -> list[dict]:
        nb = self._executed
        stubbed = stubbed_exercises(nb)
        tests = [c for c in nb.cells if _meta(c).get("grade") and c.cell_type == "code"]
        results = [_result(c, stubbed) for c in tests]
        by_source = {c.source.strip(): r for c, r in zip(tests, results, strict=True)}
        out = []
        for i, entry in enumerate(failed):
            result = by_source.get(entry["source"])
            if result is None:  # not a test cell (validate_all): nbgrader's own text
                out.append(entry)
                continue
            head = f"✗ {result.grade_id}: {result.message}"
            head = f"{report(results)}\n\nThis cell:\n{head}" if i == 0 else head
            error, raw = html.escape(head), head
            if result.message.startswith("your code raised"):  # the learner's own error: where it happened
                error, raw = f"{error}\n\n{entry['error']}", f"{raw}\n\n{entry['raw_error']}"
            out.append({**entry, "error": error, "raw_error": raw})
        return out


def install() -> None:
    """Make nbgrader's Validate handler (JupyterLab's Validate button) use CourseValidator."""
    from nbgrader.server_extensions.validate_assignment import handlers

    handlers.Validator = CourseValidator
