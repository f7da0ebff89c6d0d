"""Bad Gardenfiles and notebooks: `gardenbuild check` must report every problem at once.

Each case is a small edit of one valid garden (BASE and NOTEBOOK below), written to a
temporary folder. The test asserts the whole stderr: every line names the file, the
line, the key path and what is wrong; the exit code is 2; no traceback.

BASE, with its line numbers (edits refer to them; the blank lines 2, 7, 15 and 19 are
slots for extra keys of the top level, [garden], [environment] and [[pipeline]]):

     1  notebook = "model.ipynb"
     2
     3  [garden]
     4  name = "demo"
     5  title = "Demo"
     6  license = "MIT"
     7
     8  [[garden.authors]]
     9  name = "Ada Lovelace"
    10  orcid = "0000-0002-1825-0097"
    11
    12  [environment]
    13  python = "3.11"
    14  flavor = "base"
    15
    16  [[pipeline]]
    17  name = "predict"
    18  function = "predict"
    19
    20  [[pipeline.test]]
    21  input = { x = 1 }
    22  expected = 2
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gardenbuild.cli import main

BASE = """\
notebook = "model.ipynb"

[garden]
name = "demo"
title = "Demo"
license = "MIT"

[[garden.authors]]
name = "Ada Lovelace"
orcid = "0000-0002-1825-0097"

[environment]
python = "3.11"
flavor = "base"

[[pipeline]]
name = "predict"
function = "predict"

[[pipeline.test]]
input = { x = 1 }
expected = 2
"""


def notebook(*cells: str, nbformat: int = 4) -> str:
    """An nbformat-4 notebook: a markdown title cell, then one code cell per source."""
    code = [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": s} for s in cells]
    title = {"cell_type": "markdown", "metadata": {}, "source": "# Demo"}
    return json.dumps({"nbformat": nbformat, "nbformat_minor": 5, "metadata": {}, "cells": [title, *code]}, indent=1)


# Cell 1 is markdown; cells 2-4 are code, numbered as Jupyter shows them.
NOTEBOOK = notebook("import math\n", "def predict(x):\n    return 2 * x\n", "def train(data):\n    return None\n")

# An nbformat 3 file as Jupyter 2.x wrote it: its cells sit in worksheets.
NBFORMAT3 = json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {"name": "model"},
                        "worksheets": [{"cells": [{"cell_type": "code", "input": "def predict(x):\n    return x",
                                                   "language": "python", "outputs": []}]}]})

KEYS = "hint: fix the keys above in {gf}; `gardenbuild schema` prints every key"
FILES = "hint: fix the problems above in {gf}"
TOML = "hint: see https://toml.io for the syntax; strings need quotes"


@dataclass(frozen=True)
class Case:
    id: str
    expected: str  # the whole stderr; {gf} is the Gardenfile's path, {dir} the garden folder
    lines: dict[int, str] = field(default_factory=dict)  # line number in BASE -> its new text
    append: str = ""  # text added after BASE's last line
    files: dict[str, str | None] = field(default_factory=dict)  # extra files; None removes model.ipynb
    gardenfile: bool = True  # False: no Gardenfile.toml at all


CASES = [
    # --- TOML syntax: tomllib's message, with the line moved to the front
    Case("toml-unquoted-string", lines={4: "name = demo"}, expected="""\
error: Gardenfile.toml:4: invalid TOML: invalid value at column 8
""" + TOML),
    Case("toml-table-twice", append="\n[garden]\nversion = \"1.0\"", expected="""\
error: Gardenfile.toml:24: invalid TOML: cannot declare [garden] twice at column 8
""" + TOML),
    Case("toml-unterminated-string", append='description = "oops', expected="""\
error: Gardenfile.toml:23: invalid TOML: unterminated string at the end of the file
""" + TOML),
    # --- unknown keys, with a guess when one is close
    Case("unknown-top-level-key", lines={1: 'notebok = "model.ipynb"'}, expected="""\
error: Gardenfile.toml:1: notebok: unknown key 'notebok'; did you mean 'notebook'?
""" + KEYS),
    Case("unknown-key-no-guess", lines={2: 'colour = "green"'}, expected="""\
