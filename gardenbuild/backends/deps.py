"""Resolve a garden's Python requirements on the host and cache the wheels by content.

Builds are hermetic: `resolve` asks uv for exactly one hashed wheel per package for the
*target* interpreter and platform (which need not be the host's), `WheelStore.fetch`
downloads those wheels once into a content-addressed cache, and `WheelStore.wheelhouse`
lays them out as a flat folder that the image build installs from with no network,
using the requirements file `lock_text` writes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.requirements import InvalidRequirement, Requirement

from gardenbuild.engine.store import atomic_write
from gardenbuild.errors import ResolutionError
from gardenbuild.report import Reporter

if TYPE_CHECKING:  # the network's modules load when a download needs them: not on a notebook edit
    import ssl

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "Target",
    "PinnedWheel",
    "resolve",
    "parse_pylock",
    "lock_text",
    "resolve_cache_key",
    "WheelStore",
    "find_uv",
]

# Bump when the resolve cache's JSON layout or meaning changes.
_RESOLVE_CACHE_VERSION = 1
_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# uv settings from the environment that are harmless or needed (cache, TLS, timeouts);
# every other UV_* variable could change what is resolved, so it is dropped.
_UV_ENV_KEPT = {
    "UV_CACHE_DIR",
    "UV_HTTP_TIMEOUT",
    "UV_HTTP_RETRIES",
    "UV_NATIVE_TLS",
    "UV_CONCURRENT_DOWNLOADS",
}


def normalize_name(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True, order=True)
class Target:
    """The interpreter and platform a garden image runs, which the host need not match."""

    python: str  # "3.10" .. "3.13"
    platform: str = "x86_64-manylinux_2_36"  # uv --python-platform value (Debian bookworm glibc)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"3\.\d{1,2}", self.python):
            raise ValueError(f"Target.python must look like '3.12', got {self.python!r}")

    def __str__(self) -> str:
        return f"Python {self.python} ({self.platform})"


@dataclass(frozen=True, order=True)
class PinnedWheel:
    """One wheel chosen by resolution: enough to download, verify and install it."""

    name: str  # normalized (PEP 503) name
    version: str
    filename: str
    url: str
    sha256: str
    size: int | None

    def requirement_line(self) -> str:
        return f"{self.name}=={self.version} --hash=sha256:{self.sha256}"


# --------------------------------------------------------------------------- resolve


def find_uv() -> str:
    """Path of the uv binary: the one shipped by the `uv` Python package, else PATH's."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if not found:
        raise ResolutionError("uv is not installed", hint="pip install uv")
    return found


