"""Faults and hostile input against real builds: signals and kill -9 at each stage, runaway
cells and calls, memory limits, injection through names, build secrets.

Every garden here is made on the spot with the plain flavor, so they share one
environment image (dill only) and each build takes seconds. After every fault: no
process of ours left running, no container left behind (or, after kill -9, none once
the next gardenbuild process has swept), no scratch folder or partial download.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from gardenbuild.backends.buildah import Buildah
from helpers import cli, write_garden

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
HEADER = "import os, time\nfrom gardenbuild import garden_pipeline\n"


@pytest.fixture(autouse=True)
def _isolated(build_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("GARDENBUILD_CACHE", str(build_cache))
    monkeypatch.setenv("GARDENBUILD_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("GARDENBUILD_RUN_DIR", str(tmp_path / "run"))  # this test's claims only
    monkeypatch.delenv("GARDENBUILD_BASE_IMAGE", raising=False)


def containers() -> set[str]:
    out = subprocess.run(["buildah", "containers", "-q", "--notruncate"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def running(marker: str) -> bool:
    return marker in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


def scratch(build_cache: Path) -> list[Path]:
    return [p for p in (build_cache / "tmp").glob("*")] if (build_cache / "tmp").is_dir() else []


class Started:
    """`gardenbuild ARGS` in a child process, its merged output read as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "gardenbuild", "-v", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=REPO)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    def wait_for(self, needle: str, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if any(needle in line for line in list(self.lines)):
                return
            if self.proc.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.1)
        self.proc.kill()
        pytest.fail(f"never saw {needle!r}; output:\n{''.join(self.lines)}")

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def finish(self, seconds: float = 60) -> tuple[int, str]:
        code = self.proc.wait(timeout=seconds)
        self.reader.join(timeout=10)
        return code, "".join(self.lines)


def error_of(err: str) -> list[str]:
    """The error a command printed, from its `error:` line on (progress lines come before it)."""
    lines = err.splitlines()
    return next((lines[i:] for i, line in enumerate(lines) if line.startswith("error: ")), [])


def sleeper(tmp_path: Path, marker: str, where: str) -> Path:
    """A garden that sleeps (printing `marker` first) in its notebook, its test, or its pipeline."""
    cells = [HEADER + "@garden_pipeline\ndef nap(seconds: float) -> float:\n"
             f"    print('{marker}-call', flush=True)\n    time.sleep(seconds)\n    return seconds\n"]
    if where == "notebook":
        cells.append(f"print('{marker}', flush=True)\ntime.sleep(171)\n")
    tables = '[[pipeline.test]]\ninput = { seconds = 172 }\nexpected = 172\n' if where == "test" else ""
    return write_garden(tmp_path / f"sleep_{where}", cells, [], name=f"ft-sleep-{where}",
                        tables=f'[[pipeline]]\nname = "nap"\n{tables}')


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_during_the_notebook_stops_everything_and_keeps_nothing(how, base_image, build_cache, tmp_path):
    garden = sleeper(tmp_path, f"nb-{how.name}", "notebook")
    before = containers()
    proc = Started("build", str(garden), "--base-image", base_image)
    proc.wait_for(f"nb-{how.name}")
    proc.send_signal(how)
    code, out = proc.finish()
    assert code == 128 + how, out
    assert out.splitlines()[-1].startswith("error: ") and "nothing was tagged or cached" in out
    assert "Traceback" not in out
    time.sleep(0.5)
    assert not running("time.sleep(171)") and not running("sleep 171")
    assert containers() <= before
    assert scratch(build_cache) == []


