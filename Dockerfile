# The course's single-user image for Zero to JupyterHub (deploy/z2jh-values.yaml): the course, its Python
# environment and JupyterHub's single-user server. It is built with the make targets CI runs (.ci/run runs
# `make test`, which is `make install` and then the suite): `make install` always, `make test` as well with
#     docker build --build-arg TEST=1 -t transformer-anatomy .
# Not built here: no container engine on the machines this was written on (README, "Deployment").
FROM python:3.11-slim-bookworm

ARG TEST=0
# torch's CPU wheels (a learner's server has no GPU); pip prefers them to PyPI's CUDA build (x.y.z+cpu > x.y.z)
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PIP_NO_CACHE_DIR=1 \
    PATH=/srv/course/.venv/bin:$PATH

RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/course
COPY . .
RUN make install
RUN if [ "$TEST" = 1 ]; then make test; fi
# jupyterhub-singleuser, at the version of the chart's hub (chart 4.4.0 runs JupyterHub 5.5.0)
RUN pip install "jupyterhub==5.5.0"

RUN useradd --create-home --uid 1000 jovyan
USER jovyan
WORKDIR /home/jovyan
CMD ["jupyterhub-singleuser"]
