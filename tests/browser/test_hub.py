"""The class on JupyterHub (`course hub`, course/hub/jupyterhub_config.py), one round trip in a real browser:
the instructor releases the assignment; learners A (every answer from the solutions) and B (two exercises left
as released stubs) log in, land on the start page, fetch, validate and submit from the Assignments tab; the
instructor collects and grades with `course grade` and returns the feedback; each learner fetches their own.
B cannot read A's work, the exchange's inbound or the instructor's course, neither through the hub nor in a
terminal.

Needs root (it creates throw-away Unix users with useradd, and removes them). The hub runs with JupyterHub's
DummyAuthenticator (a shared test password) in place of PAM; everything else is `make hub`'s configuration.
"""

from __future__ import annotations

import csv
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from course.grading import release
from tests.grading.grading_builders import Builder

from .conftest import ARTIFACTS, REPO, free_port, http_ok, start, stop, throwaway_env, wait_ready
from .pages import Lab
from .test_nbgrader import ROW_STATE_JS

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("hub")]
PASSWORD = "test-only"
START_PAGE = "notebooks/00-start-here.ipynb"
LEFT_AS_STUBS = ("ex09", "ex10")  # learner B's unanswered exercises
# One shell command per path: DENIED when the user can not read it, READABLE otherwise.
PROBE = "for p in {paths}; do (cat $p || ls $p) >/dev/null 2>&1 && echo READABLE:$p || echo DENIED:$p; done"
TERMINAL_JS = """async cmd => {
  const s = await jupyterapp.serviceManager.terminals.startNew();
  let out = '';
  const done = new Promise(ok => s.messageReceived.connect((_, m) => {
    if (m.type === 'stdout') { out += m.content[0]; if (out.includes('__END__')) ok(); }
  }));
  s.send({type: 'stdin', content: [cmd + "; echo __E''ND__\\n"]});
  await done;
  await s.shutdown();
  return out;
}"""
SAVE_JS = """([path, nb]) => jupyterapp.serviceManager.contents.save(path,
  {type: 'notebook', format: 'json', content: nb})"""
REFUSED_JS = "p => jupyterapp.serviceManager.contents.get(p).then(() => 'served', () => 'refused')"
GET_JS = """([path, fmt]) => jupyterapp.serviceManager.contents
  .get(path, fmt ? {format: fmt, content: true} : {content: true}).then(m => m.content)"""


class Hub:
    """A running hub: `url`, its folder `dir`, the roster's users, and `home(name)`."""

    def __init__(self, url: str, folder: Path, homes: Path, users: dict[str, str]):
        self.url, self.dir, self.homes, self.users = url, folder, homes, users
        self.bin = Path(json.loads((folder / "class.json").read_text())["bin"])
        self.exchange = folder / "exchange"

    def home(self, name: str) -> Path:
        return self.homes / self.users[name]

    def as_user(self, name: str, *cmd: str, role: str = "learner") -> list[str]:
        """The command line that runs `cmd` as a roster user, with the environment their server gives them."""
        variables = {
            "HOME": str(self.home(name)),
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "COURSE_HUB_EXCHANGE": str(self.exchange),
            "JUPYTER_CONFIG_PATH": str(self.dir / "config" / role),
        }
        return [
            "runuser",
            "-u",
            self.users[name],
            "--",
            "env",
            *(f"{k}={v}" for k, v in variables.items()),
            *cmd,
        ]

    def run_as(self, name: str, *cmd: str) -> str:
        """Run a command as a roster user (as their terminal would), fail with its output if it fails."""
        role = "instructor" if name == "instructor" else "learner"
        user = self.users[name]
        done = subprocess.run(
            self.as_user(name, *cmd, role=role),
            cwd=self.home(name),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{cmd} as {user} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        return done.stdout


def course_hub(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "course", "hub", *args], check=True, capture_output=True, cwd=REPO)


