"""The front-end commands on the fixture gardens: check, plan, graph, render, schema, init.

Every command runs in-process through `gardenbuild.cli.main`; one test goes through
``python -m gardenbuild`` to prove the real entry point shows no traceback either.
"""

from __future__ import annotations

import json

from gardenbuild.plan import lockfile
import subprocess
import sys
from pathlib import Path

import pytest

from gardenbuild.backends.buildah import Buildah

from gardenbuild.manifest.load import load

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

NAMES = ["solubility", "torch_garden", "tf_garden"]
STEPS = ["resolve", "fetch", "render-env", "build-env", "build-runtime", "render-garden", "execute-notebook",
         "test", "build-api", "emit-artifacts"]


@pytest.fixture(autouse=True)
def no_base_image_override(monkeypatch):
    monkeypatch.delenv("GARDENBUILD_BASE_IMAGE", raising=False)


def notebook(*cells: str) -> str:
    code = [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": s} for s in cells]
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": code})


# --------------------------------------------------------------------------- check


@pytest.mark.parametrize("name", NAMES)
def test_check(name, gardens, run_cli):
    code, out, err = run_cli("check", str(gardens[name]))
    garden = load(gardens[name])
    assert (code, err) == (0, "")
    assert out == (f"ok: {gardens[name] / 'Gardenfile.toml'} (1 pipeline(s), {len(garden.files)} file(s), "
                   f"Python {garden.python}, flavor {garden.flavor.name})\n")


def test_check_solubility_exactly(gardens, run_cli):
    code, out, err = run_cli("check", "--json", str(gardens["solubility"]))
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "ok": True,
        "garden": "solubility",
        "python": "3.11",
        "flavor": "sklearn",
        # Gardenfile.lock pins the base image the example was locked with; it wins over
        # the flavor's default until `gardenbuild lock --upgrade`.
        "base_image": "localhost/gardenbuild/python:3.11",
        "notebook": "solubility.ipynb",
        "pipelines": ["predict_solubility"],
        "requirements": ["numpy>=1.26", "rdkit>=2024.3", "scikit-learn>=1.4"],  # the garden's own
        "added_by_gardenbuild": ["dill>=0.3.6"],  # the runtime's, never shown as the user's
        "files": ["data/README.md", "data/solubility.test.sdf", "data/solubility.train.sdf", "solubility.ipynb"],
        "warnings": [],
    }


@pytest.mark.parametrize("name", NAMES)
def test_check_json(name, gardens, run_cli):
    code, out, _ = run_cli("check", "--json", str(gardens[name]))
    data = json.loads(out)
    assert code == 0 and data["ok"] is True
    assert data["garden"] == load(gardens[name]).name


def test_check_accepts_the_gardenfile_path(gardens, run_cli):
    code, out, _ = run_cli("check", str(gardens["tf_garden"] / "Gardenfile.toml"))
    assert code == 0 and out.startswith("ok: ")


# --------------------------------------------------------------------------- plan, graph


@pytest.mark.parametrize("name", NAMES)
def test_plan_text(name, gardens, run_cli):
    code, out, err = run_cli("plan", str(gardens[name]))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert [line.split()[1] for line in lines] == STEPS
    assert [line.split()[0] for line in lines] == [f"{i}." for i in range(1, len(STEPS) + 1)]


@pytest.mark.parametrize("name", NAMES)
def test_plan_json(name, gardens, run_cli):
    code, out, _ = run_cli("plan", "--json", str(gardens[name]))
    data = json.loads(out)
    assert code == 0
    assert [s["id"] for s in data["steps"]] == STEPS
    assert data["image"].startswith(f"localhost/gardens/{data['garden']}:")
    by_id = {s["id"]: s for s in data["steps"]}
    assert by_id["build-env"]["parents"] == ["resolve", "fetch", "render-env"]
    assert set(by_id["emit-artifacts"]["parents"]) == set(STEPS) - {"emit-artifacts"}
    assert all(len(s["key"]) == 64 for s in data["steps"])
    # the text form shows the same keys, shortened
    _, text, _ = run_cli("plan", str(gardens[name]))
    assert [line.split()[3] for line in text.splitlines()] == [s["key"][:12] for s in data["steps"]]


