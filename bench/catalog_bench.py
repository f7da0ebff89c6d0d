#!/usr/bin/env python3
"""Catalog search with many gardens, beside the usual ways of doing the same search.

    python bench/catalog_bench.py [--gardens 1000] [--repeat 5] [--skip-export]

Fills a catalog in a temporary folder with --gardens synthetic gardens (cards shaped as
builds write them: a title, description, keywords, authors, one or two pipelines with
docstrings), recorded the way builds and pulls record them. Then, per query of a fixed
mix (one word, a prefix, two words, a word plus a filter, a filter alone, sorted by usage),
medians and 95th percentiles over --repeat rounds of:

  gardenbuild.search.search   the FTS5 index, ranked by BM25 (what `catalog serve` runs)
  HTTP /api/gardens           the same through the live app, over loopback
  usual: SQL LIKE             LIKE '%word%' over the stored cards (count, then the first 50 by
                              name: no ranking), the usual SQLite way
  usual: load and scan        every card parsed in Python and each word looked for in it

and, unless --skip-export, `gardenbuild.site.export` of the whole catalog (every page).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

WORDS = ("solubility toxicity band gap crystal polymer protein binding affinity catalyst yield reaction energy "
         "spectrum image segmentation cell nucleus galaxy redshift climate rainfall flood seismic fault battery "
         "electrolyte alloy hardness fatigue enzyme kinetics genome variant drug dose pharmacokinetics ligand "
         "docking surrogate emulator turbulence plasma fusion").split()
KEYWORDS = ("chemistry materials biology physics astronomy climate geoscience medicine energy imaging").split()
FLAVORS = ("base", "sklearn", "torch", "tensorflow")
LICENSES = ("MIT", "Apache-2.0", "BSD-3-Clause", "CC-BY-4.0")
PEOPLE = [f"{g} {f}" for g in ("Ada", "Grace", "Alan", "Emmy", "Marie", "Niels", "Rosalind", "Carl")
          for f in ("Lovelace", "Hopper", "Turing", "Noether", "Curie", "Bohr", "Franklin", "Gauss")]
QUERIES = [{"q": "solubility"}, {"q": "solub"}, {"q": "band gap"}, {"q": "protein", "flavor": "torch"},
           {"keyword": "chemistry"}, {"q": "energy", "sort": "usage"}]


def vocabulary(rng: random.Random, n: int = 3000) -> list[str]:
    """The domain words and made-up ones, drawn by a Zipf law, as words in text are."""
    made = {"".join(rng.choices("abcdefghiklmnoprstuvy", k=rng.randint(4, 10))) for _ in range(n)}
    words = list(WORDS) + sorted(made - set(WORDS))
    rng.shuffle(words)  # the domain words land anywhere from common to rare
    return words


def prose(rng: random.Random, vocab: list[str], k: int) -> str:
    weights = [1 / (r + 1) for r in range(len(vocab))]
    return " ".join(rng.choices(vocab, weights=weights, k=k))


def synthetic_card(i: int, rng: random.Random, vocab: list[str]) -> dict:
    topic = rng.sample(WORDS, 4)
    name = f"{topic[0]}-{topic[1]}-{i}"
    return {"card": 1, "flavor": rng.choice(FLAVORS), "python": "3.11.2", "accelerator": "cpu", "packages": {},
            "limits": {}, "meta": {
                "name": name, "version": f"1.{i % 7}.0", "title": f"{topic[0].title()} {topic[1]} from {topic[2]}",
                "description": prose(rng, vocab, 40), "license": rng.choice(LICENSES),
                "keywords": rng.sample(KEYWORDS, 2), "repository": None, "papers": [], "datasets": [],
                "authors": [{"name": p, "orcid": None, "affiliation": None} for p in rng.sample(PEOPLE, 2)]},
            "pipelines": [{"name": f"predict_{topic[3]}_{k}", "signature": "(x: list[float]) -> list[float]",
                           "docstring": prose(rng, vocab, 25), "description": "", "tests": []}
                          for k in range(rng.randint(1, 2))]}


def fill(catalog, n: int) -> None:
    rng = random.Random(0)
    vocab = vocabulary(rng)
    for i in range(n):
        card = synthetic_card(i, rng, vocab)
        if i % 2:
            catalog.record_pull(image_ref=f"127.0.0.1:5000/gardens/{i}@sha256:{i:064x}", image_id=f"{i:064x}",
                                card=card, doi=None, function_ids={}, source="bench")
        else:
            catalog.record_build({"garden": card["meta"]["name"], "version": card["meta"]["version"], "image": "x",
                                  "image_id": f"{i:064x}"}, card=card)
        if i % 5 == 0:
            catalog.add_usage(card["meta"]["name"], "p", "serve", calls=rng.randint(1, 500), errors=0, seconds=1.0)


def like_search(path: Path, params: dict) -> list[str]:
    """The usual SQLite way: LIKE over the stored card JSON, no index."""
    where, args = [], []
    for word in params.get("q", "").split():
        where.append("card LIKE ?")
        args.append(f"%{word}%")
    for key in ("keyword", "flavor"):
        if params.get(key):
            where.append("card LIKE ?")
            args.append(f'%"{params[key]}"%')
    sql = "FROM listing" + (" WHERE " + " AND ".join(where) if where else "")
    with sqlite3.connect(path) as db:  # as the search does: how many match, then the first page
        db.execute(f"SELECT COUNT(*) {sql}", args).fetchone()
        rows = db.execute(f"SELECT garden, card {sql} ORDER BY garden LIMIT 50", args).fetchall()
    return [json.loads(r[1])["meta"]["name"] for r in rows]


def scan_search(catalog, params: dict) -> list[str]:
    """Load every card, look for each word in its text."""
    with catalog.reading() as db:
        cards = [json.loads(r[0]) for r in db.execute("SELECT card FROM listing")]
    found = []
    for card in cards:
        meta = card["meta"]
        text = " ".join([meta["name"], meta["title"], meta["description"], *meta["keywords"],
                         *(a["name"] for a in meta["authors"]),
                         *(p["name"] + " " + p["docstring"] for p in card["pipelines"])]).lower()
        if all(w in text for w in params.get("q", "").lower().split()) and \
                (not params.get("keyword") or params["keyword"] in meta["keywords"]) and \
                (not params.get("flavor") or card["flavor"] == params["flavor"]):
            found.append(meta["name"])
    return sorted(found)[:50]


def timed(fn, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1e3)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gardens", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-export", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GARDENBUILD_DATA"] = tmp
        os.environ["GARDENBUILD_NO_USAGE"] = "1"
        from gardenbuild.catalog import Catalog
        from gardenbuild.search import parse_query, search
        from gardenbuild.site import Site, export, server

        catalog = Catalog()
        started = time.perf_counter()
        fill(catalog, args.gardens)
        filled = time.perf_counter() - started
        srv = server(Site(catalog), "127.0.0.1", 0)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{srv.server_address[1]}/api/gardens?"

        def http(params: dict) -> None:
            with urllib.request.urlopen(base + urllib.parse.urlencode(params), timeout=30) as r:
                r.read()

        print(f"{args.gardens} synthetic gardens recorded in {filled:.2f} s; per query, median / p95 of "
              f"{args.repeat} (ms):")
        print(f"  {'query':40} {'matches':>7} {'FTS5':>13} {'HTTP API':>13} {'usual: LIKE':>13} {'usual: scan':>13}")
        worst = 0.0
        for params in QUERIES:
            query = parse_query(params)
            count = search(catalog, query)["count"]
            figures = [timed(lambda: search(catalog, query), args.repeat), timed(lambda: http(params), args.repeat),
                       timed(lambda: like_search(catalog.path, params), args.repeat),
                       timed(lambda: scan_search(catalog, params), args.repeat)]
            worst = max(worst, figures[0][1])
            cells = "".join(f" {m:6.2f} /{p:6.2f}" for m, p in figures)
            print(f"  {urllib.parse.urlencode(params):40} {count:7d}{cells}")
        print(f"  slowest FTS5 query, p95: {worst:.2f} ms")
        srv.shutdown()
        srv.server_close()
        if not args.skip_export:
            started = time.perf_counter()
            done = export(catalog, Path(tmp) / "site")
            seconds = time.perf_counter() - started
            size = sum(f.stat().st_size for f in (Path(tmp) / "site").rglob("*") if f.is_file())
            print(f"export of {done['gardens']} gardens: {seconds:.2f} s ({seconds / done['gardens'] * 1e3:.1f} ms "
                  f"a garden, {size / 1e6:.1f} MB, index.html {(Path(tmp) / 'site' / 'index.html').stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
