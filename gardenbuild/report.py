"""One channel through which library code reports progress; only the CLI prints.

Library functions take a `Reporter` argument. The CLI installs a `ConsoleReporter`; tests
pass a `RecordingReporter` and assert what was said.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Protocol, TextIO


class Reporter(Protocol):
    def info(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def step(self, message: str) -> None: ...
    def progress(self, label: str, done: int, total: int | None) -> None: ...
    def log(self, line: str) -> None: ...


class NullReporter:
    """Says nothing."""

    def info(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def step(self, message: str) -> None: ...
    def progress(self, label: str, done: int, total: int | None) -> None: ...
    def log(self, line: str) -> None: ...


@dataclass
class RecordingReporter:
    """Keeps every event, for tests."""

    events: list[tuple[str, str]] = field(default_factory=list)

    def info(self, message: str) -> None:
        self.events.append(("info", message))

    def warn(self, message: str) -> None:
        self.events.append(("warn", message))

    def step(self, message: str) -> None:
        self.events.append(("step", message))

    def progress(self, label: str, done: int, total: int | None) -> None:
        self.events.append(("progress", f"{label} {done}/{total}"))

    def log(self, line: str) -> None:
        self.events.append(("log", line))

    def messages(self, kind: str) -> list[str]:
        return [m for k, m in self.events if k == kind]


class ConsoleReporter:
    """Writes to stderr; progress bars only on a terminal, quiet in CI and pipes."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = False, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.verbose = verbose
        self.quiet = quiet
        self._last_progress = 0.0
        self._progress_open = False

    def _clear(self) -> None:
        if self._progress_open:
            self.stream.write("\r\x1b[2K")
            self._progress_open = False

    def _write(self, text: str) -> None:
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def info(self, message: str) -> None:
        if not self.quiet:
            self._write(message)

    def warn(self, message: str) -> None:
        self._write(f"warning: {message}")

    def step(self, message: str) -> None:
        if not self.quiet:
            self._write(f"==> {message}")

    def progress(self, label: str, done: int, total: int | None) -> None:
        if not self.tty or self.quiet:
            return
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last_progress < 0.1:
            return
        self._last_progress = now
        count = f"{done}/{total}" if total else str(done)
        self.stream.write(f"\r\x1b[2K   {label} {count}")
        self._progress_open = True
        if finished:
            self._clear()
        self.stream.flush()

    def log(self, line: str) -> None:
        if self.verbose:
            self._write(f"    {line}")
