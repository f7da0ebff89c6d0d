"""The catalog as a web site: every garden built, pulled or published on this machine.

`Site.respond` answers one request (search page, JSON API, model pages, citation
files) from the catalog; `serve` puts it on a loopback socket (`gardenbuild catalog
serve`); `export` writes the same site as static files (`gardenbuild catalog export
DIR`), searched in the browser over an index built into the page. Model pages are
`gardenbuild.page`'s, made from the card the catalog keeps: no container starts.

Routes (GET and HEAD; anything else is a JSON 405; every error is JSON):

    /                          search page (the form works without JavaScript)
    /api/gardens?q=&keyword=&author=&flavor=&license=&sort=&limit=
    /api/gardens/NAME          one garden: its listing and card
    /api/facets                the values each filter can take
    /gardens/NAME/             its model page; /gardens/NAME/citation.bib and the rest
    /hubs/NAME/                a hub's leaderboard (as `gardenbuild bench` last scored it)
    /api/hubs, /api/hubs/NAME  the hubs, and one hub's scores, as JSON
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import tempfile
import urllib.parse
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gardenbuild.catalog import Catalog
from gardenbuild.consumer.resolve import Resolved
from gardenbuild.errors import UserError
from gardenbuild.page import DOWNLOADS
from gardenbuild.search import MAX_LIMIT, Query, QueryError, facets, parse_query, search, words

PAGES = "gardens"
HUBS = "hubs"
INDEX = "index.json"
#: A client that sends nothing for this long is dropped: no request holds a thread forever.
CLIENT_TIMEOUT = 15.0
TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json", ".bib": "application/x-bibtex",
         ".ris": "application/x-research-info-systems", ".cff": "text/plain; charset=utf-8"}


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, message: str, **extra: Any) -> Response:
    return Response(status, json.dumps({"error": message, "status": status, **extra}).encode())


def resolved_of(catalog: Catalog, row: Mapping[str, Any]) -> Resolved:
    """A listed garden as the page writer needs it, from the catalog alone."""
    from gardenbuild.consumer.refs import Ref
    from gardenbuild.consumer.resolve import Resolver
    from gardenbuild.engine.outputs import last_build

    ref = Ref("name", row["garden"], name=row["garden"])
    ids = [row["image_id"]]
    if row["source"] == "pull":  # the listing is the pull's row: resolved as `run` resolves a pull
        return Resolver(catalog=catalog).from_pull(ref, catalog.pull(row["image_ref"]))
    root = Path(row["root"]) if row.get("root") else None
    if root is not None and not (root / "Gardenfile.toml").is_file():
        root = None  # the folder has moved: the card is still true, its build outputs are gone
    summary = last_build(root) if root else None
    if summary and summary.get("image_id") != row["image_id"]:
        summary = None  # the folder has been built again since: its outputs are another image's
    resolved = Resolved(ref, row["card"], image=row["image_id"], image_ids=ids, root=root if summary else None,
                        summary=summary, digest=(summary or {}).get("digest"))
    Resolver(catalog=catalog).add_publication(resolved, row["image_id"])
    return resolved


def page_files(catalog: Catalog, row: Mapping[str, Any], back: str) -> dict[str, str]:
    from gardenbuild.page import files

    resolved = resolved_of(catalog, row)
    return files(resolved, usage=catalog.usage(row["garden"]), verification=catalog.verification(resolved.image_ids),
                 back=back)


def hub_page(catalog: Catalog, row: Mapping[str, Any], link: Any, back: str) -> tuple[str, list[Any]]:
    """A hub's page from what the catalog kept of its last bench, members linked by
    ``link(garden)`` to their model pages; and its leaderboard."""
    from gardenbuild.hub.bench import from_row, ranked
    from gardenbuild.hub.page import context, higher_is_better, render

    spec = row["spec"]
    kept = catalog.scores(row["name"])
    members = [m.get("name") for m in spec["member"]]
    scores = [from_row(r) for name, r in kept.items() if not all(members) or name in members]
    board = ranked(scores, spec["metric"][0]["name"], higher_is_better(spec["metric"][0]))
    pages, titles = {}, {}
    for s in board:
        listed = catalog.listed(s.garden) if s.garden else None
        if listed is not None:
            pages[s.member] = link(s.garden)
            titles[s.member] = listed["card"].get("meta", {}).get("title")
    return render(context(spec, row["rows"], board, pages=pages, hub_ref=row["root"] or row["name"],
                          titles=titles, back=back)), board


def hub_entries(catalog: Catalog, link: Any) -> list[dict[str, Any]]:
    return [{"name": h["name"], "title": h["spec"]["hub"]["title"], "members": len(h["spec"]["member"]),
             "page": link(h["name"])} for h in catalog.hubs()]


def render_index(ctx: Mapping[str, Any]) -> str:
    from gardenbuild.page import environment

    return environment().get_template("catalog.html.j2").render(**ctx)


@dataclass
class Site:
    """The live app: answers from the catalog as it is at each request."""

    catalog: Catalog

    def respond(self, method: str, target: str) -> Response:
        if method not in ("GET", "HEAD"):
            refused = error(405, f"{method} is not allowed here; this site only reads")
            refused.headers["Allow"] = "GET, HEAD"
            return refused
        url = urllib.parse.urlsplit(target)
        path = urllib.parse.unquote(url.path)
        params = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        try:
            if path in ("/", "/index.html"):
                return self.index(parse_query(params))
            if path == "/api/gardens":
                return self.api_search(parse_query(params))
            if path == "/api/facets":
                return Response(200, json.dumps(facets(self.catalog)).encode())
            if path.startswith("/api/gardens/"):
                return self.api_garden(path[len("/api/gardens/"):])
            if path.startswith(f"/{PAGES}/"):
                return self.page(path[len(PAGES) + 2:])
            if path == "/api/hubs":
                return Response(200, json.dumps({"hubs": hub_entries(self.catalog, self.hub_link)}).encode())
            if path.startswith("/api/hubs/") or path.startswith(f"/{HUBS}/"):
                return self.hub(path)
        except QueryError as exc:
            return error(400, exc.message, parameter=exc.parameter, hint=exc.hint)
        return error(404, f"nothing at {path}", hint="see / for the gardens, /api/gardens for them as JSON")

    @staticmethod
    def link(garden: str) -> str:
        return f"{PAGES}/{urllib.parse.quote(garden, safe='')}/"

    def found(self, query: Query) -> dict[str, Any]:
        result = search(self.catalog, query)
        for g in result["gardens"]:
            g["page"] = self.link(g["garden"])
        return result

    @staticmethod
    def hub_link(name: str) -> str:
        return f"{HUBS}/{urllib.parse.quote(name, safe='')}/"

    def hub(self, path: str) -> Response:
        api = path.startswith("/api/")
        name, slash, rest = path.removeprefix("/api/hubs/" if api else f"/{HUBS}/").partition("/")
        row = next((h for h in self.catalog.hubs() if h["name"] == name), None)
        if row is None:
            return error(404, f"the catalog knows no hub '{name}'", hint="`gardenbuild bench HUB` records one")
        if not api and not slash:
            return Response(308, b"", headers={"Location": f"/{self.hub_link(name)}"})
        if rest not in ("", "index.html"):
            return error(404, f"nothing at {path}")
        html, board = hub_page(self.catalog, row, lambda garden: f"../../{self.link(garden)}", back="../../")
        if api:
            return Response(200, json.dumps({"hub": row["spec"]["hub"], "rows": row["rows"],
                                             "scores": [s.as_json() for s in board]}).encode())
        return Response(200, html.encode(), TYPES[".html"])

    def index(self, query: Query) -> Response:
        result = self.found(query)
        html = render_index({"mode": "api", "query": asdict(query), "facets": facets(self.catalog),
                             "hubs": hub_entries(self.catalog, self.hub_link),
                             "gardens": result["gardens"], "count": result["count"],
                             "total": search(self.catalog, Query(limit=1))["count"]})
        return Response(200, html.encode(), TYPES[".html"])

    def api_search(self, query: Query) -> Response:
        return Response(200, json.dumps(self.found(query)).encode())

    def api_garden(self, name: str) -> Response:
        row = self.catalog.listed(name)
        if row is None:
            return error(404, f"the catalog lists no garden '{name}'")
        return Response(200, json.dumps({**row, "page": self.link(name)}, default=str).encode())

    def page(self, rest: str) -> Response:
        name, slash, file = rest.partition("/")
        row = self.catalog.listed(name)
        if row is None:
            return error(404, f"the catalog lists no garden '{name}'", hint="see / for the gardens it lists")
        if not slash:  # /gardens/NAME: the page's relative links need the slash
            return Response(308, b"", headers={"Location": f"/{self.link(name)}"})
        file = file or "index.html"
        if file not in ("index.html", *DOWNLOADS.values()):
            return error(404, f"the page of '{name}' has no file '{file}'",
                         hint=f"its files: index.html, {', '.join(DOWNLOADS.values())}")
        body = page_files(self.catalog, row, back="../../")[file]
        return Response(200, body.encode(), TYPES.get(Path(file).suffix, "text/plain; charset=utf-8"))


# -- serving --------------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "gardenbuild-catalog"
    timeout = CLIENT_TIMEOUT
    site: Site
    log: Any = None

    def _answer(self) -> None:
        try:
            response = self.site.respond(self.command, self.path)
        except Exception as exc:  # a bug or an unreadable catalog: a JSON 500, the server stays up
            response = error(500, f"{type(exc).__name__}: {exc}")
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _answer

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What the standard library would answer in HTML (a bad request line, a header too
        long), in JSON."""
        body = error(code, message or self.responses.get(code, ("error",))[0]).body
        if self.request_version == "HTTP/0.9":  # not even a request line: answer with a status line all the same
            self.request_version = "HTTP/1.0"
        self.send_response(code, message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.log:
            self.log(format % args)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a stop does not wait for a client that keeps its connection


def server(site: Site, host: str, port: int, log: Any = None) -> Server:
    """The site, listening on ``host:port`` (0: any free port); `serve_forever` runs it."""
    from gardenbuild.runtime.serve import bound_socket

    handler = type("Handler", (_Handler,), {"site": site, "log": staticmethod(log) if log else None})
    srv = Server((host, port), handler, bind_and_activate=False)
    srv.socket.close()
    srv.socket = bound_socket(host, port)
    srv.server_address = srv.socket.getsockname()[:2]
    return srv


def is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    import ipaddress

    return all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


# -- the static export ----------------------------------------------------------------------

def slug(name: str) -> str:
    """A garden's folder name in an export: its name with anything unsafe in a path replaced."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "garden"


class ExportError(UserError):
    pass


def export(catalog: Catalog, out: Path, *, progress: Any = None) -> dict[str, Any]:
    """Write the whole site as static files into ``out``: ``index.html`` (search in the
    browser), ``index.json`` (the same index, for scripts) and ``gardens/SLUG/`` with each
    model page and its citation files. The site is written beside ``out`` and moved into
    place at the end, so an interrupted export leaves the previous one whole."""
    out = out.resolve()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_export(out))):
        raise ExportError(f"{out} exists and is not a catalog export; nothing was written",
                          hint="name a new or empty folder, or one `gardenbuild catalog export` wrote before")
    total = search(catalog, Query(limit=1))["count"]
    result = search(catalog, Query(sort="name", limit=max(1, min(total, MAX_LIMIT))))
    exported = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    taken: set[str] = set()
    entries = []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".export", dir=out.parent))
    try:
        for n, g in enumerate(result["gardens"], 1):
            name = slug(g["garden"])
            while name.lower() in taken:  # case-insensitive file systems
                name += "-"
            taken.add(name.lower())
            g["page"] = f"{PAGES}/{name}/index.html"  # not .../: opened from a file, a folder is no page
            row = catalog.listed(g["garden"])
            for file, body in page_files(catalog, row, back="../../index.html").items():
                _write(tmp / PAGES / name / file, body)
            docstrings = [str(p.get("docstring") or "") for p in row["card"].get("pipelines") or []]
            text = [g["garden"], g["title"] or "", g["description"] or "", *g["keywords"], *g["authors"],
                    *g["pipelines"], *docstrings]
            entries.append({**g, "words": sorted(set(words(" ".join(text)))),
                            "title_words": words(f"{g['garden']} {g['title'] or ''}")})
            if progress:
                progress(n, len(result["gardens"]), g["garden"])
        index = {"generator": "gardenbuild", "exported": exported, "gardens": entries}
        _write(tmp / INDEX, json.dumps(index, indent=1, sort_keys=True) + "\n")
        slugs = {g["garden"]: g["page"] for g in result["gardens"]}
        for row in catalog.hubs():
            html, _ = hub_page(catalog, row, lambda garden: f"../../{slugs[garden]}" if garden in slugs else None,
                               back="../../index.html")
            _write(tmp / HUBS / slug(row["name"]) / "index.html", html)
        _write(tmp / "index.html", render_index({
            "mode": "static", "query": asdict(Query()), "facets": facets(catalog),
            "hubs": hub_entries(catalog, lambda name: f"{HUBS}/{slug(name)}/index.html"),
            "gardens": result["gardens"], "count": result["count"], "total": result["count"],
            "exported": exported, "index": index}))
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"dir": str(out), "gardens": len(result["gardens"]), "exported": exported}


def _is_export(path: Path) -> bool:
    try:
        return json.loads((path / INDEX).read_text()).get("generator") == "gardenbuild"
    except (OSError, ValueError, AttributeError):
        return False


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _swap(new: Path, out: Path) -> None:
    """Put ``new`` where ``out`` is; the old export is removed only once the new one is there."""
    if not out.exists():
        os.rename(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rename(out, old / "site")
    os.rename(new, out)
    shutil.rmtree(old, ignore_errors=True)


# -- cards for builds recorded before the catalog kept them ---------------------------------

def backfill_cards(catalog: Catalog, backend: Any) -> int:
    """Read the card of each garden's latest build the catalog has none for from its image's
    labels in local storage (a millisecond each, no buildah process); return how many."""
    from gardenbuild.card import from_labels

    done = 0
    for build in catalog.unlisted_builds():
        labels = backend.stored_labels(build["image_id"])
        card = from_labels(labels) if labels else None
        if card:
            catalog.set_build_card(build["id"], card)
            done += 1
    return done
