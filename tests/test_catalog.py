"""The local catalog (SQLite): builds, publications, stage states, and the `list` / `show` commands."""

from __future__ import annotations

import json
import sqlite3

import pytest

from gardenbuild.catalog import Catalog, CatalogError, default_path, record_build
from gardenbuild.errors import UserError
from gardenbuild.report import RecordingReporter
from helpers import publish_cli as cli

BUILD = {"garden": "solubility", "version": "1.0.0", "image": "localhost/gardens/solubility:4d130430f330e3b10ec1",
         "image_id": "d45c" * 16, "env_image": "localhost/gardenbuild/env:5f5b", "python": "3.11", "flavor": "sklearn",
         "pipelines": ["predict_solubility"]}


@pytest.fixture
def catalog(tmp_path):
    return Catalog(tmp_path / "data" / "catalog.sqlite")




def test_location(tmp_path, monkeypatch):
    monkeypatch.setenv("GARDENBUILD_DATA", str(tmp_path))
    assert default_path() == tmp_path / "catalog.sqlite"
    monkeypatch.delenv("GARDENBUILD_DATA")
    from platformdirs import user_data_dir

    assert default_path().parent == __import__("pathlib").Path(user_data_dir("gardenbuild"))


def test_builds_are_recorded_once_per_image(catalog, tmp_path):
    assert record_build(BUILD, root=tmp_path, catalog=catalog)
    record_build(BUILD, catalog=catalog)  # a cached rebuild: same image
    record_build({**BUILD, "image_id": "e5" * 32}, catalog=catalog)
    builds = catalog.builds("solubility")
    assert [b["image_id"] for b in builds] == [BUILD["image_id"], "e5" * 32]
    assert builds[0]["root"] == str(tmp_path) and builds[0]["pipelines"] == ["predict_solubility"]


def test_record_build_never_fails_a_build(tmp_path):
    (tmp_path / "catalog.sqlite").mkdir()  # not a database
    reporter = RecordingReporter()
    assert record_build(BUILD, catalog=Catalog(tmp_path / "catalog.sqlite"), reporter=reporter) is False
    assert reporter.messages("warn")[0].startswith("build not recorded in the catalog: the catalog")
    assert record_build({"garden": "x"}, catalog=Catalog(tmp_path / "ok.sqlite"), reporter=reporter) is False
    with pytest.raises(CatalogError, match="cannot be used") as err:
        Catalog(tmp_path / "catalog.sqlite").record_build(BUILD)
    assert "GARDENBUILD_DATA" in err.value.hint


def test_reading_creates_no_file(catalog):
    assert catalog.find("solubility", "1.0.0", "x") is None
    assert catalog.gardens() == [] and catalog.show("solubility") is None
    assert not catalog.path.exists()


def test_publication_stages_and_runs(catalog):
    pub = catalog.publication("solubility", "1.0.0", BUILD["image_id"])
    assert pub.id is not None and pub.stages == {} and pub.function_ids == {}
    assert catalog.publication("solubility", "1.0.0", BUILD["image_id"]).id == pub.id  # get, not create twice
    run = catalog.start_run(pub, {"registry": "ghcr.io/lab", "doi": "draft"})
    catalog.set_stage(pub, "doi-draft", "done", detail="10.5072/x")
    pub.doi, pub.doi_state, pub.function_ids = "10.5072/x", "draft", {"predict_solubility": "f-1"}
    catalog.save(pub)
    catalog.set_stage(pub, "registry", "pending")
    catalog.set_stage(pub, "registry", "failed", error="the registry cannot be reached")
    catalog.finish_run(run, "failed", error="registry: the registry cannot be reached")
    with pytest.raises(ValueError):
        catalog.set_stage(pub, "registry", "half-done")

    again = catalog.find("solubility", "1.0.0", BUILD["image_id"])
    assert again.doi == "10.5072/x" and again.function_ids == {"predict_solubility": "f-1"}
    assert again.done("doi-draft") and not again.done("registry")
    assert again.stages["registry"].error == "the registry cannot be reached"
    assert [(r["outcome"], r["targets"]) for r in catalog.runs(again)] == [("failed", {"doi": "draft", "registry": "ghcr.io/lab"})]
    with sqlite3.connect(catalog.path) as db:
        assert db.execute("SELECT state FROM stages ORDER BY stage").fetchall() == [("done",), ("failed",)]


def test_list_and_show(catalog, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GARDENBUILD_DATA", str(catalog.path.parent))
    _, code = cli("list")
    assert code == 0 and capsys.readouterr().out.startswith("no gardens built yet")
    catalog.record_build(BUILD)
    pub = catalog.publication("solubility", "1.0.0", BUILD["image_id"])
    pub.image_ref, pub.doi, pub.doi_state = "ghcr.io/lab/solubility@sha256:" + "ab" * 32, "10.5072/x", "findable"
    pub.datacite_api = "https://api.test.datacite.org"
    catalog.save(pub)
    catalog.set_stage(pub, "registry", "done", detail=pub.image_ref)

    _, code = cli("list")
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and lines[0].split() == ["GARDEN", "VERSION", "BUILDS", "LAST", "BUILT", "PUBLISHED", "DOI"]
    assert lines[1].split()[:3] == ["solubility", "1.0.0", "1"] and lines[1].endswith("10.5072/x (findable)")
    _, code = cli("list", "--json")
    data = json.loads(capsys.readouterr().out)
    assert data["gardens"][0]["published"] == pub.image_ref and data["catalog"] == str(catalog.path)

    _, code = cli("show", "solubility")
    out = capsys.readouterr().out
    assert code == 0 and f"image      {pub.image_ref}" in out and "DOI        10.5072/x (findable" in out
    assert "registry      done" in out
    _, code = cli("show", "solubility", "--json")
    shown = json.loads(capsys.readouterr().out)
    assert shown["publications"][0]["stages"]["registry"]["state"] == "done"
    with pytest.raises(UserError, match="knows no garden 'solubilty'") as err:
        cli("show", "solubilty")
    assert err.value.hint == "known: solubility"
