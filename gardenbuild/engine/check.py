"""`gardenbuild check` beyond the Gardenfile: does the environment provide what the notebook imports?

With a lock whose wheels are in the cache the answer is exact (the modules each locked
wheel installs); without one it is a judgement by name, said as such. The image checks
again, against what is really installed, before the first cell runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gardenbuild.backends.deps import WheelStore
from gardenbuild.manifest.garden import Garden
from gardenbuild.plan.lockfile import Lock
from gardenbuild.runtime.imports import PROVIDED, distribution_for, stdlib_modules


@dataclass(frozen=True)
class MissingImport:
    cell: int
    line: int
    module: str
    distribution: str
    exact: bool  # judged from the locked wheels, not from names

    def message(self, notebook: str) -> str:
        how = "no locked package provides it" if self.exact else "no requirement seems to provide it (judged by name: no lock yet)"
        return (f"{notebook} cell {self.cell}, line {self.line}: imports {self.module}, but {how}; add "
                f"\"{self.distribution}\" to requirements in [environment]")


def _local_modules(garden: Garden) -> set[str]:
    """Modules beside the notebook (files it copies, and files it writes itself)."""
    notebook_dir = Path(garden.notebook).parent
    names = set(garden.local_modules)
    for rel in garden.files:
        path = Path(rel)
        try:
            inside = path.relative_to(notebook_dir)
        except ValueError:
            continue
        first = inside.parts[0]
        if len(inside.parts) > 1 or first.endswith(".py"):
            names.add(first.removesuffix(".py"))
    return names


def missing_imports(garden: Garden, lock: Lock | None, wheels: WheelStore) -> list[MissingImport]:
    """The notebook's unguarded imports that nothing in the garden's environment provides."""
    known = stdlib_modules() | PROVIDED | _local_modules(garden)
    provided: set[str] | None = None
    if lock is not None and tuple(lock.requirements) == tuple(garden.requirements):
        found = [wheels.modules(w) for w in lock.packages]
        if all(m is not None for m in found):
            provided = set().union(*found)  # type: ignore[arg-type]
    names = {canonicalize_name(Requirement(r).name) for r in garden.requirements}
    out: list[MissingImport] = []
    seen: set[str] = set()
    for cell, found_import in garden.imports:
        top = found_import.top
        if found_import.guarded or top in known or top in seen:
            continue
        if provided is not None:
            if top in provided:
                continue
        elif any(n == want or n.startswith(want + "-") for n in names  # tensorflow-cpu provides tensorflow
                 for want in (canonicalize_name(distribution_for(found_import.module)), canonicalize_name(top))):
            continue
        seen.add(top)
        out.append(MissingImport(cell, found_import.line, found_import.module, distribution_for(found_import.module),
                                 provided is not None))
    return out
