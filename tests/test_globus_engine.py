"""A garden built by gardenbuild for Globus Compute, its registered shim run on the real
endpoint engine with the workers inside the garden's image.

``tests/fixtures/gardens/globus_garden`` (``[publish] globus = true``) is built with
``gardenbuild build``, so the image holds ``globus-compute-endpoint`` from the garden's own
lock. Its pipeline is registered with the real ``globus_compute_sdk.Client`` against HTTP
mocked by ``responses``; the function code is taken from the request body as posted.

``GlobusComputeEngine`` (parsl's HighThroughputExecutor under it) runs on the host with a
``LocalProvider`` and ``container_type="custom"``: each block of workers starts through a
launcher that does ``buildah run`` in a fresh container of the garden's image, with the
engine's run dir mounted at the same path (certificates, logs, task folders) and the host
network (chroot isolation), so workers reach the interchange on 127.0.0.1. The result must
be what ``gardenbuild run`` returns.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from gardenbuild.backends.buildah import Buildah
from gardenbuild.cli import main
from gardenbuild.manifest.load import load
from gardenbuild.publish import globus

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parent / "fixtures" / "gardens" / "globus_garden"
INPUT = {"x": [1.0, 2.5, -4.0]}

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


def cli(*args: str) -> str:
    """``gardenbuild ARGS`` in-process; its stdout (the command must succeed)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    assert code == 0, err.getvalue()
    return out.getvalue()


@pytest.fixture(scope="module")
def built(base_image: str, build_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, object]:
    """The fixture garden built on a tmp copy: (folder, image ref by digest, `gardenbuild run` result)."""
    folder = tmp_path_factory.mktemp("gardens") / "globus_garden"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns(".gardenbuild", ".ipynb_checkpoints"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GARDENBUILD_CACHE", str(build_cache))
        mp.delenv("GARDENBUILD_BASE_IMAGE", raising=False)
        started = time.perf_counter()
        cli("build", str(folder), "--base-image", base_image, "--json")
        print(f"globus_garden built in {time.perf_counter() - started:.1f} s")
        expected = json.loads(cli("run", str(folder), "scale", "--input", json.dumps(INPUT), "--json"))["result"]
    tag = json.loads((folder / ".gardenbuild" / "build.json").read_text())["image"]
    ref = f"{tag.rsplit(':', 1)[0]}@{Buildah().digest(tag)}"
    return folder, ref, expected


@pytest.fixture
def http(monkeypatch):
    """Every HTTP request of globus-sdk goes to `responses`; unmatched ones fail."""
    import responses
    from globus_sdk.transport import RequestsTransport

    monkeypatch.setattr(RequestsTransport, "_retry_sleep", lambda self, config, ctx: None)
    responses.start()
    yield responses
    responses.stop()
    responses.reset()


def run_tasks(engine, function_code: str, calls: list[dict]) -> list[tuple[bool, object]]:
    """Submit tasks as the service hands them to an endpoint (the registered function
    code, then the serialized arguments); return (ok, result or error text) each."""
    from globus_compute_common import messagepack
    from globus_compute_common.messagepack.message_types import Task
    from globus_compute_endpoint.engines.base import GCFuture
    from globus_compute_sdk.serialize import ComputeSerializer

    serde = ComputeSerializer()
    out = []
    for kwargs in calls:
        task_id = uuid.uuid4()
        buffer = function_code + serde.pack_buffers([serde.serialize(()), serde.serialize(kwargs)])
        future = GCFuture(gc_task_id=task_id)
        engine.submit(future, messagepack.pack(Task(task_id=task_id, task_buffer=buffer)), resource_specification={})
        result = messagepack.unpack(future.result(timeout=180))
        out.append((False, result.data) if result.is_error else (True, serde.deserialize(result.data)))
    return out


def start_engine(tmp_path: Path, ref: str, endpoint: str):
    """The real endpoint engine on this host, one block of one worker, the worker started by
    LAUNCHER in a fresh container of ``ref``: (engine, the containers' name prefix)."""
    from globus_compute_endpoint.engines import GlobusComputeEngine
    from parsl.providers import LocalProvider

    launcher = tmp_path / "launcher.sh"
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)
    prefix = f"gardenbuild-test-worker-{uuid.uuid4().hex[:8]}"
    engine = GlobusComputeEngine(
        address="127.0.0.1", max_workers_per_node=1, provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1),
        container_type="custom", job_status_kwargs={"strategy_period": 0.5},  # start the block now, not after 5 s
        container_cmd_options=f"{launcher} {{EXECUTOR_RUNDIR}} {ref} {prefix} {{EXECUTOR_LAUNCH_CMD}}")
    engine.start(endpoint_id=uuid.UUID(endpoint), run_dir=str(tmp_path / "endpoint"))
    return engine, prefix


