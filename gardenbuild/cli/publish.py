"""The ``publish``, ``list`` and ``show`` commands: argument parsing and printing only.

`add_parsers` adds the three sub-commands to the CLI's sub-parsers; `HANDLERS` maps each
name to its handler ``(args, reporter) -> exit code``. The work is done by
`gardenbuild.publish.publish` and `gardenbuild.catalog.Catalog`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gardenbuild.cli.common import add_dir, add_json, emit
from gardenbuild.errors import UserError
from gardenbuild.report import Reporter

DOI_CHOICES = ("draft", "publish")


def add_parsers(sub: Any) -> None:
    """Add ``publish``, ``list`` and ``show`` to ``sub`` (the CLI's sub-parsers)."""
    p = sub.add_parser(
        "publish", help="push the built image, register its pipelines, mint a DOI",
        description="Publish the last build of a garden. Targets come from these flags; without any of "
                    "--registry/--globus/--doi, from the [publish] table of Gardenfile.toml. A failed run "
                    "keeps what it finished, and running the same command again resumes.")
    add_dir(p)
    add_publish_options(p)
    add_json(p)

    p = sub.add_parser("list", help="list the gardens built and published on this machine")
    add_json(p)

    p = sub.add_parser("show", help="show the builds and publications of one garden")
    p.add_argument("name", help="the garden's name")
    add_json(p)


def add_publish_options(p: argparse.ArgumentParser) -> None:
    """The targets and their options, shared by `publish` and `notebook publish`."""
    p.add_argument("--registry", metavar="HOST/NAMESPACE",
                   help="push the image to HOST/NAMESPACE/<garden>:<version> (log in first: buildah login HOST)")
    p.add_argument("--globus", action="store_true", help="register one Globus Compute function per pipeline")
    p.add_argument("--doi", nargs="?", const="draft", metavar="draft|publish",
                   help="mint a DOI at DataCite: a draft, or with 'publish' a findable DOI (cannot be undone); "
                        "needs DATACITE_REPOSITORY_ID, DATACITE_PASSWORD and DATACITE_PREFIX")
    p.add_argument("--datacite-test", action=argparse.BooleanOptionalAction, default=None,
                   help="use DataCite's test system (api.test.datacite.org); default from [publish].datacite_test")
    p.add_argument("--tls-verify", action=argparse.BooleanOptionalAction, default=True,
                   help="verify the registry's TLS certificate (--no-tls-verify for a plain-HTTP registry on loopback)")
    p.add_argument("--authfile", type=Path, help="registry credentials file (default: buildah's, or $REGISTRY_AUTH_FILE)")
    p.add_argument("--publisher", help="the DOI's publisher (default: Garden)")
    p.add_argument("--url", help="the DOI's landing page (default: the garden's repository)")
    p.add_argument("--dry-run", action="store_true", help="send nothing, change nothing; print every request that would be sent "
                        "(exit code 2 if the real run would stop on a problem)")


def _targets(args: argparse.Namespace, table: Any) -> tuple[str | None, bool, bool, bool]:
    """(registry, globus, doi, doi_publish): the flags if any target flag is given, else the table."""
    if args.doi is not None and args.doi not in DOI_CHOICES:
        raise UserError(f"--doi takes 'draft' or 'publish', not '{args.doi}'",
                        hint="write the folder before the flags: gardenbuild publish DIR --doi")
    if args.registry or args.globus or args.doi:
        return args.registry, bool(args.globus), args.doi is not None, args.doi == "publish"
    return table.registry, bool(table.globus), bool(table.doi), False


def cmd_publish(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.backends.buildah import Buildah
    from gardenbuild.catalog import Catalog
    from gardenbuild.engine.outputs import OUTPUT_DIR, require_build
    from gardenbuild.manifest.load import load
    from gardenbuild.publish import publish

    # `publish --doi DIR`: argparse took the folder for --doi's optional value.
    if args.doi is not None and args.doi not in DOI_CHOICES and args.dir == "." and Path(args.doi).is_dir():
        args.dir, args.doi = args.doi, "draft"
    garden = load(Path(args.dir))
    registry, globus, doi, doi_publish = _targets(args, garden.publish)
    summary = require_build(garden.root, args.dir)
    try:
        metadata_json = json.loads((garden.root / OUTPUT_DIR / "metadata.json").read_text())
    except (OSError, ValueError):
        metadata_json = None
    test = garden.publish.datacite_test if args.datacite_test is None else args.datacite_test
    result = publish(garden, summary, registry=registry, globus=globus, doi=doi, doi_publish=doi_publish,
                     datacite_test=test, dry_run=args.dry_run, tls_verify=args.tls_verify, authfile=args.authfile,
                     backend=Buildah(reporter=reporter), reporter=reporter, catalog=Catalog(),
                     publisher=args.publisher, landing_url=args.url, metadata_json=metadata_json,
                     globus_client=_globus_client)
    data = result.as_json()
    emit(args, data, publish_text(data))
    return 2 if data["problems"] else 0


def _globus_client() -> Any:
    """A logged-in Globus Compute client; made only when functions are actually registered."""
    from gardenbuild.publish import auth, globus

    app = auth.make_app()
    auth.require_login(app)
    return globus.compute_client(app)


def publish_text(data: dict[str, Any]) -> str:
    lines = []
    if data["dry_run"]:
        lines.append(f"dry run for {data['garden']} {data['version']}: nothing was sent; "
                     f"{len(data['requests'])} request(s) would be:")
        for r in data["requests"]:
            if r.get("service") == "registry":
                lines.append(f"  push     {r['destination']}" + (f"  (adding labels {', '.join(r['relabel']['labels'])})"
                                                                 if r.get("relabel") else ""))
            elif r.get("service") == "globus-compute":
                lines.append(f"  {r.get('method', '?'):<8} Globus Compute {r.get('path', '')}  "
                             f"(register pipeline {r.get('pipeline', '?')})")
            else:
                lines.append(f"  {r.get('method', '?'):<8} {r.get('url', '')}  ({r.get('purpose', r.get('stage', ''))})")
        lines.append("  (--json shows each request in full, the DataCite payload included)")
        for p in data["problems"]:
            lines.append(f"would fail: {p}")
        return "\n".join(lines)
    lines.append(f"published {data['garden']} {data['version']}")
    for s in data["stages"]:
        lines.append(f"  {s['stage']:<13} {s['state']:<8} {s['detail']}")
    if data["image_ref"]:
        lines.append(f"image:    {data['image_ref']}")
    if data["doi"]:
        lines.append(f"DOI:      {data['doi_url']} ({data['doi_state']})")
    for name, fid in data["function_ids"].items():
        lines.append(f"function: {name} = {fid}")
    for path in data["files"]:
        lines.append(f"wrote     {path}")
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.catalog import Catalog


    catalog = Catalog()
    rows = catalog.gardens()
    if not rows:
        text = f"no gardens built yet (catalog: {catalog.path})"
    else:
        header = ("GARDEN", "VERSION", "BUILDS", "LAST BUILT", "PUBLISHED", "DOI")
        table = [header] + [(r["garden"], r["version"] or "-", str(r["builds"]), r["last_built"] or "-",
                             r["published"] or (f"pulled {r['pulled']}" if r.get("pulled") else "-"),
                             (f"{r['doi']} ({r['doi_state']})" if r["doi_state"] else r["doi"]) if r["doi"] else "-")
                            for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
        text = "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in table)
    emit(args, {"catalog": str(catalog.path), "gardens": rows}, text)
    return 0


def cmd_show(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.catalog import Catalog

    catalog = Catalog()
    data = catalog.show(args.name)
    if data is None:
        known = [r["garden"] for r in catalog.gardens()]
        raise UserError(f"the catalog knows no garden '{args.name}'",
                        hint=f"known: {', '.join(known)}" if known else "build one first: gardenbuild build DIR")
    lines = [f"{args.name}"]
    for b in data["builds"]:
        lines.append(f"  build    {b['version']:<10} {b['image']}  (image {b['image_id'][:12]}, last built {b['last_built']})")
    for p in data.get("pulls", []):
        lines.append(f"  pulled   {p['version']:<10} {p['image_ref']}  (image {p['image_id'][:12]}, last pulled "
                     f"{p['last_pulled']}{', DOI ' + p['doi'] if p.get('doi') else ''})")
    for p in data["publications"]:
        lines.append(f"  publish  {p['version']:<10} image {p['image_id'][:12]}")
        if p["image_ref"]:
            lines.append(f"    image      {p['image_ref']}")
        if p["doi"]:
            lines.append(f"    DOI        {p['doi']} ({p['doi_state']}, {p['datacite_api']})")
        for name, fid in sorted(p["function_ids"].items()):
            lines.append(f"    function   {name} = {fid}")
        for stage in p["stages"].values():
            extra = stage["error"] or stage["detail"] or ""
            lines.append(f"    {stage['stage']:<13} {stage['state']:<8} {stage['updated']}  {extra}")
    for u in data["usage"]:
        mean = f", mean {u['seconds'] / u['calls'] * 1e3:.1f} ms" if u["calls"] else ""
        lines.append(f"  usage    {u['pipeline']} via {u['via']}: {u['calls']} call(s), {u['errors']} failed{mean} "
                     f"(since {u['first']}, last {u['last']})")
    emit(args, data, "\n".join(lines))
    return 0


HANDLERS = {"publish": cmd_publish, "list": cmd_list, "show": cmd_show}
