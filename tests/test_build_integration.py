"""Build and run for real: fixture gardens go through buildah and their images are called.

Every fixture garden under ``tests/fixtures/gardens`` used here has ``flavor = "base"``
and no requirements (except ``pip_six``), so they share one environment image holding
only dill; the solubility example is built once per module. Gardens are copied to a
temporary folder first (with the example's Gardenfile.lock), so builds write no
``.gardenbuild/`` or lock into the repository.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gardenbuild.backends.buildah import Buildah
from gardenbuild.engine.call import PYTHON
from gardenbuild.engine.store import StepStore
from helpers import cli, copy_garden, write_garden

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "gardens"
SOLUBILITY = REPO / "examples" / "solubility"
STEP_IDS = ["resolve", "fetch", "render-env", "build-env", "build-runtime", "render-garden", "execute-notebook",
            "test", "build-api", "emit-artifacts"]






def tags(name: str) -> list[str]:
    """Every tag of ``localhost/gardens/<name>`` in local storage."""
    listing = subprocess.run(["buildah", "images", "--format", "{{.Name}}:{{.Tag}}"],
                             capture_output=True, text=True, check=True).stdout
    return [line for line in listing.split() if line.startswith(f"localhost/gardens/{name}:")]


def step_records(cache: Path, kind: str) -> set[str]:
    return {e.key for e in StepStore(cache).entries() if e.kind == kind}


@pytest.fixture(autouse=True)
def _cache(build_cache, monkeypatch):
    monkeypatch.setenv("GARDENBUILD_CACHE", str(build_cache))
    monkeypatch.delenv("GARDENBUILD_BASE_IMAGE", raising=False)


@pytest.fixture
def build(base_image, tmp_path):
    """Copy a fixture garden and build it: (garden folder, exit code, stdout, stderr)."""

    def run(fixture: str, *extra: str) -> tuple[Path, int, str, str]:
        garden = copy_garden(FIXTURES / fixture, tmp_path / fixture)
        return (garden, *cli("build", str(garden), "--base-image", base_image, *extra))

    return run


# ---------------------------------------------------------------- the flagship example


@pytest.fixture(scope="module")
def solubility(base_image, build_cache, tmp_path_factory):
    """examples/solubility built once: (garden folder, the --json summary)."""
    garden = copy_garden(SOLUBILITY, tmp_path_factory.mktemp("example") / "solubility")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GARDENBUILD_CACHE", str(build_cache))
        mp.delenv("GARDENBUILD_BASE_IMAGE", raising=False)
        code, out, err = cli("build", str(garden), "--base-image", base_image, "--json")
    assert code == 0, err
    return garden, json.loads(out)


def test_solubility_build_summary(solubility):
    garden, summary = solubility
    assert summary["image"].startswith("localhost/gardens/solubility:")
    assert re.fullmatch(r"[0-9a-f]{64}", summary["image_id"])
    assert Buildah().image_id(summary["image"]) == summary["image_id"]
    # What the failure tests check the absence of, shown present after a good build:
    assert summary["image"] in tags("solubility")
    execute = next(s for s in summary["steps"] if s["id"] == "execute-notebook")
    assert execute["key"] in step_records(Path(os.environ["GARDENBUILD_CACHE"]), "execute-notebook")
    assert [s["id"] for s in summary["steps"]] == STEP_IDS
    for step in summary["steps"]:
        assert isinstance(step["cached"], bool) and isinstance(step["seconds"], float) and step["seconds"] >= 0
    assert summary["tests"] and all(case["passed"] for case in summary["tests"])
    assert (garden / ".gardenbuild" / "build.json").is_file()


def test_the_output_folder_holds_only_what_the_steps_declare(solubility):
    from gardenbuild.engine.prepare import plan_only
    from gardenbuild.manifest.load import load

    garden, _ = solubility
    declared = plan_only(load(garden), backend=Buildah()).files()
    left = {p.relative_to(garden / ".gardenbuild").as_posix() for p in (garden / ".gardenbuild").rglob("*") if p.is_file()}
    assert left == declared


def test_building_the_example_leaves_its_committed_lock_alone(solubility):
    """The lock names the localhost/ base but pins no digest of this machine's."""
    garden, _ = solubility
    assert (garden / "Gardenfile.lock").read_bytes() == (SOLUBILITY / "Gardenfile.lock").read_bytes()


