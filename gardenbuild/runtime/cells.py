"""Notebook cells as plain Python: read an ``.ipynb`` and rewrite IPython syntax.

Pure (standard library only, no I/O besides `read_notebook`) so the host imports it to
find ``%pip install`` lines statically and the image imports it to run the notebook
with no IPython installed.

Numbering: ``Cell.index`` is the 1-based position among *all* cells of the notebook
(markdown and raw included), which is what a reader counts when scrolling the
notebook; "cell 7" in every gardenbuild message means that. ``Cell.code_index`` is the
1-based position among code cells, which is the order in which "Restart & Run All"
executes them; ``Cell.execution_count`` is the ``In [n]`` number saved in the file
(None if never run), kept only for display.

Every rewrite maps one source line to exactly one output line, so line numbers in
tracebacks and error reports are the lines the user sees in the cell.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "Cell",
    "NotebookError",
    "UnsupportedMagic",
    "cell_filename",
    "pip_requirements",
    "read_notebook",
    "to_python",
]


class NotebookError(ValueError):
    """The file is not a notebook we can read (not text, bad JSON, not nbformat 4).

    ``reason`` is worded to follow the file's name: ``model.ipynb is not valid JSON ...``.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path} {reason}")
        self.path = path
        self.reason = reason


class UnsupportedMagic(ValueError):
    """A magic (``%name``/``%%name``) that has no faithful plain-Python equivalent."""

    def __init__(self, magic: str, reason: str, *, cell: int | None = None, line: int | None = None) -> None:
        self.magic = magic
        self.reason = reason
        self.cell = cell
        self.line = line
        where = ", ".join(p for p in (f"cell {cell}" if cell else "", f"line {line}" if line else "") if p)
        super().__init__(f"{where + ': ' if where else ''}{magic}: {reason}")


@dataclass(frozen=True)
class Cell:
    """One code cell: its position (see module docstring) and its source text."""

    index: int
    code_index: int
    execution_count: int | None
    source: str


def cell_filename(notebook: str, index: int) -> str:
    """The pseudo file name code from a cell is compiled under, e.g. ``<model.ipynb cell 7>``."""
    return f"<{os.path.basename(notebook)} cell {index}>"


def read_notebook(path: str | os.PathLike[str]) -> list[Cell]:
    """The code cells of an nbformat-4 notebook, in order: the one reader of ``.ipynb``
    files, on the host (``check``) and in the image alike."""
    shown = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            nb = json.load(f)
    except UnicodeDecodeError:
        raise NotebookError(shown, "is not a text file") from None
    except json.JSONDecodeError as e:
        raise NotebookError(shown, f"is not valid JSON (line {e.lineno}: {e.msg}); is it really a .ipynb?") from None
    # The version first: an nbformat 3 file keeps its cells under "worksheets", not "cells".
    if isinstance(nb, dict) and "nbformat" in nb and nb["nbformat"] != 4:
        raise NotebookError(shown, f"uses nbformat {nb['nbformat']!r}; only nbformat 4 is supported "
                                   "(re-save it in Jupyter)")
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookError(shown, "is not a Jupyter notebook (no 'cells' list)")
    if "nbformat" not in nb:
        raise NotebookError(shown, "has no nbformat version; only nbformat 4 is supported (re-save it in Jupyter)")
    cells: list[Cell] = []
    for i, raw in enumerate(nb["cells"], start=1):
        if not isinstance(raw, dict) or "cell_type" not in raw:
            raise NotebookError(shown, f"cell {i} has no cell_type")
        if raw["cell_type"] != "code":
            continue
        source = raw.get("source", "")
        if isinstance(source, list):
            source = "".join(source)
        count = raw.get("execution_count")
        cells.append(Cell(i, len(cells) + 1, count if isinstance(count, int) else None, str(source)))
    return cells


# --------------------------------------------------------------------------- scanning


