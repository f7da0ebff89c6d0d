"""`gardenbuild init`: write a commented Gardenfile.toml for an existing notebook;
`gardenbuild notebook create`: a new garden folder, a starter notebook of its flavor and
its Gardenfile (with the starter's test case)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gardenbuild.errors import UserError
from gardenbuild.manifest import flavors
from gardenbuild.manifest.load import GARDENFILE
from gardenbuild.manifest.notebook import analyse
from gardenbuild.plan.render import environment


def init(directory: Path, *, notebook: str, python: str, flavor: str, name: str | None = None) -> Path:
    directory = directory.resolve()
    target = directory / GARDENFILE
    if target.exists():
        raise UserError(f"{target} already exists; not overwriting it", hint="edit it, or remove it first")
    if python not in flavors.supported_pythons():
        raise UserError(f"Python '{python}' is not supported", hint=f"choose one of {', '.join(flavors.supported_pythons())}")
    flavors.get(flavor)
    nb = directory / notebook
    if not nb.resolve().is_relative_to(directory):
        raise UserError(f"notebook {notebook} is outside {directory}", hint="move the notebook into DIR or a folder below it")
    if not nb.is_file():
        raise UserError(f"notebook {nb} does not exist", hint="pass --notebook relative to DIR")
    try:
        facts = analyse(nb)
    except ValueError as exc:
        raise UserError(f"{notebook} {exc}") from None
    meta, pipelines = {}, sorted(facts.pipelines)
    if facts.entrypoints:  # a garden-ai notebook: its EntrypointMetadata says what the Gardenfile would
        meta = from_entrypoint_metadata(facts.entrypoints[0][1], notebook)
    target.write_text(gardenfile(directory, notebook=notebook, python=python, flavor=flavor, name=name,
                                 pipelines=pipelines, meta=meta), encoding="utf-8")
    return target


def from_entrypoint_metadata(fields: Mapping[str, Any], notebook: str) -> dict[str, Any]:
    """The Gardenfile's [garden] fields from garden-ai's ``EntrypointMetadata`` (its literal
    fields, as `analyse` read them): title, description, tags, authors, papers, datasets."""
    def strings(value: Any) -> list[str]:
        return [str(v) for v in value] if isinstance(value, list) else []

    def records(value: Any, keys: tuple[str, ...]) -> list[dict[str, Any]]:
        out = []
        for item in value if isinstance(value, list) else []:
            if isinstance(item, Mapping) and item.get("title"):
                out.append({k: item.get(k) for k in keys})
        return out

    repositories = [r for r in fields.get("repositories") or [] if isinstance(r, Mapping) and r.get("url")]
    return {"title": str(fields.get("title") or ""), "description": str(fields.get("description") or ""),
            "keywords": strings(fields.get("tags")), "authors": strings(fields.get("authors")),
            "papers": records(fields.get("papers"), ("title", "doi", "authors", "citation")),
            "datasets": records(fields.get("datasets"), ("title", "doi", "url")),
            "repository": str(repositories[0]["url"]) if repositories else None,
            "from": f"the EntrypointMetadata in {notebook}"}


def slug_of(directory: Path, name: str | None = None) -> str:
    return name or re.sub(r"[^a-z0-9]+", "-", directory.name.lower())[:63].strip("-") or "garden"


def gardenfile(directory: Path, *, notebook: str, python: str, flavor: str, name: str | None,
               pipelines: Sequence[str], tests: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
               descriptions: Mapping[str, str] | None = None, meta: Mapping[str, Any] | None = None) -> str:
    """The text of a commented Gardenfile (pure); ``tests`` are written as TOML."""
    slug = slug_of(directory, name)
    written = {p: [{"input": toml_value(t["input"]), "expected": toml_value(t["expected"]),
                    "tolerance": toml_value(t.get("tolerance", 0.0))} for t in cases]
               for p, cases in (tests or {}).items()}
    return environment().get_template("Gardenfile.toml.j2").render(
        notebook=notebook, name=slug, title=slug.replace("-", " ").title(), python=python, flavor=flavor,
        flavors=list(flavors.available()), pipelines=list(pipelines), tests=written,
        descriptions=descriptions or {}, meta={**dict.fromkeys(_META_FIELDS), **(meta or {})}).rstrip("\n") + "\n"


_META_FIELDS = ("title", "description", "keywords", "authors", "papers", "datasets", "repository", "from")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_value(value: Any) -> str:
    """``value`` (JSON-like: a test's input or expected result) as an inline TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} cannot be written in a test case")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string is JSON's, escapes and all
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{k if _BARE_KEY.match(k) else json.dumps(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise ValueError(f"{type(value).__name__} cannot be written in a test case")


# -- notebook create ------------------------------------------------------------------------

NOTEBOOK = "notebook.ipynb"


def starter(flavor: str) -> dict[str, Any]:
    """The starter of ``flavor`` from ``templates/notebooks/starters.toml``."""
    from gardenbuild.manifest.load import tomllib
    from gardenbuild.resources import data_dir

    starters = tomllib.loads((data_dir("templates") / "notebooks" / "starters.toml").read_text(encoding="utf-8"))
    if flavor not in starters:
        raise UserError(f"there is no starter notebook for the flavor '{flavor}'",
                        hint=f"starters: {', '.join(starters)}")
    return starters[flavor]


def notebook_json(intro: str, cells: Sequence[str]) -> str:
    """An nbformat 4.5 notebook: one markdown cell, then the code cells, none run yet."""
    def cell(kind: str, n: int, source: str) -> dict[str, Any]:
        lines = source.strip("\n").splitlines(keepends=True)
        out: dict[str, Any] = {"cell_type": kind, "id": f"cell-{n}", "metadata": {}, "source": lines}
        if kind == "code":
            out.update(execution_count=None, outputs=[])
        return out

    nb = {"cells": [cell("markdown", 0, intro)] + [cell("code", n, c) for n, c in enumerate(cells, 1)],
          "metadata": {"kernelspec": {"display_name": "Python 3 (garden)", "language": "python", "name": "python3"},
                       "language_info": {"name": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def create(directory: Path, *, python: str, flavor: str, name: str | None = None) -> tuple[Path, Path]:
    """A new garden in ``directory`` (new or empty): the flavor's starter notebook and a
    Gardenfile naming its pipeline with the starter's test. Returns (Gardenfile, notebook)."""
    directory = directory.resolve()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UserError(f"{directory} exists and is not empty; a new garden needs a new folder",
                        hint=f"for a notebook you already have: gardenbuild init {directory} --notebook NOTEBOOK")
    if python not in flavors.supported_pythons():
        raise UserError(f"Python '{python}' is not supported", hint=f"choose one of {', '.join(flavors.supported_pythons())}")
    flavors.get(flavor)
    start = starter(flavor)
    slug = slug_of(directory, name)
    notebook_text = notebook_json(start["intro"].format(title=slug.replace("-", " ").title()), start["cells"])
    text = gardenfile(directory, notebook=NOTEBOOK, python=python, flavor=flavor, name=name,
                      pipelines=[start["pipeline"]], tests={start["pipeline"]: [start["test"]]})
    directory.mkdir(parents=True, exist_ok=True)
    (directory / NOTEBOOK).write_text(notebook_text, encoding="utf-8")
    (directory / GARDENFILE).write_text(text, encoding="utf-8")
    return directory / GARDENFILE, directory / NOTEBOOK
