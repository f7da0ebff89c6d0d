"""Map TOML key paths to line numbers, so validation errors can say where they are.

tomllib keeps no positions, so we scan the text: table headers (``[a.b]``,
``[[a.b]]`` with their array indices) and ``key = value`` lines. Only the shapes a
Gardenfile uses need to be exact; anything else falls back to the nearest parent.
"""

from __future__ import annotations

import re
from collections import defaultdict

Path_ = tuple  # tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\")(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"))*)\s*=")


def _split_key(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip('"') for part in re.findall(r'"[^"]*"|[^.]+', key))


class _Value:
    """Tracks whether a value continues on the next line: an open array or a multi-line string."""

    def __init__(self) -> None:
        self.depth = 0
        self.triple: str | None = None

    @property
    def open(self) -> bool:
        return self.depth > 0 or self.triple is not None

    def feed(self, text: str) -> None:
        i, n = 0, len(text)
        while i < n:
            if self.triple:
                if text.startswith(self.triple, i):
                    i, self.triple = i + 3, None
                else:
                    i += 2 if text[i] == "\\" and self.triple == '"""' else 1
                continue
            c = text[i]
            if c == "#":
                return
            if text.startswith('"""', i) or text.startswith("'''", i):
                self.triple, i = text[i : i + 3], i + 3
            elif c in "\"'":
                i += 1  # a one-line string: skip to its closing quote
                while i < n and text[i] != c:
                    i += 2 if c == '"' and text[i] == "\\" else 1
                i += 1
            else:
                self.depth += (c in "[{") - (c in "]}")
                i += 1


def key_lines(text: str) -> dict[Path_, int]:
    """Every table and key path in `text`, mapped to its 1-based line number."""
    lines: dict[Path_, int] = {}
    counts: dict[Path_, int] = defaultdict(int)
    current: Path_ = ()
    value = _Value()
    for number, line in enumerate(text.splitlines(), start=1):
        if value.open:  # inside a multi-line array or string: "[1, 2]" here is no table header
            value.feed(line)
            continue
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            names = _split_key(header.group(2))
            # Resolve array-of-table parents to their latest index: [[pipeline.test]] lives
            # under the most recent [[pipeline]].
            path: list = []
            for name in names[:-1]:
                path.append(name)
                if tuple(path) in counts:
                    path.append(counts[tuple(path)] - 1)
            path.append(names[-1])
            if header.group(1) == "[[":
                parent = tuple(path)
                index = counts[parent]
                counts[parent] += 1
                lines.setdefault(parent, number)
                path.append(index)
            current = tuple(path)
            lines.setdefault(current, number)
            continue
        key = _KEY.match(line)
        if key:
            full = current + _split_key(key.group(1))
            lines.setdefault(full, number)
            value.feed(line[key.end():])
    return lines


def line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of `path`, or of its nearest ancestor that appears in the file."""
    path = tuple(path)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def dotted(path: Path_) -> str:
    """``('pipeline', 1, 'function')`` -> ``pipeline[1].function``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
