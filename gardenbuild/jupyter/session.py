"""One JupyterLab session in a garden's environment image (`gardenbuild notebook DIR`).

The container shares the host's network (as `gardenbuild serve` does not: here the
publisher works, and ``%pip install`` reaches PyPI as it would in Colab), listens on
127.0.0.1 only, and asks for a token. The garden folder is mounted read-write at
``/garden``; the Jupyter prefix and uv read-only. Nothing of Jupyter is installed into
the image: the container is removed when the session ends.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gardenbuild.errors import BuildError, UserError
from gardenbuild.jupyter import DEFAULT_PORT
from gardenbuild.jupyter.prefix import MOUNT, PYTHON_IN_IMAGE
from gardenbuild.report import Reporter

UV_MOUNT = "/opt/gardenbuild-uv"
CERTS_MOUNT = "/opt/gardenbuild-certs"
#: What %pip needs to reach an index as the host does: its proxies, and its CA bundle (mounted).
PASSED_ON = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "UV_INDEX_URL",
             "UV_EXTRA_INDEX_URL", "UV_DEFAULT_INDEX")
GARDEN = "/garden"
SERVER_BOOT = (f"import sys; sys.path.insert(0, {MOUNT + '/site'!r}); sys.argv[0] = 'jupyter-lab'; "
               "from jupyterlab.labapp import main; sys.exit(main())")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_argv(port: int, token: str) -> list[str]:
    return [PYTHON_IN_IMAGE, "-c", SERVER_BOOT, "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
            "--no-browser", "--allow-root", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={GARDEN}",
            "--KernelSpecManager.ensure_native_kernel=False", f"--LabApp.app_dir={MOUNT}/site/share/jupyter/lab"]


def host_certificates() -> Path | None:
    """The host's CA bundle (a TLS-inspecting proxy's CA is often only there)."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def server_env(certificates: Path | None = None) -> dict[str, str]:
    passed = {k: os.environ[k] for k in PASSED_ON if os.environ.get(k)}
    if certificates is not None:
        passed["SSL_CERT_FILE"] = f"{CERTS_MOUNT}/{certificates.name}"
    return {**passed, "JUPYTER_PATH": f"{MOUNT}/own/share/jupyter:{MOUNT}/site/share/jupyter", "HOME": "/tmp",
            "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime", "JUPYTER_CONFIG_DIR": "/tmp/jupyter-config",
            "JUPYTER_DATA_DIR": "/tmp/jupyter-data", "GARDENBUILD_UV": f"{UV_MOUNT}/uv",
            "GARDENBUILD_GARDENFILE": f"{GARDEN}/Gardenfile.toml", "UV_CACHE_DIR": "/tmp/uv-cache",
            "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass
class Snapshot:
    """What of the folder a session may change and a build reads."""

    requirements: list[str]
    notebook_sha: str

    @classmethod
    def of(cls, root: Path) -> "Snapshot":
        from gardenbuild.manifest.load import load

        garden = load(root)
        return cls(sorted(garden.own_requirements), hashlib.sha256((root / garden.notebook).read_bytes()).hexdigest())


@dataclass
class Lab:
    url: str
    port: int
    token: str
    image: str
    log: Path
    running: Any = field(repr=False)

    def alive(self) -> bool:
        return self.running.proc.poll() is None

    def stop(self) -> None:
        self.running.close()


def start(root: Path, env_image: str, prefix: Path, *, backend: Any, reporter: Reporter, port: int = DEFAULT_PORT,
          token: str | None = None, log: Path, ready_timeout: float = 120.0) -> Lab:
    """Start JupyterLab for the garden in ``root`` on ``env_image``; return once it answers."""
    from gardenbuild.backends.deps import find_uv

    port = port or free_port()
    token = token or secrets.token_urlsafe(24)
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise UserError(f"port {port} on 127.0.0.1 is taken", hint="pick another with --port (0: any free one)")
    uv = Path(find_uv())
    certificates = host_certificates()
    from gardenbuild.jupyter.prefix import HOST_PACKAGE
    from gardenbuild.resources import runtime_dir

    volumes = [(prefix, MOUNT, "ro"), (uv.parent, UV_MOUNT, "ro"), (root, GARDEN, "rw"),
               (runtime_dir().parent, f"{HOST_PACKAGE}/gardenbuild", "ro")]
    if certificates is not None:
        volumes.append((certificates.parent, CERTS_MOUNT, "ro"))
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "wb")
    try:
        running = backend.start(env_image, server_argv(port, token), stdout=out, env=server_env(certificates),
                                workdir=GARDEN, network="host", volumes=volumes)
    finally:
        out.close()
    lab = Lab(f"http://127.0.0.1:{port}/lab?token={token}", port, token, env_image, log, running)
    deadline = time.monotonic() + ready_timeout
    while True:
        if not lab.alive():
            lab.stop()
            raise BuildError("JupyterLab stopped as it started:\n" + _tail(log), hint=f"its whole log: {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2):
                return lab
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            lab.stop()
            raise BuildError(f"JupyterLab did not answer within {ready_timeout:.0f} s:\n" + _tail(log),
                             hint=f"its whole log: {log}")
        time.sleep(0.3)


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join("    " + line for line in log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "    (no log)"


def changes(before: Snapshot, root: Path, *, base_image: str) -> tuple[list[str], bool]:
    """What a session changed that a build reads: the lines to report, and whether the next
    build resolves again (its lock no longer matches the Gardenfile). ``base_image`` is the
    one the session's environment was built on."""
    from gardenbuild.manifest.load import load
    from gardenbuild.plan import lockfile

    after = Snapshot.of(root)
    lines = []
    added = sorted(set(after.requirements) - set(before.requirements))
    removed = sorted(set(before.requirements) - set(after.requirements))
    if added:
        lines.append(f"requirements added: {', '.join(added)}")
    if removed:
        lines.append(f"requirements removed: {', '.join(removed)}")
    if after.notebook_sha != before.notebook_sha:
        lines.append("the notebook changed: the next build runs it again")
    lock = lockfile.read(root)
    reasons = ([r for r in lockfile.dependency_changes(lock, load(root).with_base_image(base_image))
                if not r.startswith("base image ")]  # a session does not change the base; the lock pins it
               if lock else ["no Gardenfile.lock yet"])
    if reasons:
        lines.append("the next build resolves again (" + "; ".join(reasons) + ")")
    elif lines:
        lines.append("the lock still matches: the next build installs nothing new")
    return lines, bool(reasons)
