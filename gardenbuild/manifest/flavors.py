"""Flavors and Python versions, both data: ``flavors/*.toml`` and ``flavors/pythons.toml``.

`pythons()` is the one table of supported Python versions (with each one's default base
image and the Debian release that ships it); a flavor is a bundle of packages and
indexes, and may name its own base image per version.
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

PYTHONS_FILE = "pythons.toml"


@dataclass(frozen=True)
class PythonVersion:
    version: str  # "3.11"
    base_image: str  # the image real users pull
    debian: str | None  # the Debian release whose python3 this is, if any


@lru_cache(maxsize=None)
def pythons() -> dict[str, PythonVersion]:
    """Every supported Python version, in order."""
    data = tomllib.loads((data_dir("flavors") / PYTHONS_FILE).read_text())
    table = {v: PythonVersion(v, t["base_image"], t.get("debian")) for v, t in data["python"].items()}
    return dict(sorted(table.items(), key=lambda item: tuple(int(x) for x in item[0].split("."))))


def supported_pythons() -> tuple[str, ...]:
    return tuple(pythons())


ACCELERATORS = ("cpu", "cuda")


@dataclass(frozen=True)
class Flavor:
    name: str
    description: str
    packages: tuple[str, ...]
    indexes: tuple[str, ...]
    base_images: tuple[tuple[str, str], ...] = ()  # (python, image) the flavor names itself, sorted
    accelerators: tuple[tuple[str, tuple[tuple[str, ...], tuple[str, ...]]], ...] = ()  # name -> (packages, indexes)

    def for_accelerator(self, accelerator: str) -> "Flavor":
        """The flavor as built for `accelerator` ("cpu" is the flavor itself)."""
        if accelerator == "cpu":
            return self
        variants = dict(self.accelerators)
        if accelerator not in variants:
            offered = ", ".join(["cpu", *variants])
            raise UserError(f"flavor '{self.name}' has no {accelerator} build", hint=f"flavor '{self.name}' offers: {offered}")
        packages, indexes = variants[accelerator]
        return Flavor(self.name, self.description, packages, indexes, self.base_images, self.accelerators)

    def base_image(self, python: str) -> str:
        own = dict(self.base_images)
        if python in own:
            return own[python]
        if python not in pythons():
            raise UserError(f"flavor '{self.name}' has no image for Python {python}",
                            hint=f"supported Python versions: {', '.join(supported_pythons())}")
        return pythons()[python].base_image


def _load(path: Path) -> Flavor:
    data = tomllib.loads(path.read_text())
    return Flavor(
        name=path.stem,
        description=data.get("description", ""),
        packages=tuple(data.get("packages", ())),
        indexes=tuple(data.get("indexes", ())),
        base_images=tuple(sorted((v, t["base_image"]) for v, t in data.get("python", {}).items())),
        accelerators=tuple(sorted((k, (tuple(t.get("packages", ())), tuple(t.get("indexes", ()))))
                                  for k, t in data.get("accelerator", {}).items())),
    )


@lru_cache(maxsize=None)
def available(root: Path | None = None) -> dict[str, Flavor]:
    """Every flavor shipped with gardenbuild, by name."""
    folder = root or data_dir("flavors")
    return {p.stem: _load(p) for p in sorted(folder.glob("*.toml")) if p.name != PYTHONS_FILE}


def get(name: str) -> Flavor:
    flavors = available()
    if name not in flavors:
        raise UserError(f"unknown flavor '{name}'", hint=f"available flavors: {', '.join(flavors)}")
    return flavors[name]
