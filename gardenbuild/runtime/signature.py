"""What a pipeline's type hints say about the JSON it can be called with.

`mismatch` checks a JSON value against a hint (``list[str]``, ``dict[str, float]``,
``int | None``, ``Optional[...]``, ``Any``) and says where and how it does not fit, so a
call with ``{"smiles": 5}`` is refused naming the parameter, before the pipeline runs.
`convert_arguments` then turns JSON into what the hints ask for where JSON cannot say it
itself: nested lists into a ``numpy.ndarray`` (of the hinted dtype, e.g.
``NDArray[np.float32]``), records or columns into a ``pandas.DataFrame``, a list into a
``pandas.Series``. Hints it cannot judge (a class of the notebook) are let through: the
pipeline itself decides. Standard library only (numpy and pandas are imported only when a
hint names them, and then the image has them): it runs inside the image.
"""

from __future__ import annotations

import importlib
import inspect
import json
import types
import typing
from collections.abc import Callable
from typing import Any

_UNION_TYPES = (typing.Union, getattr(types, "UnionType", typing.Union))


def array_kind(hint: Any) -> str | None:
    """"ndarray", "DataFrame" or "Series" when `hint` names one of those (by module, without
    importing numpy or pandas), else None."""
    base = typing.get_origin(hint) or hint
    module, name = getattr(base, "__module__", "") or "", getattr(base, "__name__", "")
    if module.startswith("numpy") and name == "ndarray":
        return "ndarray"
    if module.startswith("pandas") and name in ("DataFrame", "Series"):
        return name
    return None


def _dtype(hint: Any) -> Any:
    """The dtype an ``ndarray[shape, dtype[X]]`` / ``NDArray[X]`` hint names, or None."""
    args = typing.get_args(hint)
    if len(args) == 2:
        inner = typing.get_args(args[1])
        if inner and isinstance(inner[0], type):
            return inner[0]
    return None


def convert(value: Any, hint: Any) -> Any:
    """`value` (parsed JSON) as the hint's array or frame type, where it names one."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in _UNION_TYPES:
        if value is None:
            return None
        kinds = [a for a in args if array_kind(a)]
        return convert(value, kinds[0]) if kinds else value
    kind = array_kind(hint)
    # The garden's own numpy and pandas (its hints name them, so it has them), never the runtime's.
    if kind == "ndarray":
        return importlib.import_module("numpy").asarray(value, dtype=_dtype(hint))
    if kind == "DataFrame":
        return importlib.import_module("pandas").DataFrame(value)
    if kind == "Series":
        return importlib.import_module("pandas").Series(value)
    if origin in (list, tuple) and args and isinstance(value, list) and any(array_kind(a) for a in args):
        items = [convert(v, args[0] if origin is list or args[-1] is Ellipsis else args[i]) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict and len(args) == 2 and isinstance(value, dict) and array_kind(args[1]):
        return {k: convert(v, args[1]) for k, v in value.items()}
    return value


def convert_arguments(func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The call's arguments with arrays and frames made from their JSON, by the parameters' hints."""
    try:
        sig = inspect.signature(func)
        bound = sig.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return args, kwargs
    hints = resolved_hints(func)
    if not any(array_kind(h) or typing.get_args(h) for h in hints.values()):
        return args, kwargs
    for name, value in list(bound.arguments.items()):
        hint = hints.get(name)
        param = sig.parameters[name]
        if hint is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        bound.arguments[name] = convert(value, hint)
    return list(bound.args), dict(bound.kwargs)


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
    kind = array_kind(hint)
    if kind == "ndarray":
        ok = isinstance(value, (list, int, float)) and not isinstance(value, bool)
        return None if ok else f"{path} must be a (nested) list of numbers for {hint_text(hint)}, not {_shown(value)}"
    if kind == "DataFrame":
        ok = (isinstance(value, list) and all(isinstance(r, dict) for r in value)) or (
            isinstance(value, dict) and all(isinstance(c, list) for c in value.values()))
        return None if ok else (f"{path} must be a table for DataFrame: a list of row objects or an object of "
                                f"column lists, not {_shown(value)}")
    if kind == "Series":
        return None if isinstance(value, (list, dict)) else f"{path} must be a list for Series, not {_shown(value)}"
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
    found = first_mismatch(func, args, kwargs)
    return None if found is None else found[1]


def first_mismatch(func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> tuple[str, str] | None:
    """(parameter, message) of the first argument that does not fit its parameter's hint."""
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
                return name, f"parameter {reason}"
    return None