def test_solubility_second_build_is_all_cached(solubility, base_image):
    garden, first = solubility
    code, out, err = cli("build", str(garden), "--base-image", base_image, "--json")
    assert code == 0, err
    again = json.loads(out)
    assert [s["id"] for s in again["steps"] if not s["cached"]] == []
    assert (again["image"], again["image_id"]) == (first["image"], first["image_id"])


def test_solubility_run_predicts_the_gardenfile_values(solubility):
    garden, _ = solubility
    case = tomllib.loads((garden / "Gardenfile.toml").read_text())["pipeline"][0]["test"][0]
    assert case["input"] == {"smiles": ["CCO", "c1ccccc1"]}
    code, out, err = cli("run", str(garden), "predict_solubility", "--input", json.dumps(case["input"]))
    assert code == 0, err
    predictions = json.loads(out)
    assert len(predictions) == 2
    for got, expected in zip(predictions, case["expected"]):
        assert got == pytest.approx(expected, abs=0.05)


def test_solubility_test_command_passes(solubility):
    garden, _ = solubility
    code, out, err = cli("test", str(garden))
    assert code == 0, err
    assert out.strip() == "2 passed, 0 failed"


def test_solubility_invalid_smiles_shows_the_pipelines_own_traceback(solubility):
    garden, _ = solubility
    code, out, err = cli("run", str(garden), "predict_solubility", "--input", '{"smiles": ["CCO", "not-a-molecule"]}')
    assert code == 1 and out == ""
    assert err.startswith("error: pipeline 'predict_solubility' raised ValueError: ")
    assert "not-a-molecule" in err.splitlines()[0]
    assert "Traceback (most recent call last):" in err
    assert re.search(r'File "<solubility\.ipynb cell \d+>", line \d+, in predict_solubility', err)
    for shim in ("gardenbuild/runtime", "runtime/call.py", "dill", "GARDENBUILD-ERROR"):
        assert shim not in err


def test_solubility_input_that_is_not_json_is_bad_input(solubility):
    garden, _ = solubility
    code, out, err = cli("run", str(garden), "predict_solubility", "--input", "{smiles: CCO}")
    assert code == 2 and out == ""
    assert err.startswith("error: --input is not valid JSON")
    assert "Traceback" not in err


def test_solubility_input_that_does_not_fit_the_signature_is_bad_input(solubility):
    garden, _ = solubility
    code, out, err = cli("run", str(garden), "predict_solubility", "--input", '{"smile": ["CCO"]}')
    assert code == 2 and out == ""
    first = err.splitlines()[0]
    assert first.startswith("error: pipeline 'predict_solubility' takes (smiles: list[str]) -> list[float]")
    assert "unexpected 'smile'" in first and "missing 'smiles'" in first


def test_solubility_unknown_pipeline_lists_the_pipelines(solubility):
    garden, _ = solubility
    code, out, err = cli("run", str(garden), "predict", "--input", "{}")
    assert code == 2 and out == ""
    assert err.splitlines() == ["error: solubility has no pipeline 'predict'", "hint: pipelines: predict_solubility"]


PROBE = """
import importlib, json
found = {}
for name in ("pydantic", "jinja2", "networkx", "globus_sdk", "gardenbuild.cli"):
    try:
        importlib.import_module(name)
        found[name] = "imported"
    except Exception as e:
        found[name] = type(e).__name__
from gardenbuild import garden_pipeline
found["garden_pipeline"] = garden_pipeline.__module__
print(json.dumps(found))
"""


def test_image_holds_the_runtime_but_not_the_build_tools_dependencies(solubility):
    _, summary = solubility
    result = Buildah().run(summary["image"], [PYTHON, "-c", PROBE])
    assert result.ok, result.stderr.decode()
    assert json.loads(result.stdout) == {
        "pydantic": "ModuleNotFoundError",
        "jinja2": "ModuleNotFoundError",
        "networkx": "ModuleNotFoundError",
        "globus_sdk": "ModuleNotFoundError",
        "gardenbuild.cli": "ModuleNotFoundError",
        "garden_pipeline": "gardenbuild.runtime",
    }


# ---------------------------------------------------------------- fixture gardens