@pytest.mark.parametrize("name", NAMES)
def test_graph_dot(name, gardens, run_cli):
    code, out, err = run_cli("graph", str(gardens[name]))
    assert (code, err) == (0, "")
    assert out.startswith("digraph garden {\n") and out.endswith("}\n")
    assert '  "resolve" -> "fetch";\n' in out
    assert out.count(" -> ") == 20  # 11 between the steps, 9 into emit-artifacts


@pytest.mark.parametrize("name", NAMES)
def test_graph_mermaid(name, gardens, run_cli):
    code, out, _ = run_cli("graph", "--format", "mermaid", str(gardens[name]))
    assert code == 0
    assert out.startswith("flowchart LR\n")
    assert "  render_env --> build_env\n" in out and "  execute_notebook --> test\n" in out
    assert out.count(" --> ") == 20


def test_graph_json(gardens, run_cli):
    code, out, _ = run_cli("graph", "--json", "--format", "mermaid", str(gardens["torch_garden"]))
    _, text, _ = run_cli("graph", "--format", "mermaid", str(gardens["torch_garden"]))
    assert code == 0
    assert json.loads(out) == {"format": "mermaid", "graph": text}


# --------------------------------------------------------------------------- render


@pytest.mark.parametrize("name", NAMES)
def test_render_all_and_stages(name, gardens, run_cli):
    code, out, err = run_cli("render", str(gardens[name]))
    assert (code, err) == (0, "")
    _, env_file, _ = run_cli("render", "--stage", "env", str(gardens[name]))
    _, runtime_file, _ = run_cli("render", "--stage", "runtime", str(gardens[name]))
    _, garden_file, _ = run_cli("render", "--stage", "garden", str(gardens[name]))
    assert out == (f"# ---- Containerfile.env ----\n{env_file}\n# ---- Containerfile.runtime ----\n{runtime_file}\n"
                   f"# ---- Containerfile ----\n{garden_file}")
    lock = lockfile.read(gardens[name])
    # a localhost/ base is pinned by its digest in local storage, when this machine has it
    base = lock.pinned_base if lock else load(gardens[name]).base_image
    assert env_file.splitlines()[4] in (f"FROM {base}", f"FROM {base}@{Buildah().stored_digest(base)}")


@pytest.mark.parametrize("name", NAMES)
def test_render_json(name, gardens, run_cli):
    code, out, _ = run_cli("render", "--json", str(gardens[name]))
    data = json.loads(out)
    _, garden_file, _ = run_cli("render", "--stage", "garden", str(gardens[name]))
    _, env_file, _ = run_cli("render", "--stage", "env", str(gardens[name]))
    assert code == 0
    _, runtime_file, _ = run_cli("render", "--stage", "runtime", str(gardens[name]))
    assert data == {"Containerfile.env": env_file, "Containerfile.runtime": runtime_file, "Containerfile": garden_file,
                    "env_image": data["env_image"], "runtime_image": data["runtime_image"]}
    assert f"FROM {data['env_image']}\n" in runtime_file and "COPY runtime/" in runtime_file
    assert f"FROM {data['runtime_image']}\n" in garden_file


def test_render_base_image_override(gardens, run_cli, monkeypatch):
    _, out, _ = run_cli("render", "--stage", "env", "--base-image", "localhost/python:3.12", str(gardens["torch_garden"]))
    assert "\nFROM localhost/python:3.12\n" in out
    monkeypatch.setenv("GARDENBUILD_BASE_IMAGE", "localhost/other:1")
    _, out, _ = run_cli("render", "--stage", "env", str(gardens["torch_garden"]))
    assert "\nFROM localhost/other:1\n" in out


