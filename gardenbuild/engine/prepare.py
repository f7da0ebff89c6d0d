"""Bring a garden and its lock together into a plan: the step before every build.

With an up-to-date Gardenfile.lock this touches neither the network nor buildah: the
wheels and the base image digest come from the lock. Otherwise the requirements are
resolved (keeping earlier pins where they still fit) and the base image is pinned by
the digest it has in local storage.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from gardenbuild.plan import lockfile
from gardenbuild.backends.deps import Target, resolve
from gardenbuild.plan.digests import inputs_for
from gardenbuild.errors import ResolutionError, UserError
from gardenbuild.manifest.garden import Garden
from gardenbuild.plan.lockfile import Lock
from gardenbuild.plan.graph import PLATFORM, Plan, plan
from gardenbuild.report import Reporter


@dataclass(frozen=True)
class Prepared:
    garden: Garden
    lock: Lock
    plan: Plan
    relocked: list[str]  # why the requirements were resolved again; [] when the lock's pins were used
    written: bool = False  # whether Gardenfile.lock was (re)written: re-resolved, re-pinned or new file hashes


def _requirement_names(requirements: Sequence[str]) -> set[str]:
    names = set()
    for line in requirements:
        try:
            names.add(canonicalize_name(Requirement(line).name))
        except InvalidRequirement:
            continue
    return names


#: Resolves system packages against a pinned base image: (packages, base ref) -> pinned .debs.
SystemResolver = Callable[[Sequence[str], str], Sequence[Any]]


def _no_system_packages(packages: Sequence[str], base: str) -> list[Any]:
    if packages:
        raise UserError("this build cannot resolve system packages", hint="run it through the gardenbuild CLI")
    return []


def resolve_lock(garden: Garden, *, previous: Lock | None, base_digest: Callable[[str], str], reporter: Reporter,
                 cache_root: Any, upgrade: bool | Sequence[str] = False,
                 resolve_system: SystemResolver = _no_system_packages) -> Lock:
    """Resolve `garden` into a fresh Lock, holding earlier pins unless asked to upgrade them."""
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
                         cache_root=cache, constraints=keep)
    except ResolutionError:
        if not keep:
            raise
        reporter.info("earlier pins no longer fit the requirements; resolving afresh")
        wheels = resolve(garden.requirements, target, indexes=garden.indexes, reporter=reporter, cache_root=cache)
    lock = Lock(
        python=garden.python, platform=PLATFORM, flavor=garden.flavor.name, base_image=garden.base_image,
        base_digest=base_digest(garden.base_image), requirements=garden.requirements, indexes=garden.indexes,
        system_packages=garden.system_packages, packages=tuple(wheels),
    )
    return replace(lock, debs=tuple(resolve_system(garden.system_packages, lock.pinned_base)))


def prepare(garden: Garden, *, base_digest: Callable[[str], str], reporter: Reporter, cache_root: Any,
            locked: bool = False, upgrade: bool | Sequence[str] = False, write: bool = True,
            have_digest: Callable[[str], bool | None] = lambda digest: True,
            resolve_system: SystemResolver = _no_system_packages) -> Prepared:
    """Use, check or (re)write the lock, then plan the build against it."""
    inputs = inputs_for(garden)
    lock = lockfile.read(garden.root)
    path = garden.root / lockfile.LOCKFILE
    relocked: list[str] = []
    relocked_base = False
    if lock is None:
        if locked:
            raise UserError(f"--locked, but there is no {path}", hint=f"create it with `gardenbuild lock {garden.root}`")
        relocked = ["no lock yet"]
    else:
        deps = lockfile.dependency_changes(lock, garden)
        if locked:
            changes = deps + lockfile.input_changes(lock, inputs)
            if changes:
                raise UserError(f"{path} does not match the garden any more: " + "; ".join(changes),
                                hint=f"run `gardenbuild lock {garden.root}` and commit the lock, or build without --locked")
        if deps or upgrade:
            relocked = deps or ["upgrade requested"]
        elif have_digest(lock.base_digest) is False:
            # A base image re-made (bootstrapped again, pulled anew) has a new digest: a plain
            # build re-pins it and says so; --locked (above) refuses.
            if locked:
                raise UserError(f"the lock pins base image {lock.pinned_base}, which is not in local storage",
                                hint=f"pull exactly that image, or run `gardenbuild lock {garden.root}` to re-pin it")
            new = base_digest(garden.base_image)
            reporter.warn(f"base image {lock.base_image} changed: {lock.base_digest[:19]} -> {new[:19]}; lock updated")
            lock = replace(lock, base_digest=new)
            # Which .debs a system package needs depends on what the base already holds.
            lock = replace(lock, debs=tuple(resolve_system(garden.system_packages, lock.pinned_base)))
            relocked_base = True
    if relocked:
        if relocked != ["no lock yet"]:
            reporter.info(f"re-resolving: {'; '.join(relocked)}")
        fresh = resolve_lock(garden, previous=lock, base_digest=base_digest, reporter=reporter,
                             resolve_system=resolve_system,
                             cache_root=cache_root, upgrade=upgrade)
        if lock is not None:
            for change in lockfile.package_changes(lock.packages, fresh.packages):
                reporter.info(f"  {change}")
        lock = fresh
    assert lock is not None
    current = lock.with_inputs(inputs)
    written = write and (current != lock or bool(relocked) or relocked_base)
    if written:
        lockfile.write(garden.root, current)
    pinned = garden.with_base_image(current.pinned_base)
    return Prepared(pinned, current, plan(pinned, replace(inputs, lock=current.plan_lock())), relocked, written)
