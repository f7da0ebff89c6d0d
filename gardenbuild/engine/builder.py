"""Execute a plan: each step runs against the step store, the wheel cache and a container backend.

A step whose key is already in the store (and whose image still exists) is skipped;
otherwise its handler runs and its record is written atomically at the end. Images are
built under temporary names by the backend and tagged only on success, so a failed or
interrupted build tags nothing.

A handler is a function of its step and a `Context`: it reads its own parameters, the
files its step names as inputs (checking their digests as it reads them) and the records
of its parents, never the garden itself, so a step's key covers everything it reads.
It returns a record; the executor refuses a record holding a file or image the step
does not declare, and writes the declared files into the output folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gardenbuild.backends import Backend, Limits
from gardenbuild.backends.buildah import TimedOut
from gardenbuild.backends.debs import PinnedDeb
from gardenbuild.backends.deps import PinnedWheel, WheelStore, find_uv, lock_text
from gardenbuild.card import LABEL as CARD_LABEL
from gardenbuild.card import complete, label_value
from gardenbuild.engine.call import run_tests, tests_limits, tests_output
from gardenbuild.engine.outputs import OUTPUT_DIR
from gardenbuild.engine.store import StepStore
from gardenbuild.engine.timing import BudClock, Phases
from gardenbuild.errors import (
    BackendError,
    BuildError,
    GardenError,
    NotebookError,
    UserError,
)
from gardenbuild.plan.digests import runtime_files, tree_sha256
from gardenbuild.plan.explain import snapshot
from gardenbuild.plan.graph import (
    BUILD_FILES,
    Plan,
    PlanError,
    Step,
    env_image_name,
    garden_image_name,
    runtime_image_name,
    session_image_name,
    weights_image_name,
)
from gardenbuild.plan.render import DEBS, TESTS_FILE, UV, WHEELHOUSE, render
from gardenbuild.report import Reporter
from gardenbuild.runtime.protocol import parse_markers

#: Beyond the notebook's own limit, what a garden build may take (copying, saving, committing).
BUILD_GRACE_SECONDS = 300
Record = dict[str, Any]


@dataclass
class StepResult:
    id: str
    kind: str
    key: str
    cached: bool
    seconds: float
    phases: list[dict[str, Any]] = field(default_factory=list)  # see gardenbuild.engine.timing


@dataclass
class BuildResult:
    garden: str
    image: str
    image_id: str
    env_image: str
    out_dir: Path
    digest: str = ""
    runtime_image: str = ""
    session_image_id: str = ""
    session_bytes: int | None = None
    steps: list[StepResult] = field(default_factory=list)
    tests: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "garden": self.garden,
            "image": self.image,
            "image_id": self.image_id,
            "digest": self.digest,
            "session_image_id": self.session_image_id,
            "session_bytes": self.session_bytes,
            "env_image": self.env_image,
            "runtime_image": self.runtime_image,
            "output_dir": str(self.out_dir),
            "steps": [asdict(s) for s in self.steps],
            "tests": self.tests,
        }


class StepFailed(GardenError):
    """A step failed but has declared outputs worth keeping (a test report): the executor
    writes `files`, records nothing, and raises `error`."""

    def __init__(self, error: GardenError, files: Mapping[str, str]) -> None:
        super().__init__(error.message, error.hint)
        self.error = error
        self.files = dict(files)


@dataclass
class Context:
    """What a handler may use besides its step: its parents' records and the services."""

    parents: Mapping[str, Record]
    root: Path  # where the step's input files are read from (the step hashes their content)
    store: StepStore
    wheels: WheelStore
    backend: Backend
    reporter: Reporter
    fresh: bool = False  # rebuild images with no layer cache and leave them untagged (verify)
    secrets: Mapping[str, str] = field(default_factory=dict)  # name -> value, for the notebook's run only
    phases: Phases = field(default_factory=Phases)  # where the step's time goes
    #: For the notebook's step: the test step's cases and time limit, run right after the
    #: session is saved (see gardenbuild.runtime.selftest). Not in the step's key: the
    #: results are kept beside the record, and the test step uses them only for these very cases.
    tests: Mapping[str, Any] | None = None

    def bud(self, containerfile: Path, context: Path, **options: Any) -> str:
        """``backend.bud``, its time split into buildah's start, each instruction and the commit."""
        clock = BudClock(self.phases, options.pop("on_line", None))
        try:
            return self.backend.bud(containerfile, context, on_line=clock, **options)
        finally:
            clock.finish()


