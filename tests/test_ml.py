"""ML gardens: package sources, CUDA builds and GPUs, large weights, session size; and real
torch and tensorflow gardens built and called (integration).

The torch garden is built from a local folder of CPU torch wheels when this machine has
one (pip's find-links, as `pip config list` shows), else from PyTorch's CPU index when it is
reachable, else the test says what is missing and skips. TensorFlow comes from PyPI
(tensorflow-cpu).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gardenbuild.backends.deps import parse_pylock
from gardenbuild.engine.call import GPU_DEVICE, gpu_devices
from gardenbuild.errors import ConfigError, UserError
from gardenbuild.manifest.load import load
from gardenbuild.plan.digests import inputs_for
from gardenbuild.plan.graph import plan
from gardenbuild.publish.globus import user_endpoint_config
from helpers import cli, copy_garden, write_garden

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "digits-torch"
TF = REPO / "tests" / "fixtures" / "gardens" / "tf_garden"
HEADER = "from gardenbuild import garden_pipeline\n"
REF = "registry.example/gardens/g@sha256:" + "a" * 64


def one_pipeline(folder: Path, *, environment: str = "", extra: str = "", tables: str = "", cells=None,
                 flavor: str = "base") -> Path:
    cells = cells or [HEADER + "@garden_pipeline\ndef one() -> int:\n    return 1\n"]
    return write_garden(folder, cells, ["one"], environment=environment, extra=extra, tables=tables, flavor=flavor)


# --------------------------------------------------------------------------- package sources


def test_find_links_and_indexes_in_the_gardenfile_replace_the_flavors_and_reach_the_resolver(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    garden = one_pipeline(tmp_path / "g", environment='find_links = ["../wheels", "https://example.org/links/"]\n'
                                                      'indexes = ["https://example.org/simple"]')
    loaded = load(garden)
    assert loaded.find_links == (str(wheels.resolve()), "https://example.org/links/")
    assert loaded.indexes == ("https://example.org/simple",)
    resolve_step = plan(loaded, inputs_for(loaded)).step("resolve")
    assert resolve_step.params["find_links"] == list(loaded.find_links)


def test_the_torch_flavor_brings_its_cpu_index_unless_the_gardenfile_names_others(tmp_path):
    flavored = one_pipeline(tmp_path / "t", flavor="torch")
    assert load(flavored).indexes == ("https://download.pytorch.org/whl/cpu",)
    none = one_pipeline(tmp_path / "n", flavor="torch", environment="indexes = []")
    assert load(none).indexes == ()


def test_pips_own_source_options_in_pip_lines_and_requirements_files_are_honoured(tmp_path):
    cells = ["%pip install torch --index-url https://download.pytorch.org/whl/cpu\n" + HEADER
             + "@garden_pipeline\ndef one() -> int:\n    return 1\n"]
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "local").mkdir()
    (tmp_path / "g" / "requirements.txt").write_text(
        "--extra-index-url https://example.org/simple\n-f local\nsix\n--find-links=https://example.org/links/\n")
    garden = one_pipeline(tmp_path / "g", environment='requirements_file = "requirements.txt"', cells=cells)
    loaded = load(garden)
    assert "torch" in loaded.requirements and "six" in loaded.requirements
    assert set(loaded.indexes) == {"https://download.pytorch.org/whl/cpu", "https://example.org/simple"}
    assert loaded.find_links == (str((tmp_path / "g" / "local").resolve()), "https://example.org/links/")


def test_credentials_in_a_source_and_missing_folders_are_refused(tmp_path, run_cli):
    garden = one_pipeline(tmp_path / "g", environment='indexes = ["https://me:hunter2@pypi.example.org/simple"]\n'
                                                      'find_links = ["nowhere"]')
    code, _, err = run_cli("check", str(garden))
    assert code == 2
    assert "environment.indexes[0]: 'https://pypi.example.org/simple' carries credentials; keep them out of " \
           "Gardenfile.toml: put them in ~/.netrc" in err
    assert "hunter2" not in err
    assert "environment.find_links[0]: find-links folder 'nowhere' does not exist" in err


def test_a_direct_wheel_reference_is_locked_from_its_archive_entry(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(b"x" * 1234)
    text = (f'lock-version = "1.0"\n[[packages]]\nname = "pkg"\nversion = "1.0"\n'
            f'archive = {{ path = "{wheel}", hashes = {{ sha256 = "{"a" * 64}" }} }}\n')
    (pin,) = parse_pylock(text, base=tmp_path)
    assert (pin.name, pin.filename, pin.url, pin.size) == ("pkg", wheel.name, wheel.as_uri(), 1234)


def test_heavy_locks_are_named_with_their_biggest_wheels():
    from gardenbuild.backends.deps import PinnedWheel
    from gardenbuild.engine.prepare import _warn_if_heavy
    from gardenbuild.report import RecordingReporter

    def pin(name, gb):
        return PinnedWheel(name, "1", f"{name}-1-py3-none-any.whl", "https://x", "a" * 64, int(gb * 1e9))

    reporter = RecordingReporter()
    _warn_if_heavy([pin("torch", 0.9), pin("nvidia-cudnn-cu12", 0.7), pin("nvidia-cublas-cu12", 0.5),
                    pin("triton", 0.2), pin("numpy", 0.02)], reporter)
    (message,) = reporter.messages("warn")
    assert message.startswith("the locked wheels add up to 2.32 GB; the biggest: torch 1 (0.90 GB), "
                              "nvidia-cudnn-cu12 1 (0.70 GB), nvidia-cublas-cu12 1 (0.50 GB)")
    _warn_if_heavy([pin("numpy", 0.02)], reporter)
    assert len(reporter.messages("warn")) == 1


# --------------------------------------------------------------------------- CUDA and GPUs


def test_a_cuda_garden_takes_the_flavors_cuda_packages_and_says_so(tmp_path):
    cpu = load(one_pipeline(tmp_path / "cpu", flavor="torch"))
    cuda = load(one_pipeline(tmp_path / "cuda", flavor="torch", environment='accelerator = "cuda"'))
    assert cuda.indexes == () and cpu.indexes == ("https://download.pytorch.org/whl/cpu",)
    context = plan(cuda, inputs_for(cuda)).step("build-api").params["context"]
    assert context["labels"]["dev.gardenbuild.accelerator"] == "cuda"
    with pytest.raises(ConfigError, match=r"environment.accelerator: flavor 'sklearn' has no cuda build; "
                                          r"flavor 'sklearn' offers: cpu"):
        load(one_pipeline(tmp_path / "sk", flavor="sklearn", environment='accelerator = "cuda"'))


def test_a_cuda_garden_asks_for_the_gpus_and_refuses_a_machine_without(tmp_path):
    assert gpu_devices("cpu", dev=tmp_path) == []
    with pytest.raises(UserError) as info:
        gpu_devices("cuda", dev=tmp_path)
    assert "this garden is built for CUDA" in info.value.message and "--cpu" in info.value.hint
    (tmp_path / "nvidiactl").touch()
    assert gpu_devices("cuda", dev=tmp_path) == [GPU_DEVICE]


def test_the_globus_endpoint_config_of_a_cuda_garden_hands_workers_the_gpus():
    assert user_endpoint_config(REF, "docker", gpu=True)["container_cmd_options"] == "--network host --rm --gpus all"
    assert user_endpoint_config(REF, "apptainer", gpu=True)["container_cmd_options"] == "--nv"
    assert "container_cmd_options" not in user_endpoint_config(REF, "apptainer")


# --------------------------------------------------------------------------- weights


def big_file(path: Path, size: int) -> str:
    """`size` bytes of random data (not compressible: a registry must really move it); its sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 24))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def test_weights_are_declared_with_a_place_and_a_digest(tmp_path, run_cli):
    garden = one_pipeline(tmp_path / "g", tables=(
        '[[weights]]\nname = "model"\npath = "model.bin"\nsha256 = "' + "a" * 64 + '"\n'
        '[[weights]]\nname = "both"\npath = "x"\nurl = "https://example.org/x"\nsha256 = "' + "b" * 64 + '"\n'
        '[[weights]]\nname = "short"\nurl = "https://example.org/w.bin"\nsha256 = "abc"\n'))
    code, _, err = run_cli("check", str(garden))
    assert code == 2
    assert "weights[0].path: file 'model.bin' does not exist" in err
    assert "weights[1]: give the weights either a path (a file in the garden folder) or a url, not both" in err
    assert "weights[2].sha256: 'abc' is not" in err or "weights[2].sha256" in err