def register_scale(folder: Path, ref: str, http) -> tuple[str, str]:
    """The fixture's pipeline registered with the real Client (the service mocked): its
    function id, and the function code as posted."""
    import globus_sdk
    from globus_compute_sdk import Client
    from globus_compute_sdk.serialize import PureSourceTextInspect
    from globus_sdk.testing import RegisteredResponse

    function_id = str(uuid.uuid4())
    RegisteredResponse(service="compute", path="/v3/functions", method="POST",
                       json={"function_uuid": function_id}).add()
    client = Client(authorizer=globus_sdk.NullAuthorizer(), do_version_check=False,
                    code_serialization_strategy=PureSourceTextInspect())
    globus.register(load(folder), ref, client=client)
    return function_id, json.loads(http.calls[-1].request.body)["function_code"]


def stop_executors() -> None:
    """The SDK Executors `remote` made, and their result watchers, stopped before the broker
    and the HTTP mocks are."""
    from globus_compute_sdk.sdk.executor import _RESULT_WATCHERS

    from gardenbuild.consumer import remote

    for executor in remote._EXECUTORS.values():
        executor.shutdown(wait=True, cancel_futures=True)
    remote._EXECUTORS.clear()
    for watcher in list(_RESULT_WATCHERS.values()):
        watcher.shutdown(wait=True)


def _containers(prefix: str) -> list[str]:
    argv = ["buildah", "containers", "--format", "{{.ContainerName}}"]
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    return [name for name in out.split() if name.startswith(prefix)]


@pytest.fixture
def endpoint_tools_on_path(monkeypatch):
    """The engine starts its interchange as `globus-compute-endpoint python-exec ...`, found
    on PATH as on any endpoint host; here it is the console script installed beside the
    interpreter running the tests, which a shell that never activated the venv lacks."""
    bindir = Path(sys.executable).parent
    if not (bindir / "globus-compute-endpoint").is_file():
        pytest.fail(f"globus-compute-endpoint is not installed beside {sys.executable}; run scripts/setup.sh")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")


def test_built_garden_runs_on_globus_compute_engine(built, http, tmp_path, endpoint_tools_on_path) -> None:
    import globus_sdk
    from globus_compute_sdk import Client
    from globus_compute_sdk.serialize import ComputeSerializer, PureSourceTextInspect
    from globus_sdk.testing import RegisteredResponse

    folder, ref, expected = built
    assert expected == [3.0, 7.5, -12.0]  # FACTOR (a notebook global) * x, as `gardenbuild run` gives it

    # register with the real Client; the code is what it posted
    function_id = str(uuid.uuid4())
    RegisteredResponse(service="compute", path="/v3/functions", method="POST",
                       json={"function_uuid": function_id}).add()
    client = Client(authorizer=globus_sdk.NullAuthorizer(), do_version_check=False,
                    code_serialization_strategy=PureSourceTextInspect())
    ids, _ = globus.register(load(folder), ref, client=client)
    assert ids == {"scale": function_id}
    [body] = [json.loads(c.request.body) for c in http.calls if c.request.url.endswith("/v3/functions")]
    code = body["function_code"]
    [buffer] = ComputeSerializer.unpack_buffers(code)
    shim = ComputeSerializer().deserialize(buffer)
    assert shim.__name__ == "scale" and ref in shim.__doc__

    started = time.perf_counter()
    engine, prefix = start_engine(tmp_path, ref, str(uuid.uuid4()))
    try:
        first = run_tasks(engine, code, [INPUT])
        cold = time.perf_counter() - started
        t = time.perf_counter()
        [(ok, error), (typed, wrong)] = run_tasks(engine, code, [{"x": []}, {"x": ["a"]}])
        warm_s = time.perf_counter() - t
        assert _containers(prefix), "the workers did not run in a container of the image"
    finally:
        engine.shutdown()

    assert first == [(True, expected)]  # the shim finds /garden/session.pkl only inside the image
    assert not ok and "ValueError: x is empty" in error
    assert '<scale.ipynb cell 2>", line 5, in scale' in error  # the notebook's own traceback
    assert not typed and "parameter x[0] must be a number, not \"a\" (a string)" in wrong  # checked before the call
    manager_logs = list((tmp_path / "endpoint").rglob("manager.log"))
    assert manager_logs and "Python version: 3.11" in manager_logs[0].read_text()
    deadline = time.monotonic() + 30
    while _containers(prefix) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _containers(prefix), "the launcher left its container behind"
    print(f"GlobusComputeEngine in image: engine start to first result {cold:.2f} s, warm call {warm_s * 1000:.1f} ms")


