"""Gardenfile.toml -> Garden, in three visible steps: parse, validate, resolve.

Every problem found on the way is collected and raised together as one `ConfigError`,
each naming the file, the line and the key path.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gardenbuild.units import parse_size
from gardenbuild.errors import ConfigError, Problem, UserError
from gardenbuild.manifest import flavors as flavor_table
from gardenbuild.manifest.flavors import Flavor
from gardenbuild.manifest.garden import (
    GLOBUS_REQUIREMENTS,
    RUNTIME_REQUIREMENTS,
    Garden,
    Limits,
    PipelineSpec,
    WeightsSpec,
    TestSpec,
)
from gardenbuild.manifest.notebook import NotebookFacts, analyse
from gardenbuild.engine.outputs import GARDENFILE, find_gardenfile
from gardenbuild.manifest.spec import PEP508_EXAMPLE, Gardenfile
from gardenbuild.manifest.tomlpos import dotted, key_lines, line_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Left out unless an include pattern names them: logs, editor and Python litter, virtual
#: environments, and notebooks other than the garden's (a stray file must not re-run the notebook).
NOISE = ("*.log", "*.tmp", "*.swp", "*.bak", "*~", "*.pyc", "*.egg-info/*", "venv/*", "env/*", "node_modules/*",
         "*.ipynb")
#: Never copied into an image: build outputs, VCS and editor litter.
ALWAYS_EXCLUDED = (".gardenbuild", ".git", ".ipynb_checkpoints", "__pycache__", GARDENFILE, "Gardenfile.lock")


def load(directory: Path) -> Garden:
    """Read, validate and resolve the Gardenfile in `directory`."""
    path = find_gardenfile(Path(directory))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(path.name, None, "", f"not UTF-8 text (byte {exc.start})")],
                          hint="save it as UTF-8") from None
    data = parse(text, path)
    spec = validate(data, text, path)
    return resolve(spec, text, path)


def parse(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "... (at line 3, column 7)"; move the line to the front.
        msg = str(exc)
        line = None
        if "(at line " in msg:
            msg, _, pos = msg.rpartition(" (at line ")
            line_text, _, column = pos.rstrip(")").partition(", column ")
            line = int(line_text)
            msg = f"{msg} at column {column}" if column else msg
        elif msg.endswith(" (at end of document)"):
            msg = msg.removesuffix(" (at end of document)") + " at the end of the file"
            line = len(text.splitlines()) or None
        # "Cannot declare ('garden', 'authors') twice": name the table as the file does.
        msg = re.sub(r"\(((?:'[^']*'(?:, )?)+),?\)", lambda m: "[" + ".".join(re.findall(r"'([^']*)'", m.group(1))) + "]", msg)
        raise ConfigError(
            [Problem(path.name, line, "", f"invalid TOML: {msg[:1].lower()}{msg[1:]}")],
            hint="see https://toml.io for the syntax; strings need quotes",
        ) from None


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the last element of `loc`, for 'did you mean'."""
    import typing

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        while typing.get_args(ann) and not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            args = [a for a in typing.get_args(ann) if a is not type(None) and a is not Ellipsis]
            ann = args[0] if args else None
        current = ann
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _guess(loc: tuple) -> str | None:
    """The known key closest to the unknown key at `loc`, if any is close."""
    owner = _model_at(Gardenfile, loc[:-1])
    guess = difflib.get_close_matches(str(loc[-1]), list(owner.model_fields) if owner else [], n=1)
    return guess[0] if guess else None


