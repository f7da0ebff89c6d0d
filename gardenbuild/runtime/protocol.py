"""The line protocol between the in-image runtime and the host: one JSON object per
marker line, so results and errors survive whatever else a notebook prints.

``GARDENBUILD-RESULT {...}`` carries a successful answer, ``GARDENBUILD-ERROR {...}``
a failure with a ``kind`` (cell, pipeline, pickle, load, input, pipeline-exception,
result, usage). Pure, standard library only: the host parses with `parse_markers`, the
runtime writes with `format_marker`.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

__all__ = ["RESULT", "ERROR", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_NOTEBOOK", "format_marker", "parse_markers",
           "end_process"]

RESULT = "GARDENBUILD-RESULT"
ERROR = "GARDENBUILD-ERROR"

#: Exit codes shared by ``execute`` and ``call``.
EXIT_OK = 0
EXIT_FAILED = 1  # ``call --test``: at least one test case failed
EXIT_USAGE = 2  # bad arguments or input (argparse also exits 2)
EXIT_NOTEBOOK = 3  # the notebook's own code failed: an error marker says how


def end_process(code: int) -> NoReturn:
    """Exit with `code` once the answer is out, without the interpreter's teardown.

    Tearing down an interpreter that imported RDKit, scikit-learn and the like (freeing every
    module's objects, finalizing extension modules) takes 0.15-0.3 s, on the critical path of
    every build step and call. What a normal exit does that matters still happens: the atexit
    handlers run (logging's flush, say), then every open file is flushed (a file the notebook
    wrote and never closed keeps its bytes), then the process ends. While a thread the code
    started is still running, the exit is a normal one: it waits for that thread, as Python does.
    """
    import _io
    import atexit
    import gc
    import os
    import sys

    threading = sys.modules.get("threading")
    if threading is not None and any(t.is_alive() and not t.daemon and t is not threading.main_thread()
                                     for t in threading.enumerate()):
        sys.exit(code)
    try:
        atexit._run_exitfuncs()
    finally:
        # One pass over every object, against the C base types: every io class derives from
        # them, and an isinstance check against io's ABCs instead takes 0.1 s in a process
        # holding a notebook's session (1e5 objects).
        files = [f for f in gc.get_objects() if isinstance(f, _io._IOBase)]
        # Text layers first: each flush moves its text into the binary buffer flushed next.
        for f in sorted(files, key=lambda f: not isinstance(f, _io._TextIOBase)):
            try:
                if not f.closed:
                    f.flush()
            except Exception:  # noqa: BLE001 - detached, broken pipe: nothing left to save
                pass
        os._exit(code)


def format_marker(marker: str, payload: dict[str, Any]) -> str:
    """One marker line (without newline): compact, key-sorted, strict JSON (no NaN)."""
    return f"{marker} {json.dumps(payload, sort_keys=True, separators=(',', ':'), allow_nan=False)}"


def parse_markers(text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The payloads of all result and error markers in captured output, in order.

    A marker counts where it starts a line or follows other text on it (a notebook's
    ``print(..., end="")`` may precede it); the JSON runs to the end of the line. Lines
    that merely mention a marker word without a JSON object after it are ignored.
    """
    results: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    decoder = json.JSONDecoder()
    for line in text.splitlines():
        if RESULT not in line and ERROR not in line:
            continue
        # Try each occurrence from the left: JSON strings may quote a marker themselves.
        starts = sorted((at, marker) for marker in (RESULT, ERROR) for at in _find_all(line, marker + " {"))
        for at, marker in starts:
            rest = line[at + len(marker) + 1 :]
            try:
                payload, end = decoder.raw_decode(rest)
            except ValueError:
                continue
            if isinstance(payload, dict) and not rest[end:].strip():
                (results if marker == RESULT else errors).append(payload)
                break
    return results, errors


def _find_all(line: str, needle: str) -> list[int]:
    found, at = [], line.find(needle)
    while at >= 0:
        found.append(at)
        at = line.find(needle, at + 1)
    return found
