"""Content digests of the files a build reads: the only file I/O the planner depends on."""

from __future__ import annotations

import hashlib
from pathlib import Path

from gardenbuild.engine.outputs import file_sha256
from gardenbuild.manifest.garden import Garden
from gardenbuild.plan.graph import Inputs
from gardenbuild.plan.render import API_TEMPLATE, ENV_TEMPLATE, GARDEN_TEMPLATE, RUNTIME_TEMPLATE, WEIGHTS_TEMPLATE
from gardenbuild.resources import data_dir, runtime_dir


def runtime_files() -> list[tuple[str, Path]]:
    """(path inside the image's gardenbuild/ package, host path) of the runtime, sorted."""
    pkg = runtime_dir().parent
    files = [("__init__.py", pkg / "__init__.py")]
    files += [(f"runtime/{p.name}", p) for p in sorted(runtime_dir().glob("*.py"))]
    return files


def tree_sha256(entries: list[tuple[str, Path]]) -> str:
    h = hashlib.sha256()
    for name, path in sorted(entries):
        h.update(f"{name}\0{file_sha256(path)}\n".encode())
    return h.hexdigest()


def uv_identity() -> str:
    """Which uv installs the wheels in the image: the `uv` package's version (its binary is
    the one `gardenbuild.backends.deps.find_uv` takes first). Read from metadata, no process."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"uv {version('uv')}"
    except PackageNotFoundError:
        return "uv (from PATH)"


def inputs_for(garden: Garden, lock: dict | None = None) -> Inputs:
    templates = data_dir("templates")
    return Inputs(
        files={rel: file_sha256(garden.root / rel) for rel in garden.files},
        templates={name: file_sha256(templates / name)
                   for name in (ENV_TEMPLATE, GARDEN_TEMPLATE, WEIGHTS_TEMPLATE, RUNTIME_TEMPLATE, API_TEMPLATE)},
        runtime=tree_sha256(runtime_files()),
        uv=uv_identity(),
        lock=lock,
    )
