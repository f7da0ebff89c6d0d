"""Run a notebook once at image build time and save its interpreter state.

    python -m gardenbuild.runtime.execute --notebook NB --config CONFIG.json --out DIR

CONFIG is ``{"garden": NAME, "pipelines": [{"name", "function", "description"}]}``
(the test cases are not the image's: ``call --test`` is given them when it runs). Code cells run in order in one fresh
``__main__`` module with the notebook's folder as working directory (and on
``sys.path``), as "Restart & Run All" would. On success DIR holds ``session.pkl``
(``dill.dump_module``) and ``metadata.json``, both byte-for-byte reproducible for the
same notebook, data and ``PYTHONHASHSEED`` (set to 0 when unset). Progress goes to
stdout; a failure prints ``GARDENBUILD-ERROR {json}`` lines to stderr and exits 3 (2 for
unusable arguments, config or notebook file).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and "PYTHONHASHSEED" not in os.environ:
    # Set and choose the seed before the interpreter starts: the only way to make
    # set/dict-of-str ordering, and so the session bytes, reproducible. First thing, so the
    # interpreter that only starts the next one imports nothing more.
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])

import argparse
import ast
import difflib
import inspect
import json
import platform
import re
import shutil
import signal
import tempfile
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

from gardenbuild.runtime import pipeline_info
from gardenbuild.runtime.cells import (
    Cell,
    NotebookError,
    UnsupportedMagic,
    cell_filename,
    read_notebook,
    to_python,
)
from gardenbuild.runtime.protocol import (
    ERROR,
    EXIT_NOTEBOOK,
    EXIT_OK,
    EXIT_USAGE,
    RESULT,
    format_marker,
)
from gardenbuild.runtime.session import (
    SOURCES_KEY,
    describe_exception,
    innermost_line,
    new_main_module,
    register_sources,
    type_name,
    user_traceback,
)

__all__ = ["main"]

SESSION_FILE = "session.pkl"
METADATA_FILE = "metadata.json"
_RUNNERS: list[Any] = []  # the tests' interpreters started (gardenbuild.runtime.selftest.Tests)


class Failure(Exception):
    """A build failure: the error payloads to print, and the exit code."""

    def __init__(self, payloads: list[dict[str, Any]], exit_code: int = EXIT_NOTEBOOK) -> None:
        super().__init__(payloads[0].get("message") or payloads[0].get("exception"))
        self.payloads = payloads
        self.exit_code = exit_code


# --------------------------------------------------------------------------- inputs


def _load_config(path: str) -> dict[str, Any]:
    def bad(message: str) -> Failure:
        return Failure([{"kind": "usage", "message": f"{path}: {message}"}], EXIT_USAGE)

    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except OSError as e:
        raise bad(f"cannot read config ({e.strerror})") from None
    except ValueError as e:
        raise bad(f"not valid JSON ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("garden"), str):
        raise bad('expected {"garden": NAME, "pipelines": [...]}')
    pipelines = config.get("pipelines", [])
    if not isinstance(pipelines, list) or not all(
        isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("function", p["name"]), str)
        for p in pipelines
    ):
        raise bad('"pipelines" must be a list of {"name": ..., "function": ...} objects')
    return config


def _compile_cells(notebook: str, cells: list[Cell]) -> list[types.CodeType]:
    """Every cell rewritten and compiled up front, so a typo in the last cell fails the
    build before an hour of training in the first."""
    codes = []
    for cell in cells:
        filename = cell_filename(notebook, cell.index)
        try:
            python = to_python(cell.source, cell=cell.index)
            # dont_inherit: this module's `from __future__` imports must not leak in.
            codes.append(compile(python, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True))
        except UnsupportedMagic as e:
            raise Failure([_cell_error(notebook, cell, e.line, describe_exception(e), f"{e}\n")]) from None
        except SyntaxError as e:
            text = "".join(traceback.format_exception_only(type(e), e))
            raise Failure([_cell_error(notebook, cell, e.lineno, f"{type(e).__name__}: {e.msg}", text)]) from None
    return codes


def _cell_error(notebook: str, cell: Cell, line: int | None, exception: str, tb: str) -> dict[str, Any]:
    lines = cell.source.split("\n")
    source_line = lines[line - 1] if line and 0 < line <= len(lines) else None
    return {
        "kind": "cell",
        "notebook": os.path.basename(notebook),
        "cell": cell.index,
        "code_cell": cell.code_index,
        "execution_count": cell.execution_count,
        "line": line,
        "source_line": source_line,
        "exception": exception,
        "traceback": tb,
    }


# --------------------------------------------------------------------------- running


class OutOfTime(BaseException):
    """The notebook's time limit ran out (raised into the running cell by SIGALRM)."""