class _Scanner:
    """Tracks whether the next line starts a new statement (not inside brackets, a
    triple-quoted string or a backslash continuation), which is where IPython looks
    for ``%`` and ``!`` syntax."""

    def __init__(self) -> None:
        self.depth = 0
        self.triple: str | None = None
        self.continued = False

    @property
    def at_statement_start(self) -> bool:
        return self.depth == 0 and self.triple is None and not self.continued

    def feed(self, line: str) -> None:
        i, n = 0, len(line)
        comment = False
        while i < n:
            c = line[i]
            if self.triple is not None:
                if c == "\\":
                    i += 2
                elif line.startswith(self.triple, i):
                    self.triple = None
                    i += 3
                else:
                    i += 1
                continue
            if c == "#":
                comment = True
                break
            if c in "'\"":
                if line.startswith(c * 3, i):
                    self.triple = c * 3
                    i += 3
                    continue
                j = i + 1
                while j < n and line[j] != c:
                    j += 2 if line[j] == "\\" else 1
                i = j + 1
                continue
            if c in "([{":
                self.depth += 1
            elif c in ")]}":
                self.depth = max(0, self.depth - 1)
            i += 1
        self.continued = self.triple is None and not comment and line.rstrip("\r\n").endswith("\\")


def _lines(source: str) -> list[str]:
    """Source split into lines without their line endings (one entry per line)."""
    return source.split("\n") if source else []


_ASSIGN = re.compile(r"^(?P<target>[A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*)\s*=\s*(?P<rhs>[!%].*)$")
_HELP = re.compile(r"^(\?{1,2}[\w.*]+|[\w.*]+\?{1,2})$")
_AUTOMAGIC_INSTALL = re.compile(r"^(pip|pip3|conda|mamba|micromamba)\s+install\b")


def _is_install(stripped: str) -> bool:
    """``%pip install``, ``!pip install``, ``!{sys.executable} -m pip install``,
    ``!conda install``, bare ``pip install`` (IPython's automagic), ...: dependencies
    are resolved on the host and preinstalled, so these lines do nothing in the image."""
    return bool(
        _PIP_PREFIX.match(stripped)
        or _AUTOMAGIC_INSTALL.match(stripped)
        or re.match(r"^[%!]\s*(?:conda|mamba|micromamba)\s+install\b", stripped)
    )


def _split_indent(line: str) -> tuple[str, str]:
    stripped = line.lstrip(" \t")
    return line[: len(line) - len(stripped)], stripped.rstrip()


# --------------------------------------------------------------------------- rewriting

# Magics that only change display or interactive state; they do nothing in a batch run.
_NOOP_LINE = frozenset(
    "matplotlib load_ext unload_ext reload_ext config autoreload aimport precision who whos who_ls "
    "lsmagic history hist pwd pinfo pinfo2 pdoc psource pdef pfile magic quickref xmode colors page "
    "pprint autocall automagic doctest_mode debug pdb tb notebook rehashx alias_magic killbgscripts "
    "pylab_off autosave".split()
)
# Installers: dependencies were resolved on the host and preinstalled in the image.
_INSTALLERS = frozenset("pip conda mamba micromamba".split())
# IPython's default shell aliases on POSIX: ``%ls x`` runs ``ls x``.
_SHELL_ALIASES = frozenset("cat cp ldir lf lk ll ls lx mkdir mv rm rmdir".split())
# Cell magics that only render their body.
_NOOP_CELL = frozenset("html HTML markdown latex javascript js svg".split())
_SCRIPT_CELL = {"bash": "bash", "sh": "sh", "perl": "perl", "ruby": "ruby"}
_RUN_ONCE_CELL = frozenset("time capture prun".split())

_SUBPROCESS = "__import__('subprocess')"


def _shell_expr(cmd: str) -> str:
    """A Python expression for a shell command, expanding ``{expr}`` like IPython does.

    The command becomes an f-string when that compiles; otherwise (``awk '{print $1}'``,
    ``find -exec {} ;``) it stays literal, as IPython falls back to the raw text.
    ``$name`` is left to the shell (environment variables), not expanded from Python.
    """
    literal = repr(cmd)
    if "{" not in cmd:
        return literal
    candidate = "f" + literal
    try:
        compile(candidate, "<shell command>", "eval")
    except SyntaxError:
        return literal
    return candidate


