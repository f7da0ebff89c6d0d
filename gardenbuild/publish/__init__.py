"""Publish a built garden: the image to a registry, functions to Globus Compute, a DOI at DataCite.

Each target works alone; together they run in this order, each a *stage* recorded in
the catalog (`gardenbuild.catalog`) under garden + version + local image id:

1. ``doi-draft``    reserve the DOI as a DataCite draft (the DOI must exist before the
                    push, because the image carries it as a label);
2. ``registry``     push the image (relabelled with the DOI when there is one), name it by digest;
3. ``globus``       register one Globus Compute function per pipeline for that digest
                    (`gardenbuild.publish.globus`, optional);
4. ``doi-metadata`` send the full metadata (digest, function ids), and with ``--doi publish``
                    make the DOI findable;

then ``CITATION.cff`` and ``codemeta.json`` are written into ``DIR/.gardenbuild/``.

A run that fails half-way leaves every finished stage recorded, and the next run skips
what is done: the DOI is never drafted twice, functions never registered twice, and a
repeated push uploads no blob the registry has. ``dry_run`` sends nothing and changes
nothing; the result lists every request that would be sent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gardenbuild.backends import Backend
from gardenbuild.catalog import Catalog, Publication
from gardenbuild.errors import GardenError, UserError
from gardenbuild.report import Reporter

if TYPE_CHECKING:
    from gardenbuild.manifest.garden import Garden

STAGES = ("doi-draft", "registry", "globus", "doi-metadata")
#: In a dry run, the digest a push would give is not known yet; this stands for it.
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
_SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET", re.I)


@dataclass
class StageOutcome:
    stage: str
    state: str  # done | skipped | planned | failed
    detail: str = ""


@dataclass
class PublishResult:
    garden: str
    version: str
    image: str
    image_id: str
    dry_run: bool
    targets: dict[str, Any]
    image_ref: str | None = None
    doi: str | None = None
    doi_state: str | None = None
    function_ids: dict[str, str] = field(default_factory=dict)
    stages: list[StageOutcome] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "garden": self.garden,
            "version": self.version,
            "image": self.image,
            "image_id": self.image_id,
            "dry_run": self.dry_run,
            "targets": self.targets,
            "image_ref": self.image_ref,
            "doi": self.doi,
            "doi_url": f"https://doi.org/{self.doi}" if self.doi and not self.dry_run else None,
            "doi_state": self.doi_state,
            "function_ids": dict(sorted(self.function_ids.items())),
            "stages": [{"stage": s.stage, "state": s.state, "detail": s.detail} for s in self.stages],
            "requests": self.requests,
            "files": self.files,
            "warnings": self.warnings,
            "problems": self.problems,
            "notes": self.notes,
        }


def secrets_in(env: Mapping[str, str]) -> list[str]:
    """Values that must never be written anywhere: passwords, tokens, secrets from the environment."""
    return sorted({v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= 4}, key=len, reverse=True)


def scrub(text: str | None, secrets: list[str]) -> str | None:
    if text is None:
        return None
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _globus() -> Any:
    try:
        from gardenbuild.publish import globus
    except ImportError as exc:
        raise UserError(f"Globus Compute publishing is not available ({exc})",
                        hint="install the publish extra: pip install 'gardenbuild[publish]'") from None
    return globus


def _globus_register(garden: Garden, image_ref: str, *, client: Any, dry_run: bool,
                     known: Mapping[str, str] | None = None,
                     on_registered: Callable[[str, str], None] | None = None,
                     ) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Call the Globus stage: function ids by pipeline, and the requests (sent or planned).

    ``client`` may be a zero-argument factory, called only when something is registered
    (so a run that skips this stage needs no Globus login). Pipelines in ``known`` were
    registered by an earlier run and are not registered again.
    """
    globus = _globus()
    if callable(client) and not dry_run and not hasattr(client, "register_function"):
        client = client()
    return globus.register(garden, image_ref, client=client, dry_run=dry_run, known=known,
                           on_registered=on_registered)