# --------------------------------------------------------------------------- schema


def test_schema_is_json_schema_that_accepts_the_gardens(gardens, run_cli):
    jsonschema = pytest.importorskip("jsonschema")
    code, out, err = run_cli("schema")
    assert (code, err) == (0, "")
    schema = json.loads(out)
    assert schema["title"] == "Gardenfile.toml"
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    for name in NAMES:
        data = tomllib.loads((gardens[name] / "Gardenfile.toml").read_text())
        assert list(validator.iter_errors(data)) == [], name
    # ... and rejects what `check` rejects for its shape: an unknown key, a missing table
    bad = tomllib.loads((gardens["solubility"] / "Gardenfile.toml").read_text())
    bad["notebok"] = bad.pop("notebook")
    assert {e.validator for e in validator.iter_errors(bad)} == {"additionalProperties", "required"}


# --------------------------------------------------------------------------- init


@pytest.fixture
def bare(tmp_path):
    """A folder with a notebook and no Gardenfile."""
    folder = tmp_path / "my_model"
    folder.mkdir()
    (folder / "model.ipynb").write_text(notebook(
        "from gardenbuild import garden_pipeline\n",
        "@garden_pipeline\ndef predict(x):\n    return 2 * x\n",
        "def helper():\n    pass\n",
        "@garden_pipeline(description='embed')\nasync def embed(x):\n    return x\n",
    ))
    return folder


def test_init_prefills_decorated_pipelines_and_passes_check(bare, run_cli):
    code, out, err = run_cli("init", str(bare), "--notebook", "model.ipynb", "--flavor", "sklearn", "--python", "3.12")
    gardenfile = bare / "Gardenfile.toml"
    assert (code, err) == (0, "")
    assert out == f"wrote {gardenfile}\nnext: edit it, then run `gardenbuild check {bare}`\n"
    data = tomllib.loads(gardenfile.read_text())
    assert data["notebook"] == "model.ipynb"
    assert data["garden"]["name"] == "my-model"
    assert data["environment"] == {"python": "3.12", "flavor": "sklearn", "requirements": []}
    assert [(p["name"], p["function"]) for p in data["pipeline"]] == [("embed", "embed"), ("predict", "predict")]
    code, out, err = run_cli("check", str(bare))
    assert code == 0 and "2 pipeline(s)" in out
    assert err == ("warning: Gardenfile.toml: the author is still the template's placeholder 'Your Name'; put yours "
                   "in [[garden.authors]] (it goes into the citation and the DOI)\n")


def test_init_without_decorated_functions_leaves_a_placeholder(bare, run_cli):
    (bare / "plain.ipynb").write_text(notebook("def predict(x):\n    return x\n"))
    code, _, _ = run_cli("init", str(bare), "--notebook", "plain.ipynb", "--name", "plain")
    data = tomllib.loads((bare / "Gardenfile.toml").read_text())
    assert code == 0
    assert data["garden"]["name"] == "plain"
    assert data["pipeline"] == [{"name": "predict", "function": "predict"}]
    assert run_cli("check", str(bare))[0] == 0


def test_init_json(bare, run_cli):
    code, out, _ = run_cli("init", "--json", str(bare), "--notebook", "model.ipynb")
    assert code == 0
    assert json.loads(out) == {"gardenfile": str(bare / "Gardenfile.toml")}


def test_init_refuses_to_overwrite(bare, run_cli):
    gardenfile = bare / "Gardenfile.toml"
    gardenfile.write_text("# mine\n")
    code, out, err = run_cli("init", str(bare), "--notebook", "model.ipynb")
    assert (code, out) == (2, "")
    assert err == f"error: {gardenfile} already exists; not overwriting it\nhint: edit it, or remove it first\n"
    assert gardenfile.read_text() == "# mine\n"


