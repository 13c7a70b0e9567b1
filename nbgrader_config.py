"""nbgrader reads its configuration from the directory JupyterLab was started in (`make lab` starts it here):
load the course's, so the Validate button uses the course's cell timeout and stderr filters."""

import os

load_subconfig(os.path.join(os.path.dirname(os.path.abspath(__file__)), "graders", "nbgrader_config.py"))  # noqa: F821
