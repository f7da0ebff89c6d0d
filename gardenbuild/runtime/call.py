"""Call one pipeline of a saved notebook session: the entry point of every garden call.

    python -m gardenbuild.runtime.call PIPELINE [--session /garden/session.pkl]
                                               [--metadata PATH] [--input-file F] [--workdir DIR]
    python -m gardenbuild.runtime.call --test [--session ...] [--metadata ...] [--workdir DIR]

Input is a JSON document from ``--input-file`` or stdin: an object is passed as keyword
arguments, an array as positional arguments, empty input as no arguments. The answer is
exactly one line on stdout, ``GARDENBUILD-RESULT {"pipeline", "result", "timings"}``
(``--test``: ``{"cases": [{"pipeline", "index", "passed", "expected", "actual",
"message", "seconds"}], "passed", "failed", "timings"}``); everything the notebook prints
(Python or C level) goes to stderr instead, so it cannot corrupt that line. Failures
print ``GARDENBUILD-ERROR {json}`` to stderr.

The call runs in the notebook's folder, as the build did: ``--workdir``, else the folder
of the ``notebook_path`` recorded in metadata.json, taken relative to the current
directory (the image's WORKDIR, where ``execute`` ran too).

Exit codes: 0 success; 1 ``--test`` ran and some case failed; 2 bad arguments, unknown
pipeline or input that does not fit the signature; 3 the session could not be loaded,
the pipeline raised, or its result has no JSON form.

Results become JSON by duck typing, without importing numpy: ``.tolist()`` (arrays,
tensors, Series), ``.item()``, dataclasses, ``.model_dump()``, ``.to_dict()``; tuples
and sets become lists; NaN and infinities become null.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from gardenbuild.runtime.protocol import (
    ERROR,
    EXIT_FAILED,
    EXIT_NOTEBOOK,
    EXIT_OK,
    EXIT_USAGE,
    RESULT,
    format_marker,
)
from gardenbuild.runtime.session import (
    SOURCES_KEY,
    describe_exception,
    new_main_module,
    register_sources,
    type_name,
    user_traceback,
)

__all__ = ["main", "load_session", "to_json", "compare"]

_STARTED = time.perf_counter()
DEFAULT_SESSION = "/garden/session.pkl"
_STDIN: str | None = None  # stdin, once `--preload` has read it


class CallError(Exception):
    """A failed call: the error payload and the exit code."""

    def __init__(self, payload: dict[str, Any], exit_code: int) -> None:
        super().__init__(payload.get("message"))
        self.payload = payload
        self.exit_code = exit_code


# --------------------------------------------------------------------------- session


def load_session(path: str) -> dict[str, Any]:
    """Load a session saved by ``execute`` into a fresh ``__main__`` and return its
    namespace, with the notebook's cell sources registered for tracebacks."""
    from gardenbuild.runtime import garden_ai

    garden_ai.install()  # the session of a garden-ai notebook refers to garden_ai
    try:
        import dill

        main = new_main_module()
        dill.load_module(path, module=main)
    except Exception as e:  # noqa: BLE001 - missing file, missing module in the image, bad pickle
        payload = {
            "kind": "load",
            "session": path,
            "exception": describe_exception(e),
            "message": f"cannot load the session {path}: {describe_exception(e)}",
            "traceback": user_traceback(e),
        }
        if isinstance(e, ModuleNotFoundError):
            payload["hint"] = (
                f"the notebook imported {e.name!r}: install it in the image, or, if it is a file beside "
                "the notebook, run from the notebook's folder (--workdir)"
            )
        raise CallError(payload, EXIT_NOTEBOOK) from None
    ns = main.__dict__
    register_sources(ns.pop(SOURCES_KEY, {}))
    return ns


def _read_metadata(path: str, required: bool) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        if not required:
            return None
        raise CallError({"kind": "usage", "message": f"cannot read metadata {path}: {e}"}, EXIT_USAGE) from None


