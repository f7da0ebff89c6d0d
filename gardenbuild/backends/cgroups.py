"""Memory and process-count limits for the processes of one container, through a cgroup.

``buildah run`` with chroot isolation sets no cgroup of its own, so the backend makes one
below the cgroup gardenbuild itself runs in (cgroup v1's memory and pids controllers, as
on hosts in hybrid mode, or the unified v2 hierarchy), and the process it starts joins it
before exec; everything that process starts stays in it. Afterwards the cgroup says
whether the kernel's OOM killer struck inside it, and is removed.

Standard library only. Where no cgroup is writable (not root, a read-only /sys), `create`
returns None and the caller says that the limit is not enforced.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own_path(controller: str) -> str | None:
    """This process's cgroup path in `controller` (v1), or in the unified hierarchy ("")."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, names, path = line.split(":", 2)
        if (controller and controller in names.split(",")) or (not controller and names == ""):
            return path
    return None


@dataclass
class Cgroup:
    """One cgroup per limited process tree: its folders (v1: one per controller) and version."""

    folders: dict[str, Path]  # controller ("memory", "pids") -> folder
    version: int

    @classmethod
    def create(cls, *, memory: int | None, pids: int | None, root: Path = ROOT) -> "Cgroup | None":
        name = f"gardenbuild-{os.getpid()}-{secrets.token_hex(4)}"
        made: dict[str, Path] = {}
        try:
            if (root / "memory" / "memory.limit_in_bytes").exists() or (root / "memory").is_dir():
                for controller in ("memory", "pids"):
                    own = _own_path(controller)
                    if own is None or not (root / controller).is_dir():
                        continue
                    folder = root / controller / own.lstrip("/") / name
                    folder.mkdir()
                    made[controller] = folder
                group = cls(made, 1)
            elif (root / "cgroup.controllers").exists():
                own = _own_path("")
                if own is None:
                    return None
                folder = root / own.lstrip("/") / name
                folder.mkdir()
                made = {"memory": folder, "pids": folder}
                group = cls(made, 2)
            else:
                return None
            if memory is not None and "memory" in made:
                group._set_memory(memory)
            if pids is not None and "pids" in made:
                (made["pids"] / "pids.max").write_text(str(pids))
            if memory is not None and "memory" not in made:
                raise OSError("no memory controller")
            return group
        except OSError:
            for folder in set(made.values()):
                try:
                    folder.rmdir()
                except OSError:
                    pass
            return None

    def _set_memory(self, limit: int) -> None:
        folder = self.folders["memory"]
        if self.version == 1:
            (folder / "memory.limit_in_bytes").write_text(str(limit))
            swap = folder / "memory.memsw.limit_in_bytes"
            if swap.exists():  # no swapping out of the limit either
                try:
                    swap.write_text(str(limit))
                except OSError:
                    pass
        else:
            (folder / "memory.max").write_text(str(limit))
            try:
                (folder / "memory.swap.max").write_text("0")
            except OSError:
                pass

    def join(self) -> None:
        """Move the calling process into the cgroup (called in the child, before exec)."""
        pid = str(os.getpid())
        for folder in set(self.folders.values()):
            (folder / "cgroup.procs").write_text(pid)

    def oom_killed(self) -> bool:
        """Did the OOM killer kill a process of this cgroup?"""
        folder = self.folders.get("memory")
        if folder is None:
            return False
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            fields = dict(line.split() for line in (folder / name).read_text().splitlines() if " " in line)
        except OSError:
            return False
        return int(fields.get("oom_kill", "0")) > 0

    def peak(self) -> int | None:
        """The most memory the processes used, in bytes, if the kernel says."""
        folder = self.folders.get("memory")
        if folder is None:
            return None
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            try:
                return int((folder / name).read_text())
            except (OSError, ValueError):
                continue
        return None

    def remove(self) -> None:
        """Kill what is left inside, then remove the folders; never raises."""
        for folder in set(self.folders.values()):
            for _ in range(50):
                try:
                    pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, 9)
                    except OSError:
                        pass
                time.sleep(0.02)
            try:
                folder.rmdir()
            except OSError:
                pass
