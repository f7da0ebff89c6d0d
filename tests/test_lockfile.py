"""Gardenfile.lock: its text format, how it is compared with a garden, and `prepare`.

Pure logic and file I/O only: `prepare` is given a fake base-digest function and, where
it would resolve, a fake resolver, so nothing here runs buildah or reaches the network.
The real resolver and builds are exercised in tests/test_reproducible.py.
"""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path

import pytest

import gardenbuild.engine.prepare
from gardenbuild.plan import lockfile
from gardenbuild.backends.deps import PinnedWheel
from gardenbuild.plan.digests import inputs_for
from gardenbuild.errors import ResolutionError, UserError
from gardenbuild.manifest.load import load
from gardenbuild.plan.lockfile import Lock, dependency_changes, dumps, input_changes, loads, package_changes
from gardenbuild.plan.graph import PLATFORM
from gardenbuild.engine.prepare import Options, choose_base, prepare
from gardenbuild.report import RecordingReporter

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_LOCK = REPO / "examples" / "solubility" / "Gardenfile.lock"
NEW_DIGEST = "sha256:" + "e" * 64


def wheel(name: str, version: str, size: int | None = 1000) -> PinnedWheel:
    filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    return PinnedWheel(name, version, filename, f"https://files.example.org/{filename}", f"{name}{version}".ljust(64, "0"), size)


def make_lock(**changes) -> Lock:
    lock = Lock(
        python="3.11", platform=PLATFORM, flavor="base", base_image="localhost/gardenbuild/python:3.11",
        base_digest="sha256:" + "d" * 64, requirements=("dill>=0.3.8", "six"), indexes=(), system_packages=(),
        packages=(wheel("dill", "0.4.1"), wheel("six", "1.17.0", size=None)),
        files={"model.ipynb": "a" * 64, "data/x.csv": "b" * 64},
        templates={"Containerfile.env.j2": "c" * 64, "Containerfile.j2": "d" * 64, "runtime": "e" * 64},
        gardenbuild="0.1.0",
    )
    return replace(lock, **changes)


# ---------------------------------------------------------------- the text format


def test_the_examples_committed_lock_round_trips_byte_for_byte():
    text = EXAMPLE_LOCK.read_text(encoding="utf-8")
    lock = loads(text, EXAMPLE_LOCK)
    assert dumps(lock) == text
    assert dumps(loads(dumps(lock), EXAMPLE_LOCK)) == text


def test_dumps_sorts_packages_files_and_templates_whatever_their_order():
    lock = make_lock()
    shuffled = replace(lock, packages=tuple(reversed(lock.packages)),
                       files=dict(reversed(list(lock.files.items()))),
                       templates=dict(reversed(list(lock.templates.items()))))
    text = dumps(shuffled)
    assert text == dumps(lock)
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("name = ")] == ['name = "dill"', 'name = "six"']
    files = lines[lines.index("[files]") + 1: lines.index("[templates]") - 1]
    assert files == [f'"data/x.csv" = "{"b" * 64}"', f'"model.ipynb" = "{"a" * 64}"']
    templates = lines[lines.index("[templates]") + 1:]
    assert [t.split(" = ")[0] for t in templates] == ['"Containerfile.env.j2"', '"Containerfile.j2"', '"runtime"']
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_round_trip_keeps_every_field_including_a_missing_wheel_size(tmp_path):
    lock = make_lock()
    again = loads(dumps(lock), tmp_path / "Gardenfile.lock")
    assert again == lock
    assert again.packages[1].size is None
    assert "size" not in dumps(lock).split('name = "six"')[1]


def test_awkward_file_names_survive_the_toml_quoting(tmp_path):
    odd = 'data/a "quoted" \\ name \u00e9\t\x01\x7f.csv'
    lock = make_lock(files={odd: "f" * 64}, requirements=('pkg; python_version < "3.12"',))
    again = loads(dumps(lock), tmp_path / "Gardenfile.lock")
    assert again.files == {odd: "f" * 64}
    assert again.requirements == ('pkg; python_version < "3.12"',)