#: pydantic's type errors, in TOML's words.
_TOML_TYPES = {
    "string_type": "a string", "tuple_type": "an array", "list_type": "an array", "dict_type": "a table",
    "model_type": "a table", "bool_type": "true or false", "bool_parsing": "true or false",
    "float_type": "a number", "float_parsing": "a number", "int_type": "an integer", "int_parsing": "an integer",
}


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "an array"
    return repr(value)


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    loc = error["loc"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "extra_forbidden":
        guess = _guess(loc)
        owner = _model_at(Gardenfile, loc[:-1])
        known = ", ".join(owner.model_fields) if owner else ""
        tail = f"; did you mean '{guess}'?" if guess else (f"; known keys: {known}" if known else "")
        return f"unknown key '{loc[-1]}'{tail}"
    if kind == "missing":
        if loc == ("pipeline",):
            return "required: add at least one [[pipeline]] table naming a function of the notebook"
        return "required key is missing"
    if kind == "value_error":
        return error["msg"].removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        if loc == ("garden", "name"):
            return f"'{value}' is not a valid name; use lowercase letters, digits, '-' and '_'"
        return f"'{value}' is not a Python identifier"
    if kind in _TOML_TYPES:
        return f"expected {_TOML_TYPES[kind]}, got {_shown(value)}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"'{value}' is longer than {ctx['max_length']} characters"
    if kind == "too_short":
        n = ctx["min_length"]
        return f"needs at least {n} {'entry' if n == 1 else 'entries'}"
    if kind == "greater_than_equal":
        bound = ctx["ge"]
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        return f"must be {bound} or more (got {value!r})"
    msg = error["msg"]
    return f"{msg[:1].lower()}{msg[1:]} (got {_shown(value)})"


def _model_problems(exc: ValidationError, lines: dict, path: Path) -> list[tuple[tuple, Problem]]:
    """One (location, Problem) per pydantic error, minus the echoes of another error."""
    errors = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        if loc and loc[-1] == "[key]":  # a bad key of a table, e.g. environment.env
            loc = loc[:-1]
        errors.append((loc, error))
    locs = [loc for loc, _ in errors]
    # An unknown key 'notebok' that is surely 'notebook' also makes 'notebook' missing; say it once.
    meant = {loc[:-1] + (_guess(loc),) for loc, e in errors if e["type"] == "extra_forbidden"}
    problems = []
    for loc, error in errors:
        if error["type"] == "missing" and loc in meant:
            continue
        # A list whose only item was rejected is also "too short"; the item's error says it all.
        if error["type"] == "too_short" and any(other[: len(loc)] == loc and other != loc for other in locs):
            continue
        problems.append((loc, Problem(path.name, line_of(lines, loc), dotted(loc), _describe(error))))
    return problems


def _in_order(problems: list[Problem]) -> list[Problem]:
    """Problems in file order; those with no line (the file as a whole) first."""
    return sorted(problems, key=lambda p: p.line or 0)


def validate(data: dict[str, Any], text: str, path: Path) -> Gardenfile:
    """Check `data` against the model; on failure report the checks of `resolve` too.

    Those checks (files, flavor, notebook) need no valid model, so a single run lists
    every problem instead of revealing them one fix at a time.
    """
    try:
        return Gardenfile.model_validate(data)
    except ValidationError as exc:
        lines = key_lines(text)
        located = _model_problems(exc, lines, path)
        others = _check_outside(data, path, lines, skip=[loc for loc, _ in located])
        raise ConfigError(
            _in_order([p for _, p in located] + others.problems),
            hint=f"fix the keys above in {path}; `gardenbuild schema` prints every key",
        ) from None


def _inside(root: Path, relative: str) -> Path | None:
    candidate = (root / relative).resolve()
    return candidate if candidate.is_relative_to(root.resolve()) else None


@dataclass(frozen=True)
class Discovered:
    """The files a garden copies into its image, and what was wrong or odd on the way."""

    files: tuple[str, ...]
    problems: tuple[tuple[tuple, str], ...] = ()  # (key path, message)
    warnings: tuple[str, ...] = ()


def _outside_pattern(pattern: str) -> bool:
    parts = Path(pattern).parts
    return pattern.startswith(("/", "~")) or ".." in parts


def discover_files(root: Path, notebook: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> Discovered:
    """Walk `root` (never following a link), pick the files `include`/`exclude` select.

    A symbolic link is copied as the file it points to when that file is inside the
    folder; a link that leads outside, or nowhere, is refused: a garden must never carry
    a host file into an image that gets pushed. Links to folders are not followed.
    """
    root = root.resolve()
    problems: list[tuple[tuple, str]] = []
    warnings: list[str] = []
    for key, patterns in (("include", include), ("exclude", exclude)):
        for i, pattern in enumerate(patterns):
            if _outside_pattern(pattern):
                problems.append(((key, i), f"pattern '{pattern}' points outside the garden folder; "
                                           "patterns are relative to the folder and stay inside it"))
    picked = {notebook}
    matched = dict.fromkeys(include, False)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in ALWAYS_EXCLUDED and not d.startswith("."))
        for name in sorted(filenames) + [d for d in dirnames if (here / d).is_symlink()]:
            if name in ALWAYS_EXCLUDED or name.startswith("."):
                continue
            path = here / name
            posix = path.relative_to(root).as_posix()
            hits = [g for g in include if fnmatch.fnmatch(posix, g)]
            for g in hits:
                matched[g] = True
            if (include and not hits) or any(fnmatch.fnmatch(posix, g) for g in exclude):
                continue
            if not hits and posix != notebook and any(fnmatch.fnmatch(posix, g) for g in NOISE):
                continue
            if path.is_symlink():
                target = Path(os.path.realpath(path))
                where = ("include",) if include else ()
                if not target.exists():
                    problems.append((where, f"{posix} is a symbolic link to {os.readlink(path)}, which does not exist; "
                                            "remove the link or list it in exclude"))
                    continue
                if not target.is_relative_to(root):
                    problems.append((where, f"{posix} is a symbolic link to {target}, outside the garden folder; "
                                            "gardenbuild never copies a file from outside it: copy the file in, "
                                            "or list the link in exclude"))
                    continue
                if target.is_dir():
                    continue  # the folder's files are picked up under their own path
            picked.add(posix)
    for pattern, hit in matched.items():
        if not hit and not _outside_pattern(pattern):
            warnings.append(f"include pattern '{pattern}' matches no file in {root}")
    return Discovered(tuple(sorted(picked)), tuple(problems), tuple(warnings))


def _source_option(line: str) -> tuple[str, str] | None:
    """``--index-url URL``, ``-i URL``, ``--extra-index-url=URL``, ``-f DIR``...: (long option, value)."""
    names = {"-i": "--index-url", "--index-url": "--index-url", "--extra-index-url": "--extra-index-url",
             "-f": "--find-links", "--find-links": "--find-links"}
    option, sep, value = line.replace("=", " ", 1).partition(" ") if line.startswith("--") else line.partition(" ")
    if option in names and value.strip():
        return names[option], value.strip()
    return None


def _sources(data: Mapping[str, Any], env: Mapping[str, Any], out: "_Outside", root: Path,
             problem: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The garden's package indexes and find-links: the Gardenfile's (its indexes replace the
    flavor's), then pip's own options in the requirements file and %pip lines (an
    --index-url there is taken as one more index: packages come from the best of all)."""
    from gardenbuild.manifest.spec import source

    indexes = list(env["indexes"]) if isinstance(env.get("indexes"), (list, tuple)) else \
        list(out.flavor.indexes if out.flavor else ())
    links = list(env.get("find_links") or ()) if isinstance(env.get("find_links"), (list, tuple)) else []
    located: list[tuple[tuple, str]] = [(("environment", "find_links", i), v) for i, v in enumerate(links)]
    for loc, option, value, where in out.sources:
        try:
            source(value)
        except ValueError as exc:
            problem(loc, f"{where}: {option} {exc}")
            continue
        if option == "--find-links":
            located.append((loc, value))
        elif value not in indexes:
            indexes.append(value)
    find_links = []
    for loc, value in located:
        if not isinstance(value, str) or "://" in value:
            find_links.append(value)
            continue
        folder = (root / value).resolve() if not Path(value).is_absolute() else Path(value)
        if not folder.is_dir():
            problem(loc, f"find-links folder '{value}' does not exist (relative paths are from the garden folder)")
            continue
        find_links.append(str(folder))
    return tuple(dict.fromkeys(indexes)), tuple(dict.fromkeys(find_links))


def _weights(data: Mapping[str, Any], root: Path, problem: Any, rejected: list) -> tuple[WeightsSpec, ...]:
    """The [[weights]] files, their paths checked (inside the folder, a regular file)."""
    import urllib.parse

    out = []
    entries = data.get("weights", ())
    for i, entry in enumerate(entries if isinstance(entries, (list, tuple)) else ()):
        if not isinstance(entry, Mapping) or any(r[:2] == ("weights", i) or r == ("weights",) for r in rejected):
            continue
        name, sha, path, url = entry.get("name"), entry.get("sha256"), entry.get("path"), entry.get("url")
        if not (isinstance(name, str) and isinstance(sha, str)):
            continue
        if isinstance(path, str):
            target = _inside(root, path)
            if target is None:
                problem(("weights", i, "path"), f"'{path}' is outside the garden folder")
            elif not target.is_file():
                problem(("weights", i, "path"), f"file '{path}' does not exist")
            else:
                rel = target.relative_to(root.resolve()).as_posix()
                out.append(WeightsSpec(name, target.name, sha, path=rel))
        elif isinstance(url, str):
            filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]) or name
            out.append(WeightsSpec(name, filename, sha, url=url))
    names = [w.name for w in out]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problem(("weights",), f"weights name '{dup}' is used twice")
    return tuple(out)


def _read_requirements_file(path: Path) -> list[str]:
    reqs = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            reqs.append(line)
    return reqs


@dataclass
class _Outside:
    """What the checks beyond the model found, and the values `resolve` builds on."""

    problems: list[Problem] = field(default_factory=list)
    flavor: Flavor | None = None
    base_image: str | None = None
    requirements: list[str] = field(default_factory=list)  # from requirements_file and %pip lines
    notebook: Path | None = None
    files: Discovered | None = None
    facts: NotebookFacts | None = None
    sources: list[tuple[tuple, str, str, str]] = field(default_factory=list)  # (key, option, value, where) from pip syntax
    indexes: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    weights: tuple[WeightsSpec, ...] = ()


def _check_outside(data: Mapping[str, Any], path: Path, lines: dict, skip: Iterable[tuple] = ()) -> _Outside:
    """Check what the model alone cannot: the flavor, the files, the notebook and its functions.

    Reads the raw TOML data, so it also runs when the model rejected it; a key whose
    value the model already rejected (it, or a table above it, is in `skip`) is not
    looked at again.
    """
    root = path.parent.resolve()
    rejected = list(skip)
    out = _Outside()

    def problem(loc: tuple, message: str) -> None:
        out.problems.append(Problem(path.name, line_of(lines, loc), dotted(loc), message))

    def usable(loc: tuple, value: Any) -> bool:
        return isinstance(value, str) and not any(loc[: len(r)] == r for r in rejected)

    env = data.get("environment", {})
    env = env if isinstance(env, Mapping) else {}
    flavor_name, python = env.get("flavor", "base"), env.get("python", "3.11")
    if usable(("environment", "flavor"), flavor_name):
        try:
            out.flavor = flavor_table.get(flavor_name)
        except UserError as exc:
            problem(("environment", "flavor"), f"{exc.message}; {exc.hint}")
    accelerator = env.get("accelerator", "cpu")
    if out.flavor and usable(("environment", "accelerator"), accelerator):
        try:
            out.flavor = out.flavor.for_accelerator(accelerator)
        except UserError as exc:
            problem(("environment", "accelerator"), f"{exc.message}; {exc.hint}")
    out.base_image = env.get("base_image")
    if out.flavor and out.base_image is None and usable(("environment", "python"), python):
        try:
            out.base_image = out.flavor.base_image(python)
        except UserError as exc:
            problem(("environment", "python"), f"{exc.message}; {exc.hint}")

    req_file = env.get("requirements_file")
    if usable(("environment", "requirements_file"), req_file):
        loc = ("environment", "requirements_file")
        req_path = _inside(root, req_file)
        if req_path is None:
            problem(loc, f"'{req_file}' is outside the garden folder; keep it beside {path.name}")
        elif not req_path.is_file():
            problem(loc, f"file '{req_file}' does not exist")
        else:
            from packaging.requirements import InvalidRequirement, Requirement

            try:
                lines_read = _read_requirements_file(req_path)
            except (OSError, UnicodeDecodeError) as exc:
                problem(loc, f"'{req_file}' cannot be read ({getattr(exc, 'strerror', None) or 'not UTF-8 text'})")
                lines_read = []
            for req in lines_read:
                option = _source_option(req)
                if option is not None:
                    out.sources.append((loc, *option, f"{req_file}"))
                    continue
                try:
                    Requirement(req)
                    out.requirements.append(req)
                except InvalidRequirement:
                    problem(loc, f"{req_file}: '{req}' is not a PEP 508 requirement {PEP508_EXAMPLE}"
                                 + (" (of pip's options, gardenbuild reads --index-url, --extra-index-url and "
                                    "--find-links)" if req.startswith("-") else ""))

    notebook = data.get("notebook")
    facts = None
    if usable(("notebook",), notebook) and notebook.strip():
        notebook = notebook.strip()
        nb_path = _inside(root, notebook)
        if nb_path is None:
            problem(("notebook",), f"'{notebook}' is outside the garden folder; keep the notebook beside {path.name} or below it")
        elif not nb_path.is_file():
            nearby = sorted(p.name for p in root.glob("*.ipynb"))
            hint = f"; notebooks here: {', '.join(nearby)}" if nearby else "; there is no .ipynb file in this folder"
            problem(("notebook",), f"file '{notebook}' does not exist{hint}")
        elif nb_path.suffix != ".ipynb":
            problem(("notebook",), f"'{notebook}' is not a .ipynb notebook")
        else:
            try:
                facts = analyse(nb_path)
                out.notebook = nb_path
            except ValueError as exc:
                problem(("notebook",), f"{notebook} {exc}")
            except OSError as exc:
                problem(("notebook",), f"{notebook} cannot be read ({exc.strerror})")
    out.facts = facts
    if facts:
        for message in facts.problems:
            problem(("notebook",), f"{notebook}: {message}")
        out.requirements.extend(facts.pip_requirements)
        out.sources.extend((("notebook",), option, value, f"{notebook}'s %pip line") for option, value in facts.pip_sources)

    out.indexes, out.find_links = _sources(data, env, out, root, problem)
    out.weights = _weights(data, root, problem, rejected)

    patterns = {k: data.get(k, ()) for k in ("include", "exclude")}
    if out.notebook is not None and all(isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)
                                        and not any(r[:1] == (k,) for r in rejected) for k, v in patterns.items()):
        out.files = discover_files(root, out.notebook.relative_to(root).as_posix(),
                                   tuple(patterns["include"]), tuple(patterns["exclude"]))
        for loc, message in out.files.problems:
            problem(loc, message)

    pipelines = data.get("pipeline", ())
    seen: set[str] = set()
    for i, p in enumerate(pipelines if isinstance(pipelines, (list, tuple)) else ()):
        if not isinstance(p, Mapping):
            continue
        name, function = p.get("name"), p.get("function")
        if usable(("pipeline", i, "name"), name):
            if name.strip() in seen:
                problem(("pipeline", i, "name"), f"pipeline name '{name.strip()}' is used twice")
            seen.add(name.strip())
        key = "name" if function is None else "function"
        function = name if function is None else function
        # A notebook with a cell that cannot be parsed may define the function there: say nothing.
        if facts and facts.complete and usable(("pipeline", i, key), function):
            function = function.strip()
            if function not in facts.functions:
                guess = difflib.get_close_matches(function, sorted(facts.functions), n=1)
                tail = f"; did you mean '{guess[0]}'?" if guess else ""
                problem(("pipeline", i, key), f"'{function}': no such function in {notebook}{tail}")
    return out


def resolve(spec: Gardenfile, text: str, path: Path) -> Garden:
    """Check what the model alone cannot (files, flavor, notebook) and fill defaults."""
    root = path.parent.resolve()
    found = _check_outside(spec.model_dump(), path, key_lines(text))
    if found.problems:
        raise ConfigError(_in_order(found.problems), hint=f"fix the problems above in {path}")
    assert found.flavor is not None and found.base_image is not None and found.notebook is not None
    assert found.files is not None

    env = spec.environment
    requirements = list(found.flavor.packages) + list(env.requirements) + found.requirements
    pipelines = tuple(
        PipelineSpec(p.name, p.function or p.name, p.description,
                     tuple(TestSpec(t.input, t.expected, t.tolerance) for t in p.test))
        for p in spec.pipeline
    )
    notebook = found.notebook.relative_to(root).as_posix()
    return Garden(
        root=root,
        gardenfile=path,
        meta=_with_entrypoint_metadata(spec.garden, found.facts),
        python=env.python,
        flavor=found.flavor,
        base_image=found.base_image,
        requirements=_merge_requirements(requirements + list(RUNTIME_REQUIREMENTS)
                                         + list(GLOBUS_REQUIREMENTS if spec.publish.globus else ())),
        indexes=found.indexes,
        find_links=found.find_links,
        weights=found.weights,
        system_packages=tuple(sorted(set(env.system_packages))),
        env=tuple(sorted(env.env.items())),
        secrets=tuple(sorted(set(env.secrets))),
        notebook=notebook,
        files=tuple(f for f in found.files.files if f not in {w.path for w in found.weights}),
        warnings=tuple(found.files.warnings) + tuple(_warnings(spec, found.facts, path)),
        imports=found.facts.imports if found.facts else (),
        local_modules=found.facts.local_modules if found.facts else frozenset(),
        pipelines=pipelines,
        publish=spec.publish,
        limits=Limits(spec.limits.notebook_seconds, spec.limits.call_seconds, parse_size(spec.limits.call_memory)),
        explicit_base=env.base_image is not None,
        accelerator=env.accelerator,
    )


#: What a hint may name and still arrive as JSON (arrays and frames are made from lists).
_JSON_HINT_NAMES = {
    "str", "int", "float", "bool", "list", "dict", "tuple", "set", "frozenset", "None", "NoneType", "Any", "object",
    "Optional", "Union", "List", "Dict", "Tuple", "Set", "Sequence", "Mapping", "Iterable", "Collection", "Literal",
    "typing", "collections", "abc", "ndarray", "NDArray", "DataFrame", "Series", "np", "numpy", "npt", "pd", "pandas",
    "dtype", "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool_", "complex64",
}
TEMPLATE_AUTHOR = "Your Name"


def _hint_travels(annotation: str) -> bool:
    import ast

    try:
        tree = ast.parse(annotation, mode="eval")
    except SyntaxError:
        return True  # a string annotation we cannot read: the runtime judges it
    if isinstance(tree.body, ast.Constant) and isinstance(tree.body.value, str):  # x: "np.ndarray"
        return _hint_travels(tree.body.value)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    return names <= _JSON_HINT_NAMES


def _with_entrypoint_metadata(meta: Any, facts: NotebookFacts | None) -> Any:
    """The Gardenfile's [garden], with what a garden-ai notebook's EntrypointMetadata says
    where the Gardenfile says nothing: description, keywords (its tags), papers, datasets.
    (Title and authors the Gardenfile always gives; a difference is warned of.)"""
    from gardenbuild.manifest.spec import Dataset, Paper

    if not facts or not facts.entrypoints:
        return meta
    fields = facts.entrypoints[0][1]
    update: dict[str, Any] = {}
    if not meta.description and isinstance(fields.get("description"), str):
        update["description"] = fields["description"]
    if not meta.keywords and isinstance(fields.get("tags"), list):
        update["keywords"] = tuple(str(t) for t in fields["tags"])
    for key, model, keys in (("papers", Paper, ("title", "doi", "url", "authors", "citation")),
                             ("datasets", Dataset, ("title", "doi", "url"))):
        if getattr(meta, key) or not isinstance(fields.get(key), list):
            continue
        items = []
        for item in fields[key]:
            try:
                items.append(model(**{k: item[k] for k in keys if isinstance(item, dict) and item.get(k)}))
            except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError: leave it out
                pass
        if items:
            update[key] = tuple(items)
    return meta.model_copy(update=update) if update else meta


def _warnings(spec: Gardenfile, facts: NotebookFacts | None, path: Path) -> list[str]:
    """Not wrong, but probably not meant: a template's placeholder, hints no JSON can fill."""
    out = []
    if any(a.name.strip() == TEMPLATE_AUTHOR for a in spec.garden.authors):
        out.append(f"{path.name}: the author is still the template's placeholder '{TEMPLATE_AUTHOR}'; "
                   "put yours in [[garden.authors]] (it goes into the citation and the DOI)")
    for function, fields in (facts.entrypoints if facts else ())[:1]:
        given = {"title": spec.garden.title, "description": spec.garden.description,
                 "authors": [a.name for a in spec.garden.authors]}
        for key, ours in given.items():
            theirs = fields.get(key)
            if theirs and theirs != ours:
                out.append(f"{path.name}: [garden] {key} {ours!r} differs from the notebook's EntrypointMetadata "
                           f"(of @entrypoint {function}): {theirs!r}; the Gardenfile's is used")
    functions = {p.function or p.name: p.name for p in spec.pipeline}
    for function, param, annotation in facts.hints if facts else ():
        if function in functions and not _hint_travels(annotation):
            out.append(f"pipeline '{functions[function]}': parameter '{param}' is annotated {annotation}, which no "
                       "JSON value can be: callers send numbers, strings, lists and objects (arrays and data frames "
                       "are made from lists); take a JSON-shaped value and build the object inside the pipeline")
    return out


def _merge_requirements(requirements: list[str]) -> tuple[str, ...]:
    """Deduplicate, keeping every distinct spelling (the resolver intersects them), sorted."""
    from packaging.requirements import Requirement

    return tuple(sorted(set(str(Requirement(r)) for r in requirements), key=lambda r: (Requirement(r).name.lower(), r)))