def _shell_call(cmd: str, *, capture: bool = False) -> str:
    if capture:
        return (
            f"{_SUBPROCESS}.run({_shell_expr(cmd)}, shell=True, check=True, stdout={_SUBPROCESS}.PIPE, "
            "universal_newlines=True).stdout.splitlines()"
        )
    return f"{_SUBPROCESS}.run({_shell_expr(cmd)}, shell=True, check=True)"


def _strip_timeit_options(args: str) -> str:
    """``-n 10 -r3 -q f(x)`` -> ``f(x)``: the statement ``%timeit`` would time."""
    rest = args.strip()
    while True:
        m = re.match(r"^-(?:[nrp]\s*\d+|[tcqo]+)(?:\s+|$)", rest)
        if not m:
            return rest
        rest = rest[m.end() :]


def _line_magic(name: str, args: str, stripped: str) -> str:
    """The replacement (without indentation) for the line magic ``%name args``."""
    if name in _INSTALLERS:
        return f"pass  # {stripped}  (installed at image build time)"
    if name in _NOOP_LINE:
        return f"pass  # {stripped}  (no effect outside IPython)"
    if name in ("time", "timeit", "prun"):
        stmt = _strip_timeit_options(args) if name != "time" else args.strip()
        if not stmt:
            return f"pass  # {stripped}"
        return stmt
    if name in ("sx", "system"):
        return _shell_call(args)
    if name in _SHELL_ALIASES:
        return _shell_call(f"{name} {args}".strip())
    if name == "cd":
        target = args.strip() or "~"
        parts = shlex.split(target)
        if len(parts) != 1 or parts[0].startswith("-"):
            raise UnsupportedMagic(f"%{name}", "only '%cd DIRECTORY' is supported")
        return f"__import__('os').chdir(__import__('os').path.expanduser({parts[0]!r}))"
    if name in ("env", "set_env"):
        m = re.match(r"^([A-Za-z_]\w*)\s*(?:=\s*|\s+)(.*)$", args.strip())
        if not m:
            return f"pass  # {stripped}  (display only)"
        return f"__import__('os').environ[{m.group(1)!r}] = {m.group(2)!r}"
    if name == "run":
        parts = shlex.split(args)
        if parts and parts[0] == "-i":
            parts = parts[1:]
        if len(parts) != 1 or parts[0].startswith("-"):
            raise UnsupportedMagic(f"%{name}", "only '%run [-i] SCRIPT.py' without arguments is supported")
        path = parts[0]
        return f"exec(compile(open({path!r}, encoding='utf-8').read(), {path!r}, 'exec'), globals())"
    raise UnsupportedMagic(f"%{name}", "no plain-Python equivalent; remove it or replace it with Python code")


def _rewrite_line(indent: str, stripped: str) -> str | None:
    """The plain-Python form of one line of IPython syntax, or None for plain Python."""
    if stripped.startswith("%%"):
        name = stripped[2:].split(None, 1)[0] if len(stripped) > 2 else ""
        raise UnsupportedMagic(f"%%{name}", "cell magics must be on the first line of the cell")
    if _is_install(stripped):
        return f"{indent}pass  # {stripped}  (installed at image build time)"
    if stripped.startswith("!") and not stripped.startswith("!="):
        return indent + _shell_call(stripped.lstrip("!"))
    if stripped.startswith("%"):
        m = re.match(r"^%(\w+)\s*(.*)$", stripped)
        if not m:
            raise UnsupportedMagic(stripped.split()[0], "not a magic this runtime understands")
        return indent + _line_magic(m.group(1), m.group(2), stripped)
    m = _ASSIGN.match(stripped)
    if m:
        target, rhs = m.group("target"), m.group("rhs")
        if rhs.startswith("!"):
            return f"{indent}{target} = {_shell_call(rhs.lstrip('!'), capture=True)}"
        mm = re.match(r"^%(\w+)\s*(.*)$", rhs)
        if mm and mm.group(1) in ("sx", "system"):
            return f"{indent}{target} = {_shell_call(mm.group(2), capture=True)}"
        if mm and mm.group(1) == "time":
            return f"{indent}{target} = {mm.group(2)}"
        magic = "%" + mm.group(1) if mm else rhs.split()[0]
        raise UnsupportedMagic(magic, "assigning the result of this magic is not supported")
    if _HELP.match(stripped):
        return f"{indent}pass  # {stripped}  (help, no effect outside IPython)"
    return None