def test_sigterm_during_the_tests_and_during_run_leaves_no_container(base_image, build_cache, tmp_path):
    garden = sleeper(tmp_path, "tst", "test")
    before = containers()
    # The tests run in the notebook's step, right after the session is saved.
    proc = Started("build", str(garden), "--base-image", base_image)
    proc.wait_for("gardenbuild: saved session")
    time.sleep(2)  # the test is sleeping in the step's interpreter
    proc.send_signal(signal.SIGTERM)
    code, out = proc.finish()
    assert code == 143, out
    assert "nothing was tagged or cached" in out
    time.sleep(0.5)
    assert containers() <= before and not running("sleep(seconds)")

    # Built with a quick test, then only the test edited: it gets a container of its own.
    gardenfile = garden / "Gardenfile.toml"
    slow = gardenfile.read_text()
    gardenfile.write_text(slow.replace("seconds = 172 }\nexpected = 172", "seconds = 0 }\nexpected = 0"))
    code, out = Started("build", str(garden), "--base-image", base_image).finish(seconds=300)
    assert code == 0, out
    gardenfile.write_text(slow)
    proc = Started("build", str(garden), "--base-image", base_image)
    proc.wait_for("run 1 pipeline test case(s)")
    time.sleep(2)  # the test's container is up and sleeping
    proc.send_signal(signal.SIGTERM)
    code, out = proc.finish()
    assert code == 143, out
    assert containers() <= before

    # the image exists (image.json) although its test never finished: `run` can reach it
    proc = Started("run", str(garden), "nap", "--input", '{"seconds": 173}')
    time.sleep(3)  # the call's container is up (its output arrives only at the end)
    proc.send_signal(signal.SIGTERM)
    code, out = proc.finish()
    assert code == 143, out
    time.sleep(0.5)
    assert containers() <= before and not running("sleep(seconds)")


def test_kill_9_during_the_notebook_leaves_no_process_and_the_next_build_sweeps(base_image, build_cache, tmp_path):
    garden = sleeper(tmp_path, "k9", "notebook")
    before = containers()
    proc = Started("build", str(garden), "--base-image", base_image)
    proc.wait_for("k9")
    proc.kill()
    time.sleep(1)
    assert not running("time.sleep(171)")  # the notebook died with gardenbuild
    assert containers() - before  # buildah's container was left: only a later process can remove it
    assert scratch(build_cache)

    quick = write_garden(tmp_path / "quick", [HEADER + "@garden_pipeline\ndef one() -> int:\n    return 1\n"], ["one"],
                         name="ft-quick")
    code, out, err = cli("build", str(quick), "--base-image", base_image)
    assert code == 0, err
    assert "left by a gardenbuild process that died" in err
    assert containers() <= before and scratch(build_cache) == []


def test_a_cell_that_loops_past_the_notebook_limit_is_named(base_image, tmp_path):
    garden = write_garden(tmp_path / "loop", [HEADER + "@garden_pipeline\ndef one() -> int:\n    return 1\n",
                                              "while True:\n    pass\n"], ["one"], name="ft-loop",
                          tables="[limits]\nnotebook_seconds = 2\n")
    started = time.monotonic()
    code, out, err = cli("build", str(garden), "--base-image", base_image)
    assert code == 1 and time.monotonic() - started < 60
    assert error_of(err)[0] == ("error: model.ipynb cell 2 was still running when the notebook's time limit "
                                "of 2 s ran out")
    assert error_of(err)[-1].startswith("hint: raise notebook_seconds in the [limits] table of Gardenfile.toml")
    code, out, err = cli("build", str(garden), "--base-image", base_image, "--notebook-timeout", "1")
    assert code == 1 and "time limit of 1 s ran out" in err


def test_calls_past_their_limits_say_which_limit_and_wrong_input_names_the_parameter(base_image, tmp_path):
    cells = [HEADER + "@garden_pipeline\ndef hungry(megabytes: int) -> int:\n"
                      "    block = bytearray(megabytes * 2**20)\n    return len(block)\n\n"
                      "@garden_pipeline\ndef nap(seconds: float) -> float:\n    time.sleep(seconds)\n    return seconds\n"]
    garden = write_garden(tmp_path / "hungry", cells, ["hungry", "nap"], name="ft-hungry",
                          tables='[limits]\ncall_memory = "200MiB"\ncall_seconds = 30\n')
    code, out, err = cli("build", str(garden), "--base-image", base_image)
    assert code == 0, err
    code, out, err = cli("run", str(garden), "hungry", "--input", '{"megabytes": 10}')
    assert (code, out) == (0, f"{10 * 2**20}\n"), err
    code, out, err = cli("run", str(garden), "hungry", "--input", '{"megabytes": 600}')
    assert code == 1
    assert error_of(err)[0] == "error: pipeline 'hungry' used more than its memory limit of 200 MiB and was stopped"
    assert error_of(err)[1].startswith("hint: raise it with --memory SIZE")
    code, out, err = cli("run", str(garden), "hungry", "--input", '{"megabytes": 600}', "--memory", "1GiB")
    assert code == 0, err
    started = time.monotonic()
    code, out, err = cli("run", str(garden), "nap", "--input", '{"seconds": 60}', "--timeout", "2")
    assert code == 1 and time.monotonic() - started < 20
    assert error_of(err)[0] == "error: pipeline 'nap' ran past its time limit of 2 s and was stopped"
    code, out, err = cli("run", str(garden), "hungry", "--input", '{"megabytes": "lots"}')
    assert code == 2
    assert error_of(err)[0] == "error: pipeline 'hungry': parameter megabytes must be an integer, not \"lots\" (a string)"


