"""The registered shim on the real endpoint engine, with its workers inside a built image.

``GlobusComputeEngine`` (parsl's HighThroughputExecutor under it) runs on the host with
a ``LocalProvider`` and ``container_type="custom"``: each block of workers starts
through a launcher that does ``buildah run`` in a fresh container of the image, with the
engine's run dir mounted at the same path (certificates, logs, task folders) and the
host network (chroot isolation), so workers reach the interchange on 127.0.0.1. Tasks
carry the function code exactly as the SDK's Client posted it at registration.

The image is built FROM the locally bootstrapped Python base with
globus-compute-endpoint (the host's version) in the venv, the gardenbuild runtime, and
the simple notebook's session, laid out as `gardenbuild build` lays out a garden.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from gardenbuild.buildah import Buildah
from gardenbuild.deps import find_uv
from gardenbuild.digests import runtime_files
from gardenbuild.load import load
from gardenbuild.publish import globus
from gardenbuild.render import pipelines_config

pytestmark = pytest.mark.integration

BASE_IMAGE = os.environ.get("GARDENBUILD_TEST_BASE_IMAGE", "localhost/gardenbuild/python:3.11")
ENDPOINT_PIN = f"globus-compute-endpoint=={importlib.metadata.version('globus-compute-endpoint')}"
IMAGE_TAG = "localhost/gardenbuild-test/globus-worker:latest"
NOTEBOOKS = Path(__file__).parent / "fixtures" / "notebooks"

GARDENFILE = """\
notebook = "nb/simple.ipynb"

[garden]
name = "simple-garden"
title = "Simple test garden"
license = "MIT"

[[garden.authors]]
name = "Test Author"

[[pipeline]]
name = "double"

[[pipeline]]
name = "norm"

[[pipeline]]
name = "boom"
function = "explode"
"""

# As `gardenbuild build` makes a garden image (venv by uv from a host wheelhouse, no
# network; runtime on PYTHONPATH; session made in the image), plus the endpoint.
CONTAINERFILE = f"""\
FROM {BASE_IMAGE}
ENV SOURCE_DATE_EPOCH=0 LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 VIRTUAL_ENV=/opt/garden/venv \\
    PATH=/opt/garden/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN /opt/uv venv --no-config --quiet --python python3 /opt/garden/venv \\
 && /opt/uv pip install --no-config --quiet --offline --no-index --no-cache --find-links /wheels \\
      --python /opt/garden/venv/bin/python "{ENDPOINT_PIN}" \\
 && /opt/garden/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/garden/venv/lib
ENV PYTHONPATH=/opt/garden/lib
COPY runtime/ /opt/garden/lib/gardenbuild/
RUN python -m compileall -q --invalidation-mode unchecked-hash /opt/garden/lib
COPY src/ /garden/src/
COPY pipelines.json /garden/pipelines.json
WORKDIR /garden/src
RUN PYTHONHASHSEED=0 python -m gardenbuild.runtime.execute \\
      --notebook nb/simple.ipynb --config /garden/pipelines.json --out /garden
