"""Ingestion: find the documents under a folder and read their text.

A document's id is its POSIX path relative to the indexed folder; its ``sha256`` (of the
raw bytes) decides whether it must be embedded again. Files that cannot be read as text
are reported with a reason and skipped, never fatal.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from qa.config import SUPPORTED_SUFFIXES


@dataclass(frozen=True)
class Document:
    """One source document: its id, where it came from, its text and content hash."""

    doc_id: str
    source: str
    text: str
    sha256: str


@dataclass(frozen=True)
class Skipped:
    """A file that was not indexed, and why."""

    path: str
    reason: str


def _looks_binary(data: bytes) -> bool:
    # NUL bytes never occur in real text files; other control bytes are tolerated.
    return b"\x00" in data[:8192]


def read_document(path: Path, doc_id: str) -> Document | Skipped:
    """Read one file as a UTF-8 document, or say why it cannot be indexed."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Skipped(str(path), f"cannot be read: {exc.strerror or exc}")
    if _looks_binary(data):
        return Skipped(str(path), "binary file (contains NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Skipped(str(path), f"not valid UTF-8 (byte {exc.start}); re-save it as UTF-8")
    # A BOM is an encoding marker, not content; offsets are on the text without it.
    text = text.removeprefix("\ufeff")
    if not text.strip():
        return Skipped(str(path), "empty document (no text)")
    return Document(doc_id=doc_id, source=str(path), text=text, sha256=hashlib.sha256(data).hexdigest())


def discover(folder: Path, suffixes: tuple[str, ...] = SUPPORTED_SUFFIXES) -> list[tuple[Path, str]]:
    """List ``(path, doc_id)`` for every supported file under ``folder``, recursively, sorted.

    Symlinked directories are not followed (a link loop cannot hang indexing); hidden
    files and folders (``.git`` …) are ignored.
    """
    found: list[tuple[Path, str]] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(suffixes):
                continue
            path = Path(root) / name
            found.append((path, path.relative_to(folder).as_posix()))
    return found


def load_folder(folder: str | os.PathLike[str]) -> tuple[list[Document], list[Skipped]]:
    """Read every supported document under ``folder``.

    Raises:
        ValueError: the folder does not exist or is not a directory.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(
            f"documents folder {str(root)!r} does not exist or is not a directory; "
            "pass a folder of .txt/.md files (default: seeds/)"
        )
    documents: list[Document] = []
    skipped: list[Skipped] = []
    for path, doc_id in discover(root):
        result = read_document(path, doc_id)
        (documents if isinstance(result, Document) else skipped).append(result)  # type: ignore[arg-type]
    return documents, skipped
