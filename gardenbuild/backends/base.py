"""A small local Python base image, bootstrapped from Debian (``gardenbuild base bootstrap``).

Registry images such as ``python:3.11-slim`` cannot always be pulled, so we make
``localhost/gardenbuild/python:X.Y`` ourselves: ``debootstrap --variant=minbase`` of the
Debian release that ships Python X.Y, plus ``python3`` and nothing else (no pip, no venv:
environments are made with a ``uv`` binary mounted at build time), trimmed of package
lists, caches, docs, man pages and translations, and committed as one layer.

The stdlib's bytecode is kept but recompiled as *checked-hash* ``.pyc`` files. Debian
ships timestamp-based ones, and ``--timestamp 0`` sets every file's mtime in the image to
the epoch, which makes all of them stale: each fresh container would then recompile the
stdlib it imports (``import json, ssl`` took 70 ms instead of 19 ms; a dozen common
modules 330 ms instead of 65 ms). Hash-based files are valid whatever the mtimes.

Besides buildah (through `Buildah`), this module runs debootstrap, and the new rootfs's
own python3 under ``chroot`` (to compile its stdlib with the right Python version).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from gardenbuild.backends import Backend
from gardenbuild.backends.buildah import Buildah, stream
from gardenbuild.errors import BackendError, ToolMissingError, UserError
from gardenbuild.manifest.flavors import pythons
from gardenbuild.report import Reporter

BASE_REPOSITORY = "localhost/gardenbuild/python"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_HINT = "apt-get install -y debootstrap"


PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Removed from the rootfs after debootstrap (globs relative to it). Copyright files stay:
# images get pushed, i.e. redistributed. /usr/lib/locale (C.utf8) stays.
TRIM = (
    "var/lib/apt/lists/*",
    "var/cache/apt/*",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "var/cache/ldconfig/aux-cache",
    "var/log/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/lintian/*",
    "usr/share/bash-completion/*",
    "dev/*",  # buildah provides /dev at run time
    "tmp/*",
    "etc/hostname",  # debootstrap copies the host's
    "etc/resolv.conf",
)

# dpkg and apt settings written into the rootfs before packages are installed; they keep
# later `apt-get install`s in derived images as lean (and as fast) as this one.
DPKG_CONFIG = """\
# gardenbuild base: no fsync per file; no docs, man pages or translations (copyright kept)
force-unsafe-io
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
"""
APT_CONFIG = """\
# gardenbuild base: do not keep downloaded packages
APT::Keep-Downloaded-Packages "false";
Binary::apt::APT::Keep-Downloaded-Packages "false";
"""


def base_ref(python: str, repository: str = BASE_REPOSITORY) -> str:
    """The local image name for a Python minor version: ``localhost/gardenbuild/python:3.11``."""
    return f"{repository}:{normalize_python(python)}"


def normalize_python(python: str) -> str:
    """``"3.11"`` from ``"3.11"``, ``"python3.11"`` or ``" 3.11 "``; a UserError for anything else."""
    text = python.strip().removeprefix("python")
    if not re.fullmatch(r"3\.\d+", text):
        raise UserError(f"python version {python!r} is not of the form 3.X",
                        hint=f"bootstrappable versions: {', '.join(suites())}")
    return text


def suites() -> dict[str, str]:
    """Python version -> the Debian release whose python3 it is (flavors/pythons.toml)."""
    return {v.version: v.debian for v in pythons().values() if v.debian}


def suite_for(python: str) -> str:
    """The Debian release whose python3 is ``python`` (X.Y)."""
    version = normalize_python(python)
    try:
        return suites()[version]
    except KeyError:
        raise UserError(
            f"no Debian release ships Python {version}, so it cannot be bootstrapped here",
            hint=f"bootstrappable versions: {', '.join(f'{v} ({s})' for v, s in suites().items())}; "
                 f"other versions need a registry image such as python:{version}-slim, which needs network",
        ) from None


DEBIAN_SUITES = {"bullseye", "bookworm", "trixie", "forky", "sid", "oldstable", "stable", "testing", "unstable"}


def host_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror the host's apt uses (it may be a local mirror or proxy).

    Reads ``sources.list`` and ``sources.list.d/*.list|*.sources`` (one-line and deb822
    formats) and returns the first ``deb`` URI serving a plain release suite (not
    ``-security``/``-updates``) of Debian; `DEFAULT_MIRROR` when there is none (an
    Ubuntu host, say).
    """
    files = [apt_dir / "sources.list"]
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        entries = _deb822_entries(text) if path.suffix == ".sources" else _one_line_entries(text)
        for uri, suites in entries:
            # Only a mirror of Debian itself will do: an Ubuntu host's archive has no bookworm.
            if set(suites) & DEBIAN_SUITES and "security" not in uri:
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _one_line_entries(text: str) -> Iterable[tuple[str, list[str]]]:
    for line in text.splitlines():
        words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()  # drop [arch=... signed-by=...]
        if len(words) >= 3 and words[0] == "deb":
            yield words[1], [words[2]]