def _rewrite_lines(lines: list[str], first_line: int) -> Iterator[str]:
    scanner = _Scanner()
    for offset, line in enumerate(lines):
        if scanner.at_statement_start:
            indent, stripped = _split_indent(line)
            try:
                new = _rewrite_line(indent, stripped)
            except UnsupportedMagic as e:
                e.line = first_line + offset
                raise
            if new is not None:
                yield new
                continue
        scanner.feed(line)
        yield line


def _commented(lines: list[str]) -> list[str]:
    return ["# " + line if line.strip() else "" for line in lines]


def _cell_magic(name: str, args: str, first: str, body: list[str], body_line: int) -> list[str]:
    """The plain-Python lines (one per source line) for a cell starting with ``%%name``;
    ``body_line`` is the 1-based line number of the body's first line."""
    text = "\n".join(body)
    if text and not text.endswith("\n"):
        text += "\n"  # IPython hands cell magics a body ending in a newline
    if name in _RUN_ONCE_CELL:
        if name == "capture" and any(not a.startswith("-") for a in shlex.split(args)):
            raise UnsupportedMagic("%%capture", "capturing into a variable is not supported; drop the name")
        return [f"pass  # {first}  (body runs once)"] + list(_rewrite_lines(body, body_line))
    if name == "timeit":
        setup = _strip_timeit_options(args)
        return [setup or f"pass  # {first}  (body runs once)"] + list(_rewrite_lines(body, body_line))
    if name in _NOOP_CELL:
        return [f"pass  # {first}  (display only)"] + _commented(body)
    if name in _SCRIPT_CELL or name in ("script", "python", "python2", "python3"):
        if any(a.startswith("-") for a in shlex.split(args)):
            raise UnsupportedMagic(f"%%{name}", "options of script magics are not supported")
        if name == "script":
            argv = shlex.split(args)
            if not argv:
                raise UnsupportedMagic("%%script", "needs an interpreter, e.g. '%%script bash'")
            program = repr(argv)
        elif name.startswith("python"):
            program = "[__import__('sys').executable]"
        else:
            program = repr([_SCRIPT_CELL[name]])
        call = f"{_SUBPROCESS}.run({program}, input={text!r}, universal_newlines=True, check=True)"
        return [call] + _commented(body)
    if name == "writefile":
        parts = shlex.split(args)
        mode = "w"
        if parts and parts[0] in ("-a", "--append"):
            mode, parts = "a", parts[1:]
        if len(parts) != 1:
            raise UnsupportedMagic("%%writefile", "expected '%%writefile [-a] FILENAME'")
        path = parts[0]
        call = (
            f"with open(__import__('os').path.expanduser({path!r}), {mode!r}, encoding='utf-8') as __gardenbuild_f: "
            f"__gardenbuild_f.write({text!r})"
        )
        # `with` leaves its target behind; drop it so it never reaches the session.
        return [call + "; del __gardenbuild_f"] + _commented(body)
    raise UnsupportedMagic(f"%%{name}", "no plain-Python equivalent; remove it or replace it with Python code")


def to_python(source: str, *, cell: int | None = None) -> str:
    """Rewrite one cell's IPython syntax as plain Python, keeping one line per line.

    Raises `UnsupportedMagic` (with ``cell`` and the 1-based ``line``) for magics that
    cannot run faithfully without IPython.
    """
    lines = _lines(source)
    try:
        # IPython ignores blank lines before a cell magic.
        start = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
        if start < len(lines) and lines[start].lstrip().startswith("%%"):
            first = lines[start].strip()
            m = re.match(r"^%%(\w+)\s*(.*)$", first)
            if not m:
                raise UnsupportedMagic(first.split()[0], "not a cell magic this runtime understands", line=start + 1)
            try:
                out = lines[:start] + _cell_magic(m.group(1), m.group(2), first, lines[start + 1 :], start + 2)
            except UnsupportedMagic as e:
                e.line = e.line or start + 1
                raise
        else:
            out = list(_rewrite_lines(lines, 1))
    except UnsupportedMagic as e:
        raise UnsupportedMagic(e.magic, e.reason, cell=cell, line=e.line) from None
    return "\n".join(out)


