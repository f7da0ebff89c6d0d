"""The pipeline tests, run inside the notebook's build step right after the session is saved.

A separate test container would start a second container and load the session a second
time, imports and all; here the tests run in a fresh interpreter of the same step (``call
--test``, loading ``session.pkl`` from the file, as every call does), started as the notebook
starts so that its imports overlap the notebook's run, with nothing of the notebook's
process shared. The cases come from a file the builder mounts for this step only, so they are in no
layer and no cache key: editing a test never runs the notebook again.

The committed image must hold nothing the tests wrote. Every place this step may write
(the garden folder, /tmp, /var/tmp) is listed before and after; if the tests changed
anything, their results are withheld and the step fails with the kind ``tests-wrote``, and
the builder runs the step again without the tests, which then get their own container.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from gardenbuild.runtime.protocol import RESULT, format_marker

#: Where the builder mounts the tests: ``{"cases": [...] (as ``call --test`` reads them), "seconds": N}``.
CASES_FILE = "/gardenbuild-tests/cases.json"
#: What the step may write besides the garden folder.
SCRATCH_DIRS = ("/tmp", "/var/tmp")


def _state(roots: list[str], skip: str) -> dict[str, tuple[int, int, int]]:
    """Every file and folder below `roots`: (size, mtime_ns, mode)."""
    seen: dict[str, tuple[int, int, int]] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            if folder.startswith(skip):
                dirs[:] = []
                continue
            for name in dirs + files:
                path = os.path.join(folder, name)
                if path.startswith(skip):
                    continue
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                seen[path] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return seen


def changed(before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]) -> list[str]:
    """Paths added, removed or modified between two `_state`s, sorted; a folder counts when it
    is added, removed or its mode changes (its time changes with whatever changed inside it)."""
    import stat

    def same(a: tuple[int, int, int] | None, b: tuple[int, int, int] | None) -> bool:
        if a is None or b is None:
            return a is b
        if stat.S_ISDIR(a[2]) and stat.S_ISDIR(b[2]):
            return a[2] == b[2]
        return a == b

    return sorted(p for p in before.keys() | after.keys() if not same(before.get(p), after.get(p)))


class TestsWrote(Exception):
    def __init__(self, paths: list[str]) -> None:
        super().__init__(", ".join(paths[:5]))
        self.paths = paths


class Tests:
    """The tests' interpreter, started while the notebook runs: it imports what the notebook
    imports (on the other core), then waits; `finish` hands it the cases once the session is
    saved. A fresh process all the same: it shares nothing with the notebook's but the image."""

    def __init__(self, cases_path: str, session_path: str, metadata_path: str, cwd: str, modules: list[str]) -> None:
        with open(cases_path, encoding="utf-8") as f:
            given = json.load(f)
        self.cases, self.seconds = given["cases"], given.get("seconds")
        self.scratch = tempfile.mkdtemp(prefix="gardenbuild-tests-")  # matplotlib's cache, say: not in the image
        env = {**os.environ, "MPLCONFIGDIR": self.scratch, "TMPDIR": self.scratch}
        env.pop("GARDEN_SKIP_TESTS", None)
        self.out = tempfile.TemporaryFile(dir=self.scratch)
        self.err = tempfile.TemporaryFile(dir=self.scratch)
        self.proc = subprocess.Popen([sys.executable, "-m", "gardenbuild.runtime.call", "--test", "--session",
                                      session_path, "--metadata", metadata_path, "--preload", ",".join(modules)],
                                     stdin=subprocess.PIPE, stdout=self.out, stderr=self.err, env=env, cwd=cwd)

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def finish(self, garden_dir: str) -> None:
        """Run the cases against the saved session and print one marker, ``{"tests_in_run":
        {"given", "stdout", "stderr", "returncode", "seconds"}}``, for the builder to read (or
        ``{"tests_in_run": null, "why"}`` when they did not finish here); `TestsWrote` if they
        changed anything that would go into the image."""
        roots = [garden_dir, *(d for d in SCRATCH_DIRS if os.path.isdir(d))]
        before = _state(roots, self.scratch)
        started = time.perf_counter()
        try:
            try:
                self.proc.communicate(json.dumps(self.cases).encode(), timeout=self.seconds)
            except subprocess.TimeoutExpired:
                _emit({"tests_in_run": None, "why": f"they ran past {self.seconds:g} s"})
                return
            except BrokenPipeError:  # it ended before reading the cases: its output says why
                self.proc.wait()
            seconds = time.perf_counter() - started
            wrote = changed(before, _state(roots, self.scratch))
            if wrote:
                raise TestsWrote(wrote)
            self.out.seek(0)
            self.err.seek(0)
            _emit({"tests_in_run": {"given": self.cases, "stdout": self.out.read().decode(errors="replace"),
                                    "stderr": self.err.read().decode(errors="replace")[-4000:],
                                    "returncode": self.proc.returncode, "seconds": round(seconds, 6)}})
        finally:
            self.cancel()


def _emit(payload: dict[str, Any]) -> None:
    print(format_marker(RESULT, payload), file=sys.__stdout__, flush=True)
