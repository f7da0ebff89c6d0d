"""The runtime that ships inside every garden image: standard library (and dill) only.

``from gardenbuild import garden_pipeline`` resolves here, on a laptop running plain
Jupyter and inside the image alike. Nothing in this package may import pydantic,
jinja2, networkx or any other build-time dependency of gardenbuild.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar, overload

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


def pipeline_info(obj: Any) -> dict[str, Any] | None:
    """The metadata of a decorated function, or None for anything else."""
    info = getattr(obj, MARKER, None)
    return info if isinstance(info, dict) else None


__all__ = ["garden_pipeline", "pipeline_info", "MARKER"]
