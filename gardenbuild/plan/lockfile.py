"""Gardenfile.lock: every input of a build, pinned, in stable diff-friendly TOML.

The lock is the output of resolution: the exact wheel (filename, URL, sha256) of every
distribution for the target, the base image by digest, and the content hashes of the
notebook, its data, the templates and the runtime. A build with an up-to-date lock needs
no resolver, no network and no registry; `build --locked` refuses to build anything the
lock does not describe.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from gardenbuild import __version__
from gardenbuild.backends.deps import PinnedWheel
from gardenbuild.errors import UserError
from gardenbuild.manifest.garden import Garden
from gardenbuild.plan.graph import PLATFORM, Inputs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOCKFILE = "Gardenfile.lock"
LOCK_VERSION = 1
#: Images under this prefix exist on one machine only (made there, never pulled).
LOCAL_PREFIX = "localhost/"
LOCAL_BASE_NOTE = ("# no base_digest: a localhost/ image exists on one machine only, so each build "
                   "pins it by its digest in local storage")


def machine_local(image: str) -> bool:
    """Is `image` one that only this machine has (so its digest is no portable pin)?"""
    return image.startswith(LOCAL_PREFIX)


@dataclass(frozen=True)
class Lock:
    python: str
    platform: str
    flavor: str
    base_image: str  # as named in the Gardenfile / flavor / --base-image
    base_digest: str | None  # sha256:... of that image's manifest; None for a machine-local image
    requirements: tuple[str, ...]  # what was resolved
    indexes: tuple[str, ...]
    system_packages: tuple[str, ...]
    packages: tuple[PinnedWheel, ...]
    debs: tuple[PinnedWheel, ...] = ()  # system packages as pinned .deb files (see gardenbuild.backends.debs)
    find_links: tuple[str, ...] = ()  # the garden's own (a machine's --find-links are not the garden's)
    files: dict[str, str] = field(default_factory=dict)  # garden file -> sha256
    templates: dict[str, str] = field(default_factory=dict)  # template / runtime -> sha256
    gardenbuild: str = __version__

    @property
    def pinned_base(self) -> str:
        """The base image reference to build FROM: name plus digest (the name alone when the
        image is machine-local and the lock pins no digest)."""
        name = self.base_image.split("@")[0]
        return f"{name}@{self.base_digest}" if self.base_digest else name

    def plan_lock(self, base_ref: str | None = None) -> dict[str, Any]:
        """What the plan's resolve step hashes: the pins and the base by digest (``base_ref``
        for a machine-local base, whose digest is read from local storage)."""
        pins: dict[str, Any] = {"base": base_ref or self.pinned_base, "wheels": [asdict(w) for w in self.packages]}
        if self.debs:
            pins["debs"] = [asdict(d) for d in self.debs]
        return pins

    def with_inputs(self, inputs: Inputs) -> "Lock":
        return replace(self, files=dict(inputs.files), templates={**inputs.templates, "runtime": inputs.runtime},
                       gardenbuild=__version__)


def _q(value: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML; TOML also forbids a raw DEL)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _array(values: tuple[str, ...] | list[str]) -> str:
    if not values:
        return "[]"
    return "[\n" + "".join(f"  {_q(v)},\n" for v in values) + "]"


def dumps(lock: Lock) -> str:
    out = [
        "# Gardenfile.lock: written by gardenbuild; do not edit by hand.",
        "# It pins every input of the build: rebuilding from it gives the same image digest.",
        "# Update it with `gardenbuild lock` (or `gardenbuild lock --upgrade [PKG]`).",
        f"lock-version = {LOCK_VERSION}",
        f"gardenbuild = {_q(lock.gardenbuild)}",
        "",
        "[environment]",
        f"python = {_q(lock.python)}",
        f"platform = {_q(lock.platform)}",
        f"flavor = {_q(lock.flavor)}",
        f"base_image = {_q(lock.base_image)}",
        f"base_digest = {_q(lock.base_digest)}" if lock.base_digest else LOCAL_BASE_NOTE,
        f"requirements = {_array(lock.requirements)}",
        f"indexes = {_array(lock.indexes)}",
        *([f"find_links = {_array(lock.find_links)}"] if lock.find_links else []),
        f"system_packages = {_array(lock.system_packages)}",
    ]
    for table, key, pins in (("package", "wheel", lock.packages), ("system_package", "deb", lock.debs)):
        for w in sorted(pins):
            out += ["", f"[[{table}]]", f"name = {_q(w.name)}", f"version = {_q(w.version)}", f"{key} = {_q(w.filename)}",
                    f"url = {_q(w.url)}", f"sha256 = {_q(w.sha256)}"]
            if w.size is not None:
                out.append(f"size = {w.size}")
    out += ["", "[files]"] + [f"{_q(k)} = {_q(v)}" for k, v in sorted(lock.files.items())]
    out += ["", "[templates]"] + [f"{_q(k)} = {_q(v)}" for k, v in sorted(lock.templates.items())]
    return "\n".join(out) + "\n"


def loads(text: str, path: Path) -> Lock:
    try:
        data = tomllib.loads(text)
        # Before reading anything else: another lock-version may be laid out differently.
        if data["lock-version"] != LOCK_VERSION:
            raise UserError(f"{path}: lock-version {data['lock-version']!r} is not supported by gardenbuild {__version__}",
                            # `lock --upgrade` reads the lock first, so it would only repeat this error
                            hint=f"delete it and run `gardenbuild lock {path.parent}` to resolve afresh")
        env = data["environment"]
        return Lock(
            python=env["python"], platform=env["platform"], flavor=env["flavor"], base_image=env["base_image"],
            base_digest=env.get("base_digest"), requirements=tuple(env["requirements"]), indexes=tuple(env["indexes"]),
            system_packages=tuple(env["system_packages"]), find_links=tuple(env.get("find_links", ())),
            packages=tuple(PinnedWheel(p["name"], p["version"], p["wheel"], p["url"], p["sha256"], p.get("size"))
                           for p in data.get("package", [])),
            debs=tuple(PinnedWheel(p["name"], p["version"], p["deb"], p["url"], p["sha256"], p.get("size"))
                       for p in data.get("system_package", [])),
            files=dict(data.get("files", {})), templates=dict(data.get("templates", {})),
            gardenbuild=data.get("gardenbuild", "?"),
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is damaged ({type(exc).__name__}: {exc})",
                        hint=f"delete it and run `gardenbuild lock {path.parent}`") from None


def read(root: Path) -> Lock | None:
    path = root / LOCKFILE
    if not path.is_file():
        return None
    return loads(path.read_text(encoding="utf-8"), path)


def write(root: Path, lock: Lock) -> Path:
    from gardenbuild.engine.store import atomic_write

    path = root / LOCKFILE
    atomic_write(path, dumps(lock).encode())
    return path


def _list_changes(what: str, old: tuple[str, ...], new: tuple[str, ...]) -> list[str]:
    gone = [f"{what} removed: {x}" for x in old if x not in new]
    added = [f"{what} added: {x}" for x in new if x not in old]
    return gone + added


def dependency_changes(lock: Lock, garden: Garden) -> list[str]:
    """How the Gardenfile's environment differs from what the lock resolved; [] if it matches."""
    changes = []
    for name, old, new in (("python", lock.python, garden.python), ("platform", lock.platform, PLATFORM),
                           ("flavor", lock.flavor, garden.flavor.name),
                           ("base image", lock.base_image, garden.base_image)):
        if old != new:
            changes.append(f"{name} {old} -> {new}")
    changes += _list_changes("requirement", lock.requirements, garden.requirements)
    changes += _list_changes("index", lock.indexes, garden.indexes)
    changes += _list_changes("find-links", lock.find_links, garden.find_links)
    changes += _list_changes("system package", lock.system_packages, garden.system_packages)
    return changes


