"""DataCite: citation metadata for a garden (schema 4.5) and the REST calls that mint its DOI.

Metadata is built purely from the resolved garden plus what publishing learned (the
image digest, the function ids). Requests are data (`Request`) until `DataCite.send`
runs them, so ``publish --dry-run`` can print exactly what would be sent.

The DOI lifecycle: a *draft* is reserved first (``POST /dois`` with the DOI we choose),
so its name can be written into the image before the push; once the image digest and
function ids are known the metadata is updated (``PUT /dois/{doi}``), and with
``--doi publish`` that same PUT carries ``event: "publish"``, which makes it findable.
The DOI's suffix is derived from garden, version and image id, so a lost response or a
lost catalog cannot mint a second DOI: the repeated POST fails with 422 "already taken"
and the existing draft is adopted.

Relation types chosen (the garden is the resource being described):

* container image ``IsVariantFormOf`` (URL ``docker://HOST/REPO@sha256:...``): the image
  is the same model in another packaging, DataCite's own example for this relation;
* source repository ``IsDerivedFrom`` (URL): the garden is compiled from it;
* each paper ``IsDocumentedBy`` (DOI, else URL);
* each dataset ``IsDerivedFrom`` (DOI, else URL): the model was trained on it;
* each pipeline ``HasPart`` (URL of its Globus Compute function), as Garden did; and the
  same again as a ``relatedItem`` whose title is the pipeline's name, so that the record
  alone maps each pipeline to its function (`read_record` reads it back).

Credentials come from ``DATACITE_REPOSITORY_ID`` and ``DATACITE_PASSWORD`` (HTTP basic)
and are attached only when a request is sent; they are never part of a `Request`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gardenbuild.errors import GardenError, UserError
from gardenbuild.manifest.garden import Garden
from gardenbuild.publish.citation import license_ids, person_name

API = "https://api.datacite.org"
TEST_API = "https://api.test.datacite.org"
SCHEMA_VERSION = "http://datacite.org/schema/kernel-4"
MEDIA_TYPE = "application/vnd.api+json"
DEFAULT_PUBLISHER = "Garden"
ORCID_URI = "https://orcid.org"
SPDX_URI = "https://spdx.org/licenses/"
FUNCTION_URL = "https://compute.api.globus.org/v2/functions/{}"
PREFIX = re.compile(r"^10\.\d{4,9}$")

CREDENTIALS_HINT = ("export DATACITE_REPOSITORY_ID=<repository id> and DATACITE_PASSWORD=<its password> "
                    "(a repository account in DataCite Fabrica; with --datacite-test, one on the test system)")


class DataCiteError(GardenError):
    """DataCite refused a request or could not be reached."""


@dataclass(frozen=True)
class Credentials:
    repository_id: str
    password: str = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Credentials":
        repo, password = env.get("DATACITE_REPOSITORY_ID", ""), env.get("DATACITE_PASSWORD", "")
        missing = [name for name, value in (("DATACITE_REPOSITORY_ID", repo), ("DATACITE_PASSWORD", password)) if not value]
        if missing:
            raise UserError(f"minting a DOI needs DataCite credentials; {' and '.join(missing)} not set",
                            hint=CREDENTIALS_HINT)
        return cls(repo, password)


def api_url(test: bool) -> str:
    return TEST_API if test else API


def resolve_prefix(env: Mapping[str, str], configured: str | None) -> str:
    """The DOI prefix: ``DATACITE_PREFIX`` wins over ``[publish].datacite_prefix``."""
    prefix = env.get("DATACITE_PREFIX") or configured
    if not prefix:
        raise UserError("minting a DOI needs your DataCite prefix",
                        hint="export DATACITE_PREFIX=10.NNNN, or set datacite_prefix in the [publish] table")
    if not PREFIX.match(prefix):
        raise UserError(f"'{prefix}' is not a DOI prefix (expected 10.NNNN)",
                        hint="use the prefix DataCite gave your repository, e.g. 10.5072")
    return prefix


def suggest_doi(prefix: str, garden: str, version: str, image_id: str) -> str:
    """The DOI for one garden version built into one image: readable, and stable across re-runs."""
    digest = hashlib.sha256(f"{garden}\0{version}\0{image_id}".encode()).hexdigest()[:8]
    return f"{prefix}/garden.{garden}-{version}.{digest}"


# --- metadata ------------------------------------------------------------------------------

def _identifier(doi: str | None, url: str | None) -> tuple[str, str] | None:
    if doi:
        return doi, "DOI"
    if url:
        return url, "URL"
    return None


def creators(garden: Garden) -> list[dict[str, Any]]:
    out = []
    for author in garden.meta.authors:
        name = person_name(author.name)
        creator: dict[str, Any] = {"name": name.inverted, "nameType": "Personal"}
        if name.given:
            creator["givenName"] = name.given
        creator["familyName"] = name.family_with_particle
        if author.orcid:
            creator["nameIdentifiers"] = [{"nameIdentifier": f"{ORCID_URI}/{author.orcid}",
                                           "nameIdentifierScheme": "ORCID", "schemeUri": ORCID_URI}]
        if author.affiliation:
            creator["affiliation"] = [{"name": author.affiliation}]
        out.append(creator)
    return out


def rights(license_expression: str) -> list[dict[str, str]]:
    return [{"rights": lid, "rightsIdentifier": lid, "rightsIdentifierScheme": "SPDX",
             "rightsUri": f"{SPDX_URI}{lid}.html", "schemeUri": SPDX_URI} for lid in license_ids(license_expression)]


def related_identifiers(garden: Garden, *, image_ref: str | None, function_ids: Mapping[str, str]) -> list[dict[str, str]]:
    meta = garden.meta
    out: list[dict[str, str]] = []
    if image_ref:
        out.append({"relatedIdentifier": f"docker://{image_ref}", "relatedIdentifierType": "URL",
                    "relationType": "IsVariantFormOf", "resourceTypeGeneral": "Software"})
    if meta.repository:
        out.append({"relatedIdentifier": meta.repository, "relatedIdentifierType": "URL",
                    "relationType": "IsDerivedFrom", "resourceTypeGeneral": "Software"})
    for paper in meta.papers:
        ident = _identifier(paper.doi, paper.url)
        if ident:
            out.append({"relatedIdentifier": ident[0], "relatedIdentifierType": ident[1], "relationType": "IsDocumentedBy"})
    for dataset in meta.datasets:
        ident = _identifier(dataset.doi, dataset.url)
        if ident:
            out.append({"relatedIdentifier": ident[0], "relatedIdentifierType": ident[1],
                        "relationType": "IsDerivedFrom", "resourceTypeGeneral": "Dataset"})
    for pipeline in garden.pipelines:
        fid = function_ids.get(pipeline.name)
        if fid:
            out.append({"relatedIdentifier": FUNCTION_URL.format(fid), "relatedIdentifierType": "URL",
                        "relationType": "HasPart", "resourceTypeGeneral": "Software"})
    return out


def related_items(garden: Garden, function_ids: Mapping[str, str]) -> list[dict[str, Any]]:
    """One item per registered pipeline: its Globus Compute function, titled by the pipeline's name."""
    return [{"relatedItemType": "Software", "relationType": "HasPart", "titles": [{"title": p.name}],
             "relatedItemIdentifier": {"relatedItemIdentifier": FUNCTION_URL.format(function_ids[p.name]),
                                       "relatedItemIdentifierType": "URL"}}
            for p in garden.pipelines if function_ids.get(p.name)]


