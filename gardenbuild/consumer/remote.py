"""Call a resolved garden's pipelines on a Globus Compute endpoint, in its pinned image.

The function id of each pipeline and the image digest come from what publish recorded
(the local catalog, or the DOI's DataCite record); ``user_endpoint_config`` names the
image by digest, so the endpoint starts workers in exactly that image. The SDK's own
``Executor`` submits (``submit_to_registered_function``). Arguments go out as JSON, and
results come back as JSON only: the executor asks the endpoint for ``JSONData`` results
and refuses to deserialize anything else, so no pickle travels from a garden to the caller.
"""

from __future__ import annotations

import re
from concurrent.futures import Future
from typing import Any

from gardenbuild.consumer.resolve import Resolved
from gardenbuild.errors import GardenError, UserError

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_EXECUTORS: dict[tuple[str, str, str], Any] = {}


class RemoteError(GardenError):
    """A Globus Compute task failed, or the service refused it."""


def logged_in_client() -> Any:
    """A Compute client of the logged-in user (or service account); a clear error without one."""
    from gardenbuild.publish import auth, globus

    app = auth.make_app()
    auth.require_login(app)
    return globus.compute_client(app)


def serializer() -> Any:
    """JSON out, and only JSON back in: a result in any other form (dill, code) is refused
    before it is deserialized. (The SDK's own allowlist must admit a code deserializer too.)"""
    from globus_compute_sdk.errors import SerdeError
    from globus_compute_sdk.serialize import ComputeSerializer, JSONData

    class JSONOnly(ComputeSerializer):
        def deserialize(self, payload: str) -> Any:
            if not isinstance(payload, str) or not payload.startswith(JSONData.identifier):
                head = payload.split("\n", 1)[0] if isinstance(payload, str) else type(payload).__name__
                raise SerdeError(f"a garden's result must be JSON; refused a payload of kind {head!r} unread")
            return super().deserialize(payload)

    return JSONOnly(strategy_data=JSONData())


def executor(endpoint: str, config: dict[str, str], client: Any = None) -> Any:
    """One SDK ``Executor`` per endpoint and image config, kept for the process's life."""
    import json

    from globus_compute_sdk import Executor
    from globus_compute_sdk.serialize import JSONData

    key = (endpoint, json.dumps(config, sort_keys=True), str(id(client)) if client is not None else "")
    if key not in _EXECUTORS:
        _EXECUTORS[key] = Executor(endpoint_id=endpoint, client=client or logged_in_client(), user_endpoint_config=config,
                                   result_serializers=[JSONData()], serializer=serializer())
    return _EXECUTORS[key]


def target_endpoint(endpoint: str) -> str:
    if not _UUID.match(endpoint or ""):
        raise UserError(f"endpoint {endpoint!r} is not a Globus Compute endpoint id (a UUID)",
                        hint="`globus-compute-endpoint list` on the cluster shows its endpoints' ids")
    return endpoint


def check_target(endpoint: str, container_type: str) -> None:
    """A malformed endpoint id or an unknown container type: one clear error, before anything runs."""
    from gardenbuild.publish.globus import check_container_type

    target_endpoint(endpoint)
    check_container_type(container_type)


def target(resolved: Resolved, pipeline: str, endpoint: str, container_type: str) -> tuple[str, dict[str, str]]:
    """(function id, user_endpoint_config) for calling ``pipeline`` remotely; clear errors first."""
    from gardenbuild.publish.globus import user_endpoint_config

    resolved.pipeline(pipeline)
    check_target(endpoint, container_type)
    function_id = resolved.function_ids.get(pipeline)
    if not function_id:
        raise UserError(f"{resolved.name}'s pipeline {pipeline} is not registered with Globus Compute",
                        hint="its publisher registers it with `gardenbuild publish --globus`; or call it locally")
    if not resolved.image_ref:
        raise UserError(f"{resolved.name} is in no registry, so no endpoint can run its image",
                        hint="publish it with --registry first")
    return function_id, user_endpoint_config(resolved.image_ref, container_type,
                                             gpu=resolved.card.get("accelerator") == "cuda")


def submit(resolved: Resolved, pipeline: str, arguments: dict[str, Any], *, endpoint: str,
           container_type: str = "docker", client: Any = None) -> Future:
    function_id, config = target(resolved, pipeline, endpoint, container_type)
    from gardenbuild.publish.auth import translate

    try:
        return executor(endpoint, config, client).submit_to_registered_function(function_id, kwargs=arguments)
    except GardenError:
        raise
    except Exception as exc:  # noqa: BLE001 - SDK and HTTP errors alike are translated
        raise translate(exc, None, f"submitting {pipeline} to endpoint {endpoint}") from None


def call_all(resolved: Resolved, pipeline: str, calls: list[dict[str, Any]], *, endpoint: str,
             container_type: str = "docker", timeout: float | None = None, client: Any = None) -> list[Any]:
    """Every call submitted at once (the SDK's Executor batches them into few requests, and
    the endpoint runs them side by side), then each result in order; the first failure raises."""
    futures = [submit(resolved, pipeline, arguments, endpoint=endpoint, container_type=container_type, client=client)
               for arguments in calls]
    try:
        return [wait(future, pipeline, timeout) for future in futures]
    finally:
        for future in futures:
            future.cancel()  # the ones not waited for, after a failure: no result is read for them


def wait(future: Future, pipeline: str, timeout: float | None = None) -> Any:
    """The task's result; a failure of the pipeline itself as `RemoteError` with its traceback."""
    from concurrent.futures import TimeoutError as FutureTimeout

    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        raise RemoteError(f"{pipeline} gave no result within {timeout:g} s", hint="the task goes on; wait longer") from None
    except GardenError:
        raise
    except Exception as exc:  # noqa: BLE001
        text = str(exc)
        if "endpoint" in text.lower() and ("offline" in text.lower() or "not found" in text.lower()):
            raise RemoteError(f"the endpoint cannot run {pipeline}: {text.splitlines()[0]}",
                              hint="check the endpoint id, and that the endpoint is online") from None
        raise RemoteError(f"{pipeline} failed on Globus Compute: {type(exc).__name__}\n{text}".rstrip(),
                          hint="the traceback above is the task's own") from None
