"""`gardenbuild publish` orchestration: dry runs, exact DataCite requests, resuming, secrets.

The container backend is a fake that records what it was asked (the real registry is in
test_publish_registry.py); DataCite is mocked at the HTTP layer with `responses`, so the
real client code runs and the bodies it sends are compared whole.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types

import pytest
import responses

import gardenbuild.publish as publish_pkg
from gardenbuild.catalog import Catalog
from gardenbuild.errors import BackendError, GardenError, UserError
from gardenbuild.manifest.load import load
from gardenbuild.cli import publish as commands
from gardenbuild.publish import PLACEHOLDER_DIGEST, datacite, publish, registry
from gardenbuild.publish.datacite import API, TEST_API
from gardenbuild.report import RecordingReporter
from helpers import publish_cli as cli

IMAGE = "localhost/gardens/solubility:4d130430f330e3b10ec1"
IMAGE_ID = "d45cff783293c473ed36b1ae11b29d1c5db589bd512ea1cc44ce4948006509a7"
DIGEST = "sha256:" + "1" * 64
PASSWORD = "pw-NEVER-written-9"
ENV = {"DATACITE_REPOSITORY_ID": "GARDEN.TEST", "DATACITE_PASSWORD": PASSWORD, "DATACITE_PREFIX": "10.5072"}
REPO_URL = "https://github.com/garden-examples/solubility"


class FakeBackend:
    """Stands in for `gardenbuild.backends.buildah.Buildah`: knows one image, records bud and push calls."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = dict(labels)
        self.buds: list[dict] = []
        self.pushes: list[tuple[str, str, bool]] = []
        self.fail_push: BaseException | None = None

    def image_id(self, ref: str) -> str | None:
        return IMAGE_ID if ref == IMAGE else None

    def inspect(self, ref: str) -> dict:
        return {"OCIv1": {"config": {"Labels": self.labels}}}

    def bud(self, containerfile, context, *, tag, labels, layers, network):
        self.buds.append({"containerfile": containerfile.read_text(), "tag": tag, "labels": labels, "layers": layers})
        return "f" * 64

    def push(self, ref, dest, *, tls_verify, authfile):
        if self.fail_push is not None:
            raise self.fail_push
        self.pushes.append((ref, dest, tls_verify))
        return DIGEST


@pytest.fixture
def garden(garden_copy):
    return load(garden_copy("solubility"))


@pytest.fixture
def summary(garden):
    return {"garden": "solubility", "version": "1.0.0", "image": IMAGE, "image_id": IMAGE_ID,
            "pipelines": ["predict_solubility"], "python": "3.11", "flavor": "sklearn"}


@pytest.fixture
def backend(garden):
    return FakeBackend(registry.publish_labels(garden, None))


@pytest.fixture
def catalog(tmp_path):
    return Catalog(tmp_path / "data" / "catalog.sqlite")


@pytest.fixture
def doi(garden):
    return datacite.suggest_doi("10.5072", "solubility", "1.0.0", IMAGE_ID)


def run(garden, summary, backend, catalog, *, registry_="ghcr.io/lab", globus=False, doi=True, doi_publish=False,
        dry_run=False, env=ENV, reporter=None, **kw):
    return publish(garden, summary, registry=registry_, globus=globus, doi=doi, doi_publish=doi_publish,
                   datacite_test=True, dry_run=dry_run, tls_verify=True, authfile=None, backend=backend,
                   reporter=reporter or RecordingReporter(), catalog=catalog, env=env, year="2026", **kw)


def attrs(garden, doi, **kw):
    return datacite.metadata(garden, doi=doi, publication_year="2026", url=REPO_URL, **kw)


def datacite_ok(doi, *, put_status=200):
    post = responses.post(f"{TEST_API}/dois", json={"data": {"id": doi, "attributes": {"state": "draft"}}}, status=201)
    put = responses.put(f"{TEST_API}/dois/{doi}", json={"data": {"id": doi, "attributes": {}}}, status=put_status)
    return post, put


