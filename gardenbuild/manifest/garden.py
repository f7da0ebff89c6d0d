"""The resolved garden: every default filled in, every path checked. Pure data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gardenbuild.manifest.flavors import Flavor
from gardenbuild.manifest.spec import GardenMeta, Publish

#: What the in-image runtime itself needs, whatever the notebook asks for.
#: (dump_module and load_module came with dill 0.3.6: no higher floor, so that it holds no
#: package of the notebook's back at an old release.)
RUNTIME_REQUIREMENTS = ("dill>=0.3.6",)
#: Globus Compute workers run inside the image, so a garden published there needs them.
GLOBUS_REQUIREMENTS = ("globus-compute-endpoint>=4.19,<5",)


@dataclass(frozen=True)
class TestSpec:
    input: dict[str, Any]
    expected: Any
    tolerance: float


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    function: str
    description: str
    tests: tuple[TestSpec, ...]

    def as_json(self) -> dict[str, Any]:
        """What the image knows of the pipeline: not its tests, which change without the notebook."""
        return {"name": self.name, "function": self.function, "description": self.description}

    def test_cases(self) -> list[dict[str, Any]]:
        """The Gardenfile's test cases, as the runtime's `call --test` takes them."""
        return [{"pipeline": self.name, "index": i, "input": t.input, "expected": t.expected, "tolerance": t.tolerance}
                for i, t in enumerate(self.tests)]


@dataclass(frozen=True)
class Limits:
    """The Gardenfile's [limits], in seconds and bytes."""

    notebook_seconds: float = 3600
    call_seconds: float = 600
    call_memory: int = 8 * 2**30

    def as_json(self) -> dict[str, Any]:
        return {"notebook_seconds": self.notebook_seconds, "call_seconds": self.call_seconds,
                "call_memory": self.call_memory}


@dataclass(frozen=True)
class WeightsSpec:
    """A weights file: where it comes from (a garden-relative path or a URL) and its sha256."""

    name: str
    filename: str
    sha256: str
    path: str | None = None  # relative to the garden folder
    url: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "filename": self.filename, "sha256": self.sha256, "path": self.path, "url": self.url}


@dataclass(frozen=True)
class Garden:
    """A Gardenfile after validation and resolution; the planner's only input."""

    root: Path
    gardenfile: Path
    meta: GardenMeta
    python: str
    flavor: Flavor
    base_image: str
    requirements: tuple[str, ...]
    indexes: tuple[str, ...]  # extra package indexes (PyPI is always the first)
    system_packages: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    secrets: tuple[str, ...]  # host variables the notebook's run reads; their values are never stored
    notebook: str  # relative to root, POSIX
    files: tuple[str, ...]  # relative POSIX paths copied into the image (notebook included), sorted
    pipelines: tuple[PipelineSpec, ...]
    publish: Publish
    limits: Limits = Limits()
    find_links: tuple[str, ...] = ()  # the garden's own: URLs, or absolute folder paths
    machine_find_links: tuple[str, ...] = ()  # this machine's (--find-links): used to resolve, never locked
    weights: tuple[WeightsSpec, ...] = ()  # in a layer of their own, below the notebook's
    accelerator: str = "cpu"  # "cuda": built with the flavor's CUDA packages; calls need a GPU
    explicit_base: bool = False  # the Gardenfile names its base image (else the flavor's, or the lock's)
    warnings: tuple[str, ...] = ()  # not wrong, but probably not meant (an include pattern matching nothing)
    imports: tuple[tuple[int, Any], ...] = ()  # (cell number, runtime.imports.Import) the notebook makes
    local_modules: frozenset[str] = frozenset()  # modules the notebook writes itself

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def own_requirements(self) -> tuple[str, ...]:
        """The requirements the garden asks for, without those gardenbuild adds for itself."""
        ours = set(RUNTIME_REQUIREMENTS) | set(GLOBUS_REQUIREMENTS)
        return tuple(r for r in self.requirements if r not in ours)

    def with_base_image(self, image: str) -> "Garden":
        from dataclasses import replace

        return replace(self, base_image=image)