# Hints for executor errors that carry none of their own.
_HINTS = {
    "pipeline": "mark each pipeline's function in the notebook: `from gardenbuild import garden_pipeline`, "
                "then `@garden_pipeline` on the line above its `def`",
}


def notebook_error(log: str, notebook: str) -> NotebookError | None:
    """Turn the executor's GARDENBUILD-ERROR markers in a build log into one readable error."""
    _, errors = parse_markers(log)
    if not errors:
        return None
    err = errors[-1]
    if err.get("kind") == "cell":
        where = f"{notebook} cell {err.get('cell')}, line {err.get('line')}"
        source = (err.get("source_line") or "").strip()
        message = f"{where}: {err.get('exception')}" + (f"\n  {err.get('line')} | {source}" if source else "")
        return NotebookError(message, hint=err.get("hint") or
                             "fix the cell (it must run top to bottom with Restart & Run All), then build again")
    messages = [e.get("message", str(e)) for e in errors]
    hints = list(dict.fromkeys(e.get("hint") or _HINTS.get(e.get("kind"), "") for e in errors))
    return NotebookError("\n".join(messages), hint=" ".join(h for h in hints if h) or None)


def cached_record(store: StepStore, step: Step, backend: Backend | None = None) -> Record | None:
    """The store's record of `step` while it is still good: an image it made is still there.

    Local storage is read without a process; where it cannot be read, `backend` is
    asked, and without one the record is trusted (`plan` only reports).
    """
    record = store.get(step.key)
    if record is None or not record.get("image"):
        return record
    present = None if backend is None else backend.image_in_storage(record["image_id"], record["image"])
    if present is None and backend is not None:
        present = backend.image_id(record["image"]) == record["image_id"]
    return None if present is False else record  # False: removed or retagged since


def check_outputs(step: Step, record: Record, *, failed: bool = False) -> None:
    """Refuse a record that writes what `step` does not declare (or, on success, lacks a declared file)."""
    files = set(record.get("files", {}))
    undeclared = sorted(files - set(step.files))
    if record.get("image") and not any(o.startswith("image:") for o in step.outputs):
        undeclared.append(f"image {record['image']}")
    if undeclared:
        raise PlanError(f"step '{step.id}' wrote {', '.join(undeclared)}, which it does not declare as output")
    missing = sorted(set(step.files) - files)
    if missing and not failed:
        raise PlanError(f"step '{step.id}' did not write its declared output {', '.join(missing)}")


# -- handlers ------------------------------------------------------------------------------

def _wheels(record: Record) -> list[PinnedWheel]:
    return [PinnedWheel(**w) for w in record["wheels"]]


def _debs(record: Record) -> list[PinnedDeb]:
    return [PinnedDeb(**d) for d in record.get("debs", [])]


def resolve_step(step: Step, ctx: Context) -> Record:
    """Pins from the lock, as files the env build installs from."""
    if "locked" not in step.params:
        raise PlanError("this plan was made without Gardenfile.lock; a build must be prepared first")
    locked = step.params["locked"]
    wheels = [PinnedWheel(**w) for w in locked["wheels"]]
    debs = [PinnedDeb(**d) for d in locked.get("debs", [])]
    files = {"requirements.lock": lock_text(wheels)}
    if "system-packages.lock" in step.files:
        files["system-packages.lock"] = "".join(f"{d.name}={d.version} sha256:{d.sha256}\n" for d in debs)
    return {"wheels": [asdict(w) for w in wheels], "debs": [asdict(d) for d in debs], "files": files}


