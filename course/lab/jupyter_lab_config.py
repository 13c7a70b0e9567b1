"""JupyterLab as `make lab` starts it: `jupyter lab --config=course/lab/jupyter_lab_config.py`.

* Opens the start page. `ServerApp.default_url` is overridden by JupyterLab's own default (the Launcher);
  `LabApp.default_url` is the one that counts, and the URL Jupyter prints then opens this page too.
* Lab's terminal finds `course`. Left to itself, the server runs a *login* shell when it has no terminal
  of its own (the usual case), and /etc/profile resets PATH, dropping the virtual environment's bin
  folder. The terminal starts bash with `terminal.bashrc`, which reads the learner's ~/.bashrc and then puts
  this Python's bin folder (`course`, `jupyter`, `python`) first on PATH.
* Validate (nbgrader's button) reports like `course check`: totals and per-exercise lines first, then one
  diagnosis per failing test (`course.grading.validate`).
Command-line options after `--config` override these settings.
"""

import os
import shutil
import sys
from pathlib import Path

import plotly

from course.grading.validate import install as install_course_validator

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
START_PAGE = "/lab/tree/notebooks/00-start-here.ipynb"

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)
c.ServerApp.root_dir = str(REPO)
c.LabApp.default_url = START_PAGE

os.environ["COURSE_VENV_BIN"] = str(Path(sys.executable).parent)  # inherited by every terminal
bash = shutil.which("bash")
if bash:
    c.ServerApp.terminado_settings = {
        "shell_command": [bash, "--rcfile", str(HERE / "terminal.bashrc"), "-i"]
    }
# PNGs of the figures for readers without plotly (nbconvert, GitHub) are drawn at save time, by one Kaleido
# browser in the server, never by a browser per kernel.
c.FileContentsManager.pre_save_hook = "course.viz.static.save_hook"
# Plotly's widget bundle (5 MB) served once, at static/widgetbundle.js: course figures import it from here
# instead of each carrying it in its state (`course.viz.widget.SharedBundleFigureWidget`).
c.ServerApp.extra_static_paths = [str(Path(plotly.__file__).parent / "package_data")]
os.environ["COURSE_PLOTLY_BUNDLE"] = "1"  # inherited by every kernel
# Validate shows course check's totals and per-exercise lines first and a diagnosis per failing test.
install_course_validator()