def _alarm(signum: int, frame: Any) -> None:
    raise OutOfTime()


#: How often a long cell says it is still running, and how much of a cell's output the
#: executed notebook keeps (the build log keeps all of it).
HEARTBEAT_SECONDS = float(os.environ.get("GARDENBUILD_HEARTBEAT_SECONDS") or 15)
OUTPUT_LIMIT = 200_000


class _Tee:
    """A text stream that writes through to `stream` and keeps a copy (up to OUTPUT_LIMIT)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> int:
        if self.size < OUTPUT_LIMIT:
            self.parts.append(text[: OUTPUT_LIMIT - self.size])
            self.size += len(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def text(self) -> str:
        cut = "\n[gardenbuild: output cut here; the build log has all of it]\n" if self.size > OUTPUT_LIMIT else ""
        return "".join(self.parts) + cut


def _heartbeat(cell: Cell, started: float, done: Any) -> None:
    while not done.wait(HEARTBEAT_SECONDS):
        print(f"gardenbuild: notebook cell {cell.index} still running ({time.perf_counter() - started:.0f} s)",
              file=sys.__stdout__, flush=True)


def _module_hint(e: BaseException) -> str | None:
    """For a cell that failed on a missing module: the requirement to add."""
    if isinstance(e, ModuleNotFoundError) and e.name:
        from gardenbuild.runtime.imports import distribution_for

        return (f"the image has no module {e.name!r}: add \"{distribution_for(e.name)}\" to requirements in "
                "[environment] of Gardenfile.toml")
    return None


def _run_cells(notebook: str, cells: list[Cell], codes: list[types.CodeType], ns: dict[str, Any],
               timeout: float | None = None, outputs: dict[int, dict[str, str]] | None = None) -> list[float]:
    """Execute the cells in ``ns``; returns each cell's run time in seconds.

    With `timeout`, the notebook as a whole may run that many seconds; the cell running
    when they run out is named, with the limit to raise. What each cell prints goes to the
    build log and, by cell index, into `outputs` (for the executed notebook).
    """
    import threading

    seconds = []
    if timeout:
        signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    for n, (cell, code) in enumerate(zip(cells, codes), start=1):
        print(f"gardenbuild: cell {n}/{len(cells)} (notebook cell {cell.index})", file=sys.__stdout__, flush=True)
        started = time.perf_counter()
        out, err = _Tee(sys.stdout), _Tee(sys.stderr)
        sys.stdout, sys.stderr = out, err
        done = threading.Event()
        threading.Thread(target=_heartbeat, args=(cell, started, done), daemon=True).start()
        try:
            if code.co_flags & inspect.CO_COROUTINE:  # top-level await, which IPython allows
                import asyncio

                asyncio.run(eval(code, ns))
            else:
                exec(code, ns)
        except OutOfTime:
            raise Failure([{
                "kind": "timeout", "notebook": os.path.basename(notebook), "cell": cell.index, "limit_seconds": timeout,
                "message": f"{os.path.basename(notebook)} cell {cell.index} was still running when the notebook's "
                           f"time limit of {timeout:g} s ran out",
                "hint": "raise notebook_seconds in the [limits] table of Gardenfile.toml, "
                        "or build with --notebook-timeout SECONDS"}]) from None
        except BaseException as e:  # noqa: BLE001 - SystemExit/KeyboardInterrupt stop a cell too
            line = innermost_line(e, cell_filename(notebook, cell.index))
            error = _cell_error(notebook, cell, line, describe_exception(e), user_traceback(e))
            hint = _module_hint(e)
            if hint:
                error["hint"] = hint
            raise Failure([error]) from None
        finally:
            done.set()
            if sys.stdout is out:
                sys.stdout = out.stream
            if sys.stderr is err:
                sys.stderr = err.stream
            try:  # keep the notebook's output ahead of the next progress line
                sys.stdout.flush()
            except Exception:  # noqa: BLE001 - a notebook may have swapped in an odd stream
                pass
            if outputs is not None:
                outputs[cell.index] = {"stdout": out.text(), "stderr": err.text()}
        seconds.append(time.perf_counter() - started)
    if timeout:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return seconds


def _decorated(ns: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Top-level names bound to @garden_pipeline functions, with their marker metadata."""
    found = {}
    for name, value in ns.items():
        try:
            info = pipeline_info(value) if callable(value) else None
        except Exception:  # an odd object whose __getattr__ raises is simply not a pipeline
            info = None
        if info is not None:
            found[name] = info
    return found