def _deb822_entries(text: str) -> Iterable[tuple[str, list[str]]]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split()


def debootstrap_argv(suite: str, rootfs: Path, mirror: str, *, executable: str = "debootstrap",
                     cache_dir: Path | None = None) -> list[str]:
    """debootstrap's first stage (download and unpack) for a minimal rootfs with python3.

    The second stage runs separately so dpkg can be told to skip docs and fsyncs first.
    """
    argv = [executable, "--foreign", "--variant=minbase", "--include=python3", "--components=main"]
    if cache_dir is not None:
        argv.append(f"--cache-dir={Path(cache_dir).resolve()}")
    return argv + [suite, str(rootfs), mirror]


def containerfile(labels: dict[str, str]) -> str:
    """The Containerfile that turns ``rootfs.tar`` into the base image."""
    pairs = [f"{k}=\"{_quote(v)}\"" for k, v in sorted(labels.items())]
    label_lines = "LABEL " + " \\\n      ".join(pairs) + "\n" if pairs else ""
    return (
        "FROM scratch\n"
        "ADD rootfs.tar /\n"
        f"ENV PATH={PATH} LANG=C.UTF-8\n"
        f"{label_lines}"
        # numeric: `buildah run` then skips a passwd lookup (~30 ms a call)
        "USER 0:0\n"
        'CMD ["python3"]\n'
    )


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def bootstrap(python: str, *, buildah: Buildah, reporter: Reporter, workdir: Path | None = None,
              force: bool = False, mirror: str | None = None, cache_dir: Path | None = None,
              repository: str = BASE_REPOSITORY) -> str:
    """Make ``localhost/gardenbuild/python:X.Y`` (if absent, or ``force``); return its name.

    Takes under a minute: debootstrap from the host's Debian mirror (``cache_dir`` keeps the
    downloaded .debs for next time), trim, recompile the stdlib bytecode, commit one layer
    with ``--timestamp 0``, check that python3 runs, and only then tag. The temporary
    rootfs (in ``workdir``, default /var/tmp) is removed whether this succeeds or fails.
    """
    version = normalize_python(python)
    suite = suite_for(version)
    ref = base_ref(version, repository)
    old_id = buildah.image_id(ref)
    if old_id is not None and not force:
        reporter.info(f"{ref} already exists")
        return ref
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ToolMissingError("debootstrap is not installed", hint=DEBOOTSTRAP_HINT)
    if os.geteuid() != 0:
        raise UserError("bootstrapping a base image needs root (debootstrap and chroot)")
    mirror = (mirror or host_mirror()).rstrip("/")
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix="gardenbuild-base-", dir=workdir or "/var/tmp"))
    try:
        rootfs = tmp / "rootfs"
        exact = _debootstrap(suite, rootfs, mirror, debootstrap=debootstrap, cache_dir=cache_dir, reporter=reporter)
        if not exact.startswith(version + "."):
            raise BackendError(f"debootstrap {suite} installed Python {exact}, not {version}", ["debootstrap", suite])

        reporter.step("Trimming the root filesystem, compiling the stdlib's bytecode")
        before = _du(rootfs)
        trim(rootfs)
        _chroot_python(rootfs, _COMPILE_STDLIB)
        reporter.info(f"root filesystem: {before / 1e6:.0f} MB -> {_du(rootfs) / 1e6:.0f} MB")

        reporter.step(f"Committing {ref}")
        labels = {
            "org.opencontainers.image.title": f"gardenbuild Python {version} base",
            "org.opencontainers.image.description": f"Debian {suite} (debootstrap --variant=minbase) with python3 {exact}",
            "org.opencontainers.image.version": exact,
            "org.opencontainers.image.base.name": "scratch",
            "io.gardenbuild.base.suite": suite,
            "io.gardenbuild.base.debian-version": _read(rootfs / "etc/debian_version"),
            "io.gardenbuild.base.mirror": mirror,
            "io.gardenbuild.base.python": exact,
        }
        _unmount_below(rootfs)  # nothing debootstrap mounted may end up in the tarball
        _checked(["tar", "--numeric-owner", "--xattrs", "--sort=name", "-C", str(rootfs), "-cf",
                  str(tmp / "rootfs.tar"), "."], what="tar of the root filesystem")
        shutil.rmtree(rootfs)
        (tmp / "Containerfile").write_text(containerfile(labels))
        image_id = buildah.bud(tmp / "Containerfile", tmp, tag=None, layers=False, timestamp=0, network=None)
    finally:
        _remove_tree(tmp, reporter)

    try:
        found = python_version_in(image_id, buildah=buildah)
        if not found.startswith(version + "."):
            raise BackendError(f"the new image runs Python {found}, expected {version}", ["python3", "--version"])
    except BaseException:
        _remove_quietly(buildah, image_id)
        raise
    buildah.tag(image_id, ref)
    if old_id is not None and old_id != image_id:
        _remove_quietly(buildah, old_id)
    reporter.info(f"{ref}: Python {found}, {buildah.size(ref) / 1e6:.0f} MB")
    return ref


