"""The build-side commands: check, schema, plan, graph, render, init, build, run, test, lock,
verify, cache and base. Argument parsing and printing only; the work is done by the library.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from gardenbuild.cli.common import (
    Handler,
    add_dir,
    add_json,
    backend,
    emit,
    load_garden,
    options,
    secrets_of,
    plan_garden,
    prepare_garden,
)
from gardenbuild.errors import BuildError, GardenError, UserError
from gardenbuild.report import Reporter

HANDLERS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


@command("check")
def cmd_check(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.engine.prepare import choose_base
    from gardenbuild.plan import lockfile

    from gardenbuild.backends.deps import WheelStore
    from gardenbuild.engine.check import missing_imports
    from gardenbuild.engine.store import StepStore
    from gardenbuild.errors import ConfigError, Problem

    garden = load_garden(args, reporter)
    lock = lockfile.read(garden.root)
    missing = missing_imports(garden, lock, WheelStore(StepStore().root))
    exact = [m for m in missing if m.exact]
    if exact:
        raise ConfigError([Problem(garden.gardenfile.name, None, "environment.requirements", m.message(garden.notebook))
                           for m in exact], hint="add the requirements named above; the build would stop there too")
    for m in missing:
        reporter.warn(m.message(garden.notebook))
    data = {
        "ok": True,
        "garden": garden.name,
        "python": garden.python,
        "flavor": garden.flavor.name,
        "base_image": choose_base(garden, options(args), lockfile.read(garden.root)),
        "notebook": garden.notebook,
        "pipelines": [p.name for p in garden.pipelines],
        "requirements": list(garden.own_requirements),
        "added_by_gardenbuild": [r for r in garden.requirements if r not in garden.own_requirements],
        "files": list(garden.files),
        "warnings": list(garden.warnings) + [m.message(garden.notebook) for m in missing],
    }
    emit(args, data, f"ok: {garden.gardenfile} ({len(garden.pipelines)} pipeline(s), {len(garden.files)} file(s), "
                      f"Python {garden.python}, flavor {garden.flavor.name})")
    return 0


@command("schema")
def cmd_schema(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.manifest.spec import Gardenfile

    schema = Gardenfile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Gardenfile.toml"
    print(json.dumps(schema, indent=2, sort_keys=True))
    return 0


@command("plan")
def cmd_plan(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.engine.builder import cached_record
    from gardenbuild.engine.store import StepStore
    from gardenbuild.plan.explain import explain

    p = plan_garden(args, reporter)
    store = StepStore()
    reasons = explain(p, store.remembered(p.garden.name, p.garden.root),
                      lambda step: cached_record(store, step) is not None)
    if p.lock_changes:
        reasons["resolve"] = [f"{c} (re-resolved at build, Gardenfile.lock rewritten)" for c in p.lock_changes]
    steps = [{"id": s.id, "kind": s.kind, "key": s.key, "parents": list(s.parents), "outputs": list(s.outputs),
              "description": s.description, "cached": not reasons[s.id], "reasons": reasons[s.id]} for s in p.steps()]
    lines = []
    for i, s in enumerate(steps, 1):
        status = "cached" if s["cached"] else "run: " + "; ".join(s["reasons"])
        lines.append(f"{i:>2}. {s['id']:<17} {s['kind']:<17} {s['key'][:12]}  {status}")
    emit(args, {"garden": p.garden.name, "image": p.image, "steps": steps}, "\n".join(lines))
    return 0


@command("graph")
def cmd_graph(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.plan.graph import to_dot, to_mermaid

    p = plan_garden(args, reporter)
    text = to_dot(p) if args.format == "dot" else to_mermaid(p)
    emit(args, {"format": args.format, "graph": text}, text)
    return 0


@command("render")
def cmd_render(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.plan.render import render

    p = plan_garden(args, reporter)  # rendered from the steps' own parameters, as a build renders them
    env_step, runtime_step, garden_step = p.step("render-env"), p.step("build-runtime"), p.step("render-garden")
    files = {
        "env": ("Containerfile.env", render(env_step.params["template"], env_step.params["context"])),
        # FROM the env image, or the weights layer over it
        "runtime": ("Containerfile.runtime", render(runtime_step.params["template"], {
            **runtime_step.params["context"], "from_image": p.image_of(runtime_step.params["from"])})),
        "garden": ("Containerfile", render(garden_step.params["template"],
                                           {**garden_step.params["context"], "from_image": p.runtime_image})),
    }
    chosen = list(files.values()) if args.stage == "all" else [files[args.stage]]
    text = "\n".join(f"# ---- {name} ----\n{body}" for name, body in chosen) if len(chosen) > 1 else chosen[0][1]
    emit(args, {**dict(chosen), "env_image": p.env_image, "runtime_image": p.runtime_image}, text)
    return 0


@command("init")
def cmd_init(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.manifest.scaffold import init

    path = init(Path(args.dir), notebook=args.notebook, python=args.python, flavor=args.flavor, name=args.name)
    emit(args, {"gardenfile": str(path)}, f"wrote {path}\nnext: edit it, then run `gardenbuild check {args.dir}`")
    return 0


@command("build")
def cmd_build(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.engine import stamp

    started = time.monotonic()
    from gardenbuild.engine.store import default_root

    root, flags = _build_root_and_options(args)
    stamp_file = stamp.stamp_path(default_root(), root)
    done, before = None, None
    if (root / "Gardenfile.toml").is_file():
        before = stamp.fingerprint(root, flags)
        done = stamp.unchanged(stamp_file, root / ".gardenbuild", before, backend(reporter))
    phases = []  # the build's own phases, beside each step's (see gardenbuild.engine.timing)
    if done is not None:  # nothing that a build reads changed: no step would run
        data = {**done, "steps": [{**s, "cached": True, "seconds": 0.0, "phases": []} for s in done["steps"]]}
        phases.append(("check the stamp: nothing changed", time.monotonic() - started))
    else:
        from gardenbuild.catalog import record_build
        from gardenbuild.engine.builder import Builder
        from gardenbuild.engine.outputs import last_build
        from gardenbuild.plan.lockfile import machine_local
        from gardenbuild.engine.store import StepStore

        containers = backend(reporter)
        prepared = prepare_garden(args, reporter, containers)
        planned = time.monotonic()
        phases.append(("check the stamp, load, lock and plan", planned - started))
        result = Builder(prepared.plan, store=StepStore(), backend=containers, reporter=reporter,
                         secrets=secrets_of(prepared.garden)).run()
        finished = time.monotonic()
        phases.append(("steps", finished - planned))
        summary = last_build(prepared.garden.root) or {}
        record_build(summary, root=prepared.garden.root, card=_card(containers, summary.get("image_id")),
                     reporter=reporter)
        _trim_images(prepared.garden.name, containers, reporter)
        data = result.as_json()
        # A build that (re)wrote Gardenfile.lock changed its own input: fingerprint again.
        after = before if before and not prepared.written else stamp.fingerprint(prepared.garden.root, flags)
        name, _, digest = prepared.garden.base_image.partition("@")
        stamp.write(stamp_file, after, data, local_base=(name, digest) if machine_local(name) else None)
        phases.append(("record: catalog, old images, stamp", time.monotonic() - finished))
    data["seconds"] = round(time.monotonic() - started, 2)
    data["phases"] = [{"name": n, "seconds": round(t, 3)} for n, t in phases]
    if getattr(reporter, "verbose", False):
        from gardenbuild.engine.timing import table

        for line in ["where the time went:", *table([s for s in data["steps"] if not s["cached"]], top=data["phases"])]:
            reporter.info(line)
    built = sum(not s["cached"] for s in data["steps"])
    emit(args, data, f"built {data['image']} in {data['seconds']} s ({built} step(s) ran, "
                     f"{len(data['steps']) - built} cached); outputs in {data['output_dir']}")
    return 0


def _card(containers: Any, image_id: str | None) -> dict[str, Any] | None:
    """The garden card the built image carries (None for a build that stopped at its tests)."""
    from gardenbuild.card import from_labels

    if not image_id:
        return None
    labels = containers.stored_labels(image_id)
    if labels is None:
        from gardenbuild.publish.registry import image_labels

        try:
            labels = image_labels(containers, image_id)
        except GardenError:
            return None
    return from_labels(labels)


def _trim_images(garden: str, containers: Any, reporter: Reporter) -> None:
    """Keep the newest few images of the garden (by the catalog's builds), untag the rest."""
    from gardenbuild.catalog import Catalog, CatalogError
    from gardenbuild.engine.cache import trim_garden_images

    try:
        builds = Catalog().builds(garden)
    except CatalogError:
        return  # no catalog, no order: keep everything
    newest = [b["image_id"] for b in sorted(builds, key=lambda b: (b["last_built"], b["id"]), reverse=True)]
    try:
        trim_garden_images(garden, list(dict.fromkeys(newest)), containers, reporter)
    except GardenError as exc:  # housekeeping never fails a build that succeeded
        reporter.warn(f"older images of {garden} were kept: {exc.message}")


def _build_root_and_options(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The garden folder, and every option that can change what a build does (no heavy imports)."""
    from gardenbuild.engine.store import default_root

    root = Path(args.dir).resolve()
    return root, {
        "base_image": getattr(args, "base_image", None) or os.environ.get("GARDENBUILD_BASE_IMAGE"),
        "locked": getattr(args, "locked", False),
        "notebook_timeout": getattr(args, "notebook_timeout", None),
        "find_links": getattr(args, "find_links", None) or os.environ.get("GARDENBUILD_FIND_LINKS"),
        "cache": str(default_root().resolve()),
    }


def target(args: argparse.Namespace, reporter: Reporter) -> Any:
    """The garden ``args.dir`` names (a folder, a DOI, an image, a name), resolved and local.

    For a folder: its last build, with a warning when the files it was built from changed
    since. Anything else is pulled by digest first if it is not local yet."""
    from gardenbuild.consumer.refs import parse
    from gardenbuild.consumer.resolve import Resolver

    ref = parse(args.dir)
    resolver = Resolver(reporter=reporter, tls_verify=getattr(args, "tls_verify", True),
                        authfile=Path(args.authfile) if getattr(args, "authfile", None) else None)
    resolved = resolver.resolve(ref, pull=True)
    changed = resolved.changed
    if changed:
        reporter.warn(f"{', '.join(changed[:3])}{' and more' if len(changed) > 3 else ''} changed since the image "
                      f"was built: this calls the image of the earlier version (`gardenbuild build {args.dir}` "
                      "makes the new one)")
    for note in resolved.notes:
        reporter.info(note)
    return resolved


def call_limits(args: argparse.Namespace, resolved: Any):
    """--timeout/--memory, else what the garden recorded, else the defaults."""
    from gardenbuild.consumer.local import limits
    from gardenbuild.units import parse_size

    try:
        memory = parse_size(args.memory) if args.memory else None
    except ValueError as exc:
        raise UserError(f"--memory: {exc}") from None
    return limits(resolved, seconds=args.timeout, memory=memory)


def _read_input(args: argparse.Namespace) -> bytes:
    if args.input_file:
        path = Path(args.input_file)
        if not path.is_file():
            raise UserError(f"input file {path} does not exist")
        text = path.read_text()
    else:
        text = args.input if args.input is not None else "{}"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--input is not valid JSON: {exc.msg} at column {exc.colno}",
                        hint='pass the keyword arguments as a JSON object, e.g. --input \'{"smiles": ["CCO"]}\'') from None
    return text.encode()


@command("run")
def cmd_run(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.consumer import local

    from gardenbuild.consumer.api import check_arguments

    resolved = target(args, reporter)
    payload = _read_input(args)
    arguments = json.loads(payload)
    spec = resolved.pipeline(args.pipeline)
    if isinstance(arguments, dict):  # checked before any container starts; the image checks anything else
        check_arguments(spec, (), arguments)
    outcome, server = local.call(resolved, args.pipeline, payload, call_limits=call_limits(args, resolved),
                                 cpu=args.cpu, cold=args.cold, via="run", reporter=reporter)
    emit(args, {"pipeline": args.pipeline, "result": outcome.result, "timings": outcome.timings},
         json.dumps(outcome.result))
    t = outcome.timings
    if server is not None:
        reporter.info(f"(served warm by {server.url}: call {t['call_s']:.3f} s, {t['total_s']:.3f} s in all)")
    else:
        reporter.info(f"(container {t['container_s']:.2f} s, session load {t['load_s']:.2f} s, call {t['call_s']:.3f} s)")
    return 0


@command("test")
def cmd_test(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.consumer import local
    from gardenbuild.consumer.refs import parse

    if parse(args.dir).kind == "folder":
        resolved = target(args, reporter)
        garden = load_garden(args, reporter)  # the Gardenfile's tests as they are now, not as they were built
        given = [c for p in garden.pipelines for c in p.test_cases()]
        if not given:
            raise UserError(f"{garden.gardenfile} has no test cases",
                            hint="add a [[pipeline.test]] table (input, expected, tolerance) under a [[pipeline]]")
    else:
        resolved = target(args, reporter)
        given = local.card_cases(resolved)  # the tests it was published with
        if not given:
            raise UserError(f"{resolved.name} was published without test cases")
    cases, server = local.test(resolved, given, call_limits=call_limits(args, resolved), cold=args.cold,
                               reporter=reporter)
    if server is not None:
        reporter.info(f"testing through the garden server at {server.url}")
    for case in cases:
        mark = "PASS" if case["passed"] else "FAIL"
        line = f"{mark} {case['pipeline']}[{case['index']}]  expected {case['expected']}  got {case['actual']}"
        if not case["passed"] and case.get("message"):
            line += f"  ({case['message']})"
        reporter.info(line)
    failed = sum(not c["passed"] for c in cases)
    emit(args, {"cases": cases, "failed": failed, "warm": server is not None, "server": server.url if server else None},
         f"{len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0


@command("lock")
def cmd_lock(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.plan.lockfile import LOCKFILE

    prepared = prepare_garden(args, reporter, backend(reporter))
    lock = prepared.lock
    path = prepared.garden.root / LOCKFILE
    state = "updated" if prepared.written else "up to date"
    emit(args, {"lockfile": str(path), "state": state, "packages": [f"{w.name}=={w.version}" for w in lock.packages],
                "base": prepared.garden.base_image},
         f"{path}: {state} ({len(lock.packages)} packages, base {prepared.garden.base_image})")
    return 0


@command("verify")
def cmd_verify(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.engine.store import StepStore
    from gardenbuild.engine.verify import summary, verify

    containers = backend(reporter)
    prepared = prepare_garden(args, reporter, containers, write=False)  # verify checks the lock, it does not move it
    checks = verify(prepared.plan, store=StepStore(), backend=containers, reporter=reporter,
                    secrets=secrets_of(prepared.garden))
    ok = all(c.match for c in checks)
    _record_verification(prepared.garden, ok, [c.as_json() for c in checks], reporter)
    emit(args, {"match": ok, "stages": [c.as_json() for c in checks]},
         summary(checks) + ("\nverified: a rebuild from scratch is bit-for-bit identical" if ok else ""))
    if not ok:
        failed = next(c for c in checks if not c.match)
        stage = failed.stage
        hint = (failed.variables[0]["hint"] if failed.variables else
                "a notebook that keeps clock readings, random draws without a seed, or absolute paths in its "
                "state cannot reproduce; clear them in a last cell" if stage == "garden" else
                "the environment image should always reproduce: please report this with the files listed above")
        raise BuildError(f"the rebuild of the {stage} image differs from the original (see above)", hint=hint)
    return 0


def _record_verification(garden: Any, match: bool, stages: list[dict[str, Any]], reporter: Reporter) -> None:
    """Keep the outcome of `verify` in the catalog, for the model page; never fails the verify."""
    from gardenbuild.catalog import Catalog, CatalogError
    from gardenbuild.engine.outputs import last_build

    image_id = (last_build(garden.root) or {}).get("image_id")
    if not image_id:
        return
    try:
        Catalog().record_verification(garden.name, garden.meta.version, image_id, match=match, stages=stages)
    except CatalogError as exc:
        reporter.warn(f"verification not recorded in the catalog: {exc.message}")


@command("cache")
def cmd_cache(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.engine.cache import prune, usage
    from gardenbuild.engine.store import StepStore

    store, containers = StepStore(), backend(reporter)
    if args.cache_command == "prune":
        freed = prune(store, containers, reporter, everything=args.all)
        emit(args, freed, f"removed {freed['records']} step record(s), {freed['wheels']} wheel(s), "
                          f"{freed['images']} image(s), {freed['containers']} leftover container(s); "
                          f"freed {freed['bytes'] / 1e6:.1f} MB")
        return 0
    info = usage(store, containers)
    emit(args, info.as_json(), info.text())
    return 0


@command("base")
def cmd_base(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.backends.base import bootstrap

    ref = bootstrap(args.python, buildah=backend(reporter), reporter=reporter, force=args.force)
    emit(args, {"image": ref}, f"{ref}\nuse it with: gardenbuild build DIR --base-image {ref}")
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive number of seconds")
    return value


def add_find_links(p: argparse.ArgumentParser) -> None:
    p.add_argument("--find-links", action="append", metavar="DIR",
                   help="this machine's folder of wheels to resolve from too (repeatable; also GARDENBUILD_FIND_LINKS); "
                        "the lock pins each wheel by sha256, so a locked rebuild needs only the cache")


def add_registry_options(p: argparse.ArgumentParser) -> None:
    """For a garden that has to be pulled first."""
    p.add_argument("--tls-verify", action=argparse.BooleanOptionalAction, default=True,
                   help="--no-tls-verify pulls from a registry over plain HTTP (one you trust, e.g. on loopback)")
    p.add_argument("--authfile", help="registry credentials (a containers auth.json; default: buildah login's)")


def add_limits(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help="stop a call after this long (default: the garden's [limits] call_seconds, else 600)")
    p.add_argument("--memory", metavar="SIZE",
                   help="stop a call that uses more memory, e.g. 2GiB (default: [limits] call_memory, else 8GiB)")


def add_parsers(sub: Any) -> None:
    """Add the build-side commands to ``sub`` (the CLI's sub-parsers)."""
    p = sub.add_parser("init", help="write a commented Gardenfile.toml for a notebook")
    p.add_argument("dir", nargs="?", default=".")
    p.add_argument("--notebook", required=True, help="the notebook, relative to DIR")
    p.add_argument("--python", default="3.11", help="Python version of the image (3.10-3.13)")
    p.add_argument("--flavor", default="base", help="base, sklearn, torch, tensorflow")
    p.add_argument("--name", help="garden name (default: the folder's name)")
    add_json(p)

    p = sub.add_parser("check", help="validate the Gardenfile and the notebook")
    add_dir(p); add_json(p)  # noqa: E702

    p = sub.add_parser("schema", help="print the JSON Schema of Gardenfile.toml (for editors)")
    add_json(p)  # accepted for symmetry: the schema is JSON already

    for name, helptext in (("plan", "list the build steps in order, with their keys"),
                           ("graph", "print the build graph (dot or mermaid)"),
                           ("render", "print the rendered Containerfiles")):
        p = sub.add_parser(name, help=helptext)
        add_dir(p); add_json(p)  # noqa: E702
        p.add_argument("--base-image", help="use this base image instead of the flavor's")
        if name == "graph":
            p.add_argument("--format", choices=("dot", "mermaid"), default="dot")
        if name == "render":
            p.add_argument("--stage", choices=("env", "runtime", "garden", "all"), default="all")

    p = sub.add_parser("build", help="build the garden image: resolve, fetch, install, run the notebook, test")
    add_dir(p); add_json(p)  # noqa: E702
    p.add_argument("--base-image", help="use this base image instead of the flavor's (also GARDENBUILD_BASE_IMAGE)")

    p.add_argument("--locked", action="store_true", help="fail unless Gardenfile.lock matches the garden exactly")
    add_find_links(p)
    p.add_argument("--notebook-timeout", type=_seconds, metavar="SECONDS",
                   help="stop the notebook's run after this long (default: [limits] notebook_seconds, else 3600)")

    p = sub.add_parser("lock", help="resolve and write Gardenfile.lock (pins wheels, base image digest, input hashes)")
    add_dir(p); add_json(p)  # noqa: E702
    add_find_links(p)
    p.add_argument("--base-image", help="use this base image instead of the flavor's")
    p.add_argument("--upgrade", nargs="*", metavar="PKG", help="re-resolve all packages, or only these")

    p = sub.add_parser("verify", help="rebuild from scratch and check the image is bit-for-bit identical")
    add_dir(p); add_json(p)  # noqa: E702
    p.add_argument("--base-image", help=argparse.SUPPRESS)

    p = sub.add_parser("run", help="call a pipeline of a garden (a folder, DOI, image or name)")
    p.add_argument("dir", nargs="?", default=".", metavar="REF",
                   help="a garden folder (default .), a DOI, an image (HOST/REPO@sha256:... or :TAG) or a name")
    p.add_argument("pipeline")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--input", help="keyword arguments as a JSON object")
    src.add_argument("--input-file", help="a file holding the JSON object")
    p.add_argument("--base-image", help=argparse.SUPPRESS)
    p.add_argument("--cpu", action="store_true", help="call a garden built for CUDA on the CPU (no GPU asked for)")
    p.add_argument("--cold", action="store_true", help="a fresh container even when `gardenbuild serve` serves the image")
    add_limits(p)
    add_json(p)
    add_registry_options(p)

    p = sub.add_parser("test", help="run a garden's pipeline tests in its image (a folder: the Gardenfile's tests now)")
    p.add_argument("dir", nargs="?", default=".", metavar="REF",
                   help="a garden folder (default .), a DOI, an image or a name")
    add_json(p)
    add_registry_options(p)
    p.add_argument("--base-image", help=argparse.SUPPRESS)
    p.add_argument("--cold", action="store_true", help="a fresh container even when `gardenbuild serve` serves the image")
    add_limits(p)

    p = sub.add_parser("cache", help="show what the cache holds; `cache prune` frees space")
    add_json(p)
    csub = p.add_subparsers(dest="cache_command", metavar="ACTION")
    c = csub.add_parser("prune", help="remove records, wheels and images no garden's last build uses")
    c.add_argument("--all", action="store_true", help="remove everything gardenbuild cached (not base images)")
    add_json(c)

    p = sub.add_parser("base", help="manage local base images")
    bsub = p.add_subparsers(dest="base_command", required=True, metavar="ACTION")
    b = bsub.add_parser("bootstrap", help="make a local Python base image with debootstrap (no registry needed)")
    b.add_argument("--python", default="3.11", help="3.11 (bookworm) or 3.13 (trixie)")
    b.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    add_json(b)