@lru_cache(maxsize=8)
def _uv_version(uv: str) -> str:
    out = subprocess.run([uv, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def _folder_listing(folder: str) -> list[list]:
    """What a find-links folder holds (names and sizes): a new wheel in it makes a new resolution."""
    try:
        return sorted([e.name, e.stat().st_size] for e in os.scandir(folder) if e.name.endswith(".whl"))
    except OSError:
        return []


def resolve_cache_key(requirements: Sequence[str], target: Target, indexes: Sequence[str], uv_version: str,
                      constraints: Sequence[str] = (), find_links: Sequence[str] = ()) -> str:
    """Content hash naming one resolution: same inputs, same key, on any machine."""
    payload: dict = {
        "v": _RESOLVE_CACHE_VERSION,
        "requirements": sorted(r.strip() for r in requirements),
        "target": [target.python, target.platform],
        "indexes": list(indexes),  # order matters to the resolver, so it is kept
        "uv": uv_version,
    }
    if constraints:
        payload["constraints"] = sorted(constraints)
    if find_links:
        payload["find_links"] = [[f, _folder_listing(f) if "://" not in f else None] for f in find_links]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _uv_env() -> dict[str, str]:
    """The host environment minus anything that would let pip/uv configuration leak in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PIP_") and (not k.startswith("UV_") or k in _UV_ENV_KEPT)
    }
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["NO_COLOR"] = "1"
    if "SSL_CERT_FILE" not in env and os.path.exists(_CA_BUNDLE):
        env["SSL_CERT_FILE"] = _CA_BUNDLE
    return env


def _uv_compile_args(uv: str, target: Target, indexes: Sequence[str], constrained: bool = False,
                     find_links: Sequence[str] = ()) -> list[str]:
    args = [
        uv, "pip", "compile", "requirements.in",
        "--no-config",
        "--no-python-downloads",
        "--python-version", target.python,
        "--python-platform", target.platform,
        "--only-binary", ":all:",
        "--generate-hashes",
        "--format", "pylock.toml",
        "--no-header",
        "--color", "never",
    ]  # fmt: skip
    if constrained:
        args += ["--constraint", "constraints.txt"]
    for url in indexes:
        args += ["--extra-index-url", url]
    for place in find_links:
        args += ["--find-links", place]
    if indexes or find_links:
        # Extra indexes such as PyTorch's CPU index also mirror numpy & co; the default
        # first-index strategy would then take numpy only from there. Best-match picks
        # the best version across all indexes (and prefers torch's "+cpu" builds).
        args += ["--index-strategy", "unsafe-best-match"]
    return args


def _run_uv(args: list[str], cwd: Path, reporter: Reporter) -> tuple[int, str, list[str]]:
    """Run uv with stdout to a file and stderr streamed to ``reporter.log``."""
    out_path = cwd / "uv.stdout"
    err_lines: list[str] = []
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            args, cwd=cwd, env=_uv_env(), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.PIPE, text=True, errors="replace",
        )  # fmt: skip
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip("\n")
            err_lines.append(line)
            reporter.log(line)
        rc = proc.wait()
    return rc, out_path.read_text(), err_lines


def resolve(
    requirements: Sequence[str],
    target: Target,
    *,
    indexes: Sequence[str] = (),
    reporter: Reporter,
    cache_root: Path | None = None,
    constraints: Sequence[str] = (),
    find_links: Sequence[str] = (),
) -> list[PinnedWheel]:
    """Pin every requirement (and dependency) to one hashed wheel for ``target``.

    ``constraints`` (``name==version`` lines) hold packages at earlier pins without
    adding them, which keeps a lock stable when one requirement changes.

    With ``cache_root``, the answer for the same inputs (and uv version) is read from
    ``cache_root/resolve/<key>.json`` without touching the network.
    """
    requirements = [r.strip() for r in requirements if r.strip()]
    _check_requirements(requirements)
    if not requirements:
        return []
    uv = find_uv()
    cache_file = None
    if cache_root is not None:
        key = resolve_cache_key(requirements, target, indexes, _uv_version(uv), constraints, find_links)
        cache_file = Path(cache_root) / "resolve" / f"{key}.json"
        cached = _read_resolve_cache(cache_file)
        if cached is not None:
            reporter.log(f"resolution served from cache ({cache_file.name})")
            return cached

    reporter.step(f"resolving {len(requirements)} requirements for Python {target.python}")
    with tempfile.TemporaryDirectory(prefix="gardenbuild-resolve-") as tmp:
        workdir = Path(tmp)
        (workdir / "requirements.in").write_text("\n".join(requirements) + "\n")
        (workdir / "constraints.txt").write_text("".join(f"{c}\n" for c in constraints))
        rc, stdout, stderr = _run_uv(_uv_compile_args(uv, target, indexes, bool(constraints), find_links), workdir,
                                     reporter)
        if rc != 0:
            raise _resolution_error(requirements, target, indexes, stderr)
        wheels = parse_pylock(stdout, base=workdir, target=target)

    if cache_file is not None:
        entry = {
            "requirements": sorted(requirements),
            "target": asdict(target),
            "indexes": list(indexes),
            "wheels": [asdict(w) for w in wheels],
        }
        atomic_write(cache_file, (json.dumps(entry, indent=1, sort_keys=True) + "\n").encode())
    return wheels


def _check_requirements(requirements: Sequence[str]) -> None:
    bad = []
    for req in requirements:
        try:
            Requirement(req)
        except InvalidRequirement as exc:
            bad.append(f"  {req!r}: {exc}")
    if bad:
        raise ResolutionError(
            "invalid requirement" + ("s" if len(bad) > 1 else "") + ":\n" + "\n".join(bad),
            hint="write requirements as PEP 508 specifiers, e.g. 'scikit-learn>=1.4'",
        )


def target_tags(target: Target) -> list[str]:
    """Wheel tags the target interpreter accepts, most preferred first (as pip would rank them)."""
    from packaging import tags

    major, minor = (int(x) for x in target.python.split("."))
    arch = target.platform.split("-", 1)[0]
    glibc = target.platform.rsplit("_", 2)
    top = int(glibc[-1]) if len(glibc) == 3 and glibc[-1].isdigit() else 17
    platforms = [f"manylinux_2_{v}_{arch}" for v in range(top, 4, -1)]
    platforms += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}", f"linux_{arch}"]
    found = list(tags.cpython_tags((major, minor), platforms=platforms))
    found += list(tags.compatible_tags((major, minor), f"cp{major}{minor}", platforms))
    return [str(t) for t in found]


def _best_wheel(entries: list[dict], target: Target | None) -> dict | None:
    """The entry whose filename tags rank highest for the target; None if none fits."""
    if len(entries) == 1 or target is None:
        return entries[0] if len(entries) == 1 else None
    from packaging.utils import parse_wheel_filename

    rank = {tag: i for i, tag in enumerate(target_tags(target))}

    def score(entry: dict) -> int:
        name = entry.get("name") or urllib.parse.unquote(entry.get("url", entry.get("path", "")).rsplit("/", 1)[-1])
        try:
            return min(rank.get(str(t), len(rank)) for t in parse_wheel_filename(name)[3])
        except ValueError:
            return len(rank)

    best = min(entries, key=score)
    return best if score(best) < len(rank) else None


def parse_pylock(text: str, base: Path | None = None, target: Target | None = None) -> list[PinnedWheel]:
    """Read uv's PEP 751 ``pylock.toml`` into wheels sorted by name.

    ``base`` resolves a wheel given by relative ``path`` (lock-file relative) to a URL.
    uv lists every wheel of the chosen version that fits the target (say both a
    manylinux2014 and a manylinux_2_28 build); `target` picks the one pip would.
    """
    data = tomllib.loads(text)
    wheels = []
    for pkg in data.get("packages", []):
        name = normalize_name(pkg["name"])
        entries = pkg.get("wheels") or []
        archive = pkg.get("archive")  # a direct reference: `torch @ file:///.../torch-...whl`
        if not entries and archive and str(archive.get("url", archive.get("path", ""))).endswith(".whl"):
            entries = [archive]
        entry = _best_wheel(entries, target) if entries else None
        if entry is None:
            kind = "no wheel" if not entries else f"{len(entries)} wheels and none fits the target"
            raise ResolutionError(
                f"resolution gave {kind} for {name} {pkg.get('version', '')}".rstrip(),
                hint="require it from a package index as a released version, not a path or URL",
            )
        if "url" in entry:
            url = entry["url"]
        else:
            path = Path(entry["path"])
            url = (path if path.is_absolute() else (base or Path.cwd()) / path).resolve().as_uri()
        filename = entry.get("name") or urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        sha256 = entry.get("hashes", {}).get("sha256")
        if not sha256:
            raise ResolutionError(f"resolution gave no sha256 for {filename}", hint="use an index that publishes hashes")
        size = entry.get("size")
        if size is None and url.startswith("file://"):
            try:
                size = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).stat().st_size
            except OSError:
                size = None
        wheels.append(
            PinnedWheel(
                name=name,
                version=str(pkg["version"]),
                filename=filename,
                url=url,
                sha256=sha256.lower(),
                size=size,
            )
        )
    return sorted(wheels)


def _read_resolve_cache(path: Path) -> list[PinnedWheel] | None:
    try:
        data = json.loads(path.read_text())
        return sorted(PinnedWheel(**w) for w in data["wheels"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):  # damaged entry: resolve again, overwrite it
        return None


# uv's explanation, condensed: drop its warnings (with their cause lines), the generic
# headline, and the "error:/cause:/hint:" labels.
_WARNING = re.compile(r"^warning: ")
_HEADLINE = re.compile(r"^error: No solution found when resolving dependencies")


def _condense(stderr: Sequence[str]) -> list[str]:
    lines: list[str] = []
    in_warning = False
    for raw in stderr:
        if not raw.strip():
            continue
        if raw[0] not in " \t":  # a new top-level message
            in_warning = bool(_WARNING.match(raw))
            if _HEADLINE.match(raw):
                continue
        if in_warning:
            continue
        text = raw.strip()
        for prefix in ("error: ", "cause: ", "hint: "):
            if text.startswith(prefix):
                text = text[len(prefix):]
        if text not in lines:
            lines.append(text)
    return lines


def _resolution_error(
    requirements: Sequence[str], target: Target, indexes: Sequence[str], stderr: Sequence[str]
) -> ResolutionError:
    detail = _condense(stderr)
    text = "\n".join(detail)
    named = [r for r in requirements if _mentions(text, Requirement(r).name)]
    shown = named or list(requirements)
    what = ", ".join(shown) if len(shown) <= 6 else ", ".join(shown[:6]) + f" (+{len(shown) - 6} more)"
    message = f"cannot resolve {what} for {target}"
    if detail:
        message += ":\n" + "\n".join(f"  {line}" for line in detail)

    first = Requirement(shown[0]).name if shown else "it"
    low = text.lower()
    if "failed to fetch" in low or "request failed" in low or "error sending request" in low:
        where = ", ".join(["https://pypi.org/simple", *indexes])
        hint = f"check that the package index is reachable from this machine ({where})"
    elif "not found in the package registry" in low:
        hint = f"check the spelling of {first} on PyPI, or pass the index that hosts it"
    elif "no wheels" in low or "no usable wheels" in low or "only found wheels" in low:
        hint = f"pin a version of {first} that ships a wheel for Python {target.python} on {target.platform}, or drop it"
    elif "unsatisfiable" in low:
        hint = "relax one of the conflicting version pins"
    else:
        hint = "run with --verbose to see uv's full output"
    return ResolutionError(message, hint)


def _mentions(text: str, name: str) -> bool:
    spellings = {name, normalize_name(name), normalize_name(name).replace("-", "_")}
    return any(re.search(rf"(?<![\w.-]){re.escape(s)}(?![\w-])", text, re.IGNORECASE) for s in spellings)


# --------------------------------------------------------------------------- lock


def lock_text(wheels: Sequence[PinnedWheel]) -> str:
    """A hashed requirements file for ``uv pip install --require-hashes --no-deps --no-index``."""
    return "".join(w.requirement_line() + "\n" for w in sorted(wheels))


# --------------------------------------------------------------------------- store


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _ssl_context() -> ssl.SSLContext:
    """Verify TLS with the host CA bundle, as the host's pip is configured to."""
    import ssl

    cafile = os.environ.get("SSL_CERT_FILE") or (_CA_BUNDLE if os.path.exists(_CA_BUNDLE) else None)
    return ssl.create_default_context(cafile=cafile)


def _human(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


class WheelStore:
    """Content-addressed wheel cache: ROOT/wheels/sha256/<aa>/<full-hex>/<filename>"""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, wheel: PinnedWheel) -> Path:
        h = wheel.sha256
        return self.root / "wheels" / "sha256" / h[:2] / h / wheel.filename

    def has(self, wheel: PinnedWheel) -> bool:
        return self.path_for(wheel).is_file()

    def modules(self, wheel: PinnedWheel) -> set[str] | None:
        """The top-level modules a wheel installs (read from its file list, remembered per
        sha256); None when the wheel is not in the store."""
        memo = self.root / "modules" / f"{wheel.sha256}.json"
        try:
            return set(json.loads(memo.read_text()))
        except (FileNotFoundError, ValueError):
            pass
        path = self.path_for(wheel)
        if not path.is_file():
            return None
        import zipfile

        found = set()
        try:
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    first = name.split("/", 1)[0]
                    if first.endswith((".dist-info", ".data")) or first.endswith(".libs"):
                        continue
                    found.add(first.split(".", 1)[0] if "/" not in name else first)
        except zipfile.BadZipFile:
            return set()  # a .deb, or no wheel at all: it installs no Python module
        atomic_write(memo, json.dumps(sorted(found)).encode())
        return found

    def stored(self) -> list[tuple[str, Path]]:
        """(sha256, path) of every file held: wheels, and the .debs of system packages.

        Only complete entries: a download in progress is a hidden temporary file."""
        return [(p.parent.name, p) for p in sorted((self.root / "wheels" / "sha256").glob("*/*/*"))
                if p.is_file() and not p.name.startswith(".")]

    def fetch(self, wheels: Sequence[PinnedWheel], reporter: Reporter, *, jobs: int = 8) -> list[Path]:
        """Make every wheel present in the store; return their paths in input order.

        Cache hits touch no network. A download lands under a temporary name next to its
        final place and is renamed only once its sha256 matches, so an interrupted fetch
        never leaves a partial entry.
        """
        missing = list({w.sha256: w for w in wheels if not self.has(w)}.values())
        cached = len({w.sha256 for w in wheels}) - len(missing)
        if missing:
            sizes = [w.size for w in missing]
            total = None if None in sizes else sum(sizes)  # type: ignore[arg-type]
            counter = _Progress(reporter, "downloading", total)
            from concurrent.futures import ThreadPoolExecutor

            context = _ssl_context()
            with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(missing)))) as pool:
                futures = [pool.submit(self._download, w, context, counter) for w in missing]
            errors = [f.exception() for f in futures if f.exception() is not None]
            if errors:
                raise errors[0]  # type: ignore[misc]
            counter.finish()
            reporter.info(f"fetched {len(missing)} wheel{'s' if len(missing) != 1 else ''} "
                          f"({_human(counter.done)}), {cached} from cache")  # fmt: skip
        else:
            reporter.info(f"all {cached} wheel{'s' if cached != 1 else ''} served from cache")
        return [self.path_for(w) for w in wheels]

    def _download(self, wheel: PinnedWheel, context: ssl.SSLContext, counter: _Progress) -> None:
        """Download one file into its place, retrying what the network lost on the way.

        The partial file is held under an exclusive flock while it is written, so a
        sweep (`sweep_partial`) tells a download in progress from one a killed process
        left behind.
        """
        final = self.path_for(wheel)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{wheel.filename}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with os.fdopen(fd, "wb") as out:
                for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
                    out.seek(0)
                    out.truncate()
                    try:
                        got = _fetch_once(wheel, context, counter, out)
                        break
                    except _Transient as exc:
                        if attempt == DOWNLOAD_ATTEMPTS:
                            raise ResolutionError(
                                f"cannot download {wheel.filename} from {wheel.url}: {exc} "
                                f"({DOWNLOAD_ATTEMPTS} attempts)",
                                hint="check the network connection to the package index and try again",
                            ) from None
                        time.sleep(RETRY_SECONDS * attempt)
                out.flush()
                if got != wheel.sha256:
                    raise ResolutionError(
                        f"sha256 mismatch for {wheel.filename}: expected {wheel.sha256}, got {got}",
                        hint="the index served a different file than it listed; resolve again, "
                        "and distrust the index or proxy if it persists",
                    )
                tmp.chmod(0o444)  # cache entries are shared via hard links: keep them intact
                os.replace(tmp, final)
        except BaseException:
            _unlink(tmp)
            raise

    def wheelhouse(self, wheels: Iterable[PinnedWheel], dest: Path) -> Path:
        """Fill ``dest`` with exactly these wheels (hard links, copies across devices).

        Other ``*.whl`` files in ``dest`` are removed, so the folder is a function of the
        wheel list and can be mounted as a ``--find-links`` dir.
        """
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        wanted = {}
        for w in wheels:
            src = self.path_for(w)
            if not src.is_file():
                raise ResolutionError(f"{w.filename} is not in the wheel store", hint="fetch the wheels first")
            wanted[w.filename] = src
        for old in dest.glob("*.whl"):
            if old.name not in wanted:
                old.unlink()
        for name, src in sorted(wanted.items()):
            link = dest / name
            if link.exists():
                if link.samefile(src) or _same_content(link, src):
                    continue
                link.unlink()
            try:
                os.link(src, link)
            except OSError:  # another filesystem (EXDEV) or no hard links there
                shutil.copyfile(src, link)
        return dest