def _debootstrap(suite: str, rootfs: Path, mirror: str, *, debootstrap: str, cache_dir: Path | None,
                 reporter: Reporter) -> str:
    """Run both debootstrap stages into ``rootfs``; return the X.Y.Z of its python3."""
    reporter.step(f"Downloading Debian {suite} (minbase + python3) from {mirror}")
    progress = _debootstrap_progress(reporter)
    stream(debootstrap_argv(suite, rootfs, mirror, executable=debootstrap, cache_dir=cache_dir),
           reporter=reporter, what=f"debootstrap {suite}", hint=DEBOOTSTRAP_HINT, on_line=progress)
    # Before dpkg installs anything: no docs/man/locales, and no fsync per file (halves
    # the second stage; a container layer is committed as a whole anyway). Both stay in
    # the image, as in Debian's official container images.
    _write(rootfs / "etc/dpkg/dpkg.cfg.d/gardenbuild", DPKG_CONFIG)
    _write(rootfs / "etc/apt/apt.conf.d/gardenbuild", APT_CONFIG)
    reporter.step(f"Installing Debian {suite}")
    stream(["chroot", str(rootfs), "/debootstrap/debootstrap", "--second-stage"], env={"PATH": PATH, "LANG": "C.UTF-8"},
           reporter=reporter, what=f"debootstrap --second-stage {suite}", on_line=progress)
    return _chroot_python(rootfs, "import sys; print('%d.%d.%d' % sys.version_info[:3])").strip()


_COMPILE_STDLIB = """
import compileall, py_compile, sys, sysconfig
paths = [sysconfig.get_paths()["stdlib"], "/usr/lib/python3/dist-packages"]
ok = all(compileall.compile_dir(p, quiet=1, force=True,
         invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH) for p in paths)
sys.exit(0 if ok else 1)
"""


