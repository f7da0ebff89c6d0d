"""System packages resolved to pinned .deb files: the pure parsing of apt's answers."""

from __future__ import annotations

import pytest

from gardenbuild.backends.debs import SEPARATOR, parse_probe, probe_script
from gardenbuild.errors import ResolutionError

URIS = """\
'http://deb.debian.org/debian/pool/main/libo/libonig/libonig5_6.9.8-1_amd64.deb' libonig5_6.9.8-1_amd64.deb 187828 MD5Sum:7e359432d638eee2be29dfd20ddcd493
'http://deb.debian.org/debian/pool/main/j/jq/jq_1.6-2.1%2bdeb12u2_amd64.deb' jq_1.6-2.1+deb12u2_amd64.deb 63984 MD5Sum:b9aca00e056b5365d65597df4b338cee
"""

CACHE = """\
Package: jq
Version: 1.6-2.1+deb12u2
Architecture: amd64
Description: lightweight and flexible command-line JSON processor
 jq is like sed for JSON data
Filename: pool/main/j/jq/jq_1.6-2.1+deb12u2_amd64.deb
SHA256: F2303584378AC85F6D3A9AE8E46412196061681E81610D3B020ABE4B5D389EB0

Package: jq
Version: 1.6-2.1
Filename: pool/main/j/jq/jq_1.6-2.1_amd64.deb
SHA256: 1111111111111111111111111111111111111111111111111111111111111111

Package: libonig5
Version: 6.9.8-1
Filename: pool/main/libo/libonig/libonig5_6.9.8-1_amd64.deb
SHA256: 59ecfce6d88c7c4b09496ce182b3b8303e8e8477664e009b16ae83a09cd12be7
"""


def test_parse_probe_pins_each_deb_by_the_version_apt_chose():
    debs = parse_probe(f"{URIS}{SEPARATOR}\n{CACHE}")
    assert [(d.name, d.version, d.filename, d.size) for d in debs] == [
        ("jq", "1.6-2.1+deb12u2", "jq_1.6-2.1+deb12u2_amd64.deb", 63984),
        ("libonig5", "6.9.8-1", "libonig5_6.9.8-1_amd64.deb", 187828),
    ]
    # apt-cache's upper-case SHA256 is normalised; the URL keeps apt's %-encoding.
    assert debs[0].sha256 == "f2303584378ac85f6d3a9ae8e46412196061681e81610d3b020abe4b5d389eb0"
    assert debs[0].url.endswith("jq_1.6-2.1%2bdeb12u2_amd64.deb")


def test_parse_probe_with_everything_already_in_the_base():
    assert parse_probe(f"{SEPARATOR}\n") == []


def test_parse_probe_without_a_sha256_refuses():
    with pytest.raises(ResolutionError, match="apt gave no SHA256 for jq_1.6-2.1"):
        parse_probe(f"{URIS}{SEPARATOR}\nPackage: libonig5\nVersion: 6.9.8-1\nFilename: pool/main/libo/libonig/libonig5_6.9.8-1_amd64.deb\n"
                    "SHA256: 59ec\n")


def test_probe_script_quotes_names():
    script = probe_script(["jq", "libfoo;rm -rf /"])
    assert "--print-uris --no-install-recommends jq 'libfoo;rm -rf /'" in script
