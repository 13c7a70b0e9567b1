"""Real-browser tests (pytest -m browser): JupyterLab chapters, nbgrader, `course explore`, `course
export-html`."""
