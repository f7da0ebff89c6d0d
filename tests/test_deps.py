"""Tests for gardenbuild.backends.deps: pinning wheels for a target Python and caching them by hash.

Unit tests need no network (file:// URLs and a loopback http.server stand in for an
index). Tests marked ``integration`` resolve and download from PyPI for real.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.request
import zipfile
from pathlib import Path

import pytest

from gardenbuild.backends import deps
from gardenbuild.backends.deps import PinnedWheel, Target, WheelStore, lock_text, parse_pylock, resolve, resolve_cache_key
from gardenbuild.errors import ResolutionError
from gardenbuild.report import RecordingReporter

PYLOCK = """\
lock-version = "1.0"
created-by = "uv"
requires-python = ">=3.10"

[[packages]]
name = "Scikit_Learn"
version = "1.7.2"
wheels = [{ url = "https://files.pythonhosted.org/packages/58/0e/8c/scikit_learn-1.7.2-cp310-cp310-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", upload-time = 2025-09-09T08:20:24Z, size = 9660938, hashes = { sha256 = "7A58814265DFC52B3295B1900CFB5701589D30A8BB026C7540F1E9D3499D5EC8" } }]

[[packages]]
name = "dill"
version = "0.4.1"
wheels = [{ url = "https://files.pythonhosted.org/packages/1e/77/dc/dill-0.4.1-py3-none-any.whl", upload-time = 2026-01-19T02:36:55Z, size = 120019, hashes = { sha256 = "1e1ce33e978ae97fcfcff5638477032b801c46c7c65cf717f95fbc2248f79a9d" } }]

[[packages]]
name = "gbtest-pkg"
version = "0.1"
wheels = [{ url = "file:///tmp/idx/files/gbtest_pkg-0.1-py3-none-any.whl", hashes = { sha256 = "4814d670ee0bfec777475312775624a66cc015a4c9a78ddf4df38e5381b5fbd6" } }]
"""

# What uv 0.13 prints for `tensorflow==2.4.0` and a Python 3.12 target.
UV_NO_WHEEL = """\
warning: The requested Python version 3.12 is not available; 3.11.7 will be used to build dependencies instead.
error: No solution found when resolving dependencies
  cause: Because tensorflow==2.4.0 has no wheels with a matching Python ABI tag (e.g., `cp312`) and you require tensorflow==2.4.0, we can conclude that your requirements are unsatisfiable.

