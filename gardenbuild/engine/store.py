"""The content-addressed step store: one record per step key, written atomically.

Layout under the cache root (``$GARDENBUILD_CACHE``, default the user cache dir):
``steps/<aa>/<key>.json`` records, ``wheels/`` (see `gardenbuild.backends.deps.WheelStore`),
``resolve/`` resolution results, ``locks/`` lock files. A record appears all at once
(write to a temporary file, fsync, rename), so a killed build never leaves a partial
entry, and a file lock serialises builds of the same garden.
"""

from __future__ import annotations

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
    def lock(self, name: str, timeout: float = 600) -> Iterator[None]:
        """Hold an exclusive lock named `name` (e.g. a garden) across processes."""
        path = self.root / "locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(str(path), timeout=timeout):
                yield
        except Timeout:
            raise UserError(f"another gardenbuild process has been building '{name}' for {timeout:.0f}s",
                            hint=f"wait for it, or remove {path} if no build is running") from None

    def scratch(self) -> Path:
        """A fresh temporary folder inside the store (same filesystem, so hard links work)."""
        base = self.root / "tmp"
        base.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=base))

    @staticmethod
    def discard(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