def test_pinned_base_is_the_name_without_any_digest_plus_the_locked_digest():
    lock = make_lock(base_image="localhost/gardenbuild/python:3.11@sha256:" + "0" * 64)
    assert lock.pinned_base == "localhost/gardenbuild/python:3.11@sha256:" + "d" * 64
    assert lock.plan_lock() == {"base": lock.pinned_base, "wheels": [
        {"name": "dill", "version": "0.4.1", "filename": "dill-0.4.1-py3-none-any.whl",
         "url": "https://files.example.org/dill-0.4.1-py3-none-any.whl", "sha256": "dill0.4.1".ljust(64, "0"), "size": 1000},
        {"name": "six", "version": "1.17.0", "filename": "six-1.17.0-py3-none-any.whl",
         "url": "https://files.example.org/six-1.17.0-py3-none-any.whl", "sha256": "six1.17.0".ljust(64, "0"), "size": None},
    ]}


@pytest.mark.parametrize("text", ["lock-version = 1\n[environment\n", "lock-version = 1\n", "", "lock-version = 1\n[environment]\npython = 3\n"])
def test_a_damaged_lock_is_one_user_error_saying_how_to_recreate_it(text, tmp_path):
    path = tmp_path / "Gardenfile.lock"
    with pytest.raises(UserError) as info:
        loads(text, path)
    assert info.value.message.startswith(f"{path} is damaged (")
    assert info.value.hint == f"delete it and run `gardenbuild lock {tmp_path}`"


def test_another_lock_version_is_named_before_its_layout_is_read(tmp_path):
    path = tmp_path / "Gardenfile.lock"
    with pytest.raises(UserError) as info:
        loads('lock-version = 2\n[env]\npython = "3.11"\n', path)
    assert info.value.message == f"{path}: lock-version 2 is not supported by gardenbuild {lockfile.__version__}"
    # `lock --upgrade` would read the lock first and fail the same way: the hint must not send the user there.
    assert "--upgrade" not in info.value.hint and "delete it" in info.value.hint


