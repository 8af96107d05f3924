"""The embedded directory index: immutable segments plus a small manifest per generation.

On disk an index is a directory::

    INDEX_DIR/
      CURRENT               name of the live generation (replaced atomically: the commit point)
      .lock                 held (flock) while a writer updates the index
      gen-<stamp>/          one generation: only ``manifest.json`` --
                              format version, embedding model + encoder variant + dimension, chunking, BM25
                              tokenizer version, the live segments, and per document: source,
                              sha256 of the bytes and of the extracted text, pages, size,
                              and where its chunks are (segment, first row, number of rows)
      seg-<id>/             an immutable segment (layout in :mod:`embeddings.stores.segment`):
                              vectors (.npy, memory-mapped), an IVF index when large, chunk
                              and document metadata in SQLite (read on demand), BM25 postings

Updates cost what changed, not what is stored:

* **add / change** a document: its chunks go into a *new* segment; the new manifest points
  the document at it. The old rows of a changed document stay on disk as tombstones.
* **remove**: only a new manifest. A row is live exactly when a document entry of the live
  manifest covers it, so tombstones are implicit and cannot disagree with the documents.
* **merge**: when a commit leaves more than ``config.MAX_SEGMENTS`` segments, the small
  (exact-search) ones are merged into one, dropping their tombstones;
  ``python -m qa index --compact`` merges everything. A segment whose rows are all dead is
  simply dropped from the manifest.

A commit writes the new segment(s) under ``.tmp-*`` names, fsyncs and renames them, writes
the manifest the same way, and only then replaces ``CURRENT`` (``os.replace``). A crash at
any point leaves the previous generation loadable; debris (``.tmp-gen-*`` / ``.tmp-seg-*``,
unreferenced segments and generations, only under the names this module gives them) is removed by later writers -- keeping what the previous
generation uses, so a reader that just opened it can still open its files. Readers open every
file of a generation at load (mappings, SQLite connections), so later deletions do not
disturb them. Metadata is JSON and SQLite, arrays ``.npy``; nothing is pickled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from embeddings.encoders.variants import check_variant
from embeddings.errors import IndexBusyError, IndexLoadError, rebuild_hint  # noqa: F401 - re-exported
from embeddings.stores.records import (  # noqa: F401 - re-exported
    ChunkRecord,
    DocumentRecord,
    Hit,
    NewDocument,
    text_sha256,
)
from embeddings.stores.segment import Postings, Segment, write_segment

#: Version 2: segments + manifest. Version 1 (one FAISS file + JSON Lines per generation) is refused.
FORMAT_VERSION = 2
_CURRENT = "CURRENT"
_LOCK = ".lock"
_MANIFEST = "manifest.json"
#: BM25 parameters, the defaults of bm25s (method "lucene") that :mod:`qa.retrieval.bm25` uses.
BM25_K1 = 1.5
BM25_B = 0.75


@dataclass(frozen=True)
class DocEntry:
    """A document as the manifest lists it: enough to plan updates and list documents
    without opening any segment."""

    source: str
    sha256: str
    text_sha256: str
    characters: int
    chunks: int
    segment: str
    row: int
    pages: list[int] | None = None
    origin: str = "folder"  # see DocumentRecord.origin
    original: str | None = None  # see DocumentRecord.original

    @property
    def added(self) -> bool:
        """Added by a user (not synced from a folder): removed only by an explicit remove.
        Uploads from before origins were recorded (source ``upload:NAME``) count too."""
        return self.origin == "added" or self.source.startswith("upload:")

    def to_json(self) -> dict:
        """The manifest's entry (``pages``, ``origin`` and ``original`` only when set)."""
        row = asdict(self)
        if row["pages"] is None:
            del row["pages"]
        if row["origin"] == "folder":
            del row["origin"]
        if row["original"] is None:
            del row["original"]
        return row


@dataclass
class Manifest:
    """A generation's ``manifest.json``: what :func:`commit` needs, readable without the segments."""

    embedding_model: str
    dimension: int
    chunking: dict[str, int]
    tokenizer: str
    segments: list[dict] = field(default_factory=list)  # {"name", "rows", "ann"}, in row order
    documents: dict[str, DocEntry] = field(default_factory=dict)
    generation: Path | None = None
    # How the vectors were computed (embeddings.encoders.encoder.VARIANTS); None: not recorded (an
    # index written before variants existed, read as fp32, or a custom encoder's).
    encoder_variant: str | None = None

    @property
    def num_chunks(self) -> int:
        """Live chunks."""
        return sum(e.chunks for e in self.documents.values())

    def to_json(self) -> dict:
        """The JSON written to ``manifest.json``."""
        return {
            "format_version": FORMAT_VERSION,
            "embedding_model": self.embedding_model,
            **({"encoder_variant": self.encoder_variant} if self.encoder_variant is not None else {}),
            "dimension": self.dimension,
            "chunking": self.chunking,
            "tokenizer": self.tokenizer,
            "num_chunks": self.num_chunks,
            "segments": self.segments,
            "documents": {d: self.documents[d].to_json() for d in sorted(self.documents)},
        }

    def live_masks(self) -> dict[str, np.ndarray]:
        """Per segment, which rows are live (covered by a document entry)."""
        masks = {s["name"]: np.zeros(int(s["rows"]), dtype=bool) for s in self.segments}
        for e in self.documents.values():
            masks[e.segment][e.row : e.row + e.chunks] = True
        return masks


