"""Citations of a resolved garden, from its card: the same source as its DataCite record
and its CITATION.cff (`gardenbuild.publish.citation`)."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

from gardenbuild.consumer.resolve import Resolved
from gardenbuild.errors import UserError

FORMATS = ("text", "bibtex", "ris", "csl-json", "cff", "codemeta")


def _namespace(value: Any) -> Any:
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _namespace(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_namespace(v) for v in value)
    return value


def _garden(resolved: Resolved) -> Any:
    """What the citation writers read of a garden (``garden.meta`` and ``garden.python``), from
    the card: the Gardenfile's own fields, so the same code writes the publisher's files."""
    return SimpleNamespace(meta=_namespace(dict(resolved.meta)), python=resolved.card.get("python") or "")


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


def ris(resolved: Resolved) -> str:
    """RIS (the format reference managers import), type COMP: computer program."""
    meta = resolved.meta
    lines = ["TY  - COMP", f"TI  - {meta.get('title', '')}"]
    lines += [f"AU  - {n.inverted}" for n in _names(resolved)]
    lines.append(f"ET  - {meta.get('version', '')}")
    if resolved.doi:
        lines += [f"DO  - {resolved.doi}", f"UR  - https://doi.org/{resolved.doi}"]
    elif meta.get("repository"):
        lines.append(f"UR  - {meta['repository']}")
    if meta.get("description"):
        lines.append(f"AB  - {' '.join(str(meta['description']).split())}")
    lines += [f"KW  - {k}" for k in meta.get("keywords") or []]
    return "\n".join(lines + ["ER  - ", ""])


def csl(resolved: Resolved) -> dict[str, Any]:
    """CSL-JSON (citeproc's input), one item of type software."""
    meta = resolved.meta
    item: dict[str, Any] = {"id": str(meta.get("name", "garden")), "type": "software",
                            "title": str(meta.get("title", "")), "version": str(meta.get("version", "")),
                            "author": [{"family": n.family_with_particle, **({"given": n.given} if n.given else {})}
                                       for n in _names(resolved)]}
    if resolved.doi:
        item["DOI"], item["URL"] = resolved.doi, f"https://doi.org/{resolved.doi}"
    elif meta.get("repository"):
        item["URL"] = str(meta["repository"])
    if meta.get("description"):
        item["abstract"] = str(meta["description"])
    if meta.get("keywords"):
        item["keyword"] = ", ".join(meta["keywords"])
    return item


def cite(resolved: Resolved, format: str = "text") -> str:
    from gardenbuild.publish.citation import codemeta, cff_text

    if format == "text":
        return text(resolved)
    if format == "bibtex":
        return bibtex(resolved)
    if format == "ris":
        return ris(resolved)
    if format == "csl-json":
        return json.dumps([csl(resolved)], indent=2, ensure_ascii=False)
    if format == "cff":
        return cff_text(_garden(resolved), doi=resolved.doi, image_ref=resolved.image_ref)
    if format == "codemeta":
        return json.dumps(codemeta(_garden(resolved), doi=resolved.doi, image_ref=resolved.image_ref), indent=2)
    raise UserError(f"unknown citation format {format!r}", hint=f"one of: {', '.join(FORMATS)}")