def test_a_notebook_named_with_shell_syntax_builds_and_runs_nothing(base_image, tmp_path):
    garden = write_garden(tmp_path / "odd", [HEADER + "@garden_pipeline\ndef where() -> list:\n"
                                             "    return sorted(os.listdir('.'))\n"], ["where"], name="ft-odd")
    odd = "m`touch pwned`$(touch pwned2);touch pwned3.ipynb"
    (garden / "model.ipynb").rename(garden / odd)
    gardenfile = garden / "Gardenfile.toml"
    gardenfile.write_text(gardenfile.read_text().replace('notebook = "model.ipynb"', f"notebook = '{odd}'"))
    code, out, err = cli("build", str(garden), "--base-image", base_image)
    assert code == 0, err
    code, out, err = cli("run", str(garden), "where")
    assert code == 0, err
    assert json.loads(out) == [odd]  # the notebook alone: no file a shell would have made


def test_a_build_secret_reaches_the_notebook_and_nothing_else(base_image, build_cache, tmp_path):
    value = f"s3cr3t-{uuid.uuid4().hex}"
    cells = [HEADER + "TOKEN_LENGTH = len(os.environ['API_TOKEN'])\n\n"
                      "@garden_pipeline\ndef length() -> int:\n    return TOKEN_LENGTH\n"]
    garden = write_garden(tmp_path / "secret", cells, ["length"], name="ft-secret",
                          environment='secrets = ["API_TOKEN"]')
    code, out, err = cli("build", str(garden), "--base-image", base_image)
    assert code == 2 and "the notebook's secret API_TOKEN is not set in this environment" in err
    os.environ["API_TOKEN"] = value
    try:
        code, out, err = cli("-v", "build", str(garden), "--base-image", base_image, "--json")
        assert code == 0, err
        assert value not in out + err
        image = json.loads(out)["image"]
        code, out, err = cli("run", str(garden), "length")
        assert (code, out) == (0, f"{len(value)}\n")
        # nowhere: layers, image config and history, outputs, lock, cache, catalog
        backend = Buildah()
        layers = backend.export_layers(image, tmp_path / "layers")
        for path in layers.iterdir():
            if tarfile.is_tarfile(path):
                with tarfile.open(path) as tar:
                    for member in tar:
                        if member.isfile():
                            assert value.encode() not in tar.extractfile(member).read(), member.name
        assert value not in json.dumps(backend.inspect(image))
        for folder in (garden, build_cache, tmp_path / "data"):
            for path in folder.rglob("*"):
                if path.is_file():
                    assert value.encode() not in path.read_bytes(), path
        with sqlite3.connect(tmp_path / "data" / "catalog.sqlite") as db:
            assert value not in json.dumps(db.execute("SELECT * FROM builds").fetchall())

        # a notebook that keeps it in its state is refused, naming the variable
        kept = write_garden(tmp_path / "kept", [HEADER + "TOKEN = os.environ['API_TOKEN']\n\n"
                                                "@garden_pipeline\ndef length() -> int:\n    return len(TOKEN)\n"],
                            ["length"], name="ft-kept", environment='secrets = ["API_TOKEN"]')
        code, out, err = cli("build", str(kept), "--base-image", base_image)
        assert code == 1
        assert error_of(err)[0] == ("error: the notebook keeps the secret API_TOKEN in 'TOKEN', so its saved state "
                                    "would carry it into the image")
        assert "del TOKEN" in err and value not in err
    finally:
        del os.environ["API_TOKEN"]
