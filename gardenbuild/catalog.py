"""The local catalog: every build and every publication of a garden, in one SQLite file.

Where: ``$GARDENBUILD_DATA/catalog.sqlite``, else ``platformdirs.user_data_dir("gardenbuild")``.

A *publication* is keyed by garden, version and local image id: what was pushed (the
image by digest), the DOI and its state, the Globus Compute function ids, and the state
of each publish stage (pending, done, failed). A publish that stops half-way leaves this
record behind, and the next run reads it to resume without minting a second DOI or
registering functions twice.

The catalog never holds a secret: callers pass no credentials in, and error texts are
stored only after `gardenbuild.publish` has scrubbed them.

A *pull* is a garden someone else published, fetched by digest (`gardenbuild pull`): its
registry reference, local image id, DOI, Globus Compute function ids and garden card.

The *listing* is one row per garden, the one most recently built or pulled, with its
garden card, and a full-text index (SQLite FTS5) over its title, description, keywords,
authors, pipeline names and docstrings: what `gardenbuild catalog serve` searches. It is
derived from the builds and pulls and rewritten in the same transaction as they are.

A *verification* is the outcome of `gardenbuild verify` for one image: whether a rebuild
from scratch was bit-for-bit identical, and when.

*Usage* counts the local calls of each pipeline (`gardenbuild run`, a served garden, the
Python API): calls, errors and seconds in the pipeline, per way of calling. Nothing of the
inputs or outputs is kept. ``GARDENBUILD_NO_USAGE=1`` turns it off.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gardenbuild.errors import GardenError
from gardenbuild.report import NullReporter, Reporter

FILENAME = "catalog.sqlite"
#: `catalog serve`'s port unless --port says otherwise (gardenbuild.site serves it).
SITE_PORT = 8765
SCHEMA_VERSION = 3
STATES = ("pending", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS builds (
    id          INTEGER PRIMARY KEY,
    garden      TEXT NOT NULL,
    version     TEXT NOT NULL,
    image       TEXT NOT NULL,
    image_id    TEXT NOT NULL,
    env_image   TEXT,
    python      TEXT,
    flavor      TEXT,
    pipelines   TEXT NOT NULL DEFAULT '[]',
    root        TEXT,
    card        TEXT,
    first_built TEXT NOT NULL,
    last_built  TEXT NOT NULL,
    UNIQUE (garden, version, image_id)
);
CREATE TABLE IF NOT EXISTS publications (
    id               INTEGER PRIMARY KEY,
    garden           TEXT NOT NULL,
    version          TEXT NOT NULL,
    image_id         TEXT NOT NULL,
    registry         TEXT,
    image_ref        TEXT,
    pushed_labels    TEXT,
    doi              TEXT,
    doi_state        TEXT,
    datacite_api     TEXT,
    publication_year TEXT,
    metadata_hash    TEXT,
    function_ids     TEXT NOT NULL DEFAULT '{}',
    created          TEXT NOT NULL,
    updated          TEXT NOT NULL,
    UNIQUE (garden, version, image_id)
);
CREATE TABLE IF NOT EXISTS stages (
    publication_id INTEGER NOT NULL REFERENCES publications(id) ON DELETE CASCADE,
    stage          TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    detail         TEXT,
    error          TEXT,
    updated        TEXT NOT NULL,
    PRIMARY KEY (publication_id, stage)
);
CREATE TABLE IF NOT EXISTS usage (
    garden   TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    via      TEXT NOT NULL,
    calls    INTEGER NOT NULL DEFAULT 0,
    errors   INTEGER NOT NULL DEFAULT 0,
    seconds  REAL NOT NULL DEFAULT 0,
    first    TEXT NOT NULL,
    last     TEXT NOT NULL,
    PRIMARY KEY (garden, pipeline, via)
);
CREATE TABLE IF NOT EXISTS pulls (
    image_ref    TEXT PRIMARY KEY,
    garden       TEXT NOT NULL,
    version      TEXT NOT NULL,
    image_id     TEXT NOT NULL,
    doi          TEXT,
    card         TEXT NOT NULL,
    function_ids TEXT NOT NULL DEFAULT '{}',
    source       TEXT,
    first_pulled TEXT NOT NULL,
    last_pulled  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS listing (
    id        INTEGER PRIMARY KEY,
    garden    TEXT NOT NULL UNIQUE,
    version   TEXT NOT NULL,
    source    TEXT NOT NULL CHECK (source IN ('build', 'pull')),
    image_id  TEXT NOT NULL,
    image_ref TEXT,
    root      TEXT,
    flavor    TEXT,
    license   TEXT,
    keywords  TEXT NOT NULL DEFAULT '[]',
    authors   TEXT NOT NULL DEFAULT '[]',
    card      TEXT NOT NULL,
    updated   TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS listing_text USING fts5(
    garden, title, description, keywords, authors, pipelines, docstrings,
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS verifications (
    garden   TEXT NOT NULL,
    version  TEXT NOT NULL,
    image_id TEXT NOT NULL,
    match    INTEGER NOT NULL,
    stages   TEXT NOT NULL DEFAULT '[]',
    checked  TEXT NOT NULL,
    PRIMARY KEY (garden, version, image_id)
);
CREATE TABLE IF NOT EXISTS scores (
    hub         TEXT NOT NULL,
    member      TEXT NOT NULL,
    ref         TEXT NOT NULL,
    key         TEXT NOT NULL,
    garden      TEXT,
    version     TEXT,
    image_id    TEXT,
    digest      TEXT,
    data_sha256 TEXT NOT NULL,
    metrics     TEXT NOT NULL DEFAULT '{}',
    uncertainty TEXT,
    seconds     REAL,
    error       TEXT,
    scored      TEXT NOT NULL,
    PRIMARY KEY (hub, member)
);
CREATE TABLE IF NOT EXISTS hubs (
    name    TEXT PRIMARY KEY,
    spec    TEXT NOT NULL,
    rows    INTEGER NOT NULL,
    root    TEXT,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id             INTEGER PRIMARY KEY,
    publication_id INTEGER NOT NULL REFERENCES publications(id) ON DELETE CASCADE,
    targets        TEXT NOT NULL,
    started        TEXT NOT NULL,
    finished       TEXT,
    outcome        TEXT,
    error          TEXT
);
"""


