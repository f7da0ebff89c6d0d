"""A hub's static page: the task, its data's provenance, a leaderboard sortable by each
metric, and beside it the model page of every member (``members/NAME/``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gardenbuild.hub.bench import Score
from gardenbuild.hub.spec import Hub

LABELS = {"mae": "MAE", "rmse": "RMSE", "r2": "R²", "accuracy": "accuracy", "f1": "F1", "coverage": "coverage",
          "calibration_error": "calibration error"}


def higher_is_better(metric: Mapping[str, Any]) -> bool:
    """How a metric (as the Hubfile has it, as data) ranks."""
    from gardenbuild.hub.metrics import HIGHER_IS_BETTER

    return bool(metric.get("higher_is_better")) if metric.get("function") else HIGHER_IS_BETTER[metric["name"]]


def context(spec: Mapping[str, Any], rows: int, scores: list[Score], *, pages: Mapping[str, str], hub_ref: str,
            titles: Mapping[str, str] | None = None, back: str | None = None) -> dict[str, Any]:
    """What hub.html.j2 shows, from the Hubfile as data (``Hubfile.model_dump()``) and the scores."""
    metrics = [{"name": m["name"], "label": m["name"] if m.get("function") else LABELS.get(m["name"], m["name"]),
                "higher": higher_is_better(m)} for m in spec["metric"]]
    return {"hub": spec["hub"], "contract": spec["contract"], "data": spec["data"], "rows": rows,
            "members": len(spec["member"]), "hub_ref": hub_ref, "metrics": metrics, "back": back,
            "uq": any(s.uncertainty for s in scores),
            "scores": [{**asdict(s), "page": pages.get(s.member), "title": (titles or {}).get(s.member)}
                       for s in scores]}


def render(ctx: Mapping[str, Any]) -> str:
    from gardenbuild.page import environment

    return environment().get_template("hub.html.j2").render(**ctx)


def write(hub: Hub, scores: list[Score], out: Path, *, resolved: Mapping[str, Any], hub_ref: str) -> Path:
    """Write ``out/index.html`` and ``out/members/NAME/`` for each member resolved; return the page."""
    from gardenbuild.engine.store import atomic_write
    from gardenbuild.page import files

    pages = {}
    for name, member in resolved.items():
        for file, body in files(member, back="../../index.html").items():
            atomic_write(out / "members" / name / file, body.encode())
        pages[name] = f"members/{name}/index.html"
    titles = {name: member.meta.get("title") for name, member in resolved.items()}
    page = out / "index.html"
    atomic_write(page, render(context(hub.spec.model_dump(), len(hub.inputs), scores, pages=pages, hub_ref=hub_ref,
                                      titles=titles)).encode())
    return page
