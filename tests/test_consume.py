"""A consumer's side, for real: a garden built and published to a `docker-registry` on
loopback, then, with the local image and catalog gone, found again by image digest, by
tag and by DOI (DataCite at the HTTP layer, with `responses`), pulled by digest with real
buildah, described without a container and called from Python and the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import responses
from helpers import cli, needs_registry, write_garden

import gardenbuild
from gardenbuild.backends.buildah import Buildah, stored_image_id
from gardenbuild.catalog import Catalog
from gardenbuild.consumer.api import ArgumentError
from gardenbuild.engine.call import PipelineError
from gardenbuild.errors import GardenError
from gardenbuild.manifest.load import load
from gardenbuild.publish import datacite, registry

pytestmark = [
    pytest.mark.integration,
    needs_registry,
]

CELLS = [
    "from gardenbuild import garden_pipeline\nOFFSET = 0.5\n",
    '@garden_pipeline\ndef shift(x: list[float], by: float = 1.0) -> list[float]:\n'
    '    """Add `by` and the notebook\'s OFFSET to each number."""\n    return [v + by + OFFSET for v in x]\n\n'
    '@garden_pipeline\ndef fail(message: str = "no") -> None:\n    """Always raises."""\n'
    '    raise RuntimeError(message)\n',
]
TESTS = ('\n[[pipeline.test]]\ninput = {x = [1.0, 2.0]}\nexpected = [2.5, 3.5]\n')
DOI = "10.5072/garden.it-consumer-1.0.0.cafe0001"


@pytest.fixture(scope="module")
def published(reg, base_image, build_cache, tmp_path_factory):
    """The garden built and pushed by its publisher; then its image and catalog are gone."""
    folder = tmp_path_factory.mktemp("publisher") / "it-consumer"
    write_garden(folder, CELLS, ["shift", "fail"], tables="", extra="")
    text = (folder / "Gardenfile.toml").read_text().replace('name = "shift"\n', 'name = "shift"\n' + TESTS, 1)
    text = text.replace('title = "Test garden it-consumer"', 'title = "Test garden it-consumer"\nversion = "1.0.0"')
    (folder / "Gardenfile.toml").write_text(text)
    publisher = tmp_path_factory.mktemp("publisher-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GARDENBUILD_CACHE", str(build_cache))
        mp.setenv("GARDENBUILD_DATA", str(publisher))
        code, out, err = cli("build", str(folder), "--base-image", base_image, "--json")
        assert code == 0, err
        built = json.loads(out)
        code, out, err = cli("run", str(folder), "shift", "--input", '{"x": [1, 2]}', "--json", "--cold")
        assert code == 0, err
        expected = json.loads(out)["result"]
        code, out, err = cli("publish", str(folder), "--registry", f"{reg.host}/gardens", "--no-tls-verify", "--json")
        assert code == 0, err
        image_ref = json.loads(out)["image_ref"]
    backend = Buildah()
    backend.rmi(built["image"], force=True)  # the consumer's machine has neither the image nor the catalog
    assert backend.image_id(built["image_id"]) is None
    pulled: list[str] = []
    yield {"folder": folder, "image_ref": image_ref, "expected": expected, "built": built, "pulled": pulled,
           "repository": image_ref.partition("@")[0], "backend": backend}
    for image in {*pulled, built["image_id"]}:
        subprocess.run(["buildah", "rmi", "--force", image], capture_output=True)


@pytest.fixture
def consumer(tmp_path, monkeypatch, build_cache):
    """An empty catalog: a machine that never saw the garden."""
    monkeypatch.setenv("GARDENBUILD_DATA", str(tmp_path / "consumer-data"))
    monkeypatch.setenv("GARDENBUILD_CACHE", str(build_cache))
    return Catalog()


def datacite_record(doi: str, image_ref: str | None, folder: Path) -> dict:
    attrs = datacite.metadata(load(folder), doi=doi, publication_year="2026", image_ref=image_ref)
    return {"data": {"id": doi, "type": "dois", "attributes": {**attrs, "state": "findable"}}}