def technical_info(garden: Garden, *, image_ref: str | None, signatures: Mapping[str, str]) -> str:
    """A short human description of how to run the garden: its pipelines and its image."""
    lines = [f"A garden built by gardenbuild: Python {garden.python}, pipelines callable as functions."]
    for p in garden.pipelines:
        line = f"Pipeline {p.name}{signatures.get(p.name, '')}"
        lines.append(line + (f": {p.description}" if p.description else ""))
    if image_ref:
        lines.append(f"Container image: {image_ref}")
    return "\n".join(lines)


def metadata(garden: Garden, *, doi: str, publication_year: str, publisher: str = DEFAULT_PUBLISHER,
             url: str | None = None, image_ref: str | None = None, function_ids: Mapping[str, str] | None = None,
             signatures: Mapping[str, str] | None = None) -> dict[str, Any]:
    """DataCite 4.5 attributes for the garden (what goes into ``data.attributes``)."""
    meta = garden.meta
    attrs: dict[str, Any] = {
        "doi": doi,
        "creators": creators(garden),
        "titles": [{"title": meta.title}],
        "publisher": {"name": publisher},
        "publicationYear": publication_year,
        "types": {"resourceTypeGeneral": "Model", "resourceType": "Garden"},
        "version": meta.version,
        "rightsList": rights(meta.license),
        "relatedIdentifiers": related_identifiers(garden, image_ref=image_ref, function_ids=function_ids or {}),
        "schemaVersion": SCHEMA_VERSION,
    }
    descriptions = []
    if meta.description:
        descriptions.append({"description": meta.description, "descriptionType": "Abstract"})
    descriptions.append({"description": technical_info(garden, image_ref=image_ref, signatures=signatures or {}),
                         "descriptionType": "TechnicalInfo"})
    attrs["descriptions"] = descriptions
    items = related_items(garden, function_ids or {})
    if items:
        attrs["relatedItems"] = items
    if meta.keywords:
        attrs["subjects"] = [{"subject": k} for k in dict.fromkeys(meta.keywords)]
    if url:
        attrs["url"] = url
    return attrs


