"""Reproducible rebuilds, for real: Gardenfile.lock, the step cache, `verify`, `lock --upgrade`.

Every build here runs in a private containers-storage (``CONTAINERS_STORAGE_CONF``) that
holds only a copy of the base image, so the tests can remove images to defeat buildah's
layer cache without touching images of builds running beside them, and a "clean
rebuild" starts from storage that truly holds nothing else. The example is built once
per module; the other gardens are small fixtures with ``flavor = "base"``.

The first tests check how `verify` reports a mismatch, against a fake backend; they run
in the quick loop. The rest are marked ``integration``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from packaging.version import Version

from gardenbuild.plan import lockfile
from gardenbuild.backends.buildah import Buildah, CommandError
from gardenbuild.engine.verify import StageCheck, config_differences, explain_mismatch, file_differences, summary
from helpers import cli, copy_garden, write_garden

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "gardens"
SOLUBILITY = REPO / "examples" / "solubility"
ENV_STEPS = ["resolve", "fetch", "render-env", "build-env", "build-runtime", "render-garden"]
integration = pytest.mark.integration


# ---------------------------------------------------------------- how verify reports (no buildah)


def member(content: str, mode: int = 0o644, mtime: int = 0, size: int = 10) -> tuple:
    return (("mode", oct(mode)), ("owner", "0:0"), ("mtime", mtime), ("size", size), ("content", content))


def test_file_differences_name_each_path_and_what_differs():
    a = {"garden/session.pkl": member("1"), "garden/same": member("s"), "garden/gone": member("g"),
         "usr/x.pyc": member("p", mode=0o600, mtime=5)}
    b = {"garden/session.pkl": member("2"), "garden/same": member("s"), "garden/new": member("n"),
         "usr/x.pyc": member("p", mode=0o644, mtime=6)}
    assert file_differences(a, b) == [
        "/garden/gone: only in the original",
        "/garden/new: only in the rebuild",
        "/garden/session.pkl: content differs",
        "/usr/x.pyc: mode, mtime differ",
    ]
    assert file_differences(a, b, limit=2) == ["/garden/gone: only in the original", "/garden/new: only in the rebuild"]
    assert file_differences(a, a) == []


def oci(diff_ids: list[str], labels: dict | None = None, env: list[str] | None = None) -> dict:
    history = [{"created_by": f"step {i}"} for i in range(len(diff_ids))]
    return {"OCIv1": {"created": "1970-01-01T00:00:00Z", "history": history,
                      "config": {"Env": env or ["PATH=/bin"], "Labels": labels or {}},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}}


class InspectOnly:
    """A backend that can only inspect: explain_mismatch must not export layers to report these."""

    def __init__(self, images: dict[str, dict]) -> None:
        self.images = images

    def inspect(self, ref: str) -> dict:
        return self.images[ref]


def test_a_config_only_mismatch_says_so_instead_of_blaming_the_layer_count():
    backend = InspectOnly({"a": oci(["sha256:1", "sha256:2"], labels={"built": "monday"}),
                           "b": oci(["sha256:1", "sha256:2"], labels={"built": "tuesday"}, env=["PATH=/usr/bin"])})
    check = StageCheck("garden", "a", "b", "sha256:d")
    explain_mismatch(backend, "a", "b", check)
    assert (check.layer, check.files) == (None, ["config.Env differs", "config.Labels differs"])
    assert summary([check]) == ("garden: MISMATCH in the image config (every layer is identical)\n"
                                "  config.Env differs\n  config.Labels differs")


def test_a_different_number_of_layers_names_the_first_extra_one():
    backend = InspectOnly({"a": oci(["sha256:1", "sha256:2"]), "b": oci(["sha256:1", "sha256:2", "sha256:3"])})
    check = StageCheck("env", "a", "b", "sha256:d")
    explain_mismatch(backend, "a", "b", check)
    assert (check.layer, check.files) == (3, ["the images have a different number of layers"])


def test_a_layer_mismatch_is_summarised_with_the_step_that_made_it():
    check = StageCheck("garden", "a", "b", "sha256:d", layer=8, created_by="/bin/sh -c python -m run  ",
                       files=["/garden/session.pkl: content differs"])
    matched = StageCheck("env", "e", "e", "sha256:e")
    assert summary([matched, check]) == ("env: match (sha256:e)\n"
                                         "garden: MISMATCH in layer 8 (/bin/sh -c python -m run)\n"
                                         "  /garden/session.pkl: content differs")


def test_config_differences_ignore_the_layers_and_equal_fields():
    a = oci(["sha256:1"])["OCIv1"]
    b = dict(oci(["sha256:2"])["OCIv1"], created="2024-01-01T00:00:00Z")
    assert config_differences(a, b) == ["created differs"]


# ---------------------------------------------------------------- real builds in private storage






def make_storage(root: Path, base: str) -> Path:
    """A containers-storage under `root` holding only a copy of `base` (same digest); its storage.conf."""
    driver = json.loads(subprocess.run(["buildah", "info"], capture_output=True, check=True).stdout)["store"]["GraphDriverName"]
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "{driver}"\ngraphroot = "{root}/graph"\nrunroot = "{root}/run"\n')
    env = {k: v for k, v in os.environ.items() if k != "CONTAINERS_STORAGE_CONF"}
    subprocess.run(["buildah", "push", "--quiet", base, f"containers-storage:[{driver}@{root}/graph+{root}/run]{base}"],
                   check=True, capture_output=True, env=env)
    return conf


def destroy_storage(conf: Path) -> None:
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}
    for argv in (["buildah", "rm", "--all"], ["buildah", "rmi", "--all", "--force"]):
        subprocess.run(argv, capture_output=True, env=env)
    shutil.rmtree(conf.parent, ignore_errors=True)


def fresh_cache(storage: dict, dest: Path) -> Path:
    """A new, empty step cache; the module cache's wheels copied over only to spare the downloads."""
    if (storage["cache"] / "wheels").is_dir():
        shutil.copytree(storage["cache"] / "wheels", dest / "wheels")
    dest.mkdir(exist_ok=True)
    return dest


