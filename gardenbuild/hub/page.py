"""A hub's static page: the task, its data's provenance, a leaderboard sortable by each
metric, and beside it the model page of every member (``members/NAME/``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gardenbuild.hub.bench import Score
from gardenbuild.hub.metrics import HIGHER_IS_BETTER
from gardenbuild.hub.spec import Hub

LABELS = {"mae": "MAE", "rmse": "RMSE", "r2": "R²", "accuracy": "accuracy", "f1": "F1", "coverage": "coverage",
          "calibration_error": "calibration error"}


def context(hub: Hub, scores: list[Score], *, pages: Mapping[str, str], hub_ref: str) -> dict[str, Any]:
    return {
        "hub": hub.spec.hub.model_dump(), "contract": hub.spec.contract.model_dump(), "data": hub.spec.data.model_dump(),
        "rows": len(hub.inputs), "members": len(hub.spec.member), "hub_ref": hub_ref,
        "metrics": [{"name": m.name, "label": LABELS[m.name], "higher": HIGHER_IS_BETTER[m.name]} for m in hub.spec.metric],
        "scores": [{**asdict(s), "page": pages.get(s.member), "title": None} for s in scores],
    }


def write(hub: Hub, scores: list[Score], out: Path, *, resolved: Mapping[str, Any], hub_ref: str) -> Path:
    """Write ``out/index.html`` and ``out/members/NAME/`` for each member resolved; return the page."""
    from gardenbuild.engine.store import atomic_write
    from gardenbuild.page import environment, files

    pages = {}
    for name, member in resolved.items():
        for file, body in files(member, back="../../index.html").items():
            atomic_write(out / "members" / name / file, body.encode())
        pages[name] = f"members/{name}/index.html"
    ctx = context(hub, scores, pages=pages, hub_ref=hub_ref)
    for row in ctx["scores"]:
        if row["member"] in resolved:
            row["title"] = resolved[row["member"]].meta.get("title")
    page = out / "index.html"
    atomic_write(page, environment().get_template("hub.html.j2").render(**ctx).encode())
    return page
