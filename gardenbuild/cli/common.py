"""What every command module shares: printing a result, the folder and --json flags, and
loading, planning and preparing a garden from the parsed arguments.

Command modules (`gardenbuild.cli.build`, `.publish`, `.login`) import this module, never
`gardenbuild.cli` itself, so the CLI package has no import circle.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gardenbuild.errors import UserError
from gardenbuild.report import Reporter

Handler = Callable[[argparse.Namespace, Reporter], Any]


def emit(args: argparse.Namespace, data: Any, text: str | None = None) -> None:
    """Print a result: JSON with --json, else the human text."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif text is not None:
        print(text, end="" if text.endswith("\n") else "\n")


def options(args: argparse.Namespace):
    """The build options the command line gives (the base image also from GARDENBUILD_BASE_IMAGE)."""
    from gardenbuild.engine.prepare import Options

    from gardenbuild.refs import parse

    upgrade = getattr(args, "upgrade", None)
    base, where = getattr(args, "base_image", None), "--base-image"
    if not base:
        base, where = os.environ.get("GARDENBUILD_BASE_IMAGE") or None, "GARDENBUILD_BASE_IMAGE"
    if base is not None:
        try:
            parse(base)
        except ValueError as exc:
            raise UserError(f"{where}: {exc}") from None
    return Options(base_image=base,
                   locked=bool(getattr(args, "locked", False)),
                   upgrade=True if upgrade == [] else tuple(upgrade) if upgrade else False,
                   notebook_seconds=getattr(args, "notebook_timeout", None),
                   find_links=_find_links(args))


def _find_links(args: argparse.Namespace) -> tuple[str, ...]:
    """--find-links DIR (repeatable), then GARDENBUILD_FIND_LINKS (folders joined by ':')."""
    given = list(getattr(args, "find_links", None) or [])
    given += [p for p in os.environ.get("GARDENBUILD_FIND_LINKS", "").split(os.pathsep) if p]
    out = []
    for place in given:
        if "://" in place:
            out.append(place)
            continue
        folder = Path(place).expanduser().resolve()
        if not folder.is_dir():
            raise UserError(f"--find-links {place}: no such folder", hint="name a folder of wheel files (or a URL)")
        out.append(str(folder))
    return tuple(out)


def backend(reporter: Reporter):
    from gardenbuild.backends.buildah import Buildah

    return Buildah(reporter=reporter)


def secrets_of(garden: Any) -> dict[str, str]:
    """The values of the garden's declared secrets, from this process's environment."""
    return {name: os.environ[name] for name in garden.secrets if os.environ.get(name)}


def load_garden(args: argparse.Namespace, reporter: Reporter):
    """The garden in the folder the arguments name; its warnings said once, here."""
    from gardenbuild.manifest.load import load

    garden = load(Path(args.dir))
    for warning in garden.warnings:
        reporter.warn(warning)
    return garden


def plan_garden(args: argparse.Namespace, reporter: Reporter):
    """The plan, without side effects: against the lock when it still matches the garden."""
    from gardenbuild.engine.prepare import plan_only

    return plan_only(load_garden(args, reporter), options(args), backend=backend(reporter))


def prepare_garden(args: argparse.Namespace, reporter: Reporter, backend_, *, write: bool = True):
    """Settle the environment, use or (re)write the lock, and plan the build."""
    from gardenbuild.engine.prepare import prepare
    from gardenbuild.engine.store import StepStore

    return prepare(load_garden(args, reporter), options(args), backend=backend_, reporter=reporter,
                   cache_root=StepStore().root, write=write)


def add_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", default=".", help="the garden folder (holding Gardenfile.toml); default: .")


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")
