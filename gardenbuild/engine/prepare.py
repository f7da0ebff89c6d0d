"""Settle a garden's environment and bring it together with its lock into a plan.

One decision, one place: `choose_base` says which base image a build uses (the command
line, else the Gardenfile, else the lock, else the flavor), `prepare` pins it by digest,
checks that its python3 is the Gardenfile's ``python``, uses, checks or (re)writes
Gardenfile.lock, and plans the build against it. `plan_only` does the same for
``plan``, ``graph`` and ``render`` without starting a process or writing a file.

With an up-to-date lock this touches neither the network nor a resolver: the wheels and
the base image digest come from the lock. Images under ``localhost/`` exist on one
machine only; the lock names them but pins no digest (a digest there would be this
machine's, and trying the example elsewhere would rewrite a tracked file), so each build
pins them by their digest in local storage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from gardenbuild.backends import Backend
from gardenbuild.backends.deps import Target, resolve
from gardenbuild.errors import ResolutionError, UserError
from gardenbuild.manifest.garden import Garden
from gardenbuild.plan import lockfile
from gardenbuild.plan.digests import inputs_for
from gardenbuild.plan.graph import PLATFORM, Plan, plan
from gardenbuild.plan.lockfile import Lock, machine_local
from gardenbuild.report import NullReporter, Reporter

#: Resolves system packages against a pinned base image: (packages, base ref) -> pinned .debs.
SystemResolver = Callable[[Sequence[str], str], Sequence[Any]]


@dataclass(frozen=True)
class Options:
    """What the command line adds to the Gardenfile for one build."""

    base_image: str | None = None  # --base-image / GARDENBUILD_BASE_IMAGE: this machine's choice
    locked: bool = False  # --locked: build exactly what the lock describes, or refuse
    upgrade: bool | tuple[str, ...] = False  # lock --upgrade [PKG ...]
    notebook_seconds: float | None = None  # build --notebook-timeout: overrides [limits] notebook_seconds
    find_links: tuple[str, ...] = ()  # --find-links / GARDENBUILD_FIND_LINKS: this machine's wheel folders

    def apply(self, garden: Garden) -> Garden:
        """The garden with what the command line overrides in it (not the base: see `choose_base`)."""
        if self.notebook_seconds is not None:
            garden = replace(garden, limits=replace(garden.limits, notebook_seconds=self.notebook_seconds))
        if self.find_links:
            garden = replace(garden, machine_find_links=tuple(dict.fromkeys(self.find_links)))
        return garden


@dataclass(frozen=True)
class Prepared:
    garden: Garden  # its base_image pinned by digest
    lock: Lock
    plan: Plan
    relocked: list[str]  # why the requirements were resolved again; [] when the lock's pins were used
    written: bool = False  # whether Gardenfile.lock was (re)written
    base_python: str = ""  # the X.Y.Z of the base image's python3


def choose_base(garden: Garden, options: Options, lock: Lock | None) -> str:
    """The base image a build uses, by name: the command line, else the Gardenfile, else
    the one the lock was made with (it stays, as a package pin would, until `lock
    --upgrade`), else the flavor's for the garden's Python."""
    if options.base_image:
        return options.base_image
    if garden.explicit_base or lock is None or options.upgrade is True:
        return garden.base_image
    return lock.base_image


def _digest(backend: Backend, ref: str) -> str:
    if backend.image_id(ref) is None:
        raise UserError(f"base image {ref} is not in local storage",
                        hint=f"pull it (buildah pull {ref}), or make one with `gardenbuild base bootstrap` "
                             "and pass --base-image localhost/gardenbuild/python:3.11")
    return backend.digest(ref)


def check_python(garden: Garden, base: str, found: str) -> None:
    """The base image must run the Python the Gardenfile asks for: wheels are resolved for it."""
    if found.split(".")[:2] == garden.python.split("."):
        return
    from gardenbuild.backends.base import suites

    found_minor = ".".join(found.split(".")[:2])
    bootstrap = (f"; `gardenbuild base bootstrap --python {garden.python}` makes one"
                 if garden.python in suites() else "")
    raise UserError(
        f"the base image {base} runs Python {found}, but {garden.gardenfile.name} asks for python = \"{garden.python}\"",
        hint=f"set python = \"{found_minor}\" in [environment], or build on a base image with Python {garden.python} "
             f"(--base-image, or base_image in [environment]){bootstrap}")


def base_python(backend: Backend, ref: str, digest: str, cache_root: Path | None) -> str:
    """The base image's python3 version, remembered per digest (an image's content cannot change)."""
    from gardenbuild.backends.base import python_of_image
    from gardenbuild.engine.store import atomic_write

    path = Path(cache_root) / "bases" / f"{digest.removeprefix('sha256:')}.json" if cache_root else None
    if path is not None:
        try:
            return json.loads(path.read_text())["python"]
        except (FileNotFoundError, ValueError, KeyError):
            pass
    found = python_of_image(ref, backend=backend)
    if path is not None:
        atomic_write(path, json.dumps({"image": ref, "python": found}).encode())
    return found


def _requirement_names(requirements: Sequence[str]) -> set[str]:
    names = set()
    for line in requirements:
        try:
            names.add(canonicalize_name(Requirement(line).name))
        except InvalidRequirement:
            continue
    return names


def resolve_lock(garden: Garden, *, previous: Lock | None, base_digest: str | None, reporter: Reporter,
                 cache_root: Any, upgrade: bool | Sequence[str] = False) -> Lock:
    """Resolve `garden`'s requirements into a fresh Lock, holding earlier pins unless asked to upgrade them."""
    # Pins carry PEP 503 names; `--upgrade Scikit_Learn` means scikit-learn.
    chosen = {canonicalize_name(u) for u in (upgrade if isinstance(upgrade, (list, tuple)) else ())}
    keep = [] if previous is None or upgrade is True else [
        f"{w.name}=={w.version}" for w in previous.packages if canonicalize_name(w.name) not in chosen]
    if previous is not None:
        known = {canonicalize_name(w.name) for w in previous.packages} | _requirement_names(garden.requirements)
        for name in sorted(chosen - known):
            reporter.warn(f"--upgrade {name}: neither Gardenfile.lock nor the requirements name such a package")
    target = Target(garden.python, PLATFORM)
    cache = None if upgrade else cache_root
    try:
        wheels = resolve(garden.requirements, target, indexes=garden.indexes, reporter=reporter,
                         cache_root=cache, constraints=keep, find_links=_find_links(garden))
    except ResolutionError:
        if not keep:
            raise
        reporter.info("earlier pins no longer fit the requirements; resolving afresh")
        keep = []
        wheels = resolve(garden.requirements, target, indexes=garden.indexes, reporter=reporter, cache_root=cache,
                         find_links=_find_links(garden))
    _warn_if_heavy(wheels, reporter)
    _refuse_held_back(garden, wheels, target, reporter=reporter, cache_root=cache, constraints=keep)
    return Lock(
        python=garden.python, platform=PLATFORM, flavor=garden.flavor.name, base_image=garden.base_image,
        base_digest=base_digest, requirements=garden.requirements, indexes=garden.indexes, find_links=garden.find_links,
        system_packages=garden.system_packages, packages=tuple(wheels),
    )


