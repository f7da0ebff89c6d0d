"""Citation files for a garden: ``CITATION.cff`` (Citation File Format 1.2.0) and ``codemeta.json``.

Both are written into ``DIR/.gardenbuild/`` and carry the DOI and the image digest once
publishing knows them. The CFF file is YAML, written here without a YAML library: every
scalar is emitted as a JSON string or number, which YAML reads unchanged.

Names: the Gardenfile has one ``name`` per author. "Family, Given" is split at the comma;
otherwise the last word is the family name, and lower-case particles before it ("van",
"de", ...) are kept as the CFF ``name-particle``. Write "Family, Given" to be exact.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gardenbuild.engine.store import atomic_write

if TYPE_CHECKING:  # only garden.meta is read: a consumer's card stands in for it without pydantic
    from gardenbuild.manifest.garden import Garden

CFF_VERSION = "1.2.0"
CODEMETA_CONTEXT = "https://w3id.org/codemeta/3.0"
CFF_MESSAGE = "If you use this garden, please cite it using the metadata from this file."
PARTICLES = {"van", "von", "der", "den", "de", "del", "della", "da", "dos", "das", "du", "di", "la", "le", "ter", "ten", "zu"}
_SPDX_OPERATORS = {"AND", "OR", "WITH"}


@dataclass(frozen=True)
class PersonName:
    given: str
    particle: str
    family: str

    @property
    def family_with_particle(self) -> str:
        return f"{self.particle} {self.family}".strip()

    @property
    def inverted(self) -> str:
        """"Family, Given", as DataCite writes personal names."""
        return f"{self.family_with_particle}, {self.given}" if self.given else self.family_with_particle


def person_name(text: str) -> PersonName:
    text = " ".join(text.split())
    if "," in text:
        family, given = (part.strip() for part in text.split(",", 1))
        words = family.split()
        lead = [w for w in words[:-1] if w in PARTICLES]
        if len(lead) == len(words) - 1 and lead:
            return PersonName(given, " ".join(lead), words[-1])
        return PersonName(given, "", family)
    words = text.split()
    if len(words) == 1:
        return PersonName("", "", words[0])
    i = len(words) - 1
    while i > 1 and words[i - 1] in PARTICLES:
        i -= 1
    return PersonName(" ".join(words[:i]), " ".join(words[i:-1]), words[-1])


def license_ids(expression: str) -> list[str]:
    """The SPDX license ids in an expression ("MIT OR Apache-2.0" -> both), in order, once each."""
    tokens = re.findall(r"[A-Za-z0-9.+:-]+", expression)
    ids = [t for t in tokens if t not in _SPDX_OPERATORS and not t.endswith("-exception")]
    return list(dict.fromkeys(ids))


# --- CITATION.cff ------------------------------------------------------------------------------

def _cff_person(name_text: str, orcid: str | None = None, affiliation: str | None = None) -> dict[str, Any]:
    name = person_name(name_text)
    person: dict[str, Any] = {"family-names": name.family}
    if name.given:
        person["given-names"] = name.given
    if name.particle:
        person["name-particle"] = name.particle
    if orcid:
        person["orcid"] = f"https://orcid.org/{orcid}"
    if affiliation:
        person["affiliation"] = affiliation
    return person


def cff(garden: Garden, *, doi: str | None = None, image_ref: str | None = None) -> dict[str, Any]:
    """The CITATION.cff content as data (keys in the order the file shows them)."""
    meta = garden.meta
    data: dict[str, Any] = {
        "cff-version": CFF_VERSION,
        "message": CFF_MESSAGE,
        "type": "software",
        "title": meta.title,
        "version": meta.version,
        "authors": [_cff_person(a.name, a.orcid, a.affiliation) for a in meta.authors],
    }
    if meta.description:
        data["abstract"] = meta.description
    ids = license_ids(meta.license)
    data["license"] = ids[0] if len(ids) == 1 else ids
    if doi:
        data["doi"] = doi
    if meta.repository:
        data["repository-code"] = meta.repository
    if meta.keywords:
        data["keywords"] = list(dict.fromkeys(meta.keywords))
    identifiers = []
    if doi:
        identifiers.append({"type": "doi", "value": doi, "description": "The garden"})
    if image_ref:
        identifiers.append({"type": "other", "value": image_ref, "description": "Container image (OCI), by digest"})
    if identifiers:
        data["identifiers"] = identifiers
    references = []
    for paper in meta.papers:
        ref: dict[str, Any] = {"type": "article", "title": paper.title,
                               "authors": [_cff_person(a) for a in paper.authors] or [{"name": "anonymous"}]}
        if paper.doi:
            ref["doi"] = paper.doi
        if paper.url:
            ref["url"] = paper.url
        if paper.citation:
            ref["notes"] = paper.citation
        references.append(ref)
    for dataset in meta.datasets:
        ref = {"type": "data", "title": dataset.title, "authors": [{"name": "anonymous"}]}
        if dataset.doi:
            ref["doi"] = dataset.doi
        if dataset.url:
            ref["url"] = dataset.url
        references.append(ref)
    if references:
        data["references"] = references
    return data


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(str(value), ensure_ascii=False)


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists and scalars (scalars as JSON, which YAML accepts)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, (Mapping, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(item, indent + 2))
            else:
                lines.append(f"{pad}{key}: {_scalar(item) if not isinstance(item, (Mapping, list)) else json.dumps(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (Mapping, list)) and item:
                body = to_yaml(item, indent + 2)
                lines.append(f"{pad}- {body.lstrip()}")
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")
    return "\n".join(lines)


def cff_text(garden: Garden, *, doi: str | None = None, image_ref: str | None = None) -> str:
    header = "# Written by gardenbuild from Gardenfile.toml; edit that file, not this one.\n"
    return header + to_yaml(cff(garden, doi=doi, image_ref=image_ref)) + "\n"


# --- codemeta.json ----------------------------------------------------------------------------

def codemeta(garden: Garden, *, doi: str | None = None, image_ref: str | None = None) -> dict[str, Any]:
    meta = garden.meta
    authors = []
    for a in meta.authors:
        name = person_name(a.name)
        person: dict[str, Any] = {"@type": "Person", "familyName": name.family_with_particle}
        if name.given:
            person["givenName"] = name.given
        if a.orcid:
            person["@id"] = f"https://orcid.org/{a.orcid}"
        if a.affiliation:
            person["affiliation"] = {"@type": "Organization", "name": a.affiliation}
        authors.append(person)
    ids = license_ids(meta.license)
    data: dict[str, Any] = {
        "@context": CODEMETA_CONTEXT,
        "@type": "SoftwareSourceCode",
        "name": meta.title,
        "version": meta.version,
        "author": authors,
        "license": [f"https://spdx.org/licenses/{i}" for i in ids] if len(ids) > 1 else f"https://spdx.org/licenses/{ids[0]}",
        "programmingLanguage": "Python",
        "runtimePlatform": f"Python {garden.python}",
    }
    if meta.description:
        data["description"] = meta.description
    if meta.keywords:
        data["keywords"] = list(dict.fromkeys(meta.keywords))
    if meta.repository:
        data["codeRepository"] = meta.repository
    if doi:
        data["@id"] = f"https://doi.org/{doi}"
        data["identifier"] = f"https://doi.org/{doi}"
    if image_ref:
        data["installUrl"] = f"docker://{image_ref}"
    for key, kind, items in (("referencePublication", "ScholarlyArticle", meta.papers),
                             ("isBasedOn", "Dataset", meta.datasets)):
        if items:
            data[key] = [_linked(kind, item) for item in items]
    return data


def _linked(kind: str, item: Any) -> dict[str, Any]:
    """A codemeta reference to a paper or dataset: by DOI when it has one, else by URL."""
    out: dict[str, Any] = {"@type": kind, "name": item.title}
    if item.doi:
        out["@id"] = f"https://doi.org/{item.doi}"
    elif item.url:
        out["url"] = item.url
    return out


def write_files(garden: Garden, out_dir: Path, *, doi: str | None = None, image_ref: str | None = None) -> list[Path]:
    """Write CITATION.cff and codemeta.json into ``out_dir``; return their paths."""
    cff_path, codemeta_path = out_dir / "CITATION.cff", out_dir / "codemeta.json"
    atomic_write(cff_path, cff_text(garden, doi=doi, image_ref=image_ref).encode())
    text = json.dumps(codemeta(garden, doi=doi, image_ref=image_ref), indent=2, ensure_ascii=False) + "\n"
    atomic_write(codemeta_path, text.encode())
    return [cff_path, codemeta_path]
