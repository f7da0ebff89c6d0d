"""Citations of a resolved garden, from its card: the same source as its DataCite record
and its CITATION.cff (`gardenbuild.publish.citation`)."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

from gardenbuild.consumer.resolve import Resolved
from gardenbuild.errors import UserError

FORMATS = ("text", "bibtex", "cff", "codemeta")


def _garden(resolved: Resolved) -> Any:
    """What the citation writers read of a garden: its metadata and Python version."""
    from gardenbuild.manifest.spec import GardenMeta

    return SimpleNamespace(meta=GardenMeta.model_validate(resolved.meta), python=resolved.card.get("python") or "")


def _names(resolved: Resolved) -> list[Any]:
    from gardenbuild.publish.citation import person_name

    return [person_name(a.get("name", "")) for a in resolved.meta.get("authors") or []]


def text(resolved: Resolved) -> str:
    meta = resolved.meta
    authors = ", ".join(f"{n.family_with_particle}, {n.given[:1]}." if n.given else n.family_with_particle
                        for n in _names(resolved))
    where = f" https://doi.org/{resolved.doi}" if resolved.doi else (f" {resolved.image_ref}" if resolved.image_ref else "")
    return f"{authors} {meta.get('title', '')} (version {meta.get('version', '')}) [Computer software].{where}".strip()


def _bib(value: str) -> str:
    return re.sub(r"([{}&%$#_])", r"\\\1", value)


def bibtex(resolved: Resolved) -> str:
    meta = resolved.meta
    names = _names(resolved)
    key = (re.sub(r"[^A-Za-z0-9]", "", names[0].family if names else "garden") + "_"
           + re.sub(r"[^A-Za-z0-9]", "", str(meta.get("name", ""))))
    fields = [("author", " and ".join(n.inverted for n in names)), ("title", str(meta.get("title", ""))),
              ("version", str(meta.get("version", "")))]
    if resolved.doi:
        fields += [("doi", resolved.doi), ("url", f"https://doi.org/{resolved.doi}")]
    elif meta.get("repository"):
        fields.append(("url", str(meta["repository"])))
    if meta.get("license"):
        fields.append(("note", f"License: {meta['license']}"))
    body = ",\n".join(f"  {k} = {{{_bib(v)}}}" for k, v in fields if v)
    return f"@software{{{key},\n{body}\n}}"


def cite(resolved: Resolved, format: str = "text") -> str:
    from gardenbuild.publish.citation import codemeta, cff_text

    if format == "text":
        return text(resolved)
    if format == "bibtex":
        return bibtex(resolved)
    if format == "cff":
        return cff_text(_garden(resolved), doi=resolved.doi, image_ref=resolved.image_ref)
    if format == "codemeta":
        return json.dumps(codemeta(_garden(resolved), doi=resolved.doi, image_ref=resolved.image_ref), indent=2)
    raise UserError(f"unknown citation format {format!r}", hint=f"one of: {', '.join(FORMATS)}")
