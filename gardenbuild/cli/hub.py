"""`gardenbuild bench HUB`: score a hub's members on its benchmark, write its leaderboard page."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from gardenbuild.cli.common import add_json, emit
from gardenbuild.report import Reporter


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("bench", help="run a hub's benchmark on its members; keep the scores; write the leaderboard")
    p.add_argument("hub", nargs="?", default=".", help="the hub folder (holding Hubfile.toml); default: .")
    p.add_argument("--only", metavar="MEMBER", help="score this member only (the others keep their scores)")
    p.add_argument("--fresh", action="store_true", help="score again even when nothing it depends on changed")
    p.add_argument("--jobs", type=int, help="members scored at once (default: the cores; with --endpoint, all)")
    p.add_argument("--endpoint", metavar="UUID",
                   help="run the members on this Globus Compute endpoint, through their registered functions")
    p.add_argument("--container-type", default="docker",
                   help="with --endpoint: how the endpoint runs the image (docker, podman, apptainer ...)")
    p.add_argument("--timeout", type=float, default=3600,
                   help="with --endpoint: seconds to wait for each call's result (default: 3600)")
    p.add_argument("--base-image", help="build folder members on this base image (as `build --base-image`)")
    p.add_argument("-o", "--output", metavar="DIR", help="where the hub page goes (default: HUB/.gardenbuild/hub)")
    add_json(p)


def cmd_bench(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.catalog import Catalog
    from gardenbuild.cli.build import cmd_build
    from gardenbuild.consumer import local, remote
    from gardenbuild.consumer.resolve import Resolver
    from gardenbuild.engine.outputs import OUTPUT_DIR
    from gardenbuild.hub.bench import Bench, leaderboard
    from gardenbuild.hub.page import write
    from gardenbuild.hub.spec import load

    hub = load(Path(args.hub))
    client = None
    if args.endpoint:  # a malformed id, a container type no endpoint knows, or no login: one error first
        remote.check_target(args.endpoint, args.container_type)
        client = remote.logged_in_client()
        reporter.info(f"members run on Globus Compute endpoint {args.endpoint} ({args.container_type})")
    resolver = Resolver(reporter=reporter)

    def resolve(ref: str) -> Any:
        if (Path(ref) / "Gardenfile.toml").is_file():  # a folder: built first (nothing runs if nothing changed)
            with contextlib.redirect_stdout(sys.stderr):
                cmd_build(argparse.Namespace(dir=ref, json=False, base_image=args.base_image), reporter)
        return resolver.resolve(ref, pull=not args.endpoint)  # an endpoint pulls the image itself

    def call(resolved: Any, pipeline: str, calls: list[dict[str, Any]]) -> list[Any]:
        if args.endpoint:
            return remote.call_all(resolved, pipeline, calls, endpoint=args.endpoint,
                                   container_type=args.container_type, timeout=args.timeout, client=client)
        return [local.call(resolved, pipeline, json.dumps(arguments).encode(), call_limits=local.limits(resolved),
                           via="bench", reporter=reporter)[0].result for arguments in calls]

    run_metric = None
    if any(m.function for m in hub.spec.metric):  # the hub's own metrics run in a base image, no network
        from gardenbuild.backends.buildah import Buildah
        from gardenbuild.hub.bench import metric_in_container

        base = args.base_image or os.environ.get("GARDENBUILD_BASE_IMAGE") or "localhost/gardenbuild/python:3.11"
        run_metric = metric_in_container(Buildah(reporter=reporter), base)
    jobs = args.jobs or (len(hub.spec.member) if args.endpoint else os.cpu_count() or 1)
    bench = Bench(hub, catalog=Catalog(), resolve=resolve, call=call, reporter=reporter, jobs=max(1, jobs),
                  run_metric=run_metric)

    board = leaderboard(hub, bench.run(only=args.only, fresh=args.fresh))
    bench.catalog.record_hub(hub.name, hub.spec.model_dump(), len(hub.inputs), hub.root)  # for `catalog serve`
    out = Path(args.output) if args.output else hub.root / OUTPUT_DIR / "hub"
    page = write(hub, board, out, resolved=bench.resolved, hub_ref=args.hub)
    names = [m.name for m in hub.spec.metric]
    lines = [f"hub {hub.name}: {len(hub.inputs)} inputs, metrics {', '.join(names)}"]
    width = max(len(s.member) for s in board)
    lines.append(f"  {'member':<{width}}  " + "  ".join(f"{n:>9}" for n in names) + "       time")
    for s in board:
        cells = "  ".join(f"{s.metrics[n]:>9.4g}" for n in names) if not s.error else f"failed: {s.error}"
        timing = "" if s.error else (" (cached)" if s.cached else f"  {s.seconds or 0:>7.1f} s")
        uq = s.uncertainty
        claim = (f"  {uq['level']:.0%} intervals hold {uq['coverage']:.0%}, mean width {uq['width']:.3g}"
                 if uq and not s.error else "")
        lines.append(f"  {s.member:<{width}}  {cells}{timing}{claim}")
    lines.append(f"page: {page}")
    emit(args, {"hub": hub.name, "data_sha256": hub.spec.data.sha256, "page": str(page),
                "scores": [s.as_json() for s in board]}, "\n".join(lines))
    return 1 if all(s.error for s in board) else 0


HANDLERS = {"bench": cmd_bench}
