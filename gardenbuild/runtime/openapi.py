"""The OpenAPI 3.1 description of a served garden, made from its pipelines' signatures.

`schema(hint)` maps a type hint to JSON Schema (2020-12, which OpenAPI 3.1 uses):
``list[str]`` an array of strings, ``dict[str, float]`` an object of numbers,
``int | None`` anyOf an integer and null, ``Literal["a", "b"]`` an enum, numpy arrays
and pandas frames what `signature.convert` accepts for them; a hint it cannot read is
``{}`` (any value). `document` puts the routes of `serve` together: one
``POST /pipelines/{name}`` (and ``/batch``) per pipeline, its docstring as description,
the Gardenfile's test cases (those that passed the build) as examples. Standard library
only: it runs inside the image.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable
from typing import Any

from gardenbuild.runtime.signature import _UNION_TYPES, array_kind, hint_text, resolved_hints

__all__ = ["API_VERSION", "schema", "request_schema", "document"]

#: The version of the HTTP API (routes and bodies); the image's label advertises it.
API_VERSION = "1"

_NUMBERS = {"type": "array", "items": {"anyOf": [{"type": "number"}, {"type": "array"}]}}


def schema(hint: Any) -> dict[str, Any]:
    """JSON Schema of the JSON values that fit `hint` (see module docstring)."""
    if hint is inspect.Parameter.empty or hint is Any or hint is object or isinstance(hint, str):
        return {}
    if hint is None or hint is type(None):
        return {"type": "null"}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in _UNION_TYPES:
        return {"anyOf": [schema(a) for a in args]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    kind = array_kind(hint)
    if kind == "ndarray":
        return {**_NUMBERS, "description": f"nested lists of numbers ({hint_text(hint)})"}
    if kind == "DataFrame":
        return {"description": "a table: a list of row objects, or an object of column lists",
                "anyOf": [{"type": "array", "items": {"type": "object"}},
                          {"type": "object", "additionalProperties": {"type": "array"}}]}
    if kind == "Series":
        return {"type": "array", "description": "a list of values (pandas Series)"}
    base = origin or hint
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if base in simple:
        return {"type": simple[base]}
    import collections.abc as abc

    if base in (list, set, frozenset, abc.Sequence, abc.Iterable, abc.Collection, abc.MutableSequence, abc.Set):
        return {"type": "array", **({"items": schema(args[0])} if args else {})}
    if base is tuple:
        if not args or args[-1] is Ellipsis:
            return {"type": "array", **({"items": schema(args[0])} if args else {})}
        return {"type": "array", "prefixItems": [schema(a) for a in args], "minItems": len(args),
                "maxItems": len(args)}
    if base in (dict, abc.Mapping, abc.MutableMapping):
        return {"type": "object", **({"additionalProperties": schema(args[1])} if len(args) == 2 else {})}
    return {}  # a class of the notebook, a framework type: the pipeline decides


def _json_default(value: Any) -> tuple[bool, Any]:
    """(True, value) when a parameter's default has a JSON form."""
    try:
        return True, json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        return False, None


