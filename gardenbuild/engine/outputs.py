"""The build's outputs in a garden's folder (``.gardenbuild/``), read without the build machinery.

Calling a built garden (`run`, `test`, `serve`) reads only these files, so it must not pay
for importing the planner: standard library only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from gardenbuild.errors import UserError

OUTPUT_DIR = ".gardenbuild"
GARDENFILE = "Gardenfile.toml"


def find_gardenfile(directory: Path) -> Path:
    """The Gardenfile in (or named by) `directory`; a clear error if there is none."""
    path = directory / GARDENFILE if directory.is_dir() or not directory.suffix else directory
    if not path.is_file():
        where = directory if directory.is_dir() else directory.parent
        raise UserError(
            f"no {GARDENFILE} in {where}",
            hint=f"create one with: gardenbuild init {where} --notebook NOTEBOOK.ipynb",
        )
    return path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def last_build(root: Path) -> dict[str, Any] | None:
    """The summary of the last complete build of the garden in `root`."""
    return _read_json(root / OUTPUT_DIR / "build.json")


def require_build(root: Path, shown_as: str) -> dict[str, Any]:
    """The last complete build's summary of the garden in `root`; a clear error if there is none."""
    summary = last_build(root)
    if summary is None:
        raise UserError(f"{root} has not been built yet", hint=f"run: gardenbuild build {shown_as}")
    return summary


def require_image(root: Path, shown_as: str) -> dict[str, Any]:
    """The image the last build made (even if its tests then failed); a clear error if none."""
    built = _read_json(root / OUTPUT_DIR / "image.json")
    if built is None:
        raise UserError(f"{root} has not been built yet", hint=f"run: gardenbuild build {shown_as}")
    return built


def changed_since(root: Path, built: dict[str, Any]) -> list[str]:
    """The files the image was built from that differ now (the notebook edited since, say)."""
    changed = []
    for rel, digest in sorted(built.get("files", {}).items()):
        try:
            now = file_sha256(root / rel)
        except OSError:
            now = None
        if now != digest:
            changed.append(rel)
    return changed


def locked_pins(root: Path) -> list[tuple[str, str]]:
    """(name, version) of each package the last build installed, from its requirements.lock
    ("name==version --hash=..." per line); empty when there is none."""
    try:
        lines = (root / OUTPUT_DIR / "requirements.lock").read_text().splitlines()
    except OSError:
        return []
    pins = [line.split()[0] for line in lines if line.strip() and "==" in line.split()[0]]
    return [tuple(pin.split("==", 1)) for pin in pins]  # type: ignore[misc]