hint: You require CPython 3.12 (`cp312`), but we only found wheels for `tensorflow` (v2.4.0) with the following Python ABI tags: `cp36m`, `cp37m`, `cp38`
""".splitlines()


def make_wheel(directory: Path, name: str = "gbtest_pkg", version: str = "0.1") -> Path:
    """A minimal valid pure-Python wheel, so tests need no index to have something to fetch."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "VALUE = 42\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: gardenbuild-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    path = directory / f"{name}-{version}-py3-none-any.whl"
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, text in files.items():
            zf.writestr(zipfile.ZipInfo(arcname, (1980, 1, 1, 0, 0, 0)), text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{arcname},sha256={digest},{len(text)}")
        record.append(f"{dist}/RECORD,,")
        zf.writestr(zipfile.ZipInfo(f"{dist}/RECORD", (1980, 1, 1, 0, 0, 0)), "\n".join(record) + "\n")
    return path


def pinned(path: Path, url: str | None = None, sha256: str | None = None, name: str = "gbtest-pkg") -> PinnedWheel:
    data = path.read_bytes()
    return PinnedWheel(
        name=name,
        version="0.1",
        filename=path.name,
        url=url or path.as_uri(),
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


# ---------------------------------------------------------------- pure parts


def test_parse_pylock_normalizes_and_sorts():
    wheels = parse_pylock(PYLOCK)
    assert [w.name for w in wheels] == ["dill", "gbtest-pkg", "scikit-learn"]
    sk = wheels[2]
    assert sk.version == "1.7.2"
    assert sk.filename == "scikit_learn-1.7.2-cp310-cp310-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
    assert sk.sha256 == "7a58814265dfc52b3295b1900cfb5701589d30a8bb026c7540f1e9d3499d5ec8"
    assert sk.size == 9660938
    local = wheels[1]
    assert local.url.startswith("file:///") and local.size is None


def test_parse_pylock_path_entry_becomes_file_url(tmp_path):
    text = '[[packages]]\nname = "x"\nversion = "1"\nwheels = [{ path = "w/x-1-py3-none-any.whl", hashes = { sha256 = "ab" } }]\n'
    (wheel,) = parse_pylock(text, base=tmp_path)
    assert wheel.url == (tmp_path / "w" / "x-1-py3-none-any.whl").as_uri()
    assert wheel.filename == "x-1-py3-none-any.whl"


def test_parse_pylock_rejects_sdist_only_package():
    text = '[[packages]]\nname = "x"\nversion = "1"\nsdist = { url = "https://e/x-1.tar.gz", hashes = { sha256 = "ab" } }\n'
    with pytest.raises(ResolutionError, match="no wheel for x 1"):
        parse_pylock(text)


def test_lock_text_is_sorted_and_hashed():
    wheels = parse_pylock(PYLOCK)
    text = lock_text(list(reversed(wheels)))
    assert text == lock_text(wheels)
    lines = text.splitlines()
    assert [line.split("==")[0] for line in lines] == ["dill", "gbtest-pkg", "scikit-learn"]
    assert lines[0] == "dill==0.4.1 --hash=sha256:1e1ce33e978ae97fcfcff5638477032b801c46c7c65cf717f95fbc2248f79a9d"
    assert text.endswith("\n")
    assert lock_text([]) == ""


def test_cache_key_is_stable_and_content_based():
    t = Target("3.10")
    key = resolve_cache_key(["scikit-learn", "dill"], t, [], "uv 0.13.9")
    # Pinned literally: a change here silently invalidates every user's resolve cache.
    assert key == "a1713013210d2df658d5b7f194d0c3f5eb14b82015481f112a1095b9b14da8ee"
    assert key == resolve_cache_key([" dill", "scikit-learn "], t, (), "uv 0.13.9")
    assert key != resolve_cache_key(["scikit-learn", "dill"], Target("3.12"), [], "uv 0.13.9")
    assert key != resolve_cache_key(["scikit-learn", "dill"], Target("3.10", "aarch64-manylinux_2_36"), [], "uv 0.13.9")
    assert key != resolve_cache_key(["scikit-learn", "dill"], t, ["https://example.invalid/simple"], "uv 0.13.9")
    assert key != resolve_cache_key(["scikit-learn", "dill"], t, [], "uv 0.14.0")
    assert key != resolve_cache_key(["scikit-learn==1.7.2", "dill"], t, [], "uv 0.13.9")


def test_target_validates_python_version():
    assert str(Target("3.12")) == "Python 3.12 (x86_64-manylinux_2_36)"
    with pytest.raises(ValueError):
        Target("python3.12")


def test_uv_env_drops_host_index_configuration(monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "file:///opt/pypi/simple")
    monkeypatch.setenv("UV_INDEX_URL", "https://evil.invalid/simple")
    monkeypatch.setenv("UV_EXTRA_INDEX_URL", "https://evil.invalid/simple")
    monkeypatch.setenv("UV_CACHE_DIR", "/tmp/uvcache")
    env = deps._uv_env()
    assert not any(k.startswith("PIP_") for k in env)
    assert "UV_INDEX_URL" not in env and "UV_EXTRA_INDEX_URL" not in env
    assert env["UV_CACHE_DIR"] == "/tmp/uvcache"
    assert env["UV_PYTHON_DOWNLOADS"] == "never"


def test_uv_args_pin_target_and_isolate_config():
    args = deps._uv_compile_args("uv", Target("3.10"), [])
    joined = " ".join(args)
    for part in ("--no-config", "--python-version 3.10", "--python-platform x86_64-manylinux_2_36",
                 "--only-binary :all:", "--generate-hashes", "--format pylock.toml"):  # fmt: skip
        assert part in joined
    assert "--index-strategy" not in args
    args = deps._uv_compile_args("uv", Target("3.10"), ["https://download.pytorch.org/whl/cpu"])
    assert args[args.index("--extra-index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert args[args.index("--index-strategy") + 1] == "unsafe-best-match"


def test_resolve_failure_is_condensed_with_requirement_and_hint(monkeypatch):
    monkeypatch.setattr(deps, "_run_uv", lambda args, cwd, reporter: (1, "", UV_NO_WHEEL))
    with pytest.raises(ResolutionError) as info:
        resolve(["tensorflow==2.4.0", "dill"], Target("3.12"), reporter=RecordingReporter())
    err = info.value
    assert err.message.startswith("cannot resolve tensorflow==2.4.0 for Python 3.12 (x86_64-manylinux_2_36):")
    assert "dill" not in err.message.splitlines()[0]
    assert "warning:" not in err.message and "No solution found" not in err.message
    assert "has no wheels with a matching Python ABI tag" in err.message
    assert "cp36m" in err.message  # uv's own hint is kept as detail
    assert err.hint == "pin a version of tensorflow that ships a wheel for Python 3.12 on x86_64-manylinux_2_36, or drop it"


def test_invalid_requirement_is_reported_before_running_uv(monkeypatch):
    monkeypatch.setattr(deps, "_run_uv", lambda *a: pytest.fail("uv must not run"))
    with pytest.raises(ResolutionError, match="invalid requirements") as info:
        resolve(["dill>>1", "numpy>=", "scipy"], Target("3.11"), reporter=RecordingReporter())
    assert "dill>>1" in info.value.message and "numpy>=" in info.value.message
    assert resolve([" ", ""], Target("3.11"), reporter=RecordingReporter()) == []


def test_resolve_is_served_from_cache_without_uv(monkeypatch, tmp_path):
    wheels = parse_pylock(PYLOCK)
    calls = []

    def fake_uv(args, cwd, reporter):
        calls.append(args)
        return 0, PYLOCK, ["Resolved 3 packages in 1ms"]

    monkeypatch.setattr(deps, "_run_uv", fake_uv)
    first = RecordingReporter()
    assert resolve(["scikit-learn", "dill", "gbtest-pkg"], Target("3.10"), reporter=first, cache_root=tmp_path) == wheels
    assert first.messages("step") == ["resolving 3 requirements for Python 3.10"]
    (entry,) = (tmp_path / "resolve").iterdir()
    assert json.loads(entry.read_text())["target"] == {"python": "3.10", "platform": "x86_64-manylinux_2_36"}

    second = RecordingReporter()
    assert resolve(["dill", "gbtest-pkg", "scikit-learn"], Target("3.10"), reporter=second, cache_root=tmp_path) == wheels
    assert len(calls) == 1
    assert second.messages("step") == []
    assert any("resolution served from cache" in m for m in second.messages("log"))
    assert not [p for p in (tmp_path / "resolve").iterdir() if p.suffix != ".json"]  # no temp files left

    entry.write_text("{ damaged")  # a damaged entry is resolved again, not trusted
    assert resolve(["dill", "gbtest-pkg", "scikit-learn"], Target("3.10"), reporter=second, cache_root=tmp_path) == wheels
    assert len(calls) == 2


# ---------------------------------------------------------------- the wheel store


def test_fetch_file_url_then_serves_from_cache(tmp_path):
    wheel = pinned(make_wheel(tmp_path / "src"))
    store = WheelStore(tmp_path / "store")
    rep = RecordingReporter()
    (path,) = store.fetch([wheel], rep)
    assert path == tmp_path / "store" / "wheels" / "sha256" / wheel.sha256[:2] / wheel.sha256 / wheel.filename
    assert hashlib.sha256(path.read_bytes()).hexdigest() == wheel.sha256
    assert store.has(wheel)
    assert rep.messages("info") == [f"fetched 1 wheel ({wheel.size / 1e3:.1f} kB), 0 from cache"]
    assert rep.messages("progress")[-1] == f"downloading {wheel.size}/{wheel.size}"

    (tmp_path / "src" / wheel.filename).unlink()  # a cache hit must not even look at the URL
    again = RecordingReporter()
    assert store.fetch([wheel, wheel], again) == [path, path]
    assert again.messages("progress") == []
    assert again.messages("info") == ["all 1 wheel served from cache"]


def test_sha_mismatch_names_file_and_hashes_and_leaves_nothing(tmp_path):
    src = make_wheel(tmp_path / "src")
    real = hashlib.sha256(src.read_bytes()).hexdigest()
    wrong = "0" * 64
    wheel = pinned(src, sha256=wrong)
    store = WheelStore(tmp_path / "store")
    with pytest.raises(ResolutionError) as info:
        store.fetch([wheel], RecordingReporter())
    assert src.name in info.value.message and wrong in info.value.message and real in info.value.message
    assert not store.has(wheel)
    assert list(store.path_for(wheel).parent.iterdir()) == []  # the temp file is gone too


class _Handler(http.server.SimpleHTTPRequestHandler):
    flaky: dict[str, int] = {}  # path -> how many more requests for it fail with a 503

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        if self.flaky.get(self.path, 0) > 0:
            self.flaky[self.path] -= 1
            self.send_error(503, "try again")
            return
        if self.path.startswith("/truncated/"):
            # Promise 100 kB, send 10 kB, hang up: a download killed half-way.
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 10_000)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def http_root(tmp_path):
    """A loopback HTTP server serving a temp folder; stopped at the end of the test."""
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **kw: _Handler(*a, directory=str(root), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_over_http_in_parallel(tmp_path, http_root):
    root, base = http_root
    wheels = []
    for i in range(5):
        path = make_wheel(root, name=f"pkg{i}")
        wheels.append(pinned(path, url=f"{base}/{path.name}", name=f"pkg{i}"))
    store = WheelStore(tmp_path / "store")
    rep = RecordingReporter()
    paths = store.fetch(wheels, rep, jobs=3)
    assert [p.name for p in paths] == [w.filename for w in wheels]
    assert all(store.has(w) for w in wheels)
    assert rep.messages("info")[0].startswith("fetched 5 wheels (")
    assert rep.messages("info")[0].endswith(", 0 from cache")


def test_http_errors_become_resolution_errors(tmp_path, http_root):
    root, base = http_root
    store = WheelStore(tmp_path / "store")
    missing = PinnedWheel("gone", "1", "gone-1-py3-none-any.whl", f"{base}/gone-1-py3-none-any.whl", "a" * 64, 10)
    with pytest.raises(ResolutionError, match="cannot download gone-1-py3-none-any.whl") as info:
        store.fetch([missing], RecordingReporter())
    assert "HTTP 404" in info.value.message

    cut = PinnedWheel("cut", "1", "cut-1-py3-none-any.whl", f"{base}/truncated/cut-1-py3-none-any.whl", "b" * 64, 100_000)
    with pytest.raises(ResolutionError, match="cannot download cut-1-py3-none-any.whl") as info:
        store.fetch([cut], RecordingReporter())
    assert "connection closed after 10000 of 100000 bytes (3 attempts)" in info.value.message
    assert not store.path_for(cut).exists()
    assert list(store.path_for(cut).parent.iterdir()) == []


def test_a_download_the_network_drops_is_tried_again(tmp_path, http_root, monkeypatch):
    monkeypatch.setattr(deps, "RETRY_SECONDS", 0.01)
    root, base = http_root
    path = make_wheel(root, name="flaky")
    wheel = pinned(path, url=f"{base}/{path.name}", name="flaky")
    _Handler.flaky[f"/{path.name}"] = 2  # two 503s, then the file
    store = WheelStore(tmp_path / "store")
    store.fetch([wheel], RecordingReporter())
    assert store.path_for(wheel).read_bytes() == path.read_bytes()
    assert _Handler.flaky[f"/{path.name}"] == 0


def test_partial_downloads_of_dead_processes_are_swept_live_ones_kept(tmp_path):
    import fcntl

    folder = tmp_path / "wheels" / "sha256" / "ab" / ("ab" * 32)
    folder.mkdir(parents=True)
    dead, live = folder / ".x.whl.1.part", folder / ".y.whl.2.part"
    dead.write_bytes(b"d" * 100)
    live.write_bytes(b"l" * 50)
    with live.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a download in progress holds it
        assert deps.sweep_partial(tmp_path) == 100
    assert not dead.exists() and live.exists()


def test_wheelhouse_links_exactly_the_wheels(tmp_path):
    a = pinned(make_wheel(tmp_path / "src", name="aaa"), name="aaa")
    b = pinned(make_wheel(tmp_path / "src", name="bbb"), name="bbb")
    store = WheelStore(tmp_path / "store")
    store.fetch([a, b], RecordingReporter())
    dest = tmp_path / "house"
    dest.mkdir()
    (dest / "stale-1-py3-none-any.whl").write_text("old")
    assert store.wheelhouse([b, a], dest) == dest
    assert sorted(p.name for p in dest.iterdir()) == [a.filename, b.filename]
    assert os.path.samefile(dest / a.filename, store.path_for(a))  # a hard link, not a copy
    store.wheelhouse([a], dest)  # idempotent, and drops what is no longer wanted
    assert [p.name for p in dest.iterdir()] == [a.filename]

    ghost = PinnedWheel("ghost", "1", "ghost-1-py3-none-any.whl", "file:///nowhere", "c" * 64, 1)
    with pytest.raises(ResolutionError, match="not in the wheel store"):
        store.wheelhouse([ghost], dest)


def test_wheelhouse_copies_across_devices(tmp_path, monkeypatch):
    wheel = pinned(make_wheel(tmp_path / "src"))
    store = WheelStore(tmp_path / "store")
    store.fetch([wheel], RecordingReporter())

    def cross_device(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(deps.os, "link", cross_device)
    dest = store.wheelhouse([wheel], tmp_path / "house")
    copy = dest / wheel.filename
    assert not os.path.samefile(copy, store.path_for(wheel))
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == wheel.sha256


# ---------------------------------------------------------------- against PyPI


@pytest.fixture(scope="session")
def pypi_cache(tmp_path_factory):
    """One cache root shared by the integration tests, so each wheel is downloaded once."""
    return tmp_path_factory.mktemp("garden-cache")


@pytest.mark.integration
@pytest.mark.parametrize("python", ["3.10", "3.12"])
def test_resolve_for_other_pythons_than_the_host(python, pypi_cache):
    rep = RecordingReporter()
    wheels = resolve(["scikit-learn", "dill"], Target(python), reporter=rep, cache_root=pypi_cache)
    by_name = {w.name: w for w in wheels}
    assert {"scikit-learn", "dill", "numpy", "scipy", "joblib", "threadpoolctl"} <= set(by_name)
    tag = "cp" + python.replace(".", "")
    for name in ("scikit-learn", "numpy", "scipy"):
        assert f"-{tag}-{tag}-" in by_name[name].filename and "manylinux" in by_name[name].filename
    for w in wheels:
        assert len(w.sha256) == 64 and w.url.startswith("https://") and w.filename.endswith(".whl")
    assert wheels == sorted(wheels)
    assert rep.messages("step") == [f"resolving 2 requirements for Python {python}"]
    assert any("Resolved" in line for line in rep.messages("log"))  # uv's stderr was streamed


@pytest.mark.integration
def test_fetch_from_pypi_then_fully_from_cache(pypi_cache, monkeypatch):
    wheels = resolve(["scikit-learn", "dill"], Target("3.12"), reporter=RecordingReporter(), cache_root=pypi_cache)
    store = WheelStore(pypi_cache)
    rep = RecordingReporter()
    paths = store.fetch(wheels, rep)
    assert all(p.is_file() and p.name == w.filename for p, w in zip(paths, wheels))
    assert rep.messages("progress"), "a cold fetch reports download progress"

    def no_network(*args, **kwargs):
        raise AssertionError("a warm fetch must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    again = RecordingReporter()
    assert store.fetch(wheels, again) == paths
    assert again.messages("progress") == []
    assert again.messages("info") == [f"all {len(wheels)} wheels served from cache"]


@pytest.mark.integration
def test_second_resolve_is_served_from_cache(pypi_cache, monkeypatch):
    first = resolve(["dill"], Target("3.11"), reporter=RecordingReporter(), cache_root=pypi_cache)
    monkeypatch.setattr(deps, "_run_uv", lambda *a: pytest.fail("uv must not run again"))
    rep = RecordingReporter()
    assert resolve(["dill"], Target("3.11"), reporter=rep, cache_root=pypi_cache) == first
    assert "resolution served from cache" in " ".join(rep.messages("log"))


@pytest.mark.integration
@pytest.mark.parametrize(
    "requirement, hint_part",
    [
        ("tensorflow==2.4.0", "ships a wheel for Python 3.12"),
        ("gardenbuild-no-such-package-xyzzy", "check the spelling"),
    ],
)
def test_impossible_requirement_is_named(requirement, hint_part, tmp_path):
    with pytest.raises(ResolutionError) as info:
        resolve([requirement, "dill"], Target("3.12"), reporter=RecordingReporter(), cache_root=tmp_path)
    err = info.value
    assert err.message.startswith(f"cannot resolve {requirement} for Python 3.12")
    assert "Traceback" not in err.message
    assert hint_part in err.hint
    assert not (tmp_path / "resolve").exists() or not any((tmp_path / "resolve").iterdir())  # failures are not cached


@pytest.mark.integration
def test_conflicting_pins_are_named(tmp_path):
    with pytest.raises(ResolutionError) as info:
        resolve(["scikit-learn==1.5.0", "numpy<1.19"], Target("3.12"), reporter=RecordingReporter())
    assert "scikit-learn==1.5.0" in info.value.message and "numpy<1.19" in info.value.message
    assert info.value.hint == "relax one of the conflicting version pins"


@pytest.mark.integration
def test_unreachable_index_is_reported(monkeypatch):
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    with pytest.raises(ResolutionError) as info:
        resolve(
            ["gardenbuild-no-such-package-xyzzy"],
            Target("3.12"),
            indexes=["http://127.0.0.1:9/simple"],  # the discard port: nothing listens there
            reporter=RecordingReporter(),
        )
    assert "127.0.0.1:9" in info.value.message
    assert "reachable" in info.value.hint


@pytest.mark.integration
def test_extra_index_wheel_installs_offline_from_wheelhouse(tmp_path, pypi_cache):
    """The whole contract: resolve with an extra index, fetch, wheelhouse, hashed offline install."""
    files = tmp_path / "index" / "files"
    wheel_file = make_wheel(files)
    digest = hashlib.sha256(wheel_file.read_bytes()).hexdigest()
    project = tmp_path / "index" / "simple" / "gbtest-pkg"
    project.mkdir(parents=True)
    (project / "index.html").write_text(f'<a href="../../files/{wheel_file.name}#sha256={digest}">{wheel_file.name}</a>\n')

    target = Target(f"{sys.version_info.major}.{sys.version_info.minor}")
    wheels = resolve(
        ["gbtest-pkg", "dill"], target, indexes=[(tmp_path / "index" / "simple").as_uri()], reporter=RecordingReporter()
    )
    local = next(w for w in wheels if w.name == "gbtest-pkg")
    assert local.url.startswith("file://") and local.sha256 == digest

    store = WheelStore(pypi_cache)
    store.fetch(wheels, RecordingReporter())
    house = store.wheelhouse(wheels, tmp_path / "wheelhouse")
    lock = tmp_path / "requirements.lock"
    lock.write_text(lock_text(wheels))

    uv = deps.find_uv()
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_NO_CONFIG": "1", "UV_OFFLINE": "1", "UV_PYTHON_DOWNLOADS": "never"}
    subprocess.run([uv, "venv", "--python", sys.executable, str(venv)], check=True, env=env, capture_output=True)
    subprocess.run(
        [uv, "pip", "install", "--python", str(venv / "bin" / "python"), "--require-hashes", "--no-deps",
         "--no-index", "--find-links", str(house), "-r", str(lock)],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import gbtest_pkg, dill; print(gbtest_pkg.VALUE)"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert out.stdout.strip() == "42"

