"""Serving for real: `gardenbuild serve` runs the server inside the built image, and these
tests speak HTTP to it on loopback: every route, every error code, a runaway call, a full
queue, SIGTERM in the middle of a call, concurrent clients, the warm path of `run` and
`test`, usage in the catalog, and the image's own command started as a platform would."""

from __future__ import annotations

import http.client as httpc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from helpers import cli, copy_garden, free_port, write_garden

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 3  # the time limit of one call in the servers below, seconds
LOAD_SECONDS = 2.0  # loading the test garden's session takes this long: the server is seen starting

CELLS = [
    "import time\n\nfrom gardenbuild import garden_pipeline\n",
    # An object that takes LOAD_SECONDS to unpickle: loading the session is slow, as a big model's is.
    f"class SlowToLoad:\n    def __reduce__(self):\n        return (time.sleep, ({LOAD_SECONDS},))\n\n"
    "SLOW = SlowToLoad()\n",
    '@garden_pipeline\ndef echo(text: str, times: int = 1) -> list[str]:\n    """Repeat `text`.\n\n'
    '    Says it `times` times.\n    """\n    return [text] * times\n',
    '@garden_pipeline\ndef boom(message: str = "kaboom") -> None:\n    """Always raises."""\n'
    "    raise RuntimeError(message)\n",
    '@garden_pipeline\ndef nap(seconds: float) -> float:\n    """Sleeps, then says how long."""\n'
    "    time.sleep(seconds)\n    return seconds\n",
]
TABLES = """
[[pipeline]]
name = "echo"
description = "Repeats a text."

[[pipeline.test]]
input = { text = "hi", times = 2 }
expected = ["hi", "hi"]

[[pipeline]]
name = "boom"

[[pipeline]]
name = "nap"
"""


# ---------------------------------------------------------------- helpers


