"""The garden card: what a consumer needs to know about a garden, carried by its image.

The build-api step writes it as the image label ``dev.gardenbuild.card`` (JSON), so
``gardenbuild info`` reads title, authors, pipelines with their signatures, docstrings and
test cases, Python and package versions from the image's config alone: no container, and
for an image in a registry not even a pull (``skopeo inspect --config``).

Pure data shaping: `garden_part` at plan time (from the Gardenfile), `complete` at build
time (what the notebook's run learned), `from_labels` on the consumer's side.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gardenbuild.manifest.garden import Garden

LABEL = "dev.gardenbuild.card"
VERSION = 1
#: Test inputs larger than this (as JSON) are left out of the label, which every pull carries.
MAX_EXAMPLE_BYTES = 4096
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def requirement_name(requirement: str) -> str:
    """``rdkit>=2024.3`` -> ``rdkit`` (normalized as PEP 503 does)."""
    m = _NAME.match(requirement.strip())
    return re.sub(r"[-_.]+", "-", m.group(0)).lower() if m else ""


def garden_part(garden: Garden) -> dict[str, Any]:
    """What the Gardenfile says: metadata, declared packages, pipelines and their tests."""
    tests = {}
    for p in garden.pipelines:
        cases = [{"input": t.input, "expected": t.expected, "tolerance": t.tolerance} for t in p.tests]
        tests[p.name] = [c for c in cases if len(json.dumps(c)) <= MAX_EXAMPLE_BYTES]
    return {
        "card": VERSION,
        "meta": garden.meta.model_dump(mode="json"),
        "flavor": garden.flavor.name,
        "accelerator": garden.accelerator,
        "requires": sorted({requirement_name(r) for r in garden.own_requirements} - {""}),
        "pipelines": [{**p.as_json(), "tests": tests[p.name]} for p in garden.pipelines],
        "limits": garden.limits.as_json(),
    }


def complete(part: Mapping[str, Any], metadata: Mapping[str, Any], wheels: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The card, from the plan's part, the session's ``metadata.json`` and the resolved wheels."""
    found = {p.get("name"): p for p in metadata.get("pipelines", []) if isinstance(p, Mapping)}
    pipelines = []
    for p in part["pipelines"]:
        seen = found.get(p["name"], {})
        pipelines.append({**p, "signature": seen.get("signature", "(...)"), "docstring": seen.get("docstring") or "",
                          "parameters": seen.get("parameters", []), "returns": seen.get("return_annotation")})
    versions = {requirement_name(str(w.get("name", ""))): str(w.get("version", "")) for w in wheels}
    card = {key: value for key, value in part.items() if key not in ("requires", "pipelines")}
    card["python"] = metadata.get("python")
    card["packages"] = {name: versions[name] for name in part.get("requires", []) if name in versions}
    card["pipelines"] = pipelines
    return card


#: Every field of the metadata and of its items, as the Gardenfile's model defaults them.
_META = {"name": "", "version": "", "title": "", "description": "", "license": "", "repository": None,
         "keywords": [], "authors": [], "papers": [], "datasets": []}
_ITEMS = {"authors": {"name": "", "orcid": None, "affiliation": None},
          "papers": {"title": "", "doi": None, "url": None, "authors": [], "citation": None},
          "datasets": {"title": "", "doi": None, "url": None}}


def meta_of(card: Mapping[str, Any]) -> dict[str, Any]:
    """The card's metadata with every field present, so readers need no guard: a card
    written by another gardenbuild version (or by hand) may leave some out."""
    meta = card.get("meta") if isinstance(card.get("meta"), Mapping) else {}
    out = {**_META, **{k: v for k, v in meta.items() if v is not None}}
    for key, defaults in _ITEMS.items():
        items = out[key] if isinstance(out[key], (list, tuple)) else []
        out[key] = [{**defaults, **{k: v for k, v in item.items() if v is not None}} for item in items
                    if isinstance(item, Mapping)]
    return out


def label_value(card: Mapping[str, Any]) -> str:
    return json.dumps(card, sort_keys=True, separators=(",", ":"))


def from_labels(labels: Mapping[str, str]) -> dict[str, Any] | None:
    """The card an image's labels carry, or None (an image built before cards, or not a garden)."""
    text = labels.get(LABEL)
    if not text:
        return None
    try:
        card = json.loads(text)
    except ValueError:
        return None
    return card if isinstance(card, dict) and card.get("card") == VERSION else None