def _notebook_folder(metadata: dict[str, Any] | None) -> str | None:
    """The notebook's folder as ``execute`` ran it: its recorded path is relative to
    the build's working directory, which is the image's WORKDIR, so also ours."""
    path = metadata.get("notebook_path") if isinstance(metadata, dict) else None
    folder = os.path.dirname(path) if isinstance(path, str) else ""
    return folder if folder and os.path.isdir(folder) else None


def _find_pipeline(ns: dict[str, Any], metadata: dict[str, Any] | None, name: str) -> Callable[..., Any]:
    """The function behind pipeline ``name``: via metadata's name -> function map when
    there is one, else a decorated top-level function of that (pipeline) name."""
    from gardenbuild.runtime import pipeline_info

    names: list[str] = []
    if metadata is not None:
        for p in metadata.get("pipelines", []):
            names.append(p["name"])
            if p["name"] == name and callable(ns.get(p["function"])):
                return ns[p["function"]]
    else:
        for var, value in ns.items():
            info = pipeline_info(value) if callable(value) else None
            if info is not None:
                names.append(info["name"])
                if name in (var, info["name"]):
                    return value
    available = ", ".join(sorted(names)) or "none"
    raise CallError(
        {"kind": "usage", "message": f"no pipeline {name!r} in this garden (pipelines: {available})"}, EXIT_USAGE
    )


# --------------------------------------------------------------------------- arguments


def _arguments(payload: Any, where: str) -> tuple[list[Any], dict[str, Any]]:
    if payload is None:
        return [], {}
    if isinstance(payload, dict):
        return [], payload
    if isinstance(payload, list):
        return payload, {}
    raise CallError(
        {
            "kind": "input",
            "message": f"{where} must be a JSON object (keyword arguments) or array (positional arguments), not {type(payload).__name__}",
        },
        EXIT_USAGE,
    )


def _read_input(path: str | None) -> Any:
    where = path or "stdin"
    try:
        if path:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        elif _STDIN is not None:
            text = _STDIN
        else:
            text = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    except OSError as e:
        raise CallError({"kind": "input", "message": f"cannot read input {where}: {e.strerror}"}, EXIT_USAGE) from None
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise CallError(
            {"kind": "input", "message": f"input from {where} is not valid JSON: {e}"}, EXIT_USAGE
        ) from None


def binding_problem(sig: Any, args: list[Any], kwargs: dict[str, Any]) -> tuple[str, str | None] | None:
    """Why ``args``/``kwargs`` do not bind to the `inspect.Signature` ``sig`` ("unexpected 'y';
    missing 'x'"), and the first parameter named; None when they bind. The host checks a call
    with this too, before it starts a container."""
    try:
        sig.bind(*args, **kwargs)
        return None
    except TypeError as e:
        params = sig.parameters.values()
        problems = []
        unexpected: list[str] = []
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            keywords = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
            unexpected = sorted(set(kwargs) - keywords)
            if unexpected:
                problems.append("unexpected " + ", ".join(map(repr, unexpected)))
        missing = [
            p.name
            for i, p in enumerate(params)
            if p.default is p.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and p.name not in kwargs
            and not (i < len(args) and p.kind is not p.KEYWORD_ONLY)
        ]
        if missing:
            problems.append("missing " + ", ".join(map(repr, missing)))
        named = (unexpected + missing)[:1]
        return ("; ".join(problems) if problems else str(e)), (named[0] if named else None)


