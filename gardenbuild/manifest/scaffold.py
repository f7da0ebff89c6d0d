"""`gardenbuild init`: write a commented Gardenfile.toml for an existing notebook."""

from __future__ import annotations

import re
from pathlib import Path

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
    slug = name or re.sub(r"[^a-z0-9]+", "-", directory.name.lower())[:63].strip("-") or "garden"
    text = environment().get_template("Gardenfile.toml.j2").render(
        notebook=notebook, name=slug, title=slug.replace("-", " ").title(), python=python, flavor=flavor,
        flavors=list(flavors.available()), pipelines=sorted(facts.pipelines),
    )
    target.write_text(text, encoding="utf-8")
    return target
