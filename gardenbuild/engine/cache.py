"""`gardenbuild cache`: what the step store, wheel cache and gardenbuild's images hold, and pruning.

Pruning keeps what the last build of every garden folder still uses (the remembered
step snapshots) and removes the rest: other step records, wheels no kept resolution
names, gardenbuild's own images (env and garden tags) that no kept record points at, and
what dead gardenbuild processes left (`sweep`: their containers, scratch folders and
partial downloads; every build sweeps too). Only gardenbuild's tags are removed: base
images, and any other name an image carries, are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gardenbuild.backends import Backend
from gardenbuild.backends.deps import WheelStore
from gardenbuild.engine.store import TMP_GLOB, StepStore
from gardenbuild.errors import GardenError
from gardenbuild.report import Reporter

GARDEN_IMAGES = "localhost/gardens/"
OWN_IMAGES = ("localhost/gardenbuild/env:", "localhost/gardenbuild/weights:", "localhost/gardenbuild/runtime:",
              "localhost/gardenbuild/session/", GARDEN_IMAGES)
#: A half-written record this old is a killed writer's (atomic_write holds one for milliseconds).
STALE_SECONDS = 3600


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


@dataclass(frozen=True)
class Usage:
    root: str
    steps: dict[str, int]  # kind -> count
    step_bytes: int
    wheels: int
    wheel_bytes: int
    resolutions: int
    images: list[dict[str, Any]]
    leftovers: list[dict[str, Any]]  # containers of gardenbuild processes that died

    def as_json(self) -> dict[str, Any]:
        return self.__dict__ | {"image_bytes": sum(i["size"] for i in self.images)}

    def text(self) -> str:
        mb = 1 / 1e6
        lines = [f"cache: {self.root}",
                 f"  step records: {sum(self.steps.values())} ({self.step_bytes * mb:.1f} MB): "
                 + ", ".join(f"{n} {k}" for k, n in sorted(self.steps.items())),
                 f"  wheels and .debs: {self.wheels} ({self.wheel_bytes * mb:.1f} MB), resolutions: {self.resolutions}",
                 f"  images: {len(self.images)} ({sum(i['size'] for i in self.images) * mb:.0f} MB)"]
        lines += [f"    {', '.join(i['names'])}  {i['size'] * mb:.0f} MB" for i in self.images]
        if self.leftovers:
            lines.append(f"  left by gardenbuild processes that died: {len(self.leftovers)} container(s) "
                         "(`gardenbuild cache prune` removes them)")
            lines += [f"    {c['name']}  (from {c['image']})" for c in self.leftovers]
        return "\n".join(lines)


#: How many images of one garden a build keeps (the newest); `GARDENBUILD_KEEP_IMAGES` overrides.
KEEP_IMAGES = 3


def keep_images() -> int:
    try:
        return max(1, int(os.environ.get("GARDENBUILD_KEEP_IMAGES", KEEP_IMAGES)))
    except ValueError:
        return KEEP_IMAGES


def trim_garden_images(garden: str, recent: list[str], backend: Backend, reporter: Reporter,
                       keep: int | None = None) -> list[str]:
    """Untag the images of `garden` but the `keep` most recent (`recent`: image ids, newest
    first, as this catalog recorded them); return the names dropped. An image a container
    still uses is left alone, and so is one this catalog never recorded: it belongs to a
    build under another GARDENBUILD_DATA (a bench, a test, another user of the storage)."""
    keep = keep or keep_images()
    kept, known = set(recent[:keep]), set(recent)
    dropped = []
    for image in backend.images((f"{GARDEN_IMAGES}{garden}:",), sized=False):
        if image["id"] in kept or image["id"] not in known:
            continue
        for name in image["names"]:
            if name.startswith(f"{GARDEN_IMAGES}{garden}:"):
                try:
                    backend.rmi(name)
                    dropped.append(name)
                except GardenError:
                    pass
    if dropped:
        reporter.info(f"removed {len(dropped)} older image(s) of {garden} (keeping the newest {keep}; "
                      "GARDENBUILD_KEEP_IMAGES changes that)")
    return dropped


def sweep(store: StepStore, backend: Backend, reporter: Reporter) -> dict[str, int]:
    """Remove what gardenbuild processes that died left behind: containers, scratch folders,
    partial downloads. What running processes own is never touched (they hold locks)."""
    from gardenbuild.backends.deps import sweep_partial

    containers = backend.sweep()
    scratch = store.sweep_scratch()
    partial = sweep_partial(store.root)
    if containers:
        reporter.info(f"removed {len(containers)} container(s) left by a gardenbuild process that died: "
                      + ", ".join(containers))
    if scratch or partial:
        reporter.info(f"removed {(scratch + partial) / 1e6:.1f} MB of scratch files and partial downloads "
                      "left by a gardenbuild process that died")
    return {"containers": len(containers), "bytes": scratch + partial}


def own_images(backend: Backend) -> list[dict[str, Any]]:
    return backend.images(OWN_IMAGES)


def usage(store: StepStore, backend: Backend) -> Usage:
    kinds: dict[str, int] = {}
    for entry in store.entries():
        kinds[entry.kind] = kinds.get(entry.kind, 0) + 1
    files = [path for _, path in WheelStore(store.root).stored()]
    return Usage(
        root=str(store.root), steps=kinds, step_bytes=_du(store.root / "steps"), wheels=len(files),
        wheel_bytes=sum(f.stat().st_size for f in files),
        resolutions=len(list((store.root / "resolve").glob("*.json"))), images=own_images(backend),
        leftovers=backend.leftovers(),
    )


def _kept_keys(store: StepStore) -> set[str]:
    keys = set()
    for memory in (store.root / "gardens").glob("*.json"):
        try:
            keys |= {snap["key"] for snap in json.loads(memory.read_text()).values()}
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return keys


def prune(store: StepStore, backend: Backend, reporter: Reporter, *, everything: bool = False) -> dict[str, int]:
    """Remove what no garden's last build uses (or everything); return counts and bytes freed."""
    kept = set() if everything else _kept_keys(store)
    swept = sweep(store, backend, reporter)
    freed = {"records": 0, "wheels": 0, "images": 0, "bytes": swept["bytes"], "containers": swept["containers"]}
    kept_images, kept_wheels = set(), set()
    for entry in list(store.entries()):
        if entry.key in kept:
            kept_images.add(entry.data.get("image_id"))
            kept_wheels |= {w["sha256"] for w in entry.data.get("wheels", []) + entry.data.get("debs", [])}
            continue
        store.remove(entry.key)
        freed["records"] += 1
        freed["bytes"] += entry.size
    for sha256, wheel in WheelStore(store.root).stored():
        if sha256 not in kept_wheels:
            freed["bytes"] += wheel.stat().st_size
            wheel.chmod(0o644)
            wheel.unlink()
            freed["wheels"] += 1
    if everything:
        for folder in ("resolve", "gardens"):
            shutil.rmtree(store.root / folder, ignore_errors=True)
    for stale in (store.root / "steps").glob(f"*/{TMP_GLOB}"):  # records a killed writer left half-written
        if _age(stale) > STALE_SECONDS:
            stale.unlink(missing_ok=True)
    for image in own_images(backend):
        if image["id"] in kept_images:
            continue
        # Only gardenbuild's names are dropped, one by one and without --force: an image that
        # also carries a name of the user's stays (under that name), and one that a running
        # container uses (another build, a `gardenbuild run`) is left alone with a warning.
        ours = [n for n in image["names"] if n.startswith(OWN_IMAGES)]
        try:
            for name in ours:
                backend.rmi(name)
        except GardenError as exc:
            tail = getattr(exc, "log_tail", "").strip().splitlines()
            reporter.warn(f"kept image {', '.join(ours)}: {tail[-1] if tail else exc.message}")
            continue
        if len(ours) < len(image["names"]):
            reporter.info(f"untagged {', '.join(ours)} (the image keeps its other names)")
            continue
        reporter.info(f"removed image {', '.join(ours)}")
        freed["images"] += 1
        freed["bytes"] += image["size"]
    return freed
