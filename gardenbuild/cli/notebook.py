"""`gardenbuild notebook`: the publisher's loop.

    gardenbuild notebook create DIR --python 3.11 --flavor torch   a new garden, then opened
    gardenbuild notebook DIR                                       JupyterLab in DIR's environment
    gardenbuild notebook publish DIR                               build, test, publish, page
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from gardenbuild.cli.common import add_json, emit, secrets_of
from gardenbuild.errors import UserError
from gardenbuild.report import Reporter

ACTIONS = ("create", "edit", "publish")


def add_parsers(sub: Any) -> None:
    from gardenbuild.cli.publish import add_publish_options
    from gardenbuild.jupyter import DEFAULT_PORT

    p = sub.add_parser(
        "notebook", help="create a garden, edit it in JupyterLab inside its environment image, publish it",
        description="gardenbuild notebook DIR: JupyterLab running in DIR's environment image (its Python and "
                    "packages), DIR mounted, on 127.0.0.1 with a token; %%pip install adds to the Gardenfile. "
                    "gardenbuild notebook create DIR --python 3.11 --flavor torch: a new garden from the flavor's "
                    "starter notebook, then opened. gardenbuild notebook publish DIR: build, test, publish to "
                    "the [publish] targets (or the flags), write the model page.")
    p.add_argument("words", nargs="+", metavar="[create|publish] DIR")
    p.add_argument("--python", default="3.11", help="create: Python version of the image (3.10-3.13)")
    p.add_argument("--flavor", default="base", help="create: base, sklearn, torch, tensorflow")
    p.add_argument("--name", help="create: the garden's name (default: the folder's)")
    p.add_argument("--no-open", action="store_true", help="create: write the files, do not start JupyterLab")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"JupyterLab's port (default {DEFAULT_PORT}; 0: any free)")
    p.add_argument("--token", help="JupyterLab's token (default: a new random one)")
    p.add_argument("--ready-timeout", type=float, default=120.0, metavar="SECONDS", help=argparse.SUPPRESS)
    add_publish_options(p)
    add_json(p)


def _action(words: list[str]) -> tuple[str, str]:
    if len(words) == 1 and words[0] not in ("create", "publish"):
        return "edit", words[0]
    if len(words) == 2 and words[0] in ACTIONS:
        return words[0], words[1]
    raise UserError(f"gardenbuild notebook {' '.join(words)}: expected DIR, create DIR or publish DIR",
                    hint="gardenbuild notebook create my-garden --flavor sklearn; gardenbuild notebook my-garden")


def cmd_notebook(args: argparse.Namespace, reporter: Reporter) -> int:
    action, args.dir = _action(args.words)
    return {"create": _create, "edit": _edit, "publish": _publish}[action](args, reporter)


def _create(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.manifest.scaffold import create

    gardenfile, notebook = create(Path(args.dir), python=args.python, flavor=args.flavor, name=args.name)
    emit(args, {"gardenfile": str(gardenfile), "notebook": str(notebook)},
         f"wrote {notebook} and {gardenfile}\n" + ("next: gardenbuild notebook " + args.dir if args.no_open else ""))
    if args.no_open:
        return 0
    return _edit(args, reporter)


def _edit(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.cli.common import backend, prepare_garden
    from gardenbuild.engine.builder import Builder
    from gardenbuild.engine.outputs import OUTPUT_DIR
    from gardenbuild.engine.store import StepStore
    from gardenbuild.jupyter import prefix, session

    containers = backend(reporter)
    prepared = prepare_garden(args, reporter, containers)
    garden = prepared.garden
    store = StepStore()
    env = Builder(prepared.plan, store=store, backend=containers, reporter=reporter,
                  secrets=secrets_of(garden)).environment()
    jupyter = prefix.ensure(garden.python, store.root, reporter)
    before = session.Snapshot.of(garden.root)
    reporter.step(f"starting JupyterLab in the environment of {garden.name} ({env['image']})")
    lab = session.start(garden.root, env["image_id"], jupyter, backend=containers, reporter=reporter,
                        port=args.port, token=args.token, log=garden.root / OUTPUT_DIR / "jupyter.log",
                        ready_timeout=args.ready_timeout)
    emit(args, {"url": lab.url, "port": lab.port, "token": lab.token, "image": env["image"]},
         f"JupyterLab for {garden.name}: {lab.url}\n(Python {garden.python} and the garden's packages; "
         "Ctrl-C stops it)")
    sys.stdout.flush()
    try:
        while lab.alive():
            time.sleep(0.5)
        reporter.warn(f"JupyterLab stopped by itself; its log: {lab.log}")
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (see gardenbuild.cli)
        pass
    finally:
        with _signals_held():  # a second Ctrl-C must not leave the container behind
            lab.stop()
    lines, _ = session.changes(before, garden.root, base_image=garden.base_image)
    reporter.info("JupyterLab stopped" + ("; " + "; ".join(lines) if lines else "; nothing a build reads changed"))
    return 0


@contextlib.contextmanager
def _signals_held():
    import signal

    held = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)


def _publish(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.cli.build import cmd_build
    from gardenbuild.cli.consume import cmd_page
    from gardenbuild.cli.publish import cmd_publish

    quiet = argparse.Namespace(**{**vars(args), "json": False, "output": None, "ref": args.dir})
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        cmd_build(quiet, reporter)
        code = cmd_publish(quiet, reporter)
        if code:
            return code
        cmd_page(quiet, reporter)
    from gardenbuild.consumer.resolve import Resolver
    from gardenbuild.engine.outputs import OUTPUT_DIR

    resolved = Resolver(reporter=reporter).resolve(args.dir, pull=False)
    page = resolved.root / OUTPUT_DIR / "page" / "index.html"
    data = {"garden": resolved.name, "version": resolved.version, "doi": resolved.doi, "image_ref": resolved.image_ref,
            "function_ids": resolved.function_ids, "page": str(page)}
    emit(args, data, "\n".join(f"{k + ':':<10}{v}" for k, v in (("DOI", resolved.doi), ("image", resolved.image_ref),
                                                                ("page", page)) if v))
    return 0


HANDLERS = {"notebook": cmd_notebook}
