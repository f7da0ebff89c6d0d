"""Turn any garden reference into one pinned, callable garden (`Resolved`).

The one place that decides what a reference means (`gardenbuild.consumer.refs` parses it):

* a **folder**: its last build (the image id is the content hash of what was built);
* a **name**: the newest local build or pull of that garden in the catalog;
* an **OCI reference**: a tag is looked up once and replaced by the digest it names now;
  the image is pulled by that digest, and its digest checked, before anything runs;
* a **DOI**: its DataCite record names the image by digest (and the Globus Compute
  function of each pipeline); then as an OCI reference, and the pulled image must carry
  exactly that digest.

Trust: nothing is ever run from a name that can move. What a consumer runs is an image
whose digest came from the DOI record or was resolved from a tag and is reported.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gardenbuild.card import from_labels
from gardenbuild.consumer.refs import Ref, parse
from gardenbuild.errors import GardenError, UserError

#: The prefix DataCite's test system gives every repository.
TEST_PREFIX = "10.5072"


class ResolveError(GardenError):
    """Something outside the user's control (DataCite, a registry) failed while resolving."""


@dataclass
class Resolved:
    """A garden named by a reference, pinned: what `info` shows and what `run` calls."""

    ref: Ref
    card: dict[str, Any]
    image: str | None = None  # a local image (id) to run; None until pulled
    image_ids: list[str] = field(default_factory=list)  # every local image id that is this garden
    image_ref: str | None = None  # HOST/REPO@sha256:... when it is in a registry
    digest: str | None = None
    doi: str | None = None
    function_ids: dict[str, str] = field(default_factory=dict)
    root: Path | None = None
    summary: dict[str, Any] | None = None  # the last build.json, for a folder
    built: dict[str, Any] | None = None  # the last image.json, for a folder
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> list[str]:
        """A folder's files edited since its image was built (hashed on asking: load() need not)."""
        if self.root is None or self.built is None:
            return []
        from gardenbuild.engine.outputs import changed_since

        return changed_since(self.root, self.built)

    @property
    def meta(self) -> dict[str, Any]:
        from gardenbuild.card import meta_of

        return meta_of(self.card)

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or "")

    @property
    def version(self) -> str:
        return str(self.meta.get("version") or "")

    @property
    def pipelines(self) -> list[dict[str, Any]]:
        return list(self.card.get("pipelines") or [])

    def pipeline(self, name: str) -> dict[str, Any]:
        for p in self.pipelines:
            if p["name"] == name:
                return p
        names = ", ".join(p["name"] for p in self.pipelines) or "none"
        raise UserError(f"{self.name} has no pipeline '{name}'", hint=f"pipelines: {names}")

    def as_json(self) -> dict[str, Any]:
        return {"ref": self.ref.text, "kind": self.ref.kind, "garden": self.name, "version": self.version,
                "image": self.image, "image_ref": self.image_ref, "digest": self.digest, "doi": self.doi,
                "function_ids": dict(sorted(self.function_ids.items())),
                "root": str(self.root) if self.root else None, "card": self.card, "notes": self.notes}


