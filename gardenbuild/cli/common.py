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


def load_garden(args: argparse.Namespace):
    from gardenbuild.plan import lockfile
    from gardenbuild.manifest.load import load

    garden = load(Path(args.dir))
    base = getattr(args, "base_image", None) or os.environ.get("GARDENBUILD_BASE_IMAGE")
    if base:
        return garden.with_base_image(base)
    # Without an explicit choice, the base image the lock was made with stays (as a
    # package pin would); the flavor's default comes back only through `lock --upgrade`.
    lock = lockfile.read(garden.root)
    if lock is not None and not garden.explicit_base and not getattr(args, "upgrade", None) == []:
        return garden.with_base_image(lock.base_image)
    return garden


def plan_garden(args: argparse.Namespace):
    """The plan, without side effects: against the lock when it still matches the garden."""
    from dataclasses import replace

    from gardenbuild.plan import lockfile
    from gardenbuild.plan.digests import inputs_for
    from gardenbuild.plan.graph import plan

    garden = load_garden(args)
    inputs = inputs_for(garden)
    lock = lockfile.read(garden.root)
    changes: list[str] = []
    if lock is not None:
        changes = lockfile.dependency_changes(lock, garden)
        if lock.base_image == garden.base_image:
            garden = garden.with_base_image(lock.pinned_base)
        if not changes:
            inputs = replace(inputs, lock=lock.plan_lock())
    p = plan(garden, inputs)
    p.lock_changes = changes
    return p


def _base_digest(backend):
    def digest(ref: str) -> str:
        if backend.image_id(ref) is None:
            raise UserError(f"base image {ref} is not in local storage",
                            hint=f"pull it (buildah pull {ref}), or make one with `gardenbuild base bootstrap` "
                                 "and pass --base-image localhost/gardenbuild/python:3.11")
        return backend.digest(ref)
    return digest


def prepare_garden(args: argparse.Namespace, reporter: Reporter, backend, *, upgrade=False, write=True):
    from gardenbuild.backends.buildah import digest_in_storage
    from gardenbuild.backends.debs import resolve_debs
    from gardenbuild.engine.prepare import prepare
    from gardenbuild.engine.store import StepStore

    def resolve_system(packages, base):
        return resolve_debs(packages, base, backend=backend, reporter=reporter)

    return prepare(load_garden(args), base_digest=_base_digest(backend), reporter=reporter, cache_root=StepStore().root,
                   locked=getattr(args, "locked", False), upgrade=upgrade, have_digest=digest_in_storage, write=write,
                   resolve_system=resolve_system)


def add_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", default=".", help="the garden folder (holding Gardenfile.toml); default: .")


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")