def input_changes(lock: Lock, inputs: Inputs) -> list[str]:
    """Which files, templates or runtime differ from the lock's hashes."""
    changes = []
    for rel in sorted(set(lock.files) | set(inputs.files)):
        old, new = lock.files.get(rel), inputs.files.get(rel)
        if old != new:
            changes.append(f"file {rel} " + ("added" if old is None else "removed" if new is None else "changed"))
    current = {**inputs.templates, "runtime": inputs.runtime}
    for name in sorted(set(lock.templates) | set(current)):
        if lock.templates.get(name) != current.get(name):
            changes.append("gardenbuild runtime changed" if name == "runtime" else f"template {name} changed")
    return changes


def package_changes(old: tuple[PinnedWheel, ...], new: tuple[PinnedWheel, ...]) -> list[str]:
    """``numpy 2.1.0 -> 2.2.0``, ``added pandas 2.2``: what a re-resolution changed."""
    before = {w.name: w.version for w in old}
    after = {w.name: w.version for w in new}
    out = []
    for name in sorted(set(before) | set(after)):
        if name not in after:
            out.append(f"removed {name} {before[name]}")
        elif name not in before:
            out.append(f"added {name} {after[name]}")
        elif before[name] != after[name]:
            out.append(f"{name} {before[name]} -> {after[name]}")
    return out
