"""What a consumer may name a garden by, parsed without touching disk, network or storage.

* a **DOI**: ``10.5072/abc``, ``doi:10.5072/abc``, ``https://doi.org/10.5072/abc``;
* an **OCI reference**: ``HOST/REPO@sha256:<64 hex>`` (pinned), or ``HOST/REPO[:TAG]``,
  which the resolver turns into a digest before anything runs;
* a **folder** holding a ``Gardenfile.toml``;
* a **name** from the local catalog, optionally ``name==version``.

A folder wins when a file or directory of that name exists; ``./x``, ``/x`` and ``x.toml``
are always folders (or a Gardenfile in one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gardenbuild.errors import UserError

DOI = re.compile(r"^10\.\d{4,9}/\S+$")
_DOI_PREFIXES = ("doi:", "https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

EXAMPLES = ("a DOI (10.5072/garden.x-1.0.abcd1234), an image by digest (HOST/REPO@sha256:...), "
            "an image tag (HOST/REPO:TAG), a garden folder, or a garden name from `gardenbuild list`")


@dataclass(frozen=True)
class Ref:
    """A parsed reference; ``kind`` is doi, oci, folder or name."""

    kind: str
    text: str  # as the user wrote it
    doi: str | None = None
    repository: str | None = None  # HOST/REPO of an OCI reference
    tag: str | None = None
    digest: str | None = None
    path: Path | None = None
    name: str | None = None
    version: str | None = None

    @property
    def pinned(self) -> bool:
        return self.digest is not None

    @property
    def image(self) -> str | None:
        """The OCI reference as a registry client takes it (by digest when there is one)."""
        if self.repository is None:
            return None
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"


def bad(text: str, why: str) -> UserError:
    return UserError(f"'{text}' is not a garden reference: {why}", hint=f"name a garden by {EXAMPLES}")


def parse(text: str, *, cwd: Path | None = None) -> Ref:
    """Parse ``text``; raises `UserError` (exit 2) naming what is wrong with it."""
    raw = text
    text = text.strip()
    if not text:
        raise bad(raw, "it is empty")
    lowered = text.lower()
    for prefix in _DOI_PREFIXES:
        if lowered.startswith(prefix):
            doi = text[len(prefix):]
            if not DOI.match(doi):
                raise bad(raw, f"'{doi}' is not a DOI (expected 10.NNNN/suffix)")
            return Ref("doi", raw, doi=doi)
    if DOI.match(text):
        return Ref("doi", raw, doi=text)
    if re.match(r"^10\.\d{4,9}/?$", text):
        raise bad(raw, "a DOI has a suffix after its prefix (10.NNNN/suffix)")
    base = cwd or Path.cwd()
    path = Path(text).expanduser()
    path = path if path.is_absolute() else base / path
    if text.startswith((".", "/", "~")) or path.exists() or text.endswith(".toml"):
        return Ref("folder", raw, path=path)
    if text.startswith("docker://"):
        text = text[len("docker://"):]
    if "/" in text or "@" in text:
        return _oci(raw, text)
    name, sep, version = text.partition("==")
    if not _NAME.match(name) or (sep and not _VERSION.match(version)):
        raise bad(raw, "a garden name is lower-case letters, digits, '.', '_' and '-', optionally ==VERSION")
    return Ref("name", raw, name=name, version=version or None)


def _oci(raw: str, text: str) -> Ref:
    from gardenbuild.refs import parse as parse_image

    try:
        image = parse_image(text)
    except ValueError as exc:
        raise bad(raw, str(exc)) from None
    if not image.domain:
        raise bad(raw, "an image reference starts with a registry host (HOST/REPO, e.g. 127.0.0.1:5000/gardens/x)")
    return Ref("oci", raw, repository=f"{image.domain.lower()}/{image.path}",
               tag=None if image.digest else (image.tag or "latest"), digest=image.digest)
