"""Planning and rendering: whole-file golden Containerfiles, and Merkle keys that change
exactly when (and only when) something that can change a step's output changes.

Regenerate the golden files after an intended change with
``GARDENBUILD_UPDATE_GOLDEN=1 python -m pytest tests/test_plan_render.py`` and review
the diff. They are rendered as gardenbuild version GOLDEN_VERSION, so releasing a new
version does not touch them (the version is part of the env image's key).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

import gardenbuild.plan.graph
import gardenbuild.plan.render
from gardenbuild.plan.digests import inputs_for
from gardenbuild.manifest.load import load
from gardenbuild.plan.graph import KINDS, Plan, PlanError, Step, build_graph, plan
from gardenbuild.plan.render import render_env, render_garden

GOLDEN = Path(__file__).resolve().parent / "golden"
GOLDEN_VERSION = "0.0.0+golden"
NAMES = ["solubility", "torch_garden", "tf_garden"]
ORDER = ["resolve", "fetch", "render-env", "build-env", "build-runtime", "render-garden", "execute-notebook", "test",
         "build-api", "emit-artifacts"]
ALL = set(ORDER)


@pytest.fixture(autouse=True)
def fixed_version(monkeypatch):
    """Plan and render as one fixed gardenbuild version (it is in the templates and keys)."""
    monkeypatch.setattr(gardenbuild.plan.graph, "__version__", GOLDEN_VERSION)
    monkeypatch.setattr(gardenbuild.plan.render, "__version__", GOLDEN_VERSION)


def make_plan(folder: Path) -> Plan:
    """The garden's plan, its runtime's digest fixed: a runtime edit does not change the golden files."""
    garden = load(folder)
    return plan(garden, replace(inputs_for(garden), runtime="0" * 64))


def keys(folder: Path) -> dict[str, str]:
    return {s.id: s.key for s in make_plan(folder).steps()}


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert before.keys() == after.keys()
    return {step for step in before if before[step] != after[step]}


# --------------------------------------------------------------------------- golden files


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("filename", ["Containerfile.env", "Containerfile"])
def test_golden_containerfile(name, filename, gardens):
    p = make_plan(gardens[name])
    text = render_env(p.garden) if filename == "Containerfile.env" else render_garden(p.garden, p.runtime_image)
    golden = GOLDEN / name / filename
    if os.environ.get("GARDENBUILD_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.is_file(), f"no golden file {golden}; run with GARDENBUILD_UPDATE_GOLDEN=1 to write it"
    assert text == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", NAMES)
def test_golden_files_do_not_depend_on_the_version(name, gardens, monkeypatch):
    """Nothing in the golden files names the real version; with the real version only
    the version mentions and the env image tag differ."""
    p = make_plan(gardens[name])
    fixed = render_env(p.garden), render_garden(p.garden, p.runtime_image)
    monkeypatch.setattr(gardenbuild.plan.graph, "__version__", "9.9.9")
    monkeypatch.setattr(gardenbuild.plan.render, "__version__", "9.9.9")
    q = make_plan(gardens[name])
    real = render_env(q.garden), render_garden(q.garden, q.runtime_image)
    assert q.env_image != p.env_image
    for a, b in zip(fixed, real):
        assert a.replace(GOLDEN_VERSION, "9.9.9").replace(p.env_image, q.env_image).replace(
            p.runtime_image, q.runtime_image) == b


@pytest.mark.parametrize("name", NAMES)
def test_rendered_files_are_sorted_and_complete(name, gardens):
    """What the golden files cannot show on their own: labels sorted, each garden's facts present."""
    from gardenbuild.plan.render import render

    p = make_plan(gardens[name])
    text = render_garden(p.garden, p.runtime_image)
    assert text.startswith(f"# Rendered by gardenbuild {GOLDEN_VERSION};")
    assert f"FROM {p.runtime_image}\n" in text
    assert "\nLABEL " not in text  # the labels are the garden image's: a title edit never runs the notebook
    api = p.step("build-api").params
    card = '{"say":"a \\"quoted\\" $HOME"}'
    api_text = render(api["template"], {**api["context"], "session_image": "localhost/session:x",
                                        "card_label": "dev.gardenbuild.card", "card": card})
    assert api_text.count("\nLABEL ") == 1  # one instruction: each costs buildah tens of milliseconds
    labels = re.findall(r"^\s*(?:LABEL )?([a-z][\w.-]+)=\"", api_text.split("\nLABEL ", 1)[1], re.MULTILINE)
    garden_labels = [label for label in labels if not label.startswith(("dev.gardenbuild.serve.", "dev.gardenbuild.card"))]
    assert garden_labels == sorted(garden_labels) and "dev.gardenbuild.garden" in labels
    assert labels[-1] == "dev.gardenbuild.card" and 'dev.gardenbuild.card="{\\"say\\":\\"a \\\\\\"quoted' in api_text
    assert f'dev.gardenbuild.garden="{p.garden.name}"' in api_text
    env_text = render_env(p.garden)
    assert f"FROM {p.garden.base_image}\n" in env_text
    for package in p.garden.system_packages:
        assert package in env_text


