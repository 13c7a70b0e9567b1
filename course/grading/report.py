"""What `course grade` hands out: feedback pages per learner (rendered here from the trusted record and graded
notebook, never a hidden test) and the grades CSV (one row per submission, per-exercise points)."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import nbformat

from course.grading import check, release
from course.grading.course_dir import Course
from course.grading.job import Result
from course.grading.sanitize import Reference, gid_of

HEAD = ["student_id", "status", "score", "max_score", "reason"]


def columns(ref: Reference) -> list[str]:
    """The grades CSV's columns: the fixed head, then one column per exercise."""
    return [*HEAD, *ref.exercises]


def feedback(course: Course, students: list[str]) -> list[Path]:
    """Feedback HTML per graded student, rendered here (nbconvert) from the trusted record and graded
    notebook."""
    ref, written = Reference.read(course.release_nb), []
    for sid in students:
        graded, rec = course.autograded(sid), course.record(sid)
        if not graded.exists() or not rec.exists():
            continue
        try:
            result = Result(**json.loads(rec.read_text()))
            path = course.feedback(sid)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                render_feedback(nbformat.read(graded, as_version=4), ref, result, course.assignment.name)
            )
            written.append(path)
        except Exception:  # noqa: BLE001 - a feedback page that cannot be rendered is left out, the row stays
            continue
    return written


def feedback_notebook(nb, ref: Reference, result: Result, assignment: str) -> nbformat.NotebookNode:
    """Score table first (per exercise, coloured), then the learner's cells with their own output, and each
    test as released (visible part only) with its verdict, diagnosis first. Never a hidden test."""
    rows_ = []
    for ex in ref.exercises:
        tests = ref.tests_of(ex)
        got, total = sum(result.points.get(g, 0.0) for g in tests), sum(ref.tests[g] for g in tests)
        colour = "#d4edda" if got == total else "#fff3cd" if got else "#f8d7da"
        rows_.append(f"<tr style='background:{colour}'><td>{ex}</td><td>{got:g} / {total:g}</td></tr>")
    head = (
        f"# {assignment}: feedback for {html.escape(result.student_id)}\n\n"
        f"**Status:** {result.status}. **Score:** {fmt(result.score)} / {fmt(ref.max_score)}.\n\n"
        + (f"{html.escape(result.reason)}\n\n" if result.reason else "")
        + "<table><tr><th>exercise</th><th>points</th></tr>"
        + "".join(rows_)
        + "</table>"
    )
    cells = [nbformat.v4.new_markdown_cell(head)]
    for cell in nb.cells:
        gid = gid_of(cell)
        if gid in ref.tests:
            source = check.HIDDEN.sub("", ref.locked[gid].source)
            message = result.messages.get(gid, "")
            verdict = (
                f"✓ {gid}: {result.points.get(gid, 0):g} / {ref.tests[gid]:g}"
                if not message
                else f"✗ {gid}: {result.points.get(gid, 0):g} / {ref.tests[gid]:g} — {message}"
            )
            new = nbformat.v4.new_code_cell(source)
            new.outputs = [nbformat.v4.new_output("stream", name="stdout", text=verdict + "\n")]
            cells.append(new)
        elif gid in ref.locked:
            cells.append(nbformat.from_dict(dict(ref.locked[gid])))
        else:
            cells.append(cell)
    out = nbformat.v4.new_notebook(
        cells=cells, metadata={"kernelspec": ref.nb.metadata.get("kernelspec", {})}
    )
    return out


def render_feedback(nb, ref: Reference, result: Result, assignment: str) -> str:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab", sanitize_html=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    body, _ = exporter.from_notebook_node(feedback_notebook(nb, ref, result, assignment))
    return body


def fmt(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


def rows(course: Course, ref: Reference, roster: list[str] = ()) -> list[dict]:
    """One CSV row per submission record, plus a `missing` row per rostered student without one."""
    out = {}
    for rec in sorted((course.work / "records").glob("*.json")):
        r = Result(**json.loads(rec.read_text()))
        per_ex = {ex: "" for ex in ref.exercises}
        if r.score is not None:
            for ex in ref.exercises:
                pts = [v for g, v in r.points.items() if release.exercise_of(g) == ex]
                per_ex[ex] = fmt(sum(pts)) if pts else ""
        out[r.student_id] = {
            "student_id": r.student_id,
            "status": r.status,
            "score": fmt(r.score),
            "max_score": fmt(ref.max_score),
            "reason": r.reason,
            **per_ex,
        }
    for sid in roster:
        if sid not in out:
            out[sid] = {
                "student_id": sid,
                "status": "missing",
                "score": "",
                "max_score": fmt(ref.max_score),
                "reason": "no submission",
                **{ex: "" for ex in ref.exercises},
            }
    return [out[k] for k in sorted(out)]


def export(course: Course, out: Path, roster: list[str] = ()) -> list[dict]:
    ref = Reference.read(course.release_nb)
    table = rows(course, ref, roster)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns(ref))
        writer.writeheader()
        writer.writerows(table)
    return table
