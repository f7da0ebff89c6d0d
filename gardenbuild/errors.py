"""The small exception tree every library module raises; the CLI translates it.

A `GardenError` carries a one-line message and an optional hint (what to do). The CLI
prints ``error: <message>`` and ``hint: <hint>`` and exits with ``exit_code``; no user
mistake ever shows a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class GardenError(Exception):
    """Base of every error gardenbuild reports to a user."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        """The lines the CLI prints for this error (without the ``error:`` prefix)."""
        return [self.message]


class UserError(GardenError):
    """Bad input from the user: a file, a flag, a name. Exit code 2."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One problem in a config file, located as precisely as we can."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(UserError):
    """A Gardenfile (or notebook) with one or more problems, all reported at once."""

    def __init__(self, problems: list[Problem], hint: str | None = None) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        head = str(self.problems[0]) if n == 1 else f"{n} problems found"
        super().__init__(head, hint)

    def lines(self) -> list[str]:
        if len(self.problems) == 1:
            return [str(self.problems[0])]
        return [self.message] + [f"  {p}" for p in self.problems]


class ResolutionError(UserError):
    """Requirements that cannot be resolved or fetched for the target."""


class ToolMissingError(GardenError):
    """An outside program (buildah, debootstrap, ...) is not installed."""


class BackendError(GardenError):
    """An outside process failed; carries the command and the tail of its log."""

    def __init__(self, message: str, command: list[str], log_tail: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.command = list(command)
        self.log_tail = log_tail

    def lines(self) -> list[str]:
        out = [self.message, f"  command: {' '.join(self.command)}"]
        if self.log_tail:
            out.append("  last lines of its output:")
            out += [f"    {line}" for line in self.log_tail.rstrip().splitlines()]
        return out


class BuildError(GardenError):
    """A build step failed (notebook cell raised, pipeline test failed, ...)."""


class NotebookError(BuildError):
    """A notebook cell raised while the notebook ran inside the image."""