class _Run:
    """One publish run: the stages in order, each recorded in the catalog as it goes."""

    def __init__(self, garden: Garden, summary: Mapping[str, Any], *, registry: str | None, globus: bool, doi: bool,
                 doi_publish: bool, datacite_test: bool, dry_run: bool, tls_verify: bool, authfile: Path | None,
                 backend: Backend, reporter: Reporter, catalog: Catalog, http: Any, env: Mapping[str, str],
                 globus_client: Any, publisher: str, landing_url: str | None, year: str | None,
                 metadata_json: Mapping[str, Any] | None, out_dir: Path) -> None:
        from gardenbuild.publish import datacite

        self.garden, self.summary = garden, summary
        self.registry, self.globus, self.doi = registry, globus, doi or doi_publish
        self.doi_publish, self.dry_run = doi_publish, dry_run
        self.tls_verify, self.authfile = tls_verify, authfile
        self.backend, self.reporter, self.catalog, self.http, self.env = backend, reporter, catalog, http, env
        self.globus_client, self.publisher, self.out_dir = globus_client, publisher, out_dir
        self.landing_url = landing_url or garden.meta.repository
        self.year = year or str(datetime.now(timezone.utc).year)
        self.signatures = datacite.signatures_from(metadata_json)
        self.api = datacite.api_url(datacite_test)
        self.secrets = secrets_in(env)
        self.image, self.image_id = str(summary["image"]), str(summary["image_id"])
        self.result = PublishResult(garden.name, garden.meta.version, self.image, self.image_id, dry_run,
                                    {"registry": registry, "globus": globus, "doi": "publish" if doi_publish else
                                     ("draft" if doi else None), "datacite_api": self.api if self.doi else None})
        self.pub: Publication
        self.dest: Any = None
        self._client: Any = None
        self._prefix: str | None = None

    # -- helpers ----------------------------------------------------------------------

    def outcome(self, stage: str, state: str, detail: str = "") -> None:
        self.result.stages.append(StageOutcome(stage, state, detail))

    def warn(self, message: str) -> None:
        self.result.warnings.append(message)
        self.reporter.warn(message)

    def mark(self, stage: str, state: str, detail: str | None = None, error: str | None = None) -> None:
        if not self.dry_run:
            self.catalog.set_stage(self.pub, stage, state, detail=scrub(detail, self.secrets), error=scrub(error, self.secrets))

    def save(self) -> None:
        if not self.dry_run:
            self.catalog.save(self.pub)

    def datacite_client(self) -> Any:
        from gardenbuild.publish.datacite import Credentials, DataCite

        if self._client is None:
            self._client = DataCite(Credentials.from_env(self.env), session=self.http)
        return self._client

    # -- preflight: everything that can be checked without sending anything ----------------

    def preflight(self) -> None:
        from gardenbuild.publish import datacite, registry

        problems: list[GardenError] = []
        s = self.summary
        if s.get("garden") != self.garden.name:
            problems.append(UserError(f"the last build is of '{s.get('garden')}', not '{self.garden.name}'",
                                      hint=f"run: gardenbuild build {self.garden.root}"))
        if s.get("version") not in (None, self.garden.meta.version):
            problems.append(UserError(f"the garden's version is {self.garden.meta.version} but the last build was of "
                                      f"{s.get('version')}", hint=f"rebuild: gardenbuild build {self.garden.root}"))
        if self.registry:
            try:
                self.dest = registry.destination(self.registry, self.garden.name, self.garden.meta.version)
            except GardenError as exc:
                problems.append(exc)
            if self.backend.image_id(self.image) != self.image_id:
                problems.append(UserError(f"the built image {self.image} is gone or has changed since the build",
                                          hint=f"rebuild: gardenbuild build {self.garden.root}"))
        if self.doi:
            try:
                self._prefix = datacite.resolve_prefix(self.env, self.garden.publish.datacite_prefix)
            except GardenError as exc:
                problems.append(exc)
            try:
                datacite.Credentials.from_env(self.env)
            except GardenError as exc:
                problems.append(exc)
            if self.doi_publish and not self.landing_url:
                problems.append(UserError("a findable DOI needs a landing page URL, and the garden has none",
                                          hint="set repository in the [garden] table (or pass --url URL)"))
        if self.globus and not self.registry and not (self.known_image_ref()):
            problems.append(UserError("registering Globus Compute functions needs the image in a registry",
                                      hint="add --registry HOST/NAMESPACE (or set registry in [publish])"))
        if not problems:
            return
        if self.dry_run:  # a dry run shows what it can, and what would stop the real run
            self.result.problems += [p.message + (f" (hint: {p.hint})" if p.hint else "") for p in problems]
            return
        first = problems[0]
        if len(problems) > 1:
            first.hint = "; ".join(filter(None, [first.hint] + [f"also: {p.message}" for p in problems[1:]]))
        raise first

    def known_image_ref(self) -> str | None:
        found = self.catalog.find(self.garden.name, self.garden.meta.version, self.image_id)
        return found.image_ref if found else None

    # -- the run ------------------------------------------------------------------------

    def run(self) -> PublishResult:
        if not (self.registry or self.globus or self.doi):
            raise UserError("nothing to publish", hint="pass --registry HOST/NAMESPACE, --globus or --doi, "
                                                       "or set them in the [publish] table of Gardenfile.toml")
        self.preflight()
        name, version = self.garden.name, self.garden.meta.version
        if self.dry_run:
            self.pub = self.catalog.find(name, version, self.image_id) or Publication(None, name, version, self.image_id)
        else:
            self.catalog.record_build(self.summary, root=self.garden.root)
            self.pub = self.catalog.publication(name, version, self.image_id)
        run_id = None if self.dry_run else self.catalog.start_run(self.pub, self.result.targets)
        stage = "start"
        try:
            for stage, wanted, step in (("doi-draft", self.doi, self.doi_draft), ("registry", bool(self.registry), self.push),
                                        ("globus", self.globus, self.register), ("doi-metadata", self.doi, self.doi_metadata)):
                if wanted:
                    step()
            stage = "files"
            self.write_files()
        except BaseException as exc:
            message = exc.message if isinstance(exc, GardenError) else f"{type(exc).__name__}: {exc}"
            message = scrub(message, self.secrets) or ""
            if isinstance(exc, GardenError):
                exc.message = message
            if not self.dry_run:
                if stage in STAGES:
                    self.mark(stage, "failed", error=message)
                self.catalog.finish_run(run_id, "failed", error=f"{stage}: {message}")  # type: ignore[arg-type]
                self.report_progress()
            raise
        if run_id is not None:
            self.catalog.finish_run(run_id, "ok")
        self.result.image_ref = self.pub.image_ref or self.result.image_ref
        self.result.doi = self.pub.doi or self.result.doi
        self.result.doi_state = self.pub.doi_state or self.result.doi_state
        self.result.function_ids = dict(self.pub.function_ids) or self.result.function_ids
        return self.result

    def report_progress(self) -> None:
        done = [f"{s}" for s in STAGES if self.pub.done(s)]
        if done:
            self.reporter.warn(f"finished before the failure, and kept: {', '.join(done)} "
                               f"(see `gardenbuild show {self.garden.name}`); the same command resumes from here")

    # -- stages -------------------------------------------------------------------------

    def attrs(self, doi: str) -> dict[str, Any]:
        from gardenbuild.publish import datacite

        return datacite.metadata(self.garden, doi=doi, publication_year=self.pub.publication_year or self.year,
                                 publisher=self.publisher, url=self.landing_url, image_ref=self.pub.image_ref,
                                 function_ids=self.pub.function_ids, signatures=self.signatures)

    def doi_draft(self) -> None:
        from gardenbuild.publish import datacite

        pub = self.pub
        if pub.doi and pub.datacite_api == self.api:
            self.outcome("doi-draft", "skipped", f"{pub.doi} was reserved in an earlier run")
            return
        if pub.doi:
            self.warn(f"{pub.doi} was reserved at {pub.datacite_api}; reserving a new DOI at {self.api}")
            pub.doi = pub.doi_state = pub.metadata_hash = None
        prefix = self._prefix or "<DATACITE_PREFIX>"
        doi = datacite.suggest_doi(prefix, self.garden.name, self.garden.meta.version, self.image_id)
        attrs = self.attrs(doi)
        if self._prefix:
            datacite.validate(attrs)
        request = datacite.draft_request(self.api, attrs)
        if self.dry_run:
            self.result.requests.append({"stage": "doi-draft", **request.as_json()})
            self.result.doi = doi
            self.outcome("doi-draft", "planned", request.purpose)
            return
        self.reporter.step(f"reserving DOI {doi} (draft) at {self.api}")
        self.mark("doi-draft", "pending", detail=doi)
        state = self.datacite_client().draft(self.api, attrs)
        pub.doi, pub.doi_state, pub.datacite_api = doi, state, self.api
        pub.publication_year = pub.publication_year or self.year
        pub.metadata_hash = datacite.metadata_hash(attrs)
        self.save()
        self.mark("doi-draft", "done", detail=doi)
        self.outcome("doi-draft", "done", f"{doi} ({state})")

    def push(self) -> None:
        from gardenbuild.publish import registry

        dest = self.dest
        if dest is None:  # a dry run with a bad --registry; preflight listed the problem
            self.outcome("registry", "planned", "no valid destination")
            return
        doi = self.pub.doi or self.result.doi
        wanted = registry.publish_labels(self.garden, doi)
        missing = registry.missing_labels(registry.image_labels(self.backend, self.image), wanted)
        source = self.image
        if self.dry_run:
            entry: dict[str, Any] = {"stage": "registry", "service": "registry", "method": "push",
                                     "destination": dest.transport,
                                     "command": registry.push_command(self.image if not missing else "<relabelled image>",
                                                                      dest, tls_verify=self.tls_verify, authfile=self.authfile),
                                     "note": "blobs the registry already holds are not uploaded again"}
            if missing:
                entry["relabel"] = {"from": self.image_id, "labels": missing}
            self.result.requests.append(entry)
            self.result.image_ref = dest.by_digest(PLACEHOLDER_DIGEST)
            self.result.notes.append(f"{PLACEHOLDER_DIGEST} stands for the digest the push will give")
            self.outcome("registry", "planned", f"push to {dest.reference}")
            return
        self.mark("registry", "pending", detail=dest.reference)
        if missing:
            self.reporter.step(f"adding labels {', '.join(missing)} to {self.image}")
            source = registry.relabel(self.backend, self.image_id, missing, tag=registry.published_tag(self.image))
        for other in self.catalog.publications(self.garden.name):
            if (other.version == self.pub.version and other.image_id != self.image_id
                    and other.registry == dest.repository and other.image_ref):
                self.warn(f"{dest.reference} was published from another image before ({other.image_ref}); the tag "
                          "now moves to this one (the old digest stays valid); bump the version to keep both apart")
                break
        self.reporter.step(f"pushing {self.image} to {dest.reference}")
        image_ref = registry.push(self.backend, source, dest, tls_verify=self.tls_verify, authfile=self.authfile)
        if self.pub.function_ids and self.pub.image_ref and self.pub.image_ref != image_ref:
            self.warn(f"the Globus Compute functions stay registered for {self.pub.image_ref} (same layers)")
        if self.pub.doi and not self.doi and self.pub.image_ref != image_ref:
            self.warn(f"the metadata of {self.pub.doi} does not name this image yet; publish with --doi to update it")
        self.pub.registry, self.pub.image_ref = dest.repository, image_ref
        self.pub.pushed_labels = registry.labels_hash(wanted)
        self.save()
        self.mark("registry", "done", detail=image_ref)
        self.outcome("registry", "done", image_ref)

    def register(self) -> None:
        pub = self.pub
        if pub.function_ids and pub.done("globus"):
            self.outcome("globus", "skipped", f"{len(pub.function_ids)} function(s) registered in an earlier run")
            return
        image_ref = pub.image_ref or self.result.image_ref
        if not image_ref:  # preflight reported it (dry run)
            self.outcome("globus", "planned", "needs the image in a registry first")
            return
        if not self.dry_run:
            self.reporter.step(f"registering {len(self.garden.pipelines)} pipeline(s) with Globus Compute")
            self.mark("globus", "pending", detail=image_ref)
        def registered(name: str, function_id: str) -> None:
            pub.function_ids = {**pub.function_ids, name: function_id}
            self.save()  # one at a time: a failure later on must not forget this one

        ids, requests = _globus_register(self.garden, image_ref, client=self.globus_client, dry_run=self.dry_run,
                                         known=pub.function_ids, on_registered=registered)
        if self.dry_run:
            self.result.requests += [{"stage": "globus", "service": "globus-compute", **r} for r in requests]
            self.outcome("globus", "planned", f"register {len(self.garden.pipelines)} function(s)")
            return
        pub.function_ids = ids
        self.save()
        writer = getattr(_globus(), "write_artifacts", None)
        if writer is not None:
            self.result.files += [str(p) for p in writer(self.out_dir, self.garden, image_ref, ids, requests).values()]
        self.mark("globus", "done", detail=", ".join(f"{k}={v}" for k, v in sorted(ids.items())))
        self.outcome("globus", "done", f"{len(ids)} function(s)")

    def doi_metadata(self) -> None:
        from gardenbuild.publish import datacite

        pub = self.pub
        doi = pub.doi or self.result.doi
        if not doi:
            return
        if self.dry_run and pub.image_ref is None and self.result.image_ref:
            pub.image_ref = self.result.image_ref  # show the relation with the placeholder digest
        attrs = self.attrs(doi)
        if self._prefix:
            datacite.validate(attrs)
        digest = datacite.metadata_hash(attrs)
        make_findable = self.doi_publish and pub.doi_state != "findable"
        if digest == pub.metadata_hash and not make_findable:
            self.outcome("doi-metadata", "skipped", f"{doi} is up to date ({pub.doi_state})")
            return
        request = datacite.update_request(self.api, doi, attrs, publish=make_findable)
        if self.dry_run:
            self.result.requests.append({"stage": "doi-metadata", **request.as_json()})
            self.outcome("doi-metadata", "planned", request.purpose)
            return
        self.reporter.step(f"{'publishing' if make_findable else 'updating'} DOI {doi}")
        self.mark("doi-metadata", "pending", detail=doi)
        self.datacite_client().send(request)
        pub.metadata_hash = digest
        if make_findable:
            pub.doi_state = "findable"
        self.save()
        self.mark("doi-metadata", "done", detail=f"{doi} ({pub.doi_state})")
        self.outcome("doi-metadata", "done", f"{doi} ({pub.doi_state})")

    def write_files(self) -> None:
        from gardenbuild.publish.citation import write_files

        if self.dry_run:
            return
        paths = write_files(self.garden, self.out_dir, doi=self.pub.doi, image_ref=self.pub.image_ref)
        self.result.files += [str(p) for p in paths]