# --------------------------------------------------------------------------- pip

# pip options that take a value (so the next word is not a requirement).
_PIP_VALUE_OPTIONS = frozenset(
    """-r --requirement -c --constraint -e --editable -i --index-url --extra-index-url -f --find-links
    -t --target --prefix --root --src --upgrade-strategy --platform --python-version --implementation
    --abi --only-binary --no-binary --progress-bar --log --cache-dir --trusted-host --proxy --retries
    --timeout --exists-action --cert --client-cert -C --config-settings --global-option --report
    --python --root-user-action""".split()
)
# Of those, the ones a requirements file can hold: returned as "-r FILE" etc. (package
# sources as "--index-url URL", "--extra-index-url URL", "--find-links PATH").
_PIP_KEPT_OPTIONS = {
    "-r": "-r",
    "--requirement": "-r",
    "-c": "-c",
    "--constraint": "-c",
    "-e": "-e",
    "--editable": "-e",
    "-i": "--index-url",
    "--index-url": "--index-url",
    "--extra-index-url": "--extra-index-url",
    "-f": "--find-links",
    "--find-links": "--find-links",
}
_PIP_PREFIX = re.compile(
    r"""^(?:
        %pip |                                   # %pip install
        !\s*pip3? |                              # !pip install
        (?:pip3?) |                              # automagic: pip install
        !\s*["']?(?:\{sys\.executable\}|python3?|\$\{?PYTHON\}?)["']?\s+-m\s+pip   # !{sys.executable} -m pip
    )\s+install\s+(?P<args>.*)$""",
    re.VERBOSE,
)


def _install_words(args: str) -> list[str]:
    try:
        words = shlex.split(args)
    except ValueError:  # unbalanced quotes: fall back to plain words
        words = args.split()
    for i, word in enumerate(words):
        if word.startswith("#"):  # a trailing comment (a '#' inside a URL is not a word start)
            return words[:i]
        if word in ("&&", ";", "||", "|", ">", "2>&1"):
            return words[:i]
    return words


def pip_requirements(source: str) -> list[str]:
    """The requirement specs that ``%pip install`` / ``!pip install`` /
    ``!{sys.executable} -m pip install`` lines in ``source`` (one cell) ask for.

    Options are dropped, except those a requirements file can hold, which are returned
    in that syntax: ``-r FILE``, ``-c FILE``, ``-e TARGET``, and the package sources
    ``--index-url URL``, ``--extra-index-url URL``, ``--find-links PATH``. The result can thus be
    written verbatim into a requirements.txt. Order is kept, duplicates dropped.
    Lines inside strings and bodies of ``%%bash``-like cells are not looked at.
    """
    lines = _lines(source)
    start = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    if start < len(lines) and lines[start].lstrip().startswith("%%"):
        name = lines[start].strip()[2:].split(" ", 1)[0]
        if name not in _RUN_ONCE_CELL and name != "timeit":
            return []
        lines = lines[start + 1 :]
    found: list[str] = []
    scanner = _Scanner()
    for line in lines:
        if scanner.at_statement_start:
            _, stripped = _split_indent(line)
            m = _PIP_PREFIX.match(stripped)
            if m:
                words = _install_words(m.group("args"))
                i = 0
                while i < len(words):
                    word = words[i]
                    if word.startswith("-"):
                        opt, eq, value = word.partition("=")
                        if opt in _PIP_VALUE_OPTIONS:
                            if not eq:
                                i += 1
                                value = words[i] if i < len(words) else ""
                            if opt in _PIP_KEPT_OPTIONS and value:
                                found.append(f"{_PIP_KEPT_OPTIONS[opt]} {value}")
                    elif word:
                        found.append(word)
                    i += 1
                continue
            if stripped.startswith(("%", "!")):
                continue
        scanner.feed(line)
    return list(dict.fromkeys(found))
