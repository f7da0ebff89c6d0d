"""Say why a step runs: compare a planned step with the one last built for the same garden.

Pure functions over plain data; `build` records what it built (`StepStore.remember`) and
`plan` shows, for each step, "cached" or the reasons it will run.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from gardenbuild.backends.deps import PinnedWheel
from gardenbuild.plan.graph import Plan, Step
from gardenbuild.plan.lockfile import package_changes


def snapshot(step: Step) -> dict[str, Any]:
    """What is remembered of a built step, to explain the next plan."""
    return {"key": step.key, "params": json.loads(json.dumps(step.params, default=str)), "inputs": dict(step.inputs)}


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _item(value: Any) -> str:
    """A list parameter's item: ``KEY=value`` for the (key, value) pairs of `env`."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return f"{value[0]}={value[1]}"
    return _short(value)


#: Parameters that only group others: their members are named on their own.
_GROUPS = ("context", "summary")
#: Parameters whose changes the step's inputs already name (a file list and its digests).
_SAID_BY_INPUTS = ("files",)


def _flat(params: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in params.items():
        if name in _GROUPS and isinstance(value, Mapping):
            out.update(value)
        elif name not in _SAID_BY_INPUTS:
            out[name] = value
    return out


def _param_reasons(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    old, new = _flat(old), _flat(new)
    if ("locked" in old) != ("locked" in new):
        return ["dependencies are now pinned by Gardenfile.lock" if "locked" in new else "Gardenfile.lock is not used"]
    reasons = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if name == "locked" and isinstance(a, dict) and isinstance(b, dict):
            if a.get("base") != b.get("base"):
                reasons.append(f"base image {_short(a.get('base'))} -> {_short(b.get('base'))}")
            olds = tuple(PinnedWheel(**w) for w in a.get("wheels", []))
            news = tuple(PinnedWheel(**w) for w in b.get("wheels", []))
            reasons += [f"package {c}" for c in package_changes(olds, news)]
        elif name == "cases":
            reasons.append("the pipeline tests changed")
        elif isinstance(a, list) and isinstance(b, list):
            changes = [f"{name}: removed {_item(x)}" for x in a if x not in b]
            changes += [f"{name}: added {_item(x)}" for x in b if x not in a]
            reasons += changes or [f"{name} reordered"]
        elif isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    what = "added" if key not in a else "removed" if key not in b else f"{_short(a[key])} -> {_short(b[key])}"
                    reasons.append(f"{name} {key}: {what}")
        elif name == "pipelines":
            reasons.append("pipelines or their tests changed")
        else:
            reasons.append(f"{name} {_short(a)} -> {_short(b)}")
    return reasons


def _input_reasons(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    reasons = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) == new.get(name):
            continue
        label = name.removeprefix("template:")
        kind = "template" if name.startswith("template:") else "gardenbuild runtime" if name == "runtime" else "file"
        what = f"{kind} {label}" if kind != "gardenbuild runtime" else kind
        if name not in old:
            reasons.append(f"{what} added")
        elif name not in new:
            reasons.append(f"{what} removed")
        else:
            reasons.append(f"{what} changed")
    return reasons


def explain(plan: Plan, previous: Mapping[str, Mapping[str, Any]], is_cached: Callable[[Step], bool]) -> dict[str, list[str]]:
    """For each step id: [] when it is cached, else the reasons it will run."""
    out: dict[str, list[str]] = {}
    for step in plan.steps():
        if is_cached(step):
            out[step.id] = []
            continue
        before = previous.get(step.id)
        if before is None:
            out[step.id] = ["never built"]
            continue
        if before.get("key") == step.key:
            out[step.id] = ["its cached result or image was removed"]
            continue
        now = snapshot(step)
        reasons = _param_reasons(before.get("params", {}), now["params"]) + _input_reasons(before.get("inputs", {}), now["inputs"])
        stale_parents = [p for p in step.parents if out.get(p)]
        if not reasons and stale_parents:
            reasons = [f"{p} runs again" for p in stale_parents]
        out[step.id] = reasons or ["its inputs changed"]
    return out