def fetch_step(step: Step, ctx: Context) -> Record:
    resolved = ctx.parents["resolve"]
    ctx.wheels.fetch(_wheels(resolved) + _debs(resolved), ctx.reporter)
    return {"count": len(resolved["wheels"]) + len(resolved.get("debs", []))}


def render_env_step(step: Step, ctx: Context) -> Record:
    return {"files": {"Containerfile.env": render(step.params["template"], step.params["context"])}}


def render_garden_step(step: Step, ctx: Context) -> Record:
    context = {**step.params["context"], "from_image": ctx.parents["build-runtime"]["image"]}
    return {"files": {"Containerfile": render(step.params["template"], context),
                      "pipelines.json": step.params["pipelines"]}}


def build_env_step(step: Step, ctx: Context) -> Record:
    resolved = ctx.parents["resolve"]
    wheels, debs = _wheels(resolved), _debs(resolved)
    image = env_image_name(step)
    context = ctx.store.scratch()
    try:
        with ctx.phases.phase("check the wheel cache, link the wheelhouse"):
            ctx.wheels.fetch(wheels + debs, ctx.reporter)  # a pruned cache refills here
            for name, text in resolved["files"].items():
                (context / name).write_text(text)
            containerfile = context / "Containerfile"
            containerfile.write_text(ctx.parents["render-env"]["files"]["Containerfile.env"])
            house = ctx.wheels.wheelhouse(wheels, context / "wheels")
            debs_dir = ctx.wheels.wheelhouse(debs, context / "debs")
        image_id = ctx.bud(
            containerfile, context, tag=None if ctx.fresh else image, no_cache=ctx.fresh,
            volumes=[(house, WHEELHOUSE, "ro"), (debs_dir, DEBS, "ro"), (Path(find_uv()), UV, "ro")],
        )
    finally:
        ctx.store.discard(context)
    return {"image": image, "image_id": image_id}


def _weights_pins(step_params: Mapping[str, Any], root: Path) -> list[PinnedWheel]:
    """The weights as cache entries: a URL's, or the garden file's (as a file URL)."""
    pins = []
    for w in step_params["weights"]:
        url = w["url"] or (root / w["path"]).resolve().as_uri()
        pins.append(PinnedWheel(w["name"], "weights", w["filename"], url, w["sha256"], None))
    return pins


def fetch_weights_step(step: Step, ctx: Context) -> Record:
    """Weights into the content-addressed cache (checked against their sha256 as they come)."""
    for w in step.params["weights"]:
        if w["path"] and not Path(os.path.realpath(ctx.root / w["path"])).is_relative_to(ctx.root.resolve()):
            raise UserError(f"weights '{w['name']}': {w['path']} now leads outside the garden folder")
    try:
        ctx.wheels.fetch(_weights_pins(step.params, ctx.root), ctx.reporter)
    except GardenError as exc:
        if "sha256 mismatch" in exc.message:
            raise UserError(exc.message.replace("sha256 mismatch for", "the weights file") + "",
                            hint="put the file's real sha256 in [[weights]] (sha256sum FILE), or restore the file") \
                from None
        raise
    return {"weights": [asdict(p) for p in _weights_pins(step.params, ctx.root)]}


def build_weights_step(step: Step, ctx: Context) -> Record:
    """FROM the environment, COPY the weights: an image of its own, so the layer is shared."""
    pins = [PinnedWheel(**p) for p in ctx.parents["fetch-weights"]["weights"]]
    image = weights_image_name(step)
    context = ctx.store.scratch()
    try:
        for pin in pins:
            dest = context / "weights" / pin.name
            ctx.wheels.wheelhouse([pin], dest)
        containerfile = context / "Containerfile"
        containerfile.write_text(render(step.params["template"], {
            "gardenbuild_version": step.params["gardenbuild_version"], "env_image": ctx.parents["build-env"]["image"],
            "weights_dir": step.params["weights_dir"], "user": step.params["user"],
            "names": [p.name for p in pins]}))
        image_id = ctx.bud(containerfile, context, tag=None if ctx.fresh else image, no_cache=ctx.fresh)
    finally:
        ctx.store.discard(context)
    return {"image": image, "image_id": image_id}


