"""`gardenbuild verify`: rebuild a garden from scratch and check it is bit-for-bit the same.

Each image is rebuilt with no layer cache from the same lock: the env image, the garden's
session image (the notebook run) and the garden image that serves it. Equal image ids mean
equal configs, hence equal layer digests and an equal manifest digest. On a mismatch
the first differing layer is named, with the first files that differ inside it.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gardenbuild.backends import Backend
from gardenbuild.engine.builder import Builder
from gardenbuild.runtime.protocol import parse_markers
from gardenbuild.engine.store import StepStore
from gardenbuild.plan.graph import Plan
from gardenbuild.report import Reporter

MAX_FILES = 10


@dataclass
class StageCheck:
    stage: str
    original: str
    rebuilt: str
    digest: str
    layer: int | None = None  # 1-based index of the first differing layer; None when only the config differs
    created_by: str = ""
    files: list[str] = field(default_factory=list)
    variables: list[dict[str, str]] = field(default_factory=list)  # session variables that differ, with a hint

    @property
    def match(self) -> bool:
        return self.original == self.rebuilt

    def as_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "match": self.match, "original": self.original, "rebuilt": self.rebuilt,
                "digest": self.digest, "layer": self.layer, "created_by": self.created_by, "files": self.files,
                "variables": self.variables}


def _members(tar_path: Path) -> dict[str, tuple]:
    """Every entry of a layer tarball: what a reproducible build must keep equal."""
    out = {}
    with tarfile.open(tar_path) as tar:
        for m in tar:
            content = hashlib.sha256(tar.extractfile(m).read()).hexdigest() if m.isfile() else m.linkname
            out[m.name] = (("mode", oct(m.mode)), ("owner", f"{m.uid}:{m.gid}"), ("mtime", m.mtime),
                           ("size", m.size), ("content", content))
    return out


def file_differences(a: dict[str, tuple], b: dict[str, tuple], limit: int = MAX_FILES) -> list[str]:
    """``path: content differs`` lines for entries that differ between two layers (pure)."""
    out = []
    for name in sorted(set(a) | set(b)):
        if name not in a:
            out.append(f"/{name}: only in the rebuild")
        elif name not in b:
            out.append(f"/{name}: only in the original")
        elif a[name] != b[name]:
            what = [k for (k, x), (_, y) in zip(a[name], b[name]) if x != y]
            out.append(f"/{name}: {', '.join(what)} differ{'s' if len(what) == 1 else ''}")
        if len(out) >= limit:
            break
    return out


def _layers(inspect: dict[str, Any]) -> tuple[list[str], list[str]]:
    oci = inspect["OCIv1"]
    created = [h.get("created_by", "") for h in oci.get("history", []) if not h.get("empty_layer")]
    return list(oci["rootfs"]["diff_ids"]), created


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """``config.Env differs`` lines for the fields of two OCI image configs that differ (pure)."""
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if x == y or key == "rootfs":
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            out += [f"{key}.{k} differs" for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]
        else:
            out.append(f"{key} differs")
    return out


def explain_mismatch(backend: Backend, original: str, rebuilt: str, check: StageCheck) -> None:
    inspect_a, inspect_b = backend.inspect(original), backend.inspect(rebuilt)
    ids_a, created = _layers(inspect_a)
    ids_b, _ = _layers(inspect_b)
    if ids_a == ids_b:  # every layer is the same: the image configs (labels, env, history) differ
        check.files = config_differences(inspect_a["OCIv1"], inspect_b["OCIv1"]) or ["the image configs differ"]
        return
    index = next((i for i, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y), min(len(ids_a), len(ids_b)))
    check.layer = index + 1
    check.created_by = created[index] if index < len(created) else ""
    if index >= len(ids_a) or index >= len(ids_b):
        check.files = ["the images have a different number of layers"]
        return
    with tempfile.TemporaryDirectory(prefix="gardenbuild-verify-") as tmp:
        da = backend.export_layers(original, Path(tmp) / "a")
        db = backend.export_layers(rebuilt, Path(tmp) / "b")
        layer_a = da / ids_a[index].split(":", 1)[1]
        layer_b = db / ids_b[index].split(":", 1)[1]
        check.files = file_differences(_members(layer_a), _members(layer_b))


def session_digests(backend: Backend, image: str) -> dict[str, dict[str, str]]:
    """Type and sha256 of each variable of the image's saved session (see `call --digests`)."""
    from gardenbuild.engine.call import PYTHON

    run = backend.run(image, [PYTHON, "-m", "gardenbuild.runtime.call", "--digests"])
    results, _ = parse_markers(run.stdout.decode(errors="replace"))
    return results[-1].get("variables", {}) if results else {}


