"""Searching the catalog's listing: full text (SQLite FTS5), filters, sorting.

`parse_query` turns request parameters (a web form, ``/api/gardens?q=...``, a script)
into a `Query` or one `QueryError` naming the parameter; `search` runs it against the
listing `gardenbuild.catalog` keeps; `facets` lists the values each filter can take.
Pure given the catalog: no network, no containers.

Free text is matched word by word, every word as a prefix (``solub`` finds
*solubility*), accents folded, against the title, description, keywords, authors,
pipeline names and docstrings; results are ranked by BM25 with the title and name
weighted above the rest.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gardenbuild.catalog import Catalog
from gardenbuild.errors import UserError

SORTS = ("relevance", "name", "date", "usage")
FILTERS = ("keyword", "author", "flavor", "license")
PARAMETERS = ("q", *FILTERS, "sort", "limit")
DEFAULT_LIMIT, MAX_LIMIT = 50, 5000
#: BM25 weights of the text columns: garden, title, description, keywords, authors, pipelines, docstrings.
WEIGHTS = (8.0, 10.0, 2.0, 5.0, 3.0, 4.0, 1.0)
_WORD = re.compile(r"\w+")


class QueryError(UserError):
    """A search parameter that cannot be used; ``parameter`` names it."""

    def __init__(self, message: str, *, parameter: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.parameter = parameter


@dataclass(frozen=True)
class Query:
    q: str = ""
    keyword: str = ""
    author: str = ""
    flavor: str = ""
    license: str = ""
    sort: str = ""  # "" is relevance with words to match, else name
    limit: int = DEFAULT_LIMIT

    @property
    def order(self) -> str:
        return self.sort or ("relevance" if words(self.q) else "name")

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "sort": self.order}


def words(text: str) -> list[str]:
    """The words of ``text``, lower-cased with accents folded, as FTS5's unicode61 tokenizer
    (with ``remove_diacritics``) sees them; the static site's script does the same."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return _WORD.findall(folded.lower())


