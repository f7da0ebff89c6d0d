"""The no-op fast path: a content fingerprint of everything a build reads, stamped on success.

A build whose fingerprint matches the stamp of the last successful build, and whose
image is still in local storage, would run no step: the CLI answers from the stamp
without importing the planner (pydantic, networkx and jinja2 cost ~0.25 s to import).
The fingerprint hashes content, never clocks: every file of the garden folder (a superset
of the files a build copies), the lock, gardenbuild's templates, flavors and runtime, its
version and the options that change a plan. Standard library only, so it stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from gardenbuild import __version__

_SKIP_DIRS = {".gardenbuild", ".git", ".ipynb_checkpoints", "__pycache__"}


def _tree(h: "hashlib._Hash", root: Path, label: str) -> None:
    for dirpath, dirnames, filenames in os.walk(root):  # os.walk follows no link to a folder
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames) + sorted(d for d in dirnames if os.path.islink(os.path.join(dirpath, d))):
            path = Path(dirpath) / name
            h.update(f"{label}/{path.relative_to(root).as_posix()}\0".encode())
            if path.is_symlink():  # a link is its target's name: never read through it (it may lead nowhere)
                h.update(b"link:" + os.readlink(path).encode())
            else:
                with path.open("rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            h.update(b"\0")


def fingerprint(root: Path, options: Mapping[str, Any]) -> str:
    """sha256 over the garden folder, gardenbuild's own data files and the options."""
    from gardenbuild.resources import data_dir, runtime_dir

    h = hashlib.sha256()
    h.update(json.dumps({"gardenbuild": __version__, "options": dict(options)}, sort_keys=True).encode())
    _tree(h, root, "garden")
    for name in ("templates", "flavors"):
        _tree(h, data_dir(name), name)
    _tree(h, runtime_dir(), "runtime")
    return h.hexdigest()


def stamp_path(cache_root: Path, garden_root: Path) -> Path:
    """Where the stamp of the garden in `garden_root` lives: in the cache, not the garden's
    output folder (which holds only the build steps' declared outputs)."""
    tag = hashlib.sha256(str(Path(garden_root).resolve()).encode()).hexdigest()[:16]
    return Path(cache_root) / "stamps" / f"{tag}.json"


def unchanged(path: Path, out_dir: Path, print_: str, storage: Any) -> dict[str, Any] | None:
    """The stamped build summary if `print_` matches the stamp at `path`, the last build's
    summary is in `out_dir` and its image is still in local storage (asked of `storage`,
    a `Backend`)."""
    try:
        stamp = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if stamp.get("fingerprint") != print_ or not (out_dir / "build.json").is_file():
        return None
    result = stamp.get("result", {})
    if storage.image_in_storage(result.get("image_id", ""), result.get("image")) is not True:
        return None
    base = stamp.get("local_base")
    if base and storage.stored_digest(base["image"]) != base["digest"]:  # re-made since: the env must follow
        return None
    return result


def write(path: Path, print_: str, result: Mapping[str, Any], local_base: tuple[str, str] | None = None) -> None:
    """Stamp a successful build; `local_base` is (name, digest) of a machine-local base
    image, which no file of the garden pins, so the stamp holds only while storage still
    has that digest under that name."""
    from gardenbuild.engine.store import atomic_write

    data: dict[str, Any] = {"fingerprint": print_, "result": dict(result)}
    if local_base:
        data["local_base"] = {"image": local_base[0], "digest": local_base[1]}
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True).encode())