def storage_ids() -> set[str]:
    """Every image in the current storage, intermediate layers included."""
    out = subprocess.run(["buildah", "images", "--all", "--quiet", "--no-trunc"], capture_output=True, text=True, check=True)
    return {line.split(":", 1)[-1] for line in out.stdout.split()}


@pytest.fixture(scope="module")
def storage(base_image, tmp_path_factory):
    """This module's private storage (only the base image in it), and a step cache to go with it."""
    root = tmp_path_factory.mktemp("storage")
    conf = make_storage(root, base_image)
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONTAINERS_STORAGE_CONF", str(conf))
        mp.setenv("GARDENBUILD_CACHE", str(cache))
        mp.delenv("GARDENBUILD_BASE_IMAGE", raising=False)
        yield {"conf": conf, "cache": cache, "base": base_image}
    destroy_storage(conf)


@pytest.fixture
def env(storage, monkeypatch):
    """Per test: the private storage and the module's cache (a test may switch either)."""
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(storage["conf"]))
    monkeypatch.setenv("GARDENBUILD_CACHE", str(storage["cache"]))
    monkeypatch.delenv("GARDENBUILD_BASE_IMAGE", raising=False)
    return storage


@pytest.fixture(scope="module")
def example(storage, tmp_path_factory):
    """examples/solubility built once from its committed lock: (garden folder, the --json summary)."""
    garden = copy_garden(SOLUBILITY, tmp_path_factory.mktemp("example") / "solubility")
    code, out, err = cli("build", str(garden), "--json")
    assert code == 0, err
    return garden, json.loads(out)


@pytest.fixture
def example_copy(example, env, tmp_path):
    """Another copy of the built example, built too (all from the cache): its folder."""
    garden = copy_garden(example[0], tmp_path / "solubility")
    code, out, err = cli("build", str(garden), "--json")
    assert code == 0, err
    assert not [s["id"] for s in json.loads(out)["steps"] if not s["cached"]]
    return garden