# --------------------------------------------------------------------------- dry run


@responses.activate  # nothing registered: any request would fail the test
def test_dry_run_sends_nothing_and_shows_every_request(garden, summary, backend, catalog, doi):
    result = run(garden, summary, backend, catalog, doi_publish=True, dry_run=True)
    data = result.as_json()
    assert backend.pushes == [] and backend.buds == [] and not catalog.path.exists()
    assert [r.get("method") for r in data["requests"]] == ["POST", "push", "PUT"]
    draft, push, update = data["requests"]
    assert draft["url"] == f"{TEST_API}/dois" and draft["json"] == {"data": {"type": "dois", "attributes": attrs(garden, doi)}}
    assert push["destination"] == "docker://ghcr.io/lab/solubility:1.0.0"
    assert push["relabel"] == {"from": IMAGE_ID, "labels": {"dev.gardenbuild.doi": doi,
                                                            "org.opencontainers.image.url": f"https://doi.org/{doi}"}}
    assert push["command"] == ["buildah", "push", "--tls-verify=true", "<relabelled image>",
                               "docker://ghcr.io/lab/solubility:1.0.0"]
    placeholder = f"ghcr.io/lab/solubility@{PLACEHOLDER_DIGEST}"
    assert update["url"] == f"{TEST_API}/dois/{doi}"
    assert update["json"] == {"data": {"id": doi, "type": "dois",
                                       "attributes": {**attrs(garden, doi, image_ref=placeholder), "event": "publish"}}}
    assert [s["state"] for s in data["stages"]] == ["planned"] * 3 and data["problems"] == []
    assert PASSWORD not in json.dumps(data) and "Authorization" not in json.dumps(data)


@responses.activate
def test_dry_run_lists_what_would_stop_the_real_run(garden, summary, backend, catalog):
    result = run(garden, summary, backend, catalog, registry_="Not A Registry", env={}, dry_run=True)
    problems = "\n".join(result.problems)
    assert "does not start with a registry host" in problems
    assert "needs your DataCite prefix" in problems and "DATACITE_PASSWORD not set" in problems
    assert result.requests[0]["json"]["data"]["attributes"]["doi"].startswith("<DATACITE_PREFIX>/")




@pytest.fixture
def built(garden, summary, backend, monkeypatch, tmp_path):
    """The garden folder with a build.json, the fake backend in place of buildah, a private catalog."""
    out = garden.root / ".gardenbuild"
    out.mkdir(exist_ok=True)
    (out / "build.json").write_text(json.dumps(summary))
    (out / "metadata.json").write_text(json.dumps({"pipelines": [{"name": "predict_solubility",
                                                                  "signature": "(smiles: list[str]) -> list[float]"}]}))
    monkeypatch.setattr("gardenbuild.backends.buildah.Buildah", lambda reporter=None: backend)
    monkeypatch.setenv("GARDENBUILD_DATA", str(tmp_path / "data"))
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    return garden.root


@responses.activate
def test_cli_dry_run_json(built, capsys, doi):
    _, code = cli("publish", str(built), "--registry", "127.0.0.1:5000/lab", "--no-tls-verify", "--doi", "publish",
                  "--dry-run", "--json")
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["dry_run"] and data["targets"] == {
        "registry": "127.0.0.1:5000/lab", "globus": False, "doi": "publish", "datacite_api": TEST_API}
    sent = data["requests"][2]["json"]["data"]["attributes"]
    assert sent["event"] == "publish"
    assert "Pipeline predict_solubility(smiles: list[str]) -> list[float]: " in sent["descriptions"][1]["description"]
    assert data["requests"][1]["command"][2] == "--tls-verify=false"


