"""`gardenbuild serve`: a built garden's HTTP API on this machine."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

from gardenbuild.cli.common import add_json, backend, emit
from gardenbuild.errors import BuildError, UserError
from gardenbuild.report import Reporter

DEFAULT_PORT = 8080


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535)")
    return port


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def add_parsers(sub: Any) -> None:
    from gardenbuild.cli.build import add_limits

    p = sub.add_parser("serve", help="serve a built garden's pipelines over HTTP (OpenAPI, health, metrics)")
    p.add_argument("dir", nargs="?", default=".", metavar="REF",
                   help="the garden folder (default .), or a DOI, an image or a name")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port to listen on (default 8080; 0: any free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--workers", type=_positive, default=1, help="worker processes, forked once the session is loaded")
    p.add_argument("--max-body", metavar="SIZE", help="largest request body (default 16MiB)")
    p.add_argument("--queue", type=_positive, default=64, metavar="N",
                   help="requests each worker holds while busy; past that the server answers 503 (default 64)")
    p.add_argument("--hide-tracebacks", action="store_true", help="500 answers name the exception, not its traceback")
    p.add_argument("--ready-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="how long the session may take to load (default 600)")
    p.add_argument("--cpu", action="store_true", help="serve a garden built for CUDA on the CPU")
    p.add_argument("--detach", action="store_true", help="serve in the background; `serve --stop` ends it")
    p.add_argument("--stop", nargs="?", const="all", metavar="PORT", help="stop the detached server on PORT (or all)")
    p.add_argument("--list", action="store_true", help="list the servers running on this machine")
    add_limits(p)
    add_json(p)


def _stop(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.engine.serve import stop_servers

    port = None if args.stop == "all" else _port(args.stop)
    stopped = stop_servers(port, reporter)
    if not stopped:
        raise UserError("no garden server runs on this machine" + (f" on port {port}" if port is not None else ""),
                        hint="gardenbuild serve --list shows the servers")
    emit(args, {"stopped": [s.as_json() for s in stopped]},
         "\n".join(f"stopped {s.garden} at {s.url}" for s in stopped))
    return 0


def _list(args: argparse.Namespace) -> int:
    from gardenbuild.engine.serve import servers

    found = servers()
    emit(args, {"servers": [s.as_json() for s in found]},
         "\n".join(f"{s.url}  {s.garden}  {s.image}  ({s.workers} worker(s), pid {s.pid})" for s in found)
         or "no garden server runs on this machine")
    return 0


def _detach(args: argparse.Namespace, reporter: Reporter) -> int:
    """Start this same command without --detach in a session of its own; wait until it serves."""
    from gardenbuild.engine.serve import bind, servers, state_dir

    port = args.port
    if port == 0:  # the child must listen where the parent says: pick a free one now
        probe = bind(args.host, 0)
        port = probe.getsockname()[1]
        probe.close()
    state_dir().mkdir(parents=True, exist_ok=True)
    log = state_dir() / f"serve-{port}.log"
    argv = [a for a in sys.argv[1:] if a not in ("--detach",)]
    argv = [sys.executable, "-m", "gardenbuild", *_with_port(argv, port)]
    with log.open("wb") as out:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                 env={**os.environ, "GARDENBUILD_SERVE_LOG": str(log)})
    deadline = time.monotonic() + args.ready_timeout + 30
    while time.monotonic() < deadline:
        found = [s for s in servers() if s.port == port and s.pid == child.pid]
        if found:
            s = found[0]
            emit(args, s.as_json(), f"serving {s.garden} at {s.url} (in the background; log {log}; "
                                    f"`gardenbuild serve --stop {port}` ends it)")
            return 0
        if child.poll() is not None:
            text = log.read_text(errors="replace").strip().splitlines()
            errors = [line for line in text if line.startswith(("error:", "hint:"))]
            raise BuildError(f"the server did not start (exit code {child.returncode})",
                             hint="\n".join(errors[-2:] or text[-5:]) or f"see {log}")
        time.sleep(0.1)
    child.terminate()
    raise BuildError(f"the server did not get ready within {args.ready_timeout:g} s", hint=f"see {log}")


def _with_port(argv: list[str], port: int) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--port":
            skip = True
            continue
        if a.startswith("--port="):
            continue
        out.append(a)
    return [*out, "--port", str(port)]


def cmd_serve(args: argparse.Namespace, reporter: Reporter) -> int:
    if args.stop:
        return _stop(args, reporter)
    if args.list:
        return _list(args)
    from gardenbuild.cli.build import call_limits, target
    from gardenbuild.units import parse_size

    try:
        max_body = parse_size(args.max_body) if args.max_body else None
    except ValueError as exc:
        raise UserError(f"--max-body: {exc}") from None
    resolved = target(args, reporter)
    if args.detach:
        return _detach(args, reporter)
    from gardenbuild.backends import Limits
    from gardenbuild.engine.call import gpu_devices
    from gardenbuild.engine.serve import Serving, serve

    call = call_limits(args, resolved)
    # The memory limit holds for the whole server: every worker may use a call's worth.
    limits = Limits(seconds=None, memory=(call.memory or 0) * args.workers or None, pids=call.pids)
    devices = [] if args.cpu else gpu_devices(resolved.card.get("accelerator", "cpu"))
    serving = Serving(backend(reporter), resolved.image, resolved.image, resolved.name, host=args.host,
                      port=args.port, workers=args.workers, limits=limits, devices=devices,
                      digest=resolved.digest, reporter=reporter, timeout=call.seconds, max_body=max_body,
                      queue=args.queue,
                      hide_tracebacks=args.hide_tracebacks, log=os.environ.get("GARDENBUILD_SERVE_LOG"))
    reporter.info(f"starting {resolved.image_ref or resolved.image} ({args.workers} worker(s)) ...")

    def announce(s: Serving) -> None:
        emit(args, {"url": s.url, "port": s.port, "image": s.image, "garden": s.garden, "workers": s.workers},
             f"serving {s.garden} at {s.url}  (OpenAPI: {s.url}/openapi.json; Ctrl-C stops it)")
        sys.stdout.flush()

    code = serve(serving, ready_seconds=args.ready_timeout, announce=announce)
    reporter.info(f"stopped the server at {serving.url}")
    return code


HANDLERS = {"serve": cmd_serve}