def _entrypoint_tests(ns: dict[str, Any]) -> list[dict[str, str]]:
    """garden-ai's ``@entrypoint_test`` functions: ``{"function", "entrypoint"}`` each, by name."""
    from gardenbuild.runtime.garden_ai import TEST_MARKER

    found = []
    for name, value in sorted(ns.items()):
        try:
            tested = getattr(value, TEST_MARKER, None) if callable(value) else None
        except Exception:  # noqa: BLE001 - an odd object is not a test
            tested = None
        if isinstance(tested, str):
            found.append({"function": name, "entrypoint": tested})
    return found


def _check_pipelines(
    notebook: str, config: dict[str, Any], ns: dict[str, Any]
) -> list[tuple[dict[str, Any], Callable[..., Any], dict[str, Any]]]:
    """Each configured pipeline with its function and marker info; all problems at once."""
    decorated = _decorated(ns)
    found, errors = [], []
    for spec in config.get("pipelines", []):
        name, function = spec["name"], spec.get("function", spec["name"])
        head = f"pipeline {name!r} names function {function!r}"
        if function in decorated:
            found.append((spec, ns[function], decorated[function]))
            continue
        if function not in ns:
            if not decorated:
                message = (
                    f"{head}, which the notebook does not define (the notebook defines no @garden_pipeline functions)"
                )
            else:
                close = difflib.get_close_matches(function, list(decorated), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                message = (
                    f"{head}, which the notebook does not define; {hint}"
                    f"@garden_pipeline functions: {', '.join(sorted(decorated))}"
                )
        elif callable(ns[function]):
            message = f"{head}, which the notebook defines but does not decorate with @garden_pipeline"
        else:
            message = f"{head}, but {function!r} in the notebook is a {type_name(ns[function])}, not a function"
        errors.append(
            {
                "kind": "pipeline",
                "notebook": os.path.basename(notebook),
                "pipeline": name,
                "function": function,
                "message": message,
            }
        )
    if errors:
        raise Failure(errors)
    return found


# --------------------------------------------------------------------------- saving


class _NullWriter:
    """A write-only sink: lets dill try to pickle a value without keeping the bytes."""

    def write(self, data: bytes) -> int:
        return len(data)


def _unpicklable_variables(ns: dict[str, Any]) -> list[dict[str, str]]:
    """The top-level variables dill cannot save on their own, tried one by one."""
    import dill

    culprits = []
    for name, value in ns.items():
        if (name.startswith("__") and name.endswith("__")) or isinstance(value, types.ModuleType):
            continue
        try:
            dill.dump(value, _NullWriter())
        except Exception as e:  # noqa: BLE001 - any failure to pickle is what we look for
            culprits.append({"name": name, "type": type_name(value), "error": describe_exception(e)})
    return culprits


def _is_plotting_state(value: Any) -> bool:
    """A matplotlib figure, axes or artist (or a list of them): plotting state, not model state.

    Figures keep registries keyed by id(), so a session holding one never reproduces."""
    if isinstance(value, (list, tuple)) and value:
        return all(_is_plotting_state(v) for v in value[:50])
    return type(value).__module__.startswith("matplotlib.")


def _leave_out_plotting_state(ns: dict[str, Any]) -> list[str]:
    """Close pyplot's figures and drop the notebook's top-level plotting objects; their names."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        try:
            pyplot.close("all")
        except Exception:  # noqa: BLE001 - a broken backend must not fail the build
            pass
    dropped = sorted(name for name, value in ns.items()
                     if not name.startswith("__") and not isinstance(value, types.ModuleType) and _is_plotting_state(value))
    for name in dropped:
        del ns[name]
    return dropped


def _save_session(notebook: str, main: types.ModuleType, sources: dict[str, str], path: str) -> None:
    import dill

    ns = main.__dict__
    # Interpreter bookkeeping, not notebook state: warnings already shown at build time.
    ns.pop("__warningregistry__", None)
    ns[SOURCES_KEY] = sources
    tmp = path + ".tmp"
    try:
        dill.dump_module(tmp, module=main, refimported=True)
    except Exception as e:  # noqa: BLE001 - dill raises TypeError, PicklingError, AttributeError...
        del ns[SOURCES_KEY]
        if os.path.exists(tmp):
            os.remove(tmp)
        culprits = _unpicklable_variables(ns)
        if culprits:
            names = ", ".join(f"{c['name']!r} (a {c['type']})" for c in culprits)
            message = f"the notebook's variable {names} cannot be saved with dill: {culprits[0]['error']}"
            if len(culprits) > 1:
                message = f"the notebook's variables {names} cannot be saved with dill"
            hint = (
                f"delete it in a last cell (`del {', '.join(c['name'] for c in culprits)}`); if a pipeline "
                "needs it, create it inside the pipeline function instead of at the top level"
            )
        else:
            message = f"the notebook's state cannot be saved with dill: {describe_exception(e)}"
            hint = "look for open files, connections, locks, threads or generators held by top-level variables"
        raise Failure(
            [
                {
                    "kind": "pickle",
                    "notebook": os.path.basename(notebook),
                    "variables": culprits,
                    "exception": describe_exception(e),
                    "message": message,
                    "hint": hint,
                }
            ]
        ) from None
    del ns[SOURCES_KEY]
    os.replace(tmp, path)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _stable_repr(value: Any) -> str:
    """repr without memory addresses, which differ from run to run."""
    return _ADDRESS.sub("", repr(value))


def _json_value(value: Any) -> Any:
    """``value`` if it is plain JSON data (so the metadata can carry it), else None."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return value


def _annotation(annotation: Any) -> str | None:
    if annotation is inspect.Parameter.empty:
        return None
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def _describe_pipeline(spec: dict[str, Any], func: Callable[..., Any], info: dict[str, Any]) -> dict[str, Any]:
    try:
        sig: inspect.Signature | None = inspect.signature(func)
    except (TypeError, ValueError):
        sig = None
    parameters = []
    for p in sig.parameters.values() if sig else ():
        entry: dict[str, Any] = {
            "name": p.name,
            "kind": p.kind.name.lower(),
            "annotation": _annotation(p.annotation),
            "required": p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD),
        }
        if p.default is not p.empty:
            entry["default"] = _json_value(p.default)
            entry["default_repr"] = _stable_repr(p.default)
        parameters.append(entry)
    doc = getattr(func, "__doc__", None)
    extra = {k: v if _json_value(v) is not None else _stable_repr(v) for k, v in info.items() if k != "name"}
    return {
        "name": spec["name"],
        "function": spec.get("function", spec["name"]),
        "decorator": {"name": info.get("name"), **extra},
        "signature": _ADDRESS.sub("", str(sig)) if sig else None,
        "parameters": parameters,
        "return_annotation": _annotation(sig.return_annotation) if sig else None,
        "docstring": inspect.cleandoc(doc) if isinstance(doc, str) else None,
        "description": spec.get("description") or info.get("description"),
    }


