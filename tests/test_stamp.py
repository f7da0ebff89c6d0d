"""The no-op fast path: a content fingerprint, trusted only while the image exists."""

from __future__ import annotations

import json
import shutil

import pytest

from gardenbuild.engine import stamp

OPTIONS = {"base_image": None, "locked": False, "cache": "/c"}


@pytest.fixture
def garden(tmp_path, gardens):
    dest = tmp_path / "g"
    shutil.copytree(gardens["solubility"], dest, ignore=shutil.ignore_patterns(".gardenbuild"))
    return dest


def test_the_fingerprint_follows_content_and_options_only(garden):
    first = stamp.fingerprint(garden, OPTIONS)
    assert stamp.fingerprint(garden, OPTIONS) == first
    (garden / ".gardenbuild").mkdir()
    (garden / ".gardenbuild" / "build.json").write_text("{}")  # outputs are not inputs
    assert stamp.fingerprint(garden, OPTIONS) == first
    (garden / "solubility.ipynb").touch()  # a new mtime alone changes nothing
    assert stamp.fingerprint(garden, OPTIONS) == first
    assert stamp.fingerprint(garden, {**OPTIONS, "locked": True}) != first
    data = garden / "data" / "README.md"
    data.write_text(data.read_text() + "\n")
    assert stamp.fingerprint(garden, OPTIONS) != first


def test_a_stamp_answers_only_while_its_image_exists(garden, monkeypatch):
    out = garden / ".gardenbuild"
    out.mkdir()
    (out / "build.json").write_text("{}")
    result = {"image": "localhost/gardens/solubility:abc", "image_id": "f" * 64, "steps": []}
    print_ = stamp.fingerprint(garden, OPTIONS)
    stamp.write(out, print_, result)
    present = {"answer": True}
    monkeypatch.setattr("gardenbuild.backends.buildah.image_in_storage", lambda image_id, name: present["answer"])
    assert stamp.unchanged(out, print_) == result
    assert stamp.unchanged(out, "0" * 64) is None  # something changed
    present["answer"] = None  # storage unreadable: no shortcut, the full build decides
    assert stamp.unchanged(out, print_) is None
    present["answer"] = True
    (out / "build.json").unlink()
    assert stamp.unchanged(out, print_) is None
    assert json.loads((out / stamp.STAMP).read_text())["fingerprint"] == print_
