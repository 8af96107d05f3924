"""One immutable segment of a directory index (see :mod:`embeddings.stores.index` for the whole layout).

A segment holds the chunks of some documents, row-aligned::

    seg-<id>/
      segment.json      rows, dimension, whether an ANN index exists, sizes (written last)
      vectors.npy       float32 (rows, dimension), L2-normalised; memory-mapped, never loaded whole
      ann.faiss         FAISS IVF-Flat over the same rows (only when rows >= config.ANN_MIN_ROWS),
                        opened with its inverted lists memory-mapped
      meta.sqlite       tables ``documents`` (id, source, sha256, extracted text, pages) and
                        ``chunks`` (row, chunk id, document id, start, end); read on demand
      terms.bin         the segment's BM25 vocabulary: UTF-8 terms, sorted bytewise, concatenated
      term_off.npy      int64 (terms + 1): where term i lies in ``terms.bin`` (binary search)
      term_ptr.npy      int64 (terms + 1): term i's postings are ``post_*[term_ptr[i]:term_ptr[i+1]]``
      post_rows.npy     int32: rows containing the term, ascending
      post_tf.npy       float32: the term's frequency in that row
      doclen.npy        float32 (rows): tokens per row (at least 1, as :mod:`qa.retrieval.bm25` counts them)

Postings hold raw term frequencies, not scores: BM25's idf and average length depend on
every live chunk of every segment, so they are combined at query time
(:meth:`embeddings.stores.index.VectorIndex.bm25_search`); a new segment never forces old ones to
be rewritten. Nothing is pickled; every array is ``.npy`` (``allow_pickle=False``).

Whether a row is live is not this module's business: the generation manifest says which
documents (row ranges) of each segment are live, and readers pass a boolean mask.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

SEGMENT_META = "segment.json"
_VECTORS = "vectors.npy"
_ANN = "ann.faiss"
_DB = "meta.sqlite"
_POSTING_FILES = ("term_off.npy", "term_ptr.npy", "post_rows.npy", "post_tf.npy", "doclen.npy")


@dataclass
class Postings:
    """BM25 term frequencies of a segment's rows (see the module docstring)."""

    terms: list[str]  # sorted by UTF-8 bytes
    term_ptr: np.ndarray  # int64 (len(terms) + 1)
    rows: np.ndarray  # int32
    tf: np.ndarray  # float32
    doclen: np.ndarray  # float32 (segment rows)

    @classmethod
    def from_tokens(cls, tokens: Sequence[Sequence[str]]) -> Postings:
        """Postings of rows whose tokens (in row order) are ``tokens``."""
        ids: dict[str, int] = {}
        # Typed arrays, not lists: 8 bytes a posting instead of ~36 (a million chunks have ~13M).
        term_ids, rows, tfs = array("q"), array("q"), array("f")
        for row, toks in enumerate(tokens):
            for term, tf in Counter(toks).items():
                term_ids.append(ids.setdefault(term, len(ids)))
                rows.append(row)
                tfs.append(tf)
        # qa.retrieval.bm25 (bm25s) indexes a chunk without tokens as one empty token: length 1.
        doclen = np.asarray([max(1, len(t)) for t in tokens], dtype=np.float32)
        return cls.from_triplets(
            list(ids), np.frombuffer(term_ids, np.int64), np.frombuffer(rows, np.int64).astype(np.int32), np.frombuffer(tfs, np.float32), doclen
        )

    @classmethod
    def from_triplets(
        cls, names: list[str], term_ids: np.ndarray, rows: np.ndarray, tf: np.ndarray, doclen: np.ndarray
    ) -> Postings:
        """Postings from parallel ``(term id into names, row, tf)`` arrays, in any order."""
        order_terms = sorted(range(len(names)), key=lambda i: names[i].encode("utf-8"))
        rank = np.empty(len(names), dtype=np.int64)
        rank[order_terms] = np.arange(len(names))
        sorted_ids = rank[term_ids] if len(term_ids) else np.zeros(0, np.int64)
        order = np.lexsort((rows, sorted_ids))  # by term, then row
        counts = np.bincount(sorted_ids, minlength=len(names))
        ptr = np.zeros(len(names) + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        return cls([names[i] for i in order_terms], ptr, rows[order].astype(np.int32), tf[order].astype(np.float32), doclen)


def write_segment(
    directory: Path,
    documents: Sequence[object],
    chunks: Sequence[object],
    vectors: np.ndarray,
    postings: Postings,
    *,
    ann_min_rows: int,
    fsync: object,
) -> dict:
    """Write a complete segment into the (new, empty) ``directory``; returns its ``segment.json``.

    ``documents`` are :class:`embeddings.stores.index.DocumentRecord`, ``chunks`` the
    :class:`embeddings.stores.index.ChunkRecord` of every row, in row order. ``fsync(path)`` is
    called for every file (the caller renames the directory into place afterwards).
    """
    n, dim = vectors.shape
    if n != len(chunks) or len(postings.doclen) != n:
        raise ValueError(f"segment rows disagree: {n} vectors, {len(chunks)} chunks, {len(postings.doclen)} lengths")
    directory.mkdir(parents=True)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    np.save(directory / _VECTORS, vectors, allow_pickle=False)
    ann = None
    if n >= ann_min_rows:
        ann = build_ivf(vectors)
        faiss.write_index(ann, str(directory / _ANN))
    db = sqlite3.connect(directory / _DB)
    try:
        # No journal: a crash leaves a half-written temporary segment that nobody references.
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE documents (doc_id TEXT PRIMARY KEY, source TEXT, sha256 TEXT, text TEXT, pages TEXT)")
        db.execute("CREATE TABLE chunks (row INTEGER PRIMARY KEY, chunk_id TEXT, doc_id TEXT, start INTEGER, end INTEGER)")
        db.executemany(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?)",
            (
                (d.doc_id, d.source, d.sha256, d.text, None if d.pages is None else json.dumps([int(p) for p in d.pages]))  # type: ignore[attr-defined]
                for d in documents
            ),
        )
        db.executemany(
            "INSERT INTO chunks VALUES (?, ?, ?, ?, ?)",
            ((row, c.chunk_id, c.doc_id, int(c.start), int(c.end)) for row, c in enumerate(chunks)),  # type: ignore[attr-defined]
        )
        db.commit()
    finally:
        db.close()
    encoded = [t.encode("utf-8") for t in postings.terms]
    (directory / "terms.bin").write_bytes(b"".join(encoded))
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    np.save(directory / "term_off.npy", offsets, allow_pickle=False)
    np.save(directory / "term_ptr.npy", postings.term_ptr.astype(np.int64), allow_pickle=False)
    np.save(directory / "post_rows.npy", postings.rows.astype(np.int32), allow_pickle=False)
    np.save(directory / "post_tf.npy", postings.tf.astype(np.float32), allow_pickle=False)
    np.save(directory / "doclen.npy", postings.doclen.astype(np.float32), allow_pickle=False)
    meta = {"rows": int(n), "dimension": int(dim), "ann": "ivf-flat" if ann is not None else None, "terms": len(encoded)}
    if ann is not None:
        meta["nlist"] = int(ann.nlist)
    (directory / SEGMENT_META).write_text(json.dumps(meta), encoding="utf-8")
    for path in directory.iterdir():
        fsync(path)  # type: ignore[operator]
    return meta