def edit_notebook(path: Path, comment: str) -> None:
    """Append a comment line to the last code cell: the notebook's content changes, its behaviour not."""
    nb = json.loads(path.read_text())
    cell = [c for c in nb["cells"] if c["cell_type"] == "code"][-1]
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    cell["source"] = source + f"\n# {comment}\n"
    path.write_text(json.dumps(nb, indent=1) + "\n")


def plan_status(text: str) -> dict[str, str]:
    """`gardenbuild plan` lines -> {step id: "cached" or "run: <reasons>"}."""
    rows = [re.fullmatch(r"\s*\d+\. (\S+)\s+\S+\s+[0-9a-f]{12}  (.*)", line) for line in text.splitlines()]
    assert all(rows), text
    return {row[1]: row[2] for row in rows}


def ran(summary: dict) -> list[str]:
    return [s["id"] for s in summary["steps"] if not s["cached"]]


@integration
def test_a_no_op_build_never_runs_buildah(example, env, tmp_path, monkeypatch):
    garden, first = example
    real = shutil.which("buildah")
    calls = tmp_path / "buildah-calls"
    wrapper = tmp_path / "bin" / "buildah"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")

    code, out, err = cli("build", str(garden), "--json")
    assert code == 0, err
    again = json.loads(out)
    assert ran(again) == []
    assert (again["image_id"], again["digest"]) == (first["image_id"], first["digest"])
    assert not calls.exists(), calls.read_text()
    # The wrapper is the buildah gardenbuild would run: asking anything of the backend goes through it.
    assert Buildah().inspect(first["image"])["FromImageID"] == first["image_id"]
    assert calls.read_text().startswith("inspect ")


@integration
def test_a_clean_rebuild_from_the_lock_gives_the_same_image_digest(example, env, tmp_path, monkeypatch):
    garden, first = example
    backend = Buildah()
    env_id = backend.image_id(first["env_image"])
    lock_before = (garden / "Gardenfile.lock").read_bytes()

    # A new, empty step cache (but for the wheels) ...
    monkeypatch.setenv("GARDENBUILD_CACHE", str(fresh_cache(env, tmp_path / "cache")))
    # ... and storage holding nothing but the base image: no layer buildah could reuse.
    base_id = backend.image_id(env["base"])
    for image in backend.images():
        if image["id"] != base_id:
            try:
                backend.rmi(image["id"], force=True)
            except CommandError:  # already gone with an image removed before it
                pass
    assert backend.image_id(first["env_image"]) is None and backend.image_id(first["image"]) is None
    assert storage_ids() == {base_id}
    time.sleep(1.5)  # at a different time: a clock reading anywhere in the image would show

    code, out, err = cli("build", str(garden), "--json")
    assert code == 0, err
    second = json.loads(out)
    assert ran(second) == [s["id"] for s in first["steps"]]
    assert second["image"] == first["image"]
    assert (second["image_id"], second["digest"]) == (first["image_id"], first["digest"])
    assert backend.digest(second["image"]) == first["digest"]
    assert backend.inspect(second["image"])["FromImageDigest"] == first["digest"]
    assert backend.image_id(first["env_image"]) == env_id
    assert (garden / "Gardenfile.lock").read_bytes() == lock_before


