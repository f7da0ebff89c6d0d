"""The content-addressed step store: one record per step key, written atomically.

Layout under the cache root (``$GARDENBUILD_CACHE``, default the user cache dir):
``steps/<aa>/<key>.json`` records, ``wheels/`` (see `gardenbuild.backends.deps.WheelStore`),
``resolve/`` resolution results, ``locks/`` lock files. A record appears all at once
(write to a temporary file, fsync, rename), so a killed build never leaves a partial
entry, and a file lock serialises builds of the same garden.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout

from gardenbuild.errors import UserError


def default_root() -> Path:
    env = os.environ.get("GARDENBUILD_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("gardenbuild"))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Read once at import, before any thread runs (reading the umask briefly changes it).
UMASK = _umask()
#: What a stray temporary file of `atomic_write` is called; `cache prune` removes them.
TMP_GLOB = ".*.tmp"
#: The file in a scratch folder its owner keeps flocked.
OWNER = ".owner"
_HELD: dict[Path, int] = {}  # scratch folders of this process -> the fd holding their lock


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the new one, never a part.

    The file gets the mode of the file it replaces, else the usual 0644 under the umask
    (mkstemp's 0600 would make a Gardenfile.lock unreadable to the rest of a team).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o666 & ~UMASK
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Entry:
    key: str
    kind: str
    data: dict[str, Any]
    size: int


class StepStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else default_root()

    def _path(self, key: str) -> Path:
        return self.root / "steps" / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self._path(key).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return record if record.get("key") == key else None

    def put(self, key: str, kind: str, data: dict[str, Any]) -> None:
        record = {"key": key, "kind": kind, **data}
        atomic_write(self._path(key), json.dumps(record, indent=1, sort_keys=True).encode())

    def _memory(self, name: str, root: Path) -> Path:
        tag = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]
        return self.root / "gardens" / f"{name}-{tag}.json"

    def remembered(self, name: str, root: Path) -> dict[str, Any]:
        """The steps last built for the garden in `root` (step id -> snapshot), to explain the next plan."""
        try:
            return json.loads(self._memory(name, root).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def remember(self, name: str, root: Path, steps: dict[str, Any]) -> None:
        atomic_write(self._memory(name, root), json.dumps(steps, indent=1, sort_keys=True).encode())

    def remove(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def entries(self) -> Iterator[Entry]:
        for path in sorted((self.root / "steps").glob("*/*.json")):
            try:  # another process may prune (remove) a record while we list
                record = json.loads(path.read_text())
                size = path.stat().st_size
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            yield Entry(record.get("key", path.stem), record.get("kind", "?"), record, size)

    @contextmanager
    def lock(self, name: str, timeout: float = 600, reporter: Any = None) -> Iterator[None]:
        """Hold an exclusive lock named `name` (e.g. a garden) across processes; a process
        that has to wait says so (to `reporter`) instead of waiting in silence."""
        path = self.root / "locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), timeout=timeout)
        try:
            try:
                lock.acquire(timeout=0)
            except Timeout:
                if reporter is not None:
                    reporter.info(f"waiting for another gardenbuild process that is building '{name.removeprefix('garden-')}' "
                                  f"(up to {timeout:g} s); its result will be reused")
                lock.acquire(timeout=timeout)
            try:
                yield
            finally:
                lock.release()
        except Timeout:
            raise UserError(f"another gardenbuild process has been building '{name.removeprefix('garden-')}' for {timeout:g} s",
                            hint=f"wait for it, or remove {path} if no build is running") from None

    def scratch(self) -> Path:
        """A fresh temporary folder inside the store (same filesystem, so hard links work).

        Its ``.owner`` file stays flocked until `discard`, so `sweep_scratch` can tell the
        folder of a running build from one a killed build left behind.
        """
        base = self.root / "tmp"
        base.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(dir=base))
        fd = os.open(path / OWNER, os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        _HELD[path] = fd
        return path

    @staticmethod
    def discard(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
        fd = _HELD.pop(path, None)
        if fd is not None:
            os.close(fd)

    def sweep_scratch(self) -> int:
        """Remove scratch folders whose owner is gone; return the bytes freed."""
        freed = 0
        for folder in sorted((self.root / "tmp").glob("*")):
            if not folder.is_dir() or folder in _HELD:
                continue
            try:
                fd = os.open(folder / OWNER, os.O_RDONLY)
            except FileNotFoundError:
                continue  # being made right now, or not ours
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # a running build's
            freed += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
            shutil.rmtree(folder, ignore_errors=True)
            os.close(fd)
        return freed
