"""mslib.files: the atomic writer and the file digest, against plain file writes and hashlib."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mslib.files import CHUNK, atomic_write, atomic_write_text, file_digest
from mslib.paths import atomic_write_text as paths_atomic_write_text


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    target.write_text("old")
    seen = []

    def write_then_fail(tmp: Path) -> None:
        tmp.write_text("half of the new cont")
        seen.append(tmp)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, write_then_fail)
    assert target.read_text() == "old"
    assert seen and seen[0].parent == tmp_path and not seen[0].exists()
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_temporary_is_hidden_from_globs_until_renamed(tmp_path: Path) -> None:
    """While ``write`` runs, ``*.json`` lists only the old file; afterwards the new content is in place."""
    target = tmp_path / "a.json"
    target.write_text("old")
    listed = []

    def write(tmp: Path) -> None:
        tmp.write_text("new")
        listed.append(sorted(p.name for p in tmp_path.glob("*.json")))
        assert tmp.name.startswith(".a.json.") and tmp.suffix == ".tmp"

    assert atomic_write(target, write) == target
    assert listed == [["a.json"]] and target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_text_is_utf8_parents_created_and_permissions_as_a_plain_write(tmp_path: Path) -> None:
    text = "ψ ⇒ é\nline 2\n"
    target = tmp_path / "new" / "folder" / "t.csv"
    atomic_write_text(target, text)
    assert target.read_bytes() == text.encode("utf-8")
    plain = tmp_path / "plain.csv"
    plain.write_text(text, encoding="utf-8")
    assert target.stat().st_mode == plain.stat().st_mode  # umask applies, as for checkpoints written directly
    paths_atomic_write_text(target, "via mslib.paths")  # the old import path still writes
    assert target.read_text() == "via mslib.paths"


@pytest.mark.parametrize("algorithm", ["md5", "sha256"])
def test_digest_equals_hashlib_across_chunks(tmp_path: Path, algorithm: str) -> None:
    data = os.urandom(2 * CHUNK + 12345)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_digest(path, algorithm) == hashlib.new(algorithm, data).hexdigest()
    empty = tmp_path / "empty"
    empty.touch()
    assert file_digest(empty, algorithm) == hashlib.new(algorithm, b"").hexdigest()
