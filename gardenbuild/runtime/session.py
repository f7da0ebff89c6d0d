"""What ``execute`` (build time) and ``call`` (run time) must agree on about a session:
the fresh ``__main__`` module the notebook lives in, how cell sources travel inside
the session so tracebacks can show them, and how exceptions are described.

Standard library only, and cheap to import: ``call`` imports it on every request.
"""

from __future__ import annotations

import builtins
import linecache
import re
import sys
import traceback
import types
from typing import Any

#: Session variable holding ``{cell filename: cell source}``; popped again at load.
SOURCES_KEY = "__gardenbuild_cells__"

_CELL_FILENAME = re.compile(r"^<.+ cell \d+>$")


def new_main_module() -> types.ModuleType:
    """A fresh, empty ``__main__`` registered in ``sys.modules``.

    Registering it matters twice: dill saves an *imported* module under its plain name
    (``__main__``), and at load ``dill.load_module`` refills exactly that module, so
    pipeline functions' globals are the live module namespace, as in the notebook.
    """
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    _install_display()
    return main


def _display(*objs: Any, **_options: Any) -> None:
    """Stand-in for IPython's ``display()`` builtin: prints each object's repr."""
    for obj in objs:
        print(repr(obj))


def _install_display() -> None:
    # In Jupyter `display` needs no import; notebooks rely on it, so provide one.
    if not hasattr(builtins, "display"):
        builtins.display = _display  # type: ignore[attr-defined]


def register_sources(sources: dict[str, str]) -> None:
    """Make cell sources visible to tracebacks (``linecache`` keeps entries whose
    modification time is None: they are never checked against a file)."""
    for filename, source in sources.items():
        lines = [line + "\n" for line in source.split("\n")]
        linecache.cache[filename] = (len(source), None, lines, filename)


def is_cell_filename(filename: str) -> bool:
    return bool(_CELL_FILENAME.match(filename))


def describe_exception(exc: BaseException) -> str:
    """``ZeroDivisionError: division by zero``; module-qualified only for library types."""
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ not in ("builtins", "__main__") and not cls.__module__.startswith("gardenbuild.runtime"):
        name = f"{cls.__module__}.{name}"
    message = str(exc)
    return f"{name}: {message}" if message else name


def user_traceback(exc: BaseException) -> str:
    """The traceback from the first notebook-cell frame on: runtime frames are dropped,
    library frames called by the notebook are kept (as Jupyter shows them)."""
    tb = exc.__traceback__
    while tb is not None and not is_cell_filename(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    if tb is None:
        tb = exc.__traceback__
    return "".join(traceback.format_exception(type(exc), exc, tb))


def innermost_line(exc: BaseException, filename: str) -> int | None:
    """The line of the innermost traceback frame that ran code from ``filename``."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def type_name(value: Any) -> str:
    """``_thread.lock``, ``dict``, ``numpy.ndarray``: the qualified name of a value's type."""
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