def test_pip_install_in_the_notebook_is_locked_and_works_offline(build):
    garden, code, out, err = build("pip_six")
    assert code == 0, err
    lock = (garden / ".gardenbuild" / "requirements.lock").read_text()
    assert re.search(r"^six==", lock, re.M), lock
    code, out, err = cli("run", str(garden), "scaled_sum", "--input", '{"x": [1, 2, 3], "factor": 0.5}')
    assert code == 0, err
    assert json.loads(out) == {"total": 3.0, "py2": False}


def test_failing_cell_is_named_and_nothing_is_tagged_or_recorded(build, build_cache):
    before = step_records(build_cache, "execute-notebook")
    garden, code, out, err = build("fail_cell")
    assert code == 1
    assert err.splitlines()[-3:] == [
        "error: fail.ipynb cell 3, line 2: ZeroDivisionError: float division by zero",
        "  2 | ratio = total / 0",
        "hint: fix the cell (it must run top to bottom with Restart & Run All), then build again",
    ]
    assert "Traceback" not in err
    assert tags("it-fail-cell") == []
    assert step_records(build_cache, "execute-notebook") == before
    assert step_records(build_cache, "build-image"), "the steps before the notebook were recorded"


@pytest.mark.parametrize("fixture", ["no_pipeline", "undecorated"])
def test_pipeline_function_without_the_decorator(build, fixture):
    garden, code, out, err = build(fixture)
    assert code == 1
    lines = err.splitlines()
    assert lines[-2] == ("error: pipeline 'predict' names function 'predict', "
                         "which the notebook defines but does not decorate with @garden_pipeline")
    assert lines[-1].startswith("hint: ") and "@garden_pipeline" in lines[-1]
    assert tags(f"it-{fixture.replace('_', '-')}") == []


def test_unpicklable_global_is_named(build):
    garden, code, out, err = build("unpicklable")
    assert code == 1
    lines = err.splitlines()
    assert lines[-2] == ("error: the notebook's variable 'conn' (a socket.socket) cannot be saved with dill: "
                         "TypeError: cannot pickle 'socket' object")
    assert lines[-1].startswith("hint: delete it in a last cell (`del conn`)")
    assert tags("it-unpicklable") == []


def test_failing_test_case_fails_the_build_with_its_values(build):
    garden, code, out, err = build("wrong_expected")
    assert code == 1 and out == ""
    assert "   pass double[0]: expected [2.0, 4.0], got [2.0, 4.0]" in err.splitlines()
    assert ("   FAIL double[1]: expected [2.0, 5.0], got [2.0, 4.0] "
            "(at result[1]: expected 5.0, got 4.0 (off by 1, tolerance 1e-06))") in err.splitlines()
    assert "error: 1 of 2 pipeline test(s) failed: double[1]" in err.splitlines()
    report = json.loads((garden / ".gardenbuild" / "test-report.json").read_text())
    assert [(c["index"], c["passed"], c["actual"]) for c in report["cases"]] == [(0, True, [2.0, 4.0]), (1, False, [2.0, 4.0])]


class Lines:
    """The lines of a stream, read in a thread so waiting for one can time out."""

    def __init__(self, stream) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def _next(self, timeout: float) -> str | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no output for {timeout} s; so far:\n" + "".join(self.seen))

    def until(self, needle: str, timeout: float) -> None:
        while (line := self._next(timeout)) is not None:
            self.seen.append(line)
            if needle in line:
                return
        pytest.fail(f"the output ended before {needle!r}:\n" + "".join(self.seen))

    def rest(self, timeout: float = 30) -> str:
        while (line := self._next(timeout)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


def test_interrupted_build_tags_and_records_nothing(base_image, build_cache, tmp_path):
    """Ctrl-C (SIGINT to the whole process group) while buildah runs the notebook."""
    garden = copy_garden(FIXTURES / "slow_cell", tmp_path / "slow_cell")
    before = step_records(build_cache, "execute-notebook")
    containers = subprocess.run(["buildah", "containers", "-q"], capture_output=True, text=True, check=True).stdout.split()
    proc = subprocess.Popen([sys.executable, "-m", "gardenbuild", "-v", "build", str(garden), "--base-image", base_image],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            env={**os.environ, "GARDENBUILD_CACHE": str(build_cache)}, start_new_session=True)
    try:
        lines = Lines(proc.stdout)
        lines.until("sleeping now", timeout=120)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=60)
        output = lines.rest()
        assert code == 130, output
        assert output.splitlines()[-1] == "error: interrupted; nothing was tagged or cached for the unfinished step"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert tags("it-slow-cell") == []
    assert step_records(build_cache, "execute-notebook") == before
    left = subprocess.run(["buildah", "containers", "-q"], capture_output=True, text=True, check=True).stdout.split()
    assert set(left) <= set(containers), f"the interrupted build left containers behind: {set(left) - set(containers)}"


