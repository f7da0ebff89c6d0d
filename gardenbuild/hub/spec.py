"""``Hubfile.toml``: a task, its benchmark data, its metrics and the gardens that compete.

    [hub]        name, title, description
    [contract]   pipeline (every member offers it) and input (its parameter taking the batch)
    [data]       file (CSV or JSON in the hub's folder) or url, always with sha256;
                 input and reference (the CSV columns or JSON keys); batch; source (provenance)
    [[metric]]   name: a built-in (gardenbuild.hub.metrics.BUILTIN)
    [[member]]   ref: any reference the consumer side takes (folder, image, DOI, name); name

Validated as the Gardenfile is: every problem at once, with file and line, exit code 2.
Pure: `load` reads the file and the data, nothing else.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from gardenbuild.errors import ConfigError, Problem
from gardenbuild.hub.metrics import BUILTIN
from gardenbuild.manifest.spec import IDENTIFIER, SLUG, Strict

HUBFILE = "Hubfile.toml"
SHA256 = r"^[0-9a-f]{64}$"


class HubMeta(Strict):
    name: str = Field(pattern=SLUG, max_length=63)
    title: str = Field(min_length=1)
    description: str = ""


class Contract(Strict):
    pipeline: str = Field(pattern=IDENTIFIER)
    input: str = Field(pattern=IDENTIFIER)


class Data(Strict):
    file: str | None = None
    url: str | None = None
    doi: str | None = None
    sha256: str = Field(pattern=SHA256)
    input: str = Field(min_length=1)
    reference: str = Field(min_length=1)
    batch: int = Field(default=0, ge=0)
    source: str = ""

    @model_validator(mode="after")
    def _one_place(self) -> "Data":
        if (self.file is None) == (self.url is None):
            raise ValueError("give the data as a file in the hub's folder, or as a url (one of the two)")
        return self


class Metric(Strict):
    """A built-in by its name, or the hub's own: ``function = "FILE.py:NAME"``, a function
    ``(predicted, reference) -> float`` in a file of the hub's folder, standard library only,
    run in a container of the base image with no network."""

    name: str = Field(pattern=IDENTIFIER)
    function: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_./-]+\.py:[A-Za-z_][A-Za-z0-9_]*$")
    higher_is_better: bool | None = None

    @model_validator(mode="after")
    def _known(self) -> "Metric":
        if self.function is None and self.name not in BUILTIN:
            raise ValueError(f"'{self.name}' is not a built-in metric ({', '.join(BUILTIN)}); "
                             "for one of your own, name its function: function = \"metrics.py:NAME\"")
        if self.function is not None and self.higher_is_better is None:
            raise ValueError("say how a metric of your own ranks: higher_is_better = true or false")
        return self

    @property
    def higher(self) -> bool:
        from gardenbuild.hub.metrics import HIGHER_IS_BETTER

        return bool(self.higher_is_better) if self.function else HIGHER_IS_BETTER[self.name]


class Member(Strict):
    ref: str = Field(min_length=1)
    name: str | None = Field(default=None, pattern=SLUG)


class Hubfile(Strict):
    hub: HubMeta
    contract: Contract
    data: Data
    metric: list[Metric] = Field(min_length=1)
    member: list[Member] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> "Hubfile":
        names = [m.name for m in self.member if m.name]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"member names must differ: {', '.join(twice)} is given twice")
        return self


@dataclass(frozen=True)
class Hub:
    """A validated hub and its benchmark data, read and checked against its sha256."""

    root: Path
    spec: Hubfile
    inputs: tuple[Any, ...]
    reference: tuple[Any, ...]

    @property
    def name(self) -> str:
        return self.spec.hub.name

    def metric_source(self, metric: Metric) -> bytes:
        """The file of a metric of the hub's own (its bytes are part of every score's key)."""
        return (self.root / str(metric.function).partition(":")[0]).read_bytes()

    def member_name(self, index: int) -> str:
        member = self.spec.member[index]
        if member.name:
            return member.name
        return re.sub(r"[^a-z0-9]+", "-", Path(member.ref.rstrip("/")).name.lower()).strip("-") or f"member-{index + 1}"

    def member_ref(self, index: int) -> str:
        """The member's reference, a folder made absolute against the hub's."""
        ref = self.spec.member[index].ref
        local = (self.root / ref)
        return str(local.resolve()) if (local / "Gardenfile.toml").is_file() else ref


def load(directory: Path, *, fetch: Any = None) -> Hub:
    """Read and validate ``directory/Hubfile.toml`` and its data. ``fetch(url, sha256)`` gets
    a ``[data] url`` (the content-addressed download the builds use); a file is read as is."""
    from gardenbuild.manifest.load import _in_order, _model_problems, parse
    from gardenbuild.manifest.tomlpos import key_lines, line_of

    path = Path(directory) / HUBFILE if Path(directory).is_dir() else Path(directory)
    if not path.is_file():
        raise ConfigError([Problem(path.name, None, "", f"no {HUBFILE} in {path.parent}")],
                          hint=f"a hub is a folder with a {HUBFILE}; see README, 'Hubs and benchmarks'")
    text = path.read_text(encoding="utf-8")
    data = parse(text, path)
    lines = key_lines(text)
    try:
        spec = Hubfile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_in_order([p for _, p in _model_problems(exc, lines, path)]),
                          hint=f"fix the keys above in {path}") from None
    problems: list[Problem] = []
    names = [spec.member[i].name or Path(m.ref.rstrip("/")).name for i, m in enumerate(spec.member)]
    for i, name in enumerate(names):
        if names.count(name) > 1 and not spec.member[i].name:
            problems.append(Problem(path.name, line_of(lines, ("member", i, "ref")), f"member[{i}]",
                                    f"two members would both be called '{name}': give them names (name = \"...\")"))
    for i, metric in enumerate(spec.metric):
        if metric.function:
            file = metric.function.partition(":")[0]
            target = (path.parent / file).resolve()
            if not target.is_relative_to(path.parent.resolve()) or not target.is_file():
                problems.append(Problem(path.name, line_of(lines, ("metric", i, "function")), f"metric[{i}].function",
                                        f"{file} is not a file in the hub's folder"))
    raw = _data_bytes(spec.data, path.parent, fetch, problems, lambda key: line_of(lines, ("data", key)), path.name)
    inputs, reference = (), ()
    if raw is not None:
        try:
            inputs, reference = columns(raw, spec.data)
        except ValueError as exc:
            problems.append(Problem(path.name, line_of(lines, ("data",)), "data", str(exc)))
    if problems:
        raise ConfigError(_in_order(problems), hint=f"fix the keys above in {path}")
    return Hub(path.parent.resolve(), spec, inputs, reference)


def _data_bytes(data: Data, root: Path, fetch: Any, problems: list[Problem], line: Any, shown: str) -> bytes | None:
    if data.file is not None:
        target = (root / data.file).resolve()
        if not target.is_relative_to(root.resolve()):
            problems.append(Problem(shown, line("file"), "data.file", f"{data.file} is outside the hub's folder"))
            return None
        if not target.is_file():
            problems.append(Problem(shown, line("file"), "data.file", f"{data.file} does not exist"))
            return None
        raw = target.read_bytes()
    else:
        raw = fetch(data.url, data.sha256) if fetch else None
        if raw is None:
            problems.append(Problem(shown, line("url"), "data.url", f"{data.url} could not be fetched"))
            return None
    got = hashlib.sha256(raw).hexdigest()
    if got != data.sha256:
        problems.append(Problem(shown, line("sha256"), "data.sha256",
                                f"the data's sha256 is {got}, not {data.sha256}: the data changed, or the sha256 is wrong"))
        return None
    return raw


def columns(raw: bytes, data: Data) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(inputs, reference) from a CSV (a column each; numbers in the reference) or a JSON
    object (a list each); ValueError saying what is wrong."""
    name = (data.file or data.url or "").lower()
    if name.endswith(".json"):
        doc = json.loads(raw)
        if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in (data.input, data.reference)):
            raise ValueError(f"the JSON data needs lists under '{data.input}' and '{data.reference}'")
        inputs, reference = doc[data.input], doc[data.reference]
    else:
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
        missing = [c for c in (data.input, data.reference) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"the CSV has no column {', '.join(repr(c) for c in missing)} "
                             f"(it has: {', '.join(reader.fieldnames or [])})")
        rows = list(reader)
        inputs = [r[data.input] for r in rows]
        try:
            reference = [float(r[data.reference]) for r in rows]
        except ValueError:
            reference = [r[data.reference] for r in rows]  # labels, for accuracy and F1
    if len(inputs) != len(reference):
        raise ValueError(f"{len(inputs)} inputs but {len(reference)} reference values")
    if not inputs:
        raise ValueError("the data holds no rows")
    return tuple(inputs), tuple(reference)
