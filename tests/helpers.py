"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import argparse
import io
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from gardenbuild.cli import main
from gardenbuild.report import RecordingReporter


def cli(*args: str) -> tuple[int, str, str]:
    """``gardenbuild ARGS`` in-process, usable from fixtures of any scope: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def copy_garden(src: Path, dest: Path) -> Path:
    """A writable copy of a garden folder, without build outputs."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".gardenbuild", ".ipynb_checkpoints"))
    return dest


def publish_cli(*argv: str) -> tuple[argparse.Namespace, int]:
    """Run one of the publish commands (publish, list, show) with a recording reporter."""
    from gardenbuild.cli import publish as commands

    top = argparse.ArgumentParser(prog="gardenbuild")
    commands.add_parsers(top.add_subparsers(dest="command"))
    args = top.parse_args(list(argv))
    return args, commands.HANDLERS[args.command](args, RecordingReporter())


def write_garden(folder: Path, cells: list[str], pipelines: list[str], *, name: str | None = None,
                 extra: str = "", environment: str = "", tables: str = "", flavor: str = "base") -> Path:
    """A small garden made on the spot: a notebook of `cells`, the plain flavor (its env
    image, dill only, is shared by every such garden), and a [[pipeline]] per name."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": c}
                          for c in cells]}
    (folder / "model.ipynb").write_text(json.dumps(notebook, indent=1))
    slug = name or folder.name.replace("_", "-")
    pipes = "".join(f'\n[[pipeline]]\nname = "{p}"\n' for p in pipelines)
    (folder / "Gardenfile.toml").write_text(
        f'notebook = "model.ipynb"\n{extra}\n[garden]\nname = "{slug}"\ntitle = "Test garden {slug}"\n'
        f'license = "MIT"\n\n[[garden.authors]]\nname = "Test Author"\n\n'
        f'[environment]\npython = "3.11"\nflavor = "{flavor}"\n{environment}\n{pipes}\n{tables}')
    return folder


# ---- a real OCI registry on loopback

needs_registry = pytest.mark.skipif(
    not (shutil.which("docker-registry") and shutil.which("buildah") and shutil.which("skopeo")),
    reason="needs docker-registry, buildah and skopeo (scripts/setup.sh installs them)")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports on 127.0.0.1 (held open together while chosen, so no two are equal)."""
    held = [socket.socket() for _ in range(n)]
    try:
        for s in held:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


class Registry:
    """A distribution registry on 127.0.0.1, its storage and access log in a temporary folder."""

    def __init__(self, root: Path, *, htpasswd: str | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log = root / "registry.log"
        config = [
            "version: 0.1",
            "log:", "  level: info", "  accesslog:", "    disabled: true",
            "storage:", "  filesystem:", f"    rootdirectory: {root / 'data'}",
            "http:", f"  addr: {self.host}", "  secret: gardenbuild-test",
        ]
        if htpasswd:
            (root / "htpasswd").write_text(htpasswd)
            config += ["auth:", "  htpasswd:", "    realm: test", f"    path: {root / 'htpasswd'}"]
        (root / "config.yml").write_text("\n".join(config) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Registry":
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.root / "config.yml")],
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return self
            except urllib.error.HTTPError:  # 401 with auth: it is up
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start in 15 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def uploads(self) -> int:
        """Blob uploads the registry has started (``POST .../blobs/uploads/``), from its log."""
        lines = self.log.read_text(errors="replace").splitlines()
        return sum('msg="response completed"' in line and "http.request.method=POST" in line
                   and re.search(r'http\.request\.uri="?/v2/\S+/blobs/uploads/"? ', line) is not None for line in lines)