def _write_metadata(path: str, metadata: dict[str, Any]) -> None:
    text = json.dumps(metadata, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    # The host reads the metadata from the build log: no container needs starting for it.
    print(format_marker(RESULT, {"metadata_json": text}), flush=True)


# --------------------------------------------------------------------------- main


def build(notebook: str, config_path: str, out: str, timeout: float | None = None,
          secret_names: list[str] | None = None, tests: str | None = None, workdir: str | None = None) -> None:
    """Run ``notebook`` and write the session and metadata into ``out``; raises `Failure`.
    With `tests` (a file, see `gardenbuild.runtime.selftest`) the pipeline tests run once
    the session is saved, in an interpreter started from `workdir` as the notebook starts."""
    import dill  # checked first: a missing dill is an image problem, not the notebook's

    # As given (relative to the build's working directory, the image's WORKDIR): `call`
    # finds the notebook's folder from it, and it holds no machine-specific prefix.
    notebook_path = notebook if os.path.isabs(notebook) else os.path.normpath(notebook).replace(os.sep, "/")
    notebook, config_path, out = (os.path.abspath(p) for p in (notebook, config_path, out))
    config = _load_config(config_path)
    try:
        cells = read_notebook(notebook)
    except (OSError, NotebookError) as e:
        raise Failure([{"kind": "usage", "message": str(e)}], EXIT_USAGE) from None
    # A failed build must not leave an earlier build's outputs looking current.
    os.makedirs(out, exist_ok=True)
    for name in (SESSION_FILE, METADATA_FILE):
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    codes = _compile_cells(notebook, cells)
    sources = {cell_filename(notebook, c.index): c.source for c in cells}
    register_sources(sources)

    folder = os.path.dirname(notebook)
    os.chdir(folder)
    sys.path.insert(0, folder)  # as Jupyter does: modules beside the notebook import
    sys.argv = [notebook]
    main = new_main_module()

    # Plotting works headless, and matplotlib's font cache (it records file times) is kept
    # out of the image's layer: a notebook that plots still builds bit for bit.
    os.environ.setdefault("MPLBACKEND", "Agg")
    scratch = tempfile.mkdtemp(prefix="gardenbuild-mpl-")
    os.environ.setdefault("MPLCONFIGDIR", scratch)
    modules = _check_imports(notebook, cells, folder)
    runner = None
    if tests:  # started before the secrets are in the environment (the builder gives none then anyway)
        from gardenbuild.runtime import selftest

        runner = selftest.Tests(tests, os.path.join(out, SESSION_FILE), os.path.join(out, METADATA_FILE),
                                workdir or os.getcwd(), modules)
        _RUNNERS.append(runner)  # stopped by main() whatever happens
    secrets = read_secrets(secret_names or [])
    os.environ.update(secrets)  # for the notebook's run only: gone before anything is saved
    outputs: dict[int, dict[str, str]] = {}
    started = time.perf_counter()
    try:
        seconds = _run_cells(notebook, cells, codes, main.__dict__, timeout, outputs)
    except Failure:
        _emit_executed(notebook, outputs)
        raise
    for name in secrets:
        os.environ.pop(name, None)
    ran = time.perf_counter() - started
    slowest = sorted(zip(seconds, cells), key=lambda sc: -sc[0])[:3]
    detail = ", ".join(f"cell {c.index} {s:.2f} s" for s, c in slowest)
    print(
        f"gardenbuild: ran {len(cells)} code cells in {ran:.2f} s" + (f" (slowest: {detail})" if detail else ""),
        file=sys.__stdout__,
        flush=True,
    )
    _emit_executed(notebook, outputs)

    found = _check_pipelines(notebook, config, main.__dict__)
    left_out = _leave_out_plotting_state(main.__dict__)
    if left_out:
        print(f"gardenbuild: left out of the session (plotting state): {', '.join(left_out)}", file=sys.__stdout__,
              flush=True)
    started = time.perf_counter()
    session_path = os.path.join(out, SESSION_FILE)
    _save_session(notebook, main, sources, session_path)
    _refuse_kept_secrets(notebook, main.__dict__, secrets, session_path)
    session_bytes = os.path.getsize(session_path)
    biggest = _biggest_variables(main.__dict__) if session_bytes > SESSION_WARN_BYTES else []
    print(
        f"gardenbuild: saved session ({os.path.getsize(session_path) / 1e3:.1f} kB) "
        f"in {time.perf_counter() - started:.2f} s",
        file=sys.__stdout__,
        flush=True,
    )
    metadata = {
        "garden": config["garden"],
        "notebook": os.path.basename(notebook),
        "notebook_path": notebook_path,
        "python": platform.python_version(),
        "dill": dill.__version__,
        "hash_seed": os.environ.get("PYTHONHASHSEED"),
        "pipelines": [_describe_pipeline(spec, func, info) for spec, func, info in found],
        "decorated": sorted(_decorated(main.__dict__)),
        "left_out": left_out,
        "session_bytes": session_bytes,
        "biggest_variables": biggest,
    }
    tests = _entrypoint_tests(main.__dict__)
    if tests:  # a garden-ai notebook's; other notebooks' metadata has no such key
        metadata["entrypoint_tests"] = tests
    text = json.dumps(metadata, ensure_ascii=False)
    leaked = [name for name, value in secrets.items() if len(value) >= 4 and value in text]
    if leaked:
        raise Failure([{"kind": "secret", "notebook": os.path.basename(notebook), "secrets": leaked,
                        "message": f"a pipeline's signature or docstring holds the secret {', '.join(leaked)}",
                        "hint": "a secret may be read while the notebook runs, never kept"}])
    _write_metadata(os.path.join(out, METADATA_FILE), metadata)
    shutil.rmtree(scratch, ignore_errors=True)
    if runner is not None:
        try:
            runner.finish(out)
        except selftest.TestsWrote as wrote:
            raise Failure([{"kind": "tests-wrote", "paths": wrote.paths[:20],
                            "message": f"the pipeline tests wrote {wrote}, which must not go into the image"}]) from None


def _check_imports(notebook: str, cells: list[Cell], folder: str) -> list[str]:
    """Before the first cell runs: is every module the notebook imports installed here?
    Returns the installed ones it imports (not the standard library's, not its own)."""
    import importlib.util

    from gardenbuild.runtime.imports import PROVIDED, distribution_for, imports_in, stdlib_modules, written_modules

    known = stdlib_modules() | PROVIDED | written_modules([c.source for c in cells])
    missing = []
    seen: set[str] = set()
    imported: list[str] = []
    for cell in cells:
        try:
            tree = ast.parse(to_python(cell.source, cell=cell.index))
        except (SyntaxError, UnsupportedMagic):
            continue
        for found in imports_in(tree):
            if found.guarded or found.top in known:
                continue
            imported.append(found.module)
            if found.top in seen:
                continue
            seen.add(found.top)
            if importlib.util.find_spec(found.top) is None:
                missing.append((cell, found))
    if missing:
        name = os.path.basename(notebook)
        raise Failure([{
            "kind": "missing-module", "notebook": name, "cell": cell.index, "line": found.line, "module": found.module,
            "distribution": distribution_for(found.module),
            "message": f"{name} cell {cell.index}, line {found.line}: imports {found.module}, which is not installed "
                       "in the image",
            "hint": f"add \"{distribution_for(found.module)}\" to requirements in [environment] of Gardenfile.toml",
        } for cell, found in missing])
    return list(dict.fromkeys(imported))


def _emit_executed(notebook: str, outputs: dict[int, dict[str, str]]) -> None:
    """The notebook with the outputs of this run, for the host (never into the image: a
    timing printed by a cell would keep the layer from reproducing)."""
    try:
        with open(notebook, encoding="utf-8") as f:
            nb = json.load(f)
    except (OSError, ValueError):
        return
    count = 0
    for index, cell in enumerate(nb.get("cells", []), start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        count += 1
        ran = outputs.get(index)
        cell["execution_count"] = count if ran is not None else None
        cell["outputs"] = [{"output_type": "stream", "name": stream, "text": (ran or {}).get(stream, "")}
                           for stream in ("stdout", "stderr") if (ran or {}).get(stream)]
    text = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    print(format_marker(RESULT, {"executed_ipynb": text}), file=sys.__stdout__, flush=True)


#: A session bigger than this is worth a word: every call loads all of it.
SESSION_WARN_BYTES = 256 * 10**6


def _biggest_variables(ns: dict[str, Any], count: int = 3) -> list[dict[str, Any]]:
    """The top-level variables whose pickled form is biggest (pickled one by one, so only
    asked for when the session is big)."""
    import dill

    sizes = []
    for name, value in ns.items():
        if name.startswith("__") or isinstance(value, types.ModuleType):
            continue
        try:
            sizes.append({"name": name, "type": type_name(value), "bytes": len(dill.dumps(value))})
        except Exception:  # noqa: BLE001 - it was saved as part of the whole; alone it may not be
            continue
    return sorted(sizes, key=lambda v: -v["bytes"])[:count]


SECRETS_DIR = "/run/secrets"


def read_secrets(names: list[str], folder: str = SECRETS_DIR) -> dict[str, str]:
    """The build secrets `names` that buildah mounted for this run (``RUN --mount=type=secret``)."""
    found: dict[str, str] = {}
    for name in names:
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                found[name] = f.read()
        except (OSError, UnicodeDecodeError):
            continue
    return found


def _refuse_kept_secrets(notebook: str, ns: dict[str, Any], secrets: dict[str, str], session_path: str) -> None:
    """A secret must not outlive the run: refuse a session whose bytes hold one, naming the variable."""
    if not secrets:
        return
    with open(session_path, "rb") as f:
        data = f.read()
    kept = [name for name, value in secrets.items() if len(value) >= 4 and value.encode() in data]
    if not kept:
        return
    import dill

    os.remove(session_path)
    holders = []
    for var, value in ns.items():
        if var.startswith("__") or isinstance(value, types.ModuleType):
            continue
        try:
            blob = dill.dumps(value)
        except Exception:  # noqa: BLE001 - it was saved as part of the whole; alone it may not be
            continue
        if any(secrets[name].encode() in blob for name in kept):
            holders.append(var)
    where = f" in {', '.join(repr(h) for h in holders)}" if holders else ""
    raise Failure([{"kind": "secret", "notebook": os.path.basename(notebook), "secrets": kept, "variables": holders,
                    "message": f"the notebook keeps the secret {', '.join(kept)}{where}, so its saved state would "
                               "carry it into the image",
                    "hint": f"use the secret and drop it: `del {holders[0]}` in a last cell" if holders else
                            "use the secret and drop it in a last cell; a secret may be read, never kept"}])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gardenbuild.runtime.execute", description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebook", required=True, help="the .ipynb to run")
    parser.add_argument("--config", required=True, help="JSON: garden name and expected pipelines")
    parser.add_argument("--out", required=True, help="folder for session.pkl and metadata.json")
    parser.add_argument("--timeout", type=float, help="seconds the notebook may run in all")
    parser.add_argument("--secret", action="append", default=[], metavar="NAME",
                        help="a build secret mounted at /run/secrets/NAME, set in the environment for the run only")
    parser.add_argument("--tests", metavar="FILE",
                        help="pipeline tests to run once the session is saved, when the file exists "
                             "(see gardenbuild.runtime.selftest)")
    args = parser.parse_args(argv)
    # Markers and progress go to the process's real streams, whatever the notebook
    # does to sys.stdout/sys.stderr.
    err = sys.__stderr__
    try:  # build logs should interleave notebook prints and progress in order
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    except AttributeError:
        pass
    from gardenbuild.runtime import garden_ai

    garden_ai.install()  # a notebook written for garden-ai imports garden_ai: it resolves here if not installed
    os.environ["GARDEN_SKIP_TESTS"] = str(True)  # as garden-ai: @entrypoint_test functions wait for the test step
    workdir = os.getcwd()  # the image's WORKDIR, where calls start too
    try:
        build(args.notebook, args.config, args.out, args.timeout, args.secret,
              tests=args.tests if args.tests and os.path.isfile(args.tests) else None, workdir=workdir)
    except Failure as failure:
        sys.stdout.flush()
        for payload in failure.payloads:
            print(format_marker(ERROR, payload), file=err, flush=True)
        return failure.exit_code
    finally:
        for runner in _RUNNERS:  # nothing the tests' interpreter does may outlive this step
            runner.cancel()
    return EXIT_OK


if __name__ == "__main__":
    # Run as the importable module, not as __main__: the notebook gets __main__.
    from gardenbuild.runtime.execute import main as _main
    from gardenbuild.runtime.protocol import end_process

    end_process(_main())
