"""Call pipelines of a built image: one fresh container per call, the runtime shim inside."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gardenbuild.backends import Backend, Limits
from gardenbuild.errors import BuildError, GardenError, UserError
from gardenbuild.runtime.protocol import parse_markers
from gardenbuild.units import format_size

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


#: What a call may use when neither the garden nor the caller says.
DEFAULT_LIMITS = Limits(seconds=600, memory=8 * 2**30)


class LimitExceeded(GardenError):
    """A pipeline call or a test ran past a limit and was stopped."""


def limits_of(summary: Mapping[str, Any] | None, *, seconds: float | None = None, memory: int | None = None) -> Limits:
    """A call's limits: what the caller asks, else what the garden's build recorded, else the defaults."""
    recorded = (summary or {}).get("limits") or {}
    return Limits(seconds=seconds or recorded.get("call_seconds") or DEFAULT_LIMITS.seconds,
                  memory=memory or recorded.get("call_memory") or DEFAULT_LIMITS.memory)


def _check_limits(run: Any, what: str, limits: Limits) -> None:
    if run.limit == "memory":
        raise LimitExceeded(f"{what} used more than its memory limit of {format_size(limits.memory or 0)} and was stopped",
                            hint="raise it with --memory SIZE, or call_memory in the [limits] table of Gardenfile.toml")
    if run.limit == "time":
        raise LimitExceeded(f"{what} ran past its time limit of {limits.seconds:g} s and was stopped",
                            hint="raise it with --timeout SECONDS, or call_seconds in the [limits] table of Gardenfile.toml")


#: How a container asks for every NVIDIA GPU of the host (a CDI device, as the NVIDIA
#: Container Toolkit names them: `nvidia-ctk cdi generate` writes the spec).
GPU_DEVICE = "nvidia.com/gpu=all"


def gpu_devices(accelerator: str, *, dev: Path = Path("/dev")) -> list[str]:
    """The devices a call of a garden built for `accelerator` needs; a clear error when the
    garden needs a GPU and this machine has none."""
    if accelerator != "cuda":
        return []
    if (dev / "nvidiactl").exists() or any(dev.glob("nvidia[0-9]*")):
        return [GPU_DEVICE]
    raise UserError("this garden is built for CUDA (accelerator = \"cuda\") and this machine has no NVIDIA GPU "
                    f"(no {dev}/nvidiactl)",
                    hint="run it where there is one (with the NVIDIA Container Toolkit's CDI spec: nvidia-ctk cdi "
                         "generate), on a GPU endpoint through Globus Compute, or here on the CPU with --cpu")


def call_pipeline(backend: Backend, image: str, pipeline: str, payload: bytes, limits: Limits = DEFAULT_LIMITS,
                  devices: list[str] | None = None) -> Outcome:
    """Call `pipeline` in a fresh, confined container of `image` (see `Backend.run`)."""
    started = time.monotonic()
    run = backend.run(image, [PYTHON, "-m", "gardenbuild.runtime.call", pipeline], stdin=payload, limits=limits,
                      devices=devices or ())
    total = time.monotonic() - started
    _check_limits(run, f"pipeline '{pipeline}'", limits)
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


def tests_limits(limits: Limits, n: int) -> Limits:
    """The limits of one process running `n` test cases: `limits`'s time once per case."""
    return Limits(seconds=(limits.seconds or 0) * max(n, 1) or None, memory=limits.memory, pids=limits.pids)


def tests_output(text: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """What ``python -m gardenbuild.runtime.call --test`` printed in `text`: its result
    (``{"cases", "timings"}``) or None when it gave none, and the errors it reported."""
    results, errors = parse_markers(text)
    out = results[-1] if results and isinstance(results[-1], dict) and "cases" in results[-1] else None
    return out, errors


def run_tests(backend: Backend, image: str, cases: list[dict[str, Any]],
              limits: Limits = DEFAULT_LIMITS, phases: Any = None) -> list[dict[str, Any]]:
    """Run test `cases` (the Gardenfile's, see `PipelineSpec.test_cases`) in one confined
    container of `image`, which gets `limits`'s time once per case. `phases` (a
    `gardenbuild.engine.timing.Phases`) gets the container's start, the session's load and the cases."""
    whole = tests_limits(limits, len(cases))
    started = time.perf_counter()
    run = backend.run(image, [PYTHON, "-m", "gardenbuild.runtime.call", "--test"], limits=whole,
                      stdin=json.dumps(cases).encode())
    wall = time.perf_counter() - started
    _check_limits(run, "the pipeline tests", whole)
    stderr = run.stderr.decode(errors="replace")
    out, errors = tests_output(run.stdout.decode(errors="replace") + "\n" + stderr)
    if errors or out is None:
        detail = (errors[-1].get("message") or errors[-1].get("exception")) if errors else stderr.strip()[-1000:]
        raise BuildError(f"the pipeline tests could not run: {detail}")
    timings = out.get("timings", {})
    if phases is not None and "total_s" in timings:
        inside, load = timings["total_s"], timings.get("load_s", 0.0)
        phases.add("container start and stop, Python start", wall - inside)
        phases.add("session load", load)
        phases.add(f"{len(cases)} test case(s)", inside - load)
    return out["cases"]
