"""Grading a class past one machine: `--shard K/N` grades the K-th of N deterministic slices of the
submissions, and `merge` joins the shards' grades CSVs and class reports into one, equal to a single run's.

A submission belongs to shard 1 + sha256(folder name) mod N: stable by student id, whatever the order in
which a file system lists the folders, and a student added later moves nobody else. Rostered students without
a folder are reported `missing` by the shard that owns their id."""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from course.grading import class_report, report


@dataclass(frozen=True)
class Shard:
    index: int  # 1 … count
    count: int

    def owns(self, name: str) -> bool:
        """Whether the submission folder (or rostered id) `name` is graded by this shard."""
        digest = hashlib.sha256(os.fsencode(name)).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1


def parse(spec: str) -> Shard:
    """'2/8' -> Shard(2, 8); anything else is an argparse error (exit 2, naming the value)."""
    k, sep, n = spec.partition("/")
    if not (sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise argparse.ArgumentTypeError(
            f"{spec!r} is not a shard K/N with whole numbers 1 <= K <= N (e.g. 2/8)"
        )
    return Shard(int(k), int(n))


def merge(shard_csvs: list[Path], out: Path) -> list[dict]:
    """Join the shards' grades CSVs (one header, each student once, sorted as a single run sorts them) into
    `out`, and their class reports (each next to its CSV) into one next to `out`. Raises ValueError on shards
    that do not fit together."""
    if len({p.resolve().parent for p in shard_csvs}) != len(shard_csvs):
        raise ValueError("each shard needs a folder of its own (its class report lies next to its CSV)")
    header, rows = None, {}
    for path in shard_csvs:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if header is not None and reader.fieldnames != header:
                raise ValueError(f"{path}: its columns differ from {shard_csvs[0]}'s (another assignment?)")
            header = reader.fieldnames
            for row in reader:
                if row["student_id"] in rows:
                    raise ValueError(f"{path}: student {row['student_id']!r} is in two shards")
                rows[row["student_id"]] = row
    if header is None:
        raise ValueError("no shard CSV given")
    table = [rows[k] for k in sorted(rows)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(table)
    reports = [p.parent / "class-report.csv" for p in shard_csvs]
    mistakes = class_report.merged([row for p in reports if p.exists() for row in class_report.read(p)])
    exercises = header[len(report.HEAD) :]
    class_report.write(out.parent, table, mistakes, exercises)
    return table
