"""The server's pure parts: HTTP parsing, metrics, the OpenAPI document (validated with a
real OpenAPI validator). The server itself is tested over real HTTP in test_serve.py."""

from __future__ import annotations

import argparse
import http.client as httpc
import json
import queue
import re
import socket
import threading
from typing import Literal, Optional

import jsonschema
import pytest
from openapi_spec_validator import validate

from gardenbuild.engine.serve import error_of, server_argv
from gardenbuild.errors import BuildError, UserError
from gardenbuild.runtime import openapi
from gardenbuild.runtime.serve import (BUCKETS, Garden, HTTPError, Loop, Metrics, bound_socket, parse_head,
                                       render_response)


# ---------------------------------------------------------------- HTTP


def test_a_request_head_is_parsed():
    head = parse_head(b"POST /pipelines/echo%20x?format=json HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n"
                      b"Connection: close")
    assert (head.method, head.path, head.query, head.version) == ("POST", "/pipelines/echo x", {"format": ["json"]},
                                                                  "HTTP/1.1")
    assert head.headers == {"host": "a", "content-length": "12", "connection": "close"}
    assert head.body_length(100) == 12
    assert not head.keep_alive
    assert parse_head(b"GET / HTTP/1.1").keep_alive
    assert not parse_head(b"GET / HTTP/1.0").keep_alive
    assert parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive").keep_alive


@pytest.mark.parametrize("raw, status", [
    (b"GARBAGE", 400),
    (b"GET / HTTP/1.1 extra", 400),
    (b"GET / HTTP/2.0", 505),
    (b"GET / HTTP/1.1\r\nno colon here", 400),
    (b"GET / HTTP/1.1\r\n : empty name", 400),
])
def test_a_malformed_head_is_a_clear_error(raw, status):
    with pytest.raises(HTTPError) as caught:
        parse_head(raw)
    assert caught.value.status == status
    assert caught.value.payload()["error"]["message"]


@pytest.mark.parametrize("headers, status", [
    (b"Transfer-Encoding: chunked", 411),
    (b"Content-Length: twelve", 400),
    (b"Content-Length: -1", 400),
    (b"Content-Length: 101", 413),
])
def test_a_body_that_cannot_be_taken_is_refused_before_it_is_read(headers, status):
    head = parse_head(b"POST /pipelines/x HTTP/1.1\r\n" + headers)
    with pytest.raises(HTTPError) as caught:
        head.body_length(100)
    assert caught.value.status == status
    if status == 413:
        assert caught.value.extra["limit"] == 100 and "--max-body" in caught.value.message


def test_no_content_length_is_an_empty_body():
    assert parse_head(b"POST /pipelines/x HTTP/1.1").body_length(100) == 0


def test_a_response_carries_its_length_and_connection():
    data = render_response(422, b'{"a":1}', keep_alive=False, headers=(("Retry-After", "1"),))
    head, body = data.split(b"\r\n\r\n")
    assert body == b'{"a":1}'
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 422 Unprocessable Content"
    assert {"Content-Length: 7", "Connection: close", "Retry-After: 1", "Content-Type: application/json"} <= set(lines)


# ---------------------------------------------------------------- metrics


def test_metrics_sum_the_workers_slots_into_a_prometheus_histogram():
    m = Metrics(["a", "b"], slots=2)
    m.record(0, "a", 0.0005, False)
    m.record(1, "a", 0.2, False)
    m.record(1, "a", 99.0, True)  # past the last bucket: only +Inf
    m.record(0, "b", 0.003, True)
    totals = m.totals()
    assert (totals["a"]["calls"], totals["a"]["errors"]) == (3, 1)
    assert totals["a"]["seconds"] == pytest.approx(99.2005)
    assert (totals["b"]["calls"], totals["b"]["errors"]) == (1, 1)
    text = m.prometheus({"garden_ready": 1.0})
    assert 'garden_pipeline_calls_total{pipeline="a"} 3' in text
    assert 'garden_pipeline_errors_total{pipeline="b"} 1' in text
    buckets = [(le, int(n)) for le, n in re.findall(r'duration_seconds_bucket\{pipeline="a",le="([^"]+)"\} (\d+)', text)]
    assert [le for le, _ in buckets] == [f"{b:g}" for b in BUCKETS] + ["+Inf"]
    counts = [n for _, n in buckets]
    assert counts == sorted(counts), "buckets are cumulative"
    assert counts[0] == 1 and counts[-2] == 2 and counts[-1] == 3
    assert 'garden_pipeline_duration_seconds_count{pipeline="a"} 3' in text
    assert "garden_ready 1" in text
    assert text.endswith("\n")


def test_deadlines_are_per_slot():
    m = Metrics(["a"], slots=3)
    m.set_deadline(1, 123.5)
    assert [m.deadline(s) for s in range(3)] == [0.0, 123.5, 0.0]
    m.record(1, "a", 0.1, False)
    assert m.deadline(1) == 123.5  # counts do not overwrite it


# ---------------------------------------------------------------- from loading to serving


