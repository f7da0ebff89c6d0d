"""Serve a garden's pipelines over HTTP: the command of every garden image.

    python -m gardenbuild.runtime.serve [--host 0.0.0.0] [--port $PORT or 8080] [--workers N]
                                        [--timeout S] [--max-body BYTES] [--queue N] [--hide-tracebacks]

The server starts listening at once and loads the session; meanwhile ``/livez`` answers
200 and ``/readyz`` 503 (``/health``: ``starting``). Once the session is loaded it forks
``--workers`` processes, which share the loaded session copy-on-write and accept on the
one listening socket; the first process stays to watch them (a worker that dies is
replaced by a fresh fork) and to stop them on SIGTERM. The connections open at that
moment are handed to the first worker as they are (a request half-read included), and
``/readyz`` says 200 only from a worker, so a client that saw it is never cut off or told
``loading``. A session that fails to load
leaves the server up, answering ``failed`` with the reason, so a platform's health check
shows why.

Routes: ``GET /livez``, ``/readyz``, ``/health``, ``/openapi.json`` (see `openapi`),
``/metrics`` (Prometheus text; ``?format=json``), ``/`` (a short page);
``POST /pipelines/{name}`` (a JSON object of keyword arguments -> ``{"output",
"timings"}``) and ``POST /pipelines/{name}/batch`` (a list of such objects ->
``{"outputs", "timings"}``). Every error is JSON, ``{"error": {"type", "message", ...}}``:
400 a body that is not JSON, 404 an unknown route or pipeline, 405 a wrong method, 408 a
request that does not arrive in time, 411 a body without Content-Length, 413 a body over
``--max-body``, 422 input that does not fit the signature (``parameter`` names where),
500 the pipeline raised (its exception and traceback, unless ``--hide-tracebacks``), 503
loading, failed, or every worker busy and the queue full (with Retry-After), 504 a call
past ``--timeout``: the worker answers, then exits and is replaced (a call cannot be
stopped half-way and trusted).

Each worker has an I/O thread (accepting, reading, answering health and metrics even while
a call runs, enforcing deadlines) and runs the calls themselves, one at a time, on its main
thread, from a queue of ``--queue`` requests. SIGTERM: stop accepting, finish the calls in
flight and queued, answer them, exit. Standard library and dill only.
"""

from __future__ import annotations

import argparse
import collections
import html
import json
import mmap
import os
import queue
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["main", "Metrics", "parse_head", "HTTPError", "render_response"]

DEFAULT_PORT = 8080
DEFAULT_MAX_BODY = 16 * 2**20
DEFAULT_TIMEOUT = 600.0
MAX_HEAD = 64 * 1024
READ_SECONDS = 30.0  # a request must arrive whole within this
IDLE_SECONDS = 15.0  # a keep-alive connection with nothing to say is closed after this
KILL_GRACE = 5.0  # the watcher kills a worker this long after a deadline its own thread missed
EXIT_TIMED_OUT = 75
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           411: "Length Required", 413: "Content Too Large", 422: "Unprocessable Content",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
           503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported"}


# --------------------------------------------------------------------------- HTTP, pure


