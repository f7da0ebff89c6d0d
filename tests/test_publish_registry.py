"""Publishing to a real OCI registry (``docker-registry`` on loopback) with real buildah.

Each test starts from a tiny image built ``FROM scratch`` (one small file, so pushes take
well under a second) and checks the registry's side with ``skopeo inspect`` and the
registry's own access log: a second publish must upload no blob.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import responses
from helpers import Registry, free_port, needs_registry

from gardenbuild.backends.buildah import Buildah
from gardenbuild.catalog import Catalog
from gardenbuild.errors import GardenError, UserError
from gardenbuild.manifest.load import load
from gardenbuild.publish import publish, registry
from gardenbuild.publish.datacite import TEST_API
from gardenbuild.report import RecordingReporter

pytestmark = [
    pytest.mark.integration,
    needs_registry,
]

PASSWORD = "reg-pass-Zq81"


@pytest.fixture(scope="module")
def garden(tmp_path_factory):
    src = Path(__file__).resolve().parent.parent / "examples" / "solubility"
    dest = tmp_path_factory.mktemp("gardens") / "solubility"
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".gardenbuild", ".ipynb_checkpoints"))
    return load(dest)


@pytest.fixture(scope="module")
def tiny(garden, tmp_path_factory):
    """A one-file image carrying the build's labels; stands in for the built garden image."""
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "hello.txt").write_text("a tiny garden image\n")
    ref = f"localhost/gardenbuild-test/tiny:{folder.name.lower()}"
    ctr = subprocess.run(["buildah", "from", "scratch"], capture_output=True, text=True, check=True).stdout.strip()
    try:
        subprocess.run(["buildah", "copy", "--quiet", ctr, str(folder / "hello.txt"), "/hello.txt"], check=True,
                       capture_output=True)
        labels = [arg for k, v in registry.publish_labels(garden, None).items() for arg in ("--label", f"{k}={v}")]
        subprocess.run(["buildah", "config", *labels, ctr], check=True, capture_output=True)
        subprocess.run(["buildah", "commit", "--quiet", "--timestamp", "0", "--identity-label=false", ctr, ref],
                       check=True, capture_output=True)
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)
    image_id = Buildah().image_id(ref)
    yield {"garden": garden.name, "version": garden.meta.version, "image": ref, "image_id": image_id,
           "pipelines": [p.name for p in garden.pipelines], "python": garden.python}
    subprocess.run(["buildah", "rmi", "--force", ref], capture_output=True)
    subprocess.run(["buildah", "rmi", f"{ref}-published"], capture_output=True)


def skopeo_inspect(ref: str, *extra: str) -> dict:
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", *extra, f"docker://{ref}"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def run(garden, summary, catalog, *, registry_=None, doi=False, env=None, authfile=None, reporter=None, tls_verify=False):
    return publish(garden, summary, registry=registry_, globus=False, doi=doi, doi_publish=False, datacite_test=True,
                   dry_run=False, tls_verify=tls_verify, authfile=authfile, backend=Buildah(), reporter=reporter or RecordingReporter(),
                   catalog=catalog, env=env or {}, year="2026", out_dir=garden.root / ".gardenbuild")


