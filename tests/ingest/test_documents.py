"""Ingestion: discovery, ids, hashes and skipping of unreadable files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from qa.ingest.documents import load_folder


def test_recursive_discovery_with_posix_ids_and_hashes(docs_dir: Path) -> None:
    (docs_dir / "ignored.xyz").write_bytes(b"%PDF-1.4")
    (docs_dir / ".hidden.txt").write_text("secret", encoding="utf-8")
    docs, skipped = load_folder(docs_dir)
    assert [d.doc_id for d in docs] == ["alpha.txt", "beta.md", "sub/gamma.txt"]
    assert skipped == []
    gamma = docs[2]
    assert gamma.sha256 == hashlib.sha256((docs_dir / "sub" / "gamma.txt").read_bytes()).hexdigest()
    assert gamma.text.startswith("Gamma city")


def test_bad_files_are_skipped_with_reasons(docs_dir: Path) -> None:
    (docs_dir / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (docs_dir / "latin1.txt").write_bytes("café crème".encode("latin-1"))
    (docs_dir / "empty.md").write_text("   \n", encoding="utf-8")
    docs, skipped = load_folder(docs_dir)
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert set(reasons) == {"binary.txt", "latin1.txt", "empty.md"}
    assert "binary" in reasons["binary.txt"]
    assert "UTF-8" in reasons["latin1.txt"]
    assert "empty" in reasons["empty.md"]
    assert len(docs) == 3


def test_bom_is_not_part_of_the_text(tmp_path: Path) -> None:
    (tmp_path / "bom.txt").write_bytes("\ufeffHello there.".encode())
    docs, _ = load_folder(tmp_path)
    assert docs[0].text == "Hello there."


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_folder(tmp_path / "nope")


def test_symlink_loop_does_not_hang(docs_dir: Path) -> None:
    (docs_dir / "sub" / "loop").symlink_to(docs_dir, target_is_directory=True)
    docs, _ = load_folder(docs_dir)
    assert len(docs) == 3


def test_source_is_the_absolute_path_whatever_the_current_directory(docs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder given relative to the current directory still records where each file is."""
    monkeypatch.chdir(docs_dir.parent)
    (docs_dir / "broken.txt").write_bytes(b"\x00\x01binary")
    docs, skipped = load_folder(Path(docs_dir.name))
    by_id = {d.doc_id: d.source for d in docs}
    assert by_id["sub/gamma.txt"] == str(docs_dir / "sub" / "gamma.txt")
    assert all(Path(s).is_absolute() for s in by_id.values())
    # A refused file is named as the user gave it, not by its absolute path.
    assert [s.path for s in skipped] == [str(Path(docs_dir.name) / "broken.txt")]