def read_manifest(directory: str | os.PathLike[str], *, expect_model: str | None = None) -> Manifest:
    """The live manifest of the index at ``directory`` (no segment is opened).

    Raises:
        IndexLoadError: no index, an unreadable manifest, another format version (the message
            gives the rebuild command), or built with another model than ``expect_model``.
    """
    root = Path(directory)
    if not root.is_dir():
        raise IndexLoadError(f"no index at {str(root)!r}; build one with: python -m qa index DOCS_DIR --index {root}")
    gen = current_generation(root)
    try:
        raw = json.loads((gen / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexLoadError(f"index {str(root)!r} has an unreadable manifest ({exc}); {rebuild_hint(root)}") from exc
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version != FORMAT_VERSION:
        raise IndexLoadError(
            f"index {str(root)!r} has format version {version!r} but this version of qa reads "
            f"version {FORMAT_VERSION}; {rebuild_hint(root)}"
        )
    model = raw.get("embedding_model")
    if expect_model is not None and model != expect_model:
        raise IndexLoadError(
            f"index {str(root)!r} was built with embedding model {model!r}, not {expect_model!r}; "
            f"{rebuild_hint(root)} (or use the model it was built with)"
        )
    try:
        manifest = Manifest(
            embedding_model=str(model),
            dimension=int(raw["dimension"]),
            chunking=dict(raw.get("chunking", {})),
            tokenizer=str(raw.get("tokenizer", "")),
            segments=[{"name": str(s["name"]), "rows": int(s["rows"]), "ann": s.get("ann")} for s in raw["segments"]],
            documents={d: DocEntry(**e) for d, e in raw["documents"].items()},
            generation=gen,
            encoder_variant=raw.get("encoder_variant"),
        )
        rows = {s["name"]: s["rows"] for s in manifest.segments}
        for doc_id, e in manifest.documents.items():
            if e.segment not in rows or e.row < 0 or e.row + e.chunks > rows[e.segment]:
                raise ValueError(f"document {doc_id!r} points outside its segment")
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexLoadError(f"index {str(root)!r} has an inconsistent manifest ({exc}); {rebuild_hint(root)}") from exc
    return manifest


# --------------------------------------------------------------------------- reading


class _Documents(Mapping[str, DocumentRecord]):
    """``index.documents``: ids from the manifest, texts read from the segments on demand."""

    def __init__(self, index: VectorIndex) -> None:
        self._index = index

    def __getitem__(self, doc_id: str) -> DocumentRecord:
        return self._index.document(doc_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index.entries)

    def __len__(self) -> int:
        return len(self._index.entries)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._index.entries


class VectorIndex:
    """One generation of a directory index, opened for reading.

    Rows are numbered across segments (segment order, then row within it); tombstoned rows
    keep their numbers but are never returned. Nothing is loaded whole: vectors and BM25
    postings are memory-mapped, chunk metadata and texts read from SQLite when asked for.
    Thread-safe for readers.
    """

    def __init__(self, manifest: Manifest, segments: list[Segment], root: Path) -> None:
        self.manifest_data = manifest
        self.embedding_model = manifest.embedding_model
        self.encoder_variant = manifest.encoder_variant
        self.dimension = manifest.dimension
        self.chunking = dict(manifest.chunking)
        self.tokenizer = manifest.tokenizer
        self.entries: dict[str, DocEntry] = manifest.documents
        self.root = root
        self.directory = manifest.generation
        self.segments = segments
        self.offsets = np.zeros(len(segments) + 1, dtype=np.int64)
        np.cumsum([s.rows for s in segments], out=self.offsets[1:])
        masks = manifest.live_masks()
        # None = every row live: searches then skip the mask entirely.
        self.live: list[np.ndarray | None] = [None if masks[s.name].all() else masks[s.name] for s in segments]
        # FAISS's IDSelectorBitmap wants the mask packed; pack it once, not per query.
        self.bitmaps = [
            np.packbits(m, bitorder="little") if m is not None and seg.ann is not None else None
            for seg, m in zip(segments, self.live, strict=True)
        ]
        self._live_count = sum(e.chunks for e in self.entries.values())
        total_len = sum(float(s.doclen[m].sum()) if m is not None else float(np.sum(s.doclen)) for s, m in zip(segments, self.live, strict=True))
        self.avgdl = total_len / self._live_count if self._live_count else 1.0
        self._docs_cache: OrderedDict[str, DocumentRecord] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.documents: Mapping[str, DocumentRecord] = _Documents(self)

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], *, expect_model: str | None = None, expect_variant: str | None = None
    ) -> VectorIndex:
        """Open the live generation of ``directory``.

        Raises:
            IndexLoadError: missing, incomplete or corrupt index; another format version;
                built with another embedding model than ``expect_model`` or another encoder
                variant than ``expect_variant`` (no variant recorded = fp32). The message says
                how to rebuild.
        """
        root = Path(directory)
        for attempt in range(3):
            manifest = read_manifest(root, expect_model=expect_model)
            if expect_variant is not None:
                check_variant(manifest.encoder_variant, expect_variant, root)
            try:
                segments = [Segment(root / s["name"]) for s in manifest.segments]
            except FileNotFoundError as exc:
                # A writer may have committed and removed this generation's segments between our
                # reading CURRENT and opening them: read CURRENT again.
                if attempt < 2 and current_generation(root) != manifest.generation:
                    continue
                raise IndexLoadError(f"index {str(root)!r} is incomplete ({exc}); {rebuild_hint(root)}") from exc
            except (OSError, EOFError, ValueError, KeyError, RuntimeError) as exc:  # EOFError: an empty .npy
                raise IndexLoadError(f"index {str(root)!r} is corrupt or incomplete ({exc}); {rebuild_hint(root)}") from exc
            for seg, meta in zip(segments, manifest.segments, strict=True):
                if seg.rows != meta["rows"] or seg.vectors.shape[1] != manifest.dimension:
                    raise IndexLoadError(
                        f"index {str(root)!r} is inconsistent (segment {seg.name} has {seg.rows} rows of dimension "
                        f"{seg.vectors.shape[1]}, the manifest says {meta['rows']} x {manifest.dimension}); {rebuild_hint(root)}"
                    )
            return cls(manifest, segments, root)
        raise AssertionError("unreachable")

    def __len__(self) -> int:
        return self._live_count

    def manifest(self) -> dict:
        """The manifest as written to ``manifest.json``."""
        return self.manifest_data.to_json()

    # ---------------------------------------------------------------- rows and metadata

    def _locate(self, row: int) -> tuple[int, int]:
        s = int(np.searchsorted(self.offsets, row, side="right")) - 1
        if not 0 <= s < len(self.segments):
            raise IndexError(f"row {row} is outside the index")
        return s, int(row - self.offsets[s])

    def live_rows(self) -> np.ndarray:
        """Every live row number, ascending."""
        parts = [
            self.offsets[s] + (np.arange(seg.rows) if m is None else np.flatnonzero(m))
            for s, (seg, m) in enumerate(zip(self.segments, self.live, strict=True))
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def chunk(self, row: int) -> ChunkRecord:
        """The chunk at ``row``."""
        s, local = self._locate(row)
        found = self.segments[s].query("SELECT chunk_id, doc_id, start, end FROM chunks WHERE row = ?", (local,))
        if not found:
            raise IndexError(f"row {row} has no chunk")
        chunk_id, doc_id, start, end = found[0]
        return ChunkRecord(chunk_id, doc_id, int(start), int(end))

    @property
    def chunks(self) -> list[ChunkRecord]:
        """Every live chunk in row order. Reads all chunk metadata: for tools and tests, not queries."""
        out: list[ChunkRecord] = []
        for seg, m in zip(self.segments, self.live, strict=True):
            for row, chunk_id, doc_id, start, end in seg.query("SELECT row, chunk_id, doc_id, start, end FROM chunks ORDER BY row"):
                if m is None or m[row]:
                    out.append(ChunkRecord(chunk_id, doc_id, int(start), int(end)))
        return out

    def document(self, doc_id: str) -> DocumentRecord:
        """The document ``doc_id`` with its text (a few recently used ones are cached).

        Raises:
            KeyError: no such live document.
        """
        with self._cache_lock:
            cached = self._docs_cache.get(doc_id)
            if cached is not None:
                self._docs_cache.move_to_end(doc_id)
                return cached
        entry = self.entries[doc_id]
        seg = self.segments[[s.name for s in self.segments].index(entry.segment)]
        found = seg.query("SELECT doc_id, source, sha256, text, pages FROM documents WHERE doc_id = ?", (doc_id,))
        if not found:
            raise KeyError(doc_id)
        d, source, sha, text, pages = found[0]
        record = DocumentRecord(d, source, sha, text, json.loads(pages) if pages is not None else None)
        with self._cache_lock:
            self._docs_cache[doc_id] = record
            while len(self._docs_cache) > 64:
                self._docs_cache.popitem(last=False)
        return record

    def chunk_text(self, row: int) -> str:
        """Text of the chunk at ``row``."""
        rec = self.chunk(row)
        return self.document(rec.doc_id).text[rec.start : rec.end]

    def vectors(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """The stored vectors of ``rows`` (default: every live row, in row order)."""
        rows = self.live_rows() if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.zeros((len(rows), self.dimension), dtype=np.float32)
        if not len(rows):
            return out
        if rows.min() < 0 or rows.max() >= self.offsets[-1]:
            raise IndexError("a row is outside the index")
        seg_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for s in np.unique(seg_of):  # one fancy-indexed read of the mapping per segment
            mine = seg_of == s
            out[mine] = self.segments[s].vectors[rows[mine] - self.offsets[s]]
        return out

    # ---------------------------------------------------------------- dense search

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Top-``k`` live ``(row, cosine)`` pairs for each query vector, best first.

        Exact in small segments, IVF (``config.ANN_NPROBE`` lists) in large ones; the
        per-segment results are merged by score (ties: lower row first).
        """
        from qa import config

        if k < 1:
            raise ValueError(f"k={k} must be at least 1")
        queries = np.ascontiguousarray(np.atleast_2d(query_vectors), dtype=np.float32)
        if queries.shape[1] != self.dimension:
            raise ValueError(f"query dimension {queries.shape[1]} != index dimension {self.dimension}")
        found: list[list[tuple[float, int]]] = [[] for _ in range(len(queries))]
        for s, (seg, m) in enumerate(zip(self.segments, self.live, strict=True)):
            if not seg.rows or (m is not None and not m.any()):
                continue
            scores, rows = seg.search(queries, k, m, config.ANN_NPROBE, self.bitmaps[s])
            base = int(self.offsets[s])
            for q in range(len(queries)):
                found[q].extend((float(sc), base + int(r)) for sc, r in zip(scores[q], rows[q], strict=True) if r >= 0)
        return [[(r, sc) for sc, r in sorted(hits, key=lambda h: (-h[0], h[1]))[:k]] for hits in found]

    # ---------------------------------------------------------------- the Store interface

    def counts(self) -> tuple[int, int]:
        """``(documents, chunks)`` of this generation (live chunks only)."""
        return len(self.entries), self._live_count

    def check_encoder(self, name: str, dimension: int, variant: str | None = None) -> None:
        """Refuse an encoder of another variant than the one that embedded the documents (the
        rebuild message; ``variant`` ``None``: not checked). The model is the caller's choice
        (:func:`embeddings.encoders.encoder.get_encoder` of :attr:`embedding_model`); a query of another
        dimension is refused by the search."""
        # The user knows the index by its root (a loaded index's directory is its generation).
        check_variant(self.encoder_variant, variant, getattr(self, "root", None) or self.directory or "(in memory)")

    def hit(self, row: int, score: float, components: dict[str, float]) -> Hit:
        """The :class:`~embeddings.stores.base.Hit` of row ``row``."""
        rec = self.chunk(row)
        return Hit(self.document(rec.doc_id), rec, score, components, row)

    def search_dense(self, query_vector: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` nearest live chunks by cosine (:class:`~embeddings.stores.base.Store`)."""
        return [self.hit(r, s, {"dense": s}) for r, s in self.search(query_vector, k)[0]]

    def search_bm25(self, tokens: Sequence[str], k: int) -> list[Hit]:
        """The ``k`` best live chunks by BM25 (:class:`~embeddings.stores.base.Store`)."""
        return [self.hit(r, s, {"bm25": s}) for r, s in self.bm25_search(tokens, k)]

    def search_hybrid(
        self, query_vector: np.ndarray, tokens: Sequence[str], k: int, *, depth: int = 50, rrf_k: int = 60
    ) -> list[Hit]:
        """Reciprocal rank fusion of the top ``max(k, depth)`` dense and BM25 rows: each row
        scores ``sum(1 / (rrf_k + rank))`` over the rankings it is in (ranks from 1); ties go
        to the better dense rank, then the lower row. ``components`` add the dense cosine and
        the BM25 score of every returned row, also where it was in one ranking only."""
        depth = max(k, depth)
        query = np.asarray(query_vector, dtype=np.float32).ravel()
        dense = self.search(query, depth)[0]
        sparse = self.bm25_search(tokens, depth)
        fused: dict[int, float] = {}
        for ranking in (dense, sparse):
            for rank, (row, _) in enumerate(ranking, 1):
                fused[row] = fused.get(row, 0.0) + 1.0 / (rrf_k + rank)
        dense_rank = {row: i for i, (row, _) in enumerate(dense)}
        order = sorted(fused, key=lambda r: (-fused[r], dense_rank.get(r, len(dense)), r))[:k]
        cos = {row: s for row, s in dense}
        missing = [r for r in order if r not in cos]
        if missing:  # vectors are L2-normalised: cosine = dot product
            cos.update(zip(missing, (float(x) for x in self.vectors(missing) @ query), strict=True))
        bm25 = {row: s for row, s in sparse}
        missing = [r for r in order if r not in bm25]
        bm25.update(zip(missing, (float(x) for x in self.bm25_scores(tokens, missing)), strict=True))
        return [self.hit(r, fused[r], {"rrf": fused[r], "dense": cos[r], "bm25": bm25[r]}) for r in order]

    # ---------------------------------------------------------------- BM25

    def _bm25_terms(self, tokens: Sequence[str]) -> list[tuple[float, list[tuple[int, np.ndarray, np.ndarray]]]]:
        """Per distinct query term: ``idf * multiplicity`` and its live postings per segment.

        ``df`` counts live rows of every segment, so scores equal those of a from-scratch
        BM25 over the live chunks. A term repeated in the question counts once per repeat,
        as in bm25s.
        """
        n = self._live_count
        out = []
        for term, times in Counter(tokens).items():
            per_seg = []
            df = 0
            for s, (seg, m) in enumerate(zip(self.segments, self.live, strict=True)):
                rows, tf = seg.postings(term)
                if len(rows) and m is not None:
                    keep = m[rows]
                    rows, tf = rows[keep], tf[keep]
                if len(rows):
                    per_seg.append((s, rows, tf))
                    df += len(rows)
            if df:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                out.append((idf * times, per_seg))
        return out

    def _tf_part(self, s: int, rows: np.ndarray, tf: np.ndarray) -> np.ndarray:
        dl = np.asarray(self.segments[s].doclen[rows], dtype=np.float32)
        return tf / (BM25_K1 * ((1 - BM25_B) + BM25_B * dl / self.avgdl) + tf)

    def bm25_search(self, tokens: Sequence[str], k: int) -> list[tuple[int, float]]:
        """The ``k`` best live ``(row, BM25 score)`` pairs for query ``tokens`` (positive scores only;
        ties: lower row first), scored from the postings of the query terms alone."""
        acc: dict[int, np.ndarray] = {}
        for weight, per_seg in self._bm25_terms(tokens):
            for s, rows, tf in per_seg:
                if s not in acc:
                    acc[s] = np.zeros(self.segments[s].rows, dtype=np.float32)
                acc[s][rows] += weight * self._tf_part(s, rows, tf)
        cand_rows: list[np.ndarray] = []
        cand_scores: list[np.ndarray] = []
        for s, scores in acc.items():
            hit = np.flatnonzero(scores > 0)
            if len(hit) > k:
                hit = hit[np.argpartition(-scores[hit], k - 1)[:k]]
            cand_rows.append(hit + self.offsets[s])
            cand_scores.append(scores[hit])
        if not cand_rows:
            return []
        rows = np.concatenate(cand_rows)
        scores = np.concatenate(cand_scores)
        order = np.lexsort((rows, -scores))[:k]
        return [(int(rows[i]), float(scores[i])) for i in order]

    def bm25_scores(self, tokens: Sequence[str], rows: Sequence[int]) -> np.ndarray:
        """BM25 scores of the given ``rows`` for query ``tokens`` (0 where no term occurs)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(rows), dtype=np.float32)
        if not len(rows):
            return out
        seg_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for weight, per_seg in self._bm25_terms(tokens):
            for s, prow, tf in per_seg:
                mine = np.flatnonzero(seg_of == s)
                if not len(mine):
                    continue
                local = rows[mine] - self.offsets[s]
                pos = np.minimum(np.searchsorted(prow, local), len(prow) - 1)
                match = prow[pos] == local
                if match.any():
                    out[mine[match]] += weight * self._tf_part(s, prow[pos[match]], tf[pos[match]])
        return out


# --------------------------------------------------------------------------- writing


def _new_name(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


def _write_new_segment(
    root: Path, records: list[DocumentRecord], chunks: list[ChunkRecord], vectors: np.ndarray, postings: Postings
) -> tuple[str, dict]:
    """Write a segment under a temporary name, then rename it into place (not yet referenced)."""
    from qa import config

    name = _new_name("seg")
    tmp = root / f".tmp-{name}"
    try:
        meta = write_segment(tmp, records, chunks, vectors, postings, ann_min_rows=config.ANN_MIN_ROWS, fsync=_fsync)
        os.rename(tmp, root / name)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return name, meta


def _segment_from_documents(root: Path, add: Sequence[NewDocument], dimension: int) -> tuple[str, dict, dict[str, DocEntry]]:
    records, chunks, vectors, tokens = [], [], [], []
    entries: dict[str, DocEntry] = {}
    row = 0
    name_placeholder = ""
    for doc in add:
        if len(doc.chunks) != len(doc.vectors) or len(doc.chunks) != len(doc.tokens):
            raise ValueError(f"document {doc.record.doc_id!r}: chunks, vectors and tokens differ in length")
        records.append(doc.record)
        chunks.extend(doc.chunks)
        vectors.append(np.asarray(doc.vectors, dtype=np.float32).reshape(len(doc.chunks), dimension))
        tokens.extend(doc.tokens)
        r = doc.record
        entries[r.doc_id] = DocEntry(
            r.source, r.sha256, text_sha256(r.text), len(r.text), len(doc.chunks), name_placeholder, row,
            [int(p) for p in r.pages] if r.pages is not None else None, r.origin, r.original,
        )
        row += len(doc.chunks)
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, dimension), np.float32)
    name, meta = _write_new_segment(root, records, chunks, stacked, Postings.from_tokens(tokens))
    return name, meta, {d: _with_segment(e, name, e.row) for d, e in entries.items()}


def _with_segment(e: DocEntry, segment: str, row: int) -> DocEntry:
    return dataclasses.replace(e, segment=segment, row=row)


def _merge(root: Path, manifest: Manifest, names: list[str]) -> tuple[str, dict, dict[str, DocEntry]]:
    """Merge the live rows of segments ``names`` into one new segment (tombstones dropped).

    Vectors, chunk rows, documents and postings are copied, not recomputed: nothing is
    re-tokenised or re-embedded. Returns the new segment and the moved documents' entries.
    """
    segments = [Segment(root / n) for n in names]
    try:
        vec_parts: list[np.ndarray] = []
        chunks: list[ChunkRecord] = []
        records: list[DocumentRecord] = []
        entries: dict[str, DocEntry] = {}
        term_ids: dict[str, int] = {}
        tid_parts, row_parts, tf_parts, len_parts = [], [], [], []
        base = 0
        for seg in segments:
            mine = sorted(((e.row, d) for d, e in manifest.documents.items() if e.segment == seg.name))
            live = np.zeros(seg.rows, dtype=bool)
            for row, d in mine:
                live[row : row + manifest.documents[d].chunks] = True
            new_row = np.cumsum(live) - 1 + base
            for row, d in mine:
                entries[d] = _with_segment(manifest.documents[d], "", int(new_row[row]))
            vec_parts.append(np.asarray(seg.vectors[live], dtype=np.float32))
            for row, chunk_id, doc_id, start, end in seg.query("SELECT row, chunk_id, doc_id, start, end FROM chunks ORDER BY row"):
                if live[row]:
                    chunks.append(ChunkRecord(chunk_id, doc_id, int(start), int(end)))
            wanted = {d for _, d in mine}
            for d, source, sha, text, pages in seg.query("SELECT doc_id, source, sha256, text, pages FROM documents"):
                if d in wanted:
                    records.append(DocumentRecord(d, source, sha, text, json.loads(pages) if pages is not None else None))
            terms = seg.all_terms()
            gid = np.asarray([term_ids.setdefault(t, len(term_ids)) for t in terms], dtype=np.int64)
            ptr = np.asarray(seg.term_ptr)
            post_rows = np.asarray(seg.post_rows)
            keep = live[post_rows]
            tid_parts.append(np.repeat(gid, np.diff(ptr))[keep])
            row_parts.append(new_row[post_rows[keep]])
            tf_parts.append(np.asarray(seg.post_tf)[keep])
            len_parts.append(np.asarray(seg.doclen)[live])
            base += int(live.sum())
        tids = np.concatenate(tid_parts) if tid_parts else np.zeros(0, np.int64)
        names_all = list(term_ids)
        used = np.bincount(tids, minlength=len(names_all)) > 0  # terms left only in dead rows go
        remap = np.cumsum(used) - 1
        postings = Postings.from_triplets(
            [t for t, u in zip(names_all, used, strict=True) if u],
            remap[tids],
            np.concatenate(row_parts).astype(np.int32) if row_parts else np.zeros(0, np.int32),
            np.concatenate(tf_parts) if tf_parts else np.zeros(0, np.float32),
            np.concatenate(len_parts) if len_parts else np.zeros(0, np.float32),
        )
        vectors = np.concatenate(vec_parts) if vec_parts else np.zeros((0, manifest.dimension), np.float32)
    finally:
        for seg in segments:
            seg.close()
    name, meta = _write_new_segment(root, records, chunks, vectors, postings)
    return name, meta, {d: _with_segment(e, name, e.row) for d, e in entries.items()}


def _replace_segments(manifest: Manifest, names: list[str], new: str, meta: dict, moved: dict[str, DocEntry]) -> None:
    """Put segment ``new`` where the first of ``names`` was, drop the others, move documents."""
    first = min(i for i, s in enumerate(manifest.segments) if s["name"] in names)
    kept = [s for s in manifest.segments if s["name"] not in names]
    position = sum(1 for s in manifest.segments[:first] if s["name"] not in names)
    kept.insert(position, {"name": new, "rows": meta["rows"], "ann": meta["ann"]})
    manifest.segments = kept
    manifest.documents.update(moved)


def _drop_empty_segments(manifest: Manifest) -> None:
    used = {e.segment for e in manifest.documents.values()}
    manifest.segments = [s for s in manifest.segments if s["name"] in used]


def _auto_merge(root: Path, manifest: Manifest) -> None:
    """Merge policy: above ``config.MAX_SEGMENTS`` segments, merge every exact-search (small) one.

    Only small segments are rewritten, so an update never copies a large (ANN) segment;
    their tombstones wait for ``--compact``.
    """
    from qa import config

    if len(manifest.segments) <= config.MAX_SEGMENTS:
        return
    small = [s["name"] for s in manifest.segments if not s.get("ann")]
    if len(small) < 2:
        return
    name, meta, moved = _merge(root, manifest, small)
    _replace_segments(manifest, small, name, meta, moved)


def commit(
    directory: str | os.PathLike[str],
    base: Manifest | None,
    *,
    embedding_model: str,
    dimension: int,
    chunking: dict[str, int],
    tokenizer: str,
    add: Sequence[NewDocument] = (),
    remove: Iterable[str] = (),
    merge: bool = True,
    encoder_variant: str | None = None,
) -> Manifest:
    """Write a new generation of ``directory``: ``base`` (``None``: an empty index) minus
    ``remove``, with ``add`` (replacing documents of the same id) in one new segment.

    The caller holds :func:`write_lock`. Returns the new generation's manifest.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(embedding_model, dimension, dict(chunking), tokenizer, encoder_variant=encoder_variant)
    if base is not None:
        manifest.segments = [dict(s) for s in base.segments]
        manifest.documents = dict(base.documents)
    for doc_id in remove:
        manifest.documents.pop(doc_id, None)
    if add:
        name, meta, entries = _segment_from_documents(root, add, dimension)
        manifest.documents.update(entries)
        manifest.segments.append({"name": name, "rows": meta["rows"], "ann": meta["ann"]})
    _drop_empty_segments(manifest)
    if merge:
        _auto_merge(root, manifest)
    return _publish(root, manifest)


def compact(directory: str | os.PathLike[str]) -> Manifest | None:
    """Merge every segment of the index at ``directory`` into one, dropping all tombstones.

    The caller holds :func:`write_lock`. Returns the new generation's manifest, or ``None``
    when the index already is one segment without tombstones.
    """
    root = Path(directory)
    base = read_manifest(root)
    manifest = Manifest(
        base.embedding_model, base.dimension, base.chunking, base.tokenizer, [dict(s) for s in base.segments], dict(base.documents),
        encoder_variant=base.encoder_variant,
    )
    _drop_empty_segments(manifest)
    names = [s["name"] for s in manifest.segments]
    dead = sum(int(s["rows"]) for s in manifest.segments) - manifest.num_chunks
    if len(names) <= 1 and not dead:
        tidy(root)  # nothing to merge, but a killed writer may have left debris
        return None
    if names:
        name, meta, moved = _merge(root, manifest, names)
        _replace_segments(manifest, names, name, meta, moved)
    return _publish(root, manifest)


def _publish(root: Path, manifest: Manifest) -> Manifest:
    """Write ``manifest`` as a new generation and switch ``CURRENT`` to it; then collect garbage."""
    try:
        previous: Manifest | None = read_manifest(root)
    except IndexLoadError:
        previous = None  # none yet, or unreadable: nothing of it is worth keeping
    name = _new_name("gen")
    tmp = root / f".tmp-{name}"
    tmp.mkdir()
    try:
        (tmp / _MANIFEST).write_text(json.dumps(manifest.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")
        _fsync(tmp / _MANIFEST)
        os.rename(tmp, root / name)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer = root / f".{_CURRENT}.{uuid.uuid4().hex[:8]}"
    pointer.write_text(name + "\n", encoding="utf-8")
    _fsync(pointer)
    os.replace(pointer, root / _CURRENT)  # the commit point
    _fsync_dir(root)
    keep_gen = {name}
    keep_seg = {s["name"] for s in manifest.segments}
    keep_orig = _originals_of(manifest)
    if previous is not None and previous.generation is not None:
        # A reader may have just read CURRENT and be opening the previous generation.
        keep_gen.add(previous.generation.name)
        keep_seg |= {s["name"] for s in previous.segments}
    collect_garbage(root, keep_generations=keep_gen, keep_segments=keep_seg, keep_originals=keep_orig)
    manifest.generation = root / name
    return manifest


def tidy(directory: str | os.PathLike[str]) -> None:
    """Collect garbage when a writer has nothing to commit (call under the lock): keep the live
    generation and the newest other one (a reader may still be opening it) with their segments."""
    root = Path(directory)
    try:
        current = read_manifest(root)
    except IndexLoadError:
        return  # nothing trustworthy to keep by: leave the directory to the next commit
    assert current.generation is not None
    others = sorted(
        (p for p in root.glob("gen-*") if p.is_dir() and _OWN_FOLDER.fullmatch(p.name) and p.name != current.generation.name),
        key=lambda p: p.stat().st_mtime,
    )
    keep_gen = {current.generation.name}
    keep_seg = {s["name"] for s in current.segments}
    if others:
        keep_gen.add(others[-1].name)
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            keep_seg |= {s["name"] for s in json.loads((others[-1] / _MANIFEST).read_text(encoding="utf-8"))["segments"]}
    collect_garbage(root, keep_generations=keep_gen, keep_segments=keep_seg, keep_originals=_originals_of(current))


#: Folder of an index that keeps the original bytes of added documents.
ORIGINALS = "originals"


def _originals_of(manifest: Manifest) -> set[str]:
    return {e.original for e in manifest.documents.values() if e.original}


def keep_original(directory: str | os.PathLike[str], data: bytes, suffix: str) -> str:
    """Store an added document's bytes under ``originals/`` (content-addressed, written to a
    temporary name, synced, then renamed); returns the file name for its record.

    Call under :func:`write_lock` and commit a manifest that names it: an original that no
    committed manifest names is removed by the next writer, so a writer killed before its
    commit leaves neither a document nor (after that) an original.
    """
    folder = Path(directory) / ORIGINALS
    folder.mkdir(parents=True, exist_ok=True)
    clean = suffix.lower() if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix.lower()) else ""
    name = hashlib.sha256(data).hexdigest() + clean
    target = folder / name
    if not target.is_file():
        tmp = folder / f".tmp-{uuid.uuid4().hex[:8]}-{name}"
        tmp.write_bytes(data)
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync_dir(folder)
    return name


def added_entries(directory: str | os.PathLike[str]) -> dict[str, DocEntry]:
    """The added documents (:attr:`DocEntry.added`) of the live generation, read from its
    manifest whatever its format version or model -- what a rebuild must bring back.
    Empty when there is no readable manifest."""
    try:
        raw = json.loads((current_generation(Path(directory)) / _MANIFEST).read_text(encoding="utf-8"))
        rows = raw["documents"]
    except (IndexLoadError, OSError, ValueError, KeyError, TypeError):
        # A committed index whose manifest is damaged: which document each kept original was is
        # lost with it, the bytes are not -- bring them back under ids of their own rather than
        # let the rebuild's garbage collection delete them. (Without a commit, originals are
        # the debris of a writer killed before it, collected as such.)
        return _recovered_originals(Path(directory)) if has_index(directory) else {}
    out: dict[str, DocEntry] = {}
    for doc_id, row in rows.items() if isinstance(rows, dict) else ():
        if not isinstance(row, dict):
            continue
        source, origin, original = str(row.get("source", "")), row.get("origin", "folder"), row.get("original")
        entry = DocEntry(source, str(row.get("sha256", "")), "", 0, 0, "", 0, None, str(origin), original if isinstance(original, str) else None)
        if entry.added:
            out[str(doc_id)] = entry
    return out


def _recovered_originals(root: Path) -> dict[str, DocEntry]:
    """Every kept original as an added document ``recovered-<sha256 prefix><suffix>`` (see :func:`added_entries`)."""
    folder = root / ORIGINALS
    out: dict[str, DocEntry] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        if path.is_file() and not path.name.startswith("."):
            stem, dot, suffix = path.name.partition(".")
            doc_id = f"recovered-{stem[:12]}{dot}{suffix}"
            out[doc_id] = DocEntry(f"upload:{doc_id}", stem, "", 0, 0, "", 0, None, "added", path.name)
    return out


def read_original(directory: str | os.PathLike[str], name: str) -> bytes:
    """The kept bytes of an added document (``OSError`` if missing)."""
    if "/" in name or name.startswith("."):
        raise OSError(f"bad original name {name!r}")
    return (Path(directory) / ORIGINALS / name).read_bytes()


#: The names this module gives generations and segments (:func:`_new_name`), and their
#: temporary names while written: the only folders of an index directory it ever deletes, so a
#: folder of the user's that merely starts with "gen-" or "seg-" is never touched.
_OWN_FOLDER = re.compile(r"(?:\.tmp-)?(?:gen|seg)-[0-9]{8}T[0-9]{6}-[0-9a-f]{8}")
#: A commit's pointer file before it replaces ``CURRENT``.
_OWN_POINTER = re.compile(rf"\.{_CURRENT}\.[0-9a-f]{{8}}")


def collect_garbage(root: Path, *, keep_generations: set[str], keep_segments: set[str], keep_originals: set[str] | None = None) -> None:
    """Remove generations and segments not kept, originals no kept manifest names (when
    ``keep_originals`` is given), and debris of interrupted writers (call under the lock).
    Only names this module writes are candidates (:data:`_OWN_FOLDER`)."""
    if keep_originals is not None and (root / ORIGINALS).is_dir():
        for child in (root / ORIGINALS).iterdir():
            if child.name not in keep_originals:
                child.unlink(missing_ok=True)
    for child in root.iterdir():
        n = child.name
        if child.is_dir() and not child.is_symlink() and _OWN_FOLDER.fullmatch(n) and n not in keep_generations | keep_segments:
            shutil.rmtree(child, ignore_errors=True)
        elif child.is_file() and _OWN_POINTER.fullmatch(n):
            child.unlink(missing_ok=True)


#: What a file system or a desktop puts into any folder (a fresh volume's ``lost+found``,
#: Finder's ``.DS_Store``, Explorer's ``Thumbs.db``): no sign that the folder is someone's.
_SYSTEM_ENTRIES = frozenset({"lost+found", ".DS_Store", "Thumbs.db", "desktop.ini", ".snapshot", ".snapshots"})


def foreign_entries(root: Path, *, allowed: Iterable[str] = ()) -> list[str]:
    """Names in the folder ``root`` that an index never writes (sorted), system entries and
    ``allowed`` names aside: a folder holding any is someone's, not an index in the making."""
    own = {_CURRENT, _LOCK, ORIGINALS, *_SYSTEM_ENTRIES, *allowed}
    return sorted(c.name for c in root.iterdir() if c.name not in own and not _OWN_FOLDER.fullmatch(c.name) and not _OWN_POINTER.fullmatch(c.name))


def check_index_folder(directory: str | os.PathLike[str]) -> Path:
    """``directory`` as a folder an index may be written to, else ``ValueError`` saying why.

    Refused: an empty path (it would mean the current folder), a file, and a folder that holds
    no index but other things (a documents folder, a home folder): an index needs a folder of
    its own. A missing folder, an empty one, an index and a half-built index are fine."""
    if not str(directory).strip():
        raise ValueError("the index location is empty; give a folder for the index (or a postgresql:// URL)")
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise ValueError(f"index location {str(root)!r} is a file, not a folder; give a folder for the index")
    if root.is_dir() and not (root / _CURRENT).is_file():
        # The credentials file may be put inside the index folder (QA_AUTH_FILE) before the first build.
        from qa import config

        auth = Path(config.auth_file_for(root))
        allowed = [auth.name, f"{auth.name}.lock"] if auth.parent.resolve() == root.resolve() else []
        foreign = [n for n in foreign_entries(root, allowed=allowed) if not (allowed and n.startswith(f".{auth.name}."))]
        if foreign:
            shown = ", ".join(repr(n) for n in foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise ValueError(
                f"{str(root)!r} holds no index but other files ({shown}); an index needs a folder of its own: "
                f"give a new or empty folder, e.g. --index {root / 'qa-index'}"
            )
    return root


def current_generation(root: Path) -> Path:
    """The live generation directory of index ``root``."""
    try:
        name = (Path(root) / _CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IndexLoadError(
            f"{str(root)!r} holds no complete index (no {_CURRENT} file); "
            f"build one with: python -m qa index DOCS_DIR --index {root}"
        ) from None
    gen = Path(root) / name
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

    Raises:
        ValueError: ``directory`` cannot hold an index (:func:`check_index_folder`).
        IndexBusyError: another writer still holds the lock after ``wait_s`` seconds.
    """
    root = check_index_folder(directory)
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
                    raise IndexBusyError(
                        f"index {str(root)!r} is being updated by another process; "
                        "wait for it to finish (or pass a longer --wait) and try again"
                    ) from exc
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        _fsync(path)