def _find_links(garden: Garden) -> tuple[str, ...]:
    return tuple(dict.fromkeys(garden.find_links + garden.machine_find_links))


#: Locked wheels heavier than this together are worth a word (a CUDA torch is about 3 GB).
HEAVY_BYTES = 2 * 10**9


def _warn_if_heavy(wheels: Sequence[Any], reporter: Reporter) -> None:
    total = sum(w.size or 0 for w in wheels)
    if total <= HEAVY_BYTES:
        return
    biggest = sorted(wheels, key=lambda w: -(w.size or 0))[:3]
    named = ", ".join(f"{w.name} {w.version} ({(w.size or 0) / 1e9:.2f} GB)" for w in biggest)
    reporter.warn(f"the locked wheels add up to {total / 1e9:.2f} GB; the biggest: {named}. A CUDA build of torch "
                  "pulls several GB of nvidia-* wheels: for the CPU build use the torch flavor's index, or a folder "
                  "of CPU wheels (find_links)")


def _refuse_held_back(garden: Garden, wheels: Sequence[Any], target: Target, *, reporter: Reporter,
                      cache_root: Any, constraints: Sequence[str] = ()) -> None:
    """What gardenbuild adds for itself (dill, the Globus endpoint) must not drag a package the
    garden asks for back to an older release: resolve without them (holding the same pins)
    and compare."""
    own = garden.own_requirements
    if own == garden.requirements or not own:
        return
    ours = {canonicalize_name(Requirement(r).name) for r in garden.requirements if r not in own}
    held = [c for c in constraints if canonicalize_name(c.split("==")[0]) not in ours]
    alone = {w.name: w.version for w in resolve(own, target, indexes=garden.indexes, reporter=NullReporter(),
                                                cache_root=cache_root, constraints=held,
                                                find_links=_find_links(garden))}
    named = {canonicalize_name(Requirement(r).name) for r in own}
    from packaging.version import Version

    for wheel in wheels:
        free = alone.get(wheel.name)
        if wheel.name in named and free and Version(wheel.version) < Version(free):
            added = ", ".join(r for r in garden.requirements if r not in own)
            raise ResolutionError(
                f"what gardenbuild adds for itself ({added}) holds {wheel.name} back at {wheel.version}; "
                f"without it {wheel.name} would be {free}",
                hint=f"{wheel.name} {free} needs a release of those packages gardenbuild cannot use; pin "
                     f"{wheel.name}=={wheel.version} in requirements if that release will do")


