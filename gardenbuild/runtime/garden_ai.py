"""A stand-in for garden-ai's notebook API, so a notebook written for garden-ai builds unchanged.

garden-ai's notebooks (its 1.x and 2.x SDK) import ``EntrypointMetadata``, ``entrypoint`` (or,
earlier, ``garden_entrypoint``) and ``entrypoint_test`` from ``garden_ai``. When garden-ai is
not installed in the image, gardenbuild's runtime makes ``import garden_ai`` resolve to this
module (see `install`); when it is, the real one is used and read the same way: both leave the
metadata on the function as ``_entrypoint_metadata`` (``_garden_entrypoint`` before 1.0).

Standard library only, like the rest of the runtime.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from functools import wraps
from typing import Any, Callable

#: Set on a test function: the name of the entrypoint function it tests.
TEST_MARKER = "__garden_entrypoint_test__"


class _Record:
    """Keyword fields kept as attributes, as garden-ai's pydantic models hold them."""

    _defaults: dict[str, Any] = {}

    def __init__(self, **fields: Any) -> None:
        for key, value in self._defaults.items():
            setattr(self, key, list(value) if isinstance(value, list) else value)
        for key, value in fields.items():
            setattr(self, key, value)

    def model_dump(self) -> dict[str, Any]:
        return {k: _dump(v) for k, v in vars(self).items() if not k.startswith("_")}

    dict = model_dump  # pydantic 1's name, which garden-ai 1.x notebooks may call

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.model_dump().items())})"


def _dump(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.model_dump()
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    return value


class Paper(_Record):
    _defaults = {"title": "", "authors": [], "doi": None, "citation": None}


class Repository(_Record):
    _defaults = {"repo_name": "", "url": "", "contributors": []}


class DatasetMetadata(_Record):
    _defaults = {"title": "", "doi": None, "url": None, "data_type": None, "repository": None}


Dataset = DatasetMetadata


class ModelMetadata(_Record):
    _defaults = {"model_identifier": "", "model_repository": "", "model_version": None}


class EntrypointMetadata(_Record):
    _defaults = {"doi": None, "title": "", "authors": [], "short_name": None, "description": None,
                 "year": str(datetime.now(timezone.utc).year), "tags": [], "models": [], "repositories": [],
                 "papers": [], "datasets": []}

    def __init__(self, **fields: Any) -> None:
        super().__init__(**fields)
        self._test_functions: list[str] = []


def entrypoint(metadata: EntrypointMetadata | None = None, garden_doi: str | None = None,
               model_connectors: Any = None, **_: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function as an entrypoint: gardenbuild serves it as a pipeline."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        meta = metadata if metadata is not None else EntrypointMetadata(title=func.__name__)
        for connector in model_connectors or []:
            found = getattr(connector, "metadata", None)
            if found is not None:
                meta.models.append(found)
        func._entrypoint_metadata = meta  # type: ignore[attr-defined]
        func._garden_entrypoint = meta  # type: ignore[attr-defined]
        return func

    return decorate


garden_entrypoint = entrypoint


def entrypoint_test(entrypoint_func: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function as a test of an entrypoint: the build runs it, after the notebook."""
    meta = getattr(entrypoint_func, "_entrypoint_metadata", None)
    if meta is None:
        raise ValueError("Please pass in a valid @entrypoint-decorated function.")

    def decorate(test_func: Callable[..., Any]) -> Callable[..., Any]:
        meta._test_functions.append(test_func.__name__)

        @wraps(test_func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            if os.environ.get("GARDEN_SKIP_TESTS") == str(True):  # as garden-ai: not while the session is made
                return None
            return test_func(*args, **kwargs)

        setattr(inner, TEST_MARKER, entrypoint_func.__name__)
        return inner

    return decorate


def garden_step(description: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        return func

    return decorate


class GardenClient:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("this notebook runs under gardenbuild, which stands in for garden-ai's notebook API only; "
                           "publish with `gardenbuild publish`, not GardenClient")


def install() -> None:
    """Make ``import garden_ai`` find this module, unless garden-ai itself is installed."""
    if "garden_ai" in sys.modules:
        return
    import importlib.util

    if importlib.util.find_spec("garden_ai") is None:
        sys.modules["garden_ai"] = sys.modules["garden_ai.entrypoints"] = sys.modules[__name__]


def metadata_of(obj: Any) -> Any:
    """The entrypoint metadata a function carries (this module's or garden-ai's), or None."""
    for attr in ("_entrypoint_metadata", "_garden_entrypoint"):
        try:
            meta = getattr(obj, attr, None)
        except Exception:  # noqa: BLE001 - an odd object is simply not an entrypoint
            return None
        if meta is not None and hasattr(meta, "title"):
            return meta
    return None