def _check_binding(name: str, func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> None:
    """Reject input that does not fit the signature before calling, with the signature."""
    import inspect

    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return
    problem = binding_problem(sig, args, kwargs)
    if problem:
        reason, named = problem
        raise CallError(
            {"kind": "input", "pipeline": name, "message": f"pipeline {name!r} takes {sig}: {reason}",
             **({"parameter": named} if named else {})}, EXIT_USAGE
        ) from None
    from gardenbuild.runtime.signature import first_mismatch

    found = first_mismatch(func, args, kwargs)
    if found:
        raise CallError(
            {"kind": "input", "pipeline": name, "parameter": found[0], "message": f"pipeline {name!r}: {found[1]}",
             "hint": f"the pipeline's signature is {name}{sig}"}, EXIT_USAGE
        ) from None


# --------------------------------------------------------------------------- results


class NotJSON(TypeError):
    """A result (part) with no JSON form; the message names where it is."""


def to_json(value: Any, path: str = "result") -> Any:
    """``value`` as plain JSON data (see module docstring); raises `NotJSON`."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                if key is None or isinstance(key, (bool, int, float)):
                    key = json.dumps(key)  # json's own rule: 1 -> "1", True -> "true"
                else:
                    raise NotJSON(f"{path} has a key of type {type_name(key)}; JSON keys must be strings")
            out[key] = to_json(item, f"{path}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [to_json(item, f"{path}[...]") for item in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, (bytes, bytearray)):
        raise NotJSON(f"{path} is {type_name(value)}, which JSON cannot hold; return a str (e.g. base64)")
    for method, convert in _DUCK_CONVERSIONS:
        if callable(getattr(value, method, None)):
            return to_json(convert(value), path)
    if hasattr(type(value), "__dataclass_fields__"):
        return to_json({f: getattr(value, f) for f in type(value).__dataclass_fields__}, path)
    if hasattr(value, "__fspath__"):
        return os.fspath(value)
    if hasattr(value, "__float__") and not isinstance(value, complex):  # Decimal, Fraction
        return to_json(float(value), path)
    enum_value = getattr(type(value), "_value2member_map_", None)
    if enum_value is not None and hasattr(value, "value"):
        return to_json(value.value, path)
    raise NotJSON(f"{path} is a {type_name(value)}, which has no JSON form")


def _records(value: Any) -> Any:
    try:
        return value.to_dict(orient="records")  # a pandas DataFrame
    except TypeError:
        return value.to_dict()


_DUCK_CONVERSIONS: list[tuple[str, Callable[[Any], Any]]] = [
    ("tolist", lambda v: v.tolist()),  # numpy arrays and scalars, torch tensors, pandas Series
    ("item", lambda v: v.item()),
    ("model_dump", lambda v: v.model_dump()),  # pydantic
    ("to_dict", _records),
    ("isoformat", lambda v: v.isoformat()),  # datetime, date, time
]


def compare(expected: Any, actual: Any, tolerance: float = 0.0, path: str = "result") -> str | None:
    """None if ``actual`` matches ``expected`` (numbers within ``tolerance``, absolute;
    lists elementwise with equal length; dicts by key), else what differs first."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        if expected is actual:
            return None
        return f"at {path}: expected {_short(expected)}, got {_short(actual)}"
    if isinstance(expected, (int, float)):
        if not isinstance(actual, (int, float)):
            return f"at {path}: expected the number {_short(expected)}, got {_short(actual)}"
        diff = abs(actual - expected)
        if diff <= tolerance:
            return None
        return (
            f"at {path}: expected {_short(expected)}, got {_short(actual)} (off by {diff:.6g}, tolerance {tolerance:g})"
        )
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"at {path}: expected a list, got {_short(actual)}"
        if len(actual) != len(expected):
            return f"at {path}: expected a list of length {len(expected)}, got length {len(actual)}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            problem = compare(e, a, tolerance, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"at {path}: expected an object, got {_short(actual)}"
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        if missing or extra:
            parts = [f"missing keys {missing}" if missing else "", f"unexpected keys {extra}" if extra else ""]
            return f"at {path}: " + "; ".join(p for p in parts if p)
        for key in expected:
            problem = compare(expected[key], actual[key], tolerance, f"{path}[{key!r}]")
            if problem:
                return problem
        return None
    if expected == actual and type(expected) is type(actual):
        return None
    return f"at {path}: expected {_short(expected)}, got {_short(actual)}"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------- running


def _call(name: str, func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Call the pipeline (its JSON arguments made into the arrays and frames its hints ask
    for) and convert its result; raises `CallError` on failure."""
    from gardenbuild.runtime.signature import convert_arguments

    try:
        args, kwargs = convert_arguments(func, args, kwargs)
        value = func(*args, **kwargs)
    except (Exception, SystemExit) as e:
        raise CallError(
            {
                "kind": "pipeline-exception",
                "pipeline": name,
                "exception": describe_exception(e),
                "exception_type": type(e).__name__,
                "message": f"pipeline {name!r} raised {describe_exception(e)}",
                "traceback": user_traceback(e),
            },
            EXIT_NOTEBOOK,
        ) from None
    try:
        return to_json(value)
    except (NotJSON, RecursionError) as e:
        raise CallError(
            {"kind": "result", "pipeline": name, "message": f"pipeline {name!r}: {e}"}, EXIT_NOTEBOOK
        ) from None


def _run_one(args: Any, metadata: dict[str, Any] | None, out: Any) -> int:
    payload = _read_input(args.input_file)
    positional, keywords = _arguments(payload, "input")
    started = time.perf_counter()
    ns = load_session(args.session)
    loaded = time.perf_counter()
    func = _find_pipeline(ns, metadata, args.pipeline)
    _check_binding(args.pipeline, func, positional, keywords)
    result = _call(args.pipeline, func, positional, keywords)
    called = time.perf_counter()
    timings = {"load_s": loaded - started, "call_s": called - loaded, "total_s": called - _STARTED}
    _emit(out, RESULT, {"pipeline": args.pipeline, "result": result, "timings": _rounded(timings)})
    return EXIT_OK


def _read_cases(path: str | None) -> list[dict[str, Any]]:
    """The test cases to run (a JSON list of {pipeline, index, input, expected, tolerance})."""
    cases = _read_input(path)
    if not isinstance(cases, list) or not all(isinstance(c, dict) and isinstance(c.get("pipeline"), str) for c in cases):
        raise CallError({"kind": "usage", "message": "--test takes a JSON list of test cases, each with a 'pipeline'"},
                        EXIT_USAGE)
    return cases


def _run_tests(args: Any, metadata: dict[str, Any], out: Any) -> int:
    given = _read_cases(args.input_file)
    started = time.perf_counter()
    ns = load_session(args.session)
    loaded = time.perf_counter()
    cases = []
    for case in given:
        name, index = case["pipeline"], case.get("index", 0)
        expected = case.get("expected")
        began = time.perf_counter()
        actual, message = None, None
        try:
            if case.get("kind") == "entrypoint_test":  # garden-ai's: passes when it returns
                os.environ.pop("GARDEN_SKIP_TESTS", None)
                function = case["function"]
                if not callable(ns.get(function)):
                    raise CallError({"message": f"the session has no test function {function!r}"}, EXIT_FAILED)
                try:
                    actual = _call(function, ns[function], [], {})
                except CallError as e:
                    if e.payload.get("kind") != "result":
                        raise
                    actual = None  # it returned, with something JSON cannot hold: a pass all the same
            else:
                func = _find_pipeline(ns, metadata, name)
                positional, keywords = _arguments(case.get("input"), f"test {index} input")
                _check_binding(name, func, positional, keywords)
                actual = _call(name, func, positional, keywords)
                tolerance = case.get("tolerance") or 0.0
                if not isinstance(tolerance, (int, float)):
                    raise CallError({"message": f"tolerance must be a number, not {tolerance!r}"}, EXIT_USAGE)
                message = compare(expected, actual, tolerance)
        except CallError as e:
            message = e.payload.get("message")
            if "traceback" in e.payload:
                message = f"{message}\n{e.payload['traceback']}"
        cases.append(
            {
                "pipeline": name,
                "index": index,
                **({"kind": case["kind"], "function": case.get("function")} if case.get("kind") else {}),
                "passed": message is None,
                "expected": expected,
                "actual": actual,
                "message": message,
                "seconds": round(time.perf_counter() - began, 6),
            }
        )
    failed = sum(not c["passed"] for c in cases)
    timings = {"load_s": loaded - started, "total_s": time.perf_counter() - _STARTED}
    _emit(out, RESULT, {"cases": cases, "passed": len(cases) - failed, "failed": failed, "timings": _rounded(timings)})
    return EXIT_FAILED if failed else EXIT_OK


def _digests(args: Any, out: Any) -> int:
    """Each top-level variable of the session, pickled on its own: its type and sha256.

    `gardenbuild verify` compares two builds' digests to name the variables that made
    their sessions differ."""
    import hashlib

    import dill

    ns = load_session(args.session)
    found = {}
    for name, value in sorted(ns.items()):
        if name.startswith("__") or type(value).__name__ == "module":
            continue
        try:
            blob = dill.dumps(value)
        except Exception:  # noqa: BLE001 - saved as part of the whole, perhaps not alone
            continue
        found[name] = {"type": type_name(value), "sha256": hashlib.sha256(blob).hexdigest(),
                       "repr": _short_repr(value)}
    _emit(out, RESULT, {"variables": found})
    return EXIT_OK


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        return ""
    return text if len(text) <= 80 else text[:77] + "..."


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in timings.items()}


def _emit(stream: Any, marker: str, payload: dict[str, Any]) -> None:
    stream.write(format_marker(marker, payload) + "\n")
    stream.flush()


def _private_stdout() -> Any:
    """A handle on the real stdout for the result line; fd 1 (and sys.stdout) become
    stderr, so prints from the pipeline, its C extensions and its subprocesses stay off it."""
    sys.stdout.flush()
    try:
        fd = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no usable fds (embedded use): fall back to Python-level redirection
        out = sys.stdout
    else:
        out = os.fdopen(fd, "w", encoding="utf-8")
    sys.stdout = sys.stderr
    return out


def _preload(modules: list[str]) -> None:
    """Import what the session will need, then block until stdin is closed (and keep it)."""
    global _STDIN
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - loading the session reports what really fails
            continue
    _STDIN = sys.stdin.read() if sys.stdin is not None else ""


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gardenbuild.runtime.call", description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", nargs="?", help="the pipeline to call")
    parser.add_argument("--test", action="store_true",
                        help="run the test cases given as a JSON list on stdin (or --input-file) instead")
    parser.add_argument("--digests", action="store_true", help="print each session variable's type and sha256")
    parser.add_argument(
        "--session", default=DEFAULT_SESSION, help="session.pkl written by execute (default %(default)s)"
    )
    parser.add_argument("--metadata", help="metadata.json (default: beside the session)")
    parser.add_argument("--input-file", help="JSON input (default: stdin)")
    parser.add_argument(
        "--workdir", help="folder to run in and import from (default: the notebook's folder recorded at build time)"
    )
    parser.add_argument("--preload", default="", metavar="MODULES",
                        help="import these (comma-separated) first, then wait for stdin to close before reading "
                             "the session: the build starts the tests' interpreter while the notebook still runs")
    args = parser.parse_args(argv)
    if bool(args.pipeline) + bool(args.test) + bool(args.digests) != 1:
        parser.error("give a PIPELINE, --test or --digests")
    if args.metadata is None:
        args.metadata = os.path.join(os.path.dirname(os.path.abspath(args.session)), "metadata.json")
    for attr in ("session", "metadata", "input_file"):
        if getattr(args, attr):
            setattr(args, attr, os.path.abspath(getattr(args, attr)))
    out = _private_stdout()
    if args.preload:
        _preload(args.preload.split(","))
    try:
        metadata = _read_metadata(args.metadata, required=args.test)
        workdir = args.workdir or _notebook_folder(metadata)
        if workdir:
            workdir = os.path.abspath(workdir)
            os.chdir(workdir)
            sys.path.insert(0, workdir)
        if args.test:
            assert metadata is not None
            return _run_tests(args, metadata, out)
        if args.digests:
            return _digests(args, out)
        return _run_one(args, metadata, out)
    except CallError as e:
        sys.stdout.flush()
        _emit(sys.__stderr__, ERROR, e.payload)
        return e.exit_code


if __name__ == "__main__":
    # Run as the importable module, not as __main__: the session gets __main__.
    from gardenbuild.runtime.call import main as _main
    from gardenbuild.runtime.protocol import end_process

    end_process(_main())
