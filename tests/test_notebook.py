"""The publisher's loop: `notebook create` (a starter per flavor), `notebook DIR` (JupyterLab
in the garden's environment image, driven over its REST and websocket API), `%pip` into the
Gardenfile, and `notebook publish`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from gardenbuild.manifest.load import load, tomllib
from gardenbuild.manifest.notebook import analyse
from gardenbuild.manifest.scaffold import create, toml_value
from helpers import cli

integration = pytest.mark.integration
FLAVORS = ("base", "sklearn", "torch", "tensorflow")


# ---- pure: the starters, the Gardenfile they come with, %pip's bookkeeping -----------------

@pytest.mark.parametrize("value", [0, -3, 1.5, 1e-6, True, "plain", 'a "quoted" \\ back\nslash', "Löslichkeit ✓",
                                   [1.0, [2, "x"]], {"x": [1.0, 2.0]}, {"a key": {"nested": False}}, [], {}])
def test_test_values_are_written_as_toml_that_reads_back_the_same(value):
    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value


def test_a_value_toml_cannot_hold_is_refused():
    for bad in (float("nan"), None, object()):
        with pytest.raises(ValueError):
            toml_value(bad)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_each_flavor_starts_a_garden_that_checks(tmp_path, flavor):
    gardenfile, notebook = create(tmp_path / f"my-{flavor}", python="3.11", flavor=flavor)
    garden = load(gardenfile.parent)
    assert (garden.name, garden.flavor.name, garden.python) == (f"my-{flavor}", flavor, "3.11")
    [pipeline] = garden.pipelines
    assert pipeline.name == "predict" and len(pipeline.tests) == 1
    facts = analyse(notebook)
    assert facts.pipelines == {"predict"} and not facts.problems
    nb = json.loads(notebook.read_text())
    assert nb["nbformat"] == 4 and nb["cells"][0]["cell_type"] == "markdown"
    assert nb["cells"][0]["source"][0] == f"# My {flavor.title()}\n"
    code, out, err = cli("check", str(gardenfile.parent))
    assert code == 0, err


def test_create_refuses_a_folder_with_files_and_writes_nothing(tmp_path):
    (tmp_path / "mine.ipynb").write_text("{}")
    code, out, err = cli("notebook", "create", str(tmp_path), "--no-open")
    assert code == 2 and f"error: {tmp_path} exists and is not empty" in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.ipynb"]
    code, out, err = cli("notebook", "create", str(tmp_path / "new"), "--flavor", "jax", "--no-open")
    assert code == 2 and "jax" in err and not (tmp_path / "new").exists()
    code, out, err = cli("notebook", "create")
    assert code == 2 and "expected DIR, create DIR or publish DIR" in err


def test_pip_in_the_kernel_declares_what_it_installs(tmp_path, monkeypatch):
    pytest.importorskip("tomlkit")
    from gardenbuild.jupyter.kernel_pip import declare, locked_names, requirements_in

    assert requirements_in(["-q", "toolz>=0.12", "--upgrade", "Humanize"]) == (["toolz>=0.12", "Humanize"], [])
    assert requirements_in(["-r", "reqs.txt", "x"]) == (["x"], ["-r"])
    gardenfile, _ = create(tmp_path / "g", python="3.11", flavor="sklearn")
    before = gardenfile.read_text()
    lock = tmp_path / "requirements.lock"  # as the environment image holds it
    lock.write_text("scikit-learn==1.9.1 --hash=sha256:00\nnumpy==2.3.0 --hash=sha256:11\n")
    assert locked_names(lock) == {"scikit-learn", "numpy"}
    assert declare(gardenfile, ["toolz>=0.12", "Scikit_Learn"], locked_names(lock)) == ["toolz>=0.12"]
    assert declare(gardenfile, ["TOOLZ"]) == []
    after = gardenfile.read_text()
    assert load(gardenfile.parent).own_requirements[-1] == "toolz>=0.12"
    kept = [line for line in before.splitlines() if line.startswith("#")]
    assert kept == [line for line in after.splitlines() if line.startswith("#")], "comments kept"
    text = after.replace('requirements = ["toolz>=0.12"]', 'requirements_file = "requirements.txt"')
    gardenfile.write_text(text)
    (gardenfile.parent / "requirements.txt").write_text("numpy\n")
    assert declare(gardenfile, ["humanize", "numpy"]) == ["humanize"]
    assert (gardenfile.parent / "requirements.txt").read_text() == "numpy\nhumanize\n"


# ---- real: builds and JupyterLab in the environment image ------------------------------------

def extra_build_args(flavor: str, garden: Path) -> list[str]:
    """For torch, the machine's CPU wheel folder when PyTorch's index is out of reach (as test_ml)."""
    if flavor != "torch":
        return []
    from test_ml import cpu_index_reachable, local_torch_wheels

    folder = local_torch_wheels()
    if folder is None and not cpu_index_reachable():
        pytest.skip("no CPU build of torch here (see test_ml)")
    if folder is None:
        return []
    gardenfile = garden / "Gardenfile.toml"
    gardenfile.write_text(gardenfile.read_text().replace('flavor = "torch"\n', 'flavor = "torch"\nindexes = []\n'))
    return ["--find-links", folder]


@integration
@pytest.mark.parametrize("flavor", FLAVORS)
def test_each_starter_builds_tests_and_runs(flavor, base_image, build_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("GARDENBUILD_CACHE", str(build_cache))
    garden = tmp_path / f"new-{flavor}"
    code, out, err = cli("notebook", "create", str(garden), "--flavor", flavor, "--no-open")
    assert code == 0, err
    code, out, err = cli("build", str(garden), "--base-image", base_image, "--json",
                         *extra_build_args(flavor, garden))
    assert code == 0, err
    assert [c["passed"] for c in json.loads(out)["tests"]] == [True]
    code, out, err = cli("run", str(garden), "predict", "--input", '{"x": [0.0, 10.0]}')
    assert code == 0, err
    assert json.loads(out) == pytest.approx([1.0, 21.0], abs=1e-4)


class Kernel:
    """A kernel of a running Jupyter server, over its REST API and websocket channels."""

    def __init__(self, base: str, token: str) -> None:
        import websocket

        self.base, self.token = base, token
        self.id = self.api("POST", "/api/kernels", {"name": "python3"})["id"]
        self.ws = websocket.create_connection(f"{base.replace('http', 'ws', 1)}/api/kernels/{self.id}/channels"
                                              f"?token={token}", timeout=300)

    def api(self, method: str, path: str, body: dict | None = None):
        req = urllib.request.Request(f"{self.base}{path}?token={self.token}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            text = r.read()
        return json.loads(text) if text else None

    def run(self, code: str, timeout: float = 300.0) -> tuple[str, str]:
        """(status, everything printed) of one cell: done when both its execute_reply (shell
        channel) and its idle status (iopub) have come, in whichever order they arrive."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": self.id,
                       "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": True, "allow_stdin": False}}))
        printed, status, idle = [], None, False
        deadline = time.monotonic() + timeout
        while not (status and idle):
            assert time.monotonic() < deadline, f"the kernel did not finish {code!r} within {timeout:g} s"
            self.ws.settimeout(max(1.0, deadline - time.monotonic()))
            m = json.loads(self.ws.recv())
            if m.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = m["msg_type"]
            if kind == "stream":
                printed.append(m["content"]["text"])
            elif kind == "execute_result":
                printed.append(m["content"]["data"]["text/plain"])
            elif kind == "error":
                printed.append(f"{m['content']['ename']}: {m['content']['evalue']}")
            elif kind == "execute_reply":
                status = m["content"]["status"]
            elif kind == "status" and m["content"]["execution_state"] == "idle":
                idle = True
        return status, "".join(printed)

    def close(self) -> None:
        self.ws.close()


