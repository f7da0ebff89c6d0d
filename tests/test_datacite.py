"""DataCite metadata (checked against the official 4.5 JSON schema) and the REST client (mocked HTTP)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
import requests
import responses

from gardenbuild.errors import UserError
from gardenbuild.manifest.load import load
from gardenbuild.publish import datacite
from gardenbuild.publish.datacite import API, TEST_API, Credentials, DataCite, DataCiteError

schema45 = pytest.importorskip("datacite.schema45", reason="the publish extra brings the datacite package")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "solubility"
DOI = "10.5072/garden.solubility-1.0.0.0badcafe"
IMAGE = "ghcr.io/lab/solubility@sha256:" + "ab" * 32
FUNCTION = "4b116d3c-1703-4f8f-9f6f-39921e5864df"
SIGNATURE = "(smiles: list[str]) -> list[float]"


@pytest.fixture(scope="module")
def garden():
    return load(EXAMPLE)


def full_metadata(garden, **kw):
    args = dict(doi=DOI, publication_year="2026", url="https://github.com/garden-examples/solubility",
                image_ref=IMAGE, function_ids={"predict_solubility": FUNCTION},
                signatures={"predict_solubility": SIGNATURE})
    return datacite.metadata(garden, **{**args, **kw})


def test_metadata_of_the_example_exactly(garden):
    assert full_metadata(garden) == {
        "doi": DOI,
        "creators": [{
            "name": "Carberry, Josiah", "nameType": "Personal", "givenName": "Josiah", "familyName": "Carberry",
            "nameIdentifiers": [{"nameIdentifier": "https://orcid.org/0000-0002-1825-0097",
                                 "nameIdentifierScheme": "ORCID", "schemeUri": "https://orcid.org"}],
            "affiliation": [{"name": "Brown University"}],
        }],
        "titles": [{"title": "Aqueous solubility from structure"}],
        "publisher": {"name": "Garden"},
        "publicationYear": "2026",
        "types": {"resourceTypeGeneral": "Model", "resourceType": "Garden"},
        "version": "1.0.0",
        "rightsList": [{"rights": "MIT", "rightsIdentifier": "MIT", "rightsIdentifierScheme": "SPDX",
                        "rightsUri": "https://spdx.org/licenses/MIT.html", "schemeUri": "https://spdx.org/licenses/"}],
        "relatedIdentifiers": [
            {"relatedIdentifier": f"docker://{IMAGE}", "relatedIdentifierType": "URL",
             "relationType": "IsVariantFormOf", "resourceTypeGeneral": "Software"},
            {"relatedIdentifier": "https://github.com/garden-examples/solubility", "relatedIdentifierType": "URL",
             "relationType": "IsDerivedFrom", "resourceTypeGeneral": "Software"},
            {"relatedIdentifier": "10.1021/ci9901338", "relatedIdentifierType": "DOI", "relationType": "IsDocumentedBy"},
            {"relatedIdentifier": "https://github.com/rdkit/rdkit/tree/master/Docs/Book/data",
             "relatedIdentifierType": "URL", "relationType": "IsDerivedFrom", "resourceTypeGeneral": "Dataset"},
            {"relatedIdentifier": f"https://compute.api.globus.org/v2/functions/{FUNCTION}",
             "relatedIdentifierType": "URL", "relationType": "HasPart", "resourceTypeGeneral": "Software"},
        ],
        "schemaVersion": "http://datacite.org/schema/kernel-4",
        "descriptions": [
            {"description": garden.meta.description, "descriptionType": "Abstract"},
            {"description": "A garden built by gardenbuild: Python 3.11, pipelines callable as functions.\n"
                            f"Pipeline predict_solubility{SIGNATURE}: {garden.pipelines[0].description}\n"
                            f"Container image: {IMAGE}",
             "descriptionType": "TechnicalInfo"},
        ],
        "relatedItems": [{"relatedItemType": "Software", "relationType": "HasPart",
                          "titles": [{"title": "predict_solubility"}],
                          "relatedItemIdentifier": {
                              "relatedItemIdentifier": f"https://compute.api.globus.org/v2/functions/{FUNCTION}",
                              "relatedItemIdentifierType": "URL"}}],
        "subjects": [{"subject": "chemistry"}, {"subject": "solubility"}, {"subject": "cheminformatics"}],
        "url": "https://github.com/garden-examples/solubility",
    }


def test_the_record_publish_sends_is_the_record_a_consumer_reads(garden):
    """DOI -> image and functions, round trip: the PUT body publish sends, as DataCite's GET
    answers it (the same attributes under data, plus the state DataCite adds)."""
    body = datacite.update_request(datacite.TEST_API, DOI, full_metadata(garden), publish=True).body
    answered = {"data": {"id": DOI, "type": "dois",
                         "attributes": {**body["data"]["attributes"], "state": "findable"}}}
    record = datacite.read_record(json.loads(json.dumps(answered)))
    assert (record.doi, record.state, record.is_garden, record.version) == (DOI, "findable", True, "1.0.0")
    assert record.image_ref == IMAGE
    assert record.function_ids == {"predict_solubility": FUNCTION}
    assert record.title == garden.meta.title


def test_a_record_that_is_not_a_garden_reads_as_such():
    record = datacite.read_record({"data": {"id": "10.5072/x", "attributes": {
        "doi": "10.5072/x", "titles": [{"title": "A dataset"}], "types": {"resourceTypeGeneral": "Dataset"},
        "relatedIdentifiers": [{"relatedIdentifier": "https://example.org", "relationType": "IsDerivedFrom"}]}}})
    assert (record.is_garden, record.image_ref, record.function_ids, record.title) == (False, None, {}, "A dataset")


def test_validator_is_the_real_2019_09_one():
    # cffconvert 2.0 pins jsonschema<4, under which this schema is silently checked by a weaker validator.
    from jsonschema import Draft201909Validator

    assert isinstance(schema45.validator, Draft201909Validator)


@pytest.mark.parametrize("extra", [{}, {"image_ref": None, "function_ids": {}, "url": None, "signatures": {}},
                                   {"publisher": "Argonne National Laboratory"}])
def test_metadata_is_valid_datacite_4_5(garden, extra):
    attrs = full_metadata(garden, **extra)
    assert schema45.validate(attrs), list(schema45.validator.iter_errors(attrs))
    datacite.validate(attrs)  # raises on a problem


def test_every_related_identifier_kind(garden, tmp_path):
    text = (EXAMPLE / "Gardenfile.toml").read_text().replace(
        'url = "https://github.com/rdkit/rdkit/tree/master/Docs/Book/data"', 'doi = "10.5281/zenodo.1234567"')
    text += '\n[[garden.papers]]\ntitle = "A preprint"\nurl = "https://arxiv.org/abs/2401.00001"\n'
    text += '\n[[garden.datasets]]\ntitle = "Nowhere"\n'
    (tmp_path / "Gardenfile.toml").write_text(text)
    for f in ("solubility.ipynb",):
        (tmp_path / f).write_text((EXAMPLE / f).read_text())
    shutil.copytree(EXAMPLE / "data", tmp_path / "data")  # a link to it would lead outside the folder: refused
    g = load(tmp_path)
    related = datacite.related_identifiers(g, image_ref=None, function_ids={})
    assert [(r["relatedIdentifier"], r["relatedIdentifierType"], r["relationType"]) for r in related] == [
        ("https://github.com/garden-examples/solubility", "URL", "IsDerivedFrom"),
        ("10.1021/ci9901338", "DOI", "IsDocumentedBy"),
        ("https://arxiv.org/abs/2401.00001", "URL", "IsDocumentedBy"),
        ("10.5281/zenodo.1234567", "DOI", "IsDerivedFrom"),  # the dataset with no DOI or URL has no identifier
    ]


def test_invalid_metadata_names_every_problem(garden):
    attrs = full_metadata(garden)
    attrs["types"] = {"resourceTypeGeneral": "Modle"}
    attrs["publicationYear"] = "26"
    with pytest.raises(UserError) as err:
        datacite.validate(attrs)
    assert err.value.message.startswith("the DataCite metadata is not valid: publicationYear: '26' does not match")
    assert "(and 1 more)" in err.value.message and "types/resourceTypeGeneral: 'Modle' is not one of" in err.value.hint


def test_suggested_doi_is_stable_and_valid():
    doi = datacite.suggest_doi("10.5072", "solubility", "1.0.0", "d45c" * 16)
    assert doi == datacite.suggest_doi("10.5072", "solubility", "1.0.0", "d45c" * 16)
    assert doi != datacite.suggest_doi("10.5072", "solubility", "1.0.1", "d45c" * 16)
    assert doi.startswith("10.5072/garden.solubility-1.0.0.") and schema45.validate(
        {**json.loads('{"creators":[{"name":"x"}],"titles":[{"title":"t"}],"publisher":{"name":"p"},'
                      '"publicationYear":"2026","types":{"resourceTypeGeneral":"Model"},'
                      '"schemaVersion":"http://datacite.org/schema/kernel-4"}'), "doi": doi})


def test_prefix_and_credentials_from_the_environment():
    assert datacite.resolve_prefix({"DATACITE_PREFIX": "10.1234"}, "10.5072") == "10.1234"
    assert datacite.resolve_prefix({}, "10.5072") == "10.5072"
    with pytest.raises(UserError, match="needs your DataCite prefix") as err:
        datacite.resolve_prefix({}, None)
    assert "DATACITE_PREFIX" in err.value.hint
    with pytest.raises(UserError, match="not a DOI prefix"):
        datacite.resolve_prefix({"DATACITE_PREFIX": "5072"}, None)
    with pytest.raises(UserError, match="DATACITE_PASSWORD not set") as err:
        Credentials.from_env({"DATACITE_REPOSITORY_ID": "X.Y"})
    assert "export DATACITE_REPOSITORY_ID" in err.value.hint
    assert "hunter2" not in repr(Credentials("X.Y", "hunter2"))


def test_request_bodies(garden):
    attrs = full_metadata(garden)
    draft = datacite.draft_request(TEST_API, attrs)
    assert (draft.method, draft.url, draft.body) == ("POST", f"{TEST_API}/dois",
                                                     {"data": {"type": "dois", "attributes": attrs}})
    update = datacite.update_request(API, DOI, attrs, publish=True)
    assert (update.method, update.url) == ("PUT", f"{API}/dois/{DOI}")
    assert update.body == {"data": {"id": DOI, "type": "dois", "attributes": {**attrs, "event": "publish"}}}
    assert "event" not in datacite.update_request(API, DOI, attrs, publish=False).body["data"]["attributes"]
    shown = json.dumps(draft.as_json())
    assert "Authorization" not in shown and draft.as_json()["json"] == draft.body


@responses.activate
def test_send_uses_basic_auth_and_json_api(garden):
    attrs = full_metadata(garden)
    responses.post(f"{TEST_API}/dois", json={"data": {"id": DOI, "attributes": {"state": "draft"}}}, status=201)
    client = DataCite(Credentials("GARDEN.TEST", "pw-1"))
    assert client.draft(TEST_API, attrs) == "draft"
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(b"GARDEN.TEST:pw-1").decode()
    assert sent.headers["Content-Type"] == "application/vnd.api+json"
    assert json.loads(sent.body) == {"data": {"type": "dois", "attributes": attrs}}


@responses.activate
def test_a_draft_reserved_before_is_adopted(garden):
    attrs = full_metadata(garden)
    responses.post(f"{TEST_API}/dois", status=422,
                   json={"errors": [{"source": "doi", "title": "This DOI has already been taken", "uid": DOI}]})
    responses.get(f"{TEST_API}/dois/{DOI}", json={"data": {"id": DOI, "attributes": {"state": "findable"}}})
    assert DataCite(Credentials("R", "p")).draft(TEST_API, attrs) == "findable"
    assert [c.request.method for c in responses.calls] == ["POST", "GET"]


@pytest.mark.parametrize("status, body, message, hint", [
    (401, {"errors": [{"status": "401", "title": "Bad credentials."}]}, "refused the credentials (HTTP 401)", "DATACITE_PASSWORD"),
    (422, {"errors": [{"source": "url", "title": "Is not a valid URL"}]}, "rejected the metadata (HTTP 422): url: Is not a valid URL", "Gardenfile"),
    (500, "oops", "DataCite failed (HTTP 500)", "same command"),
    (404, {"errors": [{"title": "The resource you are looking for doesn't exist."}]}, "has no such DOI", "--datacite-test"),
])
@responses.activate
def test_failures_are_explained(garden, status, body, message, hint):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    responses.put(f"{API}/dois/{DOI}", status=status, **kwargs)
    with pytest.raises(DataCiteError) as err:
        DataCite(Credentials("R", "s3cr3t")).send(datacite.update_request(API, DOI, full_metadata(garden), publish=True))
    assert message in err.value.message and hint in err.value.hint
    assert "s3cr3t" not in err.value.message + err.value.hint


@responses.activate
def test_unreachable():
    responses.get(f"{API}/dois/{DOI}", body=requests.ConnectionError("down"))
    with pytest.raises(DataCiteError, match="could not be reached") as err:
        DataCite(Credentials("R", "p")).send(datacite.get_request(API, DOI))
    assert "finished steps are not repeated" in err.value.hint