@integration
def test_a_notebook_edit_runs_the_notebook_again_and_nothing_before_it(example_copy, example):
    garden, first = example_copy, example[1]
    env_id = Buildah().image_id(first["env_image"])
    edit_notebook(garden / "solubility.ipynb", "an edit that changes nothing the notebook does")

    code, out, err = cli("plan", str(garden))
    assert code == 0, err
    status = plan_status(out)
    assert status["execute-notebook"] == "run: file solubility.ipynb changed"
    assert status["build-env"] == "cached"
    assert [step for step, s in status.items() if s == "cached"] == ENV_STEPS

    code, out, err = cli("build", str(garden), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert ran(summary) == ["execute-notebook", "test", "build-api", "emit-artifacts"]
    assert summary["env_image"] == first["env_image"]
    assert Buildah().image_id(summary["env_image"]) == env_id
    assert summary["image_id"] != first["image_id"]
    assert all(case["passed"] for case in summary["tests"])


@integration
def test_locked_refuses_a_notebook_edit_until_the_lock_is_updated(example_copy):
    garden = example_copy
    lock_path = garden / "Gardenfile.lock"
    edit_notebook(garden / "solubility.ipynb", "an edit made without updating the lock")

    code, out, err = cli("build", str(garden), "--locked")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: {lock_path} does not match the garden any more: file solubility.ipynb changed",
        f"hint: run `gardenbuild lock {garden}` and commit the lock, or build without --locked",
    ]
    code, out, err = cli("lock", str(garden))
    assert code == 0, err
    code, out, err = cli("build", str(garden), "--locked", "--json")
    assert code == 0, err
    assert ran(json.loads(out)) == ["execute-notebook", "test", "build-api", "emit-artifacts"]


@integration
def test_locked_refuses_a_requirement_edit_until_the_lock_is_updated(env, tmp_path, monkeypatch):
    monkeypatch.setenv("GARDENBUILD_BASE_IMAGE", env["base"])
    garden = copy_garden(FIXTURES / "clock_global", tmp_path / "clock_global")
    lock_path = garden / "Gardenfile.lock"
    code, out, err = cli("lock", str(garden))
    assert code == 0, err
    gardenfile = garden / "Gardenfile.toml"
    gardenfile.write_text(gardenfile.read_text().replace('flavor = "base"\n', 'flavor = "base"\nrequirements = ["six"]\n'))

    code, out, err = cli("build", str(garden), "--locked")
    assert code == 2 and out == ""
    assert err.splitlines()[0] == f"error: {lock_path} does not match the garden any more: requirement added: six"
    code, out, err = cli("lock", str(garden), "--json")
    assert code == 0, err
    assert json.loads(out)["state"] == "updated"
    assert any(p.startswith("six==") for p in json.loads(out)["packages"])
    code, out, err = cli("build", str(garden), "--locked")
    assert code == 0, err


