"""CITATION.cff and codemeta.json: exact content, valid YAML, and `cffconvert --validate` when it is installed.

cffconvert 2.0 pins ``jsonschema<4``, which conflicts with the ``datacite`` package (its
4.5 schema needs jsonschema 4), so it lives in its own environment: this test looks for
``$CFFCONVERT``, then ``cffconvert`` on PATH, then ``.tools/cffconvert/bin/cffconvert``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gardenbuild.manifest.load import load
from gardenbuild.publish import citation

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "solubility"
DOI = "10.5072/garden.solubility-1.0.0.0badcafe"
IMAGE = "ghcr.io/lab/solubility@sha256:" + "ab" * 32


def cffconvert() -> str | None:
    for candidate in (os.environ.get("CFFCONVERT"), shutil.which("cffconvert"),
                      str(REPO / ".tools" / "cffconvert" / "bin" / "cffconvert")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def garden():
    return load(EXAMPLE)


EXPECTED_CFF = f'''# Written by gardenbuild from Gardenfile.toml; edit that file, not this one.
cff-version: "1.2.0"
message: "If you use this garden, please cite it using the metadata from this file."
type: "software"
title: "Aqueous solubility from structure"
version: "1.0.0"
authors:
  - family-names: "Carberry"
    given-names: "Josiah"
    orcid: "https://orcid.org/0000-0002-1825-0097"
    affiliation: "Brown University"
abstract: "A random-forest regressor that predicts aqueous solubility (log S, log mol/L) from a SMILES string, trained on ten RDKit descriptors of the Huuskonen data set."
license: "MIT"
doi: "{DOI}"
repository-code: "https://github.com/garden-examples/solubility"
keywords:
  - "chemistry"
  - "solubility"
  - "cheminformatics"
identifiers:
  - type: "doi"
    value: "{DOI}"
    description: "The garden"
  - type: "other"
    value: "{IMAGE}"
    description: "Container image (OCI), by digest"
references:
  - type: "article"
    title: "Estimation of Aqueous Solubility for a Diverse Set of Organic Compounds Based on Molecular Topology"
    authors:
      - family-names: "Huuskonen"
        given-names: "J."
    doi: "10.1021/ci9901338"
    notes: "J. Huuskonen, J. Chem. Inf. Comput. Sci. 2000, 40 (3), 773-777."
  - type: "data"
    title: "Huuskonen aqueous solubility set, RDKit train/test split"
    authors:
      - name: "anonymous"
    url: "https://github.com/rdkit/rdkit/tree/master/Docs/Book/data"
'''


def test_cff_exactly(garden):
    assert citation.cff_text(garden, doi=DOI, image_ref=IMAGE) == EXPECTED_CFF


def test_cff_is_the_yaml_of_its_data(garden):
    yaml = pytest.importorskip("yaml")
    for kw in ({"doi": DOI, "image_ref": IMAGE}, {}):
        assert yaml.safe_load(citation.cff_text(garden, **kw)) == citation.cff(garden, **kw)


def test_yaml_quotes_whatever_yaml_would_misread():
    yaml = pytest.importorskip("yaml")
    tricky = {"a": "yes", "b": "1.10", "c": "# not a comment", "d": 'quote " and \\ and é', "e": ["- x", "key: v"],
              "f": [{"g": "null", "h": []}], "i": {}}
    assert yaml.safe_load(citation.to_yaml(tricky)) == tricky


def test_cffconvert_validates_it(garden, tmp_path):
    exe = cffconvert()
    if exe is None:
        pytest.skip("cffconvert is not installed (it needs its own environment: see the module docstring)")
    for kw in ({"doi": DOI, "image_ref": IMAGE}, {}):
        path = tmp_path / "CITATION.cff"
        path.write_text(citation.cff_text(garden, **kw))
        proc = subprocess.run([exe, "--validate", "-i", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "valid" in proc.stdout


def test_codemeta(garden):
    data = citation.codemeta(garden, doi=DOI, image_ref=IMAGE)
    assert data == {
        "@context": "https://w3id.org/codemeta/3.0",
        "@type": "SoftwareSourceCode",
        "@id": f"https://doi.org/{DOI}",
        "identifier": f"https://doi.org/{DOI}",
        "name": "Aqueous solubility from structure",
        "description": garden.meta.description,
        "version": "1.0.0",
        "author": [{"@type": "Person", "givenName": "Josiah", "familyName": "Carberry",
                    "@id": "https://orcid.org/0000-0002-1825-0097",
                    "affiliation": {"@type": "Organization", "name": "Brown University"}}],
        "license": "https://spdx.org/licenses/MIT",
        "keywords": ["chemistry", "solubility", "cheminformatics"],
        "codeRepository": "https://github.com/garden-examples/solubility",
        "programmingLanguage": "Python",
        "runtimePlatform": "Python 3.11",
        "installUrl": f"docker://{IMAGE}",
        "referencePublication": [{"@type": "ScholarlyArticle", "@id": "https://doi.org/10.1021/ci9901338",
                                  "name": garden.meta.papers[0].title}],
        "isBasedOn": [{"@type": "Dataset", "name": garden.meta.datasets[0].title,
                       "url": "https://github.com/rdkit/rdkit/tree/master/Docs/Book/data"}],
    }


def test_write_files(garden, tmp_path):
    paths = citation.write_files(garden, tmp_path / ".gardenbuild", doi=DOI)
    assert [p.name for p in paths] == ["CITATION.cff", "codemeta.json"]
    assert paths[0].read_text() == citation.cff_text(garden, doi=DOI)
    assert json.loads(paths[1].read_text())["identifier"] == f"https://doi.org/{DOI}"


@pytest.mark.parametrize("text, given, particle, family, inverted", [
    ("Josiah Carberry", "Josiah", "", "Carberry", "Carberry, Josiah"),
    ("Ludwig van Beethoven", "Ludwig", "van", "Beethoven", "van Beethoven, Ludwig"),
    ("van Beethoven, Ludwig", "Ludwig", "van", "Beethoven", "van Beethoven, Ludwig"),
    ("Maria de la Cruz", "Maria", "de la", "Cruz", "de la Cruz, Maria"),
    ("García Márquez, Gabriel", "Gabriel", "", "García Márquez", "García Márquez, Gabriel"),
    ("J. Huuskonen", "J.", "", "Huuskonen", "Huuskonen, J."),
    ("Plato", "", "", "Plato", "Plato"),
])
def test_person_names(text, given, particle, family, inverted):
    name = citation.person_name(text)
    assert (name.given, name.particle, name.family, name.inverted) == (given, particle, family, inverted)


def test_license_ids():
    assert citation.license_ids("MIT") == ["MIT"]
    assert citation.license_ids("MIT OR (Apache-2.0 WITH LLVM-exception)") == ["MIT", "Apache-2.0"]
    assert citation.license_ids("GPL-2.0-or-later AND MIT AND MIT") == ["GPL-2.0-or-later", "MIT"]
