"""Shared fixtures: where the fixture gardens live, and a way to run the CLI in-process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gardenbuild.cli import main

REPO = Path(__file__).resolve().parent.parent
#: The gardens every front-end command must handle: the shipped example and the fixtures.
GARDENS = {
    "solubility": REPO / "examples" / "solubility",
    "torch_garden": REPO / "tests" / "fixtures" / "gardens" / "torch_garden",
    "tf_garden": REPO / "tests" / "fixtures" / "gardens" / "tf_garden",
}


@pytest.fixture
def gardens() -> dict[str, Path]:
    """GARDENS, for tests parametrized by garden name."""
    return dict(GARDENS)


@pytest.fixture
def run_cli(capsys):
    """Run ``gardenbuild ARGS`` in-process; return (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def garden_copy(tmp_path):
    """A writable copy of one of GARDENS, by name."""

    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(GARDENS[name], dest, ignore=shutil.ignore_patterns(".gardenbuild", ".ipynb_checkpoints"))
        return dest

    return copy


# ---- real builds (tests marked `integration`)


@pytest.fixture(scope="session")
def base_image() -> str:
    """``localhost/gardenbuild/python:3.11``, bootstrapped once if absent; skips without buildah."""
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed (apt-get install -y buildah); integration tests build real images")
    from gardenbuild.backends.base import bootstrap
    from gardenbuild.backends.buildah import Buildah
    from gardenbuild.report import NullReporter

    return bootstrap("3.11", buildah=Buildah(), reporter=NullReporter())


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory) -> Path:
    """One GARDENBUILD_CACHE for the session: each wheel is fetched and each env image recorded once."""
    return tmp_path_factory.mktemp("gardenbuild-cache")


@pytest.fixture(autouse=True)
def private_cache_and_catalog(tmp_path_factory, monkeypatch):
    """No test reads or writes the machine's own step cache or catalog; a test may point
    GARDENBUILD_CACHE (say, at the session's build cache) elsewhere itself."""
    monkeypatch.setenv("GARDENBUILD_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("GARDENBUILD_DATA", str(tmp_path_factory.getbasetemp() / "data"))


TEST_IMAGES = ("localhost/gardens/", "localhost/gardenbuild/env:", "localhost/gardenbuild/session/",
               "localhost/gardenbuild-test/")


def _image_names() -> set[str]:
    import subprocess

    out = subprocess.run(["buildah", "images", "--format", "{{.Name}}:{{.Tag}}"], capture_output=True, text=True)
    return {line for line in out.stdout.split() if line.startswith(TEST_IMAGES)}


@pytest.fixture(scope="session", autouse=True)
def images_cleaned_up():
    """The suite leaves the machine's image storage as it found it: the images its builds
    tagged are removed at the end, then the untagged layers they leave (a run of the whole
    suite used to leave 41 images, about 25 GB). The base image stays: it is reused."""
    if shutil.which("buildah") is None:
        yield
        return
    before = _image_names()
    yield
    import subprocess

    for name in sorted(_image_names() - before):
        subprocess.run(["buildah", "rmi", name], capture_output=True)
    subprocess.run(["buildah", "rmi", "--prune"], capture_output=True)


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    """A real `docker-registry` on loopback for the module's tests (see helpers.Registry)."""
    from helpers import Registry

    r = Registry(tmp_path_factory.mktemp("registry")).start()
    yield r
    r.stop()


CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def browser():
    """A real headless Chromium (Debian's chromium and chromium-driver), driven by selenium."""
    if not (CHROMIUM.is_file() and DRIVER.is_file()):
        pytest.fail("chromium and chromium-driver are not installed; run scripts/setup.sh")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    yield driver
    driver.quit()
