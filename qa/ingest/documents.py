"""Ingestion: find the documents under a folder and read their text.

A document's id is its POSIX path relative to the indexed folder; its ``source`` is the
file's absolute path (:func:`source_of`: the same whichever directory ``qa index`` runs in;
indexes written before recorded the path as given, often relative, and still load); its
``sha256`` (of the raw bytes) decides whether it must be embedded again. The text is what
:mod:`qa.ingest.extraction` extracts (HTML, Markdown, PDF and DOCX become plain text; PDFs keep
their page starts). Files that cannot be read are reported with a reason and skipped,
never fatal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from qa.ingest.extraction import SUPPORTED_SUFFIXES, ExtractionError, extract, suffix_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Document:
    """One source document: its id, where it came from, its extracted text and content hash.

    ``pages`` (PDFs) is the start offset of each page in ``text``; ``None`` otherwise.
    """

    doc_id: str
    source: str
    text: str
    sha256: str
    pages: tuple[int, ...] | None = None
    #: ``"folder"`` (from an indexed folder: a folder sync may drop it when the file goes) or
    #: ``"added"`` (``qa add``, an upload: only an explicit remove drops it).
    origin: str = "folder"
    #: An added document's original bytes, which the index keeps so every rebuild can read
    #: the document again (``None`` once kept: then ``original`` names the kept file).
    data: bytes | None = field(default=None, repr=False, compare=False)
    original: str | None = None

    def page_starts(self) -> list[int] | None:
        """``pages`` as the stores record them: a list of ints, or None."""
        return [int(p) for p in self.pages] if self.pages is not None else None


@dataclass(frozen=True)
class Skipped:
    """A file that was not indexed, and why."""

    path: str
    reason: str
    #: The id the file would have had (when known).
    doc_id: str | None = None
    #: A read error that may pass (permissions, a file being replaced): an indexed
    #: version of the document is kept rather than dropped.
    transient: bool = False


def source_of(path: str | os.PathLike[str]) -> str:
    """The ``source`` recorded for a file: its absolute, normalised path (symlinks kept as
    named), so it does not depend on the directory the indexing command ran in."""
    return os.path.abspath(os.fspath(path))


def read_document(path: Path, doc_id: str, *, source: str | None = None, added: bool = False) -> Document | Skipped:
    """Read and extract one file (type from its suffix), or say why it cannot be indexed.

    ``source`` overrides the recorded source (default: :func:`source_of` ``path``); ``added``:
    see :func:`document_from_bytes`. A :class:`Skipped` names the file as ``path`` gives it
    (what the user typed), not its source. Only regular files are read: a named pipe or a
    device (``/dev/zero`` behind a link) would never end.
    """
    try:
        f = open_regular(path)
        if f is None:
            return Skipped(str(path), "not a regular file (a named pipe, socket or device); only files are read", doc_id=doc_id)
        with f:
            data = f.read()
    except OSError as exc:
        return Skipped(str(path), f"cannot be read: {exc.strerror or exc}", doc_id=doc_id, transient=True)
    result = document_from_bytes(data, suffix_of(path.name), doc_id, source if source is not None else source_of(path), added=added)
    return dataclasses.replace(result, path=str(path)) if isinstance(result, Skipped) else result


def open_regular(path: str | os.PathLike[str]) -> BinaryIO | None:
    """``path`` open for reading when it is a regular file, else ``None``. Opened without
    blocking and checked on the open file, not the name: a named pipe or a device (``/dev/zero``
    behind a link, one put in a file's place after a check) would be read forever.

    Raises:
        OSError: it cannot be opened (missing, a dangling link, no permission).
    """
    f = os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb")
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        return None
    return f


def document_from_bytes(data: bytes, suffix: str, doc_id: str, source: str, *, added: bool = False) -> Document | Skipped:
    """A :class:`Document` from a file's raw bytes, or :class:`Skipped` naming ``source`` and why.

    ``added``: a document the user added (not synced from a folder); it carries its bytes
    for the index to keep."""
    try:
        extracted = extract(data, suffix)
    except ExtractionError as exc:
        return Skipped(source, str(exc), doc_id=doc_id, transient=exc.transient)
    except Exception as exc:  # a parser bug on one odd file must not stop the others
        logger.warning("extracting %s failed", source, exc_info=True)
        return Skipped(source, f"could not extract text ({type(exc).__name__}: {exc})")
    return Document(
        doc_id=doc_id,
        source=source,
        text=extracted.text,
        sha256=hashlib.sha256(data).hexdigest(),
        pages=extracted.pages,
        origin="added" if added else "folder",
        data=data if added else None,
    )


def discover(
    folder: Path, suffixes: tuple[str, ...] = SUPPORTED_SUFFIXES, *, exclude: Path | None = None, passed_over: dict[str, int] | None = None
) -> list[tuple[Path, str]]:
    """List ``(path, doc_id)`` for every supported file under ``folder``, recursively, sorted.

    Symlinked directories are not followed (a link loop cannot hang indexing); hidden
    files and folders (``.git`` …) are ignored, and so is ``exclude`` (the index's own folder
    when it lies inside ``folder``: its kept originals are no documents). ``passed_over``, when
    given, counts the other files by suffix (``{".csv": 2}``), for :func:`passed_over_note`.
    """
    skip = _identity(exclude) if exclude is not None else None
    found: list[tuple[Path, str]] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        # By device and inode, not by name: a case-insensitive disk spells one folder two ways.
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (skip is None or _identity(Path(root) / d) != skip))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if not name.lower().endswith(suffixes):
                if passed_over is not None:
                    kind = suffix_of(name) or "(no extension)"
                    passed_over[kind] = passed_over.get(kind, 0) + 1
                continue
            path = Path(root) / name
            found.append((path, path.relative_to(folder).as_posix()))
    return found


def _identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of ``path`` (``None`` when it cannot be read)."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def passed_over_note(passed_over: dict[str, int]) -> str:
    """The line saying which files a folder read passed over for their type ("" when none)."""
    if not passed_over:
        return ""
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(passed_over.items(), key=lambda kv: (-kv[1], kv[0]))[:6])
    total = sum(passed_over.values())
    return f"passed over {total} file{'s' if total != 1 else ''} of other types ({kinds}{', ...' if len(passed_over) > 6 else ''}); supported: {' '.join(SUPPORTED_SUFFIXES)}"


def load_folder(
    folder: str | os.PathLike[str], *, exclude: str | os.PathLike[str] | None = None, passed_over: dict[str, int] | None = None
) -> tuple[list[Document], list[Skipped]]:
    """Read every supported document under ``folder`` (except under ``exclude``; ``passed_over``
    counts the other files: see :func:`discover`).

    Raises:
        ValueError: the folder is an empty path, does not exist or is not a directory.
    """
    if not str(folder).strip():
        raise ValueError("the documents folder is empty; give a folder of documents (default: seeds/)")
    root = Path(folder)
    if root.is_file():
        # A common first try: `qa index report.pdf`. Files go in with `qa add`, which keeps them.
        raise ValueError(
            f"documents folder {str(root)!r} is a file, not a folder; index a folder of documents, "
            f"or add single files with: python -m qa add {str(root)!r} [--index INDEX_DIR]"
        )
    if not root.is_dir():
        raise ValueError(
            f"documents folder {str(root)!r} does not exist or is not a directory; "
            f"pass a folder of {'/'.join(SUPPORTED_SUFFIXES)} files (default: seeds/)"
        )
    documents: list[Document] = []
    skipped: list[Skipped] = []
    for path, doc_id in discover(root, exclude=Path(exclude) if exclude is not None else None, passed_over=passed_over):
        result = read_document(path, doc_id)
        (documents if isinstance(result, Document) else skipped).append(result)  # type: ignore[arg-type]
    return documents, skipped
