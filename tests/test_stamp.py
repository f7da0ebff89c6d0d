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


class Storage:
    """Answers `image_in_storage` as a Backend would: True, False, or None (cannot tell)."""

    answer: bool | None = True
    base_digest = "sha256:" + "b" * 64

    def image_in_storage(self, image_id, name=None):
        return self.answer

    def stored_digest(self, ref):
        return self.base_digest


def test_a_stamp_answers_only_while_its_image_exists(garden, tmp_path):
    out = garden / ".gardenbuild"
    out.mkdir()
    (out / "build.json").write_text("{}")
    result = {"image": "localhost/gardens/solubility:abc", "image_id": "f" * 64, "steps": []}
    print_ = stamp.fingerprint(garden, OPTIONS)
    path = stamp.stamp_path(tmp_path / "cache", garden)
    stamp.write(path, print_, result)
    storage = Storage()
    assert stamp.unchanged(path, out, print_, storage) == result
    assert stamp.unchanged(path, out, "0" * 64, storage) is None  # something changed
    storage.answer = None  # storage unreadable: no shortcut, the full build decides
    assert stamp.unchanged(path, out, print_, storage) is None
    storage.answer = True
    (out / "build.json").unlink()
    assert stamp.unchanged(path, out, print_, storage) is None
    assert json.loads(path.read_text())["fingerprint"] == print_
    assert list(out.iterdir()) == []  # the stamp lives in the cache, not among the build's outputs


def test_a_stamp_with_a_local_base_holds_only_while_storage_has_that_digest(garden, tmp_path):
    out = garden / ".gardenbuild"
    out.mkdir()
    (out / "build.json").write_text("{}")
    result = {"image": "localhost/gardens/solubility:abc", "image_id": "f" * 64, "steps": []}
    storage = Storage()
    path = tmp_path / "stamp.json"
    stamp.write(path, "p", result, local_base=("localhost/gardenbuild/python:3.11", storage.base_digest))
    assert stamp.unchanged(path, out, "p", storage) == result
    storage.base_digest = "sha256:" + "c" * 64  # bootstrapped again
    assert stamp.unchanged(path, out, "p", storage) is None