def parse_query(params: Mapping[str, Any]) -> Query:
    """A `Query` from request parameters (each a string, or a list of them as
    ``urllib.parse.parse_qs`` gives); a `QueryError` for any that cannot be used."""
    values: dict[str, str] = {}
    for key, value in params.items():
        if key not in PARAMETERS:
            raise QueryError(f"unknown search parameter '{key}'", parameter=key,
                             hint=f"use any of: {', '.join(PARAMETERS)}")
        if isinstance(value, (list, tuple)):
            if len(value) > 1:
                raise QueryError(f"the search parameter '{key}' is given {len(value)} times", parameter=key,
                                 hint="give it once")
            value = value[0] if value else ""
        values[key] = str(value).strip()
    sort = values.pop("sort", "")
    if sort and sort not in SORTS:
        raise QueryError(f"cannot sort by '{sort}'", parameter="sort", hint=f"sort by one of: {', '.join(SORTS)}")
    limit_text = values.pop("limit", "") or str(DEFAULT_LIMIT)
    try:
        limit = int(limit_text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not '{limit_text}'", parameter="limit")
    if len(values.get("q", "")) > 500:
        raise QueryError("the search text (q) is longer than 500 characters", parameter="q", hint="search for fewer words")
    return Query(sort=sort, limit=limit, **values)


def match_expression(text: str) -> str | None:
    """The FTS5 MATCH expression for free text: every word, as a prefix, all required.
    Words are quoted, so nothing the user types is read as FTS5 syntax."""
    found = words(text)
    return " ".join(f'"{w}"*' for w in found) if found else None


_ENTRY = """
    SELECT l.id, l.garden, l.version, l.source, l.image_ref, l.flavor, l.license, l.keywords, l.authors, l.updated,
           t.title, t.description, t.pipelines,
           COALESCE((SELECT SUM(calls) FROM usage WHERE garden = l.garden), 0) AS calls,
           COALESCE((SELECT SUM(errors) FROM usage WHERE garden = l.garden), 0) AS errors,
           COALESCE((SELECT doi FROM pulls WHERE image_ref = l.image_ref),
                    (SELECT doi FROM publications WHERE garden = l.garden AND doi IS NOT NULL
                     ORDER BY updated DESC LIMIT 1)) AS doi
    FROM listing l JOIN listing_text t ON t.rowid = l.id
"""
_CALLS = "(SELECT SUM(calls) FROM usage WHERE garden = l.garden)"
_ORDER = {"name": "l.garden COLLATE NOCASE, l.garden", "date": "l.updated DESC, l.garden",
          "usage": f"COALESCE({_CALLS}, 0) DESC, l.garden COLLATE NOCASE",
          "relevance": "bm25(listing_text, {}), l.garden"}


def _where(query: Query) -> tuple[str, list[Any], str]:
    """The WHERE clause of ``query`` (over ``listing l`` joined with ``listing_text t``), its
    arguments, and the ORDER BY."""
    where, args = [], []
    expression = match_expression(query.q)
    terms = [expression] if expression else []
    for column in ("keyword", "author"):
        value = getattr(query, column)
        if value:  # the index narrows to the gardens with these words there; the exact value decides
            if words(value):
                terms.append(f'{column}s : "{" ".join(words(value))}"')
            where.append(f"EXISTS (SELECT 1 FROM json_each(l.{column}s) WHERE casefold(value) = casefold(?))")
            args.append(value)
    if terms:
        where.insert(0, "listing_text MATCH ?")
        args.insert(0, " AND ".join(terms))
    for column in ("flavor", "license"):
        value = getattr(query, column)
        if value:
            where.append(f"casefold(l.{column}) = casefold(?)")
            args.append(value)
    order = _ORDER[query.order if expression or query.order != "relevance" else "name"]
    return (" WHERE " + " AND ".join(where) if where else ""), args, order.format(", ".join(map(str, WEIGHTS)))


def search(catalog: Catalog, query: Query) -> dict[str, Any]:
    """``{"query", "count", "gardens"}``: the gardens that match, best first, at most
    ``query.limit`` of the ``count`` that match. The matches are ranked on their ids alone;
    only the page shown is read in full."""
    where, args, order = _where(query)
    with catalog.reading() as db:
        hits = f"FROM listing l JOIN listing_text t ON t.rowid = l.id{where}"
        count = db.execute(f"SELECT COUNT(*) {hits}", args).fetchone()[0]
        ids = [r[0] for r in db.execute(f"SELECT l.id {hits} ORDER BY {order} LIMIT ?", [*args, query.limit])]
        rows = db.execute(f"{_ENTRY} WHERE l.id IN ({', '.join('?' * len(ids))})", ids).fetchall() if ids else []
    place = {i: n for n, i in enumerate(ids)}
    gardens = [entry(r) for r in sorted(rows, key=lambda r: place[r["id"]])]
    return {"query": query.as_json(), "count": count, "gardens": gardens}


def entry(row: Any) -> dict[str, Any]:
    data = dict(row)
    del data["id"]
    data["keywords"], data["authors"] = json.loads(data["keywords"]), json.loads(data["authors"])
    data["pipelines"] = data["pipelines"].split()
    return data


def facets(catalog: Catalog) -> dict[str, list[dict[str, Any]]]:
    """Each filter's values across the listing, with how many gardens have each."""
    out = {}
    with catalog.reading() as db:
        for name, source in (("keyword", "json_each(l.keywords)"), ("author", "json_each(l.authors)")):
            out[name] = [{"value": r[0], "count": r[1]} for r in db.execute(
                f"SELECT value, COUNT(DISTINCT l.id) FROM listing l, {source} WHERE value != '' "
                "GROUP BY casefold(value) ORDER BY casefold(value)")]
        for name in ("flavor", "license"):
            out[name] = [{"value": r[0], "count": r[1]} for r in db.execute(
                f"SELECT {name}, COUNT(*) FROM listing WHERE COALESCE({name}, '') != '' "
                f"GROUP BY casefold({name}) ORDER BY casefold({name})")]
    return out
