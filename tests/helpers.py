"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import argparse
import io
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from gardenbuild.cli import main
from gardenbuild.report import RecordingReporter


def cli(*args: str) -> tuple[int, str, str]:
    """``gardenbuild ARGS`` in-process, usable from fixtures of any scope: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def copy_garden(src: Path, dest: Path) -> Path:
    """A writable copy of a garden folder, without build outputs."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".gardenbuild", ".ipynb_checkpoints"))
    return dest


def publish_cli(*argv: str) -> tuple[argparse.Namespace, int]:
    """Run one of the publish commands (publish, list, show) with a recording reporter."""
    from gardenbuild.cli import publish as commands

    top = argparse.ArgumentParser(prog="gardenbuild")
    commands.add_parsers(top.add_subparsers(dest="command"))
    args = top.parse_args(list(argv))
    return args, commands.HANDLERS[args.command](args, RecordingReporter())