class HTTPError(Exception):
    """An answer that is an error: status, a short type, a message and extra fields."""

    def __init__(self, status: int, kind: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.extra = status, kind, message, extra

    def payload(self) -> dict[str, Any]:
        return {"error": {"type": self.kind, "message": self.message, **self.extra}}


class Head:
    """A parsed request line and headers (names lowercased)."""

    __slots__ = ("method", "path", "query", "version", "headers")

    def __init__(self, method: str, path: str, query: dict[str, list[str]], version: str, headers: dict[str, str]):
        self.method, self.path, self.query, self.version, self.headers = method, path, query, version, headers

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    def body_length(self, limit: int) -> int:
        """The body's length from Content-Length (0 without one); errors for what is not served."""
        if "transfer-encoding" in self.headers:
            raise HTTPError(411, "length-required", "send the body with a Content-Length, not chunked")
        raw = self.headers.get("content-length")
        if raw is None:
            return 0
        if not raw.strip().isdigit():
            raise HTTPError(400, "bad-request", f"Content-Length {raw!r} is not a number")
        length = int(raw)
        if length > limit:
            raise HTTPError(413, "too-large", f"the body is {length} bytes; this server takes at most {limit} "
                                              "(serve --max-body)", limit=limit)
        return length


def parse_head(data: bytes) -> Head:
    """The request line and headers of `data` (up to, not including, the blank line)."""
    try:
        text = data.decode("iso-8859-1")
        line, *fields = text.split("\r\n")
        method, target, version = line.split(" ")
    except ValueError:
        raise HTTPError(400, "bad-request", "malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise HTTPError(505, "bad-version", f"{version} is not served; use HTTP/1.1")
    headers: dict[str, str] = {}
    for field in fields:
        name, sep, value = field.partition(":")
        if not sep or not name or name != name.strip():
            raise HTTPError(400, "bad-request", f"malformed header line {field[:60]!r}")
        headers[name.lower()] = value.strip()
    parts = urlsplit(target)
    return Head(method, unquote(parts.path) or "/", parse_qs(parts.query), version, headers)


def render_response(status: int, body: bytes, content_type: str = "application/json", *, keep_alive: bool = True,
                    headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", "Connection: " + ("keep-alive" if keep_alive else "close"),
             *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


# --------------------------------------------------------------------------- metrics


BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Counters every worker writes into shared memory (one slot per worker: no locks; a
    replacement worker takes over its slot and its counts), summed when read."""

    PER_PIPELINE = 3 + len(BUCKETS)  # calls, errors, seconds, bucket counts

    def __init__(self, pipelines: list[str], slots: int) -> None:
        self.pipelines = list(pipelines)
        self.slots = slots
        self._stride = 1 + len(self.pipelines) * self.PER_PIPELINE  # deadline, then the pipelines
        self._mem = mmap.mmap(-1, max(8 * self._stride * slots, 8))  # MAP_SHARED: seen across fork
        self._d = memoryview(self._mem).cast("d")

    def _at(self, slot: int, pipeline: int) -> int:
        return slot * self._stride + 1 + pipeline * self.PER_PIPELINE

    def record(self, slot: int, pipeline: str, seconds: float, error: bool) -> None:
        at = self._at(slot, self.pipelines.index(pipeline))
        d = self._d
        d[at] += 1
        d[at + 1] += error
        d[at + 2] += seconds
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                d[at + 3 + i] += 1
                break

    def set_deadline(self, slot: int, when: float) -> None:
        """The wall-clock time a worker's call must end by (0: none)."""
        self._d[slot * self._stride] = when

    def deadline(self, slot: int) -> float:
        return self._d[slot * self._stride]

    def totals(self) -> dict[str, dict[str, Any]]:
        out = {}
        for p, name in enumerate(self.pipelines):
            rows = [self._d[self._at(s, p):self._at(s, p) + self.PER_PIPELINE] for s in range(self.slots)]
            calls, errors, seconds, *buckets = (sum(col) for col in zip(*rows))
            out[name] = {"calls": int(calls), "errors": int(errors), "seconds": round(seconds, 6),
                         "buckets": [int(b) for b in buckets]}
        return out

    def prometheus(self, extra: dict[str, float] | None = None) -> str:
        totals = self.totals()
        lines = ["# HELP garden_pipeline_calls_total Calls of each pipeline (a batch counts each item).",
                 "# TYPE garden_pipeline_calls_total counter"]
        lines += [f'garden_pipeline_calls_total{{pipeline="{n}"}} {t["calls"]}' for n, t in totals.items()]
        lines += ["# HELP garden_pipeline_errors_total Calls that failed (input, exception, time limit).",
                  "# TYPE garden_pipeline_errors_total counter"]
        lines += [f'garden_pipeline_errors_total{{pipeline="{n}"}} {t["errors"]}' for n, t in totals.items()]
        lines += ["# HELP garden_pipeline_duration_seconds Time in the pipeline function.",
                  "# TYPE garden_pipeline_duration_seconds histogram"]
        for name, t in totals.items():
            running = 0
            for bound, count in zip(BUCKETS, t["buckets"]):
                running += count
                lines.append(f'garden_pipeline_duration_seconds_bucket{{pipeline="{name}",le="{bound:g}"}} {running}')
            lines.append(f'garden_pipeline_duration_seconds_bucket{{pipeline="{name}",le="+Inf"}} {t["calls"]}')
            lines.append(f'garden_pipeline_duration_seconds_sum{{pipeline="{name}"}} {t["seconds"]:.6f}')
            lines.append(f'garden_pipeline_duration_seconds_count{{pipeline="{name}"}} {t["calls"]}')
        for key, value in sorted((extra or {}).items()):
            lines += [f"# TYPE {key} gauge", f"{key} {value:g}"]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the garden


class Garden:
    """What every route needs: the status, the pipelines (once loaded), the API description."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.status = "starting"
        self.error: str | None = None
        self.started = time.time()
        self.info = _read_json(os.path.join(args.api, "garden.json")) or {}
        self.examples = _read_json(os.path.join(args.api, "examples.json")) or {}
        self.metadata = _read_json(args.metadata) or {}
        self.names = [p["name"] for p in self.metadata.get("pipelines", [])]
        self.info.setdefault("name", self.metadata.get("garden"))
        self.functions: dict[str, Any] = {}
        self.metrics = Metrics(self.names, args.workers)
        self._openapi: bytes | None = None

    def load(self) -> None:
        from gardenbuild.runtime.call import CallError, _find_pipeline, _notebook_folder, load_session

        try:
            folder = _notebook_folder(self.metadata)
            if folder:
                os.chdir(folder)
                sys.path.insert(0, os.path.abspath("."))
            ns = load_session(self.args.session)
            self.functions = {name: _find_pipeline(ns, self.metadata, name) for name in self.names}
            self.openapi()
        except CallError as e:
            self.status, self.error = "failed", e.payload.get("message") or str(e)
            return
        except Exception as e:  # noqa: BLE001 - anything else the session does while loading
            self.status, self.error = "failed", f"{type(e).__name__}: {e}"
        # Loaded: still "starting" until `main` has handed the connections to the workers,
        # so that a 200 from /readyz always comes from a process that can take the call.

    def openapi(self) -> bytes:
        if self._openapi is None:
            from gardenbuild.runtime.openapi import document

            described = {p["name"]: p.get("description") or "" for p in self.metadata.get("pipelines", [])}
            pipelines = [(n, self.functions[n], described.get(n, "")) for n in self.names]
            self._openapi = json.dumps(document(self.info, pipelines, self.examples), indent=1).encode()
        return self._openapi

    def health(self) -> dict[str, Any]:
        from gardenbuild.runtime.openapi import API_VERSION

        out = {"status": self.status, "garden": self.info.get("name"), "title": self.info.get("title"),
               "version": self.info.get("version"), "image_digest": os.environ.get("GARDEN_IMAGE_DIGEST") or None,
               "pipelines": self.names, "workers": self.args.workers, "api": API_VERSION,
               "uptime_s": round(time.time() - self.started, 3)}
        if self.error:
            out["error"] = self.error
        return out

    def page(self) -> bytes:
        e = html.escape
        rows = "".join(f"<li><code>POST /pipelines/{e(n)}</code> {e(d.get('description') or '')}</li>"
                       for n, d in ((p["name"], p) for p in self.metadata.get("pipelines", [])))
        title = e(self.info.get("title") or self.info.get("name") or "garden")
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
                f"<h1>{title}</h1><p>{e(self.info.get('description') or '')}</p>"
                f"<p>Garden <code>{e(str(self.info.get('name')))}</code> {e(str(self.info.get('version') or ''))}, "
                f"status <b>{e(self.status)}</b>.</p><h2>Pipelines</h2><ul>{rows}</ul>"
                "<p>The API: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1); health "
                "<a href='/health'>/health</a>; metrics <a href='/metrics'>/metrics</a>.</p></body></html>").encode()


def _read_json(path: str | None) -> Any:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- calls


def run_call(garden: Garden, name: str, batch: bool, payload: Any, slot: int) -> tuple[int, dict[str, Any]]:
    """One request's call(s): (status, JSON body). Runs on a worker's main thread."""
    from gardenbuild.runtime.call import CallError, _call, _check_binding

    func = garden.functions[name]
    items = payload if batch else [payload]
    if batch and not isinstance(payload, list):
        return 422, HTTPError(422, "invalid-input", "a batch is a JSON array of input objects").payload()
    for index, item in enumerate(items):
        where = f"item {index} of the batch" if batch else "the body"
        if not isinstance(item, dict):
            return 422, _indexed(HTTPError(422, "invalid-input", f"{where} must be a JSON object of keyword "
                                                                 f"arguments, not {type(item).__name__}"), batch, index)
        try:
            _check_binding(name, func, [], item)
        except CallError as e:
            garden.metrics.record(slot, name, 0.0, True)
            extra = {"parameter": e.payload["parameter"]} if e.payload.get("parameter") else {}
            return 422, _indexed(HTTPError(422, "invalid-input", e.payload["message"], **extra), batch, index)
    outputs, spent = [], 0.0
    for index, item in enumerate(items):
        began = time.perf_counter()
        try:
            outputs.append(_call(name, func, [], item))
        except CallError as e:
            seconds = time.perf_counter() - began
            garden.metrics.record(slot, name, seconds, True)
            p = e.payload
            extra = {"exception": p["exception_type"]} if p.get("exception_type") else {}
            if p.get("traceback") and not garden.args.hide_tracebacks:
                extra["traceback"] = p["traceback"]
            kind = "pipeline-exception" if p.get("kind") == "pipeline-exception" else "bad-result"
            return 500, _indexed(HTTPError(500, kind, p["message"], **extra), batch, index)
        seconds = time.perf_counter() - began
        spent += seconds
        garden.metrics.record(slot, name, seconds, False)
    key = "outputs" if batch else "output"
    return 200, {key: outputs if batch else outputs[0], "timings": {"call_s": round(spent, 6)}}


def _indexed(error: HTTPError, batch: bool, index: int) -> dict[str, Any]:
    if batch:
        error.extra["index"] = index
    return error.payload()


# --------------------------------------------------------------------------- the I/O loop


class Conn:
    __slots__ = ("sock", "buf", "out", "head", "need", "last", "begun", "busy", "closing", "drain_until")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.out = bytearray()
        self.head: Head | None = None
        self.need = 0
        self.last = time.monotonic()
        self.begun: float | None = None  # when the request now arriving began
        self.busy = False  # a call for it is queued or running: read nothing more
        self.closing = False  # close once `out` is sent
        self.drain_until = 0.0  # answered early (413): read and drop its body until then


class Loop:
    """A worker's I/O thread (or, while loading, the first process's)."""

    def __init__(self, listener: socket.socket, garden: Garden, slot: int, work: queue.Queue | None,
                 adopted: Iterable[Conn] = ()) -> None:
        self.listener, self.garden, self.slot, self.work = listener, garden, slot, work
        self.sel = selectors.DefaultSelector()
        self.sel.register(listener, selectors.EVENT_READ, "accept")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.conns: dict[int, Conn] = {}
        for conn in adopted:  # the loading loop's connections, each as it was left
            self.conns[conn.sock.fileno()] = conn
            self.sel.register(conn.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0), conn)
        self.outbox: collections.deque[tuple[Conn, bytes]] = collections.deque()
        self.lock = threading.Lock()
        self.current: tuple[Conn, float, str] | None = None  # the call running: connection, deadline, pipeline
        self.stopping = False
        self.handing_over = False
        self.accepting = True

    # -- used by other threads

    def wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def answer(self, conn: Conn, data: bytes) -> None:
        self.outbox.append((conn, data))
        self.wake()

    def stop(self) -> None:
        self.stopping = True
        self.wake()

    def hand_over(self) -> None:
        """Stop between two events and leave every connection open, in `conns`, for the
        loop that adopts them: a request that came while loading is not cut off."""
        self.handing_over = True
        self.wake()

    # -- the loop

    def run(self) -> None:
        for conn in list(self.conns.values()):
            self._parse(conn)  # what an adopted connection had read already
        while not self.handing_over:
            now = time.monotonic()
            if self.stopping and self.accepting:
                self.sel.unregister(self.listener)
                self.accepting = False
            if self.stopping and not any(c.busy for c in self.conns.values()) and not self.outbox:
                for conn in list(self.conns.values()):
                    if not conn.out:
                        self._close(conn)
                if not self.conns:
                    break
            timeout = 0.25
            current = self.current
            if current is not None:
                timeout = max(0.0, min(timeout, current[1] - now))
            for key, events in self.sel.select(timeout):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                else:
                    conn = key.data
                    if events & selectors.EVENT_WRITE:
                        self._flush(conn)
                    if events & selectors.EVENT_READ and conn.sock.fileno() in self.conns:
                        self._read(conn)
            while self.outbox:
                conn, data = self.outbox.popleft()
                conn.busy = False
                self._send(conn, data)
                if not conn.closing and conn.buf:
                    self._parse(conn)
            self._deadlines(time.monotonic())
        self.sel.close()

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # a unix socket
            conn = Conn(sock)
            self.conns[sock.fileno()] = conn
            self.sel.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        conn.last = time.monotonic()
        if conn.drain_until:
            return  # the body of a request already answered: dropped
        if conn.begun is None:
            conn.begun = conn.last
        conn.buf += data
        if not conn.busy:
            self._parse(conn)

    def _parse(self, conn: Conn) -> None:
        """Handle every whole request in the buffer, in order, until one waits for a call."""
        while not conn.busy and not conn.closing and conn.sock.fileno() in self.conns:
            if not self._parse_one(conn):
                return

    def _parse_one(self, conn: Conn) -> bool:
        """Handle the first request in the buffer if it is whole; False when it is not (yet)."""
        if conn.head is None:
            end = conn.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(conn.buf) > MAX_HEAD:
                    self._error(conn, HTTPError(431, "too-large", "the request's headers are over 64 KiB"), close=True)
                return False
            try:
                head = parse_head(bytes(conn.buf[:end]))
                need = head.body_length(self.garden.args.max_body)
            except HTTPError as e:
                self._error(conn, e, close=True)
                return False
            del conn.buf[:end + 4]
            conn.head, conn.need = head, need
            if need > len(conn.buf) and head.headers.get("expect", "").lower() == "100-continue":
                self._send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
        if len(conn.buf) < conn.need:
            return False
        head, body = conn.head, bytes(conn.buf[:conn.need])
        del conn.buf[:conn.need]
        conn.head, conn.need, conn.begun = None, 0, (time.monotonic() if conn.buf else None)
        if not head.keep_alive or self.stopping:
            conn.closing = True
        try:
            self._route(conn, head, body)
        except HTTPError as e:
            self._error(conn, e, close=conn.closing)
        return True

    def _route(self, conn: Conn, head: Head, body: bytes) -> None:
        g, path = self.garden, head.path.rstrip("/") or "/"
        gets = {"/livez", "/readyz", "/health", "/openapi.json", "/metrics", "/"}
        if path in gets:
            if head.method != "GET":
                raise HTTPError(405, "method-not-allowed", f"{path} takes GET", allow="GET")
            if path == "/livez":
                return self._json(conn, 200, {"status": "live"})
            if path == "/readyz":
                ready = g.status == "ready"
                return self._json(conn, 200 if ready else 503, {"status": g.status, **({"error": g.error} if g.error else {})})
            if path == "/health":
                return self._json(conn, 200, g.health())
            if path == "/openapi.json":
                if g.status != "ready":
                    raise self._unavailable()
                return self._send(conn, render_response(200, g.openapi(), keep_alive=not conn.closing))
            if path == "/metrics":
                if head.query.get("format") == ["json"]:
                    return self._json(conn, 200, {"pipelines": g.metrics.totals(), "status": g.status})
                text = g.metrics.prometheus({"garden_ready": 1.0 if g.status == "ready" else 0.0,
                                             "garden_workers": float(g.args.workers)})
                return self._send(conn, render_response(200, text.encode(), "text/plain; version=0.0.4",
                                                        keep_alive=not conn.closing))
            return self._send(conn, render_response(200, g.page(), "text/html; charset=utf-8",
                                                    keep_alive=not conn.closing))
        parts = path.split("/")
        if len(parts) in (3, 4) and parts[1] == "pipelines" and (len(parts) == 3 or parts[3] == "batch"):
            name, batch = parts[2], len(parts) == 4
            if head.method != "POST":
                raise HTTPError(405, "method-not-allowed", f"{path} takes POST with a JSON body", allow="POST")
            if name not in g.names:
                raise HTTPError(404, "no-such-pipeline", f"no pipeline {name!r} in this garden (pipelines: "
                                                         f"{', '.join(g.names) or 'none'})")
            if g.status != "ready" or self.work is None:
                raise self._unavailable()
            try:
                payload = json.loads(body) if body.strip() else ({} if not batch else None)
            except ValueError as e:
                raise HTTPError(400, "bad-json", f"the body is not JSON: {e}") from None
            try:
                self.work.put_nowait((conn, name, batch, payload, time.monotonic()))
            except queue.Full:
                raise HTTPError(503, "busy", "every worker is busy and the queue is full; try again",
                                retry_after=1) from None
            conn.busy = True
            return None
        raise HTTPError(404, "not-found", f"no route {head.method} {head.path}; see /openapi.json")

    def _unavailable(self) -> HTTPError:
        g = self.garden
        if g.status == "failed":
            return HTTPError(503, "failed", f"the session failed to load: {g.error}")
        return HTTPError(503, "loading", "the session is still loading; /readyz says when it is ready", retry_after=1)

    def _json(self, conn: Conn, status: int, payload: Any) -> None:
        self._send(conn, render_response(status, json_bytes(payload), keep_alive=not conn.closing))

    def _error(self, conn: Conn, e: HTTPError, *, close: bool) -> None:
        headers: tuple[tuple[str, str], ...] = ()
        if e.extra.get("allow"):
            headers += (("Allow", e.extra.pop("allow")),)
        if e.extra.get("retry_after"):
            headers += (("Retry-After", str(e.extra.pop("retry_after"))),)
        if close:
            conn.closing = True
            if e.status == 413:  # let the client finish sending (dropped); it then reads the 413
                conn.drain_until = time.monotonic() + 5.0
        self._send(conn, render_response(e.status, json_bytes(e.payload()), keep_alive=not conn.closing,
                                         headers=headers))

    def _send(self, conn: Conn, data: bytes) -> None:
        conn.out += data
        self._flush(conn)

    def _flush(self, conn: Conn) -> None:
        if conn.sock.fileno() not in self.conns:
            return
        try:
            sent = conn.sock.send(conn.out)
            del conn.out[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(conn)
            return
        mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        self.sel.modify(conn.sock, mask, conn)
        if not conn.out and conn.closing and not conn.drain_until:
            self._close(conn)
        elif not conn.out and conn.drain_until:
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _close(self, conn: Conn) -> None:
        fd = conn.sock.fileno()
        if fd in self.conns:
            del self.conns[fd]
            try:
                self.sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        conn.sock.close()

    def _deadlines(self, now: float) -> None:
        for conn in list(self.conns.values()):
            if conn.busy:
                continue
            if conn.drain_until:
                if now > conn.drain_until:
                    self._close(conn)
            elif conn.begun is not None and now - conn.begun > READ_SECONDS:
                self._error(conn, HTTPError(408, "timeout", f"the request did not arrive within {READ_SECONDS:g} s"),
                            close=True)
            elif conn.begun is None and not conn.out and now - conn.last > IDLE_SECONDS:
                self._close(conn)
        current = self.current
        if current is not None and now >= current[1]:
            self._timed_out(current)

    def _timed_out(self, current: tuple[Conn, float, str]) -> None:
        """The call ran past its deadline: answer 504, tell the queued to come back, exit.
        The watcher forks a fresh worker from the loaded session."""
        with self.lock:
            if self.current is not current:
                return  # it finished meanwhile
            conn = current[0]
            limit = self.garden.args.timeout
            self.garden.metrics.record(self.slot, current[2], limit, True)
            self._blocking_send(conn, 504, HTTPError(504, "timeout", f"the call ran past the time limit of {limit:g} s "
                                                     "and was stopped", limit=limit).payload())
            while self.work is not None:
                try:
                    item = self.work.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    self._blocking_send(item[0], 503, HTTPError(503, "restarting", "the worker restarts after a call "
                                                                "that timed out; try again").payload())
            for other in self.conns.values():
                if other.out:
                    try:
                        other.sock.setblocking(True)
                        other.sock.settimeout(1.0)
                        other.sock.sendall(other.out)
                    except OSError:
                        pass
            sys.stderr.flush()
            os._exit(EXIT_TIMED_OUT)

    def _blocking_send(self, conn: Conn, status: int, payload: Any) -> None:
        try:
            conn.sock.setblocking(True)
            conn.sock.settimeout(1.0)
            conn.sock.sendall(bytes(conn.out) + render_response(status, json_bytes(payload), keep_alive=False))
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


# --------------------------------------------------------------------------- processes


def worker(listener: socket.socket, garden: Garden, slot: int, adopted: Iterable[Conn] = ()) -> None:
    """A forked worker: the I/O thread, and the calls on this thread, until SIGTERM."""
    work: queue.Queue = queue.Queue(maxsize=garden.args.queue)
    loop = Loop(listener, garden, slot, work, adopted)

    def stop(_sig: int, _frame: Any) -> None:
        loop.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the watcher decides

    def io() -> None:
        try:
            loop.run()
        finally:
            work.put(None)

    thread = threading.Thread(target=io, name="gardenbuild-io", daemon=True)
    thread.start()
    timeout = garden.args.timeout
    while True:
        item = work.get()
        if item is None:
            break
        conn, name, batch, payload, received = item
        started = time.monotonic()
        n = len(payload) if batch and isinstance(payload, list) else 1
        deadline = started + timeout * max(n, 1)
        with loop.lock:
            loop.current = (conn, deadline, name)
        garden.metrics.set_deadline(slot, time.time() + timeout * max(n, 1))
        loop.wake()
        try:
            status, body = run_call(garden, name, batch, payload, slot)
        except Exception as e:  # noqa: BLE001 - a bug of ours: still an answer, not a hung connection
            status, body = 500, HTTPError(500, "internal", f"{type(e).__name__}: {e}").payload()
        with loop.lock:
            loop.current = None
        garden.metrics.set_deadline(slot, 0.0)
        if status == 200:
            body["timings"].update(queue_s=round(started - received, 6), total_s=round(time.monotonic() - received, 6))
        try:
            data = json_bytes(body)
        except (TypeError, ValueError) as e:
            status, data = 500, json_bytes(HTTPError(500, "bad-result", f"the output has no JSON form: {e}").payload())
        headers = (("Retry-After", "1"),) if status == 503 else ()
        loop.answer(conn, render_response(status, data, keep_alive=not conn.closing, headers=headers))
    thread.join(timeout=5)
    os._exit(0)


def watch(listener: socket.socket, garden: Garden, adopted: list[Conn]) -> int:
    """Fork the workers and keep them: replace one that dies, kill one past its deadline,
    stop them all on SIGTERM (each finishes what it has) and return. The first worker
    adopts the connections the loading loop left open (`adopted`); no other process
    keeps them, so that its close is the socket's close."""
    stopping = False
    pids: dict[int, int] = {}  # pid -> slot

    def spawn(slot: int) -> None:
        garden.metrics.set_deadline(slot, 0.0)  # not the deadline of the worker it replaces
        pid = os.fork()
        if pid == 0:
            try:
                for conn in adopted if slot else ():
                    conn.sock.close()
                worker(listener, garden, slot, adopted if slot == 0 else ())
            finally:
                os._exit(70)
        pids[pid] = slot

    def stop(_sig: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(garden.args.workers):
        spawn(slot)
    for conn in adopted:
        conn.sock.close()
    adopted.clear()  # a worker forked later starts without them
    print(f"gardenbuild: serving {len(garden.names)} pipeline(s) with {garden.args.workers} worker(s)", file=sys.stderr,
          flush=True)
    restarts: collections.deque[float] = collections.deque(maxlen=10)
    while pids:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            slot = pids.pop(pid)
            if not stopping:
                code = os.waitstatus_to_exitcode(status)
                reason = "timed out" if code == EXIT_TIMED_OUT else f"exited ({code})"
                print(f"gardenbuild: worker {slot} {reason}; starting a fresh one", file=sys.stderr, flush=True)
                restarts.append(time.monotonic())
                if len(restarts) == restarts.maxlen and restarts[-1] - restarts[0] < 10:
                    time.sleep(1.0)  # a worker that dies at once, over and over: not faster than this
                spawn(slot)
            continue
        now = time.time()
        for pid, slot in list(pids.items()):
            deadline = garden.metrics.deadline(slot)
            if deadline and now > deadline + KILL_GRACE:  # its own thread could not answer (the GIL held)
                print(f"gardenbuild: worker {slot} is stuck past its deadline; killing it", file=sys.stderr, flush=True)
                garden.metrics.set_deadline(slot, 0.0)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.05)
    return 0


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` (IPv6 when the host is one); OSError if it cannot.
    `gardenbuild serve` binds with this on the host too, before handing the socket over."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    return sock


def listening_socket(args: argparse.Namespace) -> socket.socket:
    """The socket to serve on: handed over (``--receive-socket``, by `gardenbuild serve`,
    which binds it on the host), or bound here to --host and --port."""
    if args.receive_socket:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as hand:
            hand.connect(args.receive_socket)
            _, fds, _, _ = socket.recv_fds(hand, 16, 1)
        if not fds:
            raise SystemExit("gardenbuild: no socket was handed over")
        sock = socket.socket(fileno=fds[0])
    else:
        try:
            sock = bound_socket(args.host, args.port)
        except OSError as e:
            raise SystemExit(f"gardenbuild: cannot listen on {args.host}:{args.port}: {e.strerror}") from None
    sock.setblocking(False)
    return sock


NOBODY = 65534


def _drop_root() -> None:
    """Started as root (a platform running the image as it is): serve as nobody, as a
    pipeline call runs; the port is open already."""
    if os.geteuid() != 0:
        return
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    os.environ["HOME"] = "/tmp"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gardenbuild.runtime.serve", description=__doc__.split("\n\n")[0])
    env = os.environ
    parser.add_argument("--host", default=env.get("HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(env.get("PORT") or DEFAULT_PORT))
    parser.add_argument("--workers", type=int, default=int(env.get("GARDEN_WORKERS") or 1))
    parser.add_argument("--timeout", type=float, default=None, help="seconds one call may take (default: the "
                        "garden's call_seconds, else 600)")
    parser.add_argument("--max-body", type=int, default=int(env.get("GARDEN_MAX_BODY") or DEFAULT_MAX_BODY))
    parser.add_argument("--queue", type=int, default=int(env.get("GARDEN_QUEUE") or 64),
                        help="requests a worker holds while busy before it answers 503")
    parser.add_argument("--hide-tracebacks", action="store_true", default=bool(env.get("GARDEN_HIDE_TRACEBACKS")))
    parser.add_argument("--session", default="/garden/session.pkl")
    parser.add_argument("--metadata", default=None)
    parser.add_argument("--api", default="/garden/api", help="folder with garden.json and examples.json")
    parser.add_argument("--receive-socket", help=argparse.SUPPRESS)
    parser.add_argument("--final-metrics", help=argparse.SUPPRESS)  # where to leave the counts on stopping
    args = parser.parse_args(argv)
    if args.workers < 1 or args.queue < 1 or args.max_body < 1:
        parser.error("--workers, --queue and --max-body must be at least 1")
    args.metadata = args.metadata or os.path.join(os.path.dirname(os.path.abspath(args.session)), "metadata.json")
    args.api = os.path.abspath(args.api)
    info = _read_json(os.path.join(args.api, "garden.json")) or {}
    if args.timeout is None:
        args.timeout = float(env.get("GARDEN_TIMEOUT") or (info.get("limits") or {}).get("call_seconds")
                             or DEFAULT_TIMEOUT)
    listener = listening_socket(args)
    _drop_root()
    garden = Garden(args)
    # While the session loads, this process answers health checks itself.
    loading = Loop(listener, garden, 0, None)
    thread = threading.Thread(target=loading.run, name="gardenbuild-loading", daemon=True)
    thread.start()
    stop_requested = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop_requested.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    began = time.perf_counter()
    garden.load()
    if garden.status == "failed":
        print(f"gardenbuild: the session failed to load: {garden.error}", file=sys.stderr, flush=True)
        stop_requested.wait()
        loading.stop()
        thread.join(timeout=5)
        return 3
    print(f"gardenbuild: session loaded in {time.perf_counter() - began:.2f} s", file=sys.stderr, flush=True)
    loading.hand_over()
    thread.join()
    garden.status = "ready"  # from here on, in the workers
    for s, handler in previous.items():
        signal.signal(s, handler)
    if stop_requested.is_set():
        return 0
    code = watch(listener, garden, list(loading.conns.values()))
    if args.final_metrics:
        _write_json(args.final_metrics, {"pipelines": garden.metrics.totals()})
    return code


def _write_json(path: str, payload: Any) -> None:
    try:
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(payload, f)
        os.replace(path + ".tmp", path)
    except OSError as e:
        print(f"gardenbuild: could not write {path}: {e.strerror}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    from gardenbuild.runtime.serve import main as _main

    sys.exit(_main())