def test_cli_text_and_doi_before_the_folder(built, capsys, monkeypatch):
    monkeypatch.chdir(built.parent)
    _, code = cli("publish", "--doi", built.name, "--dry-run")  # --doi swallowed the folder
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("dry run for solubility 1.0.0: nothing was sent; 2 request(s) would be:")
    assert re.search(r"^  POST +https://api\.test\.datacite\.org/dois  \(reserve 10\.5072/garden\.solubility", out, re.M)
    with pytest.raises(UserError, match="--doi takes 'draft' or 'publish', not 'findable'"):
        cli("publish", str(built), "--doi", "findable")


def test_targets_come_from_the_table_unless_flags_are_given(garden_copy):
    root = garden_copy("solubility")
    path = root / "Gardenfile.toml"
    path.write_text(path.read_text() + '\n[publish]\nregistry = "ghcr.io/lab"\nglobus = true\ndoi = true\n'
                                       'datacite_prefix = "10.5072"\n')
    table = load(root).publish
    ns = argparse.Namespace(registry=None, globus=False, doi=None, dir=str(root))
    assert commands._targets(ns, table) == ("ghcr.io/lab", True, True, False)
    ns.doi = "publish"
    assert commands._targets(ns, table) == (None, False, True, True)  # flags alone: each target works alone


def test_nothing_to_publish(garden, summary, backend, catalog):
    with pytest.raises(UserError, match="nothing to publish") as err:
        run(garden, summary, backend, catalog, registry_=None, doi=False)
    assert "[publish]" in err.value.hint


def test_a_stale_build_is_refused(garden, summary, backend, catalog):
    with pytest.raises(UserError, match="version is 1.0.0 but the last build was of 0.9"):
        run(garden, {**summary, "version": "0.9"}, backend, catalog, doi=False)
    with pytest.raises(UserError, match="is gone or has changed"):
        run(garden, {**summary, "image_id": "0" * 64}, backend, catalog, doi=False)


# --------------------------------------------------------------------------- a real run


@responses.activate
def test_publish_sends_exactly_these_requests(garden, summary, backend, catalog, doi):
    post, put = datacite_ok(doi)
    result = run(garden, summary, backend, catalog, doi_publish=True)
    image_ref = f"ghcr.io/lab/solubility@{DIGEST}"
    assert [(c.request.method, c.request.url) for c in responses.calls] == [
        ("POST", f"{TEST_API}/dois"), ("PUT", f"{TEST_API}/dois/{doi}")]
    assert json.loads(post.calls[0].request.body) == {"data": {"type": "dois", "attributes": attrs(garden, doi)}}
    assert json.loads(put.calls[0].request.body) == {"data": {"id": doi, "type": "dois", "attributes": {
        **attrs(garden, doi, image_ref=image_ref), "event": "publish"}}}
    assert backend.buds == [{"containerfile": f"FROM {IMAGE_ID}\n", "tag": f"{IMAGE}-published", "layers": False,
                             "labels": {"dev.gardenbuild.doi": doi, "org.opencontainers.image.url": f"https://doi.org/{doi}"}}]
    assert backend.pushes == [("f" * 64, "docker://ghcr.io/lab/solubility:1.0.0", True)]
    data = result.as_json()
    assert (data["image_ref"], data["doi"], data["doi_state"]) == (image_ref, doi, "findable")
    assert data["doi_url"] == f"https://doi.org/{doi}"
    assert [(s["stage"], s["state"]) for s in data["stages"]] == [
        ("doi-draft", "done"), ("registry", "done"), ("doi-metadata", "done")]
    cff = (garden.root / ".gardenbuild" / "CITATION.cff").read_text()
    assert f'doi: "{doi}"' in cff and image_ref in cff
    pub = catalog.find("solubility", "1.0.0", IMAGE_ID)
    assert (pub.doi, pub.doi_state, pub.image_ref, pub.datacite_api) == (doi, "findable", image_ref, TEST_API)
    assert catalog.builds("solubility")[0]["image_id"] == IMAGE_ID  # publishing records the build too


