"""Why a step runs: `explain()` compares a plan with the snapshots of the last build.

Plans are made from the example's garden (no files change on disk: the garden and its
input digests are edited as data), and "the last build" is the snapshot of every step
of a first plan, as `Builder.run` remembers it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gardenbuild.plan import lockfile
from gardenbuild.backends.deps import PinnedWheel
from gardenbuild.plan.digests import inputs_for
from gardenbuild.plan.explain import explain, snapshot
from gardenbuild.manifest import garden as garden_module
from gardenbuild.manifest.load import load
from gardenbuild.plan.graph import Plan, Step, key_steps, plan

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "solubility"
ORDER = ["resolve", "fetch", "render-env", "build-env", "build-runtime", "render-garden", "execute-notebook",
         "test", "build-api", "emit-artifacts"]


@pytest.fixture(scope="module")
def base():
    """The example's garden, pinned by its lock, and its input digests: (garden, inputs, lock).

    The base is a registry image at a made-up digest: nothing here depends on the base
    image this machine happens to have."""
    lock = replace(lockfile.read(EXAMPLE), base_image="registry.example/python:3.11", base_digest="sha256:" + "d" * 64)
    garden = load(EXAMPLE).with_base_image(lock.pinned_base)
    return garden, inputs_for(garden, lock.plan_lock()), lock


def remembered(p: Plan) -> dict:
    return {s.id: snapshot(s) for s in p.steps()}


def reasons_after(before: Plan, after: Plan) -> dict[str, list[str]]:
    """explain(after) when `before` was the last build and its records are all still there."""
    built = {s.key for s in before.steps()}
    return explain(after, remembered(before), lambda step: step.key in built)


def test_a_plan_built_before_is_all_cached(base):
    garden, inputs, _ = base
    p = plan(garden, inputs)
    assert reasons_after(p, p) == {step: [] for step in ORDER}


def test_a_first_build_says_never_built(base):
    garden, inputs, _ = base
    assert explain(plan(garden, inputs), {}, lambda step: False) == {step: ["never built"] for step in ORDER}


def test_a_record_or_image_that_disappeared_is_said_so(base):
    garden, inputs, _ = base
    p = plan(garden, inputs)
    gone = p.step("build-env").key
    reasons = explain(p, remembered(p), lambda step: step.key != gone)
    assert reasons["build-env"] == ["its cached result or image was removed"]
    # Its key is unchanged, so what was built from it (still there) is not built again.
    assert [step for step, why in reasons.items() if why] == ["build-env"]


def test_a_notebook_edit_runs_the_notebook_and_what_follows_only(base):
    garden, inputs, _ = base
    edited = replace(inputs, files={**inputs.files, "solubility.ipynb": "0" * 64})
    reasons = reasons_after(plan(garden, inputs), plan(garden, edited))
    assert reasons == {
        "resolve": [], "fetch": [], "render-env": [], "build-env": [], "build-runtime": [], "render-garden": [],
        "execute-notebook": ["file solubility.ipynb changed"],
        "test": ["execute-notebook runs again"],
        "build-api": ["execute-notebook runs again", "test runs again"],
        "emit-artifacts": ["execute-notebook runs again", "test runs again", "build-api runs again"],
    }


def test_data_files_added_and_removed(base):
    garden, inputs, _ = base
    files = {**inputs.files, "data/extra.csv": "1" * 64}
    del files["data/README.md"]
    reasons = reasons_after(plan(garden, inputs), plan(garden, replace(inputs, files=files)))
    assert reasons["execute-notebook"] == ["file data/README.md removed", "file data/extra.csv added"]


def test_template_and_runtime_changes(base):
    garden, inputs, _ = base
    changed = replace(inputs, templates={**inputs.templates, "Containerfile.env.j2": "2" * 64}, runtime="3" * 64)
    reasons = reasons_after(plan(garden, inputs), plan(garden, changed))
    assert reasons["render-env"] == ["template Containerfile.env.j2 changed"]
    assert reasons["build-env"] == ["render-env runs again"]
    assert reasons["build-runtime"] == ["gardenbuild runtime changed"]
    assert reasons["render-garden"] == ["build-runtime runs again"]
    assert reasons["execute-notebook"] == ["render-garden runs again"]
    assert reasons["resolve"] == reasons["fetch"] == []


def test_parameter_changes_name_the_parameter_and_both_values(base):
    garden, inputs, _ = base
    changed = replace(garden, python="3.12", system_packages=("libgomp1",), env=(("OMP_NUM_THREADS", "2"),))
    reasons = reasons_after(plan(garden, inputs), plan(changed, inputs))
    assert reasons["render-env"] == ["system_packages: added libgomp1"]
    assert reasons["render-garden"] == ["env OMP_NUM_THREADS: 1 -> 2"]
    assert "labels dev.gardenbuild.python: 3.11 -> 3.12" in reasons["build-api"]  # labels: the garden image's


def test_a_pipeline_test_edit_is_said_in_words(base):
    garden, inputs, _ = base
    pipeline = garden.pipelines[0]
    extra = garden_module.TestSpec(input={"smiles": ["C"]}, expected=[0.0], tolerance=1.0)
    changed = replace(garden, pipelines=(replace(pipeline, tests=pipeline.tests + (extra,)),))
    reasons = reasons_after(plan(garden, inputs), plan(changed, inputs))
    assert reasons["test"] == ["the pipeline tests changed"]
    assert reasons["render-garden"] == reasons["execute-notebook"] == reasons["build-env"] == []


def test_a_package_upgrade_in_the_lock_names_the_package(base):
    garden, inputs, lock = base
    numpy = next(w for w in lock.packages if w.name == "numpy")
    newer = PinnedWheel("numpy", "9.9.9", numpy.filename.replace(numpy.version, "9.9.9"), numpy.url, "9" * 64, numpy.size)
    upgraded = replace(lock, packages=tuple(newer if w is numpy else w for w in lock.packages))
    reasons = reasons_after(plan(garden, inputs), plan(garden, replace(inputs, lock=upgraded.plan_lock())))
    assert reasons["resolve"] == [f"package numpy {numpy.version} -> 9.9.9"]
    assert reasons["fetch"] == ["resolve runs again"]
    assert reasons["build-env"] == ["resolve runs again", "fetch runs again"]
    assert reasons["render-env"] == []


def test_a_new_base_digest_is_named_shortened(base):
    garden, inputs, lock = base
    rebased = replace(lock, base_digest="sha256:" + "f" * 64)
    after = plan(garden.with_base_image(rebased.pinned_base), replace(inputs, lock=rebased.plan_lock()))
    reasons = reasons_after(plan(garden, inputs), after)
    (why,) = reasons["resolve"]
    assert why.startswith("base image registry.example/python:3.11@sha256:dddddd") and " -> " in why
    assert all(len(side) <= 60 for side in why.removeprefix("base image ").split(" -> "))
    assert reasons["render-env"][0].startswith("base_image registry.example/python:3.11@sha256:dd")
    assert reasons["build-env"] == ["resolve runs again", "fetch runs again", "render-env runs again"]


def test_starting_or_stopping_to_use_the_lock(base):
    garden, inputs, _ = base
    unlocked = replace(inputs, lock=None)
    assert reasons_after(plan(garden, unlocked), plan(garden, inputs))["resolve"] == [
        "dependencies are now pinned by Gardenfile.lock"]
    assert reasons_after(plan(garden, inputs), plan(garden, unlocked))["resolve"] == ["Gardenfile.lock is not used"]


def one_step_plan(params: dict, previous_key: str = "") -> Plan:
    return Plan(None, key_steps([Step("render-env", "render", "render", params)]))  # type: ignore[arg-type]


def test_a_reordered_list_is_reported_even_after_another_parameters_change():
    before = one_step_plan({"a": ["p", "q"], "b": ["x", "y"]})
    after = one_step_plan({"a": ["p", "r"], "b": ["y", "x"]})
    assert reasons_after(before, after)["render-env"] == ["a: removed q", "a: added r", "b reordered"]


def test_a_changed_key_with_equal_parameters_and_cached_parents_still_gives_a_reason():
    p = one_step_plan({"a": 1})
    previous = {"render-env": {**snapshot(p.step("render-env")), "key": "an older key"}}
    assert explain(p, previous, lambda step: False) == {"render-env": ["its inputs changed"]}


def test_verify_names_the_variables_whose_bytes_differ_with_a_fitting_cause():
    from gardenbuild.engine.verify import differing_variables

    same = {"type": "dict", "sha256": "a" * 64, "repr": "{}"}
    a = {"config": same, "model": {"type": "sklearn.ensemble._forest.RandomForestRegressor", "sha256": "1" * 64},
         "STARTED": {"type": "float", "sha256": "2" * 64, "repr": "1796187071.5"},
         "rng": {"type": "numpy.random._generator.Generator", "sha256": "3" * 64},
         "out_dir": {"type": "str", "sha256": "4" * 64, "repr": "'/tmp/tmpab12'"}}
    b = {"config": same, **{k: {**v, "sha256": "f" * 64} for k, v in a.items() if k != "config"}}
    found = {v["name"]: v["hint"] for v in differing_variables(a, b)}
    assert sorted(found) == ["STARTED", "model", "out_dir", "rng"]  # config is the same in both
    assert found["model"].startswith("a model trained without a fixed seed: pass random_state=0")
    assert found["STARTED"].startswith("a clock reading")
    assert found["rng"].startswith("a random generator")
    assert found["out_dir"].startswith("a path that differs between runs")