# --------------------------------------------------------------------------- system packages


def test_system_packages_are_pinned_debs_installed_without_network(base_image, tmp_path):
    garden = copy_garden(FIXTURES / "system_jq", tmp_path / "system_jq")
    code, out, err = cli("build", str(garden), "--base-image", base_image, "--json")
    assert code == 0, err
    lock = tomllib.loads((garden / "Gardenfile.lock").read_text())
    debs = {p["name"]: p for p in lock["system_package"]}
    # jq and the libraries the base image lacks, each pinned by version and sha256.
    assert {"jq", "libjq1", "libonig5"} <= set(debs)
    assert all(len(p["sha256"]) == 64 and p["deb"].endswith(".deb") for p in debs.values())
    assert (garden / ".gardenbuild" / "Containerfile.env").read_text().count("dpkg --install") == 1

    code, out, err = cli("run", str(garden), "query", "--input", '{"doc": {"x": [3, 4]}, "expr": ".x | add"}')
    assert (code, out) == (0, '"7"\n'), err
    image = json.loads((garden / ".gardenbuild" / "build.json").read_text())["image"]
    version = Buildah().run(image, ["dpkg-query", "-W", "-f", "${Version}", "jq"]).stdout.decode()
    assert version == debs["jq"]["version"]


# ---------------------------------------------------------------- the base image, settled once


@pytest.fixture
def remade_base(base_image):
    """A second localhost/ name whose image is re-made (a new digest) on demand, as a fresh
    `base bootstrap` re-makes localhost/gardenbuild/python:3.11; removed afterwards."""
    name = f"localhost/gardenbuild-test/python:{os.getpid()}"

    def remake(label: str) -> str:
        ctr = subprocess.run(["buildah", "from", "--pull=never", "--quiet", base_image],
                             capture_output=True, text=True, check=True).stdout.strip()
        try:
            subprocess.run(["buildah", "config", "--label", f"dev.gardenbuild.test.remade={label}", ctr], check=True)
            subprocess.run(["buildah", "commit", "--quiet", "--timestamp", "0", ctr, name],
                           check=True, capture_output=True)
        finally:
            subprocess.run(["buildah", "rm", ctr], capture_output=True)
        return Buildah().digest(name)

    yield name, remake
    subprocess.run(["buildah", "rmi", "--force", name], capture_output=True)


def test_a_remade_local_base_rebuilds_the_environment_without_touching_the_lock(remade_base, tmp_path):
    name, remake = remade_base
    first = remake("one")
    garden = copy_garden(FIXTURES / "clock_global", tmp_path / "clock_global")
    code, out, err = cli("build", str(garden), "--base-image", name, "--json")
    assert code == 0, err
    lock = (garden / "Gardenfile.lock").read_text()
    assert "base_digest" not in lock.split("[[package]]")[0].replace("# no base_digest", "")
    assert f"{name}@{first}" in (garden / ".gardenbuild" / "Containerfile.env").read_text()
    # On a new base every step runs: each says where its time went (`build --json`, `-v`).
    summary = json.loads(out)
    steps = {s["id"]: s for s in summary["steps"]}
    for bud in ("build-env", "execute-notebook", "build-api"):
        names = [p["name"] for p in steps[bud]["phases"]]
        assert {"buildah start", "commit"} <= set(names) and any(n.startswith("STEP ") for n in names), names
        assert sum(p["seconds"] for p in steps[bud]["phases"]) <= steps[bud]["seconds"] + 0.05
    assert [p["name"] for p in summary["phases"]] == ["check the stamp, load, lock and plan", "steps",
                                                      "record: catalog, old images, stamp"]
    second = remake("two")
    assert second != first
    code, out, err = cli("build", str(garden), "--base-image", name, "--json")
    assert code == 0, err
    ran = [s["id"] for s in json.loads(out)["steps"] if not s["cached"]]
    assert "build-env" in ran and "resolve" in ran  # the plan pins the new digest
    assert f"{name}@{second}" in (garden / ".gardenbuild" / "Containerfile.env").read_text()
    assert (garden / "Gardenfile.lock").read_text() == lock  # nothing machine-local went into the lock
    assert "warning" not in err