@responses.activate
def test_unchanged_republish_sends_nothing_new_to_datacite(garden, summary, backend, catalog, doi):
    datacite_ok(doi)
    run(garden, summary, backend, catalog, doi_publish=True)
    calls = len(responses.calls)
    result = run(garden, summary, backend, catalog, doi_publish=True)
    assert len(responses.calls) == calls
    assert [(s.stage, s.state) for s in result.stages] == [
        ("doi-draft", "skipped"), ("registry", "done"), ("doi-metadata", "skipped")]
    assert len(backend.pushes) == 2  # pushed again: the registry skips every blob it has (see the registry tests)


@responses.activate
def test_production_api_when_not_test(garden, summary, backend, catalog, doi):
    responses.post(f"{API}/dois", status=201, json={})
    responses.put(f"{API}/dois/{doi}", status=200, json={})
    publish(garden, summary, registry=None, globus=False, doi=True, doi_publish=False, datacite_test=False,
            dry_run=False, tls_verify=True, authfile=None, backend=backend, reporter=RecordingReporter(),
            catalog=catalog, env=ENV, year="2026")
    assert [c.request.url for c in responses.calls] == [f"{API}/dois"]  # the draft already holds all there is


# --------------------------------------------------------------------------- failures and resuming


@responses.activate
def test_resume_after_the_registry_failed(garden, summary, backend, catalog, doi):
    post, put = datacite_ok(doi)
    backend.fail_push = BackendError("buildah push failed", ["buildah", "push"],
                                     "Error: pinging container registry ghcr.io: dial tcp: connect: connection refused")
    reporter = RecordingReporter()
    with pytest.raises(GardenError, match="cannot be reached") as err:
        run(garden, summary, backend, catalog, reporter=reporter)
    assert "run the same command again" in err.value.hint
    pub = catalog.find("solubility", "1.0.0", IMAGE_ID)
    assert pub.done("doi-draft") and pub.stages["registry"].state == "failed" and pub.doi == doi
    assert "kept: doi-draft" in reporter.messages("warn")[-1]
    assert [r["outcome"] for r in catalog.runs(pub)] == ["failed"]

    backend.fail_push = None
    result = run(garden, summary, backend, catalog)
    assert post.call_count == 1 and put.call_count == 1  # no second draft
    assert result.doi == doi and result.image_ref == f"ghcr.io/lab/solubility@{DIGEST}"
    assert [r["outcome"] for r in catalog.runs(pub)] == ["failed", "ok"]


@responses.activate
def test_resume_after_an_interrupt(garden, summary, backend, catalog, doi):
    post, _ = datacite_ok(doi)
    backend.fail_push = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        run(garden, summary, backend, catalog)
    assert catalog.find("solubility", "1.0.0", IMAGE_ID).stages["registry"].error == "KeyboardInterrupt: "
    backend.fail_push = None
    run(garden, summary, backend, catalog)
    assert post.call_count == 1


@responses.activate
def test_a_lost_catalog_does_not_mint_a_second_doi(garden, summary, backend, catalog, doi, tmp_path):
    datacite_ok(doi)
    run(garden, summary, backend, catalog, registry_=None)
    responses.replace(responses.POST, f"{TEST_API}/dois", status=422,
                      json={"errors": [{"source": "doi", "title": "This DOI has already been taken"}]})
    responses.get(f"{TEST_API}/dois/{doi}", json={"data": {"id": doi, "attributes": {"state": "draft"}}})
    result = run(garden, summary, backend, Catalog(tmp_path / "fresh.sqlite"), registry_=None)
    assert result.doi == doi and result.doi_state == "draft"
    assert [c.request.method for c in responses.calls] == ["POST", "POST", "GET"]


def test_missing_credentials_stop_before_anything_is_sent(garden, summary, backend, catalog):
    with pytest.raises(UserError, match="DATACITE_REPOSITORY_ID and DATACITE_PASSWORD not set") as err:
        run(garden, summary, backend, catalog, env={"DATACITE_PREFIX": "10.5072"})
    assert "export DATACITE_REPOSITORY_ID" in err.value.hint
    assert backend.pushes == [] and not catalog.path.exists()


