"""Static facts about a notebook, found without running it.

Which functions it defines (and which carry ``@garden_pipeline``), which packages its
``%pip install`` lines ask for, and whether it is a valid nbformat 4 file at all.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from gardenbuild.runtime.imports import Import

_MAGIC = re.compile(r"^(\s*)[%!]")
_CELL_MAGIC_BODY_IS_PYTHON = {"time", "capture", "timeit", "prun"}


@dataclass(frozen=True)
class NotebookFacts:
    functions: frozenset[str]
    pipelines: frozenset[str]  # functions decorated with garden_pipeline
    pip_requirements: tuple[str, ...]
    problems: tuple[str, ...]  # human-readable, e.g. "cell 4, line 2: invalid syntax"
    complete: bool = True  # False when a cell could not be parsed, so `functions` may miss some
    imports: tuple[tuple[int, Import], ...] = ()  # (cell number, import), in order
    local_modules: frozenset[str] = frozenset()  # modules the notebook writes (%%writefile x.py)
    hints: tuple[tuple[str, str, str], ...] = ()  # (function, parameter, annotation source) of decorated functions
    pip_sources: tuple[tuple[str, str], ...] = ()  # ("--index-url"/"--extra-index-url"/"--find-links", value)
    #: garden-ai ``@entrypoint`` functions, with the literal fields of their ``EntrypointMetadata``
    entrypoints: tuple[tuple[str, dict], ...] = ()


def python_source(source: str) -> str:
    """The cell as plain Python for static analysis: magics and shell lines become `pass`.

    A fallback for cells the runtime's `to_python` rejects, so their functions are still
    found; one line per line, so line numbers stay those of the cell.
    """
    lines = source.splitlines()
    if lines and lines[0].startswith("%%"):
        magic = lines[0][2:].split()[0] if lines[0][2:].split() else ""
        if magic not in _CELL_MAGIC_BODY_IS_PYTHON:
            return ""
        lines = [""] + lines[1:]
    out = []
    for line in lines:
        m = _MAGIC.match(line)
        out.append(f"{m.group(1)}pass" if m else line)
    return "\n".join(out)


#: garden-ai's decorators of a function others call (2.x, and 1.x's older name).
ENTRYPOINT_DECORATORS = ("entrypoint", "garden_entrypoint")


def _decorator_name(dec: ast.expr) -> str | None:
    target = dec.func if isinstance(dec, ast.Call) else dec
    return target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)


def _decorated_as_pipeline(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(_decorator_name(d) in ("garden_pipeline", *ENTRYPOINT_DECORATORS) for d in node.decorator_list)


def _literal(node: ast.expr) -> object:
    """A literal value, with calls (``Paper(title=...)``) read as dicts of their literal
    keywords; ValueError for anything computed."""
    if isinstance(node, ast.Call):
        out = {}
        for kw in node.keywords:
            if kw.arg:
                try:
                    out[kw.arg] = _literal(kw.value)
                except ValueError:
                    pass
        return out
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    return ast.literal_eval(node)


def _is_metadata_call(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Call) and _decorator_name(node) == "EntrypointMetadata"


def _entrypoint_metadata(node: ast.FunctionDef | ast.AsyncFunctionDef, named: dict[str, dict]) -> dict | None:
    """The metadata an ``@entrypoint(metadata=...)`` decorator names (a variable or a call)."""
    for dec in node.decorator_list:
        if _decorator_name(dec) not in ENTRYPOINT_DECORATORS or not isinstance(dec, ast.Call):
            continue
        given = next((kw.value for kw in dec.keywords if kw.arg == "metadata"), dec.args[0] if dec.args else None)
        if isinstance(given, ast.Name):
            return named.get(given.id, {})
        if _is_metadata_call(given):
            return _literal(given)  # type: ignore[return-value]
        return {}
    return None


#: pip options that name where packages come from: kept as the garden's sources.
SOURCE_OPTIONS = ("--index-url ", "--extra-index-url ", "--find-links ")


def _unlockable(requirement: str) -> str | None:
    """Why a ``%pip install`` argument cannot go into the lock, or None if it can."""
    from packaging.requirements import InvalidRequirement, Requirement

    from gardenbuild.manifest.spec import PEP508_EXAMPLE

    if requirement.startswith(SOURCE_OPTIONS):
        return None
    if requirement.startswith("-r "):
        file = requirement[3:]
        return f"'%pip install -r {file}' is not supported; set requirements_file = \"{file}\" in [environment] instead"
    if requirement.startswith("-"):
        return f"'%pip install {requirement}' is not supported; list the package in [environment] requirements instead"
    try:
        Requirement(requirement)
    except InvalidRequirement:
        return f"'%pip install {requirement}': not a PEP 508 requirement {PEP508_EXAMPLE}, so it cannot be locked"
    return None


def analyse(path: Path) -> NotebookFacts:
    """Read `path` and report its functions, pipelines, pip requirements and problems.

    A cell is read as the image's runtime will run it (`to_python`), so a magic that
    cannot run there is reported now. Raises ValueError (with a message meant to follow
    the file name) for a file that is not a notebook at all.
    """
    from gardenbuild.runtime.cells import NotebookError, UnsupportedMagic, pip_requirements, read_notebook, to_python

    from gardenbuild.runtime.imports import imports_in, written_modules

    functions: set[str] = set()
    pipelines: set[str] = set()
    imports: list[tuple[int, Import]] = []
    hints: list[tuple[str, str, str]] = []
    sources: list[tuple[str, str]] = []
    reqs: list[str] = []
    problems: list[str] = []
    complete = True
    metadata_vars: dict[str, dict] = {}
    entrypoints: list[tuple[str, dict]] = []
    try:
        cells = read_notebook(path)
    except NotebookError as exc:
        raise ValueError(exc.reason) from None
    for cell in cells:
        number, source = cell.index, cell.source
        for req in pip_requirements(source):
            why = _unlockable(req)
            if why:
                problems.append(f"cell {number}: {why}")
            elif req.startswith(SOURCE_OPTIONS):
                option, _, value = req.partition(" ")
                sources.append((option, value))
            else:
                reqs.append(req)
        try:
            code = to_python(source, cell=number)
        except UnsupportedMagic as exc:
            problems.append(str(exc))  # "cell 3, line 2: %magic: why"
            code = python_source(source)
        try:
            # Top-level await is allowed, as in Jupyter and in the image's executor.
            tree = compile(code, f"<cell {number}>", "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                           dont_inherit=True)
        except SyntaxError as exc:
            problems.append(f"cell {number}, line {exc.lineno}: {exc.msg}")
            complete = False
            continue
        imports.extend((number, found) for found in imports_in(tree))
        for node in tree.body:
            if isinstance(node, ast.Assign) and _is_metadata_call(node.value):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        metadata_vars[target.id] = _literal(node.value)  # type: ignore[assignment]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.add(node.name)
                found_meta = _entrypoint_metadata(node, metadata_vars)
                if found_meta is not None:
                    entrypoints.append((node.name, found_meta))
                if _decorated_as_pipeline(node):
                    pipelines.add(node.name)
                    every = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
                    hints.extend((node.name, a.arg, ast.unparse(a.annotation)) for a in every if a.annotation)
    return NotebookFacts(frozenset(functions), frozenset(pipelines), tuple(dict.fromkeys(reqs)), tuple(problems),
                         complete, tuple(imports), frozenset(written_modules([c.source for c in cells])), tuple(hints),
                         tuple(dict.fromkeys(sources)), tuple(entrypoints))
