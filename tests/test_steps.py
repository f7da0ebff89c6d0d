"""A step reads exactly what its key hashes, and writes only what it declares.

Three checks, none needing buildah: every parameter and input of every step is in its
key; the steps that run no outside process give the same output whenever their key is
the same, whatever else about the garden changed; and the executor refuses a record
holding a file or image its step does not declare.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest

import gardenbuild.plan.render
from gardenbuild.engine import builder
from gardenbuild.engine.builder import Builder, Context, check_outputs
from gardenbuild.engine.store import StepStore
from gardenbuild.manifest import garden as garden_module
from gardenbuild.manifest.load import load
from gardenbuild.plan import lockfile
from gardenbuild.plan.digests import inputs_for
from gardenbuild.plan.graph import PlanError, Step, build_graph, plan
from gardenbuild.report import RecordingReporter

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "solubility"
BASE = "registry.example/python:3.11@sha256:" + "d" * 64


def example_plan(garden=None, inputs=None):
    garden = garden or load(EXAMPLE).with_base_image(BASE)
    lock = lockfile.read(EXAMPLE)
    inputs = inputs or inputs_for(garden)
    return plan(garden, replace(inputs, lock=lock.plan_lock(BASE)))


def leaves(value, path=()):
    """Every (path, value) of the scalars in a JSON-like value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, path + (i,))
    else:
        yield path, value


def with_leaf(params, path, new):
    params = copy.deepcopy(dict(params))
    target = params
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return params


def rekeyed(p, step_id, **changes):
    steps = [replace(s, key="", **(changes if s.id == step_id else {})) for s in p.steps()]
    return {n: d["step"].key for n, d in build_graph(steps).nodes(data=True)}


def test_every_parameter_input_and_output_of_every_step_is_in_its_key():
    p = example_plan()
    checked = 0
    for step in p.steps():
        for path, value in leaves(step.params):
            new = (value + "x") if isinstance(value, str) else (not value) if isinstance(value, bool) \
                else (value + 1) if isinstance(value, (int, float)) else "x"
            assert rekeyed(p, step.id, params=with_leaf(step.params, path, new))[step.id] != step.key, (step.id, path)
            checked += 1
        for i, (name, digest) in enumerate(step.inputs):
            inputs = step.inputs[:i] + ((name, "0" * 64),) + step.inputs[i + 1:]
            assert rekeyed(p, step.id, inputs=inputs)[step.id] != step.key, (step.id, name)
            checked += 1
        assert rekeyed(p, step.id, outputs=step.outputs + ("extra",))[step.id] != step.key, step.id
    assert checked > 50


# The garden edits a publisher makes; each must either change a step's key or leave its output alone.
EDITS = {
    "title": lambda g: replace(g, meta=g.meta.model_copy(update={"title": "Another title"})),
    "description": lambda g: replace(g, meta=g.meta.model_copy(update={"description": "Other words."})),
    "version": lambda g: replace(g, meta=g.meta.model_copy(update={"version": "2.0.0"})),
    "license": lambda g: replace(g, meta=g.meta.model_copy(update={"license": "Apache-2.0"})),
    "repository": lambda g: replace(g, meta=g.meta.model_copy(update={"repository": "https://example.org/x"})),
    "keywords": lambda g: replace(g, meta=g.meta.model_copy(update={"keywords": ("other",)})),
    "env": lambda g: replace(g, env=(("OMP_NUM_THREADS", "2"),)),
    "python": lambda g: replace(g, python="3.12"),
    "base": lambda g: g.with_base_image("registry.example/python:3.11@sha256:" + "e" * 64),
    "system packages": lambda g: replace(g, system_packages=("libgomp1",)),
    "requirements": lambda g: replace(g, requirements=g.requirements + ("six",)),
    "a test": lambda g: replace(g, pipelines=(replace(g.pipelines[0], tests=g.pipelines[0].tests + (
        garden_module.TestSpec({"smiles": ["C"]}, [0.0], 1.0),)),)),
    "notebook": lambda g: replace(g, notebook="other.ipynb"),
}
PURE = ("resolve", "render-env", "render-garden", "emit-artifacts")
#: Records the pure steps read from parents that run outside processes.
PARENTS = {
    "build-env": {"image": "localhost/gardenbuild/env:0123", "image_id": "1" * 64, "key": "k1"},
    "build-runtime": {"image": "localhost/gardenbuild/runtime:0123", "image_id": "6" * 64, "key": "k4"},
    "execute-notebook": {"image": "localhost/gardenbuild/session/solubility:4567", "image_id": "2" * 64,
                         "digest": "sha256:" + "3" * 64, "key": "k2"},
    "build-api": {"image": "localhost/gardens/solubility:89ab", "image_id": "4" * 64, "digest": "sha256:" + "5" * 64,
                  "key": "k3"},
}