def publish(garden: Garden, build_summary: Mapping[str, Any], *, registry: str | None, globus: bool, doi: bool,
            doi_publish: bool, datacite_test: bool, dry_run: bool, tls_verify: bool, authfile: Path | None,
            backend: Backend, reporter: Reporter, catalog: Catalog, http: Any = None, env: Mapping[str, str] | None = None,
            globus_client: Any = None, publisher: str | None = None, landing_url: str | None = None,
            year: str | None = None, metadata_json: Mapping[str, Any] | None = None,
            out_dir: Path | None = None) -> PublishResult:
    """Publish ``garden`` as built (``build_summary`` is its ``build.json``) to the requested targets.

    ``doi`` reserves a draft DOI and keeps its metadata current; ``doi_publish`` also makes
    it findable. ``http`` is a `requests.Session`-like object for DataCite (tests may pass
    one); ``env`` defaults to the process environment (credentials are read from it and
    never stored). Raises `GardenError` on failure, after recording it in ``catalog``.
    """
    from gardenbuild.engine.outputs import OUTPUT_DIR
    from gardenbuild.publish.datacite import DEFAULT_PUBLISHER

    return _Run(garden, build_summary, registry=registry, globus=globus, doi=doi, doi_publish=doi_publish,
                datacite_test=datacite_test, dry_run=dry_run, tls_verify=tls_verify, authfile=authfile, backend=backend,
                reporter=reporter, catalog=catalog, http=http, env=os.environ if env is None else env,
                globus_client=globus_client, publisher=publisher or DEFAULT_PUBLISHER, landing_url=landing_url,
                year=year, metadata_json=metadata_json, out_dir=out_dir or garden.root / OUTPUT_DIR).run()