def build_runtime_step(step: Step, ctx: Context) -> Record:
    """FROM the environment (and weights), COPY the runtime and compile it: an image of its own."""
    image = runtime_image_name(step)
    context = ctx.store.scratch()
    try:
        with ctx.phases.phase("copy the runtime"):
            runtime = runtime_files()
            if tree_sha256(runtime) != dict(step.inputs)["runtime"]:
                raise UserError("gardenbuild's runtime changed while the garden was building", hint="build again")
            for rel, path in runtime:
                dest = context / "runtime" / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
            containerfile = context / "Containerfile"
            containerfile.write_text(render(step.params["template"], {
                **step.params["context"], "from_image": ctx.parents[step.params["from"]]["image"]}))
        image_id = ctx.bud(containerfile, context, tag=None if ctx.fresh else image, no_cache=ctx.fresh, layers=False)
    finally:
        ctx.store.discard(context)
    return {"image": image, "image_id": image_id}


def _copy_checked(root: Path, rel: str, dest: Path, sha256: str) -> None:
    """Copy ``root/rel`` to `dest`, refusing it unless it is inside `root` (a link swapped in
    since planning may not lead out) and its content is the one the step's key hashed."""
    src = root / rel
    if not Path(os.path.realpath(src)).is_relative_to(root.resolve()):
        raise UserError(f"{rel} now leads outside the garden folder ({os.path.realpath(src)})",
                        hint="gardenbuild never copies a file from outside the folder; remove the link")
    shown = rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with src.open("rb") as fin, dest.open("wb") as fout:
        while chunk := fin.read(1 << 20):
            digest.update(chunk)
            fout.write(chunk)
    if digest.hexdigest() != sha256:
        raise UserError(f"{shown} changed while the garden was building", hint="build again once it stops changing")