@responses.activate
def test_rejected_credentials(garden, summary, backend, catalog):
    responses.post(f"{TEST_API}/dois", status=401, json={"errors": [{"status": "401", "title": "Bad credentials."}]})
    with pytest.raises(GardenError, match=r"refused the credentials \(HTTP 401\)") as err:
        run(garden, summary, backend, catalog)
    assert "DATACITE_PASSWORD" in err.value.hint
    assert catalog.find("solubility", "1.0.0", IMAGE_ID).stages["doi-draft"].state == "failed"


@responses.activate
def test_no_secret_is_written_anywhere(built, garden, capsys, tmp_path, doi, monkeypatch):
    monkeypatch.setenv("SOME_API_TOKEN", "tok-ALSO-secret")
    responses.post(f"{TEST_API}/dois", status=201, json={})
    put = responses.put(f"{TEST_API}/dois/{doi}", status=500, body=f"echoing {PASSWORD} back")
    outputs = []
    with pytest.raises(GardenError) as err:
        cli("publish", str(built), "--registry", "ghcr.io/lab", "--doi", "publish")
    outputs += [err.value.message, err.value.hint or "", *capsys.readouterr()]
    responses.replace(responses.PUT, f"{TEST_API}/dois/{doi}", status=200, json={})
    for argv in (["publish", str(built), "--registry", "ghcr.io/lab", "--doi", "publish", "--json"],
                 ["publish", str(built), "--doi", "--dry-run", "--json"], ["list", "--json"], ["show", "solubility"]):
        cli(*argv)
        outputs += capsys.readouterr()
    assert put.call_count == 1 and json.loads(outputs[4])["doi_state"] == "findable"
    files = [p for p in (tmp_path / "data").iterdir()] + list((built / ".gardenbuild").iterdir())
    for secret in (PASSWORD, "tok-ALSO-secret"):
        assert not [o for o in outputs if secret in o]
        assert not [f for f in files if f.is_file() and secret.encode() in f.read_bytes()]


# --------------------------------------------------------------------------- Globus Compute, through its interface


@pytest.fixture
def fake_globus(monkeypatch):
    calls = []

    def register(garden, image_ref, *, client, dry_run, known=None, on_registered=None):
        calls.append((image_ref, client, dry_run))
        request = {"pipeline": "predict_solubility", "method": "POST", "path": "/v3/functions", "body": {"x": 1}}
        if dry_run:
            return {}, [request]
        if on_registered:
            on_registered("predict_solubility", "fn-0001")
        return {"predict_solubility": "fn-0001"}, [request]

    module = types.SimpleNamespace(register=register)
    monkeypatch.setitem(sys.modules, "gardenbuild.publish.globus", module)
    monkeypatch.setattr(publish_pkg, "globus", module, raising=False)
    return calls


@responses.activate
def test_functions_are_registered_once(garden, summary, backend, catalog, doi, fake_globus):
    _, put = datacite_ok(doi)
    client = object()
    result = run(garden, summary, backend, catalog, globus=True, globus_client=lambda: client)
    image_ref = f"ghcr.io/lab/solubility@{DIGEST}"
    assert fake_globus == [(image_ref, client, False)] and result.function_ids == {"predict_solubility": "fn-0001"}
    sent = json.loads(put.calls[0].request.body)["data"]["attributes"]["relatedIdentifiers"]
    assert sent[-1] == {"relatedIdentifier": "https://compute.api.globus.org/v2/functions/fn-0001",
                        "relatedIdentifierType": "URL", "relationType": "HasPart", "resourceTypeGeneral": "Software"}
    again = run(garden, summary, backend, catalog, globus=True, globus_client=lambda: pytest.fail("no login needed"))
    assert len(fake_globus) == 1 and again.function_ids == {"predict_solubility": "fn-0001"}
    assert ("globus", "skipped") in [(s.stage, s.state) for s in again.stages]