@integration
def test_jupyterlab_runs_in_the_environment_image_and_pip_lands_in_the_gardenfile(base_image, build_cache,
                                                                                   tmp_path):
    garden = tmp_path / "lab"
    code, out, err = cli("notebook", "create", str(garden), "--flavor", "sklearn", "--no-open")
    assert code == 0, err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GARDENBUILD_CACHE": str(build_cache), "GARDENBUILD_BASE_IMAGE": base_image}
    proc = subprocess.Popen([sys.executable, "-m", "gardenbuild", "notebook", str(garden), "--port", str(port),
                             "--token", "t0ken"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    kernel = None
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"JupyterLab for lab: http://127.0.0.1:{port}/lab?token=t0ken"), \
            line + proc.stderr.read() if proc.poll() is not None else line
        with pytest.raises(urllib.error.HTTPError) as refused:  # without the token, nothing
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernels", timeout=10)
        assert refused.value.code == 403
        kernel = Kernel(f"http://127.0.0.1:{port}", "t0ken")
        locked = tomllib.loads((garden / "Gardenfile.lock").read_text())
        pins = {p["name"]: p["version"] for p in locked["package"]}
        assert kernel.run("import sklearn, sys; print(sklearn.__version__, sys.executable)") == (
            "ok", f"{pins['scikit-learn']} /opt/garden/venv/bin/python\n")
        assert kernel.run("import os; print(os.getcwd(), sorted(os.listdir('.')))")[1].startswith("/garden [")
        for n, cell in enumerate(json.loads((garden / "notebook.ipynb").read_text())["cells"]):
            if cell["cell_type"] == "code":  # the starter runs as it is, `from gardenbuild import` and all
                status, printed = kernel.run("".join(cell["source"]))
                assert status == "ok", f"cell {n}: {printed}"
        assert kernel.run("print(all(abs(a - b) < 1e-6 for a, b in zip(predict([4.0, 5.0]), [9.0, 11.0])))") == (
            "ok", "True\n")
        status, printed = kernel.run("%pip install -q toolz")
        assert status == "ok" and "added toolz to Gardenfile.toml" in printed, printed
        assert kernel.run("import toolz; print(toolz.__name__)") == ("ok", "toolz\n")  # usable at once
        assert "toolz" in load(garden).own_requirements
        assert "jupyterlab" not in pins and "ipykernel" not in pins  # Jupyter is not the garden's
    finally:
        if kernel is not None:
            kernel.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            proc.kill()
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    assert "JupyterLab stopped; requirements added: toolz; the next build resolves again" in err
    names = subprocess.run(["buildah", "containers", "--format", "{{.ContainerName}}"], capture_output=True,
                           text=True).stdout
    assert "run-" not in " ".join(n for n in names.split() if str(os.getpid()) in n), "no container left"


@integration
def test_notebook_publish_builds_tests_pushes_and_writes_the_page(reg, base_image, build_cache, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("GARDENBUILD_CACHE", str(build_cache))
    monkeypatch.setenv("GARDENBUILD_BASE_IMAGE", base_image)
    garden = tmp_path / "to-publish"
    code, out, err = cli("notebook", "create", str(garden), "--no-open")
    assert code == 0, err
    code, out, err = cli("notebook", "publish", str(garden), "--registry", f"{reg.host}/loop", "--no-tls-verify",
                         "--json")
    assert code == 0, err
    data = json.loads(out)  # the build's and the publish's own output went to stderr
    assert data["image_ref"].startswith(f"{reg.host}/loop/to-publish@sha256:")
    page = Path(data["page"])
    assert page.is_file() and data["image_ref"] in page.read_text()
    assert "built " in err and "published to-publish 0.1.0" in err


# ---- garden-ai notebooks ------------------------------------------------------------------------

#: A notebook in the shape of garden-ai's templates (its 2.x SDK): metadata, an entrypoint, its test.
GARDEN_AI_CELLS = [
    "import numpy as np\nfrom garden_ai import EntrypointMetadata, Paper, entrypoint, entrypoint_test\n",
    'my_entrypoint_meta = EntrypointMetadata(\n'
    '    title="Flower classifier",\n'
    '    description="Tells two kinds of flower apart from four measurements, with a fixed rule.",\n'
    '    authors=["Carberry, Josiah"],\n'
    '    tags=["botany", "classification"],\n'
    '    papers=[Paper(title="The use of multiple measurements in taxonomic problems",\n'
    '                  authors=["Fisher, R. A."], doi="10.1111/j.1469-1809.1936.tb02137.x")],\n'
    '    short_name="classify_flowers",\n'
    ')\n',
    '@entrypoint(metadata=my_entrypoint_meta)\n'
    'def classify_flowers(measurements: list[list[float]]) -> list[int]:\n'
    '    """Class 1 when the petal is longer than 2.5 cm, else 0."""\n'
    '    x = np.asarray(measurements, dtype=float)\n'
    '    return (x[:, 2] > 2.5).astype(int).tolist()\n',
    '@entrypoint_test(classify_flowers)\n'
    'def test_classify_flowers():\n'
    '    result = classify_flowers([[5.1, 3.5, 1.4, 0.2], [6.3, 2.8, 5.1, 1.5]])\n'
    '    assert result == [0, 1], result\n'
    '    return result\n',
    "test_classify_flowers()  # garden-ai skips this while the session is saved\n",
]


def garden_ai_notebook(folder: Path) -> Path:
    from gardenbuild.manifest.scaffold import notebook_json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flowers.ipynb").write_text(notebook_json("# Flowers (a garden-ai notebook)", GARDEN_AI_CELLS))
    return folder


def test_a_garden_ai_notebook_is_read_and_init_takes_its_metadata(tmp_path):
    folder = garden_ai_notebook(tmp_path / "flowers")
    facts = analyse(folder / "flowers.ipynb")
    assert facts.pipelines == {"classify_flowers"} and not facts.problems
    [(function, fields)] = facts.entrypoints
    assert function == "classify_flowers" and fields["title"] == "Flower classifier"
    assert fields["papers"][0]["doi"] == "10.1111/j.1469-1809.1936.tb02137.x"
    code, out, err = cli("init", str(folder), "--notebook", "flowers.ipynb", "--flavor", "sklearn")
    assert code == 0, err
    garden = load(folder)
    assert (garden.meta.title, [a.name for a in garden.meta.authors]) == ("Flower classifier", ["Carberry, Josiah"])
    assert garden.meta.keywords == ("botany", "classification") and garden.meta.papers[0].authors == ("Fisher, R. A.",)
    assert [p.name for p in garden.pipelines] == ["classify_flowers"] and not garden.warnings
    code, out, err = cli("check", str(folder))
    assert code == 0, err  # garden_ai is provided: the imports check does not ask for it
    gardenfile = folder / "Gardenfile.toml"
    gardenfile.write_text(gardenfile.read_text().replace('title = "Flower classifier"', 'title = "Flowers"'))
    [warning] = load(folder).warnings
    assert "[garden] title 'Flowers' differs from the notebook's EntrypointMetadata (of @entrypoint " \
           "classify_flowers): 'Flower classifier'; the Gardenfile's is used" in warning


def test_the_stand_in_marks_entrypoints_and_skips_tests_while_the_session_is_made(monkeypatch):
    from gardenbuild.runtime import garden_ai, pipeline_info

    meta = garden_ai.EntrypointMetadata(title="T", authors=["A"], short_name="go")

    @garden_ai.entrypoint(metadata=meta)
    def run(x):
        return x + 1

    @garden_ai.entrypoint_test(run)
    def test_run():
        return run(1)

    assert pipeline_info(run) == {"name": "go", "description": "", "garden_ai": True}
    assert meta._test_functions == ["test_run"] and getattr(test_run, garden_ai.TEST_MARKER) == "run"
    monkeypatch.setenv("GARDEN_SKIP_TESTS", "True")
    assert test_run() is None
    monkeypatch.delenv("GARDEN_SKIP_TESTS")
    assert test_run() == 2
    with pytest.raises(ValueError):
        garden_ai.entrypoint_test(lambda: None)


@integration
def test_a_garden_ai_notebook_builds_tests_and_runs_unchanged(base_image, build_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("GARDENBUILD_CACHE", str(build_cache))
    folder = garden_ai_notebook(tmp_path / "flowers")
    before = (folder / "flowers.ipynb").read_bytes()
    code, out, err = cli("init", str(folder), "--notebook", "flowers.ipynb", "--flavor", "sklearn")
    assert code == 0, err
    code, out, err = cli("build", str(folder), "--base-image", base_image, "--json")
    assert code == 0, err
    [case] = json.loads(out)["tests"]  # the notebook's @entrypoint_test, run in the image
    assert (case["kind"], case["function"], case["passed"], case["actual"]) == (
        "entrypoint_test", "test_classify_flowers", True, [0, 1])
    assert "pass test_classify_flowers() (garden-ai test of classify_flowers) returned [0, 1]" in err
    code, out, err = cli("run", str(folder), "classify_flowers", "--input",
                         '{"measurements": [[7.0, 3.2, 4.7, 1.4]]}')
    assert (code, out) == (0, "[1]\n"), err
    assert (folder / "flowers.ipynb").read_bytes() == before  # built unchanged


def test_what_the_gardenfile_leaves_out_comes_from_the_entrypoint_metadata(tmp_path):
    folder = garden_ai_notebook(tmp_path / "flowers")
    (folder / "Gardenfile.toml").write_text(
        'notebook = "flowers.ipynb"\n[garden]\nname = "flowers"\ntitle = "Flower classifier"\nlicense = "MIT"\n'
        '[[garden.authors]]\nname = "Carberry, Josiah"\n[environment]\npython = "3.11"\nflavor = "sklearn"\n'
        '[[pipeline]]\nname = "classify_flowers"\n')
    meta = load(folder).meta
    assert meta.description.startswith("Tells two kinds of flower apart")
    assert meta.keywords == ("botany", "classification")
    assert [p.doi for p in meta.papers] == ["10.1111/j.1469-1809.1936.tb02137.x"]