def test_weights_get_their_own_step_and_a_notebook_edit_leaves_it_alone(tmp_path):
    garden_dir = one_pipeline(tmp_path / "g", tables="")
    sha = big_file(garden_dir / "model.bin", 1000)
    gardenfile = garden_dir / "Gardenfile.toml"
    gardenfile.write_text(gardenfile.read_text() + f'[[weights]]\nname = "model"\npath = "model.bin"\nsha256 = "{sha}"\n')
    garden = load(garden_dir)
    assert "model.bin" not in garden.files  # not copied with the notebook: it has its own layer
    first = plan(garden, inputs_for(garden))
    assert [s.id for s in first.steps()] == ["resolve", "fetch", "render-env", "build-env", "fetch-weights",
                                            "build-weights", "build-runtime", "render-garden", "execute-notebook",
                                            "test", "build-api", "emit-artifacts"]
    assert first.step("build-runtime").parents == ("build-weights",)
    code, out, err = cli("render", "--stage", "runtime", str(garden_dir))
    assert code == 0, err
    assert f"\nFROM localhost/gardenbuild/weights:{first.step('build-weights').key[:20]}\n" in out
    nb = garden_dir / "model.ipynb"
    nb.write_text(nb.read_text().replace("return 1", "return 2"))
    edited = load(garden_dir)
    second = plan(edited, inputs_for(edited))
    assert second.step("build-weights").key == first.step("build-weights").key
    assert second.step("execute-notebook").key != first.step("execute-notebook").key