def metadata_hash(attrs: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(attrs, sort_keys=True).encode()).hexdigest()


def validate(attrs: Mapping[str, Any]) -> None:
    """Check attributes against the DataCite 4.5 JSON schema (from the `datacite` package).

    Raises `UserError` listing every problem. Without the package (the ``publish`` extra)
    nothing is checked here and DataCite's own validation has the last word.
    """
    try:
        from datacite.schema45 import validator
    except ImportError:  # pragma: no cover - the publish extra brings it
        return
    body = {k: v for k, v in attrs.items() if k != "event"}
    problems = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if problems:
        lines = [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in problems]
        raise UserError(f"the DataCite metadata is not valid: {lines[0]}" + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""),
                        hint="; ".join(lines[1:4]) or "check the [garden] table of Gardenfile.toml")


# --- requests ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """One HTTP request to DataCite, as data; credentials are added only by `DataCite.send`."""

    method: str
    url: str
    body: dict[str, Any] | None = None
    purpose: str = ""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"service": "datacite", "method": self.method, "url": self.url,
                               "headers": {"Content-Type": MEDIA_TYPE, "Accept": MEDIA_TYPE},
                               "auth": "HTTP basic: DATACITE_REPOSITORY_ID / DATACITE_PASSWORD"}
        if self.body is not None:
            out["json"] = self.body
        if self.purpose:
            out["purpose"] = self.purpose
        return out


def draft_request(api: str, attrs: Mapping[str, Any]) -> Request:
    """Reserve the DOI as a draft (no ``event``): ``POST /dois``."""
    return Request("POST", f"{api}/dois", {"data": {"type": "dois", "attributes": dict(attrs)}},
                   purpose=f"reserve {attrs['doi']} as a draft DOI")


def update_request(api: str, doi: str, attrs: Mapping[str, Any], *, publish: bool) -> Request:
    """Send the full metadata; with ``publish`` the DOI becomes findable: ``PUT /dois/{doi}``."""
    attributes = dict(attrs)
    if publish:
        attributes["event"] = "publish"
    return Request("PUT", f"{api}/dois/{doi}", {"data": {"id": doi, "type": "dois", "attributes": attributes}},
                   purpose=f"{'publish (findable)' if publish else 'update draft'} {doi}")


def get_request(api: str, doi: str) -> Request:
    return Request("GET", f"{api}/dois/{doi}", purpose=f"read {doi}")