@pytest.mark.parametrize(("args", "expected"), [
    (["--python", "3.9"], "error: Python '3.9' is not supported\nhint: choose one of 3.10, 3.11, 3.12, 3.13\n"),
    (["--flavor", "jax"], "error: unknown flavor 'jax'\nhint: available flavors: base, sklearn, tensorflow, torch\n"),
])
def test_init_rejects_bad_options(args, expected, bare, run_cli):
    code, _, err = run_cli("init", str(bare), "--notebook", "model.ipynb", *args)
    assert (code, err) == (2, expected)
    assert not (bare / "Gardenfile.toml").exists()


def test_init_rejects_a_missing_or_outside_notebook(bare, run_cli):
    code, _, err = run_cli("init", str(bare), "--notebook", "modle.ipynb")
    assert (code, err) == (2, f"error: notebook {bare / 'modle.ipynb'} does not exist\nhint: pass --notebook relative to DIR\n")
    (bare.parent / "outside.ipynb").write_text(notebook("def f():\n    pass\n"))
    code, _, err = run_cli("init", str(bare), "--notebook", "../outside.ipynb")
    assert code == 2 and err.startswith("error: notebook ../outside.ipynb is outside ")
    assert not (bare / "Gardenfile.toml").exists()


def test_init_rejects_a_file_that_is_no_notebook(bare, run_cli):
    (bare / "notes.ipynb").write_text("just text")
    code, _, err = run_cli("init", str(bare), "--notebook", "notes.ipynb")
    assert (code, err) == (2, "error: notes.ipynb is not valid JSON (line 1: Expecting value); is it really a .ipynb?\n")


# --------------------------------------------------------------------------- the real entry point


def test_module_entry_point_shows_no_traceback(tmp_path, gardens):
    repo = Path(__file__).resolve().parent.parent  # importable from here even when not installed
    ok = subprocess.run([sys.executable, "-m", "gardenbuild", "check", str(gardens["solubility"])],
                        capture_output=True, text=True, check=False, cwd=repo)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "gardenbuild", "plan", str(tmp_path)],
                         capture_output=True, text=True, check=False, cwd=repo)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr == (f"error: no Gardenfile.toml in {tmp_path}\n"
                          f"hint: create one with: gardenbuild init {tmp_path} --notebook NOTEBOOK.ipynb\n")


def test_the_command_ends_without_teardown_yet_keeps_all_its_output(tmp_path, gardens):
    """`gardenbuild` ends through end_process: the exit code stays main()'s, and output far
    bigger than a pipe's buffer arrives whole (the open-file flush)."""
    repo = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-m", "gardenbuild", "schema"], capture_output=True, text=True,
                         check=False, cwd=repo)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout) > 1000 and json.loads(out.stdout)["title"]
    piped = tmp_path / "schema.json"
    with piped.open("w") as f:  # a file, not a pipe: block-buffered, so only the flush writes it
        subprocess.run([sys.executable, "-m", "gardenbuild", "schema"], stdout=f, check=True, cwd=repo)
    assert piped.read_text() == out.stdout


def test_global_flags_may_follow_the_command(gardens, run_cli):
    code, out, err = run_cli("check", str(gardens["solubility"]), "-q")
    assert (code, err) == (0, "")
    assert out.startswith("ok: ")


def test_the_locked_base_stays_unless_the_gardenfile_names_one(garden_copy, run_cli):
    garden = garden_copy("solubility")  # its Gardenfile.lock pins localhost/gardenbuild/python:3.11
    _, out, _ = run_cli("check", "--json", str(garden))
    assert json.loads(out)["base_image"] == "localhost/gardenbuild/python:3.11"
    gardenfile = garden / "Gardenfile.toml"
    gardenfile.write_text(gardenfile.read_text().replace(
        'flavor = "sklearn"', 'flavor = "sklearn"\nbase_image = "registry.example/python:3.11"'))
    _, out, _ = run_cli("check", "--json", str(garden))
    assert json.loads(out)["base_image"] == "registry.example/python:3.11"