class CatalogError(GardenError):
    """The catalog file cannot be opened or written."""


def default_path() -> Path:
    """``$GARDENBUILD_DATA/catalog.sqlite``, else the user data dir's."""
    env = os.environ.get("GARDENBUILD_DATA")
    if env:
        return Path(env) / FILENAME
    from platformdirs import user_data_dir

    return Path(user_data_dir("gardenbuild")) / FILENAME


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Stage:
    stage: str
    state: str
    detail: str | None = None
    error: str | None = None
    updated: str = ""


@dataclass
class Publication:
    """What has been published of one garden version built into one image."""

    id: int | None
    garden: str
    version: str
    image_id: str
    registry: str | None = None
    image_ref: str | None = None  # name@sha256:... in the registry
    pushed_labels: str | None = None  # hash of the labels the pushed image carries
    doi: str | None = None
    doi_state: str | None = None  # draft | findable
    datacite_api: str | None = None
    publication_year: str | None = None
    metadata_hash: str | None = None  # of the DataCite metadata last sent
    function_ids: dict[str, str] = field(default_factory=dict)
    created: str = ""
    updated: str = ""
    stages: dict[str, Stage] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["stages"] = {name: asdict(s) for name, s in sorted(self.stages.items())}
        return data

    def done(self, stage: str) -> bool:
        return stage in self.stages and self.stages[stage].state == "done"


_PUB_FIELDS = ("registry", "image_ref", "pushed_labels", "doi", "doi_state", "datacite_api",
               "publication_year", "metadata_hash", "function_ids")