def http(url: str, method: str, path: str, body: bytes | None = None, *, headers: dict | None = None,
         timeout: float = 30, conn: httpc.HTTPConnection | None = None):
    """(status, headers, JSON or text) of one request; on `conn` when given (kept open)."""
    own = conn is None
    if own:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        conn = httpc.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body, {"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
    finally:
        if own:
            conn.close()
    kind = response.getheader("Content-Type") or ""
    value = json.loads(data) if kind.startswith("application/json") else data.decode()
    return response.status, dict(response.getheaders()), value


def post(url: str, pipeline: str, payload, **kw):
    return http(url, "POST", f"/pipelines/{pipeline}", json.dumps(payload).encode(), **kw)


def raw(port: int, data: bytes, timeout: float = 15) -> bytes:
    """Send `data` as it is; everything the server answers until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def error_of(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head
    return int(head.split()[1]), json.loads(body)


def metric(url: str, pipeline: str) -> dict:
    status, _, body = http(url, "GET", "/metrics?format=json")
    assert status == 200
    return body["pipelines"][pipeline]


@pytest.fixture(scope="module")
def env(build_cache, tmp_path_factory):
    """This module's cache, catalog and run folder (where servers leave their state files),
    for the commands run in-process and for those run as processes."""
    root = tmp_path_factory.mktemp("serve-env")
    values = {"GARDENBUILD_CACHE": str(build_cache), "GARDENBUILD_DATA": str(root / "data"),
              "GARDENBUILD_RUN_DIR": str(root / "run")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in values.items():
            mp.setenv(key, value)
        mp.delenv("GARDENBUILD_BASE_IMAGE", raising=False)
        mp.delenv("GARDENBUILD_NO_USAGE", raising=False)
        yield {**os.environ}


@pytest.fixture(autouse=True)
def _same_env(env, monkeypatch):
    for key in ("GARDENBUILD_CACHE", "GARDENBUILD_DATA", "GARDENBUILD_RUN_DIR"):
        monkeypatch.setenv(key, env[key])


def gardenbuild(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gardenbuild", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def detach(env: dict, garden: Path, *args: str) -> dict:
    done = gardenbuild(env, "serve", str(garden), "--port", "0", "--detach", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def garden(base_image, env, tmp_path_factory):
    """The test garden (echo, boom, nap; a session slow to load), built."""
    folder = write_garden(tmp_path_factory.mktemp("serve") / "served", CELLS, [], name="it-served", tables=TABLES)
    code, out, err = cli("build", str(folder), "--base-image", base_image, "--json")
    assert code == 0, err
    return folder, json.loads(out)


@pytest.fixture(scope="module")
def server(garden, env):
    """The test garden served in the background: two workers, a short time limit."""
    folder, _ = garden
    started = detach(env, folder, "--workers", "2", "--timeout", str(TIMEOUT))
    yield started
    gardenbuild(env, "serve", "--stop", str(started["port"]))


# ---------------------------------------------------------------- routes


def test_health_says_ready_with_the_gardens_name_version_and_digest(server, garden):
    _, summary = garden
    url = server["url"]
    assert url.startswith("http://127.0.0.1:")
    assert http(url, "GET", "/livez")[::2] == (200, {"status": "live"})
    assert http(url, "GET", "/readyz")[::2] == (200, {"status": "ready"})
    status, _, health = http(url, "GET", "/health")
    assert status == 200
    assert health["status"] == "ready" and health["garden"] == "it-served" and health["workers"] == 2
    assert health["image_digest"] == summary["digest"] and health["image_digest"].startswith("sha256:")
    assert health["pipelines"] == ["echo", "boom", "nap"]


def test_the_front_page_names_the_garden_and_links_the_openapi(server):
    status, headers, page = http(server["url"], "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "<title>Test garden it-served</title>" in page
    assert "POST /pipelines/echo" in page and "Repeats a text." in page and "href='/openapi.json'" in page


def test_the_openapi_document_is_valid_and_carries_docstrings_and_test_cases(server):
    status, _, doc = http(server["url"], "GET", "/openapi.json")
    assert status == 200
    validate(doc)
    echo = doc["paths"]["/pipelines/echo"]["post"]
    assert echo["summary"] == "Repeat `text`." and "Says it `times` times." in echo["description"]
    assert "echo(text: str, times: int = 1) -> list[str]" in echo["description"]
    body = doc["components"]["schemas"]["echo.input"]
    assert body["properties"] == {"text": {"type": "string"}, "times": {"type": "integer", "default": 1}}
    example = echo["requestBody"]["content"]["application/json"]["examples"]["test-1"]["value"]
    assert example == {"text": "hi", "times": 2}
    assert doc["components"]["schemas"]["nap.input"]["properties"]["seconds"] == {"type": "number"}


def test_a_call_and_a_batch(server):
    url = server["url"]
    status, _, body = post(url, "echo", {"text": "hi", "times": 2})
    assert status == 200 and body["output"] == ["hi", "hi"]
    assert set(body["timings"]) == {"call_s", "queue_s", "total_s"}
    status, _, body = post(url + "", "echo/batch", [{"text": "a"}, {"text": "b", "times": 2}])
    assert status == 200 and body["outputs"] == [["a"], ["b", "b"]]


def test_one_connection_carries_many_requests(server):
    host, port = server["url"].removeprefix("http://").rsplit(":", 1)
    conn = httpc.HTTPConnection(host, int(port), timeout=10)
    try:
        for i in range(5):
            status, headers, body = post(server["url"], "echo", {"text": str(i)}, conn=conn)
            assert status == 200 and body["output"] == [str(i)] and headers["Connection"] == "keep-alive"
        assert http(server["url"], "GET", "/livez", conn=conn)[0] == 200
    finally:
        conn.close()


@pytest.mark.parametrize("method, path, body, status, kind", [
    ("POST", "/pipelines/echo", b"{not json", 400, "bad-json"),
    ("POST", "/pipelines/nope", b"{}", 404, "no-such-pipeline"),
    ("GET", "/nowhere", None, 404, "not-found"),
    ("GET", "/pipelines/echo", None, 405, "method-not-allowed"),
    ("DELETE", "/health", None, 405, "method-not-allowed"),
    ("POST", "/pipelines/echo", b"[1, 2]", 422, "invalid-input"),
    ("POST", "/pipelines/echo/batch", b'{"text": "a"}', 422, "invalid-input"),
])
def test_errors_are_json_with_a_type_and_a_message(server, method, path, body, status, kind):
    got, headers, answer = http(server["url"], method, path, body)
    assert (got, answer["error"]["type"]) == (status, kind), answer
    assert headers["Content-Type"] == "application/json" and answer["error"]["message"]
    if status == 405:
        assert headers["Allow"] in ("GET", "POST")
    if kind == "no-such-pipeline":
        assert "echo, boom, nap" in answer["error"]["message"]


@pytest.mark.parametrize("payload, parameter", [
    ({"text": 3}, "text"),
    ({"times": 2}, "text"),
    ({"text": "a", "tims": 2}, "tims"),
])
def test_input_that_does_not_fit_the_signature_is_422_naming_the_parameter(server, payload, parameter):
    status, _, body = post(server["url"], "echo", payload)
    assert status == 422 and body["error"]["parameter"] == parameter, body


def test_a_bad_item_of_a_batch_is_named_by_its_index(server):
    status, _, body = post(server["url"], "echo/batch", [{"text": "a"}, {"text": 5}])
    assert status == 422 and body["error"]["index"] == 1 and body["error"]["parameter"] == "text"


def test_a_malformed_request_line_is_400_and_the_connection_closes(server):
    status, body = error_of(raw(server["port"], b"NONSENSE\r\n\r\n"))
    assert status == 400 and body["error"]["type"] == "bad-request"


def test_a_chunked_body_is_411(server):
    request = (b"POST /pipelines/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"d\r\n{\"text\": \"a\"}\r\n0\r\n\r\n")
    status, body = error_of(raw(server["port"], request))
    assert status == 411 and "Content-Length" in body["error"]["message"]


def test_a_20_mib_body_is_413_and_the_client_reads_the_answer(server):
    big = b'{"text": "' + b"x" * (20 * 2**20) + b'"}'
    began = time.monotonic()
    status, _, body = http(server["url"], "POST", "/pipelines/echo", big)
    assert status == 413 and body["error"]["limit"] == 16 * 2**20
    assert time.monotonic() - began < 20
    assert post(server["url"], "echo", {"text": "after"})[0] == 200


def test_a_pipeline_that_raises_is_500_with_its_exception_and_traceback(server):
    status, _, body = post(server["url"], "boom", {"message": "no luck"})
    assert status == 500
    error = body["error"]
    assert error["type"] == "pipeline-exception" and error["exception"] == "RuntimeError"
    assert "no luck" in error["message"] and "raise RuntimeError(message)" in error["traceback"]


def test_a_call_past_the_time_limit_is_504_and_the_worker_is_replaced(server):
    url = server["url"]
    before = metric(url, "nap")
    began = time.monotonic()
    status, _, body = post(url, "nap", {"seconds": 60}, timeout=30)
    took = time.monotonic() - began
    assert status == 504 and body["error"]["type"] == "timeout" and body["error"]["limit"] == TIMEOUT
    assert TIMEOUT <= took < TIMEOUT + 5
    for _ in range(4):  # both workers answer again (the one that timed out was forked anew)
        assert post(url, "nap", {"seconds": 0.01})[0] == 200
    after = metric(url, "nap")
    assert after["errors"] == before["errors"] + 1 and after["calls"] == before["calls"] + 5


def test_metrics_count_calls_errors_and_latency(server):
    url = server["url"]
    before = metric(url, "echo")
    for _ in range(3):
        post(url, "echo", {"text": "m"})
    post(url, "echo", {"text": 1})  # refused: an error of the pipeline's
    after = metric(url, "echo")
    assert (after["calls"] - before["calls"], after["errors"] - before["errors"]) == (4, 1)
    status, headers, text = http(url, "GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert f'garden_pipeline_calls_total{{pipeline="echo"}} {after["calls"]}' in text
    assert 'garden_pipeline_duration_seconds_bucket{pipeline="echo",le="+Inf"}' in text
    assert "garden_ready 1" in text


def test_concurrent_clients_are_all_answered(server):
    url, answers, failures = server["url"], [], []

    def client(n: int) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        conn = httpc.HTTPConnection(host, int(port), timeout=30)
        try:
            for i in range(25):
                status, _, body = post(url, "echo", {"text": f"{n}-{i}"}, conn=conn)
                answers.append((status, body.get("output") == [f"{n}-{i}"]))
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(repr(exc))
        finally:
            conn.close()

    began = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures and not any(t.is_alive() for t in threads)
    assert answers == [(200, True)] * 200
    assert time.monotonic() - began < 60


# ---------------------------------------------------------------- run and test use the server


def test_run_and_test_use_the_running_server_and_say_so(server, garden):
    folder, _ = garden
    code, out, err = cli("run", str(folder), "echo", "--input", '{"text": "w"}', "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["result"] == ["w"]
    assert answer["timings"]["warm"] is True and answer["timings"]["server"] == server["url"]
    code, out, err = cli("test", str(folder), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["warm"] is True and report["server"] == server["url"] and report["failed"] == 0
    code, out, err = cli("run", str(folder), "echo", "--input", '{"text": "c"}', "--json", "--cold")
    assert code == 0, err
    cold = json.loads(out)
    assert cold["result"] == ["c"] and "warm" not in cold["timings"] and cold["timings"]["container_s"] > 0


def test_run_through_the_server_fails_as_it_does_in_a_container(server, garden):
    folder, _ = garden
    code, _, err = cli("run", str(folder), "boom")
    assert code != 0 and "raised RuntimeError" in err and "Traceback" not in err.split("raised RuntimeError")[0]
    code, _, err = cli("run", str(folder), "echo", "--input", '{"text": 1}')
    assert code == 2 and "text" in err


def test_the_server_list_shows_it(server, env):
    done = gardenbuild(env, "serve", "--list", "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)["servers"]
    assert [s["port"] for s in listed] == [server["port"]] and listed[0]["garden"] == "it-served"


# ---------------------------------------------------------------- the image on its own


def test_the_image_serves_on_port_by_its_own_command(garden):
    """What Kubernetes or `podman run -p 8080:8080` would do: the image's command and $PORT."""
    from gardenbuild.backends.buildah import Buildah

    _, summary = garden
    b = Buildah()
    config = b.inspect(summary["image"])["OCIv1"]["config"]
    assert config["Cmd"][-2:] == ["-m", "gardenbuild.runtime.serve"]
    assert "PORT=8080" in config["Env"] and "8080/tcp" in config["ExposedPorts"]
    assert config["Labels"]["dev.gardenbuild.serve.port"] == "8080"
    assert config["Labels"]["dev.gardenbuild.serve.api"] == "1"
    port = free_port()
    running = b.start(summary["image"], config["Cmd"], env={"PORT": str(port)}, network="host",
                      stdout=subprocess.DEVNULL)
    try:
        url, deadline, ready = f"http://127.0.0.1:{port}", time.monotonic() + 60, None
        while time.monotonic() < deadline and ready != 200:
            try:
                ready = http(url, "GET", "/readyz", timeout=2)[0]
            except OSError:
                time.sleep(0.1)
        assert ready == 200
        assert post(url, "echo", {"text": "elsewhere"})[2]["output"] == ["elsewhere"]
        servers = [pid for pid in running.descendants()
                   if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:3] == [b"-m", b"gardenbuild.runtime.serve"]
                   and Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"/opt/garden/venv/bin/python")]
        assert servers, "the server's processes were not found"
        for pid in servers:  # started as root, it serves as nobody
            uids = next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("Uid:"))
            assert uids.split()[1:] == ["65534"] * 4
    finally:
        running.close()