def test_weights_are_found_beside_the_notebook_outside_an_image(tmp_path, monkeypatch):
    import gardenbuild

    garden_dir = one_pipeline(tmp_path / "g")
    (garden_dir / "models").mkdir()
    (garden_dir / "models" / "m.pt").write_bytes(b"w")
    gardenfile = garden_dir / "Gardenfile.toml"
    gardenfile.write_text(gardenfile.read_text() + '[[weights]]\nname = "m"\npath = "models/m.pt"\nsha256 = "'
                          + "c" * 64 + '"\n')
    monkeypatch.chdir(garden_dir)
    assert gardenbuild.weights("m") == garden_dir / "models" / "m.pt"
    with pytest.raises(LookupError, match="no weights named 'nope' here"):
        gardenbuild.weights("nope")


# --------------------------------------------------------------------------- real builds


def local_torch_wheels() -> str | None:
    """A folder of CPU torch wheels for CPython 3.11 named by pip's find-links, if there is one."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    folders = [value.strip("'\"") for line in out.splitlines() if "find-links" in line
               for value in [line.split("=", 1)[1]]]
    for folder in folders:
        for place in folder.split():
            if list(Path(place).glob("torch-2.13.0+cpu-cp311-*.whl")):
                return place
    return None


def cpu_index_reachable() -> bool:
    try:
        urllib.request.urlopen("https://download.pytorch.org/whl/cpu/torch/", timeout=5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def torch_garden(base_image, build_cache, tmp_path_factory):
    """examples/digits-torch built here: (folder, --json summary)."""
    folder = local_torch_wheels()
    if folder is None and not cpu_index_reachable():
        pytest.skip("no CPU build of torch 2.13.0 for CPython 3.11 here: pip's find-links names no folder holding "
                    "one, and https://download.pytorch.org/whl/cpu cannot be reached")
    garden = copy_garden(DIGITS, tmp_path_factory.mktemp("torch") / "digits-torch")
    extra = []
    if folder is not None:  # PyTorch's index is not reachable: the local folder serves instead
        gardenfile = garden / "Gardenfile.toml"
        gardenfile.write_text(gardenfile.read_text().replace('flavor = "torch"\n', 'flavor = "torch"\nindexes = []\n'))
        extra = ["--find-links", folder]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GARDENBUILD_CACHE", str(build_cache))
        started = time.monotonic()
        code, out, err = cli("build", str(garden), "--base-image", base_image, "--json", *extra)
    assert code == 0, err
    print(f"digits-torch built in {time.monotonic() - started:.1f} s")
    return garden, json.loads(out)


@pytest.mark.integration
def test_a_torch_garden_is_built_tested_and_called(torch_garden, build_cache, monkeypatch):
    monkeypatch.setenv("GARDENBUILD_CACHE", str(build_cache))
    garden, summary = torch_garden
    assert summary["tests"] and all(c["passed"] for c in summary["tests"])
    lock = (garden / "Gardenfile.lock").read_text()
    assert 'version = "2.13.0+cpu"' in lock and "nvidia" not in lock  # the CPU build, no CUDA wheels
    metadata = json.loads((garden / ".gardenbuild" / "metadata.json").read_text())
    assert metadata["session_bytes"] < 10**6 and summary["session_bytes"] == metadata["session_bytes"]
    code, out, err = cli("run", str(garden), "classify_digits", "--input",
                         json.dumps({"images": [[0] * 64, [16] * 64]}))
    assert code == 0, err
    assert len(json.loads(out)) == 2 and all(0 <= d <= 9 for d in json.loads(out))
    code, out, err = cli("run", str(garden), "classify_digits", "--input", json.dumps({"images": [[1, 2, 3]]}))
    assert code == 1 and "ValueError: expected a list of images of 64 pixel values each, got shape [1, 3]" in err


@pytest.mark.integration
def test_a_tensorflow_garden_is_built_tested_and_called(base_image, build_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("GARDENBUILD_CACHE", str(build_cache))
    garden = copy_garden(TF, tmp_path / "tf_garden")
    gardenfile = garden / "Gardenfile.toml"
    gardenfile.write_text(gardenfile.read_text().replace('python = "3.10"', 'python = "3.11"'))
    code, out, err = cli("build", str(garden), "--base-image", base_image, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["tests"] and all(c["passed"] for c in summary["tests"])
    assert "tensorflow-cpu" in (garden / "Gardenfile.lock").read_text()
    code, out, err = cli("run", str(garden), "classify", "--input", '{"x": [[0.2, 0.9], [3.0, 1.0]]}')
    assert (code, out) == (0, "[1, 0]\n"), err


def du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.integration
def test_a_large_weights_file_is_copied_and_pushed_once(base_image, build_cache, tmp_path, monkeypatch):
    """512 MiB of weights: their own layer, fetched and copied once; a notebook edit then
    copies nothing big, and the second push uploads only what the notebook changed."""
    from helpers import Registry

    monkeypatch.setenv("GARDENBUILD_CACHE", str(build_cache))
    monkeypatch.setenv("GARDENBUILD_DATA", str(tmp_path / "data"))
    cells = ["import gardenbuild\nfrom gardenbuild import garden_pipeline\n"
             "print('weights at', gardenbuild.weights('big'))\n",
             "@garden_pipeline\ndef weight_bytes() -> int:\n    with open(gardenbuild.weights('big'), 'rb') as f:\n"
             "        return f.seek(0, 2)\n"]
    garden = write_garden(tmp_path / "weighty", cells, ["weight_bytes"], name="ml-weighty")
    size = 512 * 2**20
    sha = big_file(garden / "big.bin", size)
    gardenfile = garden / "Gardenfile.toml"
    gardenfile.write_text(gardenfile.read_text() + f'[[weights]]\nname = "big"\npath = "big.bin"\nsha256 = "{sha}"\n')
    (tmp_path / "registry").mkdir()
    registry = Registry(tmp_path / "registry").start()
    try:
        code, out, err = cli("build", str(garden), "--base-image", base_image, "--json")
        assert code == 0, err
        assert json.loads(out)["session_bytes"] < 10**5  # the session refers to the file, it does not hold it
        code, out, err = cli("run", str(garden), "weight_bytes")
        assert (code, out) == (0, f"{size}\n"), err
        target = f"{registry.host}/lab"
        code, out, err = cli("publish", str(garden), "--registry", target, "--no-tls-verify")
        assert code == 0, err
        first = du(registry.root / "data")
        assert first > size  # the weights went up once

        nb = garden / "model.ipynb"
        nb.write_text(nb.read_text().replace("print('weights at'", "print('the weights are at'"))
        started = time.monotonic()
        code, out, err = cli("build", str(garden), "--base-image", base_image, "--json")
        rebuilt = time.monotonic() - started
        assert code == 0, err
        ran = [s["id"] for s in json.loads(out)["steps"] if not s["cached"]]
        assert "build-weights" not in ran and "fetch-weights" not in ran and "execute-notebook" in ran
        print(f"notebook edit with 512 MiB of weights: rebuilt in {rebuilt:.1f} s")
        nb_text = json.loads((garden / ".gardenbuild" / "executed.ipynb").read_text())["cells"][0]["outputs"][0]["text"]
        assert nb_text.startswith("the weights are at /garden/weights/big/big.bin")
        code, out, err = cli("publish", str(garden), "--registry", target, "--no-tls-verify")
        assert code == 0, err
        pushed = du(registry.root / "data") - first
        assert pushed < 20 * 2**20, f"the second push uploaded {pushed / 2**20:.0f} MiB"  # the notebook's layer only
    finally:
        registry.stop()