class DataCite:
    """Sends `Request`s to the DataCite REST API with HTTP basic auth; translates failures."""

    def __init__(self, credentials: Credentials, *, session: Any = None, timeout: float = 60) -> None:
        self.credentials = credentials
        self.timeout = timeout
        if session is None:
            import requests

            session = requests.Session()
        self.session = session

    def send(self, request: Request) -> dict[str, Any]:
        """Send one request; return the JSON:API document DataCite answered."""
        import requests

        try:
            response = self.session.request(
                request.method, request.url,
                data=None if request.body is None else json.dumps(request.body, sort_keys=True),
                headers={"Content-Type": MEDIA_TYPE, "Accept": MEDIA_TYPE},
                auth=(self.credentials.repository_id, self.credentials.password), timeout=self.timeout)
        except requests.RequestException as exc:
            raise DataCiteError(f"DataCite could not be reached ({type(exc).__name__} for {request.method} {request.url})",
                                hint="check the network, then run the same command again; finished steps are not repeated") from None
        if response.status_code >= 400:
            raise self._error(request, response.status_code, response.text)
        try:
            return response.json() if response.content else {}
        except ValueError:
            return {}

    def draft(self, api: str, attrs: Mapping[str, Any]) -> str:
        """Reserve ``attrs['doi']`` as a draft; adopt it if it exists already. Returns its state."""
        try:
            self.send(draft_request(api, attrs))
            return "draft"
        except DataCiteError as exc:
            if getattr(exc, "status", None) != 422 or "taken" not in getattr(exc, "details", "").lower():
                raise
        # Reserved earlier (a lost response, a lost catalog): it is ours if we can read it.
        found = self.send(get_request(api, attrs["doi"]))
        return found.get("data", {}).get("attributes", {}).get("state") or "draft"

    @staticmethod
    def _error(request: Request, status: int, text: str) -> DataCiteError:
        details = []
        try:
            for err in json.loads(text).get("errors", []):
                source = f"{err['source']}: " if err.get("source") else ""
                details.append(f"{source}{err.get('title') or err.get('detail') or ''}".strip())
        except (ValueError, AttributeError, TypeError):
            pass
        detail = "; ".join(d for d in details if d) or f"HTTP {status}"
        where = f"{request.method} {request.url}"
        if status in (401, 403):
            error = DataCiteError(f"DataCite refused the credentials (HTTP {status}) for {where}", hint=CREDENTIALS_HINT)
        elif status == 404:
            error = DataCiteError(f"DataCite has no such DOI ({where}): {detail}",
                                  hint="check DATACITE_PREFIX and the DataCite system (--datacite-test or not)")
        elif status == 422:
            error = DataCiteError(f"DataCite rejected the metadata (HTTP 422): {detail}",
                                  hint="fix the [garden] table of Gardenfile.toml, then publish again")
        elif status >= 500:
            error = DataCiteError(f"DataCite failed (HTTP {status}) on {where}",
                                  hint="try again later with the same command; finished steps are not repeated")
        else:
            error = DataCiteError(f"DataCite answered HTTP {status} to {where}: {detail}")
        error.status = status  # type: ignore[attr-defined]
        error.details = detail  # type: ignore[attr-defined]
        return error


@dataclass(frozen=True)
class DoiRecord:
    """What a DOI's DataCite record says about the garden it names."""

    doi: str
    state: str | None
    title: str | None
    version: str | None
    is_garden: bool  # types.resourceType is "Garden"
    image_ref: str | None  # HOST/REPO@sha256:..., from the IsVariantFormOf relation
    function_ids: dict[str, str]  # pipeline -> Globus Compute function id, from relatedItems
    url: str | None


_FUNCTION = re.compile(re.escape(FUNCTION_URL.format("")) + r"([0-9a-fA-F-]{36})$")


def read_record(document: Mapping[str, Any]) -> DoiRecord:
    """Read back what `metadata` wrote, from DataCite's ``GET /dois/{doi}`` JSON:API document."""
    data = document.get("data") if isinstance(document.get("data"), Mapping) else {}
    attrs = data.get("attributes") or {}
    image_ref = None
    for rel in attrs.get("relatedIdentifiers") or []:
        ident = str(rel.get("relatedIdentifier") or "")
        if rel.get("relationType") == "IsVariantFormOf" and ident.startswith("docker://"):
            image_ref = ident.removeprefix("docker://")
            break
    functions = {}
    for item in attrs.get("relatedItems") or []:
        ident = (item.get("relatedItemIdentifier") or {}).get("relatedItemIdentifier") or ""
        titles = [t.get("title") for t in item.get("titles") or [] if t.get("title")]
        m = _FUNCTION.match(str(ident))
        if item.get("relationType") == "HasPart" and m and titles:
            functions[str(titles[0])] = m.group(1)
    titles = [t.get("title") for t in attrs.get("titles") or [] if isinstance(t, Mapping)]
    types = attrs.get("types") or {}
    return DoiRecord(doi=str(attrs.get("doi") or data.get("id") or ""), state=attrs.get("state"),
                     title=titles[0] if titles else None, version=attrs.get("version"),
                     is_garden=types.get("resourceType") == "Garden", image_ref=image_ref, function_ids=functions,
                     url=attrs.get("url"))


def signatures_from(metadata_json: Mapping[str, Any] | None) -> dict[str, str]:
    """Pipeline name -> signature text, from the build's ``metadata.json`` (if any)."""
    out: dict[str, str] = {}
    for p in (metadata_json or {}).get("pipelines", []):
        if isinstance(p, Mapping) and p.get("name") and p.get("signature"):
            out[str(p["name"])] = str(p["signature"])
    return out
