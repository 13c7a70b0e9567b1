"""The deployment recipe, as far as it can be checked without a cluster or a container engine: the Helm
values parse and name only keys of the Zero to JupyterHub chart, and the Dockerfile builds with the make
targets CI runs and puts the course where the values expect it.

Z2JH_KEYS lists the chart's keys the values may use. Source: `jupyterhub/values.schema.yaml` of the chart
4.4.0 (github.com/jupyterhub/zero-to-jupyterhub-k8s, tag 4.4.0, commit 5c5f5df7), against which the values,
merged onto the chart's own values.yaml, were validated with jsonschema (Draft 7): no error; a misspelt key
(`singleuser.cpu.limt`) gave one. The schema is not in this repository: set Z2JH_SCHEMA and Z2JH_VALUES to
the chart's values.schema.yaml and values.yaml to repeat that validation here."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

from course.grading.release import configure

ROOT = Path(__file__).resolve().parents[1]
VALUES = ROOT / "deploy" / "z2jh-values.yaml"
# Key paths of the chart's schema. Below the ones marked with "*", the chart passes content through
# (traitlets config, Kubernetes objects, files) that its schema does not restrict.
Z2JH_KEYS = {
    "hub", "hub.config*",
    "singleuser", "singleuser.image", "singleuser.image.name", "singleuser.image.tag",
    "singleuser.defaultUrl",
    "singleuser.cpu", "singleuser.cpu.guarantee", "singleuser.cpu.limit",
    "singleuser.memory", "singleuser.memory.guarantee", "singleuser.memory.limit",
    "singleuser.storage", "singleuser.storage.capacity", "singleuser.storage.extraVolumes*",
    "singleuser.storage.extraVolumeMounts*", "singleuser.extraFiles*", "singleuser.lifecycleHooks",
    "singleuser.lifecycleHooks.postStart*",
    "cull", "cull.enabled", "cull.timeout", "cull.every", "cull.users",
}  # fmt: skip


def key_paths(tree: dict, prefix: str = "") -> list[str]:
    """Dotted paths of every mapping key, stopping below pass-through keys."""
    out = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if f"{path}*" in Z2JH_KEYS:
            out.append(f"{path}*")
        else:
            out.append(path)
            if isinstance(value, dict):
                out += key_paths(value, path + ".")
    return out


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def test_values_name_only_chart_keys(values):
    unknown = [p for p in key_paths(values) if p not in Z2JH_KEYS]
    assert not unknown, f"not keys of the jupyterhub chart 4.4.0: {unknown}"
    assert key_paths({"singleuser": {"cpu": {"limt": 2}}}) == [
        "singleuser",
        "singleuser.cpu",
        "singleuser.cpu.limt",
    ]


def test_values_carry_the_class_setup(values):
    user = values["singleuser"]
    assert (ROOT / user["defaultUrl"].removeprefix("/lab/tree/")).is_file()  # the start page exists
    assert user["memory"]["limit"] and user["cpu"]["limit"] and values["cull"]["enabled"] is True
    [mount] = user["storage"]["extraVolumeMounts"]
    config = user["extraFiles"]["nbgrader-config"]["stringData"]
    assert f'c.Exchange.root = "{mount["mountPath"]}"' in config
    c = Config()
    configure(c, ROOT)
    assert f'c.CourseDirectory.course_id = "{c.CourseDirectory.course_id}"' in config


def test_dockerfile_builds_with_the_make_targets_ci_runs(values):
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    targets = re.findall(r"\bmake (\w[\w-]*)", "\n".join(re.findall(r"^RUN (.*)$", dockerfile, re.M)))
    ci = re.findall(r"^make (\w[\w-]*)", (ROOT / ".ci" / "run").read_text(), re.M)
    assert targets and ci and set(ci) <= set(targets), (targets, ci)
    assert all(re.search(rf"^{t}:", makefile, re.M) for t in targets), targets
    course = re.findall(r"^WORKDIR (\S+)", dockerfile, re.M)[0]  # where the image keeps the course
    hook = values["singleuser"]["lifecycleHooks"]["postStart"]["exec"]["command"][-1]
    assert f"{course}/notebooks" in hook, hook


@pytest.mark.skipif(not os.environ.get("Z2JH_SCHEMA"), reason="the chart's schema is not in this repository")
def test_values_validate_against_the_chart_schema(values):
    import jsonschema

    schema = yaml.safe_load(Path(os.environ["Z2JH_SCHEMA"]).read_text())
    merged = _merge(yaml.safe_load(Path(os.environ["Z2JH_VALUES"]).read_text()), values)
    errors = [f"{list(e.path)}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(merged)]
    assert not errors, errors


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = _merge(base[key], value) if both else value
    return out