def build_ivf(vectors: np.ndarray) -> faiss.Index:
    """An IVF-Flat inner-product index over ``vectors`` (``sqrt(rows)`` lists, k-means on a sample).

    IVF rather than HNSW: on two cores it builds several times faster, and its recall is
    tuned by one query-time knob (``nprobe``). The sample (40 points per list, 10
    iterations) keeps training to seconds even at a million rows.
    """
    from qa import config

    n, dim = vectors.shape
    nlist = max(1, int(np.sqrt(n) * config.ANN_LISTS_PER_SQRT))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10
    index.cp.max_points_per_centroid = 40
    rng = np.random.default_rng(0)  # deterministic: the same rows give the same index
    sample = vectors[np.sort(rng.choice(n, min(n, 40 * nlist), replace=False))]
    index.train(np.ascontiguousarray(sample))
    index.add(vectors)
    return index


#: Held while a ``.npy`` header is parsed. NumPy parses it with ``ast.literal_eval``, and
#: CPython 3.11 (seen with 3.11.7) can fail concurrent ``compile()`` calls with "SystemError: AST
#: constructor recursion depth mismatch": a chat or API server loading a new generation in
#: several threads at once answered HTTP 500 (qa bench api, 50 clients while an editor uploads).
_NPY_LOCK = threading.Lock()


def load_npy(path: Path) -> np.ndarray:
    """A ``.npy`` file memory-mapped read-only (no pickle), its header parsed under :data:`_NPY_LOCK`."""
    with _NPY_LOCK:
        return np.load(path, mmap_mode="r", allow_pickle=False)