# ---- a consumer's remote call, end to end -------------------------------------------------

@pytest.fixture
def rabbitmq(tmp_path):
    """A real AMQP broker on loopback, where the Globus Compute web service keeps task results
    for the SDK's Executor to read. (RabbitMQ from Debian, started as a private node.)"""
    from helpers import free_ports

    server = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
    if not server.is_file():
        pytest.fail("rabbitmq-server is not installed; run scripts/setup.sh")
    home = tmp_path / "rabbitmq"
    home.mkdir()
    (home / "enabled_plugins").write_text("[].\n")
    (home / "rabbitmq.conf").write_text("")
    port, epmd, dist = free_ports(3)  # three different ports (one at a time, two could be the same)
    env = {**os.environ, "HOME": str(home), "RABBITMQ_NODENAME": f"gardenbuild-test-{port}@localhost",
           "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(port),
           "RABBITMQ_DIST_PORT": str(dist), "ERL_EPMD_PORT": str(epmd),
           "ERL_CRASH_DUMP": str(home / "erl_crash.dump"),  # a failed start writes it here, not into the checkout
           "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
           **{f"RABBITMQ_{k}": str(home / k.lower()) for k in ("MNESIA_BASE", "LOG_BASE", "FEATURE_FLAGS_FILE",
                                                                "PLUGINS_EXPAND_DIR", "QUORUM_DIR", "STREAM_DIR")}}
    proc = subprocess.Popen([str(server)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    url = f"amqp://guest:guest@127.0.0.1:{port}/"
    import pika

    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                pika.BlockingConnection(pika.URLParameters(url)).close()
                break
            except pika.exceptions.AMQPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    logs = "".join(p.read_text(errors="replace")[-1500:] for p in (home / "log_base").glob("*.log"))
                    pytest.fail(f"rabbitmq did not start within 60 s: {logs}")
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["epmd", "-kill"], env=env, capture_output=True)


def test_a_consumer_calls_the_garden_remotely_through_the_sdk_executor(built, http, rabbitmq, tmp_path,
                                                                       endpoint_tools_on_path, monkeypatch) -> None:
    """`g.scale.submit(...)` on a loaded garden: the SDK's real Executor posts the task (the
    service at the HTTP layer), the test does what the service does (hands the task to the
    real endpoint engine, whose workers run in the garden's image, and puts the result on
    the task group's queue of a real RabbitMQ), and the Executor's result watcher completes
    the Future with the JSON result, as `gardenbuild run` gives it."""
    import globus_sdk
    import pika
    from globus_compute_common import messagepack
    from globus_compute_common.messagepack.message_types import Task
    from globus_compute_endpoint.engines.base import GCFuture
    from globus_compute_sdk import Client
    from globus_sdk.testing import RegisteredResponse

    import gardenbuild
    from gardenbuild.consumer import remote

    folder, ref, expected = built
    endpoint, group, task_id = (str(uuid.uuid4()) for _ in range(3))
    function_id, code = register_scale(folder, ref, http)

    RegisteredResponse(service="compute", path=f"/v3/endpoints/{endpoint}/submit", method="POST", json={
        "request_id": str(uuid.uuid4()), "task_group_id": group, "endpoint_id": endpoint,
        "tasks": {function_id: [task_id]}}).add()
    RegisteredResponse(service="compute", path="/v2/get_amqp_result_connection_url", method="GET",
                       json={"connection_url": rabbitmq, "queue_prefix": "gardenbuild-test."}).add()
    broker = pika.BlockingConnection(pika.URLParameters(rabbitmq))
    channel = broker.channel()
    channel.queue_declare(queue=f"gardenbuild-test.{group}")  # the service makes the task group's queue

    g = gardenbuild.load(str(folder))
    g._resolved.image_ref, g._resolved.function_ids = ref, {"scale": function_id}  # what publish --globus records
    monkeypatch.setattr(remote, "logged_in_client", lambda: Client(authorizer=globus_sdk.NullAuthorizer(), do_version_check=False))
    future = g.scale.submit(x=INPUT["x"], endpoint=endpoint, container_type="podman")
    deadline = time.monotonic() + 30
    while not any(c.request.url.endswith("/submit") for c in http.calls):
        assert time.monotonic() < deadline, "the Executor sent no task"
        time.sleep(0.1)
    body = json.loads(next(c for c in http.calls if c.request.url.endswith("/submit")).request.body)
    assert body["user_endpoint_config"]["container_uri"] == ref  # the pinned image, as publish recorded it
    assert body["result_serializers"] == ["globus_compute_sdk.serialize.concretes.JSONData"]
    [args_buffer] = body["tasks"][function_id]

    engine, _ = start_engine(tmp_path, ref, endpoint)
    try:
        done = GCFuture(gc_task_id=uuid.UUID(task_id))
        engine.submit(done, messagepack.pack(Task(task_id=uuid.UUID(task_id), task_buffer=code + args_buffer)),
                      resource_specification={}, result_serializers=body["result_serializers"])
        packed = done.result(timeout=180)
    finally:
        engine.shutdown()
    channel.basic_publish(exchange="", routing_key=f"gardenbuild-test.{group}", body=packed)
    broker.close()
    try:
        assert remote.wait(future, "scale", timeout=60) == expected == [3.0, 7.5, -12.0]
    finally:
        stop_executors()


# ---- a hub benched on an endpoint -----------------------------------------------------------------

def test_a_hub_benches_its_member_on_an_endpoint(built, http, rabbitmq, tmp_path, endpoint_tools_on_path,
                                                 monkeypatch, base_image, build_cache) -> None:
    """`gardenbuild bench HUB --endpoint UUID`: the member's registered function is called
    through the SDK's Executor, every batch submitted at once; the test plays the service (each
    submitted task handed to the real endpoint engine, whose workers run in the garden's image;
    each result put on the task group's queue of a real RabbitMQ). The score equals one
    computed here from the same numbers; a second bench submits nothing."""
    import hashlib
    import threading

    import globus_sdk
    import numpy as np
    import pika
    from globus_compute_common import messagepack
    from globus_compute_common.messagepack.message_types import Task
    from globus_compute_endpoint.engines.base import GCFuture
    from globus_compute_sdk import Client
    from globus_sdk.testing import RegisteredResponse

    from gardenbuild.catalog import Catalog
    from gardenbuild.consumer import remote

    monkeypatch.setenv("GARDENBUILD_CACHE", str(build_cache))
    folder, ref, _ = built
    endpoint = str(uuid.uuid4())
    function_id, code = register_scale(folder, ref, http)
    summary = json.loads((folder / ".gardenbuild" / "build.json").read_text())
    catalog = Catalog()  # what `publish --globus --registry` records for this build
    pub = catalog.publication("it-globus", "0.1.0", summary["image_id"])
    pub.image_ref, pub.function_ids = ref, {"scale": function_id}
    catalog.save(pub)

    data = {"x": [1.0, 2.5, -4.0, 0.5], "y": [3.2, 7.5, -11.8, 1.4]}
    hub = tmp_path / "hub"
    hub.mkdir()
    raw = json.dumps(data).encode()
    (hub / "data.json").write_bytes(raw)
    (hub / "Hubfile.toml").write_text(
        f'[hub]\nname = "scaling"\ntitle = "Scaling"\n[contract]\npipeline = "scale"\ninput = "x"\n'
        f'[data]\nfile = "data.json"\nsha256 = "{hashlib.sha256(raw).hexdigest()}"\ninput = "x"\nreference = "y"\n'
        f'batch = 2\n[[metric]]\nname = "mae"\n[[metric]]\nname = "rmse"\n[[member]]\nref = "{folder}"\nname = "scale"\n')

    engine, _ = start_engine(tmp_path, ref, endpoint)

    submitted: list[dict] = []
    workers: list[threading.Thread] = []

    def run_and_deliver(task_id: str, buffer: str, group: str, serializers: list[str]) -> None:
        done = GCFuture(gc_task_id=uuid.UUID(task_id))
        engine.submit(done, messagepack.pack(Task(task_id=uuid.UUID(task_id), task_buffer=code + buffer)),
                      resource_specification={}, result_serializers=serializers)
        packed = done.result(timeout=180)
        connection = pika.BlockingConnection(pika.URLParameters(rabbitmq))
        connection.channel().basic_publish(exchange="", routing_key=f"gardenbuild-test.{group}", body=packed)
        connection.close()

    def submit(request):  # the service: a task id per task, each run on the endpoint, its result queued
        body = json.loads(request.body)
        submitted.append(body)
        group = body.get("task_group_id") or str(uuid.uuid4())
        connection = pika.BlockingConnection(pika.URLParameters(rabbitmq))
        connection.channel().queue_declare(queue=f"gardenbuild-test.{group}")
        connection.close()
        tasks = {fid: [str(uuid.uuid4()) for _ in buffers] for fid, buffers in body["tasks"].items()}
        for fid, buffers in body["tasks"].items():
            for task_id, buffer in zip(tasks[fid], buffers):
                workers.append(threading.Thread(target=run_and_deliver, daemon=True,
                                                args=(task_id, buffer, group, body["result_serializers"])))
                workers[-1].start()
        return 200, {}, json.dumps({"request_id": str(uuid.uuid4()), "task_group_id": group,
                                    "endpoint_id": endpoint, "tasks": tasks})

    base = globus_sdk.config.get_service_url("compute").rstrip("/")
    http.add_callback(http.POST, f"{base}/v3/endpoints/{endpoint}/submit", callback=submit,
                      content_type="application/json")
    RegisteredResponse(service="compute", path="/v2/get_amqp_result_connection_url", method="GET",
                       json={"connection_url": rabbitmq, "queue_prefix": "gardenbuild-test."}).add()
    monkeypatch.setattr(remote, "logged_in_client",
                        lambda: Client(authorizer=globus_sdk.NullAuthorizer(), do_version_check=False))
    try:
        out = json.loads(cli("bench", str(hub), "--endpoint", endpoint, "--container-type", "podman",
                             "--base-image", base_image, "--json"))
        again = json.loads(cli("bench", str(hub), "--endpoint", endpoint, "--container-type", "podman",
                               "--base-image", base_image, "--json"))
    finally:
        stop_executors()
        engine.shutdown()
        for worker in workers:
            worker.join(timeout=60)

    [score] = out["scores"]
    assert score["error"] is None, score["error"]
    predicted, reference = 3.0 * np.array(data["x"]), np.array(data["y"])
    assert score["metrics"] == pytest.approx({"mae": np.mean(np.abs(predicted - reference)),
                                              "rmse": np.sqrt(np.mean((predicted - reference) ** 2))}, abs=1e-6)
    tasks = [buffer for body in submitted for buffer in body["tasks"][function_id]]
    assert len(tasks) == 2, "one task per batch of two inputs"
    assert {body["user_endpoint_config"]["container_uri"] for body in submitted} == {ref}  # the pinned image
    assert {body["user_endpoint_config"]["container_type"] for body in submitted} == {"podman"}
    [cached] = again["scores"]
    assert cached["cached"] and cached["metrics"] == score["metrics"]
    assert len([buffer for body in submitted for buffer in body["tasks"][function_id]]) == 2, "nothing resubmitted"
