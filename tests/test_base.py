"""The bootstrapped Python base image: version mapping, mirror detection, trimming, the real image."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from gardenbuild.backends import base
from gardenbuild.backends.base import (
    BASE_REPOSITORY,
    base_ref,
    bootstrap,
    containerfile,
    debootstrap_argv,
    host_mirror,
    normalize_python,
    python_version_in,
    suite_for,
    trim,
)
from gardenbuild.backends.buildah import Buildah, CommandError
from gardenbuild.errors import ToolMissingError, UserError
from gardenbuild.report import NullReporter, RecordingReporter


# --- pure parts --------------------------------------------------------------------------

@pytest.mark.parametrize("version, suite", [("3.11", "bookworm"), ("3.13", "trixie"),
                                            ("python3.11", "bookworm"), (" 3.13 ", "trixie")])
def test_suite_for_known_versions(version, suite):
    assert suite_for(version) == suite


@pytest.mark.parametrize("version", ["3.10", "3.12"])
def test_versions_no_debian_release_ships(version):
    with pytest.raises(UserError) as info:
        suite_for(version)
    err = info.value
    assert f"no Debian release ships Python {version}" in err.message
    assert "3.11 (bookworm), 3.13 (trixie)" in err.hint
    assert "registry image" in err.hint and "network" in err.hint
    assert err.exit_code == 2


@pytest.mark.parametrize("version", ["3", "3.11.2", "three", "2.7.18", ""])
def test_malformed_versions(version):
    with pytest.raises(UserError, match="not of the form 3.X"):
        normalize_python(version)


def test_base_ref():
    assert base_ref("3.11") == "localhost/gardenbuild/python:3.11" == f"{BASE_REPOSITORY}:3.11"
    assert base_ref("python3.13", "localhost/other/py") == "localhost/other/py:3.13"


def test_host_mirror_reads_deb822(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://proxy.local:3142/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    assert host_mirror(tmp_path) == "http://proxy.local:3142/debian"


def test_host_mirror_reads_one_line_format_first(tmp_path):
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://security.debian.org/debian-security bookworm-security main\n"
        "deb [arch=amd64] http://one.example/debian bookworm main\n")
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "z.sources").write_text("Types: deb\nURIs: http://two.example/debian\n"
                                                            "Suites: bookworm\n")
    assert host_mirror(tmp_path) == "http://one.example/debian"


def test_host_mirror_falls_back_to_debian(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "node.list").write_text("deb https://deb.nodesource.com/node_20.x nodistro-x main\n")
    assert host_mirror(tmp_path) == "http://deb.debian.org/debian"
    assert host_mirror(tmp_path / "absent") == "http://deb.debian.org/debian"


def test_host_mirror_ignores_an_ubuntu_archive(tmp_path):
    # An Ubuntu host's archive serves noble/jammy, not bookworm: debootstrap needs Debian's.
    (tmp_path / "sources.list").write_text("deb http://archive.ubuntu.com/ubuntu noble main universe\n"
                                           "deb http://archive.ubuntu.com/ubuntu noble-updates main\n")
    assert host_mirror(tmp_path) == "http://deb.debian.org/debian"


def test_debootstrap_argv(tmp_path):
    argv = debootstrap_argv("bookworm", tmp_path / "rootfs", "http://m/debian", cache_dir=tmp_path / "cache")
    assert argv == ["debootstrap", "--foreign", "--variant=minbase", "--include=python3", "--components=main",
                    f"--cache-dir={tmp_path}/cache", "bookworm", f"{tmp_path}/rootfs", "http://m/debian"]
    assert "--cache-dir" not in " ".join(debootstrap_argv("trixie", tmp_path, "http://m/debian"))


def test_containerfile_is_rendered_whole():
    text = containerfile({"z.label": "last", "a.label": 'say "hi"'})
    assert text == (
        "FROM scratch\n"
        "ADD rootfs.tar /\n"
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8\n"
        'LABEL a.label="say \\"hi\\"" \\\n'
        '      z.label="last"\n'
        "USER 0:0\n"
        'CMD ["python3"]\n'
    )


def _touch(root: Path, *paths: str) -> None:
    for rel in paths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)


def test_trim_keeps_what_runs_and_copyright(tmp_path):
    _touch(tmp_path,
           "usr/bin/python3.11", "usr/lib/python3.11/json/__init__.py", "usr/lib/locale/C.utf8/LC_CTYPE",
           "usr/share/zoneinfo/UTC", "etc/passwd",
           "usr/share/doc/python3.11/copyright", "usr/share/doc/python3.11/changelog.Debian.gz",
           "usr/share/doc/bash/README", "usr/share/man/man1/python3.1.gz", "usr/share/info/dir",
           "usr/share/locale/de/LC_MESSAGES/dpkg.mo", "var/lib/apt/lists/deb.debian.org_Packages",
           "var/cache/apt/pkgcache.bin", "var/cache/apt/archives/python3.deb", "var/log/dpkg.log",
           "var/lib/dpkg/status-old", "var/lib/dpkg/status", "etc/hostname", "etc/resolv.conf", "dev/null", "tmp/x")
    trim(tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["etc/passwd", "usr/bin/python3.11", "usr/lib/locale/C.utf8/LC_CTYPE",
                    "usr/lib/python3.11/json/__init__.py", "usr/share/doc/python3.11/copyright",
                    "usr/share/zoneinfo/UTC", "var/lib/dpkg/status"]
    assert (tmp_path / "var/lib/apt/lists/partial").is_dir()  # apt-get update works later
    assert (tmp_path / "var/cache/apt/archives/partial").is_dir()
    assert not (tmp_path / "usr/share/doc/bash").exists()


class _NoImages:
    """Stands in for Buildah where a test must not touch the image store."""

    def image_id(self, ref):
        return None


def test_bootstrap_without_debootstrap_is_tool_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError) as info:
        bootstrap("3.11", buildah=_NoImages(), reporter=NullReporter())
    assert info.value.message == "debootstrap is not installed"
    assert info.value.hint == "apt-get install -y debootstrap"


def test_bootstrap_rejects_unknown_version_before_anything_runs():
    with pytest.raises(UserError, match="3.12"):
        bootstrap("3.12", buildah=None, reporter=NullReporter())  # type: ignore[arg-type]


# --- against real buildah and debootstrap ------------------------------------------------

@pytest.fixture(scope="session")
def base_image() -> str:
    """The real 3.11 base (bootstrapped once per machine; reused when it exists)."""
    if shutil.which("buildah") is None or shutil.which("debootstrap") is None:
        pytest.skip("buildah or debootstrap is not installed")
    return bootstrap("3.11", buildah=Buildah(), reporter=NullReporter())


@pytest.mark.integration
def test_bootstrap_is_idempotent(base_image):
    rec = RecordingReporter()
    start = time.perf_counter()
    assert bootstrap("3.11", buildah=Buildah(), reporter=rec) == base_image
    assert time.perf_counter() - start < 5
    assert rec.messages("info") == [f"{base_image} already exists"]
    assert rec.messages("step") == []


@pytest.mark.integration
def test_base_runs_the_right_python(base_image):
    assert python_version_in(base_image, buildah=Buildah()).startswith("3.11.")


@pytest.mark.integration
def test_base_image_config(base_image):
    config = Buildah().inspect(base_image)["OCIv1"]["config"]
    assert "LANG=C.UTF-8" in config["Env"]
    assert any(e.startswith("PATH=/usr/local/sbin:/usr/local/bin:") for e in config["Env"])
    assert config["User"] == "0:0"
    assert config["Cmd"] == ["python3"]
    labels = config["Labels"]
    assert labels["io.gardenbuild.base.suite"] == "bookworm"
    assert labels["org.opencontainers.image.version"].startswith("3.11.")
    assert labels["org.opencontainers.image.base.name"] == "scratch"
    assert "io.buildah.version" not in labels  # would change the digest with every buildah upgrade


@pytest.mark.integration
def test_base_is_small_and_only_python(base_image):
    buildah = Buildah()
    assert buildah.size(base_image) < 140_000_000
    script = ("import os, shutil, json\n"
              "docs = [f for d, _, fs in os.walk('/usr/share/doc') for f in fs if f != 'copyright']\n"
              "print(json.dumps({'docs': docs, 'man': os.listdir('/usr/share/man'),\n"
              "  'locale': os.listdir('/usr/share/locale'), 'lists': os.listdir('/var/lib/apt/lists'),\n"
              "  'pip': shutil.which('pip3'), 'ensurepip': os.path.exists('/usr/lib/python3.11/ensurepip'),\n"
              "  'copyright': os.path.exists('/usr/share/doc/python3.11/copyright')}))")
    found = json.loads(buildah.run(base_image, ["python3", "-c", script]).stdout)
    assert found == {"docs": [], "man": [], "locale": [], "lists": ["partial"], "pip": None,
                     "ensurepip": False, "copyright": True}


@pytest.mark.integration
def test_base_stdlib_bytecode_is_valid_despite_epoch_mtimes(base_image):
    # --timestamp 0 sets every mtime to 1970; timestamp-based .pyc files would all be stale
    result = Buildah().run(base_image, ["python3", "-v", "-c", "import json, ssl, asyncio, email.mime.text"])
    assert result.ok, result.stderr
    verbose = result.stderr.decode()
    assert "matches /usr/lib/python3.11/json/__init__.py" in verbose
    assert "bytecode is stale" not in verbose and "# created '" not in verbose


@pytest.mark.integration
def test_failed_bootstrap_cleans_up_and_tags_nothing(tmp_path):
    repository = "localhost/gardenbuild-test/python"
    buildah = Buildah()
    with pytest.raises(CommandError, match="debootstrap bookworm failed"):
        bootstrap("3.11", buildah=buildah, reporter=NullReporter(), workdir=tmp_path, repository=repository,
                  mirror="http://127.0.0.1:9/debian")  # nothing listens on the discard port
    assert list(tmp_path.iterdir()) == []
    assert not buildah.exists(f"{repository}:3.11")


def test_mounts_below_reads_mountinfo(tmp_path):
    assert base._mounts_below(tmp_path) == []
    assert base._mounts_below(Path("/proc"))[-1] == "/proc"  # deepest first, /proc itself last