def test_info_describes_a_published_garden_without_pulling_it(published, consumer):
    code, out, err = cli("info", published["image_ref"], "--no-tls-verify", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["image"] is None and consumer.pulls() == []  # labels only: nothing pulled, no container
    assert info["digest"] == published["image_ref"].partition("@")[2]
    [shift, fail] = info["card"]["pipelines"]
    assert shift["signature"] == "(x: list[float], by: float = 1.0) -> list[float]"
    assert shift["docstring"].startswith("Add `by`") and shift["tests"][0]["expected"] == [2.5, 3.5]
    assert info["card"]["python"].startswith("3.11") and info["card"]["meta"]["authors"] == [
        {"name": "Test Author", "orcid": None, "affiliation": None}]
    code, out, err = cli("info", published["image_ref"], "--no-tls-verify")
    assert code == 0 and "shift(x: list[float], by: float = 1.0) -> list[float]" in out
    assert "not pulled (gardenbuild pull" in out


def test_load_by_digest_pulls_checks_and_calls_like_run_on_the_folder(published, consumer):
    g = gardenbuild.load(published["image_ref"], tls_verify=False)
    published["pulled"].append(g._resolved.image)
    assert g.image == published["image_ref"] and g.name == "it-consumer" and g.version == "1.0.0"
    assert g.shift(x=[1, 2]) == published["expected"] == [2.5, 3.5]
    assert g.shift.map([{"x": [0]}, {"x": [1], "by": 2}]) == [[1.5], [3.5]]
    [pull] = consumer.pulls()
    assert pull["image_ref"] == published["image_ref"] and pull["image_id"] == g._resolved.image
    assert published["backend"].digest(pull["image_id"]) == published["image_ref"].partition("@")[2]
    with pytest.raises(ArgumentError) as e:
        g.shift(x=["a"])
    assert "parameter x[0] must be a number" in e.value.message
    with pytest.raises(PipelineError) as e:
        g.fail(message="on purpose")
    assert "RuntimeError: on purpose" in e.value.message and "model.ipynb cell 2" in e.value.message
    usage = {(u["pipeline"], u["via"]): (u["calls"], u["errors"]) for u in consumer.usage("it-consumer")}
    assert usage[("shift", "python")] == (3, 0) and usage[("fail", "python")] == (1, 1)
    # already pulled: a second load runs no buildah (the catalog and storage answer)
    again = gardenbuild.load(published["image_ref"], tls_verify=False)
    assert again._resolved.image == g._resolved.image and len(consumer.pulls()) == 1


def test_the_cli_runs_and_tests_any_reference(published, consumer):
    tag = f"{published['repository']}:1.0.0"
    code, out, err = cli("run", tag, "shift", "--input", '{"x": [1, 2]}', "--no-tls-verify", "--json")
    assert code == 0, err
    published["pulled"] += [p["image_id"] for p in consumer.pulls()]
    assert json.loads(out)["result"] == published["expected"]
    assert f"{tag} resolved to {published['image_ref']}" in err  # the tag is reported as the digest it named
    code, out, err = cli("test", published["image_ref"], "--no-tls-verify", "--json")
    assert code == 0, err
    assert [c["passed"] for c in json.loads(out)["cases"]] == [True]
    code, out, err = cli("run", "it-consumer", "shift", "--input", '{"x": [5]}', "--json")  # by name, once pulled
    assert code == 0 and json.loads(out)["result"] == [6.5], err
    code, out, err = cli("pull", "it-consumer")
    assert code == 2 and "nothing to pull" in err
    code, out, err = cli("list")
    assert code == 0 and f"pulled {published['image_ref']}" in out
    code, out, err = cli("show", "it-consumer")
    assert code == 0 and f"  pulled   1.0.0      {published['image_ref']}" in out


@responses.activate
def test_a_doi_resolves_to_its_image_and_runs_it(published, consumer):
    responses.get(f"{datacite.TEST_API}/dois/{DOI}", json=datacite_record(DOI, published["image_ref"], published["folder"]))
    code, out, err = cli("pull", f"doi:{DOI}", "--no-tls-verify", "--json")
    assert code == 0, err
    pulled = json.loads(out)
    published["pulled"].append(pulled["image"])
    assert (pulled["doi"], pulled["image_ref"]) == (DOI, published["image_ref"])
    g = gardenbuild.load(f"https://doi.org/{DOI}", tls_verify=False)
    assert g.doi == DOI and g.shift([3]) == [4.5]
    assert f"doi = {{{DOI}}}" in g.cite("bibtex")


@responses.activate
def test_what_a_consumer_is_refused(published, consumer, reg):
    repository = published["repository"]
    absent = f"{repository}@sha256:{'0' * 64}"
    responses.get(f"{datacite.TEST_API}/dois/10.5072/gone", json=datacite_record("10.5072/gone", absent, published["folder"]))
    code, out, err = cli("run", "10.5072/gone", "shift", "--input", "{}", "--no-tls-verify")
    assert code == 2 and f"the registry {reg.host} has no image {absent}" in err

    # the image the DOI names carries another DOI (relabelled and pushed by someone): refused
    backend = published["backend"]
    other = registry.relabel(backend, published["built"]["image_id"] if backend.image_id(published["built"]["image_id"])
                             else published["pulled"][0], {registry.DOI_LABEL: "10.5072/someone-else"}, tag=None)
    published["pulled"].append(other)
    digest = backend.push(other, f"docker://{repository}:relabelled", tls_verify=False)
    responses.get(f"{datacite.TEST_API}/dois/10.5072/mine",
                  json=datacite_record("10.5072/mine", f"{repository}@{digest}", published["folder"]))
    code, out, err = cli("info", "10.5072/mine", "--no-tls-verify")
    assert code == 1 and "carries the DOI 10.5072/someone-else, not 10.5072/mine" in err
    code, out, err = cli("run", "10.5072/mine", "shift", "--input", '{"x": [1]}', "--no-tls-verify")
    assert code == 1 and "not 10.5072/mine; it was removed" in err
    assert stored_image_id(f"{repository}@{digest}") is None and consumer.pulls() == []

    # a tag that moved: the tag now names the relabelled image, the digest still the original
    code, out, err = cli("info", f"{repository}:relabelled", "--no-tls-verify", "--json")
    assert code == 0 and json.loads(out)["digest"] == digest
    code, out, err = cli("info", published["image_ref"], "--no-tls-verify", "--json")
    assert code == 0 and json.loads(out)["digest"] == published["image_ref"].partition("@")[2]

    code, out, err = cli("info", "127.0.0.1:1/gardens/x:1.0", "--no-tls-verify")
    assert code == 1 and "the registry 127.0.0.1:1 cannot be reached" in err and "Traceback" not in err
    code, out, err = cli("run", published["image_ref"], "shift", "--input", '{"y": 1}', "--no-tls-verify")
    assert code == 2 and "y" in err and "Traceback" not in err
    assert os.environ["GARDENBUILD_DATA"] in str(consumer.path)