def execute_step(step: Step, ctx: Context) -> Record:
    inputs = dict(step.inputs)
    notebook = step.params["notebook"]
    image = session_image_name(step)
    context = ctx.store.scratch()
    log: list[str] = []
    try:
        with ctx.phases.phase("copy the notebook and its files"):
            for rel in step.params["files"]:
                _copy_checked(ctx.root, rel, context / "garden" / "src" / rel, inputs[rel])
        rendered = ctx.parents["render-garden"]["files"]
        (context / "garden" / "pipelines.json").write_text(rendered["pipelines.json"])
        (context / "garden" / "home").mkdir()  # the notebook's HOME: nobody has one of its own
        containerfile = context / "Containerfile"
        containerfile.write_text(rendered["Containerfile"])
        limit = step.params["notebook_seconds"]
        missing = [n for n in step.params["secrets"] if not ctx.secrets.get(n)]
        if missing:
            raise UserError(f"the notebook's secret {', '.join(missing)} is not set in this environment",
                            hint=f"export {missing[0]}=... before building; [environment] secrets names it, and its "
                                 "value is mounted for the notebook's run only, never stored")
        # The tests run in this step, right after the session is saved, unless the notebook has
        # secrets (a test must not see what a call never will). Their folder is mounted always,
        # empty when they do not run here: buildah leaves the mount point in the image.
        tests_dir = context / "tests"
        tests_dir.mkdir()
        tests_dir.chmod(0o755)  # read by the notebook's user
        cases = tests_dir / Path(TESTS_FILE).name
        if ctx.tests and ctx.tests["cases"] and not step.params["secrets"]:
            cases.write_text(json.dumps(dict(ctx.tests)))

        def bud() -> str:
            # The notebook stops itself at its limit; the build as a whole gets a little more.
            # No --layers: the stage is committed once, and no notebook run is ever taken from
            # buildah's layer cache (which would not see a secret's value, say): this step's
            # key decides when the notebook runs.
            return ctx.bud(containerfile, context, tag=None if ctx.fresh else image, layers=False,
                           no_cache=ctx.fresh, on_line=_NotebookProgress(ctx.reporter, log),
                           timeout=limit + BUILD_GRACE_SECONDS + (ctx.tests["seconds"] if cases.exists() else 0),
                           volumes=[(tests_dir, str(Path(TESTS_FILE).parent), "ro")],
                           secrets={n: ctx.secrets[n] for n in step.params["secrets"]})

        try:
            try:
                image_id = bud()
            except BackendError as exc:
                wrote = [e for e in parse_markers(getattr(exc, "log", exc.log_tail))[1] if e.get("kind") == "tests-wrote"]
                if not wrote:
                    raise
                ctx.reporter.warn(f"{wrote[0]['message']}; running the notebook again without them, and the tests in "
                                  "a container of their own")
                log.clear()
                cases.unlink()
                image_id = bud()
        except BackendError as exc:
            error = notebook_error(getattr(exc, "log", exc.log_tail), notebook)
            if error is not None:
                raise error from None
            if isinstance(exc, TimedOut):
                raise BuildError(f"building {notebook} took more than its time limit of {limit:g} s and was stopped",
                                 hint="raise notebook_seconds in the [limits] table of Gardenfile.toml, "
                                      "or build with --notebook-timeout SECONDS") from None
            raise
    finally:
        ctx.store.discard(context)
    results, _ = parse_markers("\n".join(log))
    metadata = next((r["metadata_json"] for r in reversed(results) if "metadata_json" in r), None)
    tests = tests_in_run(results)
    executed = next((r["executed_ipynb"] for r in reversed(results) if "executed_ipynb" in r), None)
    notebook_log = "\n".join(line for line in _run_step_lines(log) if not line.startswith("GARDENBUILD-RESULT "))
    if metadata is None:
        raise StepFailed(BuildError(f"running {notebook} ended without saying what it saved",
                                    hint=f"look at the end of {OUTPUT_DIR}/notebook.log; if the notebook finished, "
                                         "this is a bug in gardenbuild"), {"notebook.log": notebook_log + "\n"})
    with ctx.phases.phase("read the session image"):
        digest = ctx.backend.digest(image_id)
    pipelines = [p["name"] for p in json.loads(rendered["pipelines.json"])["pipelines"]]
    facts = json.loads(metadata)
    session_bytes = facts.get("session_bytes")
    if facts.get("biggest_variables"):
        named = ", ".join(f"{v['name']} ({v['type']}, {v['bytes'] / 1e6:.0f} MB)" for v in facts["biggest_variables"])
        ctx.reporter.warn(f"the saved session is {session_bytes / 1e6:.0f} MB, and every call loads all of it; the "
                          f"biggest variables: {named}. Keep large files as [[weights]] (gardenbuild.weights()) and "
                          "drop what calls do not need in a last cell")
    # image.json names the image as soon as it exists, so `run` can reach it even when a
    # pipeline test fails; build.json (emit-artifacts) is the summary of a whole build.
    built = {"garden": step.params["garden"], "image": image, "image_id": image_id, "digest": digest,
             "pipelines": pipelines, "files": {rel: inputs[rel] for rel in step.params["files"]},
             "session_bytes": session_bytes, "accelerator": step.params["accelerator"]}
    return {"image": image, "image_id": image_id, "digest": digest, "session_bytes": session_bytes,
            **({"tests": tests} if tests else {}),
            "files": {"metadata.json": metadata, "image.json": json.dumps(built, indent=2, sort_keys=True) + "\n",
                      "executed.ipynb": executed or _unexecuted(notebook), "notebook.log": notebook_log + "\n"}}