def prepare(garden: Garden, options: Options = Options(), *, backend: Backend, reporter: Reporter,
            cache_root: Path | None, write: bool = True, resolve_system: SystemResolver | None = None) -> Prepared:
    """Settle the base, use, check or (re)write the lock, then plan the build against it."""
    if resolve_system is None:
        from gardenbuild.backends.debs import resolve_debs

        def resolve_system(packages: Sequence[str], base: str) -> Sequence[Any]:
            return resolve_debs(packages, base, backend=backend, reporter=reporter)

    lock = before = lockfile.read(garden.root)
    garden = options.apply(garden).with_base_image(choose_base(garden, options, lock))
    base = garden.base_image
    local = machine_local(base)
    inputs = inputs_for(garden)
    path = garden.root / lockfile.LOCKFILE
    relocked: list[str] = []
    rebased = False
    if lock is None:
        if options.locked:
            raise UserError(f"--locked, but there is no {path}", hint=f"create it with `gardenbuild lock {garden.root}`")
        relocked = ["no lock yet"]
    else:
        deps = lockfile.dependency_changes(lock, garden)
        if options.locked:
            changes = deps + lockfile.input_changes(lock, inputs)
            if changes:
                raise UserError(f"{path} does not match the garden any more: " + "; ".join(changes),
                                hint=f"run `gardenbuild lock {garden.root}` and commit the lock, or build without --locked")
        if deps or options.upgrade:
            relocked = deps or ["upgrade requested"]

    # Pin the base by digest: a local image by what storage holds now; a registry image by
    # the lock, unless the pinned image is gone (re-made, pulled anew): a plain build
    # re-pins it and says so, --locked refuses.
    if local or relocked or lock is None or not lock.base_digest:
        digest = _digest(backend, base)
    else:
        digest = lock.base_digest
        tagged = backend.stored_digest(base)  # the tag may have moved (pulled or made again) since the lock
        if backend.digest_in_storage(digest) is False or (tagged and tagged != digest):
            if options.locked:
                what = "which is not in local storage" if not tagged or tagged == digest else f"but {base} now names {tagged[:19]}"
                raise UserError(f"the lock pins base image {lock.pinned_base}, {what}",
                                hint=f"pull exactly that image, or run `gardenbuild lock {garden.root}` to re-pin it")
            digest = _digest(backend, base)
            reporter.warn(f"base image {base} changed: {lock.base_digest[:19]} -> {digest[:19]}; lock updated")
            rebased = True
    base_ref = f"{base.split('@')[0]}@{digest}"
    found = base_python(backend, base_ref, digest, cache_root)
    check_python(garden, base, found)

    if relocked:
        if relocked != ["no lock yet"]:
            reporter.info(f"re-resolving: {'; '.join(relocked)}")
        fresh = resolve_lock(garden, previous=lock, base_digest=None if local else digest, reporter=reporter,
                             cache_root=cache_root, upgrade=options.upgrade)
        if lock is not None:
            for change in lockfile.package_changes(lock.packages, fresh.packages):
                reporter.info(f"  {change}")
        lock = replace(fresh, debs=tuple(resolve_system(garden.system_packages, base_ref)))
    elif rebased:
        assert lock is not None
        # Which .debs a system package needs depends on what the base already holds.
        lock = replace(lock, base_digest=digest, debs=tuple(resolve_system(garden.system_packages, base_ref)))
    assert lock is not None
    if local:  # a digest of this machine's image is no pin (a lock from before this rule had one)
        lock = replace(lock, base_digest=None)
    current = lock.with_inputs(inputs)
    written = write and current != before
    if written:
        lockfile.write(garden.root, current)
    pinned = garden.with_base_image(base_ref)
    return Prepared(pinned, current, plan(pinned, replace(inputs, lock=current.plan_lock(base_ref))), relocked,
                    written, found)


def plan_only(garden: Garden, options: Options = Options(), *, backend: Backend) -> Plan:
    """The plan `prepare` would make, with no process started and no file written: the
    lock's pins when it still matches the garden, the base by the digest the lock (or,
    for a local image, local storage) knows."""
    lock = lockfile.read(garden.root)
    garden = options.apply(garden).with_base_image(choose_base(garden, options, lock))
    inputs = inputs_for(garden)
    changes: list[str] = []
    if lock is not None:
        changes = lockfile.dependency_changes(lock, garden)
        digest = backend.stored_digest(garden.base_image) if machine_local(garden.base_image) else lock.base_digest
        if digest and lock.base_image == garden.base_image:
            garden = garden.with_base_image(f"{garden.base_image.split('@')[0]}@{digest}")
        if not changes:
            inputs = replace(inputs, lock=lock.plan_lock(garden.base_image))
    p = plan(garden, inputs)
    p.lock_changes = changes
    return p
