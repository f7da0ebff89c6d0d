"""Call a resolved garden's pipelines on this machine: through a running `gardenbuild serve`
of the same image when there is one (warm), else in a fresh container of the image.

Results are JSON values decoded here from the JSON the image printed or served: no
pickle ever travels from a garden into the caller's process.
"""

from __future__ import annotations

import time
from typing import Any

from gardenbuild.consumer.resolve import Resolved
from gardenbuild.errors import GardenError, UserError


def limits(resolved: Resolved, *, seconds: float | None = None, memory: int | None = None) -> Any:
    """A call's limits: what the caller asks, else the garden's own, else the defaults."""
    from gardenbuild.engine.call import limits_of

    recorded = resolved.summary or {"limits": resolved.card.get("limits") or {}}
    return limits_of(recorded, seconds=seconds, memory=memory)


def warm_server(resolved: Resolved, cold: bool = False) -> Any:
    if cold:
        return None
    from gardenbuild.engine.serve import ready_server

    return ready_server(set(resolved.image_ids))


def require_local(resolved: Resolved) -> str:
    if not resolved.image:
        raise UserError(f"{resolved.ref.text} is not in local storage", hint=f"run: gardenbuild pull {resolved.ref.text}")
    return resolved.image


def call(resolved: Resolved, pipeline: str, payload: bytes, *, call_limits: Any, cpu: bool = False, cold: bool = False,
         via: str = "run", reporter: Any = None) -> tuple[Any, Any]:
    """Call ``pipeline`` with ``payload`` (a JSON object's bytes); returns (Outcome, server or None)."""
    from gardenbuild.catalog import record_usage

    resolved.pipeline(pipeline)
    image = require_local(resolved)
    server = warm_server(resolved, cold)
    started = time.monotonic()
    try:
        if server is not None:
            from gardenbuild.engine.serve import call_server

            outcome = call_server(server, pipeline, payload, call_limits.seconds or 600)
        else:
            from gardenbuild.backends.buildah import Buildah
            from gardenbuild.engine.call import call_pipeline, gpu_devices

            devices = [] if cpu else gpu_devices(resolved.card.get("accelerator", "cpu"))
            outcome = call_pipeline(Buildah(reporter=reporter), image, pipeline, payload, call_limits, devices)
    except GardenError as exc:
        if not isinstance(exc, UserError):  # a call that ran and failed counts; input refused at the door does not
            record_usage(resolved.name, pipeline, via, errors=1, seconds=time.monotonic() - started, reporter=reporter)
        raise
    record_usage(resolved.name, pipeline, via, seconds=outcome.timings.get("call_s", 0.0), reporter=reporter)
    return outcome, server


def test(resolved: Resolved, cases: list[dict[str, Any]], *, call_limits: Any, cold: bool = False,
         reporter: Any = None) -> tuple[list[dict[str, Any]], Any]:
    """Run test cases (``pipeline, index, input, expected, tolerance``); returns (cases, server or None)."""
    image = require_local(resolved)
    unknown = sorted({c["pipeline"] for c in cases} - {p["name"] for p in resolved.pipelines})
    if unknown:
        raise UserError(f"the image was built without pipeline {', '.join(unknown)}, which the tests call",
                        hint="build the garden again")
    server = warm_server(resolved, cold)
    if server is not None:
        from gardenbuild.engine.serve import test_server

        return test_server(server, cases, call_limits.seconds or 600), server
    from gardenbuild.backends.buildah import Buildah
    from gardenbuild.engine.call import run_tests

    return run_tests(Buildah(reporter=reporter), image, cases, call_limits), None


def card_cases(resolved: Resolved) -> list[dict[str, Any]]:
    """The test cases the garden's card carries (those the image was published with)."""
    return [{"pipeline": p["name"], "index": i, "input": t["input"], "expected": t["expected"],
             "tolerance": t.get("tolerance", 0.0)}
            for p in resolved.pipelines for i, t in enumerate(p.get("tests") or [])]
