"""The persisted index: a FAISS inner-product index plus chunk and document metadata.

On disk an index is a directory::

    INDEX_DIR/
      CURRENT               name of the live generation (replaced atomically)
      .lock                 held while a writer updates the index
      gen-<stamp>/          one complete generation
        manifest.json       format version, embedding model + encoder variant + dimension,
                            chunking, documents
        index.faiss         the vectors, row i <-> line i of chunks.jsonl
        chunks.jsonl        chunk id, document id, character span
        documents.jsonl     document id, source path, sha256, the extracted text itself
                            and, for PDFs, each page's start offset (``pages``)
        bm25/               keyword index over the same chunks (qa.bm25; .npy + JSON),
                            passed in as ``extra_files`` so it switches with the vectors

A new generation is written under a temporary name, fsynced, renamed, and only then does
``CURRENT`` switch to it (``os.replace``), so a crash at any point leaves the previous
index loadable. No pickle anywhere: metadata is JSON.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

FORMAT_VERSION = 1
_CURRENT = "CURRENT"
_LOCK = ".lock"
_MANIFEST = "manifest.json"
_FAISS = "index.faiss"
_CHUNKS = "chunks.jsonl"
_DOCUMENTS = "documents.jsonl"


class IndexLoadError(ValueError):
    """An index directory is missing, incomplete, corrupt or built for another model/format."""


def rebuild_hint(directory: Path | str) -> str:
    """The command that rebuilds an index from scratch, for error messages."""
    return f"rebuild it with: python -m qa index DOCS_DIR --index {directory} --rebuild"


@dataclass(frozen=True)
class ChunkRecord:
    """Where a vector's passage lives: chunk id, document id, ``[start, end)`` characters."""

    chunk_id: str
    doc_id: str
    start: int
    end: int


@dataclass(frozen=True)
class DocumentRecord:
    """An indexed document with its text, so citations can always be shown.

    ``text`` is the *extracted* text (what offsets refer to). ``pages`` (PDFs) is the start
    offset of each page in ``text``; ``None`` for other documents and for indexes written
    before pages existed (the field is only written when set, so such files are unchanged).
    """

    doc_id: str
    source: str
    sha256: str
    text: str
    pages: list[int] | None = None

    def to_json(self) -> dict:
        """The ``documents.jsonl`` row (``pages`` only when set)."""
        row = asdict(self)
        if row["pages"] is None:
            del row["pages"]
        else:
            row["pages"] = [int(p) for p in row["pages"]]
        return row