class _NotebookProgress:
    """Keeps the build's lines, and turns the executor's into progress: the cell running (on a
    terminal) and, for a cell that runs long, how long it has been running."""

    _CELL = re.compile(r"^gardenbuild: cell (\d+)/(\d+) ")

    def __init__(self, reporter: Reporter, log: list[str]) -> None:
        self.reporter, self.log = reporter, log

    def __call__(self, line: str) -> None:
        self.log.append(line)
        m = self._CELL.match(line)
        if m:
            self.reporter.progress("notebook cell", int(m.group(1)), int(m.group(2)))
        elif line.startswith(("gardenbuild: notebook cell ", "gardenbuild: ran ", "gardenbuild: left out")):
            self.reporter.info("   " + line.removeprefix("gardenbuild: "))


def _run_step_lines(log: list[str]) -> list[str]:
    """The lines the notebook's RUN step printed: from its STEP line to the next one."""
    start = next((i for i, line in enumerate(log) if line.startswith("STEP ") and "runtime.execute" in line), None)
    if start is None:
        return []
    end = next((i for i in range(start + 1, len(log)) if log[i].startswith(("STEP ", "COMMIT"))), len(log))
    return log[start + 1:end]


def _unexecuted(notebook: str) -> str:
    """What stands for the executed notebook when buildah reused the notebook's layer (no run, no output)."""
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{
        "cell_type": "markdown", "metadata": {}, "source": f"{notebook} was not run in this build: buildah reused the "
        "layer of an earlier run, whose outputs were not kept. Build again after `gardenbuild cache prune` to see them."}]},
        indent=1) + "\n"


def tests_in_run(results: list[Any]) -> dict[str, Any] | None:
    """What the pipeline tests gave in the notebook's step (`gardenbuild.runtime.selftest`):
    ``{"given", "cases", "timings", "seconds"}``, or None when they did not run there or could
    not run at all (the test step then runs them in a container and reports why)."""
    ran = next((r["tests_in_run"] for r in reversed(results) if "tests_in_run" in r), None)
    if not ran or ran.get("returncode") not in (0, 1):
        return None
    out, errors = tests_output(ran["stdout"])
    if errors or out is None:
        return None
    return {"given": ran["given"], "cases": out["cases"], "timings": out.get("timings", {}), "seconds": ran["seconds"]}


def entrypoint_tests(metadata_json: str) -> list[dict[str, Any]]:
    """The test cases of a garden-ai notebook's ``@entrypoint_test`` functions, as the
    notebook's run found them: each is called with no arguments and passes if it returns."""
    found = json.loads(metadata_json).get("entrypoint_tests") or []
    return [{"pipeline": t["entrypoint"], "index": t["function"], "kind": "entrypoint_test", "function": t["function"],
             "expected": None} for t in found]


def test_step(step: Step, ctx: Context) -> Record:
    given = step.params["cases"] + entrypoint_tests(ctx.parents["execute-notebook"]["files"]["metadata.json"])
    if not given:
        report = {"cases": []}
        return {"cases": [], "files": {"test-report.json": json.dumps(report, indent=2) + "\n"}}
    limits = Limits(seconds=step.params["limits"]["seconds"], memory=step.params["limits"]["memory"])  # per case
    ran = ctx.parents["execute-notebook"].get("tests")
    if ran and ran["given"] == given:  # run right after the session was saved, in the notebook's step
        cases = ran["cases"]
        ctx.phases.add("ran in the notebook's step (session load "
                       f"{ran['timings'].get('load_s', 0):.2f} s)", ran["seconds"])
    else:
        cases = run_tests(ctx.backend, ctx.parents["execute-notebook"]["image"], given, limits, phases=ctx.phases)
    for case in cases:
        mark = "pass" if case["passed"] else "FAIL"
        what = (f"{case['function']}() (garden-ai test of {case['pipeline']}) returned {case['actual']}"
                if case.get("kind") == "entrypoint_test" else
                f"{case['pipeline']}[{case['index']}]: expected {case['expected']}, got {case['actual']}")
        ctx.reporter.info(f"   {mark} {what}" + (f" ({case['message']})" if case.get("message") and not case["passed"] else ""))
    report = json.dumps({"cases": cases}, indent=2, sort_keys=True) + "\n"
    failed = [c for c in cases if not c["passed"]]
    if failed:
        names = ", ".join(f"{c['pipeline']}[{c['index']}]" for c in failed)
        error = BuildError(f"{len(failed)} of {len(cases)} pipeline test(s) failed: {names}",
                           hint=f"fix the pipeline or the test's expected values in Gardenfile.toml, then build again; "
                                f"details in {ctx.root / OUTPUT_DIR / 'test-report.json'}; the image is built, "
                                f"so `gardenbuild run` can try the pipeline meanwhile")
        raise StepFailed(error, {"test-report.json": report})
    return {"cases": cases, "files": {"test-report.json": report}}


