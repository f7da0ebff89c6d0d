"""Where a build's time goes: the phases of each step, as BuildKit shows them.

A handler times its host work with `Phases.phase`; a ``buildah bud`` is split by the lines
it prints (`BudClock`): from the start to its first ``STEP`` line (buildah starting, reading
the base), each instruction until the next ``STEP`` (with ``--layers`` that includes the
instruction's own layer commit), and from the ``COMMIT`` line to bud's end (the image's
commit). Pure bookkeeping: nothing here runs anything.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_STEP = re.compile(r"^STEP (\d+/\d+): (.*)$")


class Phases:
    """The phases of one step, in the order they ran: (name, seconds)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.items: list[tuple[str, float]] = []

    def add(self, name: str, seconds: float) -> None:
        self.items.append((name, max(seconds, 0.0)))

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = self.clock()
        try:
            yield
        finally:
            self.add(name, self.clock() - started)

    def as_json(self) -> list[dict[str, Any]]:
        return [{"name": name, "seconds": round(seconds, 3)} for name, seconds in self.items]


def short(instruction: str, width: int = 60) -> str:
    """An instruction as a phase name: one line, at most `width` characters."""
    text = " ".join(instruction.split())
    return text if len(text) <= width else text[:width - 1] + "…"


class BudClock:
    """Turns the lines of one ``buildah bud`` into phases of `phases`, as they arrive.

    Call it with each line (it passes them on to `then`), and `finish()` once bud returned."""

    def __init__(self, phases: Phases, then: Callable[[str], None] | None = None) -> None:
        self.phases, self.then = phases, then
        self.started = self.last = phases.clock()
        self.current: str | None = None  # the instruction running, or "commit"

    def __call__(self, line: str) -> None:
        now = self.phases.clock()
        m = _STEP.match(line)
        if m:
            self._close(now, first="buildah start")
            self.current = f"STEP {m.group(1)} {short(m.group(2))}"
        elif line.startswith("COMMIT") and self.current != "commit":
            self._close(now, first="buildah start")
            self.current = "commit"
        if self.then is not None:
            self.then(line)

    def _close(self, now: float, first: str | None = None) -> None:
        name = self.current or first
        if name is not None:
            self.phases.add(name, now - self.last)
        self.last = now

    def finish(self) -> None:
        self._close(self.phases.clock(), first="buildah")
        self.current = None


def table(steps: list[dict[str, Any]], *, top: list[dict[str, Any]] | None = None) -> list[str]:
    """Lines for a person: each step that ran with its phases, BuildKit style."""
    lines = []
    for p in top or []:
        lines.append(f"   {p['seconds']:7.2f} s  {p['name']}")
    for n, s in enumerate(steps, 1):
        state = "CACHED" if s.get("cached") else f"{s.get('seconds', 0):.2f} s"
        lines.append(f"#{n} {s['id']}  {state}")
        for p in s.get("phases") or []:
            lines.append(f"   {p['seconds']:7.2f} s  {p['name']}")
    return lines