@responses.activate
def test_a_registration_interrupted_half_way_resumes_with_the_rest(garden, summary, backend, catalog, doi,
                                                                   monkeypatch):
    """Two pipelines; the service fails on the second: the first id is kept, and only the
    second is registered when the same command runs again."""
    from gardenbuild.publish.globus import PublishError

    datacite_ok(doi)
    sent: list[str] = []
    outage = [True]  # the service fails once, on the second pipeline

    def register(garden, image_ref, *, client, dry_run, known=None, on_registered=None):
        ids = dict(known or {})
        for name in ("predict_solubility", "explain"):
            if name in ids:
                continue
            if name == "explain" and outage:
                outage.clear()
                raise PublishError("Globus Compute is unreachable")
            sent.append(name)
            ids[name] = f"fn-{name}"
            on_registered(name, ids[name])
        return ids, []

    module = types.SimpleNamespace(register=register)
    monkeypatch.setitem(sys.modules, "gardenbuild.publish.globus", module)
    monkeypatch.setattr(publish_pkg, "globus", module, raising=False)
    with pytest.raises(PublishError):
        run(garden, summary, backend, catalog, globus=True, globus_client=object)
    result = run(garden, summary, backend, catalog, globus=True, globus_client=object)
    assert sent == ["predict_solubility", "explain"]  # nothing registered twice
    assert result.function_ids == {"predict_solubility": "fn-predict_solubility", "explain": "fn-explain"}


def test_globus_dry_run_and_alone(garden, summary, backend, catalog, fake_globus):
    result = run(garden, summary, backend, catalog, globus=True, doi=False, dry_run=True)
    assert fake_globus == [(f"ghcr.io/lab/solubility@{PLACEHOLDER_DIGEST}", None, True)]
    assert result.requests[-1] == {"stage": "globus", "service": "globus-compute", "pipeline": "predict_solubility",
                                   "method": "POST", "path": "/v3/functions", "body": {"x": 1}}
    with pytest.raises(UserError, match="needs the image in a registry") as err:
        run(garden, summary, backend, catalog, registry_=None, globus=True, doi=False)
    assert "--registry" in err.value.hint


def test_the_real_globus_module_in_a_dry_run(garden, summary, backend, catalog):
    try:
        from gardenbuild.publish import globus  # noqa: F401 - the other half of publishing, optional here
        import globus_compute_sdk  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"Globus Compute publishing not available: {exc}")
    result = run(garden, summary, backend, catalog, globus=True, doi=False, dry_run=True)
    entries = [r for r in result.requests if r["stage"] == "globus"]
    assert [e["pipeline"] for e in entries] == ["predict_solubility"]


@responses.activate
def test_each_target_alone_then_together(garden, summary, backend, catalog, doi):
    post, put = datacite_ok(doi)
    first = run(garden, summary, backend, catalog, registry_=None)  # the DOI alone
    assert [(s.stage, s.state) for s in first.stages] == [("doi-draft", "done"), ("doi-metadata", "skipped")]
    assert first.image_ref is None and backend.pushes == []
    reporter = RecordingReporter()
    second = run(garden, summary, backend, catalog, doi=False, reporter=reporter)  # the registry alone
    assert backend.buds[0]["labels"]["dev.gardenbuild.doi"] == doi  # the image names the DOI drafted before
    assert reporter.messages("warn") == [f"the metadata of {doi} does not name this image yet; "
                                         "publish with --doi to update it"]
    run(garden, summary, backend, catalog)  # together: the DOI now names the image
    sent = json.loads(put.calls[-1].request.body)["data"]["attributes"]["relatedIdentifiers"][0]
    assert sent["relatedIdentifier"] == f"docker://{second.image_ref}" and post.call_count == 1
