"""Call pipelines of a built image: one fresh container per call, the runtime shim inside."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gardenbuild.backends import Backend
from gardenbuild.errors import BuildError, GardenError, UserError
from gardenbuild.runtime.protocol import parse_markers

PYTHON = "/opt/garden/venv/bin/python"


class PipelineError(GardenError):
    """The pipeline itself raised; the message carries its own traceback."""


@dataclass(frozen=True)
class Outcome:
    result: Any
    timings: dict[str, float]


def _parse(run: Any) -> tuple[list[Any], list[dict[str, Any]], str]:
    stdout = run.stdout.decode(errors="replace")
    stderr = run.stderr.decode(errors="replace")
    results, errors = parse_markers(stdout + "\n" + stderr)
    return results, errors, stderr


def call_pipeline(backend: Backend, image: str, pipeline: str, payload: bytes) -> Outcome:
    started = time.monotonic()
    run = backend.run(image, [PYTHON, "-m", "gardenbuild.runtime.call", pipeline], stdin=payload)
    total = time.monotonic() - started
    results, errors, stderr = _parse(run)
    if errors:
        raise _call_error(pipeline, errors[-1])
    if not results:
        raise BuildError(f"pipeline '{pipeline}' returned nothing (exit code {run.returncode})",
                         hint=stderr.strip()[-1000:] or None)
    payload_out = results[-1]
    timings = dict(payload_out.get("timings", {}))
    timings["total_s"] = round(total, 3)
    timings["container_s"] = round(max(total - timings.get("load_s", 0) - timings.get("call_s", 0), 0.0), 3)
    return Outcome(payload_out.get("result"), timings)


def _call_error(pipeline: str, err: dict[str, Any]) -> GardenError:
    """The runtime's error marker as the error a user sees: their input, or the pipeline's own failure."""
    if err.get("kind") in ("input", "usage"):  # input that is not JSON or does not fit the signature
        return UserError(err.get("message", str(err)), hint=err.get("hint"))
    if err.get("kind") != "pipeline-exception":  # the session did not load, or the result has no JSON form
        return BuildError(err.get("message", str(err)), hint=err.get("hint"))
    tb = (err.get("traceback") or "").rstrip()
    return PipelineError(f"pipeline '{pipeline}' raised {err.get('exception')}" + (f"\n{tb}" if tb else ""),
                         hint="the traceback above is the pipeline's own, from the notebook's cells")


def run_tests(backend: Backend, image: str) -> list[dict[str, Any]]:
    run = backend.run(image, [PYTHON, "-m", "gardenbuild.runtime.call", "--test"])
    results, errors, stderr = _parse(run)
    if errors or not results:
        detail = (errors[-1].get("message") or errors[-1].get("exception")) if errors else stderr.strip()[-1000:]
        raise BuildError(f"the pipeline tests could not run: {detail}")
    out = results[-1]
    return out["cases"] if isinstance(out, dict) and "cases" in out else out
