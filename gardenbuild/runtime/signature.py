"""What a pipeline's type hints say about the JSON it can be called with.

`mismatch` checks a JSON value against a hint (``list[str]``, ``dict[str, float]``,
``int | None``, ``Optional[...]``, ``Any``) and says where and how it does not fit, so a
call with ``{"smiles": 5}`` is refused naming the parameter, before the pipeline runs.
Hints it cannot judge (a numpy array, a class of the notebook) are let through: the
pipeline itself decides. Standard library only: it runs inside the image.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable
from typing import Any

_UNION_TYPES = (typing.Union, getattr(types, "UnionType", typing.Union))


def hint_text(hint: Any) -> str:
    """``list[str]``, ``int | None``: how a hint reads in a message."""
    if hint is inspect.Parameter.empty:
        return "anything"
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__qualname__
    return inspect.formatannotation(hint)


def _shown(value: Any) -> str:
    kind = ("null" if value is None else "true/false" if isinstance(value, bool) else
            "a number" if isinstance(value, (int, float)) else "a string" if isinstance(value, str) else
            "a list" if isinstance(value, list) else "an object" if isinstance(value, dict) else type(value).__name__)
    text = json.dumps(value) if not isinstance(value, (list, dict)) else ""
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({kind})" if text else kind


def mismatch(value: Any, hint: Any, path: str) -> str | None:
    """Why `value` (parsed JSON) does not fit `hint`, or None when it fits or cannot be judged."""
    if hint is inspect.Parameter.empty or hint is Any or hint is object:
        return None
    if isinstance(hint, str):  # a postponed annotation that was never evaluated
        return None
    if hint is None or hint is type(None):
        return None if value is None else f"{path} must be null, not {_shown(value)}"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in _UNION_TYPES:
        reasons = [mismatch(value, arg, path) for arg in args]
        if any(r is None for r in reasons):
            return None
        return f"{path} must be {hint_text(hint)}, not {_shown(value)}"
    base = origin or hint
    if base is bool:
        return None if isinstance(value, bool) else f"{path} must be true or false, not {_shown(value)}"
    if base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"{path} must be an integer, not {_shown(value)}"
    if base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"{path} must be a number, not {_shown(value)}"
    if base is str:
        return None if isinstance(value, str) else f"{path} must be a string, not {_shown(value)}"
    if base in (list, tuple, set, frozenset, typing.Sequence, typing.Iterable) or base in _abc_sequences():
        if not isinstance(value, list):
            return f"{path} must be a list ({hint_text(hint)}), not {_shown(value)}"
        if base is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return f"{path} must be a list of {len(args)} items ({hint_text(hint)}), not {len(value)}"
            items = list(zip(value, args))
        else:
            item = args[0] if args else Any
            items = [(v, item) for v in value]
        for i, (v, h) in enumerate(items):
            reason = mismatch(v, h, f"{path}[{i}]")
            if reason:
                return reason
        return None
    if base in (dict, typing.Mapping) or base in _abc_mappings():
        if not isinstance(value, dict):
            return f"{path} must be an object ({hint_text(hint)}), not {_shown(value)}"
        value_hint = args[1] if len(args) == 2 else Any
        for key, v in value.items():
            reason = mismatch(v, value_hint, f"{path}[{key!r}]")
            if reason:
                return reason
        return None
    return None  # a type JSON cannot name (numpy, pandas, a notebook class): the pipeline decides


def _abc_sequences() -> tuple:
    import collections.abc as abc

    return (abc.Sequence, abc.Iterable, abc.Collection, abc.MutableSequence, abc.Set)


def _abc_mappings() -> tuple:
    import collections.abc as abc

    return (abc.Mapping, abc.MutableMapping)


def resolved_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """The function's hints with postponed (string) annotations evaluated where it was defined."""
    try:
        return typing.get_type_hints(func)
    except Exception:  # noqa: BLE001 - one hint names what is not there: evaluate the others one by one
        pass
    hints = {}
    namespace = getattr(func, "__globals__", {})
    for name, annotation in getattr(func, "__annotations__", {}).items():
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)  # noqa: S307 - the notebook's own annotation text
            except Exception:  # noqa: BLE001
                continue
        hints[name] = annotation
    return hints


def argument_mismatch(func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """The first argument that does not fit its parameter's hint, said with the parameter's name."""
    try:
        sig = inspect.signature(func)
        bound = sig.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return None  # the binding itself is checked (and reported) elsewhere
    hints = resolved_hints(func)
    for name, value in bound.arguments.items():
        param = sig.parameters[name]
        hint = hints.get(name, param.annotation)
        if param.kind is param.VAR_POSITIONAL:
            pairs = [(v, f"{name}[{i}]") for i, v in enumerate(value)]
        elif param.kind is param.VAR_KEYWORD:
            pairs = [(v, k) for k, v in value.items()]
        else:
            pairs = [(value, name)]
        for v, path in pairs:
            reason = mismatch(v, hint, path)
            if reason:
                return f"parameter {reason}"
    return None