def request_schema(func: Callable[..., Any]) -> dict[str, Any]:
    """The body of ``POST /pipelines/{name}``: an object of the function's parameters."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return {"type": "object"}
    hints = resolved_hints(func)
    properties: dict[str, Any] = {}
    required = []
    free = False
    for name, param in sig.parameters.items():
        if param.kind is param.VAR_KEYWORD:
            free = True
            continue
        if param.kind in (param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
            continue
        prop = schema(hints.get(name, param.annotation))
        if param.default is param.empty:
            required.append(name)
        else:
            ok, default = _json_default(param.default)
            if ok:
                prop = {**prop, "default": default}
        properties[name] = prop
    out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": free}
    if required:
        out["required"] = required
    return out


def _return_schema(func: Callable[..., Any]) -> dict[str, Any]:
    hints = resolved_hints(func)
    if "return" in hints:
        return schema(hints["return"])
    try:
        return schema(inspect.signature(func).return_annotation)
    except (TypeError, ValueError):
        return {}


_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["type", "message"],
    "properties": {"type": {"type": "string"}, "message": {"type": "string"},
                   "parameter": {"type": "string", "description": "the parameter the input failed at (422)"},
                   "exception": {"type": "string"}, "traceback": {"type": "string"},
                   "index": {"type": "integer", "description": "the item of a batch"}}}}}

_TIMINGS = {"type": "object", "additionalProperties": {"type": "number"},
            "description": "seconds: queue_s (waiting for a worker), call_s (the pipeline), total_s"}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "the body is not JSON", 404: "no such pipeline", 413: "the body is over the server's limit",
            422: "the input does not fit the pipeline's signature; `parameter` names where",
            500: "the pipeline raised (its exception and traceback) or returned what JSON cannot hold",
            503: "the session is still loading, failed to load, or every worker is busy and the queue is full",
            504: "the call ran past the server's time limit and was stopped"}
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {str(c): {"description": text[c], **ref} for c in codes}


def _signature_text(name: str, func: Callable[..., Any]) -> str:
    """``name(a: list[str], b: float = 1.0) -> list[float]``, the hints resolved where they can be."""
    for resolve in (True, False):
        try:
            return f"{name}{inspect.signature(func, eval_str=resolve)}"
        except (TypeError, ValueError, NameError, SyntaxError, AttributeError):
            continue
    return name


def _summary(doc: str | None, fallback: str) -> tuple[str, str]:
    text = inspect.cleandoc(doc or "")
    first = text.split("\n\n", 1)[0].replace("\n", " ").strip()
    return (first or fallback)[:120], text or fallback


def document(garden: dict[str, Any], pipelines: list[tuple[str, Callable[..., Any], str]],
             examples: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document: `garden` (name, title, version, description), `pipelines`
    as (name, function, Gardenfile description), `examples` per pipeline ({input, expected})."""
    examples = examples or {}
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": _ERROR, "Timings": _TIMINGS}
    for name, func, description in pipelines:
        summary, doc = _summary(getattr(func, "__doc__", None), description or name)
        if description and description not in doc:
            doc = f"{description}\n\n{doc}" if doc != name else description
        signature = _signature_text(name, func)
        schemas[f"{name}.input"] = request_schema(func)
        output = _return_schema(func)
        schemas[f"{name}.output"] = {"type": "object", "required": ["output", "timings"],
                                     "properties": {"output": output, "timings": {"$ref": "#/components/schemas/Timings"}}}
        schemas[f"{name}.batch"] = {"type": "object", "required": ["outputs", "timings"], "properties": {
            "outputs": {"type": "array", "items": output}, "timings": {"$ref": "#/components/schemas/Timings"}}}
        cases = examples.get(name, [])
        request_examples = {f"test-{i + 1}": {"summary": f"test case {i + 1} of the Gardenfile", "value": c["input"]}
                            for i, c in enumerate(cases)}
        response_examples = {f"test-{i + 1}": {"value": {"output": c["expected"], "timings": {}}}
                             for i, c in enumerate(cases)}
        body = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{name}.input"},
            **({"examples": request_examples} if request_examples else {})}}}
        paths[f"/pipelines/{name}"] = {"post": {
            "operationId": name, "summary": summary, "description": f"{doc}\n\nSignature: `{signature}`",
            "tags": ["pipelines"], "requestBody": body,
            "responses": {"200": {"description": "the pipeline's output", "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{name}.output"},
                **({"examples": response_examples} if response_examples else {})}}},
                **_errors(400, 404, 413, 422, 500, 503, 504)}}}
        batch_example = [c["input"] for c in cases]
        paths[f"/pipelines/{name}/batch"] = {"post": {
            "operationId": f"{name}_batch", "summary": f"{summary} (several inputs in one request)",
            "description": f"A list of inputs as `POST /pipelines/{name}` takes them; the outputs in the same "
                           "order. A 422 or 500 names the item (`index`).",
            "tags": ["pipelines"],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}.input"}},
                **({"example": batch_example} if batch_example else {})}}},
            "responses": {"200": {"description": "one output per input", "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{name}.batch"}}}},
                **_errors(400, 404, 413, 422, 500, 503, 504)}}}
    status = {"type": "object", "properties": {"status": {"type": "string"}}}
    plain = {"content": {"application/json": {"schema": status}}}
    paths["/livez"] = {"get": {"operationId": "livez", "summary": "the server process answers", "tags": ["server"],
                               "responses": {"200": {"description": "live", **plain}}}}
    paths["/readyz"] = {"get": {"operationId": "readyz", "summary": "the session is loaded and calls are served",
                                "tags": ["server"], "responses": {"200": {"description": "ready", **plain},
                                                                  "503": {"description": "starting or failed", **plain}}}}
    paths["/health"] = {"get": {"operationId": "health", "tags": ["server"],
                                "summary": "starting | ready | failed, with the garden's name, version and image digest",
                                "responses": {"200": {"description": "the server's state", **plain}}}}
    paths["/metrics"] = {"get": {"operationId": "metrics", "tags": ["server"],
                                 "summary": "per pipeline: calls, errors, latency histogram (Prometheus text; "
                                            "?format=json for JSON)",
                                 "responses": {"200": {"description": "metrics",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
    info: dict[str, Any] = {"title": garden.get("title") or garden.get("name") or "garden",
                            "version": str(garden.get("version") or "0"),
                            "description": "\n\n".join(filter(None, [
                                garden.get("description"),
                                f"Served by gardenbuild (HTTP API {API_VERSION}); garden `{garden.get('name')}`."]))}
    if garden.get("license"):
        info["license"] = {"name": garden["license"], "identifier": garden["license"]}
    return {"openapi": "3.1.0", "info": info, "paths": paths, "components": {"schemas": schemas},
            "tags": [{"name": "pipelines", "description": "the garden's pipelines"},
                     {"name": "server", "description": "health and metrics"}]}