class Catalog:
    """One SQLite file; each method is one short transaction, safe across processes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_path()

    @contextmanager
    def _db(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        try:
            if write or self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30)
            else:  # reading a catalog that does not exist yet: an empty one, and no file created
                conn = sqlite3.connect(":memory:")
            try:
                conn.row_factory = sqlite3.Row
                # SQLite's lower() folds ASCII only; the listing's filters compare any script's case.
                conn.create_function("casefold", 1, lambda v: v.casefold() if isinstance(v, str) else v,
                                     deterministic=True)
                conn.execute("PRAGMA foreign_keys = ON")
                conn.executescript(_SCHEMA)  # CREATE ... IF NOT EXISTS: cheap once the tables are there
                if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    with conn:
                        _migrate(conn)
                with conn:
                    yield conn
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise CatalogError(f"the catalog {self.path} cannot be used: {exc}",
                               hint="set GARDENBUILD_DATA to a writable folder") from None

    # -- builds ---------------------------------------------------------------------------

    def record_build(self, build: Mapping[str, Any], root: Path | str | None = None,
                     card: Mapping[str, Any] | None = None) -> int:
        """Remember a build (the ``build.json`` summary, and the garden card its image carries);
        a rebuild of the same image updates it."""
        stamp = now()
        with self._db() as db:
            db.execute(
                """INSERT INTO builds (garden, version, image, image_id, env_image, python, flavor, pipelines,
                                       root, card, first_built, last_built)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (garden, version, image_id) DO UPDATE SET
                       image = excluded.image, env_image = excluded.env_image, pipelines = excluded.pipelines,
                       root = COALESCE(excluded.root, builds.root), card = COALESCE(excluded.card, builds.card),
                       last_built = excluded.last_built""",
                (build["garden"], build.get("version", ""), build["image"], build["image_id"], build.get("env_image"),
                 build.get("python"), build.get("flavor"), json.dumps(list(build.get("pipelines", []))),
                 str(root) if root is not None else None, _card_text(card), stamp, stamp))
            row = db.execute("SELECT id, card IS NOT NULL AS carded FROM builds WHERE garden = ? AND version = ? "
                             "AND image_id = ?", (build["garden"], build.get("version", ""), build["image_id"])).fetchone()
            if row["carded"]:  # a build without a card cannot be listed, nor change what is
                _relist(db, build["garden"], ("build", build["image_id"]))
            return int(row["id"])

    def set_build_card(self, build_id: int, card: Mapping[str, Any]) -> None:
        """Give a build recorded without its card (by an older gardenbuild) the card its image carries."""
        with self._db() as db:
            row = db.execute("SELECT garden FROM builds WHERE id = ?", (build_id,)).fetchone()
            if row:
                db.execute("UPDATE builds SET card = ? WHERE id = ?", (_card_text(card), build_id))
                _relist(db, row["garden"])

    def builds(self, garden: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM builds" + (" WHERE garden = ?" if garden else "") + " ORDER BY last_built, id"
        with self._db(write=False) as db:
            rows = db.execute(query, (garden,) if garden else ()).fetchall()
        return [_build(r) for r in rows]

    # -- publications ---------------------------------------------------------------------

    def find(self, garden: str, version: str, image_id: str) -> Publication | None:
        """The publication of this garden version and image, or None (creates nothing)."""
        with self._db(write=False) as db:
            row = db.execute("SELECT * FROM publications WHERE garden = ? AND version = ? AND image_id = ?",
                             (garden, version, image_id)).fetchone()
            return self._publication(db, row) if row else None

    def publication(self, garden: str, version: str, image_id: str) -> Publication:
        """The publication of this garden version and image, created if new."""
        stamp = now()
        with self._db() as db:
            db.execute("""INSERT INTO publications (garden, version, image_id, created, updated) VALUES (?, ?, ?, ?, ?)
                          ON CONFLICT (garden, version, image_id) DO NOTHING""",
                       (garden, version, image_id, stamp, stamp))
            row = db.execute("SELECT * FROM publications WHERE garden = ? AND version = ? AND image_id = ?",
                             (garden, version, image_id)).fetchone()
            return self._publication(db, row)

    def publications(self, garden: str | None = None) -> list[Publication]:
        query = "SELECT * FROM publications" + (" WHERE garden = ?" if garden else "") + " ORDER BY updated, id"
        with self._db(write=False) as db:
            return [self._publication(db, r) for r in db.execute(query, (garden,) if garden else ()).fetchall()]

    def save(self, pub: Publication) -> None:
        """Write back the publication's fields (not its stages; see `set_stage`)."""
        if pub.id is None:
            raise ValueError("save() needs a publication read from the catalog")
        values = [json.dumps(pub.function_ids, sort_keys=True) if f == "function_ids" else getattr(pub, f)
                  for f in _PUB_FIELDS]
        pub.updated = now()
        with self._db() as db:
            db.execute(f"UPDATE publications SET {', '.join(f'{f} = ?' for f in _PUB_FIELDS)}, updated = ? WHERE id = ?",
                       (*values, pub.updated, pub.id))

    def set_stage(self, pub: Publication, stage: str, state: str, *, detail: str | None = None,
                  error: str | None = None) -> None:
        """Record the state of one publish stage (and mirror it on ``pub``)."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, not {state!r}")
        stamp = now()
        with self._db() as db:
            db.execute("""INSERT INTO stages (publication_id, stage, state, detail, error, updated) VALUES (?, ?, ?, ?, ?, ?)
                          ON CONFLICT (publication_id, stage) DO UPDATE SET
                              state = excluded.state, detail = excluded.detail, error = excluded.error,
                              updated = excluded.updated""",
                       (pub.id, stage, state, detail, error, stamp))
        pub.stages[stage] = Stage(stage, state, detail, error, stamp)

    def start_run(self, pub: Publication, targets: Mapping[str, Any]) -> int:
        with self._db() as db:
            cur = db.execute("INSERT INTO runs (publication_id, targets, started) VALUES (?, ?, ?)",
                             (pub.id, json.dumps(dict(targets), sort_keys=True), now()))
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, outcome: str, error: str | None = None) -> None:
        with self._db() as db:
            db.execute("UPDATE runs SET finished = ?, outcome = ?, error = ? WHERE id = ?", (now(), outcome, error, run_id))

    def runs(self, pub: Publication) -> list[dict[str, Any]]:
        with self._db(write=False) as db:
            rows = db.execute("SELECT * FROM runs WHERE publication_id = ? ORDER BY id", (pub.id,)).fetchall()
        return [{**dict(r), "targets": json.loads(r["targets"])} for r in rows]

    @staticmethod
    def _publication(db: sqlite3.Connection, row: sqlite3.Row) -> Publication:
        data = dict(row)
        data["function_ids"] = json.loads(data["function_ids"] or "{}")
        stages = {r["stage"]: Stage(r["stage"], r["state"], r["detail"], r["error"], r["updated"])
                  for r in db.execute("SELECT * FROM stages WHERE publication_id = ? ORDER BY stage", (row["id"],))}
        return Publication(**data, stages=stages)

    # -- pulls: gardens fetched from a registry ---------------------------------------------

    def record_pull(self, *, image_ref: str, image_id: str, card: Mapping[str, Any], doi: str | None,
                    function_ids: Mapping[str, str], source: str | None) -> None:
        """Remember a pulled garden (by its registry digest); pulling it again refreshes it."""
        meta = card.get("meta") or {}
        stamp = now()
        with self._db() as db:
            db.execute("""INSERT INTO pulls (image_ref, garden, version, image_id, doi, card, function_ids, source,
                                             first_pulled, last_pulled) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                          ON CONFLICT (image_ref) DO UPDATE SET
                              image_id = excluded.image_id, card = excluded.card,
                              doi = COALESCE(excluded.doi, pulls.doi),
                              function_ids = CASE WHEN excluded.function_ids = '{}' THEN pulls.function_ids
                                                  ELSE excluded.function_ids END,
                              source = excluded.source, last_pulled = excluded.last_pulled""",
                       (image_ref, str(meta.get("name", "")), str(meta.get("version", "")), image_id, doi,
                        json.dumps(dict(card), sort_keys=True), json.dumps(dict(function_ids), sort_keys=True), source,
                        stamp, stamp))
            _relist(db, str(meta.get("name", "")), ("pull", image_id))

    def pulls(self, garden: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM pulls" + (" WHERE garden = ?" if garden else "") + " ORDER BY last_pulled, image_ref"
        with self._db(write=False) as db:
            rows = db.execute(query, (garden,) if garden else ()).fetchall()
        return [self._pull(r) for r in rows]

    def pull(self, image_ref: str) -> dict[str, Any] | None:
        with self._db(write=False) as db:
            row = db.execute("SELECT * FROM pulls WHERE image_ref = ?", (image_ref,)).fetchone()
        return self._pull(row) if row else None

    @staticmethod
    def _pull(row: sqlite3.Row) -> dict[str, Any]:
        return {**dict(row), "card": json.loads(row["card"]), "function_ids": json.loads(row["function_ids"] or "{}")}

    # -- reading, for `gardenbuild list` and `show` -----------------------------------------

    def gardens(self) -> list[dict[str, Any]]:
        """One summary per garden: its latest build and its latest publication."""
        builds = self.builds()
        pubs = self.publications()
        pulls = self.pulls()
        names = sorted({b["garden"] for b in builds} | {p.garden for p in pubs} | {p["garden"] for p in pulls})
        out = []
        for name in names:
            last_build = next((b for b in reversed(builds) if b["garden"] == name), None)
            last_pub = next((p for p in reversed(pubs) if p.garden == name), None)
            last_pull = next((p for p in reversed(pulls) if p["garden"] == name), None) or {}
            out.append({
                "garden": name,
                "version": (last_build or {}).get("version") or (last_pub.version if last_pub else None)
                           or last_pull.get("version"),
                "builds": sum(b["garden"] == name for b in builds),
                "last_built": (last_build or {}).get("last_built"),
                "image": (last_build or {}).get("image"),
                "pulled": last_pull.get("image_ref"),
                "published": last_pub.image_ref if last_pub else None,
                "doi": last_pub.doi if last_pub else last_pull.get("doi"),
                "doi_state": last_pub.doi_state if last_pub else None,
                "functions": len(last_pub.function_ids) if last_pub else 0,
            })
        return out

    # -- the listing, for `gardenbuild catalog` ------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A read-only view for queries over the listing (see `gardenbuild.search`)."""
        with self._db(write=False) as db:
            yield db

    def listed(self, garden: str) -> dict[str, Any] | None:
        """The listing's row of one garden (its card parsed), or None."""
        with self._db(write=False) as db:
            row = db.execute("SELECT * FROM listing WHERE garden = ?", (garden,)).fetchone()
        return listing_row(row) if row else None

    def unlisted_builds(self) -> list[dict[str, Any]]:
        """Each garden's latest build when the catalog holds no card for any of its builds or pulls."""
        with self._db(write=False) as db:
            rows = db.execute("""SELECT * FROM builds b WHERE card IS NULL
                                   AND b.garden NOT IN (SELECT garden FROM listing)
                                   AND b.id = (SELECT id FROM builds WHERE garden = b.garden
                                               ORDER BY last_built DESC, id DESC LIMIT 1)""").fetchall()
        return [_build(r) for r in rows]

    # -- verifications ----------------------------------------------------------------------

    def record_verification(self, garden: str, version: str, image_id: str, *, match: bool,
                            stages: list[Mapping[str, Any]]) -> None:
        with self._db() as db:
            db.execute("""INSERT INTO verifications (garden, version, image_id, match, stages, checked)
                          VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (garden, version, image_id) DO UPDATE SET
                              match = excluded.match, stages = excluded.stages, checked = excluded.checked""",
                       (garden, version, image_id, int(match), json.dumps(list(stages), sort_keys=True), now()))

    def verification(self, image_ids: list[str]) -> dict[str, Any] | None:
        """The latest `verify` of any of these images, or None."""
        if not image_ids:
            return None
        with self._db(write=False) as db:
            row = db.execute(f"SELECT * FROM verifications WHERE image_id IN ({', '.join('?' * len(image_ids))}) "
                             "ORDER BY checked DESC LIMIT 1", list(image_ids)).fetchone()
        return {**dict(row), "match": bool(row["match"]), "stages": json.loads(row["stages"])} if row else None

    # -- hub scores ---------------------------------------------------------------------------

    def record_score(self, hub: str, member: str, **row: Any) -> None:
        """Keep one member's score on a hub (what `gardenbuild bench` computed), replacing the last."""
        values = {"ref": "", "key": "", "garden": None, "version": None, "image_id": None, "digest": None,
                  "data_sha256": "", "metrics": {}, "uncertainty": None, "seconds": None, "error": None, **row}
        values["metrics"] = json.dumps(values["metrics"], sort_keys=True)
        values["uncertainty"] = json.dumps(values["uncertainty"], sort_keys=True) if values["uncertainty"] else None
        with self._db() as db:
            db.execute(f"INSERT OR REPLACE INTO scores (hub, member, {', '.join(values)}, scored) "
                       f"VALUES (?, ?, {', '.join('?' * len(values))}, ?)", (hub, member, *values.values(), now()))

    def record_hub(self, name: str, spec: Mapping[str, Any], rows: int, root: Path | str | None) -> None:
        """Remember a hub `gardenbuild bench` ran: its Hubfile (as data) and how many inputs."""
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO hubs (name, spec, rows, root, updated) VALUES (?, ?, ?, ?, ?)",
                       (name, json.dumps(dict(spec), sort_keys=True), rows, str(root) if root else None, now()))

    def hubs(self) -> list[dict[str, Any]]:
        with self._db(write=False) as db:
            rows = db.execute("SELECT * FROM hubs ORDER BY name").fetchall()
        return [{**dict(r), "spec": json.loads(r["spec"])} for r in rows]

    def scores(self, hub: str) -> dict[str, dict[str, Any]]:
        with self._db(write=False) as db:
            rows = db.execute("SELECT * FROM scores WHERE hub = ? ORDER BY member", (hub,)).fetchall()
        return {r["member"]: {**dict(r), "metrics": json.loads(r["metrics"]),
                              "uncertainty": json.loads(r["uncertainty"]) if r["uncertainty"] else None} for r in rows}

    # -- usage ----------------------------------------------------------------------------

    def add_usage(self, garden: str, pipeline: str, via: str, *, calls: int, errors: int, seconds: float) -> None:
        """Add calls of one pipeline (made `via` run, serve or python) to its counts."""
        if calls <= 0:
            return
        stamp = now()
        with self._db() as db:
            db.execute("INSERT INTO usage (garden, pipeline, via, calls, errors, seconds, first, last) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (garden, pipeline, via) DO UPDATE SET "
                       "calls = calls + excluded.calls, errors = errors + excluded.errors, "
                       "seconds = seconds + excluded.seconds, last = excluded.last",
                       (garden, pipeline, via, calls, errors, seconds, stamp, stamp))

    def usage(self, garden: str | None = None) -> list[dict[str, Any]]:
        with self._db(write=False) as db:
            rows = db.execute("SELECT * FROM usage" + (" WHERE garden = ?" if garden else "")
                              + " ORDER BY garden, pipeline, via", (garden,) if garden else ()).fetchall()
        return [dict(r) for r in rows]

    def show(self, garden: str) -> dict[str, Any] | None:
        """Everything the catalog knows about one garden, or None."""
        builds = [{k: v for k, v in b.items() if k != "card"} for b in self.builds(garden)]
        pubs = self.publications(garden)
        usage = self.usage(garden)
        pulls = [{k: v for k, v in p.items() if k != "card"} for p in self.pulls(garden)]
        if not builds and not pubs and not usage and not pulls:
            return None
        return {"garden": garden, "builds": builds, "pulls": pulls,
                "publications": [{**p.as_json(), "runs": self.runs(p)} for p in pubs], "usage": usage}


