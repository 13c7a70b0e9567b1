"""What the class got wrong: per exercise, the score distribution and the most common diagnoses (from the
catalogue, `diagnoses`) with the students they concern ("ex02: the mask was applied after the softmax — 9 of
40").

    diagnosis_rows(results)                      # the mistakes table, from the trusted records
    write(folder, grades, mistakes, exercises)   # class-report.csv (mistakes), class-report.html (plots)

Both are built from the grades CSV's rows and the mistakes table only, so the shards of a class graded
apart merge into the same report (`course grade merge`)."""

from __future__ import annotations

import csv
import html
from collections import Counter
from pathlib import Path

from course.grading import diagnoses, release
from course.grading.job import Result

FIELDS = ["exercise", "diagnosis", "mistake", "students", "graded", "student_ids"]


def diagnosis_rows(results: list[Result]) -> list[dict]:
    """One row per (exercise, catalogued mistake) named in a failed test of a graded submission: its students.
    `graded` (the "of N") is filled in by `write`, from the grades."""
    found: dict[tuple[str, str], set[str]] = {}
    for r in results:
        if r.score is None:
            continue
        for gid, message in r.messages.items():
            key = diagnoses.named(message)
            if key is not None:
                found.setdefault((release.exercise_of(gid), key), set()).add(r.student_id)
    return [
        {"exercise": ex, "diagnosis": key, "student_ids": ";".join(sorted(ids))}
        for (ex, key), ids in found.items()
    ]


def merged(rows: list[dict]) -> list[dict]:
    """Rows of several tables (shards) joined: one per (exercise, diagnosis), the students' union."""
    found: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        ids = found.setdefault((row["exercise"], row["diagnosis"]), set())
        ids.update(filter(None, row["student_ids"].split(";")))
    return [
        {"exercise": ex, "diagnosis": key, "student_ids": ";".join(sorted(ids))}
        for (ex, key), ids in found.items()
    ]


def _complete(mistakes: list[dict], graded: int) -> list[dict]:
    """Most common first within each exercise; each row with its words, counts and the class size."""
    out = [
        {
            **row,
            "mistake": diagnoses.short(row["diagnosis"]),
            "students": len(row["student_ids"].split(";")),
            "graded": graded,
        }
        for row in mistakes
    ]
    return sorted(out, key=lambda r: (r["exercise"], -r["students"], r["diagnosis"]))


def distribution(grades: list[dict], exercise: str) -> dict[float, int]:
    """Points -> number of graded submissions with them, for one exercise (its CSV column)."""
    counts = Counter(float(row[exercise]) for row in grades if row["score"] != "" and row[exercise] != "")
    return dict(sorted(counts.items()))


def write(folder: Path, grades: list[dict], mistakes: list[dict], exercises: list[str]) -> list[dict]:
    """class-report.csv and class-report.html in `folder`; returns the CSV's rows."""
    graded = sum(row["score"] != "" for row in grades)
    table = _complete(mistakes, graded)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "class-report.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in FIELDS} for row in table)
    (folder / "class-report.html").write_text(_html(grades, table, exercises, graded))
    return table


def read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _html(grades: list[dict], table: list[dict], exercises: list[str], graded: int) -> str:
    parts = [
        "<!doctype html><meta charset='utf-8'><title>Class report</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}svg{display:block}"
        "li{margin:.2em 0}.ids{color:#666;font-size:small}</style>",
        f"<h1>Class report</h1><p>{graded} graded submissions. Per exercise: how many got which points, and "
        "the most common mistakes the diagnosis catalogue recognised in failed tests.</p>",
    ]
    for ex in exercises:
        parts.append(f"<h2>{html.escape(ex)}</h2>" + _bars(distribution(grades, ex), graded))
        mine = [row for row in table if row["exercise"] == ex]
        items = "".join(
            f"<li>{ex}: {html.escape(row['mistake'])} — <b>{row['students']} of {graded}</b> "
            f"<span class='ids'>({html.escape(', '.join(row['student_ids'].split(';')))})</span></li>"
            for row in mine
        )
        parts.append(f"<ul>{items}</ul>" if mine else "<p>No catalogued mistake.</p>")
    return "\n".join(parts) + "\n"


def _bars(counts: dict[float, int], graded: int, *, width: int = 36, height: int = 100) -> str:
    """An inline SVG bar chart: one bar per points value, its height the share of graded submissions."""
    if not counts:
        return "<p>Nothing graded.</p>"
    bars = []
    for i, (points, n) in enumerate(counts.items()):
        h = round(height * n / max(graded, 1))
        x = 10 + i * (width + 8)
        bars.append(
            f"<rect x='{x}' y='{height + 20 - h}' width='{width}' height='{h}' fill='#4a7fb5'>"
            f"<title>{points:g} points: {n}</title></rect>"
            f"<text x='{x + width / 2}' y='{height + 16 - h}' text-anchor='middle' font-size='11'>{n}</text>"
            f"<text x='{x + width / 2}' y='{height + 34}' text-anchor='middle' font-size='11'>"
            f"{points:g}</text>"
        )
    w = 20 + len(counts) * (width + 8)
    return (
        f"<svg width='{max(w, 170)}' height='{height + 52}' role='img' aria-label='points per submission'>"
        + "".join(bars)
        + f"<text x='10' y='{height + 48}' font-size='10'>points (bar: submissions with them)</text></svg>"
    )