def test_write_is_readable_by_everyone_and_keeps_an_existing_mode(tmp_path):
    path = lockfile.write(tmp_path, make_lock())
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600: the lock is shared through git
    path.chmod(0o664)
    lockfile.write(tmp_path, make_lock(python="3.12"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
    assert lockfile.read(tmp_path).python == "3.12"
    assert [p.name for p in tmp_path.iterdir()] == ["Gardenfile.lock"]


# ---------------------------------------------------------------- comparing a lock with a garden


REGISTRY_BASE = "registry.example/python:3.11"
LOCKED_DIGEST = "sha256:" + "d" * 64


@pytest.fixture
def example(garden_copy):
    """A copy of examples/solubility whose lock pins a registry base image by digest (and
    holds the hashes of today's templates and runtime, which change under development)."""
    root = garden_copy("solubility")
    lock = replace(lockfile.read(root), base_image=REGISTRY_BASE, base_digest=LOCKED_DIGEST)
    garden = load(root).with_base_image(lock.base_image)
    lock = lock.with_inputs(inputs_for(garden))
    lockfile.write(root, lock)
    return garden, lock


@pytest.fixture
def local_example(garden_copy):
    """A copy of examples/solubility as committed: its base is a localhost/ image."""
    root = garden_copy("solubility")
    lock = lockfile.read(root)
    garden = load(root).with_base_image(lock.base_image)
    lock = lock.with_inputs(inputs_for(garden))
    lockfile.write(root, lock)
    return garden, lock


def test_the_examples_committed_lock_is_current(garden_copy):
    root = garden_copy("solubility")
    lock = lockfile.read(root)
    garden = load(root).with_base_image(lock.base_image)
    assert dependency_changes(lock, garden) == []
    assert input_changes(lock, inputs_for(garden)) == [], (
        "examples/solubility/Gardenfile.lock is stale, so `build --locked` refuses the example: "
        "run `gardenbuild lock examples/solubility` and commit it")


def test_dependency_changes_name_each_difference(local_example):
    garden, lock = local_example
    changed = replace(garden, python="3.12", base_image="localhost/other:1",
                      requirements=tuple(r for r in garden.requirements if not r.startswith("rdkit")) + ("six",),
                      indexes=("https://example.org/simple",), system_packages=("libgomp1",))
    assert dependency_changes(lock, changed) == [
        "python 3.11 -> 3.12",
        "base image localhost/gardenbuild/python:3.11 -> localhost/other:1",
        "requirement removed: rdkit>=2024.3",
        "requirement added: six",
        "index added: https://example.org/simple",
        "system package added: libgomp1",
    ]


def test_reordering_requirements_is_not_a_change(example):
    garden, lock = example
    assert dependency_changes(lock, replace(garden, requirements=tuple(reversed(garden.requirements)))) == []


def test_input_changes_name_files_templates_and_the_runtime(example):
    garden, lock = example
    inputs = inputs_for(garden)
    files = dict(inputs.files)
    files["solubility.ipynb"] = "0" * 64
    files["data/extra.csv"] = "1" * 64
    del files["data/README.md"]
    changed = replace(inputs, files=files, templates={**inputs.templates, "Containerfile.j2": "2" * 64}, runtime="3" * 64)
    assert input_changes(lock, changed) == [
        "file data/README.md removed",
        "file data/extra.csv added",
        "file solubility.ipynb changed",
        "template Containerfile.j2 changed",
        "gardenbuild runtime changed",
    ]


def test_package_changes_are_sorted_by_name():
    old = (wheel("numpy", "2.1.0"), wheel("pandas", "2.2.0"), wheel("six", "1.17.0"))
    new = (wheel("six", "1.17.0"), wheel("numpy", "2.2.0"), wheel("idna", "3.10"))
    assert package_changes(old, new) == ["added idna 3.10", "numpy 2.1.0 -> 2.2.0", "removed pandas 2.2.0"]
    assert package_changes(old, old) == []


def test_with_inputs_records_the_current_hashes(example):
    garden, lock = example
    inputs = inputs_for(garden)
    current = make_lock().with_inputs(inputs)
    assert current.files == dict(inputs.files)
    assert current.templates == {**inputs.templates, "runtime": inputs.runtime}
    assert lock.with_inputs(inputs) == lock


# ---------------------------------------------------------------- prepare(): use, check or rewrite


class Storage:
    """Stands in for the container backend as `prepare` uses it: what local storage holds.

    `images` maps a name to its digest; `present` answers "is the locked digest there?"
    (True, False, or None for storage that cannot be read)."""

    def __init__(self, images: dict[str, str] | None = None, present: bool | None = True, python: str = "3.11.2",
                 tags: dict[str, str] | None = None):
        self.images = {REGISTRY_BASE: NEW_DIGEST, **(images or {})}
        self.present, self.python = present, python
        self.tags = {**{k: v for k, v in (images or {}).items()}, **(tags or {})}  # what stored_digest reads
        self.asked: list[str] = []

    def image_id(self, ref: str) -> str | None:
        return "1" * 64 if ref.split("@")[0] in self.images else None

    def digest(self, ref: str) -> str:
        self.asked.append(ref)
        return self.images[ref.split("@")[0]]

    def digest_in_storage(self, digest: str) -> bool | None:
        return self.present

    def stored_digest(self, ref: str) -> str | None:
        return self.tags.get(ref)

    def inspect(self, ref: str) -> dict:
        return {"OCIv1": {"config": {"Labels": {"io.gardenbuild.base.python": self.python}}}}


def never_resolve(*args, **kwargs):
    raise AssertionError("prepare resolved although the lock was up to date")


@pytest.fixture
def no_network(monkeypatch):
    monkeypatch.setattr(gardenbuild.engine.prepare, "resolve", never_resolve)


def run_prepare(garden, storage=None, *, resolve_system=None, write=True, **options):
    reporter = RecordingReporter()
    prepared = prepare(garden, Options(**options), backend=storage or Storage(), reporter=reporter, cache_root=None,
                       write=write, resolve_system=resolve_system or (lambda packages, base: []))
    return prepared, reporter


def test_an_up_to_date_lock_is_used_as_is_and_not_rewritten(example, no_network):
    garden, lock = example
    path = garden.root / "Gardenfile.lock"
    before = path.read_bytes()
    storage = Storage()
    for locked in (False, True):
        prepared, reporter = run_prepare(garden, storage, locked=locked)
        assert (prepared.relocked, prepared.written) == ([], False)
        assert reporter.events == []
    assert storage.asked == []  # the lock's digest is used: storage is not asked for another
    assert path.read_bytes() == before
    assert prepared.lock == lock
    assert prepared.garden.base_image == lock.pinned_base == f"{REGISTRY_BASE}@{LOCKED_DIGEST}"
    assert prepared.plan.step("resolve").params == {"locked": lock.plan_lock()}


def test_a_local_base_is_pinned_by_its_digest_in_storage_and_never_in_the_lock(local_example, no_network):
    garden, lock = local_example
    assert lock.base_digest is None and lock.base_image.startswith("localhost/")
    path = garden.root / "Gardenfile.lock"
    before = path.read_bytes()
    for digest in ("sha256:" + "1" * 64, "sha256:" + "2" * 64):  # the base re-made: a new digest
        prepared, reporter = run_prepare(garden, Storage({lock.base_image: digest}))
        assert prepared.garden.base_image == f"{lock.base_image}@{digest}"
        assert prepared.plan.step("resolve").params["locked"]["base"] == f"{lock.base_image}@{digest}"
        assert (prepared.written, reporter.messages("warn")) == (False, [])
    assert path.read_bytes() == before  # trying the example does not dirty the checkout


def test_a_lock_that_pinned_a_local_base_drops_the_pin(local_example, no_network):
    garden, lock = local_example
    lockfile.write(garden.root, replace(lock, base_digest=LOCKED_DIGEST))
    prepared, _ = run_prepare(garden, Storage({lock.base_image: NEW_DIGEST}))
    assert prepared.written and lockfile.read(garden.root).base_digest is None
    assert "no base_digest: a localhost/ image" in (garden.root / "Gardenfile.lock").read_text()


def test_a_base_running_another_python_is_refused_before_anything_resolves(example, no_network):
    garden, lock = example
    (garden.root / "Gardenfile.lock").unlink()  # a resolution would follow: it must not start
    with pytest.raises(UserError) as info:
        run_prepare(garden, Storage(python="3.10.14"))
    assert info.value.message == (f"the base image {REGISTRY_BASE} runs Python 3.10.14, "
                                  'but Gardenfile.toml asks for python = "3.11"')
    assert info.value.hint.startswith('set python = "3.10" in [environment], or build on a base image with Python 3.11')
    assert "gardenbuild base bootstrap --python 3.11" in info.value.hint


def test_the_base_python_is_remembered_per_digest(example, no_network, tmp_path):
    garden, _ = example
    storage = Storage()
    calls = []
    storage.inspect = lambda ref: calls.append(ref) or Storage().inspect(ref)
    for _ in range(2):
        prepare(garden, Options(), backend=storage, reporter=RecordingReporter(), cache_root=tmp_path,
                resolve_system=lambda packages, base: [])
    assert calls == [f"{REGISTRY_BASE}@{LOCKED_DIGEST}"]


def test_the_command_line_base_wins_then_the_gardenfile_then_the_lock_then_the_flavor(example):
    garden, lock = example
    assert choose_base(garden, Options(base_image="localhost/mine:1"), lock) == "localhost/mine:1"
    assert choose_base(replace(garden, explicit_base=True, base_image="x/y:1"), Options(), lock) == "x/y:1"
    assert choose_base(garden, Options(), lock) == REGISTRY_BASE
    flavor_default = load(garden.root).base_image
    assert choose_base(load(garden.root), Options(upgrade=True), lock) == flavor_default
    assert choose_base(load(garden.root), Options(), None) == flavor_default


def test_locked_refuses_a_notebook_edit_with_one_line(example, no_network):
    garden, _ = example
    with (garden.root / "solubility.ipynb").open("a") as fh:
        fh.write("\n")
    with pytest.raises(UserError) as info:
        run_prepare(garden, locked=True)
    assert info.value.message == f"{garden.root / 'Gardenfile.lock'} does not match the garden any more: file solubility.ipynb changed"
    assert info.value.hint == f"run `gardenbuild lock {garden.root}` and commit the lock, or build without --locked"


def test_locked_refuses_a_requirement_edit(example, no_network):
    garden, _ = example
    with pytest.raises(UserError) as info:
        run_prepare(replace(garden, requirements=garden.requirements + ("six",)), locked=True)
    assert info.value.message.endswith(" does not match the garden any more: requirement added: six")


def test_locked_without_a_lock(example, no_network):
    garden, _ = example
    (garden.root / "Gardenfile.lock").unlink()
    with pytest.raises(UserError) as info:
        run_prepare(garden, locked=True)
    assert info.value.message == f"--locked, but there is no {garden.root / 'Gardenfile.lock'}"


def test_a_notebook_edit_without_locked_only_rewrites_the_files_hash(example, no_network):
    garden, lock = example
    with (garden.root / "solubility.ipynb").open("a") as fh:
        fh.write("\n")
    prepared, _ = run_prepare(garden)
    assert (prepared.relocked, prepared.written) == ([], True)
    again = lockfile.read(garden.root)
    assert again.packages == lock.packages and again.base_digest == lock.base_digest
    assert again.files["solubility.ipynb"] != lock.files["solubility.ipynb"]


def test_a_base_image_missing_from_storage_is_re_pinned_with_a_warning(example, no_network):
    garden, lock = example
    prepared, reporter = run_prepare(garden, Storage(present=False))
    assert reporter.messages("warn") == [
        f"base image {lock.base_image} changed: {lock.base_digest[:19]} -> {NEW_DIGEST[:19]}; lock updated"]
    assert prepared.written and prepared.lock.base_digest == NEW_DIGEST
    assert lockfile.read(garden.root).base_digest == NEW_DIGEST
    assert prepared.lock.packages == lock.packages


def test_a_re_pinned_base_re_resolves_the_system_packages_against_it(example, no_network):
    from gardenbuild.backends.deps import PinnedWheel

    garden, lock = example
    garden = replace(garden, system_packages=("jq",))
    (garden.root / "Gardenfile.lock").write_text(lockfile.dumps(replace(lock, system_packages=("jq",))))
    asked = []

    def resolve_system(packages, base):
        asked.append((tuple(packages), base))
        return [PinnedWheel("jq", "1.7", "jq_1.7_amd64.deb", "http://deb.example/jq_1.7_amd64.deb", "a" * 64, 1)]

    prepared, _ = run_prepare(garden, Storage(present=False), resolve_system=resolve_system)
    new_base = f"{lock.base_image}@{NEW_DIGEST}"
    assert asked == [(("jq",), new_base)]
    assert [d.version for d in prepared.lock.debs] == ["1.7"] and prepared.lock.pinned_base == new_base


def test_locked_refuses_a_base_image_missing_from_storage(example, no_network):
    garden, lock = example
    with pytest.raises(UserError) as info:
        run_prepare(garden, Storage(present=False), locked=True)
    assert info.value.message == f"the lock pins base image {lock.pinned_base}, which is not in local storage"
    assert lockfile.read(garden.root) == lock


def test_a_registry_base_whose_tag_moved_is_re_pinned_and_refused_with_locked(example, no_network):
    garden, lock = example
    moved = Storage(present=True, tags={REGISTRY_BASE: NEW_DIGEST})  # the old image is still there, untagged
    with pytest.raises(UserError) as info:
        run_prepare(garden, moved, locked=True)
    assert info.value.message == f"the lock pins base image {lock.pinned_base}, but {REGISTRY_BASE} now names {NEW_DIGEST[:19]}"
    prepared, reporter = run_prepare(garden, moved)
    assert prepared.lock.base_digest == NEW_DIGEST and prepared.written
    assert reporter.messages("warn") == [
        f"base image {REGISTRY_BASE} changed: {LOCKED_DIGEST[:19]} -> {NEW_DIGEST[:19]}; lock updated"]


def test_unknown_storage_trusts_the_lock(example, no_network):
    garden, lock = example
    prepared, _ = run_prepare(garden, Storage(present=None))
    assert prepared.lock.base_digest == lock.base_digest and not prepared.written


class FakeResolver:
    """Stands in for `deps.resolve`: records its constraints and answers with fixed wheels."""

    def __init__(self, wheels, fail_with_constraints: bool = False) -> None:
        self.wheels = wheels
        self.fail_with_constraints = fail_with_constraints
        self.calls: list[list[str]] = []

    def __call__(self, requirements, target, *, indexes, reporter, cache_root, constraints=(), find_links=()):
        if not any(r.startswith("dill") for r in requirements):
            return list(self.wheels)  # prepare's check that gardenbuild's own needs hold nothing back
        self.calls.append(sorted(constraints))
        if constraints and self.fail_with_constraints:
            raise ResolutionError("pins do not fit")
        return list(self.wheels)


def held(lock: Lock, *except_names: str) -> list[str]:
    return sorted(f"{w.name}=={w.version}" for w in lock.packages if w.name not in except_names)


def test_a_requirement_edit_re_resolves_holding_the_earlier_pins(example, monkeypatch):
    garden, lock = example
    six = wheel("six", "1.17.0")
    resolver = FakeResolver(lock.packages + (six,))
    monkeypatch.setattr(gardenbuild.engine.prepare, "resolve", resolver)
    prepared, reporter = run_prepare(replace(garden, requirements=garden.requirements + ("six",)))
    assert resolver.calls == [held(lock)]
    assert prepared.relocked == ["requirement added: six"] and prepared.written
    assert reporter.messages("info") == ["re-resolving: requirement added: six", "  added six 1.17.0"]
    assert lockfile.read(garden.root).packages == tuple(sorted(lock.packages + (six,)))


@pytest.mark.parametrize("spelling", ["scikit-learn", "Scikit_Learn", "SCIKIT.learn"])
def test_upgrade_of_one_package_frees_only_its_pin_however_it_is_spelled(example, monkeypatch, spelling):
    garden, lock = example
    resolver = FakeResolver(lock.packages)
    monkeypatch.setattr(gardenbuild.engine.prepare, "resolve", resolver)
    prepared, reporter = run_prepare(garden, upgrade=(spelling,))
    assert resolver.calls == [held(lock, "scikit-learn")]
    assert prepared.relocked == ["upgrade requested"]
    assert reporter.messages("warn") == []


def test_upgrade_of_everything_holds_no_pin(example, monkeypatch):
    garden, lock = example
    resolver = FakeResolver(lock.packages)
    monkeypatch.setattr(gardenbuild.engine.prepare, "resolve", resolver)
    run_prepare(garden, upgrade=True)
    assert resolver.calls == [[]]


def test_upgrade_of_a_package_nobody_names_is_warned_about(example, monkeypatch):
    garden, lock = example
    monkeypatch.setattr(gardenbuild.engine.prepare, "resolve", FakeResolver(lock.packages))
    _, reporter = run_prepare(garden, upgrade=("nosuchpkg", "rdkit"))
    assert reporter.messages("warn") == ["--upgrade nosuchpkg: neither Gardenfile.lock nor the requirements name such a package"]


def test_pins_that_no_longer_fit_are_dropped_and_resolution_starts_afresh(example, monkeypatch):
    garden, lock = example
    resolver = FakeResolver(lock.packages, fail_with_constraints=True)
    monkeypatch.setattr(gardenbuild.engine.prepare, "resolve", resolver)
    _, reporter = run_prepare(replace(garden, python="3.12"), Storage(python="3.12.1"))
    assert resolver.calls == [held(lock), []]
    assert "earlier pins no longer fit the requirements; resolving afresh" in reporter.messages("info")


def test_no_lock_yet_resolves_and_writes_one(example, monkeypatch):
    garden, lock = example
    (garden.root / "Gardenfile.lock").unlink()
    resolver = FakeResolver(lock.packages)
    monkeypatch.setattr(gardenbuild.engine.prepare, "resolve", resolver)
    prepared, reporter = run_prepare(garden)
    assert resolver.calls == [[]]
    assert prepared.relocked == ["no lock yet"] and prepared.written
    assert reporter.messages("info") == []
    written = lockfile.read(garden.root)
    assert written == replace(lock, base_digest=NEW_DIGEST)
    assert json.loads(json.dumps(written.plan_lock()))["base"].endswith("@" + NEW_DIGEST)


def test_system_packages_round_trip_as_their_own_tables():
    from gardenbuild.backends.deps import PinnedWheel
    from gardenbuild.plan.lockfile import Lock, dumps, loads

    deb = PinnedWheel("jq", "1.6-2.1+deb12u2", "jq_1.6-2.1+deb12u2_amd64.deb",
                      "http://deb.debian.org/debian/pool/main/j/jq/jq_1.6-2.1%2bdeb12u2_amd64.deb", "f2" * 32, 63984)
    lock = Lock(python="3.11", platform="x86_64-manylinux_2_36", flavor="base", base_image="b", base_digest="sha256:0",
                requirements=("dill>=0.3.8",), indexes=(), system_packages=("jq",), packages=(), debs=(deb,))
    text = dumps(lock)
    assert '[[system_package]]\nname = "jq"\nversion = "1.6-2.1+deb12u2"\ndeb = "jq_1.6-2.1+deb12u2_amd64.deb"' in text
    again = loads(text, Path("Gardenfile.lock"))
    assert again.debs == (deb,) and dumps(again) == text
    assert again.plan_lock()["debs"][0]["sha256"] == "f2" * 32