error: Gardenfile.toml:2: colour: unknown key 'colour'; known keys: notebook, include, exclude, garden, environment, pipeline, limits, weights, publish
""" + KEYS),
    Case("unknown-table", lines={12: "[enviroment]"}, expected="""\
error: Gardenfile.toml:12: enviroment: unknown key 'enviroment'; did you mean 'environment'?
""" + KEYS),
    Case("unknown-garden-key", lines={5: 'titel = "Demo"'}, expected="""\
error: Gardenfile.toml:5: garden.titel: unknown key 'titel'; did you mean 'title'?
""" + KEYS),
    Case("unknown-pipeline-key", lines={18: 'fucntion = "predict"'}, expected="""\
error: Gardenfile.toml:18: pipeline[0].fucntion: unknown key 'fucntion'; did you mean 'function'?
""" + KEYS),
    Case("unknown-environment-key", lines={13: 'pyhton = "3.11"'}, expected="""\
error: Gardenfile.toml:13: environment.pyhton: unknown key 'pyhton'; did you mean 'python'?
""" + KEYS),
    # --- required keys
    Case("missing-title", lines={5: ""}, expected="""\
error: Gardenfile.toml:3: garden.title: required key is missing
""" + KEYS),
    Case("missing-authors", lines={8: "", 9: "", 10: ""}, expected="""\
error: Gardenfile.toml:3: garden.authors: required key is missing
""" + KEYS),
    Case("authors-empty", lines={8: "authors = []", 9: "", 10: ""}, expected="""\
error: Gardenfile.toml:8: garden.authors: needs at least 1 entry
""" + KEYS),
    Case("missing-pipeline", lines={n: "" for n in range(16, 23)}, expected="""\
error: Gardenfile.toml: pipeline: required: add at least one [[pipeline]] table naming a function of the notebook
""" + KEYS),
    Case("missing-notebook", lines={1: ""}, expected="""\
error: Gardenfile.toml: notebook: required key is missing
""" + KEYS),
    Case("empty-notebook", lines={1: 'notebook = ""'}, expected="""\
error: Gardenfile.toml:1: notebook: must not be empty
""" + KEYS),
    # --- environment
    Case("python-float", lines={13: "python = 3.11"}, expected="""\
error: Gardenfile.toml:13: environment.python: write the version as a string: python = "3.11"
""" + KEYS),
    Case("python-float-3.10", lines={13: "python = 3.10"}, expected="""\
error: Gardenfile.toml:13: environment.python: write the version as a string: python = "3.10"
""" + KEYS),
    Case("python-unsupported", lines={13: 'python = "3.9"'}, expected="""\
error: Gardenfile.toml:13: environment.python: Python '3.9' is not supported; choose one of 3.10, 3.11, 3.12, 3.13
""" + KEYS),
    Case("flavor-unknown", lines={14: 'flavor = "pytorch"'}, expected="""\
error: Gardenfile.toml:14: environment.flavor: unknown flavor 'pytorch'; available flavors: base, sklearn, tensorflow, torch
""" + FILES),
    Case("requirement-not-pep508", lines={15: 'requirements = ["numpy>=1.26", "scikit learn", "torch=2.4"]'}, expected="""\
error: 2 problems found
  Gardenfile.toml:15: environment.requirements[1]: 'scikit learn' is not a PEP 508 requirement (write e.g. 'numpy>=1.26')
  Gardenfile.toml:15: environment.requirements[2]: 'torch=2.4' is not a PEP 508 requirement (write e.g. 'numpy>=1.26')
""" + KEYS),
    Case("requirements-file-missing", lines={15: 'requirements_file = "requirements.txt"'}, expected="""\
error: Gardenfile.toml:15: environment.requirements_file: file 'requirements.txt' does not exist
""" + FILES),
    Case("requirements-file-outside", lines={15: 'requirements_file = "../requirements.txt"'}, expected="""\
error: Gardenfile.toml:15: environment.requirements_file: '../requirements.txt' is outside the garden folder; keep it beside Gardenfile.toml
""" + FILES),
    Case("requirements-file-bad-line", lines={15: 'requirements_file = "requirements.txt"'},
         files={"requirements.txt": "numpy>=1.26  # arrays\nnot a requirement!\n"}, expected="""\