def trim(rootfs: Path) -> None:
    """Delete what a runtime image does not need; leave dpkg's database consistent enough for apt."""
    for pattern in TRIM:
        for path in rootfs.glob(pattern):
            _delete(path)
    doc = rootfs / "usr/share/doc"
    if doc.is_dir():
        for path in doc.rglob("*"):
            if path.is_file() or path.is_symlink():
                if path.name != "copyright":
                    path.unlink()
        for path in sorted(doc.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
                path.rmdir()
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def python_of_image(ref: str, *, backend: Backend) -> str:
    """The ``X.Y.Z`` of ``python3`` in image ``ref``.

    Read from the image's config where it says (the label of our bootstrapped bases,
    ``PYTHON_VERSION`` of the official python images); otherwise found by running it.
    """
    config = (backend.inspect(ref).get("OCIv1") or {}).get("config") or {}
    label = (config.get("Labels") or {}).get("io.gardenbuild.base.python")
    if label:
        return label
    for entry in config.get("Env") or []:
        if entry.startswith("PYTHON_VERSION="):
            return entry.split("=", 1)[1]
    return python_version_in(ref, buildah=backend)


def python_version_in(ref: str, *, buildah: Backend) -> str:
    """The ``X.Y.Z`` of ``python3`` in image ``ref``, found by running it."""
    result = buildah.run(ref, ["python3", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
    if result.returncode != 0:
        raise BackendError(f"python3 does not run in {ref}", ["python3", "-c", "..."],
                           result.stderr.decode("utf-8", "replace"))
    return result.stdout.decode().strip()


# --- helpers ----------------------------------------------------------------------------

def _debootstrap_progress(reporter: Reporter):
    """Turn debootstrap's ``I: Retrieving/Unpacking/Configuring ...`` lines into progress."""
    counts: dict[str, int] = {}

    def on_line(line: str) -> None:
        m = re.match(r"I: (Retrieving|Validating|Extracting|Unpacking|Configuring) ", line)
        if m:
            phase = m.group(1).lower()
            counts[phase] = counts.get(phase, 0) + 1
            reporter.progress(phase, counts[phase], None)

    return on_line


def _chroot_python(rootfs: Path, code: str) -> str:
    """Run the rootfs's own python3 (a different version than ours, possibly) in a chroot."""
    argv = ["chroot", str(rootfs), "/usr/bin/python3", "-I", "-c", code]
    proc = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, env={"PATH": PATH, "LANG": "C.UTF-8"})
    if proc.returncode != 0:
        raise BackendError("python3 failed in the bootstrapped rootfs", argv,
                           (proc.stderr or proc.stdout).decode("utf-8", "replace"))
    return proc.stdout.decode()


def _checked(argv: list[str], *, what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise BackendError(f"{what} failed", argv, (proc.stderr or proc.stdout).decode("utf-8", "replace"))


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _du(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _mounts_below(root: Path) -> list[str]:
    """Mount points at or under ``root``, deepest first (from /proc/self/mountinfo)."""
    prefix = str(root.resolve())
    found = []
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    except OSError:
        return []
    return sorted(found, key=len, reverse=True)


def _unmount_below(root: Path) -> None:
    """Unmount anything a failed debootstrap left mounted in the rootfs (/proc, /sys)."""
    for point in _mounts_below(root):
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    left = _mounts_below(root)
    if left:
        raise BackendError(f"could not unmount {', '.join(left)}", ["umount", "--lazy", *left],
                           hint="unmount them by hand, then remove the directory")


def _remove_tree(tmp: Path, reporter: Reporter) -> None:
    """Remove the work directory, never following a mount out of it; never raises."""
    if not tmp.exists():
        return
    try:
        _unmount_below(tmp)
    except BackendError as exc:
        reporter.warn(f"left {tmp} in place: {exc.message}")
        return
    shutil.rmtree(tmp, ignore_errors=True)


def _remove_quietly(buildah: Buildah, image_id: str) -> None:
    """Drop an image we no longer want (a replaced or a broken base), unless something uses it."""
    try:
        buildah.rmi(image_id)
    except BackendError:
        pass
