"""nbgrader's exchange on the class hub under load: ten learners (real Unix users, `course hub setup`) submit
within the same few seconds with `nbgrader submit`; `course grade collect --exchange` collects each submission
exactly once, every one with its own learner's notebook. Needs root (useradd)."""

from __future__ import annotations

import subprocess
import time

import pytest
from browser.test_hub import Hub, class_folder, make_class  # noqa: F401 (class_folder is a fixture)

from course.grading import release

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("hub")]
LEARNERS = [f"L{i}" for i in range(10)]
MARK = "submitted by {user}"
# fetch, sign the notebook, then wait for the go signal and submit
LEARNER_SH = (
    "set -e; nbgrader fetch_assignment {a}; "
    "python -c \"import nbformat as n, sys; p='{a}/{nb}'; nb=n.read(p, 4); "
    "nb.cells.append(n.v4.new_markdown_cell(sys.argv[1])); n.write(nb, p)\" '{mark}'; "
    "touch ~/ready; while [ ! -e {go} ]; do sleep 0.05; done; nbgrader submit {a}"
)


def test_ten_learners_submit_at_once(class_folder):  # noqa: F811
    base, tag = class_folder
    hub = Hub("", base / "hub", base / "homes", make_class(base, tag, LEARNERS))
    hub.run_as("instructor", str(hub.bin / "course"), "hub", "release")
    go = base / "go"
    procs = {}
    for name in LEARNERS:
        user = hub.users[name]
        script = LEARNER_SH.format(
            a=release.ASSIGNMENT, nb=release.NOTEBOOK, mark=MARK.format(user=user), go=go
        )
        procs[name] = subprocess.Popen(
            hub.as_user(name, "bash", "-c", script),
            cwd=hub.home(name),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + 300
    while not all((hub.home(n) / "ready").exists() for n in LEARNERS):
        failed = [n for n, p in procs.items() if p.poll() not in (None, 0)]
        assert not failed, procs[failed[0]].stdout.read()[-3000:]
        assert time.monotonic() < deadline, "learners not ready within 300 s"
        time.sleep(0.1)  # polling the learners' ready files
    go.touch()
    for name, p in procs.items():
        assert p.wait(300) == 0, f"{name}: {p.stdout.read()[-3000:]}"

    inbound = sorted((hub.exchange / "transformer-anatomy" / "inbound").iterdir())
    assert len(inbound) == len(LEARNERS), [p.name for p in inbound]
    stamps = sorted((p / "timestamp.txt").read_text() for p in inbound)
    print(f"submissions between {stamps[0]} and {stamps[-1]}")

    course = hub.home("instructor") / "course"
    solutions = course / "solutions" / release.ASSIGNMENT / release.NOTEBOOK
    collect = [str(hub.bin / "course"), "grade", "collect", "--exchange", str(hub.exchange)]
    for _ in range(2):  # a second collect finds nothing new and duplicates nothing
        hub.run_as("instructor", *collect, "--solutions", str(solutions), "--course", str(course))
        submitted = sorted(p.name for p in (course / "submitted").iterdir())
        assert submitted == sorted(hub.users[n] for n in LEARNERS), submitted
        for user in submitted:
            notebooks = list((course / "submitted" / user / release.ASSIGNMENT).glob("*.ipynb"))
            assert [p.name for p in notebooks] == [release.NOTEBOOK], notebooks
            text = notebooks[0].read_text()
            marks = [u for u in submitted if MARK.format(user=u) in text]
            assert marks == [user], f"{user}'s collected notebook carries the marks of {marks}"