def build_api_step(step: Step, ctx: Context) -> Record:
    """FROM the tested session image: its API folder and the command that serves it."""
    session = ctx.parents["execute-notebook"]
    image = garden_image_name(step)
    context = ctx.store.scratch()
    try:
        (context / "api").mkdir()
        for name, text in step.params["files"].items():
            (context / "api" / name).write_text(text)
        card = complete(step.params["card"], json.loads(session["files"]["metadata.json"]),
                        ctx.parents["resolve"].get("wheels", []))
        containerfile = context / "Containerfile"
        containerfile.write_text(render(step.params["template"], {
            **step.params["context"], "session_image": session["image"], "card_label": CARD_LABEL,
            "card": label_value(card)}))
        # One commit for the whole stage (no layer per instruction): the step's key already
        # says when it must run, so buildah's layer cache would only add commits.
        image_id = ctx.bud(containerfile, context, tag=None if ctx.fresh else image, no_cache=ctx.fresh,
                           layers=False)
    finally:
        ctx.store.discard(context)
    return {"image": image, "image_id": image_id, "digest": ctx.backend.digest(image_id)}


def emit_step(step: Step, ctx: Context) -> Record:
    executed = ctx.parents["execute-notebook"]
    final = ctx.parents["build-api"]
    summary = {
        **step.params["summary"],
        "env_image": ctx.parents["build-env"]["image"],
        "image": final["image"],
        "image_id": final["image_id"],
        "digest": final["digest"],
        "session_image": executed["image"],
        "session_image_id": executed["image_id"],
        "session_bytes": executed.get("session_bytes"),
        "steps": {**{p: r["key"] for p, r in ctx.parents.items()}, step.id: step.key},
        "complete": True,
    }
    return {"files": {"build.json": json.dumps(summary, indent=2, sort_keys=True) + "\n"}}


HANDLERS: dict[str, Callable[[Step, Context], Record]] = {
    "resolve": resolve_step,
    "fetch": fetch_step,
    "render-env": render_env_step,
    "build-env": build_env_step,
    "fetch-weights": fetch_weights_step,
    "build-weights": build_weights_step,
    "build-runtime": build_runtime_step,
    "render-garden": render_garden_step,
    "execute-notebook": execute_step,
    "test": test_step,
    "build-api": build_api_step,
    "emit-artifacts": emit_step,
}


# -- the executor --------------------------------------------------------------------------