class Segment:
    """A segment opened for reading: vectors and postings memory-mapped, SQLite open.

    Every file is opened here, at load: a writer may delete the segment's directory once
    no live generation references it, and open files (and mappings) stay readable.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = directory.name
        self.meta = json.loads((directory / SEGMENT_META).read_text(encoding="utf-8"))
        self.rows = int(self.meta["rows"])
        self.vectors = load_npy(directory / _VECTORS)
        if self.vectors.shape != (self.rows, int(self.meta["dimension"])):
            raise ValueError(f"segment {self.name}: vectors {self.vectors.shape} != {self.rows} rows")
        self.ann: faiss.Index | None = None
        if self.meta.get("ann"):
            # Memory-mapped inverted lists (OnDiskInvertedLists): loading costs no read of the
            # vectors, and only the lists a query probes are paged in.
            self.ann = faiss.read_index(str(directory / _ANN), faiss.IO_FLAG_MMAP)
            if self.ann.ntotal != self.rows:
                raise ValueError(f"segment {self.name}: ANN index has {self.ann.ntotal} vectors, not {self.rows}")
        arrays = {name: load_npy(directory / name) for name in _POSTING_FILES}
        self.term_off, self.term_ptr = arrays["term_off.npy"], arrays["term_ptr.npy"]
        self.post_rows, self.post_tf, self.doclen = arrays["post_rows.npy"], arrays["post_tf.npy"], arrays["doclen.npy"]
        self.terms_blob = np.memmap(directory / "terms.bin", dtype=np.uint8, mode="r") if self.term_off[-1] else np.zeros(0, np.uint8)
        self.num_terms = len(self.term_off) - 1
        if len(self.doclen) != self.rows or len(self.term_ptr) != self.num_terms + 1 or len(self.post_rows) != self.term_ptr[-1]:
            raise ValueError(f"segment {self.name}: postings are inconsistent")
        uri = (directory / _DB).resolve().as_uri() + "?mode=ro&immutable=1"
        try:
            self.db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        except sqlite3.Error as exc:  # a missing file fails here, not at the first query
            raise ValueError(f"segment {self.name}: {_DB} cannot be opened ({exc})") from exc
        self._db_lock = threading.Lock()  # one connection, shared by the threads of a server
        try:
            # Reads the B-tree's last page: a foreign or damaged file fails here, at load; a
            # truncated one is shorter than its header says.
            last = self.db.execute("SELECT max(row) FROM chunks").fetchone()[0]
            pages = self.db.execute("PRAGMA page_count").fetchone()[0] * self.db.execute("PRAGMA page_size").fetchone()[0]
            if (directory / _DB).stat().st_size < pages:
                raise sqlite3.DatabaseError(f"file is truncated ({(directory / _DB).stat().st_size} of {pages} bytes)")
        except sqlite3.Error as exc:
            self.db.close()
            raise ValueError(f"segment {self.name}: {_DB} is unreadable ({exc})") from exc
        if (last if last is not None else -1) != self.rows - 1:
            self.db.close()
            raise ValueError(f"segment {self.name}: {_DB} has {0 if last is None else last + 1} chunk rows, not {self.rows}")

    # ---------------------------------------------------------------- metadata

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of a read-only SQL query on ``meta.sqlite``."""
        with self._db_lock:
            return self.db.execute(sql, args).fetchall()

    def close(self) -> None:
        """Close the SQLite connection (mappings go with the object)."""
        with contextlib.suppress(sqlite3.Error):
            self.db.close()

    # ---------------------------------------------------------------- dense

    def search(
        self, queries: np.ndarray, k: int, live: np.ndarray | None, nprobe: int, bitmap: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(scores, rows)`` per query among live rows (``live`` None = all); rows -1 pad.

        Exact (a matrix product over the mapped vectors) without an ANN index; with one, IVF
        search restricted to live rows by a FAISS ``IDSelectorBitmap``, so tombstones never
        crowd live rows out of the top ``k``. ``bitmap`` is ``live`` packed little-endian
        (``np.packbits(live, bitorder="little")``), computed once per generation by the caller.
        """
        k = min(k, self.rows)
        if self.ann is not None:
            params = faiss.SearchParametersIVF(nprobe=nprobe)
            if live is not None:
                if bitmap is None:
                    bitmap = np.packbits(live, bitorder="little")
                params.sel = faiss.IDSelectorBitmap(self.rows, faiss.swig_ptr(bitmap))
            scores, rows = self.ann.search(queries, k, params=params)  # bitmap stays referenced until here
            return scores, rows
        sims = queries @ self.vectors.T  # (queries, rows); the mapping is paged in as needed
        if live is not None:
            sims[:, ~live] = -np.inf
        if k < self.rows:
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        else:
            part = np.tile(np.arange(self.rows), (len(queries), 1))
        top = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        rows = np.take_along_axis(part, order, axis=1)
        scores = np.take_along_axis(top, order, axis=1)
        rows = np.where(np.isfinite(scores), rows, -1)
        return scores.astype(np.float32), rows.astype(np.int64)

    # ---------------------------------------------------------------- BM25

    def term(self, i: int) -> bytes:
        """The UTF-8 bytes of term ``i``."""
        return self.terms_blob[self.term_off[i] : self.term_off[i + 1]].tobytes()

    def find_term(self, term: str) -> int:
        """Index of ``term`` in the sorted vocabulary, or -1 (binary search on the mapping)."""
        key = term.encode("utf-8")
        lo, hi = 0, self.num_terms
        while lo < hi:
            mid = (lo + hi) // 2
            if self.term(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < self.num_terms and self.term(lo) == key else -1

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, tf)`` of ``term`` in this segment (empty arrays when absent)."""
        i = self.find_term(term)
        if i < 0:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        lo, hi = int(self.term_ptr[i]), int(self.term_ptr[i + 1])
        return np.asarray(self.post_rows[lo:hi]), np.asarray(self.post_tf[lo:hi])

    def all_terms(self) -> list[str]:
        """The whole vocabulary, decoded (for merging segments)."""
        blob = self.terms_blob.tobytes()
        off = np.asarray(self.term_off)
        return [blob[off[i] : off[i + 1]].decode("utf-8") for i in range(self.num_terms)]