def _card_text(card: Mapping[str, Any] | None) -> str | None:
    return json.dumps(dict(card), sort_keys=True) if card else None


def _build(row: sqlite3.Row) -> dict[str, Any]:
    return {**dict(row), "pipelines": json.loads(row["pipelines"]), "card": json.loads(row["card"]) if row["card"] else None}


def listing_row(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    for key in ("keywords", "authors", "card"):
        data[key] = json.loads(data[key])
    return data


def _relist(db: sqlite3.Connection, garden: str, just: tuple[str, str] = ("", "")) -> None:
    """Rewrite the listing of ``garden`` from its builds and pulls: the newest one with a card;
    within the same second, ``just`` (the source and image id just recorded)."""
    newest = db.execute(
        """SELECT * FROM (SELECT 'build' AS source, image_id, NULL AS image_ref, root, card, last_built AS at
                            FROM builds WHERE garden = ? AND card IS NOT NULL
                          UNION ALL
                          SELECT 'pull', image_id, image_ref, NULL, card, last_pulled FROM pulls WHERE garden = ?)
           ORDER BY at DESC, (source = ? AND image_id = ?) DESC LIMIT 1""", (garden, garden, *just)).fetchone()
    old = db.execute("SELECT id FROM listing WHERE garden = ?", (garden,)).fetchone()
    if old:
        db.execute("DELETE FROM listing_text WHERE rowid = ?", (old["id"],))
        db.execute("DELETE FROM listing WHERE id = ?", (old["id"],))
    if newest is None:
        return
    card = json.loads(newest["card"])
    meta = card.get("meta") or {}
    keywords = [str(k) for k in meta.get("keywords") or []]
    authors = [str(a.get("name", "")) for a in meta.get("authors") or [] if isinstance(a, Mapping)]
    pipelines = [p for p in card.get("pipelines") or [] if isinstance(p, Mapping)]
    cur = db.execute("""INSERT INTO listing (garden, version, source, image_id, image_ref, root, flavor, license,
                                             keywords, authors, card, updated)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                     (garden, str(meta.get("version", "")), newest["source"], newest["image_id"], newest["image_ref"],
                      newest["root"], card.get("flavor"), meta.get("license"), json.dumps(keywords),
                      json.dumps(authors), newest["card"], newest["at"]))
    db.execute("""INSERT INTO listing_text (rowid, garden, title, description, keywords, authors, pipelines, docstrings)
                  VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
               (cur.lastrowid, garden, str(meta.get("title", "")), str(meta.get("description", "")), " ".join(keywords),
                " ".join(authors), " ".join(str(p.get("name", "")) for p in pipelines),
                "\n".join(str(p.get("docstring") or p.get("description") or "") for p in pipelines)))


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a catalog written by an older gardenbuild up to `SCHEMA_VERSION`."""
    if "card" not in {r["name"] for r in db.execute("PRAGMA table_info(builds)")}:
        db.execute("ALTER TABLE builds ADD COLUMN card TEXT")  # v1 -> v2: cards, for the listing
    if "uncertainty" not in {r["name"] for r in db.execute("PRAGMA table_info(scores)")}:
        db.execute("ALTER TABLE scores ADD COLUMN uncertainty TEXT")  # v2 -> v3: what UQ members claim
    for row in db.execute("SELECT DISTINCT garden FROM builds UNION SELECT DISTINCT garden FROM pulls").fetchall():
        _relist(db, row["garden"])
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def record_build(build_json: Mapping[str, Any], *, root: Path | str | None = None, catalog: Catalog | None = None,
                 card: Mapping[str, Any] | None = None, reporter: Reporter | None = None) -> bool:
    """Record a finished build in the catalog; for the builder to call after ``build.json`` is written.

    A catalog that cannot be written must not fail a build that succeeded: that is
    reported as a warning and False is returned.
    """
    try:
        (catalog or Catalog()).record_build(build_json, root=root, card=card)
        return True
    except (CatalogError, KeyError) as exc:
        what = exc.message if isinstance(exc, CatalogError) else f"build summary lacks {exc}"
        (reporter or NullReporter()).warn(f"build not recorded in the catalog: {what}")
        return False


def usage_enabled() -> bool:
    return os.environ.get("GARDENBUILD_NO_USAGE", "").strip().lower() in ("", "0", "false", "no")


def record_usage(garden: str, pipeline: str, via: str, *, calls: int = 1, errors: int = 0, seconds: float = 0.0,
                 reporter: Reporter | None = None) -> None:
    """Count local calls of a pipeline, unless GARDENBUILD_NO_USAGE is set; never fails the call."""
    if not usage_enabled():
        return
    try:
        Catalog().add_usage(garden, pipeline, via, calls=calls, errors=errors, seconds=seconds)
    except CatalogError as exc:
        (reporter or NullReporter()).warn(f"usage not counted in the catalog: {exc.message}")