class Builder:
    """Runs the steps of a plan in order; one instance per build."""

    def __init__(self, plan: Plan, *, store: StepStore, backend: Backend, reporter: Reporter,
                 out_dir: Path | None = None, fresh: bool = False,
                 handlers: Mapping[str, Callable[[Step, Context], Record]] | None = None,
                 secrets: Mapping[str, str] | None = None) -> None:
        """`fresh` rebuilds images without any layer cache and leaves them untagged (for verify);
        `secrets` are the values of the garden's declared secrets (from the environment)."""
        self.secrets = dict(secrets or {})
        self.plan = plan
        self.garden = plan.garden
        self.store = store
        self.backend = backend
        self.reporter = reporter
        self.fresh = fresh
        self.handlers = dict(handlers or HANDLERS)
        self.wheels = WheelStore(store.root)
        self.out = out_dir or (self.garden.root / OUTPUT_DIR)
        self.records: dict[str, Record] = {}
        self.phases: dict[str, Phases] = {}  # step id -> where its time went, for the steps that ran

    def context(self, step: Step) -> Context:
        tests = None
        if step.id == "execute-notebook" and self.plan.has("test"):
            test = self.plan.step("test").params
            whole = tests_limits(Limits(seconds=test["limits"]["seconds"]), len(test["cases"]))
            tests = {"cases": test["cases"], "seconds": whole.seconds}
        return Context({p: self.records[p] for p in step.parents}, self.garden.root, self.store, self.wheels,
                       self.backend, self.reporter, self.fresh, self.secrets, tests=tests)

    def execute(self, step: Step) -> Record:
        """Run `step`'s handler (no cache), check what it wrote, and return its record."""
        ctx = self.context(step)
        self.phases[step.id] = ctx.phases
        try:
            record = self.handlers[step.id](step, ctx)
        except StepFailed as failure:
            check_outputs(step, {"files": failure.files}, failed=True)
            self._write_files(failure.files)
            raise failure.error from None
        check_outputs(step, record)
        return {**record, "key": step.key}

    def run(self) -> BuildResult:
        result = BuildResult(self.garden.name, self.plan.image, "", self.plan.env_image, self.out)
        result.steps = self._run_steps()
        final, executed = self.records["build-api"], self.records["execute-notebook"]
        result.image_id, result.digest = final["image_id"], final["digest"]
        result.runtime_image = self.records["build-runtime"]["image"]
        result.session_image_id = executed["image_id"]
        result.session_bytes = executed.get("session_bytes")
        result.tests = self.records["test"].get("cases", [])
        return result

    def environment(self) -> Record:
        """Run the steps up to the environment image (resolve, fetch, render, build-env) and
        return its record: what `gardenbuild notebook` starts Jupyter in."""
        self._run_steps(until="build-env")
        return self.records["build-env"]

    def _run_steps(self, until: str | None = None) -> list[StepResult]:
        from gardenbuild.engine.cache import sweep

        self.out.mkdir(parents=True, exist_ok=True)
        memory = self.store.remembered(self.garden.name, self.garden.root)
        ran: list[StepResult] = []
        with self.store.lock(f"garden-{self.garden.name}", reporter=self.reporter):
            sweep(self.store, self.backend, self.reporter)
            steps = list(self.plan.steps())
            if until is not None:  # the step and what it needs, no more
                wanted = self.plan.needs(until)
                steps = [s for s in steps if s.id in wanted]
            for step in steps:
                started = time.monotonic()
                record = cached_record(self.store, step, self.backend)
                cached = record is not None
                if record is None:
                    self.reporter.step(step.description)
                    record = self.execute(step)
                    self.store.put(step.key, step.kind, record)
                self.records[step.id] = record
                self._write_files(record.get("files", {}))
                if memory.get(step.id, {}).get("key") != step.key:
                    memory[step.id] = snapshot(step)
                    self.store.remember(self.garden.name, self.garden.root, memory)
                phases = self.phases[step.id].as_json() if step.id in self.phases else []
                ran.append(StepResult(step.id, step.kind, step.key, cached, round(time.monotonic() - started, 3), phases))
            if until is None:
                self._remove_stale_files()
        return ran

    def _write_files(self, files: Mapping[str, str]) -> None:
        """Files of a step that users read live in the output folder, rewritten from the record."""
        self.out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            path = self.out / name
            if not path.exists() or path.read_text() != text:
                path.write_text(text)

    def _remove_stale_files(self) -> None:
        """Build outputs an earlier plan declared and this one does not (say, a system-packages.lock)."""
        for name in set(BUILD_FILES) - self.plan.files():
            (self.out / name).unlink(missing_ok=True)