DOWNLOAD_ATTEMPTS = 3
RETRY_SECONDS = 1.0


class _Transient(Exception):
    """A download failure worth another try: the network, not the file, went wrong."""


def _fetch_once(wheel: PinnedWheel, context: ssl.SSLContext, counter: _Progress, out: Any) -> str:
    """One attempt: stream the URL into `out`; return the sha256 of what arrived."""
    import http.client
    import urllib.error
    import urllib.request

    digest = hashlib.sha256()
    received = 0
    request = urllib.request.Request(wheel.url, headers={"User-Agent": "gardenbuild"})
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as resp:
            declared = resp.headers.get("Content-Length")
            while chunk := resp.read(1 << 16):
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
                counter.add(len(chunk))
            # http.client ends a body cut short silently; say so, not "sha256 mismatch"
            if declared and declared.isdigit() and received < int(declared):
                raise OSError(f"connection closed after {received} of {declared} bytes")
    except urllib.error.HTTPError as exc:
        counter.add(-received)
        if exc.code >= 500 or exc.code == 429:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise ResolutionError(f"cannot download {wheel.filename} from {wheel.url}: HTTP {exc.code} {exc.reason}",
                              hint="the index no longer serves this file; resolve again (gardenbuild lock --upgrade)"
                              ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        counter.add(-received)
        raise _Transient(str(getattr(exc, "reason", None) or exc)) from None
    return digest.hexdigest()


def sweep_partial(root: Path) -> int:
    """Remove the partial downloads killed processes left under `root`; return bytes freed.

    A download in progress holds its file's flock, so it is never taken for a leftover.
    """
    freed = 0
    for part in Path(root).glob("wheels/sha256/*/*/.*.part"):
        try:
            fd = os.open(part, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            freed += part.stat().st_size
            part.unlink()
        except (BlockingIOError, FileNotFoundError):
            pass  # its writer is alive, or it finished meanwhile
        finally:
            os.close(fd)
    return freed


def _same_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    return hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


class _Progress:
    """Thread-safe byte counter feeding ``reporter.progress`` (reporters are not thread-safe)."""

    def __init__(self, reporter: Reporter, label: str, total: int | None) -> None:
        self.reporter, self.label, self.total = reporter, label, total
        self.done = 0
        self._lock = threading.Lock()
        self._last = -1

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            # report about every 1 MB, not every 64 kB chunk
            if self.done - self._last >= 1 << 20:
                self._last = self.done
                self.reporter.progress(self.label, self.done, self.total)

    def finish(self) -> None:
        with self._lock:
            if self._last != self.done:
                self.reporter.progress(self.label, self.done, self.total)
