"""Execute a plan: each step runs against the step store, the wheel cache and a container backend.

A step whose key is already in the store (and whose image still exists) is skipped;
otherwise its handler runs and its record is written atomically at the end. Images are
built under temporary names by the backend and tagged only on success, so a failed or
interrupted build tags nothing.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from gardenbuild import __version__
from gardenbuild.backends.buildah import image_in_storage
from gardenbuild.engine.call import run_tests
from gardenbuild.backends.debs import PinnedDeb, resolve_debs
from gardenbuild.backends.deps import PinnedWheel, Target, WheelStore, find_uv, lock_text, resolve
from gardenbuild.plan.digests import runtime_files
from gardenbuild.plan.explain import snapshot
from gardenbuild.errors import BackendError, BuildError, NotebookError, UserError
from gardenbuild.plan.graph import PLATFORM, Plan, Step
from gardenbuild.plan.render import DEBS, UV, WHEELHOUSE, pipelines_config, render_env, render_garden
from gardenbuild.report import Reporter
from gardenbuild.runtime.protocol import parse_markers
from gardenbuild.engine.store import StepStore

OUTPUT_DIR = ".gardenbuild"


@dataclass
class StepResult:
    id: str
    kind: str
    key: str
    cached: bool
    seconds: float


@dataclass
class BuildResult:
    garden: str
    image: str
    image_id: str
    env_image: str
    out_dir: Path
    digest: str = ""
    steps: list[StepResult] = field(default_factory=list)
    tests: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "garden": self.garden,
            "image": self.image,
            "image_id": self.image_id,
            "digest": self.digest,
            "env_image": self.env_image,
            "output_dir": str(self.out_dir),
            "steps": [asdict(s) for s in self.steps],
            "tests": self.tests,
        }


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
        return NotebookError(message, hint="fix the cell (it must run top to bottom with Restart & Run All), then build again")
    messages = [e.get("message", str(e)) for e in errors]
    hints = list(dict.fromkeys(e.get("hint") or _HINTS.get(e.get("kind"), "") for e in errors))
    return NotebookError("\n".join(messages), hint=" ".join(h for h in hints if h) or None)


def cached_record(store: StepStore, step: Step, backend: Any = None) -> dict[str, Any] | None:
    """The store's record of `step` while it is still good: an image it made is still there.

    Local storage is read directly (no buildah process); where it cannot be read, `backend`
    is asked, and without one the record is trusted (`plan` only reports).
    """
    record = store.get(step.key)
    if record is None or not record.get("image"):
        return record
    present = image_in_storage(record["image_id"], record["image"])
    if present is None and backend is not None:
        present = backend.image_id(record["image"]) == record["image_id"]
    return None if present is False else record  # False: removed or retagged since


class Builder:
    """Runs the steps of a plan in order; one instance per build."""

    def __init__(self, plan: Plan, *, store: StepStore, backend: Any, reporter: Reporter, out_dir: Path | None = None,
                 fresh: bool = False) -> None:
        """`fresh` rebuilds images without any layer cache and leaves them untagged (for verify)."""
        self.fresh = fresh
        self.plan = plan
        self.garden = plan.garden
        self.store = store
        self.backend = backend
        self.reporter = reporter
        self.wheels = WheelStore(store.root)
        self.out = out_dir or (self.garden.root / OUTPUT_DIR)
        self.records: dict[str, dict[str, Any]] = {}
        self.handlers: dict[str, Callable[[Step], dict[str, Any]]] = {
            "resolve": self._resolve,
            "fetch": self._fetch,
            "render-env": self._render_env,
            "build-env": self._build_env,
            "render-garden": self._render_garden,
            "execute-notebook": self._execute,
            "test": self._test,
            "emit-artifacts": self._emit,
        }

    # -- driver ------------------------------------------------------------------------

    def run(self) -> BuildResult:
        self.out.mkdir(parents=True, exist_ok=True)
        result = BuildResult(self.garden.name, self.plan.image, "", self.plan.env_image, self.out)
        memory = self.store.remembered(self.garden.name, self.garden.root)
        with self.store.lock(f"garden-{self.garden.name}"):
            for step in self.plan.steps():
                started = time.monotonic()
                record = cached_record(self.store, step, self.backend)
                cached = record is not None
                if record is None:
                    self.reporter.step(step.description)
                    record = self.handlers[step.id](step)
                    self.store.put(step.key, step.kind, record)
                self.records[step.id] = record
                self._write_outputs(step, record)
                if memory.get(step.id, {}).get("key") != step.key:
                    memory[step.id] = snapshot(step)
                    self.store.remember(self.garden.name, self.garden.root, memory)
                result.steps.append(StepResult(step.id, step.kind, step.key, cached, round(time.monotonic() - started, 3)))
        result.image_id = self.records["execute-notebook"]["image_id"]
        result.digest = self.records["execute-notebook"]["digest"]
        result.tests = self.records["test"]["cases"]
        return result

    def _write_outputs(self, step: Step, record: dict[str, Any]) -> None:
        """Files of a step that users read live in the output folder, rewritten from the record."""
        for name, text in record.get("files", {}).items():
            path = self.out / name
            if not path.exists() or path.read_text() != text:
                path.write_text(text)

    # -- steps -------------------------------------------------------------------------

    def _resolve(self, step: Step) -> dict[str, Any]:
        if "locked" in step.params:
            wheels = [PinnedWheel(**w) for w in step.params["locked"]["wheels"]]
            debs = [PinnedDeb(**d) for d in step.params["locked"].get("debs", [])]
        else:
            wheels = resolve(self.garden.requirements, Target(self.garden.python, PLATFORM),
                             indexes=self.garden.indexes, reporter=self.reporter, cache_root=self.store.root)
            debs = resolve_debs(self.garden.system_packages, self.garden.base_image, backend=self.backend,
                                reporter=self.reporter)
        files = {"requirements.lock": lock_text(wheels)}
        if self.garden.system_packages:
            files["system-packages.lock"] = "".join(f"{d.name}={d.version} sha256:{d.sha256}\n" for d in debs)
        return {"wheels": [asdict(w) for w in wheels], "debs": [asdict(d) for d in debs], "files": files}

    def _wheel_list(self) -> list[PinnedWheel]:
        return [PinnedWheel(**w) for w in self.records["resolve"]["wheels"]]

    def _deb_list(self) -> list[PinnedDeb]:
        return [PinnedDeb(**d) for d in self.records["resolve"].get("debs", [])]

    def _fetch(self, step: Step) -> dict[str, Any]:
        self.wheels.fetch(self._wheel_list() + self._deb_list(), self.reporter)
        return {"count": len(self._wheel_list()) + len(self._deb_list())}

    def _render_env(self, step: Step) -> dict[str, Any]:
        return {"files": {"Containerfile.env": render_env(self.garden)}}

    def _render_garden(self, step: Step) -> dict[str, Any]:
        return {"files": {"Containerfile": render_garden(self.garden, self.plan.env_image),
                          "pipelines.json": pipelines_config(self.garden)}}

    def _build_env(self, step: Step) -> dict[str, Any]:
        wheels, debs = self._wheel_list(), self._deb_list()
        self.wheels.fetch(wheels + debs, self.reporter)  # a pruned cache refills here
        context = self.store.scratch()
        try:
            for name, text in self.records["resolve"]["files"].items():
                (context / name).write_text(text)
            containerfile = context / "Containerfile"
            containerfile.write_text(self.records["render-env"]["files"]["Containerfile.env"])
            house = self.wheels.wheelhouse(wheels, context / "wheels")
            debs_dir = self.wheels.wheelhouse(debs, context / "debs")
            image_id = self.backend.bud(
                containerfile, context, tag=None if self.fresh else self.plan.env_image, no_cache=self.fresh,
                volumes=[(house, WHEELHOUSE, "ro"), (debs_dir, DEBS, "ro"), (Path(find_uv()), UV, "ro")],
            )
        finally:
            self.store.discard(context)
        return {"image": self.plan.env_image, "image_id": image_id}

    def _execute(self, step: Step) -> dict[str, Any]:
        context = self.store.scratch()
        log: list[str] = []
        try:
            for rel in self.garden.files:
                dest = context / "garden" / "src" / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.garden.root / rel, dest)
            for rel, path in runtime_files():
                dest = context / "runtime" / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
            files = self.records["render-garden"]["files"]
            (context / "garden" / "pipelines.json").write_text(files["pipelines.json"])
            containerfile = context / "Containerfile"
            containerfile.write_text(files["Containerfile"])
            try:
                image_id = self.backend.bud(containerfile, context, tag=None if self.fresh else self.plan.image,
                                            no_cache=self.fresh, on_line=log.append)
            except BackendError as exc:
                error = notebook_error(getattr(exc, "log", exc.log_tail), self.garden.notebook)
                if error is not None:
                    raise error from None
                raise
        finally:
            self.store.discard(context)
        results, _ = parse_markers("\n".join(log))
        metadata = next((r["metadata_json"] for r in reversed(results) if "metadata_json" in r), None)
        if metadata is None:  # a build served from buildah's layer cache printed nothing
            metadata = self.backend.run(image_id, ["cat", "/garden/metadata.json"]).stdout.decode()
        digest = self.backend.digest(image_id)
        # build.json names the image as soon as it exists, so `run` can reach it even when
        # a pipeline test fails; emit-artifacts rewrites it with the whole summary.
        partial = {"garden": self.garden.name, "image": self.plan.image, "image_id": image_id, "digest": digest,
                   "pipelines": [p.name for p in self.garden.pipelines], "complete": False}
        return {"image": self.plan.image, "image_id": image_id, "digest": digest,
                "files": {"metadata.json": metadata, "build.json": json.dumps(partial, indent=2, sort_keys=True) + "\n"}}

    def _test(self, step: Step) -> dict[str, Any]:
        if not any(p.tests for p in self.garden.pipelines):
            return {"cases": []}
        cases = run_tests(self.backend, self.plan.image)
        for case in cases:
            mark = "pass" if case["passed"] else "FAIL"
            self.reporter.info(f"   {mark} {case['pipeline']}[{case['index']}]: expected {case['expected']}, got {case['actual']}"
                               + (f" ({case['message']})" if case.get("message") and not case["passed"] else ""))
        failed = [c for c in cases if not c["passed"]]
        report = json.dumps({"cases": cases}, indent=2, sort_keys=True) + "\n"
        if failed:
            (self.out / "test-report.json").write_text(report)
            names = ", ".join(f"{c['pipeline']}[{c['index']}]" for c in failed)
            raise BuildError(f"{len(failed)} of {len(cases)} pipeline test(s) failed: {names}",
                             hint=f"fix the pipeline or the test's expected values in {self.garden.gardenfile.name}, "
                                  f"then build again; details in {self.out / 'test-report.json'}; "
                                  f"the image is built, so `gardenbuild run` can try the pipeline meanwhile")
        return {"cases": cases, "files": {"test-report.json": report}}

    def _emit(self, step: Step) -> dict[str, Any]:
        summary = {
            "gardenbuild": __version__,
            "garden": self.garden.name,
            "version": self.garden.meta.version,
            "python": self.garden.python,
            "flavor": self.garden.flavor.name,
            "base_image": self.garden.base_image,
            "env_image": self.plan.env_image,
            "image": self.plan.image,
            "image_id": self.records["execute-notebook"]["image_id"],
            "digest": self.records["execute-notebook"]["digest"],
            "pipelines": [p.name for p in self.garden.pipelines],
            "steps": {s.id: s.key for s in self.plan.steps()},
            "complete": True,
        }
        return {"files": {"build.json": json.dumps(summary, indent=2, sort_keys=True) + "\n"}}


def last_build(root: Path) -> dict[str, Any] | None:
    path = root / OUTPUT_DIR / "build.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def require_build(root: Path, shown_as: str) -> dict[str, Any]:
    """The last build's summary of the garden in `root`; a clear error if there is none."""
    summary = last_build(root)
    if summary is None:
        raise UserError(f"{root} has not been built yet", hint=f"run: gardenbuild build {shown_as}")
    return summary
