"""The usual way to serve a notebook's session: a minimal FastAPI app under uvicorn.

Loaded by `serve_bench.py` inside the same garden image (FastAPI and uvicorn mounted on
PYTHONPATH), so both servers call the same functions from the same session file:

    python -m uvicorn serve_baseline_app:app --app-dir /bench/app --workers N ...

Each uvicorn worker imports this module, so each loads the session itself (as such apps do).
The routes mirror gardenbuild's: ``POST /pipelines/{name}`` with the keyword arguments as a
JSON object, ``{"output", "timings": {"call_s"}}`` back; ``GET /readyz``. The handler is a
plain ``def`` (FastAPI runs it in its thread pool), as one writes it for blocking model code.
"""

from __future__ import annotations

import os
import time
from typing import Any

import dill
from fastapi import Body, FastAPI, HTTPException

SESSION = os.environ.get("BENCH_SESSION", "/garden/session.pkl")
PIPELINES = os.environ.get("BENCH_PIPELINES", "").split(",")

import __main__  # noqa: E402

dill.load_module(SESSION)  # into __main__, as dill.load_session does (it returns None then)
namespace = vars(__main__)
functions = {name: namespace[name] for name in PIPELINES if name}
app = FastAPI(title="baseline")


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/pipelines/{name}")
def call(name: str, arguments: dict[str, Any] = Body(...)) -> dict[str, Any]:
    func = functions.get(name)
    if func is None:
        raise HTTPException(404, f"no pipeline {name!r}")
    began = time.perf_counter()
    output = func(**arguments)
    return {"output": output, "timings": {"call_s": time.perf_counter() - began}}
