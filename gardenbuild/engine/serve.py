"""Serve a built garden on this machine: the image's own server, in a confined container.

The container gets no network of its own (as every call): `serve` binds the port on the
host and hands the listening socket to the server inside over a Unix socket in a shared
folder (SCM_RIGHTS), so a pipeline can answer on that port and reach nothing. While it
runs, a state file under ``<run dir>/serve/`` says where (port, image, supervisor pid):
``serve --list`` and ``--stop`` read it, and `run`, `test` and the Python API send their
calls to a running server of the same image instead of starting a container.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Any

from gardenbuild.backends import Backend, Limits
from gardenbuild.backends.owners import run_dir
from gardenbuild.engine.call import PYTHON, LimitExceeded, Outcome, PipelineError
from gardenbuild.errors import BuildError, GardenError, UserError
from gardenbuild.report import Reporter

HANDOFF_DIR = "/run/garden-serve"
FINAL_COUNTS = "metrics.json"  # what the server counted, left in HANDOFF_DIR as it stops
SERVE_MODULE = "gardenbuild.runtime.serve"
#: How often a running server's counts are added to the catalog's usage.
USAGE_EVERY_SECONDS = 30.0


def state_dir() -> Path:
    return run_dir() / "serve"


@dataclass(frozen=True)
class Server:
    """A garden server started by `serve` on this machine."""

    url: str
    host: str
    port: int
    image: str
    image_id: str
    garden: str
    pid: int  # the supervising gardenbuild process
    workers: int
    started: float
    log: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def servers() -> list[Server]:
    """The servers running now (state files of dead supervisors are removed)."""
    found = []
    for path in sorted(state_dir().glob("*.json")) if state_dir().is_dir() else []:
        try:
            server = Server(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if _alive(server.pid):
            found.append(server)
        else:
            path.unlink(missing_ok=True)
    return found


def request(server_url: str, method: str, path: str, body: bytes | None = None, *,
            timeout: float = 5.0) -> tuple[int, Any]:
    """One HTTP request to a server; (status, parsed JSON or text). OSError when unreachable."""
    host, _, port = server_url.split("://", 1)[1].rstrip("/").rpartition(":")
    conn = HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        conn.request(method, path, body, {"Content-Type": "application/json"} if body is not None else {})
        response = conn.getresponse()
        data = response.read()
    except (HTTPException, ValueError) as exc:
        raise OSError(str(exc)) from None
    finally:
        conn.close()
    kind = response.getheader("Content-Type") or ""
    return response.status, json.loads(data) if kind.startswith("application/json") and data else data.decode(errors="replace")


def ready_server(image_ids: set[str]) -> Server | None:
    """A running server of one of these images that says it is ready, if there is one."""
    for server in servers():
        if server.image_id in image_ids:
            try:
                status, _ = request(server.url, "GET", "/readyz", timeout=1.0)
            except OSError:
                continue
            if status == 200:
                return server
    return None


# -- calls through a server ------------------------------------------------------------------

def call_server(server: Server, pipeline: str, payload: bytes, timeout: float) -> Outcome:
    """`call_pipeline`, answered by a running server: the same errors, the server's timings."""
    started = time.monotonic()
    try:
        status, body = request(server.url, "POST", f"/pipelines/{pipeline}", payload or b"{}", timeout=timeout + 5)
    except OSError as exc:
        raise BuildError(f"the garden server at {server.url} did not answer: {exc}",
                         hint="gardenbuild serve --list shows what runs; --stop ends it") from None
    total = time.monotonic() - started
    if status == 200:
        timings = dict(body.get("timings", {}))
        timings.update(total_s=round(total, 4), server=server.url, warm=True)
        return Outcome(body.get("output"), timings)
    raise error_of(pipeline, status, body)


def error_of(pipeline: str, status: int, body: Any) -> GardenError:
    """A server's JSON error as the error `run` shows for the same failure in a container."""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    message = error.get("message") or f"the server answered {status}"
    if status in (400, 404, 413, 422):
        return UserError(message, hint=f"the input fits the parameter {error['parameter']!r} badly"
                         if error.get("parameter") else None)
    if status == 504:
        return LimitExceeded(message, hint="raise it with serve --timeout, or call_seconds in [limits]")
    if status == 500 and error.get("type") == "pipeline-exception":
        tb = (error.get("traceback") or "").rstrip()
        return PipelineError(message + (f"\n{tb}" if tb else ""),
                             hint="the traceback above is the pipeline's own, from the notebook's cells")
    return BuildError(message)


