#!/usr/bin/env python3
"""gardenbuild's server vs the usual way (FastAPI + uvicorn), serving the same session.

    python bench/serve_bench.py [--requests N] [--seconds S] [--clients N] [--repeat N] [--json] [--keep]

Two gardens are built (their images are removed at the end unless --keep): the flagship
example (`predict_solubility`, RDKit + scikit-learn) and a trivial one (`ping`, returns its
argument), so the figures separate the server's own cost from the model's. Each image is
served two ways, in the same container setup (buildah run, host network, loopback):

* **gardenbuild**: the image's own command, ``python -m gardenbuild.runtime.serve``;
* **the usual way**: `bench/serve_baseline_app.py`, a minimal FastAPI app under uvicorn,
  with FastAPI and uvicorn pip-installed on the host into a folder mounted on PYTHONPATH.

Figures, side by side: time from starting the container to the first 200 from /readyz;
warm call overhead beyond the function (client round trip minus the function's own
``call_s``, sequential requests on one keep-alive connection) p50 and p99; requests per
second with 1 and 2 workers (--clients client processes on keep-alive connections for
--seconds; the clients share the machine's cores with the server, on both sides alike);
memory (PSS, from /proc/PID/smaps_rollup) of each worker and of the whole server. Then
`gardenbuild run` wall time with a `gardenbuild serve` of the example running (warm) and
with --cold (a fresh container).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_bench as bb  # noqa: E402  (shared helpers: sh, say, Failed, machine)
from push_bench import free_port  # noqa: E402

REPO = bb.REPO
sys.path.insert(0, str(REPO))
from gardenbuild.backends.buildah import Buildah  # noqa: E402
from gardenbuild.engine.call import PYTHON  # noqa: E402

PING_CELLS = ["from gardenbuild import garden_pipeline\n",
              "@garden_pipeline\ndef ping(x: int = 0) -> int:\n    return x\n"]
WORKLOADS = {  # name: (pipeline, request body)
    "trivial": ("ping", {"x": 1}),
    "example": ("predict_solubility", {"smiles": ["CCO", "c1ccccc1"]}),
}


# --- a small HTTP/1.1 client: the same for both servers ----------------------------------

class Client:
    """One keep-alive connection; `post` returns (seconds, status, parsed JSON body)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def post(self, path: str, body: bytes) -> tuple[float, int, Any]:
        request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        began = time.perf_counter()
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(self.buf) < length:
            self._more()
        data, self.buf = self.buf[:length], self.buf[length:]
        seconds = time.perf_counter() - began
        return seconds, int(head.split(b" ", 2)[1]), json.loads(data)

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def _load(port: int, path: str, body: bytes, seconds: float, out: Any) -> None:
    client = Client(port)
    done, errors, end = 0, 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        _, status, _ = client.post(path, body)
        done += 1
        errors += status != 200
    client.close()
    out.put((done, errors))


def throughput(port: int, path: str, body: bytes, clients: int, seconds: float) -> dict[str, float]:
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_load, args=(port, path, body, seconds, out)) for _ in range(clients)]
    began = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - began
    done = sum(r[0] for r in results)
    return {"rps": done / wall, "requests": done, "errors": sum(r[1] for r in results)}


def latencies(port: int, path: str, body: bytes, n: int) -> dict[str, float]:
    client = Client(port)
    for _ in range(20):  # warm up
        client.post(path, body)
    overheads, totals = [], []
    for _ in range(n):
        seconds, status, answer = client.post(path, body)
        if status != 200:
            raise bb.Failed(f"{path} answered {status}: {answer}")
        totals.append(seconds)
        overheads.append(seconds - answer["timings"]["call_s"])
    client.close()
    q = statistics.quantiles(overheads, n=100)
    return {"overhead_p50_ms": statistics.median(overheads) * 1e3, "overhead_p99_ms": q[98] * 1e3,
            "total_p50_ms": statistics.median(totals) * 1e3}


# --- the two servers ----------------------------------------------------------------------

def server_pids(running: Any) -> list[int]:
    """The image's Python processes of a running server (a supervisor and its workers)."""
    out = []
    for pid in running.descendants():
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == PYTHON.encode():
                out.append(pid)
        except OSError:
            pass
    return out