def test_connections_opened_while_loading_are_handed_to_the_worker(tmp_path):
    """Real sockets on loopback, the two loops in threads (the fork is test_serve's): a
    client that polled /readyz on a kept-alive connection, and one half-way through its
    request, are both answered by the worker after the hand-over; /readyz said 503 until then."""
    args = argparse.Namespace(api=str(tmp_path), metadata=str(tmp_path / "metadata.json"), workers=1, queue=4,
                              max_body=1024, timeout=5.0)
    garden = Garden(args)
    listener = bound_socket("127.0.0.1", 0)
    listener.setblocking(False)
    port = listener.getsockname()[1]

    def running(loop: Loop) -> threading.Thread:
        thread = threading.Thread(target=loop.run, daemon=True)
        thread.start()
        return thread

    def readyz(conn: httpc.HTTPConnection) -> tuple[int, dict]:
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        return response.status, json.loads(response.read())

    loading = Loop(listener, garden, 0, None)
    thread = running(loading)
    kept = httpc.HTTPConnection("127.0.0.1", port, timeout=5)
    half = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        assert readyz(kept) == (503, {"status": "starting"})
        half.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
        loading.hand_over()
        thread.join(timeout=5)
        assert not thread.is_alive() and len(loading.conns) == 2
        garden.status = "ready"
        serving = Loop(listener, garden, 0, queue.Queue(), loading.conns.values())
        thread = running(serving)
        assert readyz(kept) == (200, {"status": "ready"})
        half.sendall(b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := half.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"status":"ready"}')
        serving.stop()
        thread.join(timeout=5)
        assert not thread.is_alive()
    finally:
        kept.close()
        half.close()
        listener.close()


# ---------------------------------------------------------------- OpenAPI


class Model:
    pass


@pytest.mark.parametrize("hint, expected", [
    (str, {"type": "string"}),
    (int, {"type": "integer"}),
    (float, {"type": "number"}),
    (bool, {"type": "boolean"}),
    (list[str], {"type": "array", "items": {"type": "string"}}),
    (list, {"type": "array"}),
    (dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
    (tuple[int, str], {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2,
                       "maxItems": 2}),
    (Optional[int], {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
    (int | None, {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
    (Literal["a", "b"], {"enum": ["a", "b"]}),
    (Model, {}),
    ("NotResolvable", {}),
])
def test_type_hints_become_json_schema(hint, expected):
    assert openapi.schema(hint) == expected


def predict(smiles: list[str], scale: float = 1.0, model: Model | None = None) -> list[float]:
    """Predict a number per SMILES.

    Longer text that says more.
    """
    return [scale * len(s) for s in smiles]


def anything(x, **options):
    return x


def document():
    return openapi.document(
        {"name": "demo", "title": "Demo garden", "version": "1.2.0", "description": "About it.", "license": "MIT"},
        [("predict", predict, "Predicts numbers."), ("anything", anything, "")],
        {"predict": [{"input": {"smiles": ["CC", "C"]}, "expected": [2.0, 1.0]}]})


def test_the_openapi_document_is_valid_openapi_3_1():
    doc = document()
    validate(doc)  # raises on anything the OpenAPI 3.1 schema rejects
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] == "Demo garden" and doc["info"]["version"] == "1.2.0"
    assert set(doc["paths"]) >= {"/pipelines/predict", "/pipelines/predict/batch", "/livez", "/readyz", "/health",
                                 "/metrics"}


def test_the_openapi_document_carries_signatures_docstrings_and_test_cases():
    doc = document()
    post = doc["paths"]["/pipelines/predict"]["post"]
    assert post["summary"] == "Predict a number per SMILES."
    assert "Longer text that says more." in post["description"] and "Predicts numbers." in post["description"]
    assert "predict(smiles: list[str], scale: float = 1.0" in post["description"]
    body = doc["components"]["schemas"]["predict.input"]
    assert body["properties"]["smiles"] == {"type": "array", "items": {"type": "string"}}
    assert body["properties"]["scale"] == {"type": "number", "default": 1.0}
    assert body["properties"]["model"] == {"anyOf": [{}, {"type": "null"}], "default": None}
    assert body["required"] == ["smiles"] and body["additionalProperties"] is False
    example = post["requestBody"]["content"]["application/json"]["examples"]["test-1"]["value"]
    assert example == {"smiles": ["CC", "C"]}
    jsonschema.validate(example, body)  # the garden's own test case fits the schema it documents
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"smiles": "CC"}, body)
    response = post["responses"]["200"]["content"]["application/json"]["examples"]["test-1"]["value"]
    assert response["output"] == [2.0, 1.0]
    assert set(post["responses"]) == {"200", "400", "404", "413", "422", "500", "503", "504"}
    free = doc["components"]["schemas"]["anything.input"]
    assert free["properties"] == {"x": {}} and free["additionalProperties"] is True


# ---------------------------------------------------------------- the client side


def test_server_errors_become_the_errors_run_shows():
    assert isinstance(error_of("p", 422, {"error": {"message": "bad", "parameter": "x"}}), UserError)
    crashed = error_of("p", 500, {"error": {"type": "pipeline-exception", "exception": "ValueError",
                                            "message": "pipeline 'p' raised ValueError: m",
                                            "traceback": "Traceback ...\nValueError: m"}})
    assert crashed.message.startswith("pipeline 'p' raised ValueError: m\nTraceback")
    assert "time limit" in error_of("p", 504, {"error": {"message": "ran past the time limit"}}).message
    assert isinstance(error_of("p", 503, "not json"), BuildError)


def test_the_server_command_passes_only_what_was_set():
    argv = server_argv(workers=2, timeout=None, max_body=None, hide_tracebacks=False)
    assert argv[-2:] == ["--workers", "2"] and "--timeout" not in argv
    argv = server_argv(workers=1, timeout=2.5, max_body=1024, hide_tracebacks=True, queue=3)
    assert {"--timeout", "2.5", "--max-body", "1024", "--hide-tracebacks", "--queue", "3"} <= set(argv)