def test_a_base_with_another_python_is_refused_before_resolving(build, tmp_path, base_image):
    garden = copy_garden(FIXTURES / "pip_six", tmp_path / "py312")
    gardenfile = garden / "Gardenfile.toml"
    gardenfile.write_text(gardenfile.read_text().replace('python = "3.11"', 'python = "3.12"'))
    assert 'python = "3.12"' in gardenfile.read_text()
    code, out, err = cli("build", str(garden), "--base-image", base_image)
    assert code == 2
    lines = err.splitlines()
    assert re.fullmatch(rf'error: the base image {re.escape(base_image)} runs Python 3\.11\.\d+, '
                        r'but Gardenfile\.toml asks for python = "3\.12"', lines[0]), err
    assert lines[1].startswith('hint: set python = "3.11" in [environment], or build on a base image with Python 3.12')
    assert len(lines) == 2 and "resolving" not in err and not (garden / "Gardenfile.lock").exists()


# ---------------------------------------------------------------- real notebooks: errors that point at the fix


def test_a_missing_requirement_stops_the_build_before_the_first_cell_naming_the_line_to_add(base_image, tmp_path):
    cells = ["from gardenbuild import garden_pipeline\nimport json, time\n",
             "print('training for an hour', flush=True)\ntime.sleep(3600)\n",
             "import matplotlib.pyplot as plt\n\n@garden_pipeline\ndef one() -> int:\n    return 1\n"]
    garden = write_garden(tmp_path / "needs_mpl", cells, ["one"], name="it-needs-mpl")
    code, out, err = cli("check", str(garden))
    assert code == 0 and ('warning: model.ipynb cell 3, line 1: imports matplotlib.pyplot, but no requirement seems '
                          'to provide it (judged by name: no lock yet); add "matplotlib" to requirements') in err
    started = time.monotonic()
    code, out, err = cli("build", str(garden), "--base-image", base_image)
    assert code == 1 and time.monotonic() - started < 120  # not an hour: the cells never ran
    lines = err.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("error: "))
    assert lines[first] == "error: model.ipynb cell 3, line 1: imports matplotlib.pyplot, which is not installed in the image"
    assert lines[first + 1] == 'hint: add "matplotlib" to requirements in [environment] of Gardenfile.toml'
    # now the lock exists and its wheels are cached: check knows, and says it as an error
    code, out, err = cli("check", str(garden))
    assert code == 2 and "imports matplotlib.pyplot, but no locked package provides it" in err


def test_a_module_missing_at_run_time_names_the_requirement_not_the_cell(base_image, tmp_path):
    cells = ["from gardenbuild import garden_pipeline\nyaml = __import__('yaml')\n",
             "@garden_pipeline\ndef one() -> int:\n    return 1\n"]
    garden = write_garden(tmp_path / "dyn", cells, ["one"], name="it-dyn")
    code, out, err = cli("build", str(garden), "--base-image", base_image)
    assert code == 1
    assert "error: model.ipynb cell 1, line 2: ModuleNotFoundError: No module named 'yaml'" in err
    assert "hint: the image has no module 'yaml': add \"pyyaml\" to requirements in [environment]" in err