"""

# The engine's container_cmd_options: `LAUNCHER {EXECUTOR_RUNDIR} IMAGE PREFIX {EXECUTOR_LAUNCH_CMD}`.
# On TERM (the provider cancelling the block) the worker is stopped, then the container removed.
LAUNCHER = """\
#!/bin/bash
set -u
rundir=$1 image=$2 prefix=$3
shift 3
ctr=$(buildah from --pull=never --quiet --name "$prefix-$$" "$image") || exit 1
trap 'buildah rm "$ctr" >/dev/null 2>&1' EXIT
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
buildah run --isolation chroot -v "$rundir:$rundir" "$ctr" -- "$@" &
child=$!
wait "$child"
status=$?
wait "$child" 2>/dev/null
exit $status
"""


def _missing() -> str | None:
    if shutil.which("buildah") is None:
        return "buildah is not installed (apt-get install -y buildah)"
    proc = subprocess.run(["buildah", "inspect", "--type", "image", BASE_IMAGE], capture_output=True)
    if proc.returncode != 0:
        return f"base image {BASE_IMAGE} is missing (make it with: gardenbuild base bootstrap --python 3.11)"
    return None


@pytest.fixture(scope="module")
def buildah_ready() -> None:
    reason = _missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def wheelhouse(buildah_ready: None) -> Path:
    """Wheels of globus-compute-endpoint and its dependencies, fetched once (cached)."""
    from platformdirs import user_cache_path

    house = user_cache_path("gardenbuild") / "test-wheels" / ENDPOINT_PIN.replace("==", "-")
    if not (house / ".complete").exists():
        partial = house.with_name(house.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(partial), ENDPOINT_PIN]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (partial / ".complete").touch()
        shutil.rmtree(house, ignore_errors=True)
        partial.rename(house)
    return house


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> tuple[object, str]:
    """(garden, image ref by digest) of the test image."""
    root = tmp_path_factory.mktemp("garden")
    (root / "nb").mkdir()
    for name in ("simple.ipynb", "simple_helpers.py", "offset.txt"):
        (root / "nb" / name).write_bytes((NOTEBOOKS / name).read_bytes())
    (root / "Gardenfile.toml").write_text(GARDENFILE)
    garden = load(root)

    context = tmp_path_factory.mktemp("context")
    for rel, path in runtime_files():
        (context / "runtime" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, context / "runtime" / rel)
    for rel in garden.files:
        (context / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, context / "src" / rel)
    (context / "pipelines.json").write_text(pipelines_config(garden))
    (context / "Containerfile").write_text(CONTAINERFILE)

    buildah = Buildah()
    started = time.perf_counter()
    buildah.bud(context / "Containerfile", context, tag=IMAGE_TAG,
                volumes=[(wheelhouse, "/wheels", "ro"), (Path(find_uv()), "/opt/uv", "ro")])
    print(f"test image built in {time.perf_counter() - started:.1f} s")
    digest = buildah.inspect(IMAGE_TAG)["FromImageDigest"]
    return garden, f"{IMAGE_TAG.rsplit(':', 1)[0]}@{digest}"


def run_tasks(engine, function_code: str, calls: list[tuple[tuple, dict]]) -> list[tuple[bool, object]]:
    """Submit tasks as the service hands them to an endpoint (the registered function
    buffer, then the serialized arguments); return (ok, result or error text) each."""
    from globus_compute_common import messagepack
    from globus_compute_common.messagepack.message_types import Task
    from globus_compute_endpoint.engines.base import GCFuture
    from globus_compute_sdk.serialize import ComputeSerializer

    serde = ComputeSerializer()
    out = []
    for args, kwargs in calls:
        task_id = uuid.uuid4()
        buffer = function_code + serde.pack_buffers([serde.serialize(args), serde.serialize(kwargs)])
        future = GCFuture(gc_task_id=task_id)
        engine.submit(future, messagepack.pack(Task(task_id=task_id, task_buffer=buffer)), resource_specification={})
        result = messagepack.unpack(future.result(timeout=180))
        out.append((False, result.data) if result.is_error else (True, serde.deserialize(result.data)))
    return out


def _containers(prefix: str) -> list[str]:
    argv = ["buildah", "containers", "--format", "{{.ContainerName}}"]
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    return [name for name in out.split() if name.startswith(prefix)]


def test_registered_shim_runs_in_the_image_through_globus_compute_engine(image, tmp_path) -> None:
    from globus_compute_endpoint.engines import GlobusComputeEngine
    from parsl.providers import LocalProvider

    garden, ref = image
    _, requests = globus.register(garden, ref, dry_run=True)  # the bodies Client.register_function posts
    codes = {r["pipeline"]: r["body"]["function_code"] for r in requests}

    launcher = tmp_path / "launcher.sh"
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)
    prefix = f"gardenbuild-test-worker-{uuid.uuid4().hex[:8]}"
    engine = GlobusComputeEngine(
        address="127.0.0.1",
        max_workers_per_node=1,
        provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1),
        container_type="custom",
        container_cmd_options=f"{launcher} {{EXECUTOR_RUNDIR}} {ref} {prefix} {{EXECUTOR_LAUNCH_CMD}}",
        job_status_kwargs={"strategy_period": 0.5},  # start the block now, not after 5 s
    )
    started = time.perf_counter()
    engine.start(endpoint_id=uuid.uuid4(), run_dir=str(tmp_path / "endpoint"))
    try:
        first = run_tasks(engine, codes["double"], [(([1, 2.5],), {})])
        cold = time.perf_counter() - started
        t = time.perf_counter()
        warm = run_tasks(engine, codes["norm"], [((), {"v": [3, 4]})])
        warm_s = time.perf_counter() - t
        [(ok, error)] = run_tasks(engine, codes["boom"], [((0,), {})])
        assert _containers(prefix), "the workers did not run in a container of the image"
    finally:
        engine.shutdown()

    assert first == [(True, [2.0, 5.0])]
    assert warm == [(True, 5.5)]
    assert not ok and "ZeroDivisionError: division by zero" in error
    assert '<simple.ipynb cell 6>", line 2, in _helper' in error
    # the worker really was the image's Python, started by the launcher
    manager_logs = list((tmp_path / "endpoint").rglob("manager.log"))
    assert manager_logs and "Python version: 3.11" in manager_logs[0].read_text()
    deadline = time.monotonic() + 30
    while _containers(prefix) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _containers(prefix), "the launcher left its container behind"
    print(f"GlobusComputeEngine in image: engine start to first result {cold:.2f} s, warm call {warm_s * 1000:.1f} ms")
