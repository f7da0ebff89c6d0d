"""System packages, resolved like wheels: pinned .deb files fetched on the host.

At lock time a throwaway container of the base image (with network, the only time one
has it) asks apt which .deb files the declared packages need beyond what the base
already has: ``apt-get install --print-uris`` gives URL, file name and size, and
``apt-cache show`` the exact version and SHA256 of each. The files are then fetched
into the same content-addressed cache as the wheels and installed in the build with
``dpkg`` and no network, so the lock pins them like everything else.
"""

from __future__ import annotations

import re
import shlex
import urllib.parse
from typing import Sequence

from gardenbuild.backends import Backend
from gardenbuild.backends.deps import PinnedWheel
from gardenbuild.errors import ResolutionError
from gardenbuild.report import Reporter

#: A pinned .deb has the same shape as a pinned wheel: name, version, file, URL, sha256, size.
PinnedDeb = PinnedWheel

_URI = re.compile(r"^'(?P<url>[^']+)' (?P<file>\S+) (?P<size>\d+) \S+$")
SEPARATOR = "----gardenbuild-apt-cache----"


def probe_script(packages: Sequence[str]) -> str:
    """The shell run in the base image: the URIs to fetch, then their apt-cache records."""
    names = " ".join(shlex.quote(p) for p in packages)
    return (
        "set -e; apt-get update -qq >/dev/null; "
        f"apt-get install -qq -y --print-uris --no-install-recommends {names} > /tmp/uris; "
        "cat /tmp/uris; "
        f"echo {SEPARATOR}; "
        "names=$(sed -n \"s/^'[^']*' \\([^_]*\\)_.*/\\1/p\" /tmp/uris); "
        "[ -z \"$names\" ] || apt-cache show $names"
    )


def _stanzas(text: str) -> list[dict[str, str]]:
    out, current = [], {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                out.append(current)
            current = {}
        elif not line.startswith(" ") and ":" in line:
            key, _, value = line.partition(":")
            current[key] = value.strip()
    if current:
        out.append(current)
    return out


def parse_probe(output: str) -> list[PinnedDeb]:
    """Pinned .debs from the probe's output (pure); sorted by name."""
    uris_text, _, cache_text = output.partition(SEPARATOR)
    needed = {"Package", "Version", "Filename", "SHA256"}
    by_filename = {s["Filename"]: s for s in _stanzas(cache_text) if needed <= s.keys()}
    debs = []
    for line in uris_text.splitlines():
        m = _URI.match(line.strip())
        if not m:
            continue
        path = urllib.parse.unquote(urllib.parse.urlsplit(m["url"]).path)
        stanza = next((s for f, s in by_filename.items() if path.endswith("/" + f)), None)
        if stanza is None:
            raise ResolutionError(f"apt gave no SHA256 for {m['file']}", hint="check the base image's apt sources")
        debs.append(PinnedDeb(stanza["Package"], stanza["Version"], m["file"], m["url"], stanza["SHA256"].lower(),
                              int(m["size"])))
    return sorted(debs)


def resolve_debs(packages: Sequence[str], base_image: str, *, backend: Backend, reporter: Reporter) -> list[PinnedDeb]:
    """Pin the .deb files `packages` need on top of `base_image` (runs apt in a container)."""
    if not packages:
        return []
    reporter.step(f"resolving {len(packages)} system package(s) with apt in {base_image}")
    run = backend.run(base_image, ["sh", "-c", probe_script(packages)], network="host")
    if run.returncode != 0:
        tail = run.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ResolutionError(f"apt could not resolve system packages {', '.join(packages)}: " + " / ".join(tail),
                              hint="check the names (`apt-cache search NAME` on a Debian machine); the base "
                                   "image needs apt and a reachable Debian mirror at lock time")
    return parse_probe(run.stdout.decode(errors="replace"))
