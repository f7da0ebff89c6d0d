"""Outside processes behind narrow interfaces: buildah, debootstrap, uv and the package indexes, apt.

`Backend` is the one interface to containers that the engine and publishing see; the
buildah CLI (`gardenbuild.backends.buildah.Buildah`) implements it. It also answers
questions about local image storage (`image_in_storage`, `stored_digest`) that a no-op
build asks without starting any process. Importing this module is cheap: it defines
types only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

Volume = tuple[Path | str, str, str]
"""A bind mount: (host path, path in the container, options such as ``"ro"``)."""


@dataclass(frozen=True)
class Limits:
    """What one confined container may use: wall time, memory and processes."""

    seconds: float | None = None
    memory: int | None = None  # bytes
    pids: int | None = 4096


@dataclass(frozen=True)
class RunResult:
    """What a command run in a fresh container produced."""

    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float
    limit: str | None = None  # "time" or "memory": the limit that stopped it
    peak_memory: int | None = None  # bytes, where the kernel says

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Backend(Protocol):
    """Builds, runs, inspects and pushes images; the engine's only way to containers."""

    def bud(self, containerfile: Path, context: Path, *, tag: str | None, volumes: Sequence[Volume] = (),
            build_args: Mapping[str, object] | None = None, labels: Mapping[str, object] | None = None,
            layers: bool = True, timestamp: int | None = 0, network: str | None = "none",
            no_cache: bool = False, pull: str = "never", on_line: Callable[[str], None] | None = None,
            timeout: float | None = None, secrets: Mapping[str, str] | None = None) -> str: ...

    def run(self, image: str, argv: Sequence[str], *, stdin: bytes | None = None, env: Mapping[str, str] | None = None,
            volumes: Sequence[Volume] = (), workdir: str | None = None, network: str | None = "none",
            user: str | None = None, limits: Limits | None = None, pull: str = "never",
            devices: Sequence[str] = ()) -> RunResult: ...

    def start(self, image: str, argv: Sequence[str], *, stdin: bool = False, stdout: Any = ...,
              env: Mapping[str, str] | None = None, volumes: Sequence[Volume] = (), workdir: str | None = None,
              network: str | None = "none", user: str | None = None, limits: Limits | None = None,
              pull: str = "never", devices: Sequence[str] = ()) -> Any: ...

    def inspect(self, ref: str) -> dict[str, Any]: ...
    def image_id(self, ref: str) -> str | None: ...
    def digest(self, ref: str) -> str: ...
    def size(self, ref: str) -> int: ...
    def tag(self, image_id: str, *refs: str) -> None: ...
    def rmi(self, ref: str, *, force: bool = False) -> None: ...
    def images(self, prefixes: Sequence[str] = ("",), sized: bool = True) -> list[dict[str, Any]]: ...
    def push(self, ref: str, dest: str, *, tls_verify: bool = True, authfile: Path | None = None,
             digestfile: Path | None = None) -> str: ...
    def pull(self, ref: str, *, tls_verify: bool = True, authfile: Path | None = None) -> str: ...
    def export_layers(self, ref: str, dest: Path) -> Path: ...

    # Local storage, read without starting a process; None when it cannot be read.
    def image_in_storage(self, image_id: str, name: str | None = None) -> bool | None: ...
    def digest_in_storage(self, digest: str) -> bool | None: ...
    def stored_digest(self, ref: str) -> str | None: ...
    def stored_labels(self, image_id: str) -> dict[str, str] | None: ...

    # What gardenbuild processes that died (kill -9, a lost terminal) left behind.
    def leftovers(self) -> list[dict[str, Any]]: ...
    def sweep(self) -> list[str]: ...