@integration
def test_verify_of_the_example_finds_every_image_identical(example, env):
    garden, first = example
    code, out, err = cli("verify", str(garden), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["match"] is True
    assert [(s["stage"], s["match"]) for s in report["stages"]] == [("env", True), ("runtime", True), ("garden", True),
                                                                    ("api", True)]
    garden_stage, api_stage = report["stages"][2:]
    assert garden_stage["original"] == garden_stage["rebuilt"] == first["session_image_id"]
    assert api_stage["original"] == api_stage["rebuilt"] == first["image_id"]
    assert api_stage["digest"] == first["digest"]
    # The outcome is kept, and the model page says so; the build put its card in the catalog's listing.
    from gardenbuild.catalog import Catalog

    catalog = Catalog()
    assert catalog.verification([first["image_id"]])["match"] is True
    assert [p["name"] for p in catalog.listed("solubility")["card"]["pipelines"]] == ["predict_solubility"]
    code, out, err = cli("page", str(garden), "-o", str(garden.parent / "page"))
    assert code == 0, err
    assert "Bit-identical rebuild confirmed</span> by <code>gardenbuild verify</code> on" in \
        (garden.parent / "page" / "index.html").read_text()


@integration
def test_verify_names_the_layer_and_file_of_a_notebook_that_keeps_a_clock_reading(env, tmp_path, monkeypatch):
    monkeypatch.setenv("GARDENBUILD_BASE_IMAGE", env["base"])
    garden = copy_garden(FIXTURES / "clock_global", tmp_path / "clock_global")
    code, out, err = cli("verify", str(garden), "--json")
    assert code == 1
    assert err.splitlines()[-2:] == [
        "error: the rebuild of the garden image differs from the original (see above)",
        "hint: a clock reading: compute it inside the pipeline, or drop it in a last cell",
    ]
    report = json.loads(out)
    assert report["match"] is False
    env_stage, runtime_stage, garden_stage = report["stages"]
    assert env_stage["match"] is runtime_stage["match"] is True
    image = json.loads((garden / ".gardenbuild" / "image.json").read_text())["image"]  # the session image
    layers = Buildah().inspect(image)["OCIv1"]["rootfs"]["diff_ids"]
    assert garden_stage["match"] is False and garden_stage["original"] == Buildah().image_id(image)
    assert garden_stage["layer"] == len(layers), "the last layer (the notebook run) differs, no earlier one"
    assert "gardenbuild.runtime.execute" in garden_stage["created_by"]
    assert garden_stage["files"] == ["/garden/session.pkl: content differs"]
    named = [(v["name"], v["type"]) for v in garden_stage["variables"]]
    # The clock reading must be named, first. Once in five whole-suite runs (never when run alone)
    # the notebook's functions were listed after it too; why is not understood yet.
    assert named[0] == ("STARTED", "float") and all(kind == "function" for _, kind in named[1:]), named
    assert garden_stage["rebuilt"] not in storage_ids(), "verify left the differing rebuild behind"
    from gardenbuild.catalog import Catalog

    built = json.loads((garden / ".gardenbuild" / "build.json").read_text())
    recorded = Catalog().verification([built["image_id"]])
    assert recorded["match"] is False and [s["stage"] for s in recorded["stages"] if not s["match"]] == ["garden"]


@integration
def test_a_notebook_that_keeps_a_matplotlib_figure_reproduces_bit_for_bit(env, tmp_path, monkeypatch):
    monkeypatch.setenv("GARDENBUILD_BASE_IMAGE", env["base"])
    cells = ["import matplotlib.pyplot as plt\nfrom gardenbuild import garden_pipeline\n",
             "fig, ax = plt.subplots()\nlines = ax.plot([1, 2, 3], [2, 4, 1])\nax.set_title('a figure, kept')\n",
             "@garden_pipeline\ndef peak(ys: list[float]) -> float:\n    return max(ys)\n"]
    garden = write_garden(tmp_path / "plots", cells, ["peak"], name="rp-plots",
                          environment='requirements = ["matplotlib>=3.8"]')
    code, out, err = cli("verify", str(garden), "--json")
    assert code == 0, err
    assert json.loads(out)["match"] is True
    metadata = json.loads((garden / ".gardenbuild" / "metadata.json").read_text())
    assert metadata["left_out"] == ["ax", "fig", "lines"]  # plotting state stays out of the session
    code, out, err = cli("run", str(garden), "peak", "--input", '{"ys": [1, 5, 2]}')
    assert (code, out) == (0, "5\n"), err


@integration
def test_verify_names_the_unseeded_model_that_keeps_a_notebook_from_reproducing(env, tmp_path, monkeypatch):
    monkeypatch.setenv("GARDENBUILD_BASE_IMAGE", env["base"])
    cells = ["import random\nfrom gardenbuild import garden_pipeline\n",
             "SEED_IS_FIXED = 'no'\nmodel = {'weights': [random.random() for _ in range(3)]}  # no random.seed(...)\n",
             "@garden_pipeline\ndef score(x: float) -> float:\n    return x * sum(model['weights'])\n"]
    garden = write_garden(tmp_path / "unseeded", cells, ["score"], name="rp-unseeded")
    code, out, err = cli("verify", str(garden), "--json")
    assert code == 1
    report = json.loads(out)
    assert [v["name"] for v in report["stages"][2]["variables"]] == ["model"]  # not SEED_IS_FIXED, not score
    code, out, err = cli("verify", str(garden))
    assert code == 1 and "the saved session differs in these notebook variables:\n    model (dict): " in out


@integration
def test_lock_upgrade_of_one_package_moves_only_that_package(env, tmp_path, monkeypatch):
    monkeypatch.setenv("GARDENBUILD_BASE_IMAGE", env["base"])
    garden = copy_garden(FIXTURES / "lock_upgrade", tmp_path / "lock_upgrade")

    def pins() -> dict[str, str]:
        return {w.name: w.version for w in lockfile.read(garden).packages}

    code, out, err = cli("lock", str(garden))
    assert code == 0, err
    held = pins()
    assert held["idna"] == "3.6" and held["six"] == "1.16.0"

    gardenfile = garden / "Gardenfile.toml"
    gardenfile.write_text(gardenfile.read_text().replace('["idna<3.7", "six<1.17"]', '["idna", "six"]'))
    code, out, err = cli("lock", str(garden))
    assert code == 0, err
    assert pins() == held, "relaxing a requirement must not move a pin that still fits"

    code, out, err = cli("lock", str(garden), "--upgrade", "idna")
    assert code == 0, err
    upgraded = pins()
    assert Version(upgraded["idna"]) > Version("3.6")
    assert {n: v for n, v in upgraded.items() if n != "idna"} == {n: v for n, v in held.items() if n != "idna"}
    assert f"  idna 3.6 -> {upgraded['idna']}" in err.splitlines()


# Across machines: the base image extracted into another storage, at another time.
@integration
def test_the_same_lock_gives_the_same_images_in_another_storage(example, env, tmp_path, monkeypatch):
    garden, first = example
    env_id = Buildah().image_id(first["env_image"])
    time.sleep(1.5)  # the base image's files get a different ctime in the other storage
    conf = make_storage(tmp_path / "storage", env["base"])
    try:
        monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
        monkeypatch.setenv("GARDENBUILD_CACHE", str(fresh_cache(env, tmp_path / "cache")))
        code, out, err = cli("build", str(copy_garden(garden, tmp_path / "solubility")), "--json")
        assert code == 0, err
        second = json.loads(out)
        assert Buildah().image_id(second["env_image"]) == env_id, "the env image differs between storages"
        assert (second["image_id"], second["digest"]) == (first["image_id"], first["digest"])
    finally:
        destroy_storage(conf)


# `cache prune` against real buildah: safe here, since the storage is this test's own.
@integration
def test_prune_removes_superseded_images_but_no_users_name(env, tmp_path, monkeypatch):
    conf = make_storage(tmp_path / "storage", env["base"])
    try:
        monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
        monkeypatch.setenv("GARDENBUILD_BASE_IMAGE", env["base"])
        monkeypatch.setenv("GARDENBUILD_CACHE", str(fresh_cache(env, tmp_path / "cache")))
        garden = copy_garden(FIXTURES / "clock_global", tmp_path / "clock_global")
        backend = Buildah()
        builds = []
        for edit in (None, "second", "third"):
            if edit:
                edit_notebook(garden / "clock.ipynb", edit)
            code, out, err = cli("build", str(garden), "--json")
            assert code == 0, err
            builds.append(json.loads(out))
        first, second, last = builds
        backend.tag(first["image_id"], "localhost/someone/keeps-this:v1")
        code, out, err = cli("cache", "--json")
        assert code == 0, err
        # one env image, one runtime image, three session images, three garden images
        assert len(json.loads(out)["images"]) == 8

        code, out, err = cli("cache", "prune", "--json")
        assert code == 0, err
        freed = json.loads(out)
        # The first two builds' session images and the second's garden image; the records of
        # execute-notebook, test, build-api and emit-artifacts, twice.
        assert freed["images"] == 3 and freed["records"] == 8
        images = backend.images()
        names = {n for i in images for n in i["names"]}
        last_session = {n for i in images if i["id"] == last["session_image_id"] for n in i["names"]}
        assert len(last_session) == 1 and next(iter(last_session)).startswith("localhost/gardenbuild/session/")
        assert names == {env["base"], last["env_image"], last["runtime_image"], last["image"],
                         "localhost/someone/keeps-this:v1"} | last_session
        assert backend.image_id("localhost/someone/keeps-this:v1") == first["image_id"]
        assert second["image_id"] not in storage_ids()
        code, out, err = cli("build", str(garden), "--json")
        assert code == 0, err
        assert ran(json.loads(out)) == []
    finally:
        destroy_storage(conf)