def test_golden_folder_holds_only_known_files():
    found = sorted(str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*") if p.is_file())
    assert found == sorted(f"{n}/{f}" for n in NAMES for f in ("Containerfile", "Containerfile.env"))


# --------------------------------------------------------------------------- plan shape


@pytest.mark.parametrize("name", NAMES)
def test_step_order_and_kinds(name, gardens):
    steps = list(make_plan(gardens[name]).steps())
    assert [s.id for s in steps] == ORDER
    assert [s.kind for s in steps] == [
        "resolve", "fetch", "render", "build-image", "build-image", "render", "execute-notebook", "test",
        "build-image", "emit-artifacts"]
    assert all(s.kind in KINDS for s in steps)
    seen: set[str] = set()
    for s in steps:  # parents always come first
        assert set(s.parents) <= seen
        seen.add(s.id)
    assert len({s.key for s in steps}) == len(steps)
    assert all(re.fullmatch(r"[0-9a-f]{64}", s.key) for s in steps)


def test_image_names(gardens):
    p = make_plan(gardens["solubility"])
    assert p.env_image == f"localhost/gardenbuild/env:{p.step('build-env').key[:20]}"
    assert p.image == f"localhost/gardens/solubility:{p.step('build-api').key[:20]}"


def test_plan_runs_no_process(gardens, monkeypatch):
    """Planning is pure: it must not start a process (no uv, no buildah)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"plan started a process: {args}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    make_plan(gardens["tf_garden"])


# --------------------------------------------------------------------------- keys


@pytest.mark.parametrize("name", NAMES)
def test_keys_are_stable_across_runs_and_folders(name, gardens, garden_copy):
    first = keys(gardens[name])
    assert keys(gardens[name]) == first
    assert keys(garden_copy(name)) == first  # no absolute path, clock or owner in any key


def test_editing_the_notebook_changes_only_execution_and_below(garden_copy):
    folder = garden_copy("solubility")
    before = keys(folder)
    nb_path = folder / "solubility.ipynb"
    nb = json.loads(nb_path.read_text())
    nb["cells"].append({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                        "source": "print('one more line')\n"})
    nb_path.write_text(json.dumps(nb, indent=1))
    assert changed(before, keys(folder)) == {"execute-notebook", "test", "build-api", "emit-artifacts"}


def test_editing_a_data_file_changes_only_execution_and_below(garden_copy):
    folder = garden_copy("solubility")
    before = keys(folder)
    with (folder / "data" / "README.md").open("a") as f:
        f.write("\nOne more note.\n")
    assert changed(before, keys(folder)) == {"execute-notebook", "test", "build-api", "emit-artifacts"}


def test_adding_a_requirement_changes_resolve_and_everything_below(garden_copy):
    folder = garden_copy("solubility")
    before = keys(folder)
    gardenfile = folder / "Gardenfile.toml"
    text = gardenfile.read_text()
    gardenfile.write_text(text.replace('requirements = ["rdkit>=2024.3"]', 'requirements = ["rdkit>=2024.3", "pandas>=2.2"]'))
    assert changed(before, keys(folder)) == ALL - {"render-env"}


def test_a_pip_line_in_the_notebook_is_a_requirement(garden_copy):
    folder = garden_copy("torch_garden")
    before = keys(folder)
    nb_path = folder / "model.ipynb"
    nb = json.loads(nb_path.read_text())
    nb["cells"].insert(0, {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                           "source": "%pip install einops>=0.8\n"})
    nb_path.write_text(json.dumps(nb, indent=1))
    assert "einops>=0.8" in load(folder).requirements
    assert changed(before, keys(folder)) == ALL - {"render-env"}


def test_adding_a_system_package_rebuilds_the_environment(garden_copy):
    folder = garden_copy("torch_garden")
    before = keys(folder)
    gardenfile = folder / "Gardenfile.toml"
    gardenfile.write_text(gardenfile.read_text().replace('["libgomp1"]', '["libgomp1", "libgl1"]'))
    assert changed(before, keys(folder)) == ALL  # resolve pins the .debs too


def test_editing_metadata_changes_only_the_garden_image(garden_copy):
    folder = garden_copy("tf_garden")
    before = keys(folder)
    gardenfile = folder / "Gardenfile.toml"
    gardenfile.write_text(gardenfile.read_text().replace('title = "Tiny Keras classifier"', 'title = "A tiny Keras classifier"'))
    assert changed(before, keys(folder)) == {"build-api", "emit-artifacts"}  # the notebook does not run again


def test_comments_and_key_order_change_nothing(garden_copy):
    folder = garden_copy("tf_garden")
    before = keys(folder)
    gardenfile = folder / "Gardenfile.toml"
    text = gardenfile.read_text().replace("# Metadata.\n", "# Metadata, reworded.\n")
    text = text.replace('version = "0.1.0"\nlicense = "Apache-2.0"\n', 'license = "Apache-2.0"\nversion = "0.1.0"\n')
    gardenfile.write_text(text)
    assert changed(before, keys(folder)) == set()


def test_a_new_version_rebuilds_the_environment(gardens, monkeypatch):
    before = keys(gardens["torch_garden"])
    monkeypatch.setattr(gardenbuild.plan.graph, "__version__", "9.9.9")
    monkeypatch.setattr(gardenbuild.plan.render, "__version__", "9.9.9")
    assert changed(before, keys(gardens["torch_garden"])) == ALL - {"resolve", "fetch"}


# --------------------------------------------------------------------------- build_graph


def step(id: str, parents: tuple[str, ...] = (), outputs: tuple[str, ...] = ()) -> Step:
    return Step(id, "render", f"step {id}", {"n": id}, outputs=outputs or (f"{id}.out",), parents=parents)


def test_build_graph_keys_a_chain():
    graph = build_graph([step("a"), step("b", ("a",)), step("c", ("b",))])
    assert sorted(graph.edges) == [("a", "b"), ("b", "c")]
    assert all(graph.nodes[n]["step"].key for n in graph)


def test_build_graph_rejects_a_cycle():
    with pytest.raises(PlanError) as info:
        build_graph([step("a", ("c",)), step("b", ("a",)), step("c", ("b",))])
    assert str(info.value) == "the build graph has a cycle: a -> b -> c"


def test_build_graph_rejects_a_self_loop():
    with pytest.raises(PlanError, match=r"^the build graph has a cycle: a$"):
        build_graph([step("a", ("a",))])


def test_a_cycle_is_named_from_its_first_step_however_it_is_entered():
    with pytest.raises(PlanError) as info:
        build_graph([step("x"), step("b", ("a",)), step("c", ("b",)), step("a", ("c", "x"))])
    assert str(info.value) == "the build graph has a cycle: b -> c -> a"


def test_steps_come_in_build_order_then_as_given_and_needs_walks_every_parent():
    from gardenbuild.plan.graph import key_steps

    steps = [step("zz-extra"), step("build-api", ("fetch",)), step("fetch", ("resolve",)), step("resolve"),
             step("aa-extra", ("resolve",))]
    p = Plan(None, key_steps(steps))  # type: ignore[arg-type]
    assert [s.id for s in p.steps()] == ["resolve", "fetch", "build-api", "zz-extra", "aa-extra"]
    assert p.needs("build-api") == {"build-api", "fetch", "resolve"} and p.needs("resolve") == {"resolve"}
    assert sorted(p.graph.edges) == [("fetch", "build-api"), ("resolve", "aa-extra"), ("resolve", "fetch")]
    assert p.has("fetch") and not p.has("test")


def test_build_graph_rejects_two_steps_with_one_output():
    with pytest.raises(PlanError) as info:
        build_graph([step("a", outputs=("Containerfile",)), step("b", ("a",), outputs=("log", "Containerfile"))])
    assert str(info.value) == "steps 'a' and 'b' both produce 'Containerfile'"


def test_build_graph_rejects_a_duplicate_id_and_an_unknown_parent():
    with pytest.raises(PlanError, match=r"^two steps share the id 'a'$"):
        build_graph([step("a"), step("a", outputs=("other",))])
    with pytest.raises(PlanError, match=r"^step 'b' depends on unknown step 'x'$"):
        build_graph([step("a"), step("b", ("x",))])


def test_a_parent_key_change_reaches_every_descendant():
    base = [step("a"), step("b", ("a",)), step("c", ("b",)), step("d")]
    edited = [Step("a", "render", "step a", {"n": "a", "edited": True}, outputs=("a.out",))] + base[1:]
    k1 = {n: d["step"].key for n, d in build_graph(base).nodes(data=True)}
    k2 = {n: d["step"].key for n, d in build_graph(edited).nodes(data=True)}
    assert changed(k1, k2) == {"a", "b", "c"}