def test_server(server: Server, cases: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    """`run_tests`, through a running server: each case one request, compared here."""
    from gardenbuild.runtime.call import compare

    out = []
    for case in cases:
        began = time.monotonic()
        actual, message = None, None
        try:
            actual = call_server(server, case["pipeline"], json.dumps(case.get("input") or {}).encode(), timeout).result
            message = compare(case.get("expected"), actual, case.get("tolerance") or 0.0)
        except GardenError as exc:
            message = exc.message
        out.append({"pipeline": case["pipeline"], "index": case.get("index", 0), "passed": message is None,
                    "expected": case.get("expected"), "actual": actual, "message": message,
                    "seconds": round(time.monotonic() - began, 6)})
    return out


# -- serving -----------------------------------------------------------------------------------

def bind(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound on the host (as the runtime binds its own)."""
    from gardenbuild.runtime.serve import bound_socket

    try:
        return bound_socket(host, port)
    except OSError as exc:
        taken = [s for s in servers() if s.port == port]
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}",
                        hint=f"{taken[0].garden} is served there (gardenbuild serve --stop {port})" if taken
                        else "choose another with --port") from None


def server_argv(*, workers: int, timeout: float | None, max_body: int | None, hide_tracebacks: bool,
                queue: int | None = None) -> list[str]:
    argv = [PYTHON, "-m", SERVE_MODULE, "--receive-socket", f"{HANDOFF_DIR}/handoff.sock",
            "--final-metrics", f"{HANDOFF_DIR}/{FINAL_COUNTS}", "--workers", str(workers)]
    if queue:
        argv += ["--queue", str(queue)]
    if timeout:
        argv += ["--timeout", f"{timeout:g}"]
    if max_body:
        argv += ["--max-body", str(max_body)]
    if hide_tracebacks:
        argv.append("--hide-tracebacks")
    return argv


class Serving:
    """One server's life: the container, the handover of the port, readiness, usage, the stop."""

    def __init__(self, backend: Backend, image: str, image_id: str, garden: str, *, host: str, port: int,
                 workers: int, limits: Limits, devices: list[str], digest: str | None, reporter: Reporter,
                 timeout: float | None = None, max_body: int | None = None, hide_tracebacks: bool = False,
                 queue: int | None = None, log: str | None = None) -> None:
        self.backend, self.image, self.image_id, self.garden = backend, image, image_id, garden
        self.host, self.workers, self.limits, self.devices, self.digest = host, workers, limits, devices, digest
        self.reporter, self.timeout, self.max_body, self.hide_tracebacks, self.queue, self.log = (
            reporter, timeout, max_body, hide_tracebacks, queue, log)
        self.listener = bind(host, port)
        self.port = self.listener.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        self.running: Any = None
        self.state: Path | None = None
        self.shared: Path | None = None
        self._counted: dict[str, dict[str, float]] = {}

    def start(self, ready_seconds: float) -> None:
        """Start the container, hand it the socket, wait until it is ready (or says why not)."""
        state_dir().mkdir(parents=True, exist_ok=True)
        # Shared with the container for its life: the socket handed over, then the counts
        # the server leaves when it stops (what it served after the last look at /metrics).
        self.shared = Path(tempfile.mkdtemp(prefix="handoff-", dir=state_dir()))
        self.shared.chmod(0o777)  # the server runs as nobody
        sock = self.shared / "handoff.sock"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as hand:
                hand.bind(str(sock))
                sock.chmod(0o666)
                hand.listen(1)
                hand.settimeout(0.2)
                argv = server_argv(workers=self.workers, timeout=self.timeout, max_body=self.max_body,
                                   hide_tracebacks=self.hide_tracebacks, queue=self.queue)
                env = {"GARDEN_IMAGE_DIGEST": self.digest} if self.digest else {}
                self.running = self.backend.start(self.image, argv, volumes=[(self.shared, HANDOFF_DIR, "rw")],
                                                  env=env, limits=self.limits, devices=self.devices,
                                                  stdout=sys.stderr.fileno())
                self._hand_over(hand, ready_seconds)
        finally:
            sock.unlink(missing_ok=True)
        self.listener.close()  # the server holds the port now
        self._wait_ready(ready_seconds)
        self.state = state_dir() / f"{self.port}.json"
        server = Server(self.url, self.host, self.port, self.image, self.image_id, self.garden, os.getpid(),
                        self.workers, time.time(), self.log)
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(server.as_json(), indent=2) + "\n")
        os.replace(tmp, self.state)

    def _still_running(self, when: str) -> None:
        if self.running.proc.poll() is not None:
            raise BuildError(f"the server in {self.image} exited {when} (exit code {self.running.proc.returncode})",
                             hint="its output is above")

    def _hand_over(self, hand: socket.socket, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self._still_running("before it started")
            try:
                conn, _ = hand.accept()
                break
            except socket.timeout:
                if time.monotonic() > deadline:
                    raise BuildError(f"the server in {self.image} did not start within {seconds:g} s") from None
        with conn:
            socket.send_fds(conn, [b"socket"], [self.listener.fileno()])

    def _wait_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self._still_running("while loading the session")
            try:
                status, body = request(self.url, "GET", "/readyz", timeout=2.0)
            except OSError:
                status, body = 0, None
            if status == 200:
                return
            if isinstance(body, dict) and body.get("status") == "failed":
                raise BuildError(f"the garden's session failed to load in the server: {body.get('error')}")
            if time.monotonic() > deadline:
                raise BuildError(f"the server at {self.url} was not ready within {seconds:g} s")
            time.sleep(0.05)

    def count_usage(self, final: dict[str, Any] | None = None) -> None:
        """Add what the server counted since the last time to the catalog (never its inputs):
        asked at /metrics, or `final`, the counts it left as it stopped."""
        from gardenbuild.catalog import record_usage, usage_enabled

        if not usage_enabled():
            return
        body = final
        if body is None:
            try:
                status, body = request(self.url, "GET", "/metrics?format=json", timeout=2.0)
            except OSError:
                return
            if status != 200:
                return
        if not isinstance(body, dict):
            return
        for name, now in body.get("pipelines", {}).items():
            before = self._counted.get(name, {"calls": 0, "errors": 0, "seconds": 0.0})
            calls = now["calls"] - before["calls"]
            if calls > 0:
                record_usage(self.garden, name, "serve", calls=calls, errors=now["errors"] - before["errors"],
                             seconds=now["seconds"] - before["seconds"], reporter=self.reporter)
            self._counted[name] = now

    def wait(self, stop: threading.Event) -> int:
        """Until the server exits or `stop` is set; counting usage every so often."""
        last = time.monotonic()
        while not stop.wait(0.2):
            if self.running.proc.poll() is not None:
                return self.running.proc.returncode or 1
            if time.monotonic() - last > USAGE_EVERY_SECONDS:
                self.count_usage()
                last = time.monotonic()
        return 0

    def master_pid(self) -> int | None:
        """The server's first process (host PID): the one SIGTERM asks to stop gracefully."""
        def is_server(pid: int) -> bool:  # the image's Python running the module (not unshare, not buildah)
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            return argv[:3] == [PYTHON.encode(), b"-m", SERVE_MODULE.encode()]

        from gardenbuild.backends.buildah import parent_pid

        for pid in self.running.descendants():
            parent = parent_pid(pid)
            try:
                if parent is not None and is_server(pid) and not is_server(parent):  # the workers' parent is the server
                    return pid
            except OSError:  # gone meanwhile
                continue
        return None

    def stop(self, grace: float) -> None:
        """Let the server finish what it has (SIGTERM), then remove the container."""
        try:
            if self.running is not None and self.running.proc.poll() is None:
                pid = self.master_pid()
                if pid is not None:
                    os.kill(pid, signal.SIGTERM)
                    try:
                        self.running.proc.wait(timeout=grace)
                    except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: close() kills it
                        self.reporter.warn(f"the server did not stop within {grace:g} s; killing it")
        finally:
            if self.state is not None:
                self.state.unlink(missing_ok=True)
            if self.running is not None:
                self.running.close()
            try:
                self.listener.close()
            except OSError:
                pass
            if self.shared is not None:
                final = self.shared / FINAL_COUNTS
                try:
                    self.count_usage(json.loads(final.read_text()))
                except (OSError, ValueError):
                    pass
                shutil.rmtree(self.shared, ignore_errors=True)


def serve(serving: Serving, *, ready_seconds: float, announce: Callable[[Serving], None]) -> int:
    """Run a server in the foreground until it exits, or SIGTERM/SIGINT asks it to stop."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        serving.start(ready_seconds)
        announce(serving)
        code = serving.wait(stop)
    finally:
        serving.stop(grace=(serving.timeout or 600) + 10)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code


def stop_servers(port: int | None, reporter: Reporter, grace: float = 30.0) -> list[Server]:
    """Ask the servers started here (all, or the one on `port`) to stop; wait for them."""
    chosen = [s for s in servers() if port is None or s.port == port]
    for server in chosen:
        try:
            os.kill(server.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + grace
    for server in chosen:
        while _alive(server.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(server.pid):
            reporter.warn(f"the server on port {server.port} (pid {server.pid}) is still stopping")
    return chosen
