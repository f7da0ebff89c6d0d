"""Where the data files shipped with gardenbuild live (templates/, flavors/).

In a wheel they sit inside the package (``gardenbuild/templates``); in a source checkout
or an editable install they sit beside it at the repository root.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the folder ``name`` ("templates" or "flavors") wherever it is installed."""
    for candidate in (_PKG / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"gardenbuild is installed without its {name}/ folder (looked in {_PKG})")


def runtime_dir() -> Path:
    """The stdlib-only runtime copied into every image."""
    return _PKG / "runtime"
