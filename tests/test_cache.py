"""The step store and `gardenbuild cache`: atomic records under concurrency and crashes,
and pruning what no garden's last build uses.

The container backend is a fake with ``images()`` and ``rmi()``: a prune against real
storage could remove images of builds running beside the tests.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import gardenbuild.engine.store
from gardenbuild.backends.buildah import CommandError
from gardenbuild.engine.cache import STALE_SECONDS, prune, usage
from gardenbuild.backends.deps import PinnedWheel, WheelStore
from gardenbuild.errors import UserError
from gardenbuild.report import RecordingReporter
from gardenbuild.engine.store import StepStore, atomic_write

REPO = Path(__file__).resolve().parent.parent
KEY = "ab" + "0" * 62
MB = 1_000_000


class FakeBackend:
    """What `cache` needs of a container backend: the image list, and removal by name or id."""

    def __init__(self, images: list[dict], busy: set[str] = frozenset(), left: list[dict] = ()) -> None:
        self.images_ = {i["id"]: dict(i, names=list(i["names"])) for i in images}
        self.busy = busy  # ids of images a container uses: rmi without force fails
        self.removed: list[str] = []
        self.left = list(left)  # containers of dead gardenbuild processes

    def leftovers(self) -> list[dict]:
        return list(self.left)

    def sweep(self) -> list[str]:
        names, self.left = [c["name"] for c in self.left], []
        return names

    def images(self, prefixes=("",), sized=True) -> list[dict]:
        return [dict(i, names=list(i["names"])) for i in self.images_.values()
                if any(n.startswith(tuple(prefixes)) for n in i["names"])]

    def rmi(self, ref: str, *, force: bool = False) -> None:
        image = next(i for i in self.images_.values() if ref in (i["id"], *i["names"]))
        if len(image["names"]) > 1 and ref != image["id"]:
            image["names"].remove(ref)  # buildah: a name of an image with others is only untagged
            self.removed.append(ref)
            return
        if image["id"] in self.busy and not force:
            raise CommandError(f"buildah rmi failed", ["buildah", "rmi", ref],
                               f"Error: image used by 1234abcd: image is in use by a container", 125)
        del self.images_[image["id"]]
        self.removed.append(ref)

    def names(self) -> set[str]:
        return {n for i in self.images_.values() for n in i["names"]}


def image(image_id: str, *names: str, size: int = MB) -> dict:
    return {"id": image_id, "names": list(names), "size": size}


def pinned(name: str) -> PinnedWheel:
    return PinnedWheel(name, "1.0", f"{name}-1.0-py3-none-any.whl", f"https://x/{name}.whl", name.ljust(64, "0"), 5)


def key(label: str) -> str:
    return label.ljust(64, "0")


@pytest.fixture
def store(tmp_path) -> StepStore:
    """A cache after two builds of one garden: the last build's records, wheels and images, and a stale build's."""
    store = StepStore(tmp_path / "cache")
    wheels = WheelStore(store.root)
    for w in (pinned("kept1"), pinned("kept2"), pinned("stale")):
        path = wheels.path_for(w)
        path.parent.mkdir(parents=True)
        path.write_bytes(b"w" * 100)
        path.chmod(0o444)  # the wheel cache keeps wheels read-only
    as_dicts = lambda *names: [{"sha256": pinned(n).sha256, "name": n} for n in names]  # noqa: E731
    store.put(key("aa1"), "resolve", {"wheels": as_dicts("kept1", "kept2")})
    store.put(key("bb1"), "build-image", {"image": "localhost/gardenbuild/env:e1", "image_id": "env1"})
    store.put(key("cc1"), "execute-notebook", {"image": "localhost/gardens/g:n1", "image_id": "garden1"})
    store.put(key("aa0"), "resolve", {"wheels": as_dicts("kept1", "stale")})
    store.put(key("cc0"), "execute-notebook", {"image": "localhost/gardens/g:n0", "image_id": "garden0"})
    store.remember("g", tmp_path / "garden", {"resolve": {"key": key("aa1")}, "build-env": {"key": key("bb1")},
                                               "execute-notebook": {"key": key("cc1")}})
    (store.root / "resolve").mkdir()
    (store.root / "resolve" / "r.json").write_text("{}")
    return store


def backend_for_store() -> FakeBackend:
    return FakeBackend([
        image("base", "localhost/gardenbuild/python:3.11", size=100 * MB),
        image("env1", "localhost/gardenbuild/env:e1", size=50 * MB),
        image("garden1", "localhost/gardens/g:n1", size=2 * MB),
        image("garden0", "localhost/gardens/g:n0", size=3 * MB),
        image("mine", "localhost/gardens/g:n-1", "docker.io/someone/g:v1", size=4 * MB),
        image("busy", "localhost/gardenbuild/env:e0", size=60 * MB),
        image("other", "docker.io/library/python:3.12", size=70 * MB),
    ], busy={"busy"})


def keys_in(store: StepStore) -> set[str]:
    return {e.key for e in store.entries()}


def test_prune_keeps_what_the_last_build_uses_and_removes_the_rest(store):
    backend, reporter = backend_for_store(), RecordingReporter()
    freed = prune(store, backend, reporter)
    assert keys_in(store) == {key("aa1"), key("bb1"), key("cc1")}
    assert sorted(p.name for p in (store.root / "wheels").rglob("*.whl")) == ["kept1-1.0-py3-none-any.whl",
                                                                              "kept2-1.0-py3-none-any.whl"]
    assert backend.names() == {"localhost/gardenbuild/python:3.11", "localhost/gardenbuild/env:e1",
                               "localhost/gardens/g:n1", "docker.io/someone/g:v1", "localhost/gardenbuild/env:e0",
                               "docker.io/library/python:3.12"}
    assert freed["records"] == 2 and freed["wheels"] == 1 and freed["images"] == 1
    assert freed["bytes"] >= 3 * MB + 100
    assert (store.root / "resolve" / "r.json").exists() and (store.root / "gardens").is_dir()


def test_prune_never_removes_a_users_name_nor_forces_an_image_in_use(store):
    backend, reporter = backend_for_store(), RecordingReporter()
    prune(store, backend, reporter)
    assert "mine" in backend.images_ and backend.images_["mine"]["names"] == ["docker.io/someone/g:v1"]
    assert "busy" in backend.images_
    assert reporter.messages("warn") == ["kept image localhost/gardenbuild/env:e0: "
                                         "Error: image used by 1234abcd: image is in use by a container"]
    assert "untagged localhost/gardens/g:n-1 (the image keeps its other names)" in reporter.messages("info")
    assert "removed image localhost/gardens/g:n0" in reporter.messages("info")


def test_prune_all_removes_every_record_wheel_and_own_image(store):
    backend = backend_for_store()
    freed = prune(store, backend, RecordingReporter(), everything=True)
    assert keys_in(store) == set()
    assert list((store.root / "wheels").rglob("*.whl")) == []
    assert not (store.root / "resolve").exists() and not (store.root / "gardens").exists()
    assert backend.names() == {"localhost/gardenbuild/python:3.11", "docker.io/someone/g:v1",
                               "localhost/gardenbuild/env:e0", "docker.io/library/python:3.12"}
    assert freed["records"] == 5 and freed["wheels"] == 3 and freed["images"] == 3


def test_prune_removes_stale_scratch_but_not_what_a_running_build_is_writing(store):
    old = time.time() - STALE_SECONDS - 60
    stale_dir, fresh_dir = store.scratch(), store.scratch()
    (stale_dir / "Containerfile").write_text("FROM x\n")
    os.close(gardenbuild.engine.store._HELD.pop(stale_dir))  # its builder is gone: so is its lock
    stale_tmp = store.root / "steps" / "aa" / f".{key('aa9')}.json.x1.tmp"
    fresh_tmp = store.root / "steps" / "aa" / f".{key('aa8')}.json.x2.tmp"
    stale_tmp.write_text('{"key": "half')
    fresh_tmp.write_text('{"key": "half')
    for path in (stale_dir, stale_tmp):
        os.utime(path, (old, old))
    prune(store, FakeBackend([]), RecordingReporter())
    assert not stale_dir.exists() and not stale_tmp.exists()
    assert fresh_dir.is_dir() and fresh_tmp.exists()


def test_prune_with_no_garden_remembered_keeps_nothing_but_base_images(tmp_path):
    store = StepStore(tmp_path / "empty")
    backend = FakeBackend([image("base", "localhost/gardenbuild/python:3.11"), image("e", "localhost/gardenbuild/env:x")])
    freed = prune(store, backend, RecordingReporter())
    assert backend.names() == {"localhost/gardenbuild/python:3.11"}
    assert freed == {"records": 0, "wheels": 0, "images": 1, "bytes": MB, "containers": 0}


def test_usage_counts_records_wheels_and_only_gardenbuilds_images(store):
    info = usage(store, backend_for_store())
    assert info.steps == {"resolve": 2, "build-image": 1, "execute-notebook": 2}
    assert (info.wheels, info.wheel_bytes, info.resolutions) == (3, 300, 1)
    assert sorted(i["id"] for i in info.images) == ["busy", "env1", "garden0", "garden1", "mine"]
    assert info.as_json()["image_bytes"] == 119 * MB
    text = info.text().splitlines()
    assert text[0] == f"cache: {store.root}"
    assert text[1].startswith("  step records: 5 (") and text[1].endswith("): 1 build-image, 2 execute-notebook, 2 resolve")
    assert text[3] == "  images: 5 (119 MB)"


# ---------------------------------------------------------------- atomic records


def test_records_and_memories_round_trip_and_are_world_readable(tmp_path):
    store = StepStore(tmp_path)
    store.put(KEY, "resolve", {"wheels": []})
    assert store.get(KEY) == {"key": KEY, "kind": "resolve", "wheels": []}
    assert stat.S_IMODE(store._path(KEY).stat().st_mode) == 0o644
    assert store.get("cd" + "0" * 62) is None
    store.remember("g", tmp_path / "garden", {"resolve": {"key": KEY}})
    assert store.remembered("g", tmp_path / "garden") == {"resolve": {"key": KEY}}
    assert store.remembered("g", tmp_path / "elsewhere") == {}


def test_a_record_under_the_wrong_key_is_not_served(tmp_path):
    store = StepStore(tmp_path)
    store.put(KEY, "resolve", {})
    other = KEY[:-1] + "1"
    os.replace(store._path(KEY), store._path(other))
    assert store.get(other) is None


def payload(writer: int) -> dict:
    """Big enough (~400 kB) that one write is many syscalls: a torn file would show."""
    return {"writer": writer, "blob": str(writer) * 400_000}


def check_while_writing(store: StepStore, writers_done) -> int:
    """Read the record until the writers finish; every read is a whole record of one writer."""
    reads, seen = 0, False
    path = store._path(KEY)
    while not writers_done():
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            assert not seen, "the record disappeared while being rewritten"
            continue
        record = json.loads(raw)  # a partial file would not parse
        assert record["blob"] == str(record["writer"]) * 400_000
        seen = True
        reads += 1
    return reads


def put_many(root: str, writer: int, times: int) -> None:
    store = StepStore(Path(root))
    for _ in range(times):
        store.put(KEY, "test", payload(writer))


def leftovers(store: StepStore) -> list[str]:
    return sorted(p.name for p in (store.root / "steps").rglob("*") if p.is_file() and p.name != f"{KEY}.json")


def test_threads_writing_one_key_never_show_a_partial_record(tmp_path):
    store = StepStore(tmp_path)
    threads = [threading.Thread(target=put_many, args=(str(tmp_path), w, 15)) for w in range(4)]
    for t in threads:
        t.start()
    reads = check_while_writing(store, lambda: not any(t.is_alive() for t in threads))
    assert reads > 0
    assert store.get(KEY)["writer"] in range(4)
    assert leftovers(store) == []


def test_processes_writing_one_key_never_show_a_partial_record(tmp_path):
    store = StepStore(tmp_path)
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=put_many, args=(str(tmp_path), w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    reads = check_while_writing(store, lambda: not any(p.is_alive() for p in procs))
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert reads > 0
    assert store.get(KEY)["writer"] in range(4)
    assert leftovers(store) == []


class HalfWriter:
    """A file object that writes half of what it is given, then fails: a crash mid-write."""

    def __init__(self, fh) -> None:
        self.fh = fh

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()

    def write(self, data: bytes) -> int:
        self.fh.write(data[: len(data) // 2])
        self.fh.flush()
        raise OSError(28, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.fh, name)


def test_a_writer_that_fails_mid_write_leaves_no_entry_and_no_litter(tmp_path, monkeypatch):
    store = StepStore(tmp_path)
    real_fdopen = os.fdopen
    monkeypatch.setattr(gardenbuild.engine.store.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="No space left"):
        store.put(KEY, "test", payload(1))
    assert store.get(KEY) is None
    assert list(store.entries()) == []
    assert leftovers(store) == []


def test_a_writer_that_fails_keeps_the_previous_record(tmp_path, monkeypatch):
    store = StepStore(tmp_path)
    store.put(KEY, "test", payload(1))
    real_fdopen = os.fdopen
    monkeypatch.setattr(gardenbuild.engine.store.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(OSError):
        store.put(KEY, "test", payload(2))
    assert store.get(KEY)["writer"] == 1
    assert leftovers(store) == []


KILLED_WRITER = """
import os, sys, time
from pathlib import Path
import gardenbuild.engine.store
from gardenbuild.engine.store import StepStore

