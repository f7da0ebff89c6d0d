"""The consumer's commands: pull, info and page. (run, test and serve take any reference too.)"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import Any

from gardenbuild.cli.common import add_json, emit
from gardenbuild.report import Reporter


def _resolver(args: argparse.Namespace, reporter: Reporter) -> Any:
    from gardenbuild.consumer.resolve import Resolver

    return Resolver(reporter=reporter, tls_verify=args.tls_verify,
                    authfile=Path(args.authfile) if args.authfile else None)


def cmd_pull(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.consumer.refs import parse
    from gardenbuild.errors import UserError

    ref = parse(args.ref)
    if ref.kind in ("folder", "name"):
        raise UserError(f"{args.ref} is a garden on this machine already; there is nothing to pull",
                        hint="pull names a DOI or an image in a registry")
    resolved = _resolver(args, reporter).resolve(ref, pull=True)
    for note in resolved.notes:
        reporter.info(note)
    emit(args, resolved.as_json(), f"{resolved.name} {resolved.version}: {resolved.image_ref} "
                                   f"(local image {(resolved.image or '')[:12]})")
    return 0


def describe(resolved: Any) -> str:
    """`gardenbuild info` as text."""
    from gardenbuild.consumer.cite import text

    meta, card = resolved.meta, resolved.card
    lines = [f"{meta.get('title')}  ({resolved.name} {resolved.version})"]
    authors = [a.get("name", "") + (f" (ORCID {a['orcid']})" if a.get("orcid") else "") for a in meta.get("authors") or []]
    if authors:
        lines.append("by " + "; ".join(authors))
    if meta.get("description"):
        lines += textwrap.wrap(" ".join(str(meta["description"]).split()), 92)
    lines.append("")
    lines.append(f"DOI:      https://doi.org/{resolved.doi}" if resolved.doi else "DOI:      none (not published with --doi)")
    if resolved.image_ref:
        lines.append(f"image:    {resolved.image_ref}")
    if resolved.image:
        lines.append(f"local:    image {resolved.image[:12]}" + (f" from {resolved.root}" if resolved.root else ""))
    else:
        lines.append(f"local:    not pulled (gardenbuild pull {resolved.ref.text})")
    packages = ", ".join(f"{k} {v}" for k, v in sorted((card.get("packages") or {}).items()))
    lines.append(f"python:   {card.get('python') or '?'}; flavor {card.get('flavor')}" + (f"; {packages}" if packages else ""))
    lines.append(f"license:  {meta.get('license')}")
    lines.append(f"cite as:  {text(resolved)}")
    for p in resolved.pipelines:
        lines += ["", f"{p['name']}{p.get('signature', '(...)')}"]
        doc = (p.get("docstring") or p.get("description") or "").strip()
        lines += ["    " + line if line else "" for line in doc.splitlines()]
        for t in p.get("tests") or []:
            lines.append(f"    test: {json.dumps(t['input'])} -> {json.dumps(t['expected'])}")
        if resolved.function_ids.get(p["name"]):
            lines.append(f"    Globus Compute function {resolved.function_ids[p['name']]}")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace, reporter: Reporter) -> int:
    resolved = _resolver(args, reporter).resolve(args.ref, pull=False)
    for note in resolved.notes:
        reporter.info(note)
    emit(args, resolved.as_json(), describe(resolved))
    return 0


def cmd_page(args: argparse.Namespace, reporter: Reporter) -> int:
    import time

    from gardenbuild.catalog import Catalog, CatalogError
    from gardenbuild.page import write

    started = time.monotonic()
    resolved = _resolver(args, reporter).resolve(args.ref, pull=False)
    if args.output:
        out = Path(args.output)
    elif resolved.root is not None:
        from gardenbuild.engine.outputs import OUTPUT_DIR

        out = resolved.root / OUTPUT_DIR / "page"
    else:
        out = Path(f"{resolved.name}-page")
    try:
        catalog = Catalog()
        usage, verification = catalog.usage(resolved.name), catalog.verification(resolved.image_ids)
    except CatalogError:
        usage, verification = [], None
    paths = write(resolved, out, usage=usage, verification=verification)
    emit(args, {"dir": str(out), "files": [str(p) for p in paths], "seconds": round(time.monotonic() - started, 3)},
         f"wrote {out / 'index.html'} and {len(paths) - 1} citation file(s)")
    return 0


def add_parsers(sub: Any) -> None:
    from gardenbuild.cli.build import add_registry_options

    p = sub.add_parser("pull", help="fetch a published garden by DOI or image into local storage, by digest")
    p.add_argument("ref", help="a DOI (10.x/y), or an image: HOST/REPO@sha256:... or HOST/REPO:TAG")
    add_registry_options(p)
    add_json(p)
    p = sub.add_parser("info", help="describe a garden: citation, pipelines, tests, image (no container started)")
    p.add_argument("ref", help="a DOI, an image, a garden folder or a name from `gardenbuild list`")
    add_registry_options(p)
    add_json(p)
    p = sub.add_parser("page", help="write a garden's model page: static HTML and its citation files")
    p.add_argument("ref", help="a garden folder, a DOI, an image or a name")
    p.add_argument("-o", "--output", metavar="DIR",
                   help="where (default: a folder's .gardenbuild/page, else ./NAME-page)")
    add_registry_options(p)
    add_json(p)


HANDLERS = {"pull": cmd_pull, "info": cmd_info, "page": cmd_page}
