"""`gardenbuild catalog serve` and `gardenbuild catalog export`: the catalog as a web site."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from gardenbuild.cli.common import add_json, emit
from gardenbuild.errors import UserError
from gardenbuild.report import Reporter


def _catalog(reporter: Reporter) -> Any:
    """The catalog, with the cards of builds recorded by an older gardenbuild read from their images."""
    from gardenbuild.backends.buildah import Buildah
    from gardenbuild.catalog import Catalog
    from gardenbuild.site import backfill_cards

    catalog = Catalog()
    found = backfill_cards(catalog, Buildah(reporter=reporter))
    if found:
        reporter.info(f"read the garden cards of {found} earlier build(s) from their images")
    return catalog


def cmd_serve(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.site import Site, is_loopback, server

    catalog = _catalog(reporter)
    try:
        srv = server(Site(catalog), args.host, args.port, log=reporter.info if args.verbose else None)
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                        hint="pick another --port (0: any free one)") from None
    host, port = srv.server_address[:2]
    if not is_loopback(args.host):
        reporter.warn(f"listening on {host}, not only this machine: anyone who can reach it can read the catalog")
    shown = f"[{host}]" if ":" in str(host) else host
    emit(args, {"url": f"http://{shown}:{port}/", "catalog": str(catalog.path)},
         f"catalog of {catalog.path} at http://{shown}:{port}/ (Ctrl-C stops it)")
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (see gardenbuild.cli): stop cleanly
        reporter.info("catalog server stopped")
    finally:
        srv.server_close()
    return 0


def cmd_export(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.site import export

    started = time.monotonic()
    catalog = _catalog(reporter)

    def progress(n: int, total: int, garden: str) -> None:
        if n == total or n % 100 == 0:
            reporter.step(f"wrote {n}/{total} model pages (last: {garden})")

    done = export(catalog, Path(args.dir), progress=progress)
    done["seconds"] = round(time.monotonic() - started, 2)
    emit(args, done, f"wrote {done['gardens']} garden page(s) and the search page to {done['dir']}/index.html "
                     f"in {done['seconds']} s")
    return 0


def cmd_catalog(args: argparse.Namespace, reporter: Reporter) -> int:
    return {"serve": cmd_serve, "export": cmd_export}[args.action](args, reporter)


def add_parsers(sub: Any) -> None:
    from gardenbuild.cli.serve import _port
    from gardenbuild.catalog import SITE_PORT as DEFAULT_PORT

    top = sub.add_parser("catalog", help="the gardens on this machine as a searchable web site")
    actions = top.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("serve", help="a local web app: search, filters, model pages, and a JSON API")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free one)")
    p.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1: this machine only)")
    add_json(p)
    p = actions.add_parser("export", help="write the whole site as static files, to host anywhere")
    p.add_argument("dir", help="the folder to write (new, empty, or an earlier export)")
    add_json(p)


HANDLERS = {"catalog": cmd_catalog}