def test_the_notebook_output_is_kept_and_a_new_test_runs_only_the_test_step(base_image, tmp_path, monkeypatch):
    monkeypatch.setenv("GARDENBUILD_KEEP_IMAGES", "2")
    cells = ["from gardenbuild import garden_pipeline\nimport warnings\nprint('trained: 3 epochs')\n"
             "warnings.warn('an old pickle, be careful')\n",
             "@garden_pipeline\ndef double(x: float) -> float:\n    return 2 * x\n"]
    garden = write_garden(tmp_path / "kept", cells, [], name="it-kept",
                          tables='[[pipeline]]\nname = "double"\n')
    code, out, err = cli("test", str(garden))
    assert code == 2 and "has not been built yet" in err
    code, out, err = cli("build", str(garden), "--base-image", base_image, "--json")
    assert code == 0, err
    executed = json.loads((garden / ".gardenbuild" / "executed.ipynb").read_text())
    first = executed["cells"][0]
    assert first["execution_count"] == 1
    outputs = {o["name"]: o["text"] for o in first["outputs"]}
    assert [o["name"] for o in first["outputs"]] == ["stdout", "stderr"]
    assert outputs["stdout"] == "trained: 3 epochs\n"
    assert "UserWarning: an old pickle, be careful" in outputs["stderr"]
    log = (garden / ".gardenbuild" / "notebook.log").read_text()
    assert "trained: 3 epochs" in log and "UserWarning: an old pickle" in log
    code, out, err = cli("test", str(garden))
    assert code == 2 and "has no test cases" in err  # not "0 passed, 0 failed"

    gardenfile = garden / "Gardenfile.toml"
    gardenfile.write_text(gardenfile.read_text() + "[[pipeline.test]]\ninput = { x = 2 }\nexpected = 4\n")
    code, out, err = cli("build", str(garden), "--base-image", base_image, "--json")
    assert code == 0, err
    steps = {s["id"]: s for s in json.loads(out)["steps"]}
    ran = [s for s in steps if not steps[s]["cached"]]
    assert ran == ["test", "build-api", "emit-artifacts"]  # the notebook did not run again
    assert "session load" in [p["name"] for p in steps["test"]["phases"]]  # so the tests got a container
    code, out, err = cli("test", str(garden))
    assert (code, out) == (0, "1 passed, 0 failed\n")

    nb = garden / "model.ipynb"

    def edit(n: int) -> None:
        notebook = json.loads(nb.read_text())
        notebook["cells"][0]["source"] += f"\nedit = {n}\n"
        nb.write_text(json.dumps(notebook))

    for n in range(3):  # three notebook edits: three more images, of which the newest two stay
        edit(n)
        code, out, err = cli("build", str(garden), "--base-image", base_image, "--json")
        assert code == 0, err
        steps = {s["id"]: s for s in json.loads(out)["steps"]}
        assert not steps["execute-notebook"]["cached"]
        # The tests ran in the notebook's step, right after the session was saved: no container of their own.
        assert [p["name"].split(" (")[0] for p in steps["test"]["phases"]] == ["ran in the notebook's step"]
    assert json.loads((garden / ".gardenbuild" / "test-report.json").read_text())["cases"][0]["passed"]
    assert len(tags("it-kept")) == 2
    edit(3)  # edited, not built
    code, out, err = cli("run", str(garden), "double", "--input", '{"x": 1}')
    assert (code, out) == (0, "2\n")
    assert "warning: model.ipynb changed since the image was built: this calls the image of the earlier version" in err


def test_tests_that_write_into_the_image_run_in_a_container_of_their_own(base_image, tmp_path):
    """The tests run in the notebook's step, so what they write would be committed with it:
    a test that writes gets the notebook run again without them, then a container."""
    cells = ["from gardenbuild import garden_pipeline\n",
             "@garden_pipeline\ndef double(x: float) -> float:\n"
             "    open('called.txt', 'w').write('a pipeline call wrote this')\n    return 2 * x\n"]
    garden = write_garden(tmp_path / "writes", cells, [], name="it-writes",
                          tables='[[pipeline]]\nname = "double"\n[[pipeline.test]]\ninput = { x = 2 }\nexpected = 4\n')
    code, out, err = cli("build", str(garden), "--base-image", base_image, "--json")
    assert code == 0, err
    assert "warning: the pipeline tests wrote /garden/src/called.txt, which must not go into the image" in err
    assert "running the notebook again without them" in err
    summary = json.loads(out)
    test = next(s for s in summary["steps"] if s["id"] == "test")
    assert "session load" in [p["name"] for p in test["phases"]] and summary["tests"][0]["passed"]
    listing = Buildah().run(summary["image_id"], ["ls", "/garden/src"]).stdout.decode().split()
    assert "called.txt" not in listing and "model.ipynb" in listing