def cause(name: str, kind: str, value: str) -> str:
    """What most likely makes a variable differ between two runs, and what to do."""
    low = f"{name} {kind}".lower()
    if kind.startswith(("sklearn.", "xgboost.", "lightgbm.", "torch.", "keras.", "tensorflow.")):
        return "a model trained without a fixed seed: pass random_state=0 (or seed the framework) where it is made"
    if "random" in low or "generator" in low:
        return "a random generator or draw without a seed: seed it (random.seed(0), np.random.default_rng(0))"
    if kind.startswith("matplotlib."):
        return "plotting state: close the figure (plt.close()) or build it inside the pipeline"
    if kind in ("datetime.datetime", "datetime.date", "time.struct_time") or any(w in low for w in ("time", "clock", "date", "now")) \
            or (kind in ("float", "int") and _epoch_like(value)):
        return "a clock reading: compute it inside the pipeline, or drop it in a last cell"
    if kind == "str" and ("/tmp" in value or "/" in value.strip("'\"")[:1]):
        return "a path that differs between runs (a temporary folder?): keep paths relative to the notebook"
    return "it differs between runs: seed what is random, drop what reads the clock or the machine"


def _epoch_like(text: str) -> bool:
    """Does this number read like seconds since 1970 (2001 to 2096)?"""
    try:
        return 1e9 <= float(text) <= 4e9
    except ValueError:
        return False


def differing_variables(a: dict[str, dict[str, str]], b: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    """The variables whose pickled bytes differ between two sessions (pure), each with a cause."""
    out = []
    for name in sorted(set(a) | set(b)):
        x, y = a.get(name), b.get(name)
        if x is not None and y is not None and x["sha256"] == y["sha256"]:
            continue
        kind = (x or y)["type"]
        out.append({"name": name, "type": kind, "hint": cause(name, kind, (x or y).get("repr", "")),
                    "only_in": "" if x and y else ("original" if x else "rebuild")})
    return out


def verify(plan: Plan, *, store: StepStore, backend: Backend, reporter: Reporter,
           secrets: dict[str, str] | None = None) -> list[StageCheck]:
    """Build (or reuse) the garden, rebuild each of its images from scratch, compare."""
    builder = Builder(plan, store=store, backend=backend, reporter=reporter, secrets=secrets)
    builder.run()
    stages = (("env", "build-env"), ("runtime", "build-runtime"), ("garden", "execute-notebook"), ("api", "build-api"))
    originals = {step_id: builder.records[step_id]["image_id"] for _, step_id in stages}
    fresh = Builder(plan, store=store, backend=backend, reporter=reporter, fresh=True, secrets=secrets)
    fresh.records = {s.id: store.get(s.key) for s in plan.steps()}
    checks = []
    for stage, step_id in stages:
        reporter.step(f"rebuilding the {stage} image from scratch (no layer cache)")
        rebuilt = fresh.execute(plan.step(step_id))["image_id"]
        check = StageCheck(stage, originals[step_id], rebuilt, backend.digest(originals[step_id]))
        checks.append(check)
        if check.match:
            continue
        explain_mismatch(backend, check.original, rebuilt, check)
        if stage == "garden" and any(f.startswith("/garden/session.pkl") for f in check.files):
            check.variables = differing_variables(session_digests(backend, check.original),
                                                  session_digests(backend, rebuilt))
        backend.rmi(rebuilt, force=True)
        break  # each image is built FROM the one before: the later ones cannot match either
    return checks


def summary(checks: list[StageCheck]) -> str:
    lines = []
    for c in checks:
        if c.match:
            lines.append(f"{c.stage}: match ({c.digest})")
        elif c.layer is None:
            lines.append(f"{c.stage}: MISMATCH in the image config (every layer is identical)")
            lines += [f"  {f}" for f in c.files]
        else:
            lines.append(f"{c.stage}: MISMATCH in layer {c.layer} ({c.created_by.strip()[:100]})")
            lines += [f"  {f}" for f in c.files]
        if c.variables:
            lines.append("  the saved session differs in these notebook variables:")
            lines += [f"    {v['name']} ({v['type']}): {v['hint']}" for v in c.variables]
    return "\n".join(lines)