@pytest.fixture(scope="module")
def class_folder():
    """A world-searchable folder for the hub and the users' homes, and a roster of fresh user names; the
    users are removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the hub test creates Unix users: run it as root")
    base = Path(tempfile.mkdtemp(prefix="course-hub-", dir="/tmp"))
    base.chmod(0o755)
    (base / "homes").mkdir(mode=0o755)
    tag = secrets.token_hex(3)
    yield base, tag
    roster = base / "roster.txt"
    if roster.exists():
        for user in [line.split()[0] for line in roster.read_text().splitlines()]:  # servers left behind
            found = subprocess.run(["pgrep", "-u", user], capture_output=True, text=True).stdout.split()
            for pid in map(int, found):
                os.kill(pid, signal.SIGKILL)
        course_hub("remove", "--roster", str(roster))
    shutil.rmtree(base, ignore_errors=True)


def make_class(base: Path, tag: str, learners: list[str]) -> dict[str, str]:
    users = {"instructor": f"ti{tag}", **{n: f"t{n.lower()}{tag}" for n in learners}}
    roster = base / "roster.txt"
    roster.write_text(f"{users['instructor']} instructor\n" + "".join(f"{users[n]}\n" for n in learners))
    course_hub(
        "setup", "--roster", str(roster), "--hub", str(base / "hub"), "--home-base", str(base / "homes")
    )
    return users


@pytest.fixture(scope="module")
def hub(class_folder):
    base, tag = class_folder
    users = make_class(base, tag, ["A", "B"])
    port, hub_port, api_port = free_port(), free_port(), free_port()
    config = base / "test_jupyterhub_config.py"
    config.write_text(
        f"load_subconfig({str(REPO / 'course' / 'hub' / 'jupyterhub_config.py')!r})  # noqa: F821\n"
        "c.JupyterHub.authenticator_class = 'dummy'\n"
        f"c.DummyAuthenticator.password = {PASSWORD!r}\n"
        f"c.JupyterHub.bind_url = 'http://127.0.0.1:{port}'\n"
        f"c.JupyterHub.hub_port = {hub_port}\n"
        f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{api_port}'\n"
        "c.Spawner.args = [*c.Spawner.args, '--LabApp.expose_app_in_browser=True']  # window.jupyterapp\n"
    )
    env = dict(throwaway_env(base / "root"), COURSE_HUB_DIR=str(base / "hub"))
    log = base / "jupyterhub.log"
    proc = start([sys.executable, "-m", "jupyterhub", "-f", str(config)], base, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(lambda: http_ok(f"{url}/hub/api"), proc, log)
        yield Hub(url, base / "hub", base / "homes", users)
    finally:
        stop(proc, log)


class Learner:
    """One learner's browser page on the hub."""

    def __init__(self, page, hub: Hub, name: str):
        self.page, self.hub, self.name, self.user = page, hub, name, hub.users[name]
        self.lab = Lab(page, type("Server", (), {"url": f"{hub.url}/user/{self.user}"}))

    def log_in(self) -> None:
        """Log in and wait for the landing page: the course's start page open in Lab."""
        self.page.goto(f"{self.hub.url}/hub/login")
        self.page.fill("#username_input", self.user)
        self.page.fill("#password_input", PASSWORD)
        self.page.click("#login_submit")
        self.page.wait_for_function("() => window.jupyterapp", timeout=240_000)
        self.page.evaluate("() => jupyterapp.restored.then(() => true)")
        self.page.wait_for_function(
            "p => jupyterapp.shell.currentWidget?.context?.path === p", arg=START_PAGE, timeout=60_000
        )

    def assignments(self):
        self.lab.start()
        self.lab.command("nbgrader:open-assignment-list")
        return self.page.locator("#released_assignments_list")

    def fetch(self) -> None:
        released = self.assignments()
        released.get_by_text(release.ASSIGNMENT, exact=True).wait_for()
        released.get_by_role("button", name="Fetch").click()
        self.page.locator("#fetched_assignments_list .assignment-notebooks-link").filter(
            has_text=release.ASSIGNMENT
        ).wait_for()

    def answer(self, nb) -> None:
        path = f"{release.ASSIGNMENT}/{release.NOTEBOOK}"
        self.page.evaluate(SAVE_JS, [path, json.loads(nbformat.writes(nb))])

    def validate(self) -> str:
        """Click Validate on the fetched notebook; the text of the results dialog."""
        self.assignments()
        fetched = self.page.locator("#fetched_assignments_list")
        link = fetched.locator(".assignment-notebooks-link").filter(has_text=release.ASSIGNMENT)
        if self.page.wait_for_function(ROW_STATE_JS, arg=release.ASSIGNMENT).json_value() == "collapsed":
            link.click()
        fetched.locator(".nested_list_item").filter(
            has_text=release.NOTEBOOK.removesuffix(".ipynb")
        ).get_by_role("button", name="Validate").click()
        dialog = self.page.locator(".jp-Dialog").filter(has_text="Validation Results")
        dialog.wait_for(timeout=300_000)
        text = dialog.inner_text()
        dialog.get_by_role("button", name="Ok").click()
        return text

    def submit(self) -> None:
        fetched = self.page.locator("#fetched_assignments_list")
        fetched.locator(".list_item").filter(has_text=release.ASSIGNMENT).get_by_role(
            "button", name="Submit"
        ).first.click()
        self.page.locator("#submitted_assignments_list .list_item").filter(
            has_text=release.ASSIGNMENT
        ).first.wait_for()

    def fetch_feedback(self) -> list[str]:
        """Fetch Feedback in the Assignments tab; the text of every feedback page the learner now has."""
        self.assignments()
        self.page.locator("#submitted_assignments_list").get_by_role(
            "button", name="Fetch Feedback"
        ).first.click()
        self.page.locator("#submitted_assignments_list").get_by_text("view feedback").first.wait_for()
        root = f"{release.ASSIGNMENT}/feedback"
        pages = []
        for stamp in self.page.evaluate(GET_JS, [root, None]):
            for f in self.page.evaluate(GET_JS, [stamp["path"], None]):
                if f["name"].endswith(".html"):
                    html = self.page.evaluate(GET_JS, [f["path"], "text"])
                    pages.append(re.sub(r"<[^>]+>", "", html))
        return pages

    def terminal(self, cmd: str) -> str:
        return self.page.evaluate(TERMINAL_JS, cmd)


