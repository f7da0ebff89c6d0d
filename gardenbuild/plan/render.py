"""Render the two Containerfiles of a garden from the Jinja2 templates in templates/."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2

from gardenbuild import __version__
from gardenbuild.manifest.garden import Garden
from gardenbuild.resources import data_dir
from gardenbuild.runtime.selftest import CASES_FILE as TESTS_FILE

VENV = "/opt/garden/venv"
WHEELHOUSE = "/opt/gardenbuild/wheels"
UV = "/opt/gardenbuild/uv"
DEBS = "/opt/gardenbuild/debs"
#: Who the notebook runs as at build time (pipeline calls are confined at run time).
NOTEBOOK_USER = "65534:65534"
ENV_TEMPLATE = "Containerfile.env.j2"
WEIGHTS_TEMPLATE = "Containerfile.weights.j2"
RUNTIME_TEMPLATE = "Containerfile.runtime.j2"
GARDEN_TEMPLATE = "Containerfile.j2"
API_TEMPLATE = "Containerfile.api.j2"
#: Where the garden image keeps what its server says about the garden (garden.json, examples.json).
API_DIR = "/garden/api"
#: The port a garden image serves on unless $PORT says otherwise.
SERVE_PORT = 8080


def quote(value: object) -> str:
    """A double-quoted Containerfile string: backslashes, quotes and ``$`` escaped.

    A value that spans lines (a label from a multi-line description) becomes one line,
    its whitespace runs joined by single spaces; anything else is kept exactly (env values
    with a newline are refused when the Gardenfile is read)."""
    text = str(value)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        text = " ".join(text.split())
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["quote"] = quote
    return env


def labels(garden: Garden) -> dict[str, str]:
    """OCI annotations carried by the final image; no timestamps, so builds reproduce."""
    meta = garden.meta
    out = {
        "org.opencontainers.image.title": meta.title,
        "org.opencontainers.image.description": meta.description or meta.title,
        "org.opencontainers.image.version": meta.version,
        "org.opencontainers.image.licenses": meta.license,
        "org.opencontainers.image.authors": ", ".join(a.name for a in meta.authors),
        "org.opencontainers.image.base.name": garden.base_image,
        "dev.gardenbuild.garden": meta.name,
        "dev.gardenbuild.python": garden.python,
        "dev.gardenbuild.flavor": garden.flavor.name,
        "dev.gardenbuild.accelerator": garden.accelerator,
        "dev.gardenbuild.pipelines": ",".join(p.name for p in garden.pipelines),
        "dev.gardenbuild.version": __version__,
    }
    if meta.repository:
        out["org.opencontainers.image.source"] = meta.repository
    return out


def env_context(garden: Garden) -> dict[str, Any]:
    """Everything `Containerfile.env.j2` renders from: the render-env step's parameters."""
    return {
        "gardenbuild_version": __version__,
        "base_image": garden.base_image,
        "system_packages": list(garden.system_packages),
        "venv": VENV,
        "wheelhouse": WHEELHOUSE,
        "debs": DEBS,
        "uv": UV,
    }


def garden_context(garden: Garden) -> dict[str, Any]:
    """Everything `Containerfile.j2` renders from except the image it builds FROM (the
    environment with the runtime: the build-runtime step's, named by its key)."""
    return {
        "gardenbuild_version": __version__,
        "env": dict(garden.env),
        "notebook": garden.notebook,
        "notebook_seconds": f"{garden.limits.notebook_seconds:g}",
        "secrets": list(garden.secrets),
        "user": NOTEBOOK_USER,
        "venv_python": f"{VENV}/bin/python",
        "tests_file": TESTS_FILE,
    }


def api_context(garden: Garden) -> dict[str, Any]:
    """Everything `Containerfile.api.j2` renders from except the session image (the
    execute-notebook step's, named by its key) and the garden card (its label, completed
    from what the notebook's run found)."""
    from gardenbuild.runtime.openapi import API_VERSION

    return {"gardenbuild_version": __version__, "api_dir": API_DIR, "port": SERVE_PORT, "api_version": API_VERSION,
            "labels": labels(garden)}


def runtime_context() -> dict[str, Any]:
    """Everything `Containerfile.runtime.j2` renders from except the image below it."""
    return {"gardenbuild_version": __version__, "port": SERVE_PORT, "venv_python": f"{VENV}/bin/python"}


def api_files(garden: Garden) -> dict[str, str]:
    """The files of the image's API folder: the garden's description and its test cases,
    which the server's OpenAPI document shows as examples."""
    meta = garden.meta
    about = {"name": meta.name, "title": meta.title, "version": meta.version, "description": meta.description,
             "license": meta.license, "limits": garden.limits.as_json()}
    examples = {p.name: [{"input": t.input, "expected": t.expected} for t in p.tests] for p in garden.pipelines}
    return {"garden.json": json.dumps(about, indent=2, sort_keys=True) + "\n",
            "examples.json": json.dumps(examples, indent=2, sort_keys=True) + "\n"}


def render(template: str, context: Mapping[str, Any]) -> str:
    """Render one of the templates from `context` alone."""
    return environment().get_template(template).render(**context)


def render_env(garden: Garden) -> str:
    return render(ENV_TEMPLATE, env_context(garden))


def render_garden(garden: Garden, from_image: str) -> str:
    """The garden's Containerfile, FROM `from_image` (the environment with the runtime)."""
    return render(GARDEN_TEMPLATE, {**garden_context(garden), "from_image": from_image})


def pipelines_config(garden: Garden) -> str:
    """The JSON the in-image executor reads: which pipelines to expect, with their tests."""
    config = {"garden": garden.name, "notebook": garden.notebook, "pipelines": [p.as_json() for p in garden.pipelines]}
    return json.dumps(config, indent=2, sort_keys=True) + "\n"
