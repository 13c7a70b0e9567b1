# Start-up file of JupyterLab's terminal under `make lab` (see jupyter_lab_config.py): the learner's usual bash
# set-up (Debian's bash reads /etc/bash.bashrc by itself), then the course's virtual environment first on PATH,
# so that `course check ...` works there.
[ -r "$HOME/.bashrc" ] && . "$HOME/.bashrc"
if [ -n "$COURSE_VENV_BIN" ]; then
  export VIRTUAL_ENV="$(dirname "$COURSE_VENV_BIN")"
  export PATH="$COURSE_VENV_BIN:$PATH"
fi
