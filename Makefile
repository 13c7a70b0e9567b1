# Transformer Anatomy — the two set-up commands are `make lab` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PYTHONWARNINGS := ignore

# On machines that ship the CPU wheel of torch 2.13.0 on local disk (this project's build machines) use it,
# so that pip never pulls a multi-GB CUDA build; elsewhere take the platform's default torch.
TORCH_SPEC := $(shell ls /opt/wheels/torch-2.13.0+cpu-* >/dev/null 2>&1 && echo "torch==2.13.0" || echo "torch")
LAB_FLAGS := $(if $(DISPLAY),,--no-browser) $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: install lab hub hub-deps test test-fast lint browser-deps jail-deps site bench release check weights clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	# jsonschema's optional IRI checker (pulled in by jupyter-events) costs 2-6 s of CPU in every process that
	# imports nbformat or plotly — every notebook kernel and grading job. Nothing in the course needs it.
	$(PY) -m pip uninstall -y -q rfc3987-syntax
	touch $(STAMP)

install: $(STAMP) jail-deps

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --config=course/lab/jupyter_lab_config.py $(LAB_FLAGS)

# JupyterHub for a class on this machine (run as root): users from ROSTER ('name' or 'name instructor' a line),
# the hub's state and nbgrader's exchange in HUB_DIR; listens on HUB_IP:HUB_PORT (README, "Teaching a class").
ROSTER ?= roster.txt
HUB_DIR ?= /srv/transformer-anatomy
HUB_IP ?= 127.0.0.1
HUB_PORT ?= 8000
hub: $(STAMP) hub-deps
	$(PY) -m course hub setup --roster $(ROSTER) --hub $(abspath $(HUB_DIR))
	cd $(HUB_DIR) && COURSE_HUB_DIR=$(abspath $(HUB_DIR)) COURSE_HUB_IP=$(HUB_IP) COURSE_HUB_PORT=$(HUB_PORT) \
	  $(CURDIR)/$(PY) -m jupyterhub -f $(CURDIR)/course/hub/jupyterhub_config.py

# patchelf for `course hub setup` where the environment's interpreter is private to root (pyenv under /root): the
# users' servers run a relocatable copy of it. Debian's package, installed when missing (needs root or sudo).
hub-deps:
	@command -v patchelf >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq patchelf >/dev/null; }

# Chromium for the browser tests: Debian's package, installed when missing (needs root or sudo).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

# bubblewrap for the grading jail (`course grade`): Debian's package, installed when missing (needs root or sudo).
jail-deps:
	@command -v bwrap >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq bubblewrap >/dev/null; }

test: $(STAMP) browser-deps jail-deps lint
	$(PY) -m pytest -q -n 2 --dist loadgroup -p no:cacheprovider --durations=15

test-fast: $(STAMP) jail-deps
	$(PY) -m pytest -q -n 2 -m "not browser and not slow" -p no:cacheprovider

# The linter and formatter with the rules chosen in pyproject.toml; `make test` runs them first.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

site: $(STAMP)
	$(PY) -m course site --out site

bench: $(STAMP)
	$(PY) -m course bench

release: $(STAMP)
	$(PY) -m course grade release
	$(PY) -m course grade release --assignment capstone

check: $(STAMP)
	$(PY) -m course check exercises/transformers/exercises.ipynb

weights: $(STAMP)
	$(PY) -m course train all --out course/weights

clean:
	rm -rf site test-artifacts .pytest_cache
