"""OCI image references (``[host[:port]/]path[:tag][@sha256:hex]``), parsed by the grammar of
the distribution project's ``reference`` package, so that nothing else can pass for one.

A base image named in a Gardenfile, on the command line or in ``GARDENBUILD_BASE_IMAGE``
is rendered into a ``FROM`` line: a value with a newline or a space would add an
instruction of its own. Checking it against the grammar makes that impossible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
# A first component is a host when it is localhost, has a dot or a port, or is an IPv6 address.
_DOMAIN = rf"(?:(?:localhost|{_LABEL}(?:\.{_LABEL})+|\[[0-9a-fA-F:]+\])(?::[0-9]+)?|{_LABEL}:[0-9]+)"
_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


@dataclass(frozen=True)
class Reference:
    domain: str | None
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """The repository, with its domain: what a tag or digest is appended to."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse(text: str) -> Reference:
    """`text` as a Reference; ValueError, with what is wrong, for anything else."""
    if not isinstance(text, str) or not text:
        raise ValueError("an image reference must not be empty")
    if any(c.isspace() for c in text) or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError(f"{text!r} is not an image reference: it contains whitespace or control characters")
    if len(text) > 255 + 128 + 72:
        raise ValueError("an image reference of more than 455 characters is not one")
    m = _REFERENCE.match(text)
    if not m:
        raise ValueError(f"'{text}' is not an image reference (write e.g. docker.io/library/python:3.11-slim, "
                         "localhost/gardenbuild/python:3.11, or NAME@sha256:<64 hex digits>)")
    return Reference(m["domain"], m["path"], m["tag"], m["digest"])
