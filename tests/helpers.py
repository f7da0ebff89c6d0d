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


def write_garden(folder: Path, cells: list[str], pipelines: list[str], *, name: str | None = None,
                 extra: str = "", environment: str = "", tables: str = "") -> Path:
    """A small garden made on the spot: a notebook of `cells`, the plain flavor (its env
    image, dill only, is shared by every such garden), and a [[pipeline]] per name."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": c}
                          for c in cells]}
    (folder / "model.ipynb").write_text(json.dumps(notebook, indent=1))
    slug = name or folder.name.replace("_", "-")
    pipes = "".join(f'\n[[pipeline]]\nname = "{p}"\n' for p in pipelines)
    (folder / "Gardenfile.toml").write_text(
        f'notebook = "model.ipynb"\n{extra}\n[garden]\nname = "{slug}"\ntitle = "Test garden {slug}"\n'
        f'license = "MIT"\n\n[[garden.authors]]\nname = "Test Author"\n\n'
        f'[environment]\npython = "3.11"\nflavor = "base"\n{environment}\n{pipes}\n{tables}')
    return folder
