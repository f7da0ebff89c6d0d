"""The runtime that ships inside every garden image: standard library (and dill) only.

``from gardenbuild import garden_pipeline`` resolves here, on a laptop running plain
Jupyter and inside the image alike. Nothing in this package may import pydantic,
jinja2, networkx or any other build-time dependency of gardenbuild.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar, overload

if TYPE_CHECKING:
    from pathlib import Path

F = TypeVar("F", bound=Callable[..., Any])

#: Attribute set on a decorated function; its value is the pipeline's metadata dict.
MARKER = "__garden_pipeline__"


@overload
def garden_pipeline(func: F) -> F: ...
@overload
def garden_pipeline(*, name: str | None = None, **metadata: Any) -> Callable[[F], F]: ...


def garden_pipeline(func: Callable[..., Any] | None = None, *, name: str | None = None, **metadata: Any) -> Any:
    """Mark a notebook function as a pipeline others may call.

    Usable bare (``@garden_pipeline``) or with metadata
    (``@garden_pipeline(name="predict", description=...)``). The function itself is
    returned unchanged, so it still runs normally in the notebook.
    """

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        setattr(f, MARKER, {"name": name or f.__name__, **metadata})
        return f

    if func is not None:
        return mark(func)
    return mark


#: Where a garden's [[weights]] are in its image: WEIGHTS_DIR/<name>/<file>.
WEIGHTS_DIR = "/garden/weights"


def weights(name: str) -> "Path":
    """The path of the weights file the Gardenfile declares as `name` (``[[weights]]``).

    In the image (the notebook's run, every call) it is ``/garden/weights/<name>/<file>``,
    in a layer below the notebook's. Outside one (plain Jupyter on the publisher's machine)
    it is the Gardenfile's ``path``, or for a ``url`` the copy a build fetched into the
    cache. Open the file where it is needed, rather than keeping its bytes in a global:
    a global is saved with the session, the file is not.
    """
    from pathlib import Path

    folder = Path(WEIGHTS_DIR) / name
    if folder.is_dir():
        files = sorted(p for p in folder.iterdir() if p.is_file())
        if files:
            return files[0]
    found = _declared_weights(name)
    if found is not None:
        return found
    raise LookupError(f"no weights named {name!r} here: declare them in Gardenfile.toml "
                      f"([[weights]] name = {name!r}, with a path or a url, and their sha256)")


def _declared_weights(name: str) -> "Path | None":
    """Outside an image: find the Gardenfile above the working folder and its weights `name`."""
    import os
    from pathlib import Path

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10 without tomli: only the image's path can be known
        return None
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        gardenfile = folder / "Gardenfile.toml"
        if gardenfile.is_file():
            break
    else:
        return None
    try:
        entries = tomllib.loads(gardenfile.read_text(encoding="utf-8")).get("weights", [])
    except (OSError, ValueError):
        return None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("name") != name:
            continue
        if entry.get("path"):
            return folder / entry["path"]
        sha, url = str(entry.get("sha256", "")), str(entry.get("url", ""))
        cache = Path(os.environ.get("GARDENBUILD_CACHE") or Path.home() / ".cache" / "gardenbuild")
        fetched = cache / "wheels" / "sha256" / sha[:2] / sha / url.rsplit("/", 1)[-1]
        return fetched if fetched.is_file() else None
    return None


def pipeline_info(obj: Any) -> dict[str, Any] | None:
    """The metadata of a decorated function, or None for anything else. A garden-ai
    ``@entrypoint`` is a pipeline too (see `gardenbuild.runtime.garden_ai`)."""
    info = getattr(obj, MARKER, None)
    if isinstance(info, dict):
        return info
    from gardenbuild.runtime.garden_ai import metadata_of

    meta = metadata_of(obj)
    if meta is None:
        return None
    return {"name": getattr(meta, "short_name", None) or getattr(obj, "__name__", ""),
            "description": getattr(meta, "description", None) or "", "garden_ai": True}


__all__ = ["garden_pipeline", "pipeline_info", "weights", "MARKER", "WEIGHTS_DIR"]