error: Gardenfile.toml:15: environment.requirements_file: requirements.txt: 'not a requirement!' is not a PEP 508 requirement (write e.g. 'numpy>=1.26')
""" + FILES),
    Case("env-var-names", lines={15: 'env = { OMP_NUM_THREADS = "1", 9LIVES = "x", "MY-VAR" = "y" }'}, expected="""\
error: 2 problems found
  Gardenfile.toml:15: environment.env.9LIVES: '9LIVES' is not an environment variable name (letters, digits and '_', not starting with a digit)
  Gardenfile.toml:15: environment.env.MY-VAR: 'MY-VAR' is not an environment variable name (letters, digits and '_', not starting with a digit)
""" + KEYS),
    Case("apt-package-name", lines={15: 'system_packages = ["libgomp1", "Lib GL"]'}, expected="""\
error: Gardenfile.toml:15: environment.system_packages[1]: 'Lib GL' is not a Debian package name (lowercase, e.g. libgomp1 or libgl1=1.6.0-1)
""" + KEYS),
    # --- garden metadata
    Case("name-not-a-slug", lines={4: 'name = "My Garden"'}, expected="""\
error: Gardenfile.toml:4: garden.name: 'My Garden' is not a valid name; use lowercase letters, digits, '-' and '_'
""" + KEYS),
    Case("orcid-format", lines={10: 'orcid = "0000-0002-1825"'}, expected="""\
error: Gardenfile.toml:10: garden.authors[0].orcid: '0000-0002-1825' is not an ORCID iD (expected 0000-0000-0000-0000)
""" + KEYS),
    Case("orcid-checksum", lines={10: 'orcid = "https://orcid.org/0000-0002-1825-0098"'}, expected="""\
error: Gardenfile.toml:10: garden.authors[0].orcid: 'https://orcid.org/0000-0002-1825-0098' fails the ORCID checksum; check for a typo
""" + KEYS),
    Case("doi", lines={7: '\n[[garden.papers]]\ntitle = "A paper"\ndoi = "doi:10.1021/ci9901338"'}, expected="""\
error: Gardenfile.toml:10: garden.papers[0].doi: 'doi:10.1021/ci9901338' is not a DOI (expected 10.NNNN/suffix)
""" + KEYS),
    Case("license-not-spdx", lines={6: 'license = "MIT-ish"'}, expected="""\
error: Gardenfile.toml:6: garden.license: 'MIT-ish' is not an SPDX license identifier (e.g. MIT, Apache-2.0, CC-BY-4.0)
""" + KEYS),
    Case("license-wrong-type", lines={6: "license = 3"}, expected="""\
error: Gardenfile.toml:6: garden.license: expected a string, got 3
""" + KEYS),
    Case("version", lines={7: 'version = "first"'}, expected="""\
error: Gardenfile.toml:7: garden.version: 'first' is not a version number (e.g. 1.0.0)
""" + KEYS),
    Case("keywords-not-an-array", lines={7: 'keywords = "chemistry"'}, expected="""\
error: Gardenfile.toml:7: garden.keywords: expected an array, got 'chemistry'
""" + KEYS),
    # --- the notebook file
    Case("notebook-missing", lines={1: 'notebook = "modle.ipynb"'}, expected="""\
error: Gardenfile.toml:1: notebook: file 'modle.ipynb' does not exist; notebooks here: model.ipynb
""" + FILES),
    Case("notebook-missing-none-here", files={"model.ipynb": None}, expected="""\
error: Gardenfile.toml:1: notebook: file 'model.ipynb' does not exist; there is no .ipynb file in this folder
""" + FILES),
    Case("notebook-outside", lines={1: 'notebook = "../model.ipynb"'}, expected="""\
error: Gardenfile.toml:1: notebook: '../model.ipynb' is outside the garden folder; keep the notebook beside Gardenfile.toml or below it
""" + FILES),
    Case("notebook-not-ipynb", lines={1: 'notebook = "model.py"'}, files={"model.py": "def predict(x):\n    return x\n"},
         expected="""\