def pss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start(side: str, image: str, pipeline: str, workers: int, pkgs: Path) -> tuple[Any, int, float]:
    """Start one server; (running, port, seconds until /readyz answered 200)."""
    port = free_port()
    if side == "gardenbuild":
        argv = [PYTHON, "-m", "gardenbuild.runtime.serve", "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(workers)]
        env, volumes = {}, []
    else:
        argv = [PYTHON, "-m", "uvicorn", "serve_baseline_app:app", "--app-dir", "/bench/app", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
        env = {"PYTHONPATH": "/bench/pkgs:/opt/garden/lib", "BENCH_PIPELINES": pipeline}  # the image's own path too
        volumes = [(pkgs, "/bench/pkgs", "ro"), (Path(__file__).resolve().parent, "/bench/app", "ro")]
    began = time.perf_counter()
    log = tempfile.TemporaryFile()
    running = Buildah().start(image, argv, env=env, volumes=volumes, network="host", stdout=log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if running.proc.poll() is not None:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-8:]
            raise bb.Failed(f"the {side} server exited ({running.proc.returncode}):\n  " + "\n  ".join(tail))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return running, port, time.perf_counter() - began
        except OSError:
            pass
        time.sleep(0.02)
    running.close()
    raise bb.Failed(f"the {side} server was not ready within 120 s")


def measure(side: str, image: str, workload: str, args: argparse.Namespace, pkgs: Path) -> dict[str, Any]:
    pipeline, payload = WORKLOADS[workload]
    path, body = f"/pipelines/{pipeline}", json.dumps(payload).encode()
    out: dict[str, Any] = {"ready_s": []}
    for workers in (1, 2):
        for attempt in range(args.repeat if workers == 1 else 1):
            running, port, ready = start(side, image, pipeline, workers, pkgs)
            try:
                if workers == 1:
                    out["ready_s"].append(ready)
                if attempt:
                    continue
                if workers == 1:
                    out.update(latencies(port, path, body, args.requests if workload == "trivial" else args.requests // 5))
                out[f"rps_{workers}"] = throughput(port, path, body, args.clients, args.seconds)
                pids = server_pids(running)
                total = sum(pss_mb(p) for p in pids)
                out[f"pss_total_mb_{workers}"] = total
                out[f"pss_worker_mb_{workers}"] = total / workers  # the supervisor's share spread over the workers
            finally:
                running.close()
    out["ready_s"] = statistics.median(out["ready_s"])
    bb.say(f"{side} {workload}: ready {out['ready_s']:.2f} s, overhead p50 {out['overhead_p50_ms']:.2f} ms, "
           f"{out['rps_1']['rps']:.0f}/{out['rps_2']['rps']:.0f} rps")
    return out


# --- gardenbuild run, warm and cold ---------------------------------------------------------

def run_walls(garden: Path, args: argparse.Namespace, env: dict[str, str]) -> dict[str, float]:
    pipeline, payload = WORKLOADS["example"]
    run = [sys.executable, "-m", "gardenbuild", "-q", "run", str(garden), pipeline, "--input", json.dumps(payload)]
    cold = [bb.sh([*run, "--cold"], env=env)[0] for _ in range(max(2, args.repeat))]
    served = bb.sh([sys.executable, "-m", "gardenbuild", "serve", str(garden), "--port", "0", "--detach", "--json"],
                   env=env)[1]
    port = json.loads(served.stdout)["port"]
    try:
        warm = [bb.sh(run, env=env)[0] for _ in range(5 * max(1, args.repeat))]
    finally:
        bb.sh([sys.executable, "-m", "gardenbuild", "serve", "--stop", str(port)], env=env, check=False)
    return {"cold_s": statistics.median(cold), "warm_s": statistics.median(warm), "warm_min_s": min(warm)}


# --- the report -----------------------------------------------------------------------------

def table(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"serve_bench: {m['nproc']} cores, {m['mem']}, Python {m['python']}, buildah {m['buildah']}, "
             f"git {m['git']}; FastAPI {r['baseline_versions']}",
             f"{'':44}{'gardenbuild':>14}{'FastAPI+uvicorn':>18}"]
    rows = [
        ("time to ready, s", "ready_s", "{:.2f}"),
        ("warm call overhead p50, ms", "overhead_p50_ms", "{:.2f}"),
        ("warm call overhead p99, ms", "overhead_p99_ms", "{:.2f}"),
        ("one call round trip p50, ms", "total_p50_ms", "{:.2f}"),
        ("requests/s, 1 worker", ("rps_1", "rps"), "{:.0f}"),
        ("requests/s, 2 workers", ("rps_2", "rps"), "{:.0f}"),
        ("memory per worker (PSS), MB, 1 worker", "pss_worker_mb_1", "{:.0f}"),
        ("memory per worker (PSS), MB, 2 workers", "pss_worker_mb_2", "{:.0f}"),
        ("memory of the server (PSS), MB, 2 workers", "pss_total_mb_2", "{:.0f}"),
    ]
    for workload in WORKLOADS:
        lines.append(f"{workload} ({WORKLOADS[workload][0]}):")
        for label, key, fmt in rows:
            cells = []
            for side in ("gardenbuild", "usual"):
                value = r[workload][side]
                for part in (key if isinstance(key, tuple) else (key,)):
                    value = value[part]
                cells.append(fmt.format(value))
            lines.append(f"  {label:<42}{cells[0]:>14}{cells[1]:>18}")
    w = r["run"]
    lines.append("gardenbuild run (the example), wall:")
    lines.append(f"  {'warm (a gardenbuild serve running), s':<42}{w['warm_s']:>14.2f}   (min {w['warm_min_s']:.2f})")
    lines.append(f"  {'cold (--cold: a fresh container), s':<42}{w['cold_s']:>14.2f}")
    errors = sum(r[wl][side][f"rps_{n}"]["errors"] for wl in WORKLOADS for side in ("gardenbuild", "usual") for n in (1, 2))
    lines.append(f"non-200 answers during the load runs: {errors}")
    return "\n".join(lines)


def build(folder: Path, env: dict[str, str]) -> dict[str, Any]:
    _, done = bb.sh([sys.executable, "-m", "gardenbuild", "build", str(folder), "--base-image", bb.GB_BASE, "--json"],
                    env=env)
    return json.loads(done.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000, help="sequential requests for the latency figures")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each throughput run")
    ap.add_argument("--clients", type=int, default=4, help="client processes in the throughput runs")
    ap.add_argument("--repeat", type=int, default=3, help="starts timed for time to ready (the median)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the images and the work folder")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    from helpers import write_garden  # the same small-garden writer the tests use

    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    env = {**os.environ, "GARDENBUILD_RUN_DIR": str(work / "run"), "GARDENBUILD_NO_USAGE": "1",
           "PYTHONPATH": str(REPO)}
    images: list[str] = []
    try:
        bb.say("installing FastAPI and uvicorn for the baseline (pip --target)")
        pkgs = work / "pkgs"
        bb.sh([sys.executable, "-m", "pip", "install", "-q", "--target", str(pkgs), "fastapi", "uvicorn"])
        versions = bb.sh([sys.executable, "-c", "import fastapi, uvicorn; print(fastapi.__version__, "
                          "'uvicorn', uvicorn.__version__)"], env={**os.environ, "PYTHONPATH": str(pkgs)})[1]
        bb.say("building the example and the trivial garden")
        example = shutil.copytree(bb.EXAMPLE, work / "solubility",
                                  ignore=shutil.ignore_patterns(".gardenbuild", ".ipynb_checkpoints"))
        ping = write_garden(work / "ping", PING_CELLS, ["ping"], name="bench-serve-ping")
        built = {"example": build(example, env), "trivial": build(ping, env)}
        # The example's images are the ones its own builds make: left as they are.
        session = json.loads((ping / ".gardenbuild" / "build.json").read_text())["session_image"]
        images = [built["trivial"]["image"], session]
        report: dict[str, Any] = {"machine": bb.machine(), "baseline_versions": versions.stdout.decode().strip()}
        for workload in WORKLOADS:
            report[workload] = {side: measure(side, built[workload]["image"], workload, args, pkgs)
                                for side in ("gardenbuild", "usual")}
        bb.say("gardenbuild run, warm and cold")
        report["run"] = run_walls(example, args, env)
    finally:
        if not args.keep:
            for image in images:
                subprocess.run(["buildah", "rmi", image], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bb.Failed as exc:
        print(f"serve_bench: {exc}", file=sys.stderr)
        sys.exit(1)
