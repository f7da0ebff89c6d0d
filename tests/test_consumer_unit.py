"""The consumer side's pure parts: references, the garden card, argument checks before a
call, citations, and DOI resolution against DataCite's REST API at the HTTP layer."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import responses

from gardenbuild.card import LABEL, complete, from_labels, garden_part, label_value, requirement_name
from gardenbuild.catalog import Catalog
from gardenbuild.consumer.api import ArgumentError, Garden, check_arguments, signature_of
from gardenbuild.consumer.refs import parse
from gardenbuild.consumer.resolve import Resolved, Resolver
from gardenbuild.errors import UserError
from gardenbuild.manifest.load import load
from gardenbuild.publish import datacite

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "solubility"
DIGEST = "sha256:" + "ab" * 32
FUNCTION = "4b116d3c-1703-4f8f-9f6f-39921e5864df"
METADATA = {"python": "3.11.2", "pipelines": [{
    "name": "predict_solubility", "signature": "(smiles: list[str]) -> list[float]",
    "docstring": "Predict solubility.", "return_annotation": "list[float]",
    "parameters": [{"name": "smiles", "kind": "positional_or_keyword", "annotation": "list[str]", "required": True}]}]}


# ---- references ------------------------------------------------------------------------

@pytest.mark.parametrize("text, kind, expected", [
    ("10.5072/garden.x-1.0.abcd", "doi", {"doi": "10.5072/garden.x-1.0.abcd"}),
    ("doi:10.5072/ABC", "doi", {"doi": "10.5072/ABC"}),
    ("https://doi.org/10.5072/abc", "doi", {"doi": "10.5072/abc"}),
    ("127.0.0.1:5000/gardens/solubility@" + DIGEST, "oci",
     {"repository": "127.0.0.1:5000/gardens/solubility", "digest": DIGEST, "tag": None}),
    ("docker://ghcr.io/lab/solubility:1.0.0", "oci", {"repository": "ghcr.io/lab/solubility", "tag": "1.0.0"}),
    ("ghcr.io/lab/solubility", "oci", {"tag": "latest", "digest": None}),
    ("solubility", "name", {"name": "solubility", "version": None}),
    ("solubility==1.0.0", "name", {"name": "solubility", "version": "1.0.0"}),
    ("./nowhere", "folder", {}),
])
def test_references_parse(text, kind, expected, tmp_path):
    ref = parse(text, cwd=tmp_path)
    assert ref.kind == kind
    assert {k: getattr(ref, k) for k in expected} == expected


def test_an_existing_folder_wins_over_a_name(tmp_path):
    (tmp_path / "solubility").mkdir()
    assert parse("solubility", cwd=tmp_path).kind == "folder"


@pytest.mark.parametrize("text, says", [
    ("", "it is empty"),
    ("10.5072/", "a DOI has a suffix"),
    ("doi:11.1/x", "is not a DOI"),
    ("ghcr.io/Lab/x", "is not an image reference"),
    ("ghcr.io/lab/x@sha256:1234", "is not an image reference"),
    ("lab/solubility:1.0", "starts with a registry host"),
    ("Solubility Model", "a garden name is lower-case"),
])
def test_bad_references_name_what_is_wrong(text, says, tmp_path):
    with pytest.raises(UserError) as e:
        parse(text, cwd=tmp_path)
    assert says in e.value.message and e.value.exit_code == 2 and "name a garden by" in e.value.hint


# ---- the garden card -------------------------------------------------------------------

def card() -> dict:
    wheels = [{"name": "RDKit", "version": "2026.9.1"}, {"name": "scikit_learn", "version": "1.9.1"},
              {"name": "joblib", "version": "1.6.0"}]
    return complete(garden_part(load(EXAMPLE)), METADATA, wheels)


def test_the_card_carries_what_info_shows_and_survives_a_label():
    c = card()
    assert c["meta"]["name"] == "solubility" and c["meta"]["authors"][0]["orcid"] == "0000-0002-1825-0097"
    assert c["python"] == "3.11.2" and c["flavor"] == "sklearn"
    assert c["packages"] == {"rdkit": "2026.9.1", "scikit-learn": "1.9.1"}  # declared ones only, not joblib
    [p] = c["pipelines"]
    assert p["signature"] == "(smiles: list[str]) -> list[float]" and p["docstring"] == "Predict solubility."
    assert p["tests"][0]["input"] == {"smiles": ["CCO", "c1ccccc1"]}
    assert from_labels({LABEL: label_value(c)}) == c
    assert from_labels({}) is None and from_labels({LABEL: "{not json"}) is None
    assert requirement_name("scikit_learn[alldeps]>=1.4") == "scikit-learn"


# ---- arguments, checked before anything is launched ----------------------------------------

PIPE = {"name": "scale", "parameters": [
    {"name": "x", "kind": "positional_or_keyword", "annotation": "list[float]", "required": True},
    {"name": "factor", "kind": "keyword_only", "annotation": "float | None", "required": False, "default": 2.0},
    {"name": "frame", "kind": "keyword_only", "annotation": "pd.DataFrame", "required": False, "default": None}],
    "returns": "list[float]"}


def test_the_signature_is_the_pipelines_own():
    sig = signature_of(PIPE)
    assert str(sig) == "(x: 'list[float]', *, factor: 'float | None' = 2.0, frame: 'pd.DataFrame' = None) -> 'list[float]'"
    assert check_arguments(PIPE, ([1, 2.5],), {"factor": None}) == {"x": [1, 2.5], "factor": None}


@pytest.mark.parametrize("args, kwargs, says", [
    ((), {}, "pipeline 'scale' takes (x: 'list[float]', *, factor: 'float | None' = 2.0, frame: 'pd.DataFrame' = None)"
             " -> 'list[float]': missing 'x'"),
    (([1],), {"y": 1}, "unexpected 'y'"),
    ((["a"],), {}, 'parameter x[0] must be a number, not "a" (a string)'),
    (([1],), {"factor": "big"}, "parameter factor must be"),
    (({1, 2},), {}, "parameter x of scale is a set, which is not JSON"),
])
def test_wrong_arguments_name_the_parameter(args, kwargs, says):
    with pytest.raises(ArgumentError) as e:
        check_arguments(PIPE, args, kwargs)
    assert says in e.value.message
    assert isinstance(e.value, TypeError)  # what Python callers catch for a bad call


def test_a_loaded_garden_has_attributes_pipelines_and_a_repr():
    g = Garden(Resolved(parse("solubility"), card(), image="0" * 64, doi="10.5072/garden.solubility-1.0.0.abcd"))
    assert g.title == "Aqueous solubility from structure" and g.authors == ["Josiah Carberry"]
    assert "predict_solubility" in dir(g)
    p = g.predict_solubility
    assert inspect.signature(p) == signature_of(card()["pipelines"][0]) and p.__doc__ == "Predict solubility."
    assert "DOI https://doi.org/10.5072/garden.solubility-1.0.0.abcd" in repr(g)
    assert "<code>predict_solubility(smiles: list[str]) -&gt; list[float]</code>" in g._repr_html_()
    with pytest.raises(AttributeError, match="pipelines: predict_solubility"):
        g.predict
    with pytest.raises(ArgumentError):
        p(smiles="CCO")  # refused here: no container was asked for


def test_citations_come_from_the_card():
    g = Garden(Resolved(parse("solubility"), card(), doi="10.5072/garden.solubility-1.0.0.abcd"))
    bib = g.cite("bibtex")
    assert bib.startswith("@software{Carberry_solubility,")
    assert "author = {Carberry, Josiah}" in bib and "doi = {10.5072/garden.solubility-1.0.0.abcd}" in bib
    assert g.cite() == ("Carberry, J. Aqueous solubility from structure (version 1.0.0) [Computer software]. "
                        "https://doi.org/10.5072/garden.solubility-1.0.0.abcd")
    assert 'doi: "10.5072/garden.solubility-1.0.0.abcd"' in g.cite("cff")
    assert json.loads(g.cite("codemeta"))["name"] == "Aqueous solubility from structure"
    with pytest.raises(UserError) as e:
        g.cite("mla")
    assert e.value.hint == "one of: text, bibtex, ris, csl-json, cff, codemeta"


def test_importing_gardenbuild_and_loading_stays_light():
    code = ("import sys, gardenbuild, gardenbuild.consumer.api; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('globus_sdk', 'globus_compute_sdk', 'requests', 'pydantic', 'jinja2', 'networkx') "
            "or m == 'gardenbuild.backends.buildah'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert callable(__import__("gardenbuild").load)


# ---- DOIs: DataCite at the HTTP layer ------------------------------------------------------

def record(doi: str, *, resource_type: str = "Garden", image: str | None = "127.0.0.1:5000/g/solubility@" + DIGEST,
           functions: dict | None = None) -> dict:
    garden = load(EXAMPLE)
    attrs = datacite.metadata(garden, doi=doi, publication_year="2026", image_ref=image,
                              function_ids=functions or {})
    attrs["types"]["resourceType"] = resource_type
    return {"data": {"id": doi, "type": "dois", "attributes": {**attrs, "state": "findable"}}}


@pytest.fixture
def resolver(tmp_path):
    return Resolver(catalog=Catalog(tmp_path / "catalog.sqlite"), env={})


@responses.activate
def test_a_doi_names_its_image_and_functions(resolver):
    doi = "10.5072/garden.solubility-1.0.0.abcd1234"
    responses.get(f"{datacite.TEST_API}/dois/{doi}", json=record(doi, functions={"predict_solubility": FUNCTION}))
    seen = {}

    def remote_inspect(reference, **kw):  # the registry's answer for the pinned image (here: its labels)
        seen["ref"] = reference
        return {"Digest": DIGEST, "Labels": {LABEL: label_value(card())}}

    resolver.remote_inspect = remote_inspect
    resolved = resolver.resolve(f"https://doi.org/{doi}", pull=False)
    assert seen["ref"] == "127.0.0.1:5000/g/solubility@" + DIGEST
    assert (resolved.doi, resolved.image_ref, resolved.digest) == (doi, seen["ref"], DIGEST)
    assert resolved.function_ids == {"predict_solubility": FUNCTION}
    assert resolved.image is None  # described, not pulled


@pytest.mark.parametrize("answer, exit_code, says", [
    ({"status": 404, "json": {"errors": [{"status": "404", "title": "The resource you are looking for doesn't exist."}]}},
     2, "DataCite has no DOI 10.5072/x"),
    ({"json": record("10.5072/x", resource_type="Dataset")}, 2, "which is not a garden"),
    ({"json": record("10.5072/x", image=None)}, 2, "names no garden image"),
    ({"json": record("10.5072/x", image="127.0.0.1:5000/g/solubility:1.0.0")}, 2, "not by digest"),
    ({"status": 503, "body": "down"}, 1, "DataCite answered HTTP 503"),
    ({"body": requests.exceptions.ConnectionError("refused")}, 1, "DataCite could not be reached"),
])
@responses.activate
def test_dois_that_cannot_be_run(resolver, answer, exit_code, says):
    responses.get(f"{datacite.TEST_API}/dois/10.5072/x", **answer)
    with pytest.raises(Exception) as e:
        resolver.resolve("10.5072/x", pull=False)
    assert says in e.value.message and e.value.exit_code == exit_code, e.value.message


def test_the_production_system_unless_the_prefix_is_the_test_ones(resolver):
    assert resolver.datacite_api("10.5072/x") == datacite.TEST_API
    assert resolver.datacite_api("10.26311/x") == datacite.API


# ---- Globus Compute: the real SDK Executor, the service at the HTTP layer --------------------

def test_remote_calls_refuse_what_cannot_run_before_submitting():
    from gardenbuild.consumer import remote

    g = Garden(Resolved(parse("solubility"), card(), image_ref="127.0.0.1:5000/g/solubility@" + DIGEST))
    with pytest.raises(UserError, match="is not registered with Globus Compute"):
        g.predict_solubility.submit(smiles=["CCO"], endpoint=FUNCTION)
    g._resolved.function_ids = {"predict_solubility": FUNCTION}
    with pytest.raises(UserError, match="not a Globus Compute endpoint id"):
        g.predict_solubility.submit(smiles=["CCO"], endpoint="my-laptop")
    with pytest.raises(ArgumentError):
        g.predict_solubility.remote(smiles=[1], endpoint=FUNCTION)
    assert remote._EXECUTORS == {}  # nothing was made, nothing sent


def test_submit_sends_the_pinned_image_and_asks_for_json_results(monkeypatch):
    import uuid

    import globus_sdk
    from globus_compute_sdk import Client
    from globus_compute_sdk.serialize import ComputeSerializer, JSONData
    from globus_sdk.testing import RegisteredResponse
    from globus_sdk.transport import RequestsTransport

    from gardenbuild.consumer import remote

    monkeypatch.setattr(RequestsTransport, "_retry_sleep", lambda self, config, ctx: None)
    endpoint, group, task = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    image = "127.0.0.1:5000/g/solubility@" + DIGEST
    responses.start()
    try:
        http = responses
        RegisteredResponse(service="compute", path=f"/v3/endpoints/{endpoint}/submit", method="POST", json={
            "request_id": str(uuid.uuid4()), "task_group_id": group, "endpoint_id": endpoint,
            "tasks": {FUNCTION: [task]}}).add()
        RegisteredResponse(service="compute", path="/v2/get_amqp_result_connection_url", method="GET", json={
            "connection_url": "amqp://guest:guest@127.0.0.1:1/", "queue_prefix": "q-"}).add()
        client = Client(authorizer=globus_sdk.NullAuthorizer(), do_version_check=False)
        resolved = Resolved(parse("solubility"), card(), image_ref=image, function_ids={"predict_solubility": FUNCTION})
        future = remote.submit(resolved, "predict_solubility", {"smiles": ["CCO"]}, endpoint=endpoint, client=client)
        try:
            with pytest.raises(remote.RemoteError) as e:  # no results service here: the watcher gives up, and says so
                remote.wait(future, "predict_solubility", timeout=60)
            assert "predict_solubility failed on Globus Compute" in e.value.message
        finally:
            for ex in remote._EXECUTORS.values():
                ex.shutdown(wait=False, cancel_futures=True)
            remote._EXECUTORS.clear()
        [call] = [c for c in http.calls if c.request.url.endswith("/submit")]
    finally:
        responses.stop()
        responses.reset()
    body = json.loads(call.request.body)
    assert body["user_endpoint_config"] == {"container_type": "docker", "container_uri": image,
                                            "container_cmd_options": "--network host --rm"}
    [(function_id, [args_buffer])] = body["tasks"].items()
    assert function_id == FUNCTION
    serde = ComputeSerializer(strategy_data=JSONData())
    args, kwargs = (serde.deserialize(b) for b in serde.unpack_buffers(args_buffer))
    assert (list(args), kwargs) == ([], {"smiles": ["CCO"]})  # JSON, not a pickle
    assert body["result_serializers"] == ["globus_compute_sdk.serialize.concretes.JSONData"]


def test_a_remote_result_that_is_not_json_is_never_unpickled():
    from globus_compute_sdk.errors import SerdeError
    from globus_compute_sdk.serialize import ComputeSerializer, DillDataBase64

    from gardenbuild.consumer import remote

    pickled = ComputeSerializer(strategy_data=DillDataBase64()).serialize([1.5])
    with pytest.raises(SerdeError, match="must be JSON; refused a payload of kind '00' unread"):
        remote.serializer().deserialize(pickled)
    assert remote.serializer().deserialize(remote.serializer().serialize([1.5])) == [1.5]