def test_push_records_digest_and_republish_uploads_nothing(reg, garden, tiny, tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite")
    result = run(garden, tiny, catalog, registry_=f"{reg.host}/lab")
    repo = f"{reg.host}/lab/solubility"
    assert re.fullmatch(re.escape(repo) + r"@sha256:[0-9a-f]{64}", result.image_ref)
    digest = result.image_ref.split("@")[1]

    seen = skopeo_inspect(f"{repo}:1.0.0")
    assert seen["Digest"] == digest
    assert seen["Labels"]["org.opencontainers.image.title"] == garden.meta.title
    assert seen["Labels"]["org.opencontainers.image.version"] == "1.0.0"
    assert seen["Labels"]["org.opencontainers.image.licenses"] == "MIT"
    assert seen["Labels"]["org.opencontainers.image.source"] == garden.meta.repository
    assert seen["Labels"]["dev.gardenbuild.pipelines"] == "predict_solubility"
    assert skopeo_inspect(result.image_ref)["Digest"] == digest  # the name by digest resolves
    uploads = reg.uploads()
    assert uploads >= 2  # the layer and the config

    again = run(garden, tiny, catalog, registry_=f"{reg.host}/lab")
    assert again.image_ref == result.image_ref
    assert reg.uploads() == uploads  # every blob was already there
    pub = catalog.find("solubility", "1.0.0", tiny["image_id"])
    assert pub.image_ref == result.image_ref and pub.done("registry")
    assert [r["outcome"] for r in catalog.runs(pub)] == ["ok", "ok"]
    assert (garden.root / ".gardenbuild" / "CITATION.cff").read_text().count(result.image_ref) == 1


@responses.activate
def test_doi_label_and_resume_after_datacite_failure(reg, garden, tiny, tmp_path):
    """DataCite fails after the push: the re-run drafts no second DOI and uploads no blob."""
    env = {"DATACITE_REPOSITORY_ID": "GARDEN.TEST", "DATACITE_PASSWORD": "dc-Secret-77", "DATACITE_PREFIX": "10.5072"}
    catalog = Catalog(tmp_path / "catalog.sqlite")
    post = responses.post(f"{TEST_API}/dois", json={"data": {"attributes": {"state": "draft"}}}, status=201)
    doi_re = re.compile(re.escape(f"{TEST_API}/dois/10.5072/") + r".*")
    put_fail = responses.put(doi_re, json={"errors": [{"title": "boom"}]}, status=500)

    with pytest.raises(GardenError, match=r"DataCite failed \(HTTP 500\)"):
        run(garden, tiny, catalog, registry_=f"{reg.host}/resume", doi=True, env=env)
    pub = catalog.find("solubility", "1.0.0", tiny["image_id"])
    assert {s: pub.stages[s].state for s in pub.stages} == {"doi-draft": "done", "registry": "done", "doi-metadata": "failed"}
    assert post.call_count == 1 and put_fail.call_count == 1
    labels = skopeo_inspect(pub.image_ref)["Labels"]
    assert labels["dev.gardenbuild.doi"] == pub.doi
    assert labels["org.opencontainers.image.url"] == f"https://doi.org/{pub.doi}"
    uploads = reg.uploads()

    responses.replace(responses.PUT, doi_re, json={"data": {"attributes": {"state": "draft"}}}, status=200)
    result = run(garden, tiny, catalog, registry_=f"{reg.host}/resume", doi=True, env=env)
    assert post.call_count == 1  # no second draft
    assert reg.uploads() == uploads  # no second upload
    assert result.doi == pub.doi and result.image_ref == pub.image_ref
    sent = json.loads(responses.calls[-1].request.body)["data"]["attributes"]
    assert {"relatedIdentifier": f"docker://{pub.image_ref}", "relatedIdentifierType": "URL",
            "relationType": "IsVariantFormOf", "resourceTypeGeneral": "Software"} in sent["relatedIdentifiers"]
    assert catalog.find("solubility", "1.0.0", tiny["image_id"]).done("doi-metadata")
    assert b"dc-Secret-77" not in (tmp_path / "catalog.sqlite").read_bytes()


def test_registry_down_is_recorded_and_explained(garden, tiny, tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite")
    with pytest.raises(GardenError) as err:
        run(garden, tiny, catalog, registry_=f"127.0.0.1:{free_port()}/lab")
    assert "cannot be reached" in err.value.message and "run the same command again" in err.value.hint
    pub = catalog.find("solubility", "1.0.0", tiny["image_id"])
    assert pub.stages["registry"].state == "failed" and "cannot be reached" in pub.stages["registry"].error


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    crypt = pytest.importorskip("crypt")  # bcrypt from libxcrypt, for the registry's htpasswd
    line = f"alice:{crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n"
    r = Registry(tmp_path_factory.mktemp("secured"), htpasswd=line).start()
    yield r
    r.stop()


def test_credentials_from_authfile_never_stored(secured, garden, tiny, tmp_path, monkeypatch, capfd):
    import base64

    empty = tmp_path / "empty-auth.json"
    empty.write_text('{"auths": {}}')
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(empty))  # ignore any login on this host
    catalog = Catalog(tmp_path / "catalog.sqlite")
    with pytest.raises(UserError) as err:
        run(garden, tiny, catalog, registry_=f"{secured.host}/lab")
    assert err.value.hint.startswith(f"log in with: buildah login {secured.host}")
    assert "--authfile" in err.value.hint and "REGISTRY_AUTH_FILE" in err.value.hint

    auth = tmp_path / "auth.json"
    token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    auth.write_text(json.dumps({"auths": {secured.host: {"auth": token}}}))
    reporter = RecordingReporter()
    result = run(garden, tiny, catalog, registry_=f"{secured.host}/lab", authfile=auth, reporter=reporter)
    assert result.image_ref.startswith(f"{secured.host}/lab/solubility@sha256:")
    for secret in (PASSWORD, token):
        assert secret.encode() not in (tmp_path / "catalog.sqlite").read_bytes()
        assert secret not in json.dumps(result.as_json()) and secret not in repr(reporter.events)
        assert secret not in "".join(capfd.readouterr())
        for f in (garden.root / ".gardenbuild").iterdir():
            assert secret not in f.read_text()
