"""A garden's model page: one static, self-contained HTML file (CSS inline, no CDN, no font,
no script needed to read it) plus the citation files it links to, so it can be a DOI's
landing page on any static host.

Everything on it comes from the garden itself: its card (metadata, pipelines, signatures,
docstrings, tests), what its build wrote (test results, locked packages, digests) and the
local catalog (publication, usage). `context` gathers it (pure given its inputs); `render`
fills ``templates/page/garden.html.j2`` (Jinja2, autoescaped); `write` does both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from gardenbuild.consumer.cite import cite, text
from gardenbuild.consumer.resolve import Resolved

TEMPLATE = "garden.html.j2"
#: The files a page links to, by what they hold.
DOWNLOADS = {"bibtex": "citation.bib", "ris": "citation.ris", "csl-json": "citation.json", "cff": "CITATION.cff",
             "codemeta": "codemeta.json"}
SPDX = "https://spdx.org/licenses/{}.html"


def build_outputs(resolved: Resolved) -> dict[str, Any]:
    """What a folder's last build wrote that a page shows: test results, locked packages, base."""
    from gardenbuild.engine.outputs import OUTPUT_DIR, locked_pins

    if resolved.root is None:
        return {}
    out = resolved.root / OUTPUT_DIR
    found: dict[str, Any] = {}
    try:
        found["tests"] = json.loads((out / "test-report.json").read_text()).get("cases", [])
    except (OSError, ValueError):
        pass
    found["packages"] = locked_pins(resolved.root)
    found["base_image"] = (resolved.summary or {}).get("base_image")
    return found


def _snippets(resolved: Resolved, pipeline: Mapping[str, Any]) -> list[dict[str, str]]:
    """Copy-ready ways to call the pipeline, with this garden's real names, ids and an input
    from its tests: ``{"kind", "label", "text"}`` each."""
    labels = {"cli": "Command line", "python": "Python", "http": "HTTP", "globus": "Globus Compute"}
    return [{"kind": k, "label": labels[k], "text": t} for k, t in _snippet_texts(resolved, pipeline).items()]


def _snippet_texts(resolved: Resolved, pipeline: Mapping[str, Any]) -> dict[str, str]:
    ref = resolved.doi or resolved.image_ref or resolved.name
    example = (pipeline.get("tests") or [{}])[0].get("input", {})
    args = json.dumps(example)
    kwargs = ", ".join(f"{k}={json.dumps(v)}" for k, v in example.items())
    name = pipeline["name"]
    out = {
        "cli": f"gardenbuild run {ref} {name} --input '{args}'",
        "python": f"import gardenbuild\ng = gardenbuild.load({json.dumps(ref)})\ng.{name}({kwargs})",
        "http": f"gardenbuild serve {ref} --port 8080 --detach\n"
                f"curl -s localhost:8080/pipelines/{name} -H 'Content-Type: application/json' -d '{args}'",
    }
    if resolved.function_ids.get(name):
        out["globus"] = (f"import gardenbuild\ng = gardenbuild.load({json.dumps(ref)})\n"
                         f"g.{name}.remote({kwargs}{', ' if kwargs else ''}endpoint=\"<your endpoint id>\")"
                         f"   # function {resolved.function_ids[name]}")
    return out


def context(resolved: Resolved, *, outputs: Mapping[str, Any], usage: list[Mapping[str, Any]],
            verification: Mapping[str, Any] | None = None, back: str | None = None) -> dict[str, Any]:
    """Everything the template shows, as plain data. ``verification`` is the catalog's record of
    `gardenbuild verify` for this image; ``back`` a link to the catalog the page is part of."""
    meta, card = resolved.meta, resolved.card
    results = {(c.get("pipeline"), c.get("index")): c for c in outputs.get("tests", [])}
    pipelines = []
    for p in resolved.pipelines:
        tests = []
        for i, t in enumerate(p.get("tests") or []):
            ran = results.get((p["name"], i))
            tests.append({"input": json.dumps(t["input"]), "expected": json.dumps(t["expected"]),
                          "tolerance": t.get("tolerance", 0.0),
                          "actual": json.dumps(ran["actual"]) if ran else None,
                          "passed": ran["passed"] if ran else None})
        calls = [u for u in usage if u["pipeline"] == p["name"]]
        pipelines.append({"signature": "(...)", "docstring": "", "description": "", **p, "tests": tests, "snippets": _snippets(resolved, p),
                          "usage": [{"via": u["via"], "calls": u["calls"], "errors": u["errors"],
                                     "mean_ms": u["seconds"] / u["calls"] * 1e3 if u["calls"] else None}
                                    for u in calls]})
    packages = outputs.get("packages") or sorted((card.get("packages") or {}).items())
    return {
        "meta": meta, "doi": resolved.doi, "doi_url": f"https://doi.org/{resolved.doi}" if resolved.doi else None,
        "licenses": [{"id": lid, "url": SPDX.format(lid)} for lid in _license_ids(str(meta.get("license", "")))],
        "citation": text(resolved), "downloads": DOWNLOADS, "pipelines": pipelines,
        "image_ref": resolved.image_ref, "digest": resolved.digest, "python": card.get("python"),
        "flavor": card.get("flavor"), "accelerator": card.get("accelerator"), "base_image": outputs.get("base_image"),
        "packages": [{"name": n, "version": v} for n, v in packages], "functions": resolved.function_ids,
        "verification": verification, "back": back,
    }


def _license_ids(expression: str) -> list[str]:
    from gardenbuild.publish.citation import license_ids

    return license_ids(expression)


@lru_cache(maxsize=1)
def environment() -> Any:
    import jinja2

    from gardenbuild.resources import data_dir

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(data_dir("templates") / "page")),
                              autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(ctx: Mapping[str, Any]) -> str:
    return environment().get_template(TEMPLATE).render(**ctx)


def files(resolved: Resolved, *, usage: list[Mapping[str, Any]] | None = None,
          verification: Mapping[str, Any] | None = None, back: str | None = None) -> dict[str, str]:
    """The page and its citation files, by file name."""
    ctx = context(resolved, outputs=build_outputs(resolved), usage=usage or [], verification=verification, back=back)
    out = {"index.html": render(ctx)}
    out.update({name: cite(resolved, kind) + ("" if kind == "ris" else "\n") for kind, name in DOWNLOADS.items()})
    return out


def write(resolved: Resolved, out_dir: Path, **known: Any) -> list[Path]:
    """Write ``index.html`` and the citation files into ``out_dir``; return the paths.
    ``known`` is what the catalog adds (see `files`)."""
    from gardenbuild.engine.store import atomic_write

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, body in files(resolved, **known).items():
        path = out_dir / name
        atomic_write(path, body.encode())
        paths.append(path)
    return paths