error: Gardenfile.toml:1: notebook: 'model.py' is not a .ipynb notebook
""" + FILES),
    Case("notebook-not-json", files={"model.ipynb": "def predict(x):\n    return 2 * x\n"}, expected="""\
error: Gardenfile.toml:1: notebook: model.ipynb is not valid JSON (line 1: Expecting value); is it really a .ipynb?
""" + FILES),
    Case("notebook-nbformat-3", files={"model.ipynb": NBFORMAT3}, expected="""\
error: Gardenfile.toml:1: notebook: model.ipynb uses nbformat 3; only nbformat 4 is supported (re-save it in Jupyter)
""" + FILES),
    Case("notebook-no-cells", files={"model.ipynb": '{"nbformat": 4, "metadata": {}}'}, expected="""\
error: Gardenfile.toml:1: notebook: model.ipynb is not a Jupyter notebook (no 'cells' list)
""" + FILES),
    # A broken cell may hold the function: no "no such function" echo of the syntax error.
    Case("notebook-syntax-error", files={"model.ipynb": notebook("import math\n", "def predict(x:\n    return 2 * x\n")},
         expected="""\
error: Gardenfile.toml:1: notebook: model.ipynb: cell 3, line 1: '(' was never closed
""" + FILES),
    Case("notebook-magics", files={"model.ipynb": notebook(
        "%pip install -r requirements.txt ./vendor/pkg numpy\n%matplotlib inline\n",
        "import os\n%run train.py --epochs 3\n",
        "def predict(x):\n    %load_ext autoreload\n    return x\n")}, expected="""\
error: 3 problems found
  Gardenfile.toml:1: notebook: model.ipynb: cell 2: '%pip install -r requirements.txt' is not supported; set requirements_file = "requirements.txt" in [environment] instead
  Gardenfile.toml:1: notebook: model.ipynb: cell 2: '%pip install ./vendor/pkg': not a PEP 508 requirement (write e.g. 'numpy>=1.26'), so it cannot be locked
  Gardenfile.toml:1: notebook: model.ipynb: cell 3, line 2: %run: only '%run [-i] SCRIPT.py' without arguments is supported
""" + FILES),
    # --- pipelines
    Case("function-not-in-notebook", lines={18: 'function = "predcit"'}, expected="""\
error: Gardenfile.toml:18: pipeline[0].function: 'predcit': no such function in model.ipynb; did you mean 'predict'?
""" + FILES),
    Case("pipeline-name-not-in-notebook", lines={17: 'name = "classify"', 18: ""}, expected="""\
error: Gardenfile.toml:17: pipeline[0].name: 'classify': no such function in model.ipynb
""" + FILES),
    Case("pipeline-name-not-identifier", lines={17: 'name = "pre-dict"'}, expected="""\
error: Gardenfile.toml:17: pipeline[0].name: 'pre-dict' is not a Python identifier
""" + KEYS),
    Case("pipeline-duplicate-name", append='\n[[pipeline]]\nname = "predict"\nfunction = "train"\n', expected="""\
error: Gardenfile.toml:25: pipeline[1].name: pipeline name 'predict' is used twice
""" + FILES),
    Case("tolerance-negative", append="tolerance = -0.5", expected="""\
error: Gardenfile.toml:23: pipeline[0].test[0].tolerance: must be 0 or more (got -0.5)
""" + KEYS),
    Case("test-without-expected", lines={22: ""}, expected="""\
error: Gardenfile.toml:20: pipeline[0].test[0].expected: required key is missing
""" + KEYS),
    # A multi-line array whose rows look like table headers must not throw the line count off.
    Case("tolerance-after-multiline-array", append="""
[[pipeline.test]]
input = { x = [[1, 2], [3, 4]] }
expected = [
  [2, 4],
  [6, 8]
]
tolerance = "small"
""", expected="""\
error: Gardenfile.toml:30: pipeline[0].test[1].tolerance: expected a number, got 'small'
""" + KEYS),
    # --- everything at once, in file order: model, file and notebook problems together
    Case("several-problems", lines={
        1: 'notebook = "modle.ipynb"',
        4: 'name = "Demo"',
        10: 'orcid = "0000-0002-1825-009"',
        13: 'pyhton = "3.11"',
        14: 'flavor = "torchy"',
        21: "input = 1",
    }, expected="""\