@dataclass
class Resolver:
    """Resolves references; every outside service behind a narrow, replaceable callable."""

    backend: Any = None  # gardenbuild.backends.Backend; made on first use
    catalog: Any = None  # gardenbuild.catalog.Catalog
    http: Any = None  # a requests.Session-like object for DataCite
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    tls_verify: bool = True
    authfile: Path | None = None
    reporter: Any = None
    remote_inspect: Callable[..., dict] | None = None  # registry lookup without a pull (skopeo)

    def __post_init__(self) -> None:
        from gardenbuild.report import NullReporter

        if self.catalog is None:
            from gardenbuild.catalog import Catalog

            self.catalog = Catalog()
        self.reporter = self.reporter or NullReporter()

    def containers(self) -> Any:
        if self.backend is None:
            from gardenbuild.backends.buildah import Buildah

            self.backend = Buildah(reporter=self.reporter)
        return self.backend

    # -- the entry point ---------------------------------------------------------------------

    def resolve(self, text: str | Ref, *, pull: bool = True) -> Resolved:
        """Resolve ``text``. With ``pull`` the garden's image is made local (pulled by digest);
        without, a garden in a registry is described from its labels alone."""
        ref = text if isinstance(text, Ref) else parse(text)
        if ref.kind == "folder":
            return self.folder(ref)
        if ref.kind == "name":
            return self.named(ref)
        if ref.kind == "doi":
            return self.by_doi(ref, pull=pull)
        return self.by_image(ref, pull=pull)

    # -- folder and name: the user's own builds ------------------------------------------------

    def folder(self, ref: Ref) -> Resolved:
        from gardenbuild.engine.outputs import find_gardenfile, last_build, require_image

        root = find_gardenfile((ref.path or Path(ref.text)).resolve()).parent
        built = require_image(root, ref.text)
        summary = last_build(root)
        image_id, ids = built["image_id"], {built["image_id"]}
        if summary and summary.get("session_image_id") == built["image_id"]:
            image_id = summary["image_id"]  # the build finished: the garden image (session + server)
            ids.add(image_id)
        if self.containers().image_in_storage(image_id) is False:
            raise UserError(f"the image of {ref.text}'s last build is no longer in local storage",
                            hint=f"build it again: gardenbuild build {ref.text}")
        card = self.local_card(image_id, ref.text, root=root)
        resolved = Resolved(ref, card, image=image_id, image_ids=sorted(ids), root=root, summary=summary,
                            digest=(summary or built).get("digest"), built=built)
        self.add_publication(resolved, image_id)
        return resolved

    def named(self, ref: Ref) -> Resolved:
        builds = [b for b in self.catalog.builds(ref.name) if not ref.version or b["version"] == ref.version]
        pulls = [p for p in self.catalog.pulls(ref.name) if not ref.version or p["version"] == ref.version]
        candidates = sorted([(b["last_built"], "build", b) for b in builds] + [(p["last_pulled"], "pull", p) for p in pulls],
                            key=lambda c: c[0], reverse=True)
        backend = self.containers()
        for _, kind, row in candidates:
            if backend.image_in_storage(row["image_id"]) is False:
                continue
            if kind == "pull":
                return self.from_pull(ref, row)
            root = Path(row["root"]) if row.get("root") else None
            resolved = Resolved(ref, self.local_card(row["image_id"], str(root or ref.text), root=root),
                                image=row["image_id"], image_ids=[row["image_id"]], root=root)
            self.add_publication(resolved, row["image_id"])
            return resolved
        what = f"{ref.name}=={ref.version}" if ref.version else ref.name
        known = sorted(g["garden"] for g in self.catalog.gardens())  # built, published or pulled
        if candidates:
            raise UserError(f"the images of {what} are no longer in local storage",
                            hint="pull it again by its DOI or image reference, or rebuild its folder")
        raise UserError(f"no garden named {what} in the local catalog",
                        hint=f"known here: {', '.join(known)}" if known else
                        "name it by DOI or image reference (`gardenbuild pull REF`), or build its folder first")

    def local_card(self, image: str, shown_as: str, root: Path | None = None) -> dict[str, Any]:
        backend = self.containers()
        labels = backend.stored_labels(image)  # a millisecond, no buildah process
        if labels is None:
            from gardenbuild.publish.registry import image_labels

            labels = image_labels(backend, image)
        card = from_labels(labels)
        if card is None and root is not None:
            card = self.card_from_outputs(root)
        if card is None:
            raise UserError(f"the image of {shown_as} carries no garden card (built by an older gardenbuild)",
                            hint=f"rebuild it: gardenbuild build {shown_as}")
        return card

    @staticmethod
    def card_from_outputs(root: Path) -> dict[str, Any] | None:
        """The card of a session image (its tests failed, so no garden image was labelled):
        from the Gardenfile and what the notebook's run wrote."""
        import json

        from gardenbuild.card import complete, garden_part
        from gardenbuild.engine.outputs import OUTPUT_DIR, locked_pins
        from gardenbuild.manifest.load import load

        try:
            metadata = json.loads((root / OUTPUT_DIR / "metadata.json").read_text())
        except (OSError, ValueError):
            return None
        return complete(garden_part(load(root)), metadata, [{"name": n, "version": v} for n, v in locked_pins(root)])

    def add_publication(self, resolved: Resolved, image_id: str) -> None:
        """What publishing this very image recorded: its registry digest, DOI, functions."""
        pubs = [p for p in self.catalog.publications(resolved.name)
                if p.image_id == image_id or (resolved.summary and p.image_id == resolved.summary.get("image_id"))]
        if pubs:
            pub = pubs[-1]
            resolved.image_ref, resolved.doi = pub.image_ref, pub.doi
            resolved.function_ids = dict(pub.function_ids)

    # -- registry and DOI: someone else's garden ----------------------------------------------

    def by_image(self, ref: Ref, *, pull: bool, doi: str | None = None,
                 function_ids: Mapping[str, str] | None = None) -> Resolved:
        notes = []
        digest = ref.digest
        inspected = None
        if digest is None:
            inspected = self.inspect(ref.image or "")
            digest = inspected.get("Digest")
            if not digest:
                raise ResolveError(f"the registry gave no digest for {ref.image}")
            notes.append(f"{ref.image} resolved to {ref.repository}@{digest}; that digest is what runs")
        image_ref = f"{ref.repository}@{digest}"
        known = self.catalog.pull(image_ref)
        if known and self.containers().image_in_storage(known["image_id"]) is not False:
            resolved = self.from_pull(ref, known)
            resolved.notes = notes + resolved.notes
            if function_ids:
                resolved.function_ids = {**resolved.function_ids, **function_ids}
            return resolved
        if not pull:
            inspected = inspected if inspected is not None and ref.digest is None else self.inspect(image_ref)
            card = from_labels(inspected.get("Labels") or {})
            if card is None:
                raise UserError(f"{image_ref} is not a garden image (it carries no garden card)",
                                hint="name an image built and published by gardenbuild")
            return Resolved(ref, card, image_ref=image_ref, digest=digest, doi=self.doi_label(inspected) or doi,
                            function_ids=dict(function_ids or {}), notes=notes)
        resolved = self.pull(ref, image_ref, digest, doi=doi, function_ids=function_ids)
        resolved.notes = notes + resolved.notes
        return resolved

    @staticmethod
    def doi_label(inspected: Mapping[str, Any]) -> str | None:
        from gardenbuild.publish.registry import DOI_LABEL

        return (inspected.get("Labels") or {}).get(DOI_LABEL)

    def inspect(self, reference: str) -> dict[str, Any]:
        from gardenbuild.publish import registry

        lookup = self.remote_inspect or registry.remote_inspect
        return lookup(reference, tls_verify=self.tls_verify, authfile=self.authfile)

    def pull(self, ref: Ref, image_ref: str, digest: str, *, doi: str | None,
             function_ids: Mapping[str, str] | None) -> Resolved:
        from gardenbuild.publish import registry

        backend = self.containers()
        self.reporter.step(f"pulling {image_ref}")
        image_id = registry.pull(backend, image_ref, tls_verify=self.tls_verify, authfile=self.authfile)
        got = backend.digest(image_id)
        if got != digest:
            self.discard(image_ref)
            raise ResolveError(f"the image pulled as {image_ref} has the digest {got}, not {digest}; it was removed",
                               hint="the registry served another image than the one named: do not trust it")
        labels = registry.image_labels(backend, image_id)
        card = from_labels(labels)
        if card is None:
            self.discard(image_ref)
            raise UserError(f"{image_ref} is not a garden image (it carries no garden card); it was removed",
                            hint="name an image built and published by gardenbuild")
        labelled = labels.get(registry.DOI_LABEL)
        if doi and labelled and labelled.lower() != doi.lower():
            self.discard(image_ref)
            raise ResolveError(f"{image_ref} carries the DOI {labelled}, not {doi}; it was removed",
                               hint="the DOI record and the image disagree: do not trust them")
        doi = labelled or doi
        self.catalog.record_pull(image_ref=image_ref, image_id=image_id, card=card, doi=doi,
                                 function_ids=dict(function_ids or {}), source=ref.text)
        return Resolved(ref, card, image=image_id, image_ids=[image_id], image_ref=image_ref, digest=digest, doi=doi,
                        function_ids=dict(function_ids or {}))

    def discard(self, image_ref: str) -> None:
        """Drop the name a refused pull gave (the image goes with it unless it has other names)."""
        try:
            self.containers().rmi(image_ref)
        except GardenError:
            pass

    def from_pull(self, ref: Ref, row: Mapping[str, Any]) -> Resolved:
        return Resolved(ref, row["card"], image=row["image_id"], image_ids=[row["image_id"]], image_ref=row["image_ref"],
                        digest=row["image_ref"].partition("@")[2], doi=row.get("doi"),
                        function_ids=dict(row.get("function_ids") or {}))

    def by_doi(self, ref: Ref, *, pull: bool) -> Resolved:
        from gardenbuild.consumer.refs import parse as parse_ref

        doi = ref.doi or ""
        mine = [p for p in self.catalog.publications() if p.doi and p.doi.lower() == doi.lower() and p.image_ref]
        if mine:  # published from this machine: the catalog knows what the record says
            image_ref, functions = mine[-1].image_ref, dict(mine[-1].function_ids)
        else:
            record = self.datacite_record(doi)
            if not record.is_garden:
                raise UserError(f"the DOI {doi} names \"{record.title or 'a record'}\", which is not a garden",
                                hint="a garden's DOI record has resource type Garden; check the DOI")
            if not record.image_ref:
                raise UserError(f"the DataCite record of {doi} names no garden image",
                                hint="the garden was published without --registry; ask its authors for the image")
            image_ref, functions = record.image_ref, record.function_ids
        image = parse_ref(image_ref)
        if image.kind != "oci" or not image.pinned:
            raise UserError(f"the record of {doi} names the image {image_ref}, not by digest; it will not be run",
                            hint="only digest-pinned images are run for a DOI")
        resolved = self.by_image(image, pull=pull, doi=doi, function_ids=functions)
        resolved.ref = ref
        if resolved.doi and resolved.doi.lower() != doi.lower():
            raise ResolveError(f"{image_ref} carries the DOI {resolved.doi}, not {doi}",
                               hint="the DOI record and the image disagree: do not trust them")
        resolved.doi = doi
        return resolved

    def datacite_api(self, doi: str) -> str:
        from gardenbuild.publish.datacite import API, TEST_API

        if doi.startswith(TEST_PREFIX + "/") or self.env.get("GARDENBUILD_DATACITE_TEST", "") in ("1", "true", "yes"):
            return TEST_API
        return API

    def datacite_record(self, doi: str) -> Any:
        import requests

        from gardenbuild.publish.datacite import MEDIA_TYPE, read_record

        url = f"{self.datacite_api(doi)}/dois/{doi}"
        session = self.http or requests.Session()
        auth = None
        if self.env.get("DATACITE_REPOSITORY_ID") and self.env.get("DATACITE_PASSWORD"):
            auth = (self.env["DATACITE_REPOSITORY_ID"], self.env["DATACITE_PASSWORD"])  # drafts need it
        try:
            response = session.get(url, headers={"Accept": MEDIA_TYPE}, auth=auth, timeout=30)
        except requests.RequestException as exc:
            raise ResolveError(f"DataCite could not be reached to resolve {doi} ({type(exc).__name__})",
                               hint="check the network, then try again") from None
        if response.status_code == 404:
            raise UserError(f"DataCite has no DOI {doi}",
                            hint="check the DOI (a draft DOI is visible only with its repository's credentials)")
        if response.status_code >= 400:
            raise ResolveError(f"DataCite answered HTTP {response.status_code} for {doi}", hint="try again later")
        try:
            return read_record(response.json())
        except ValueError:
            raise ResolveError(f"DataCite's answer for {doi} is not JSON") from None