# ---------------------------------------------------------------- lifecycle


def test_loading_then_a_full_queue_then_sigterm_finishes_the_call_in_flight(garden, env):
    """One worker and a queue of one: seen while loading, busy, then stopped mid-call."""
    folder, _ = garden
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "gardenbuild", "serve", str(folder), "--port", str(port),
                             "--queue", "1", "--timeout", "20"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                status, _, body = http(url, "GET", "/readyz", timeout=2)
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.05)
                continue
            if status == 503 and not seen:
                assert body["status"] == "starting"
                loading = post(url, "echo", {"text": "early"})
                assert loading[0] == 503 and loading[2]["error"]["type"] == "loading"
                assert loading[1]["Retry-After"] == "1"
                assert http(url, "GET", "/health")[2]["status"] == "starting"
                assert http(url, "GET", "/livez")[0] == 200
            seen.append(status)
            if status == 200:
                break
            time.sleep(0.05)
        assert seen[0] == 503 and seen[-1] == 200, seen  # the session takes LOAD_SECONDS to load

        results: dict[str, tuple] = {}

        def call(key: str, seconds: float) -> None:
            results[key] = post(url, "nap", {"seconds": seconds}, timeout=30)

        running = threading.Thread(target=call, args=("running", 2.0))
        running.start()
        time.sleep(0.5)
        queued = threading.Thread(target=call, args=("queued", 0.1))
        queued.start()
        time.sleep(0.5)
        status, headers, body = post(url, "echo", {"text": "one too many"})
        assert status == 503 and body["error"]["type"] == "busy" and headers["Retry-After"] == "1"
        running.join(30)
        queued.join(30)
        assert results["running"][0] == 200 and results["queued"][0] == 200

        in_flight = threading.Thread(target=call, args=("in flight", 2.0))
        in_flight.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        in_flight.join(30)
        assert results["in flight"][0] == 200 and results["in flight"][2]["output"] == 2.0
        assert proc.wait(timeout=30) == 0
        with pytest.raises(OSError):
            http(url, "GET", "/livez", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    listed = json.loads(gardenbuild(env, "serve", "--list", "--json").stdout)["servers"]
    assert port not in [s["port"] for s in listed], "a stopped server is not listed"

    # What it served is in the catalog (counts and time, no inputs), and `show` prints it.
    from gardenbuild.catalog import Catalog

    usage = {(u["pipeline"], u["via"]): u for u in Catalog().usage("it-served")}
    nap = usage[("nap", "serve")]
    assert nap["calls"] == 3 and nap["errors"] == 0 and nap["seconds"] == pytest.approx(4.1, abs=0.5)
    code, out, _ = cli("show", "it-served")
    assert code == 0 and "usage    nap via serve: 3 call(s), 0 failed" in out


def test_usage_of_run_is_counted_unless_opted_out(garden, monkeypatch):
    from gardenbuild.catalog import Catalog

    folder, _ = garden

    def runs() -> int:
        return sum(u["calls"] for u in Catalog().usage("it-served") if u["via"] == "run" and u["pipeline"] == "echo")

    before = runs()
    assert cli("run", str(folder), "echo", "--input", '{"text": "u"}', "--cold")[0] == 0
    assert runs() == before + 1
    monkeypatch.setenv("GARDENBUILD_NO_USAGE", "1")
    assert cli("run", str(folder), "echo", "--input", '{"text": "u"}', "--cold")[0] == 0
    assert runs() == before + 1
    rows = Catalog().usage("it-served")
    assert all(set(r) == {"garden", "pipeline", "via", "calls", "errors", "seconds", "first", "last"} for r in rows)


def test_a_port_in_use_is_a_clear_error(garden, env):
    folder, _ = garden
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        done = gardenbuild(env, "serve", str(folder), "--port", str(taken.getsockname()[1]))
    assert done.returncode != 0 and "cannot listen on 127.0.0.1" in done.stderr and "Traceback" not in done.stderr


def test_stop_ends_a_detached_server(server, env):
    """Last of the module: stops the module's server."""
    done = gardenbuild(env, "serve", "--stop", str(server["port"]))
    assert done.returncode == 0, done.stderr
    assert f"stopped it-served at {server['url']}" in done.stdout
    with pytest.raises(OSError):
        http(server["url"], "GET", "/livez", timeout=2)
    again = gardenbuild(env, "serve", "--stop")
    assert again.returncode != 0 and "no garden server runs" in again.stderr


# ---------------------------------------------------------------- the example


def test_the_example_served_predicts_what_its_gardenfile_expects(base_image, env, tmp_path):
    example = copy_garden(REPO / "examples" / "solubility", tmp_path / "solubility")
    code, out, err = cli("build", str(example), "--base-image", base_image, "--json")
    assert code == 0, err
    summary = json.loads(out)
    started = detach(env, example, "--workers", "2")
    try:
        url = started["url"]
        doc = http(url, "GET", "/openapi.json")[2]
        validate(doc)
        post_doc = doc["paths"]["/pipelines/predict_solubility"]["post"]
        cases = post_doc["requestBody"]["content"]["application/json"]["examples"]
        assert cases["test-1"]["value"] == {"smiles": ["CCO", "c1ccccc1"]}
        status, _, body = post(url, "predict_solubility", cases["test-1"]["value"])
        assert status == 200 and body["output"] == pytest.approx([0.89, -1.40], abs=0.05)
        status, _, body = post(url, "predict_solubility", {"smiles": ["not a smiles"]})
        assert status == 500 and body["error"]["exception"] == "ValueError" and "not a smiles" in body["error"]["message"]
        assert http(url, "GET", "/health")[2]["image_digest"] == summary["digest"]
        code, out, err = cli("test", str(example))
        assert code == 0 and out.strip() == "2 passed, 0 failed" and "testing through the garden server" in err
    finally:
        gardenbuild(env, "serve", "--stop", str(started["port"]))