class VectorIndex:
    """Vectors, chunks and documents of one index generation, held in memory."""

    def __init__(
        self,
        *,
        embedding_model: str,
        dimension: int,
        chunking: dict[str, int],
        documents: dict[str, DocumentRecord],
        chunks: list[ChunkRecord],
        vectors: np.ndarray | faiss.Index,
        directory: Path | None = None,
        encoder_variant: str | None = None,
    ) -> None:
        if isinstance(vectors, np.ndarray):
            if vectors.shape != (len(chunks), dimension):
                raise ValueError(f"vectors shape {vectors.shape} does not match {len(chunks)} chunks x {dimension}")
            flat = faiss.IndexFlatIP(dimension)
            if len(chunks):
                flat.add(np.ascontiguousarray(vectors, dtype=np.float32))
            vectors = flat
        self.embedding_model = embedding_model
        # How the vectors were computed (embeddings.encoder.VARIANTS); None: not recorded
        # (an index written before variants existed, read as fp32, or a custom encoder's).
        self.encoder_variant = encoder_variant
        self.dimension = dimension
        self.chunking = dict(chunking)
        self.documents = documents
        self.chunks = chunks
        self.faiss_index: faiss.Index = vectors
        self.directory = directory

    def __len__(self) -> int:
        return len(self.chunks)

    def chunk_text(self, row: int) -> str:
        """Text of the chunk at FAISS row ``row``."""
        rec = self.chunks[row]
        return self.documents[rec.doc_id].text[rec.start : rec.end]

    def vectors(self) -> np.ndarray:
        """All stored vectors, row-aligned with :attr:`chunks`."""
        if not len(self.chunks):
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self.faiss_index.reconstruct_n(0, len(self.chunks))

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Top-``k`` ``(row, cosine)`` pairs for each query vector, best first."""
        if k < 1:
            raise ValueError(f"k={k} must be at least 1")
        queries = np.ascontiguousarray(np.atleast_2d(query_vectors), dtype=np.float32)
        if queries.shape[1] != self.dimension:
            raise ValueError(f"query dimension {queries.shape[1]} != index dimension {self.dimension}")
        if not len(self.chunks):
            return [[] for _ in range(len(queries))]
        scores, rows = self.faiss_index.search(queries, min(k, len(self.chunks)))
        return [[(int(r), float(s)) for r, s in zip(rr, ss, strict=True) if r >= 0] for rr, ss in zip(rows, scores, strict=True)]

    def manifest(self) -> dict:
        """The manifest as written to ``manifest.json``."""
        per_doc: dict[str, int] = {}
        for rec in self.chunks:
            per_doc[rec.doc_id] = per_doc.get(rec.doc_id, 0) + 1
        variant = {"encoder_variant": self.encoder_variant} if self.encoder_variant is not None else {}
        return {
            "format_version": FORMAT_VERSION,
            "embedding_model": self.embedding_model,
            **variant,
            "dimension": self.dimension,
            "chunking": self.chunking,
            "num_chunks": len(self.chunks),
            "documents": {
                d.doc_id: {"source": d.source, "sha256": d.sha256, "chunks": per_doc.get(d.doc_id, 0)}
                for d in sorted(self.documents.values(), key=lambda d: d.doc_id)
            },
        }

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | os.PathLike[str], extra_files: dict[str, bytes] | None = None) -> Path:
        """Write this index as the new live generation of ``directory``, atomically.

        ``extra_files`` (relative name -> bytes) are written into the same generation, so
        other retrievers' data (e.g. BM25) is swapped in together with the vectors.
        Returns the generation directory.
        """
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        name = f"gen-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        tmp = root / f".tmp-{name}"
        tmp.mkdir()
        try:
            _write_json(tmp / _MANIFEST, self.manifest())
            faiss.write_index(self.faiss_index, str(tmp / _FAISS))
            _write_jsonl(tmp / _CHUNKS, (asdict(c) for c in self.chunks))
            _write_jsonl(tmp / _DOCUMENTS, (d.to_json() for d in self.documents.values()))
            for rel, data in (extra_files or {}).items():
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            for path in tmp.rglob("*"):
                if path.is_file():
                    _fsync(path)
            final = root / name
            os.rename(tmp, final)
            _fsync_dir(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        pointer = root / f".{_CURRENT}.{uuid.uuid4().hex[:8]}"
        pointer.write_text(name + "\n", encoding="utf-8")
        _fsync(pointer)
        os.replace(pointer, root / _CURRENT)  # the commit point
        _fsync_dir(root)
        _remove_stale_generations(root, keep=name)
        self.directory = final
        return final

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], *, expect_model: str | None = None, expect_variant: str | None = None
    ) -> VectorIndex:
        """Load the live generation of ``directory``.

        Raises:
            IndexLoadError: missing, incomplete or corrupt index; another format version;
                built with another embedding model than ``expect_model`` or another encoder
                variant than ``expect_variant`` (no variant recorded = fp32). The message says
                how to rebuild.
        """
        root = Path(directory)
        if not root.is_dir():
            raise IndexLoadError(
                f"no index at {str(root)!r}; build one with: python -m qa index DOCS_DIR --index {root}"
            )
        gen = current_generation(root)
        try:
            manifest = json.loads((gen / _MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexLoadError(f"index {str(root)!r} has an unreadable manifest ({exc}); {rebuild_hint(root)}") from exc
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexLoadError(
                f"index {str(root)!r} has format version {version!r} but this version of qa reads "
                f"version {FORMAT_VERSION}; {rebuild_hint(root)}"
            )
        model = manifest.get("embedding_model")
        if expect_model is not None and model != expect_model:
            raise IndexLoadError(
                f"index {str(root)!r} was built with embedding model {model!r}, not {expect_model!r}; "
                f"{rebuild_hint(root)} (or use the model it was built with)"
            )
        if expect_variant is not None:
            from embeddings.encoder import check_variant

            check_variant(manifest.get("encoder_variant"), expect_variant, root)
        try:
            chunks = [ChunkRecord(**row) for row in _read_jsonl(gen / _CHUNKS)]
            documents = {d.doc_id: d for d in (DocumentRecord(**row) for row in _read_jsonl(gen / _DOCUMENTS))}
            vectors = faiss.read_index(str(gen / _FAISS))
        except (OSError, ValueError, TypeError, RuntimeError) as exc:
            raise IndexLoadError(f"index {str(root)!r} is corrupt or incomplete ({exc}); {rebuild_hint(root)}") from exc
        dimension = int(manifest.get("dimension", -1))
        if vectors.ntotal != len(chunks) or vectors.d != dimension or manifest.get("num_chunks") != len(chunks):
            raise IndexLoadError(
                f"index {str(root)!r} is inconsistent ({vectors.ntotal} vectors of dimension {vectors.d}, "
                f"{len(chunks)} chunks, manifest says {manifest.get('num_chunks')} x {dimension}); {rebuild_hint(root)}"
            )
        missing = {c.doc_id for c in chunks} - documents.keys()
        if missing:
            raise IndexLoadError(f"index {str(root)!r} lacks documents {sorted(missing)[:3]}; {rebuild_hint(root)}")
        return cls(
            embedding_model=model,
            dimension=dimension,
            chunking=manifest.get("chunking", {}),
            documents=documents,
            chunks=chunks,
            vectors=vectors,
            directory=gen,
            encoder_variant=manifest.get("encoder_variant"),
        )


def current_generation(root: Path) -> Path:
    """The live generation directory of index ``root``."""
    try:
        name = (root / _CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IndexLoadError(
            f"{str(root)!r} holds no complete index (no {_CURRENT} file); "
            f"build one with: python -m qa index DOCS_DIR --index {root}"
        ) from None
    gen = root / name
    if not name.startswith("gen-") or "/" in name or not gen.is_dir():
        raise IndexLoadError(f"index {str(root)!r} points at a missing generation {name!r}; {rebuild_hint(root)}")
    return gen


def has_index(directory: str | os.PathLike[str]) -> bool:
    """True when ``directory`` holds a committed index generation (it may still fail to load)."""
    return (Path(directory) / _CURRENT).is_file()


@contextlib.contextmanager
def write_lock(directory: str | os.PathLike[str], *, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the index's writer lock; wait up to ``wait_s`` seconds, then fail clearly.

    Uses ``flock``, so a killed writer releases it automatically.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"index {str(root)!r} is being updated by another process; "
                        "wait for it to finish (or pass a longer --wait) and try again"
                    ) from exc
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def _remove_stale_generations(root: Path, keep: str) -> None:
    # Old generations and leftovers of interrupted writers; readers that already opened
    # an old generation hold its data in memory, so deleting the files is safe.
    for child in root.iterdir():
        if child.name == keep:
            continue
        if child.is_dir() and (child.name.startswith("gen-") or child.name.startswith(".tmp-gen-")):
            shutil.rmtree(child, ignore_errors=True)
        elif child.is_file() and child.name.startswith(f".{_CURRENT}."):
            child.unlink(missing_ok=True)


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")


def _write_jsonl(path: Path, rows: Iterator[dict] | object) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:  # type: ignore[attr-defined]
            fh.write(json.dumps(row, ensure_ascii=False))
            fh.write("\n")


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        _fsync(path)
