"""Flavors: named bundles of a base image per Python version and the packages they add.

They are data (``flavors/*.toml``), loaded here into frozen `Flavor` values.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from gardenbuild.errors import UserError
from gardenbuild.resources import data_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class Flavor:
    name: str
    description: str
    packages: tuple[str, ...]
    indexes: tuple[str, ...]
    base_images: tuple[tuple[str, str], ...]  # (python, image), sorted

    @property
    def pythons(self) -> tuple[str, ...]:
        return tuple(v for v, _ in self.base_images)

    def base_image(self, python: str) -> str:
        images = dict(self.base_images)
        if python not in images:
            raise UserError(
                f"flavor '{self.name}' has no image for Python {python}",
                hint=f"flavor '{self.name}' supports Python {', '.join(self.pythons)}",
            )
        return images[python]


def _load(path: Path) -> Flavor:
    data = tomllib.loads(path.read_text())
    return Flavor(
        name=path.stem,
        description=data.get("description", ""),
        packages=tuple(data.get("packages", ())),
        indexes=tuple(data.get("indexes", ())),
        base_images=tuple(sorted((v, t["base_image"]) for v, t in data.get("python", {}).items())),
    )


@lru_cache(maxsize=None)
def available(root: Path | None = None) -> dict[str, Flavor]:
    """Every flavor shipped with gardenbuild, by name."""
    folder = root or data_dir("flavors")
    return {p.stem: _load(p) for p in sorted(folder.glob("*.toml"))}


def get(name: str) -> Flavor:
    flavors = available()
    if name not in flavors:
        raise UserError(f"unknown flavor '{name}'", hint=f"available flavors: {', '.join(flavors)}")
    return flavors[name]