def points() -> tuple[float, dict[str, float]]:
    """Max score and points per exercise, read from the release's test cells."""
    per: dict[str, float] = {}
    for cell in nbformat.read(release.RELEASE, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            ex = release.exercise_of(meta["grade_id"])
            per[ex] = per.get(ex, 0.0) + float(meta.get("points", 0))
    return sum(per.values()), per


def test_class_round_trip(hub, browser):
    total, per = points()
    expected = {"A": total, "B": total - sum(per[e] for e in LEFT_AS_STUBS)}
    builder = Builder(release.RELEASE, release.SOURCE)
    answers = {
        "A": builder.notebook("all"),
        "B": builder.notebook([e for e in release.EXERCISES if e not in LEFT_AS_STUBS]),
    }
    hub.run_as("instructor", str(hub.bin / "course"), "hub", "release")

    learners = {}
    try:
        round_trip(hub, browser, learners, answers, expected, total)
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        for name, me in learners.items():
            me.page.screenshot(path=ARTIFACTS / f"test_hub-{name}.png")
            me.page.context.close()


def round_trip(hub, browser, learners, answers, expected, total):
    for name in ("A", "B"):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(60_000)
        learners[name] = me = Learner(context.new_page(), hub, name)
        me.log_in()
        me.fetch()
        me.answer(answers[name])
        text = me.validate()
        if name == "A":
            assert "Success! Your notebook passes all the tests." in text, text[:3000]
        else:
            assert "Success" not in text and text.count("NotImplementedError") >= len(LEFT_AS_STUBS), text[
                :3000
            ]
        me.submit()

    solutions = hub.home("instructor") / "course" / "solutions" / release.ASSIGNMENT / release.NOTEBOOK
    course = ["--course", str(hub.home("instructor") / "course"), "--solutions", str(solutions)]
    grade = [str(hub.bin / "course"), "grade"]
    hub.run_as("instructor", *grade, "collect", "--exchange", str(hub.exchange), *course)
    hub.run_as("instructor", *grade, "autograde", "--jobs", "2", *course)
    hub.run_as("instructor", *grade, "feedback", *course)
    out = hub.home("instructor") / "course" / "grades.csv"
    hub.run_as("instructor", *grade, "export", "--out", str(out), *course)
    rows = {r["student_id"]: r for r in csv.DictReader(out.open())}
    for name, score in expected.items():
        row = rows[hub.users[name]]
        assert (row["status"], float(row["score"]), float(row["max_score"])) == ("graded", score, total), row
    hub.run_as("instructor", str(hub.bin / "course"), "hub", "return-feedback", *course[:2])

    for name, me in learners.items():
        pages = me.fetch_feedback()
        assert len(pages) == 1, f"{name} sees {len(pages)} feedback pages"
        assert f"feedback for {me.user}" in pages[0], pages[0][:2000]
        assert f"Score: {expected[name]:g} / {total:g}" in pages[0], pages[0][:2000]
        others = [u for n, u in hub.users.items() if n != name]
        assert not any(u in pages[0] for u in others), f"{name}'s feedback names another user"

    # B against A's work, the exchange's inbound and the instructor's course: the hub and the kernel refuse.
    b, a_user = learners["B"], hub.users["A"]
    for url in (f"{hub.url}/user/{a_user}/api/contents", f"{hub.url}/user/{a_user}/lab"):
        response = b.page.request.get(url, max_redirects=0)
        assert response.status in (302, 403, 404), f"B got {response.status} from {url}"
    outside = f"../{a_user}/{release.ASSIGNMENT}"
    assert b.page.evaluate(REFUSED_JS, outside) == "refused", f"B's contents API served {outside}"
    paths = [
        hub.home("A") / release.ASSIGNMENT / release.NOTEBOOK,
        hub.home("A"),
        hub.exchange / "transformer-anatomy" / "inbound",
        hub.home("instructor") / "course" / "submitted",
        solutions,
        release.SOURCE,
    ]
    assert all(p.exists() for p in paths), [p for p in paths if not p.exists()]
    out = b.terminal(PROBE.format(paths=" ".join(map(str, paths))))
    verdicts = re.findall(r"(DENIED|READABLE):(/\S+)", out)  # the output's lines, not the echoed command
    assert sorted(verdicts) == sorted(("DENIED", str(p)) for p in paths), out[-3000:]
