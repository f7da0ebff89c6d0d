"""An installed gardenbuild works outside the repository: the wheel carries templates/
and flavors/ inside the package.

Builds the wheel, installs it into a fresh venv with uv, and runs the venv's
``gardenbuild`` on a copy of examples/solubility from a folder outside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gardenbuild.plan import lockfile

from gardenbuild.cli import main

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


def uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]  # uv is a dependency of gardenbuild


def run(cmd: list, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """A venv with the freshly built wheel installed (not editable, not the repo)."""
    tmp = tmp_path_factory.mktemp("wheel")
    run([*uv(), "build", "--wheel", "--out-dir", tmp / "dist", REPO], cwd=tmp)
    wheels = list((tmp / "dist").glob("gardenbuild-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    run([*uv(), "venv", "--quiet", "--python", sys.executable, venv], cwd=tmp)
    run([*uv(), "pip", "install", "--quiet", "--python", venv / "bin" / "python", wheels[0]], cwd=tmp)
    return {"wheel": wheels[0], "venv": venv, "tmp": tmp}


def clean_env() -> dict[str, str]:
    """This process's environment minus anything that could point Python back at the repo."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "GARDENBUILD_BASE_IMAGE")}


def test_wheel_contains_the_data_files(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for folder in ("templates", "flavors"):
        shipped = {f"gardenbuild/{folder}/{p.name}" for p in (REPO / folder).iterdir() if p.is_file()}
        assert shipped and shipped <= names, f"missing from the wheel: {sorted(shipped - names)}"
    assert "gardenbuild/runtime/__init__.py" in names


def test_installed_gardenbuild_renders_outside_the_repo(installed, tmp_path, capsys):
    venv = installed["venv"]
    garden = tmp_path / "gardens" / "solubility"
    shutil.copytree(REPO / "examples" / "solubility", garden)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = clean_env()

    where = run([venv / "bin" / "python", "-c", "import gardenbuild; print(gardenbuild.__file__)"], elsewhere, env)
    package = Path(where.stdout.strip()).parent
    assert package.is_relative_to(venv), f"imported gardenbuild from {package}, not from the venv"
    assert (package / "templates" / "Containerfile.j2").is_file()
    assert (package / "flavors" / "sklearn.toml").is_file()

    rendered = run([venv / "bin" / "gardenbuild", "render", garden], elsewhere, env)
    assert rendered.stderr == ""
    # The example's Gardenfile.lock names its (localhost/) base; the installed tool reads it too,
    # and pins it by the digest local storage holds, when this machine has it.
    assert f"FROM {lockfile.read(garden).pinned_base}" in rendered.stdout
    # The installed templates are the repository's: the same text as rendering in-process.
    assert main(["render", str(garden)]) == 0
    assert rendered.stdout == capsys.readouterr().out

    checked = run([venv / "bin" / "gardenbuild", "check", garden], elsewhere, env)
    assert checked.stdout.startswith("ok: ")


def test_installed_gardenbuild_init_and_errors(installed, tmp_path):
    venv = installed["venv"]
    garden = tmp_path / "fresh"
    shutil.copytree(REPO / "examples" / "solubility", garden)
    (garden / "Gardenfile.toml").unlink()
    env = clean_env()
    run([venv / "bin" / "gardenbuild", "init", garden, "--notebook", "solubility.ipynb", "--flavor", "sklearn"], tmp_path, env)
    assert 'name = "predict_solubility"' in (garden / "Gardenfile.toml").read_text()
    bad = subprocess.run([venv / "bin" / "gardenbuild", "check", tmp_path / "nowhere"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: no Gardenfile.toml in ") and "Traceback" not in bad.stderr