def output(step: Step, p) -> dict:
    parents = {pid: PARENTS.get(pid, {"key": p.step(pid).key}) for pid in step.parents}
    ctx = Context(parents, EXAMPLE, None, None, None, RecordingReporter())  # type: ignore[arg-type]
    return builder.HANDLERS[step.id](step, ctx)


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_pure_step_with_an_unchanged_key_gives_the_same_output(edit, monkeypatch):
    before = example_plan()
    edited = EDITS[edit](before.garden)
    after = example_plan(edited, inputs_for(before.garden))
    changed = [s for s in PURE if after.step(s).key != before.step(s).key]
    for step_id in PURE:
        if step_id not in changed:
            assert output(after.step(step_id), after) == output(before.step(step_id), before), (edit, step_id)


def test_a_new_gardenbuild_version_reaches_the_rendered_files_through_the_keys(monkeypatch):
    before = example_plan()
    monkeypatch.setattr(gardenbuild.plan.render, "__version__", "9.9.9")
    after = example_plan()
    for step_id in ("render-env", "render-garden"):
        assert after.step(step_id).key != before.step(step_id).key
        assert "9.9.9" in output(after.step(step_id), after)["files"][
            "Containerfile.env" if step_id == "render-env" else "Containerfile"]


# --------------------------------------------------------------------------- declared outputs


def test_check_outputs_refuses_an_undeclared_file_or_image_and_a_missing_one():
    step = Step("render-env", "render", "r", {}, outputs=("Containerfile.env",), key="k")
    check_outputs(step, {"files": {"Containerfile.env": "FROM x\n"}})
    with pytest.raises(PlanError, match=r"^step 'render-env' wrote build\.json, which it does not declare as output$"):
        check_outputs(step, {"files": {"Containerfile.env": "", "build.json": "{}"}})
    with pytest.raises(PlanError, match=r"wrote image localhost/x:1, which it does not declare"):
        check_outputs(step, {"files": {"Containerfile.env": ""}, "image": "localhost/x:1"})
    with pytest.raises(PlanError, match=r"^step 'render-env' did not write its declared output Containerfile\.env$"):
        check_outputs(step, {"files": {}})
    check_outputs(step, {"files": {}}, failed=True)  # a failed step keeps what it has


class NoImages:
    def image_in_storage(self, image_id, name=None):
        return True

    def sweep(self):
        return []


def test_the_executor_refuses_a_handler_that_writes_more_than_its_step_declares(tmp_path):
    p = example_plan(load(EXAMPLE).with_base_image(BASE))
    sneaky = dict(builder.HANDLERS)
    sneaky["render-env"] = lambda step, ctx: {"files": {"Containerfile.env": "FROM x\n", "pipelines.json": "{}"}}
    for step_id in ("resolve", "fetch"):
        sneaky[step_id] = lambda step, ctx: {"files": {n: "" for n in step.files}}
    out = tmp_path / "out"
    build = Builder(p, store=StepStore(tmp_path / "cache"), backend=NoImages(), reporter=RecordingReporter(),
                    out_dir=out, handlers=sneaky)
    with pytest.raises(PlanError, match=r"^step 'render-env' wrote pipelines\.json, which it does not declare"):
        build.run()
    assert not (out / "pipelines.json").exists() and not (out / "Containerfile.env").exists()
    assert StepStore(tmp_path / "cache").get(p.step("render-env").key) is None  # nothing recorded either


def test_every_build_file_a_plan_may_write_is_declared_by_one_step():
    from gardenbuild.plan.graph import BUILD_FILES

    p = example_plan(replace(load(EXAMPLE).with_base_image(BASE), system_packages=("jq",)))
    owners = [s.id for s in p.steps() for _ in s.files]
    assert len(owners) == len(p.files())  # no file has two writers
    assert p.files() == set(BUILD_FILES)
    assert json.loads(p.step("render-garden").params["pipelines"])["garden"] == "solubility"