error: 6 problems found
  Gardenfile.toml:1: notebook: file 'modle.ipynb' does not exist; notebooks here: model.ipynb
  Gardenfile.toml:4: garden.name: 'Demo' is not a valid name; use lowercase letters, digits, '-' and '_'
  Gardenfile.toml:10: garden.authors[0].orcid: '0000-0002-1825-009' is not an ORCID iD (expected 0000-0000-0000-0000)
  Gardenfile.toml:13: environment.pyhton: unknown key 'pyhton'; did you mean 'python'?
  Gardenfile.toml:14: environment.flavor: unknown flavor 'torchy'; available flavors: base, sklearn, tensorflow, torch
  Gardenfile.toml:21: pipeline[0].test[0].input: expected a table, got 1
""" + KEYS),
    Case("several-problems-notebook", lines={5: 'titel = "Demo"', 18: 'function = "predcit"'}, expected="""\
error: 2 problems found
  Gardenfile.toml:5: garden.titel: unknown key 'titel'; did you mean 'title'?
  Gardenfile.toml:18: pipeline[0].function: 'predcit': no such function in model.ipynb; did you mean 'predict'?
""" + KEYS),
    # --- no Gardenfile at all
    Case("no-gardenfile", gardenfile=False, expected="""\
error: no Gardenfile.toml in {dir}
hint: create one with: gardenbuild init {dir} --notebook NOTEBOOK.ipynb"""),
]


def gardenfile_text(case: Case) -> str:
    lines = BASE.splitlines()
    for number, text in case.lines.items():
        lines[number - 1] = text
    return "\n".join(lines) + "\n" + case.append


def write_garden(case: Case, folder: Path) -> None:
    folder.mkdir()
    if case.gardenfile:
        (folder / "Gardenfile.toml").write_text(gardenfile_text(case), encoding="utf-8")
    for name, text in ({"model.ipynb": NOTEBOOK} | case.files).items():
        if text is not None:
            (folder / name).write_text(text, encoding="utf-8")


def test_the_table_is_big_and_unique():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


def test_base_garden_is_valid(tmp_path, capsys):
    write_garden(Case("valid", expected=""), tmp_path / "garden")
    assert main(["check", str(tmp_path / "garden")]) == 0
    assert capsys.readouterr().err == ""


def test_notebook_syntax_jupyter_accepts_passes(tmp_path, capsys):
    """Magics, shell lines, %pip and top-level await are fine: the image's runtime runs them."""
    cells = (
        "%matplotlib inline\n!ls data\nimport asyncio\n",
        "%pip install einops>=0.8\n",
        "%%time\ndef predict(x):\n    return 2 * x\n",
        "await asyncio.sleep(0)\n",
    )
    write_garden(Case("jupyter", expected="", files={"model.ipynb": notebook(*cells)}), tmp_path / "garden")
    assert main(["check", "--json", str(tmp_path / "garden")]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "einops>=0.8" in json.loads(out)["requirements"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_check_reports(case: Case, tmp_path, capsys):
    folder = tmp_path / "garden"
    write_garden(case, folder)
    code = main(["check", str(folder)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert out == ""
    assert err == case.expected.format(gf=folder / "Gardenfile.toml", dir=folder) + "\n"
    assert code == 2


@pytest.mark.parametrize("command", ["plan", "render", "graph"])
def test_other_commands_report_the_same(command, tmp_path, capsys):
    """Every command that loads a garden reports its problems the same way as `check`."""
    case = next(c for c in CASES if c.id == "several-problems")
    folder = tmp_path / "garden"
    write_garden(case, folder)
    assert main([command, str(folder)]) == 2
    assert capsys.readouterr().err == case.expected.format(gf=folder / "Gardenfile.toml", dir=folder) + "\n"


def test_check_json_still_reports_on_stderr(tmp_path, capsys):
    case = next(c for c in CASES if c.id == "function-not-in-notebook")
    folder = tmp_path / "garden"
    write_garden(case, folder)
    assert main(["check", "--json", str(folder)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: Gardenfile.toml:18: pipeline[0].function: 'predcit'")
