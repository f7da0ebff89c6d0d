"""The command line: parses arguments, installs the console reporter, prints results.

Only this package prints or exits. Every `GardenError` becomes ``error: ...`` plus a
hint and its exit code (2 for bad input, 1 for a failed build); no traceback. Each
command group lives in its own module with ``add_parsers(sub)`` and ``HANDLERS``.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import NoReturn

from gardenbuild import __version__
from gardenbuild.cli import build, catalog, consume, hub, login, notebook, publish, serve
from gardenbuild.errors import GardenError
from gardenbuild.report import ConsoleReporter

GROUPS = (build, notebook, serve, consume, catalog, hub, publish, login)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="gardenbuild", description="Compile a notebook into a runnable, citable, reproducible artifact.")
    top.add_argument("--version", action="version", version=f"gardenbuild {__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="show the output of outside tools (buildah, uv)")
    top.add_argument("-q", "--quiet", action="store_true", help="only errors and results")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for group in GROUPS:
        group.add_parsers(sub)
    return top


GLOBAL_FLAGS = ("-v", "--verbose", "-q", "--quiet")


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled as Ctrl-C is: every child is stopped, nothing half-made kept."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


def _on_signals() -> None:
    """CI cancellation and `timeout` send SIGTERM, a closed terminal SIGHUP: without a handler
    Python would die on the spot and leave buildah, its RUN steps and containers running."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, _terminate)
        except ValueError:  # not the main thread (main() called from a thread): leave them be
            pass


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # -q/-v belong to the top-level parser; accept them after the command too, where
    # people type them (`gardenbuild build . -q`).
    argv = [a for a in argv if a in GLOBAL_FLAGS] + [a for a in argv if a not in GLOBAL_FLAGS]
    args = parser().parse_args(argv)
    reporter = ConsoleReporter(verbose=args.verbose, quiet=args.quiet)
    _on_signals()
    try:
        handlers = {name: fn for group in GROUPS for name, fn in group.HANDLERS.items()}
        return handlers[args.command](args, reporter) or 0
    except GardenError as exc:
        lines = exc.lines()
        print(f"error: {lines[0]}", file=sys.stderr)
        for line in lines[1:]:
            print(line, file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        print(f"error: {how}; nothing was tagged or cached for the unfinished step", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:
        return 0


def run() -> NoReturn:
    """The `gardenbuild` command: `main`, then the process ends without tearing down the
    interpreter (0.1-0.15 s with pydantic, jinja2 and the rest loaded, on every command).
    atexit handlers still run and open files are flushed (see `end_process`)."""
    from gardenbuild.runtime.protocol import end_process

    end_process(main())


if __name__ == "__main__":  # pragma: no cover
    run()
