"""Which gardenbuild process owns the containers it started, so a later one can tidy after a dead one.

Each process that starts containers holds a *claim*: a small file in a machine-wide run
folder, named by a token, flocked for as long as the process lives, saying which images
its builds start from (by id) and which containers existed before. Containers ``run`` makes are
named ``gardenbuild-<token>-...``. A claim whose flock can be taken belongs to a process
that is gone (killed with SIGKILL, say): what it left behind may be removed. Standard
library only.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def run_dir() -> Path:
    """``$GARDENBUILD_RUN_DIR``, else /run/gardenbuild for root (cleared at boot, like
    containers' own run state), else a per-user folder in the temp dir."""
    env = os.environ.get("GARDENBUILD_RUN_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0 and Path("/run").is_dir():
        return Path("/run/gardenbuild")
    return Path(tempfile.gettempdir()) / f"gardenbuild-{os.geteuid()}"


@dataclass
class Claim:
    """This process's claim; `images` and `before` grow as builds start."""

    token: str
    path: Path
    images: set[str] = field(default_factory=set)
    before: set[str] = field(default_factory=set)
    fd: int = -1

    @property
    def prefix(self) -> str:
        """What the names of this process's containers start with."""
        return f"gardenbuild-{self.token}-"

    def note(self, images: set[str], existing: set[str]) -> None:
        """Record that a build from `images` starts now, with `existing` containers already there."""
        if images <= self.images and not (existing - self.before - {""}):
            return
        self.images |= images
        self.before |= existing
        data = json.dumps({"pid": os.getpid(), "images": sorted(self.images), "before": sorted(self.before)})
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data.encode(), 0)


_claim: Claim | None = None


def claim() -> Claim:
    """This process's claim, made on first use."""
    global _claim
    if _claim is None or _claim.path.parent != run_dir():
        folder = run_dir()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        token = secrets.token_hex(4)
        path = folder / f"{token}.json"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.set_inheritable(fd, False)
        _claim = Claim(token, path, fd=fd)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "images": [], "before": []}).encode(), 0)
    return _claim


@dataclass(frozen=True)
class DeadClaim:
    token: str
    path: Path
    data: dict[str, Any]

    @property
    def prefix(self) -> str:
        return f"gardenbuild-{self.token}-"


def claims() -> tuple[list[DeadClaim], int]:
    """(the claims of dead processes, how many other processes hold a live claim)."""
    folder = run_dir()
    dead, live = [], 0
    mine = _claim.path if _claim else None
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        if path == mine:
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            live += 1
            os.close(fd)
            continue
        try:
            data = json.loads(os.pread(fd, 1 << 20, 0) or b"{}")
        except ValueError:
            data = {}
        os.close(fd)
        dead.append(DeadClaim(path.stem, path, data))
    return dead, live


def release(dead: DeadClaim) -> None:
    dead.path.unlink(missing_ok=True)
