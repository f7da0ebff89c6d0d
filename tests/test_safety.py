"""Hostile or unlucky input that must never reach an image or crash: links that lead out of
the garden folder, links that lead nowhere, patterns outside the folder, injected
Containerfile syntax, secrets in the environment, input of the wrong type.

Unit tests: no buildah. The real builds of these cases are in test_safety_integration.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gardenbuild.engine import stamp
from gardenbuild.errors import ConfigError
from gardenbuild.manifest.load import load
from helpers import cli

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "solubility"


@pytest.fixture
def garden(tmp_path):
    dest = tmp_path / "g"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".gardenbuild"))
    return dest


def test_a_link_to_a_host_file_is_refused_with_where_it_points(garden, tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret")
    (garden / "data" / "shadow").symlink_to(secret)
    with pytest.raises(ConfigError) as info:
        load(garden)
    (problem,) = info.value.problems
    assert problem.message == (f"data/shadow is a symbolic link to {secret}, outside the garden folder; gardenbuild "
                               "never copies a file from outside it: copy the file in, or list the link in exclude")
    code, out, err = cli("check", str(garden))
    assert code == 2 and err.startswith("error: Gardenfile.toml: data/shadow is a symbolic link to ")
    assert "Traceback" not in err


def test_a_link_to_a_folder_outside_is_refused_too(garden, tmp_path):
    (tmp_path / "etc").mkdir()
    (garden / "hostetc").symlink_to(tmp_path / "etc")
    with pytest.raises(ConfigError, match=r"hostetc is a symbolic link to .*/etc, outside the garden folder"):
        load(garden)


def test_a_dangling_link_is_a_clear_error_not_a_traceback(garden):
    (garden / "data" / "gone.csv").symlink_to(garden / "data" / "nowhere.csv")
    code, out, err = cli("check", str(garden))
    assert code == 2
    assert err.splitlines()[0] == (f"error: Gardenfile.toml: data/gone.csv is a symbolic link to {garden}/data/nowhere.csv,"
                                   " which does not exist; remove the link or list it in exclude")
    # the no-op fingerprint reads links as links: it neither follows nor crashes on one
    assert stamp.fingerprint(garden, {}) == stamp.fingerprint(garden, {})


def test_an_excluded_bad_link_is_fine(garden, tmp_path):
    (garden / "scratch.lnk").symlink_to(tmp_path / "nowhere")
    (garden / "Gardenfile.toml").write_text(
        (garden / "Gardenfile.toml").read_text().replace('notebook = "solubility.ipynb"',
                                                         'notebook = "solubility.ipynb"\nexclude = ["*.lnk"]'))
    assert "scratch.lnk" not in load(garden).files


def test_a_link_inside_the_folder_is_copied_as_its_target(garden):
    (garden / "data" / "train.sdf").symlink_to("solubility.train.sdf")
    files = load(garden).files
    assert "data/train.sdf" in files and "data/solubility.train.sdf" in files


def test_include_patterns_outside_the_folder_are_errors_and_empty_ones_warnings(garden, run_cli):
    text = (garden / "Gardenfile.toml").read_text()
    (garden / "Gardenfile.toml").write_text(text.replace(
        'notebook = "solubility.ipynb"', 'notebook = "solubility.ipynb"\ninclude = ["../*", "/etc/*", "data/*"]'))
    code, _, err = run_cli("check", str(garden))
    assert code == 2
    assert "include[0]: pattern '../*' points outside the garden folder" in err
    assert "include[1]: pattern '/etc/*' points outside the garden folder" in err
    (garden / "Gardenfile.toml").write_text(text.replace(
        'notebook = "solubility.ipynb"', 'notebook = "solubility.ipynb"\ninclude = ["data/*", "models/*.pt"]'))
    code, _, err = run_cli("check", str(garden))
    assert code == 0
    assert err == f"warning: include pattern 'models/*.pt' matches no file in {garden.resolve()}\n"


def test_the_fingerprint_never_reads_through_a_link(garden, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("one")
    (garden / "outside").symlink_to(outside)
    first = stamp.fingerprint(garden, {})
    outside.write_text("two")  # were the link followed, the fingerprint would change
    assert stamp.fingerprint(garden, {}) == first