real_fdopen = os.fdopen

class Stuck:
    def __init__(self, fh): self.fh = fh
    def __enter__(self): return self
    def __exit__(self, *exc): self.fh.close()
    def write(self, data):
        self.fh.write(data[: len(data) // 2]); self.fh.flush()
        print("half written", flush=True)
        time.sleep(60)
    def __getattr__(self, name): return getattr(self.fh, name)

gardenbuild.engine.store.os.fdopen = lambda fd, mode: Stuck(real_fdopen(fd, mode))
StepStore(Path(sys.argv[1])).put(sys.argv[2], "test", {"blob": "x" * 100000})
"""


def test_a_killed_writer_leaves_no_entry_and_prune_clears_its_litter_later(tmp_path):
    store = StepStore(tmp_path / "cache")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(store.root), KEY], stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "half written"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert store.get(KEY) is None
    assert list(store.entries()) == []
    (stray,) = leftovers(store)
    assert stray.startswith(f".{KEY}.json.") and stray.endswith(".tmp")
    prune(store, FakeBackend([]), RecordingReporter())
    assert leftovers(store) == [stray]  # it might be a running build's: only old litter goes
    old = time.time() - STALE_SECONDS - 1
    os.utime(store.root / "steps" / KEY[:2] / stray, (old, old))
    prune(store, FakeBackend([]), RecordingReporter())
    assert leftovers(store) == []


def test_atomic_write_replaces_a_file_whole(tmp_path):
    path = tmp_path / "deep" / "file.txt"
    atomic_write(path, b"one")
    atomic_write(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["file.txt"]


HOLD_LOCK = """
import sys, time
from pathlib import Path
from gardenbuild.engine.store import StepStore
with StepStore(Path(sys.argv[1])).lock("garden-x"):
    print("holding", flush=True)
    time.sleep(60)
"""


def test_a_second_build_of_the_same_garden_waits_then_says_who_holds_it(tmp_path):
    store = StepStore(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "holding"
        with pytest.raises(UserError) as info:
            with store.lock("garden-x", timeout=1):
                pass
        assert info.value.message == "another gardenbuild process has been building 'x' for 1 s"
        with store.lock("garden-y", timeout=1):  # other gardens are not held up
            pass
    finally:
        proc.kill()
        proc.wait()
    with store.lock("garden-x", timeout=5):  # released when its holder dies
        pass


def test_prune_and_usage_count_system_package_debs_like_wheels(tmp_path):
    store = StepStore(tmp_path / "cache")
    wheels = WheelStore(store.root)
    kept = PinnedWheel("jq", "1.6", "jq_1.6_amd64.deb", "http://x/jq.deb", "d1".ljust(64, "0"), 5)
    stale = PinnedWheel("jq", "1.5", "jq_1.5_amd64.deb", "http://x/jq5.deb", "d0".ljust(64, "0"), 5)
    for deb in (kept, stale):
        wheels.path_for(deb).parent.mkdir(parents=True)
        wheels.path_for(deb).write_bytes(b"d" * 10)
    store.put(key("aa1"), "resolve", {"wheels": [], "debs": [{"sha256": kept.sha256, "name": "jq"}]})
    store.remember("g", tmp_path / "garden", {"resolve": {"key": key("aa1")}})
    assert usage(store, FakeBackend([])).wheels == 2
    freed = prune(store, FakeBackend([]), RecordingReporter())
    assert freed["wheels"] == 1
    assert [p.name for _, p in wheels.stored()] == ["jq_1.6_amd64.deb"]


def test_usage_lists_and_prune_removes_what_dead_processes_left(tmp_path):
    import os

    store = StepStore(tmp_path / "cache")
    dead = [{"id": "c1", "name": "gardenbuild-1a2b3c4d-run-0001", "image": "localhost/gardens/x:1", "builder": True}]
    backend = FakeBackend([], left=dead)
    assert usage(store, backend).leftovers == dead
    assert "left by gardenbuild processes that died: 1 container(s)" in usage(store, backend).text()
    killed = store.scratch()  # a build that died: its scratch folder stays, its lock went with it
    (killed / "context.tar").write_bytes(b"x" * 1000)
    os.close(gardenbuild.engine.store._HELD.pop(killed))
    running = store.scratch()  # a build running now
    freed = prune(store, backend, RecordingReporter())
    assert freed["containers"] == 1 and freed["bytes"] >= 1000
    assert not killed.exists() and running.exists()
    assert usage(store, backend).leftovers == []
    store.discard(running)
    assert not running.exists()



def test_a_build_keeps_the_newest_images_of_its_garden_and_drops_the_rest():
    from gardenbuild.engine.cache import trim_garden_images

    images = [image(f"g{i}", f"localhost/gardens/sol:{i}") for i in range(5)]
    images.append(image("other", "localhost/gardens/other:1"))
    images.append(image("mine", "localhost/gardens/sol:9", "localhost/mine:keep"))  # the user's name too
    images.append(image("elsewhere", "localhost/gardens/sol:7"))  # built under another catalog
    backend = FakeBackend(images, busy={"g0"})
    reporter = RecordingReporter()
    dropped = trim_garden_images("sol", ["g4", "g3", "g2", "g1", "g0", "mine"], backend, reporter, keep=2)
    assert sorted(dropped) == ["localhost/gardens/sol:1", "localhost/gardens/sol:2", "localhost/gardens/sol:9"]
    names = backend.names()
    assert {"localhost/gardens/sol:4", "localhost/gardens/sol:3"} <= names  # the newest two
    assert "localhost/gardens/sol:0" in names  # a container uses it: left alone
    assert {"localhost/gardens/other:1", "localhost/mine:keep"} <= names  # another garden; the user's own name
    assert "localhost/gardens/sol:7" in names  # not this catalog's to trim
    assert reporter.messages("info") == ["removed 3 older image(s) of sol (keeping the newest 2; "
                                         "GARDENBUILD_KEEP_IMAGES changes that)"]
