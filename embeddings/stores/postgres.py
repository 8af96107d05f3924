"""The PostgreSQL + pgvector store: the same index as a directory, in database tables.

Schema (created and versioned by this module; ``qa_`` tables in the first existing schema of
the connection's ``search_path``, so ``?options=-csearch_path%3Dmy_schema,public`` in the URL
picks a schema, ``public`` lending pgvector's type; tables of these names that are not an
index's are never dropped)::

    qa_meta       key -> value: schema_version, embedding_model, encoder_variant (absent in
                  indexes written before it existed: read as fp32), dimension, chunking,
                  tokenizer, vector_type
    qa_documents  doc_id (primary key), source, sha256, text_sha256, text, pages int[]
    qa_chunks     id, doc_id -> qa_documents ON DELETE CASCADE, chunk_id, start_char, end_char,
                  text, ntokens, embedding vector(DIM) or halfvec(DIM) (HNSW, inner product),
                  tsv tsvector (GIN)
    qa_terms      term -> number of chunks containing it (BM25 document frequency)
    qa_stats      one row: number of chunks and of tokens (BM25 average length)

``text`` is the extracted text offsets refer to, exactly as in ``documents.jsonl``, so
passages, chunk ids and citations are identical whichever store answers. Vectors are
L2-normalised, so inner product = cosine, as with the directory store's FAISS index.

Keywords: ``tsv`` holds the project's own BM25 tokens (:func:`qa.retrieval.bm25.tokenize`: folded,
stopwords removed, light stemming, codes kept whole) with their positions, written as
``tsvector`` literals (no PostgreSQL dictionary in between), found through the GIN index.
Candidates are bounded: at most ``PG_KEYWORD_CANDIDATES_PER_TERM`` chunks per question
term, so a common word does not make the database score every row that has it. The
candidates are scored with the same BM25 as :mod:`qa.retrieval.bm25` (Lucene idf, ``k1`` 1.5, ``b``
0.75; term frequency from the positions, document frequency and lengths from
``qa_terms`` / ``qa_stats``, kept in the writers' transactions), so keyword scores and
rankings equal the directory store's wherever no term hits the bound.

Hybrid retrieval fuses the dense and keyword rankings by reciprocal rank
(``1 / (rrf_k + rank)``, ranks only, since BM25 is not on the cosine scale) in one SQL
statement, so it sees one snapshot: a concurrent writer's document is either
wholly there or not at all.

Writes: each new or changed document is replaced in one transaction (delete + insert), a
removal is one transaction, and a rebuild (or a change of embedding model) recreates the
tables and inserts everything in one transaction. Writers hold a session-level advisory
lock (:meth:`PostgresStore.writer`); a killed writer's session ends and releases it.
Readers share one connection pool per process (psycopg-pool); a connection broken by a
server restart is detected and replaced, so questions work again once the server is back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from embeddings.encoders.variants import check_variant
from embeddings.errors import IndexBusyError, IndexLoadError, StoreUnavailableError, rebuild_hint
from embeddings.stores.base import Applied, Embed, IndexMeta, Plan, StoredDocument, display_location, location_secrets, mask_secrets, scrub_secrets
from embeddings.stores.records import ChunkRecord, DocumentRecord, Hit, text_sha256

#: Seconds a direct-connection probe's answer is reused after a pool timeout.
_PROBE_TTL_S = 30.0

#: The URLs this store serves, found by :func:`embeddings.stores.open_store` without importing
#: this module (so a missing driver is reported with the extra that installs it).
URL_SCHEMES = ("postgresql", "postgres")
URL_STORE = "PostgresStore"
URL_EXTRA = "postgres"

logger = logging.getLogger(__name__)


class _ScrubPoolLog(logging.Filter):
    """Masks the stores' passwords in psycopg-pool's log lines, which repeat libpq's errors (an
    unencoded ``@`` in a password puts part of it into the host name libpq fails to resolve)."""

    secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg, record.args = mask_secrets(record.getMessage(), self.secrets), None
        return True


_POOL_LOG_FILTER = _ScrubPoolLog()
logging.getLogger("psycopg.pool").addFilter(_POOL_LOG_FILTER)

#: Bumped whenever the tables change; another version is refused with the rebuild command.
SCHEMA_VERSION = 2
#: The advisory lock writers hold (an arbitrary constant: "qa index" in ASCII).
LOCK_KEY = 0x7161_2069_6E64_6578

_META = "qa_meta"
_DOCUMENTS = "qa_documents"
_CHUNKS = "qa_chunks"
_TERMS = "qa_terms"
_STATS = "qa_stats"
#: The original bytes of added documents (qa add, uploads, the API). Not dropped by a rebuild
#: (created if missing, outside the schema version): a rebuild reads them again from here.
_ORIGINALS = "qa_originals"

#: BM25 parameters of :mod:`qa.retrieval.bm25` (bm25s' defaults, Lucene variant), so keyword scores match.
#: Column types for the vectors: 32-bit floats, or 16-bit (half the memory, HNSW included).
VECTOR_TYPES = ("vector", "halfvec")

BM25_K1 = 1.5
BM25_B = 0.75


_VECTOR_FORMATS: dict[int, str] = {}


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form of one float32 vector (9 significant digits: round-trips float32 exactly)."""
    values = np.asarray(vector, dtype=np.float32).ravel().tolist()
    fmt = _VECTOR_FORMATS.get(len(values))
    if fmt is None:
        fmt = _VECTOR_FORMATS[len(values)] = "[" + ",".join(["%.9g"] * len(values)) + "]"
    return fmt % tuple(values)


#: PostgreSQL refuses lexemes over 2047 bytes; such "words" (blobs, hashes) are not searchable anyway.
MAX_LEXEME_CHARS = 500


def _lexeme(token: str) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_literal(tokens: Sequence[str]) -> str:
    """A ``tsvector`` literal of ``tokens`` with their 1-based positions (taken verbatim)."""
    positions: dict[str, list[int]] = {}
    for n, token in enumerate(tokens, 1):
        if token and len(token) <= MAX_LEXEME_CHARS:
            positions.setdefault(token, []).append(min(n, 16383))
    return " ".join(f"{_lexeme(t)}:{','.join(map(str, p[:256]))}" for t, p in positions.items())


def query_terms(tokens: Iterable[str]) -> list[str]:
    """The distinct question tokens as single-lexeme ``tsquery`` literals."""
    return [_lexeme(t) for t in dict.fromkeys(t for t in tokens if t and len(t) <= MAX_LEXEME_CHARS)]


def _meta_error(where: str, problem: str) -> IndexLoadError:
    return IndexLoadError(f"PostgreSQL index {where!r} {problem}; {rebuild_hint(where)}")


def _schema_of(conn: psycopg.Connection) -> str:
    """The schema the connection creates tables in: the first of its ``search_path`` that exists."""
    schema = conn.execute("SELECT current_schema()").fetchone()[0]
    if schema is None:
        path = conn.execute("SHOW search_path").fetchone()[0]
        raise IndexLoadError(
            f"none of the schemas in the URL's search_path ({path}) exists; create one (CREATE SCHEMA my_schema) "
            "or name an existing one, e.g. ?options=-csearch_path%3Dmy_schema,public"
        )
    return schema


def _tables_in(conn: psycopg.Connection, schema: str, names: Sequence[str]) -> list[str]:
    """Which of the tables ``names`` exist in ``schema``, in that order."""
    found = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename = ANY(%s)", (schema, list(names)))}
    return [n for n in names if n in found]


def _meta_in(conn: psycopg.Connection, schema: str) -> dict[str, str] | None:
    """``schema``'s ``qa_meta`` rows, or ``None`` without one; ``IndexLoadError`` for a table of
    that name that is not an index's (other columns, or no schema version and model)."""
    # Its columns from the catalog (one query, on every question's refresh): a table without
    # key / value is told apart before reading it, so no savepoint is needed around the read.
    table = conn.execute(
        "SELECT array(SELECT attname::text FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
        (schema, _META),
    ).fetchone()
    if table is None:
        return None
    meta = None
    if {"key", "value"} <= set(table[0]):
        meta = dict(conn.execute(sql.SQL("SELECT key, value FROM {}").format(sql.Identifier(schema, _META))).fetchall())
    if meta is None or not {"schema_version", "embedding_model", "dimension"} <= set(meta):
        raise IndexLoadError(
            f"table {schema}.{_META} is not a qa index's (no key / value rows with its schema version and model); "
            "keep the index in a database or schema of its own (?options=-csearch_path%3Dmy_schema,public in the URL)"
        )
    return meta


class PostgresStore:
    """An index in a PostgreSQL database (see the module docstring), read through a shared pool.

    Construct through :func:`embeddings.stores.open_store` (one per URL per process).
    ``directory`` is the URL with its password masked (what listings and messages show).
    """

    def __init__(self, url: str, *, pool_size: int | None = None, timeout_s: float | None = None) -> None:
        from qa import config

        self.url = url
        _POOL_LOG_FILTER.secrets.update(location_secrets(url))
        self._probe_lock = threading.Lock()
        self._probe_result: tuple[float, str] = (-math.inf, "")
        self.directory = display_location(url)
        try:
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.Error:
            # libpq's message quotes the bad part, which may be the password: not repeated here.
            raise ValueError(
                f"cannot parse the PostgreSQL URL {self.directory!r}; write it as "
                "postgresql://USER:PASSWORD@HOST:PORT/DATABASE, with characters such as % @ : / ? # "
                "in the password percent-encoded (% as %25)"
            ) from None
        #: Where it is, for messages (:class:`~embeddings.stores.base.IndexStore`).
        self.location = self.directory
        self.pool_size = pool_size or config.PG_POOL_MAX_SIZE
        self.timeout_s = config.PG_POOL_TIMEOUT_S if timeout_s is None else timeout_s
        self.ef_search = config.PG_HNSW_EF_SEARCH
        self.embedding_model = ""
        self.encoder_variant: str | None = None
        self.dimension = 0
        self.chunking: dict[str, int] = {}
        self.tokenizer = ""
        self.vector_type = "vector"
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()
        self._patience = threading.local()  # see patiently()

    # ------------------------------------------------------------------ connections

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute(sql.SQL("SET hnsw.ef_search = {}").format(sql.Literal(int(self.ef_search))))
        # A rebuild holds the tables exclusively until it commits (minutes): a question waits
        # this long for them, then is told so, rather than hanging on to a pooled connection
        # until the pool runs dry. Nothing else a reader does waits on a lock.
        conn.execute(self._lock_timeout_sql())

    def _lock_timeout_sql(self) -> sql.Composed:
        return sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{max(1, int(self.timeout_s * 1000))}ms"))

    @contextlib.contextmanager
    def patiently(self) -> Iterator[None]:
        """This thread's pooled reads wait for a rebuild's locks as long as it takes: what a
        writer reads before it takes the writers' lock (it would wait for the rebuild anyway)."""
        before = getattr(self._patience, "on", False)
        self._patience.on = True
        try:
            yield
        finally:
            self._patience.on = before

    def _get_pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=max(1, self.pool_size),
                    timeout=self.timeout_s,
                    open=False,
                    check=ConnectionPool.check_connection,
                    configure=self._configure,
                    kwargs={"autocommit": True, "connect_timeout": max(1, int(self.timeout_s))},
                    name="qa-store",
                )
                self._pool.open(wait=False)
            return self._pool

    def unavailable(self, exc: BaseException) -> StoreUnavailableError:
        """The clear error for a server that cannot be reached. A pool that timed out says only
        that; one direct connection then says why (a wrong password, a missing database, a bad
        URL option are not an outage: the server's own words name them)."""
        why = self._probe() if isinstance(exc, PoolTimeout) else ""
        return StoreUnavailableError(
            f"cannot reach the PostgreSQL index at {self.directory!r} "
            f"({type(exc).__name__}: {scrub_secrets(str(exc).strip(), self.url) or 'timed out'}{why}); "
            "check that the server is running and reachable and that the URL's user, password and database are right. "
            "Questions work again as soon as it is back"
        )

    def _probe(self) -> str:
        """Why a direct connection fails (``"; connecting directly: ..."``), or that it succeeds
        (the pool was busy or still reconnecting). One probe per store at a time, its answer kept
        for :data:`_PROBE_TTL_S`, so an outage does not cost every request a connection attempt."""
        with self._probe_lock:
            made, why = self._probe_result
            if time.monotonic() - made < _PROBE_TTL_S:
                return why
            try:
                psycopg.connect(self.url, connect_timeout=max(1, min(3, int(self.timeout_s)))).close()
                why = "; the server answers a direct connection: the pool was busy or still reconnecting"
            except Exception as direct:  # noqa: BLE001 - whatever it is, its text is the reason
                why = f"; connecting directly: {scrub_secrets(' '.join(str(direct).split()), self.url)}"  # one line
            self._probe_result = (time.monotonic(), why)
            return why

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled autocommit connection; an unreachable server raises :class:`StoreUnavailableError`.
        Its statements wait at most the pool timeout for a table lock (see :meth:`_configure`),
        except inside :meth:`patiently`."""
        patient = getattr(self._patience, "on", False)
        try:
            with self._get_pool().connection() as conn:
                if not patient:
                    yield conn
                    return
                conn.execute("SET lock_timeout = 0")
                try:
                    yield conn
                finally:
                    with contextlib.suppress(psycopg.Error):  # a broken connection leaves the pool anyway
                        conn.execute(self._lock_timeout_sql())
        except PoolTimeout as exc:
            raise self.unavailable(exc) from exc
        except psycopg.errors.LockNotAvailable as exc:
            raise StoreUnavailableError(
                f"the PostgreSQL index at {self.directory!r} is being rebuilt by another process; "
                "questions work again as soon as it finishes: try again shortly"
            ) from exc
        except psycopg.OperationalError as exc:
            raise self.unavailable(exc) from exc

    def close(self) -> None:
        """Close the pool (connections are reopened on next use)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # ------------------------------------------------------------------ metadata

    @staticmethod
    def read_meta(conn: psycopg.Connection) -> dict[str, str] | None:
        """The ``qa_meta`` rows of the connection's schema (the first of its ``search_path`` that
        exists), or ``None`` when that schema holds no index yet. Another schema's index further
        along the path is not this one: taking it would update, or rebuild over, someone else's.

        Raises:
            IndexLoadError: no schema of the ``search_path`` exists; ``qa_meta`` there is a table
                of something else; or that schema holds no index but a schema further along the
                path does (named, with the URL that reaches it).
        """
        schema = _schema_of(conn)
        meta = _meta_in(conn, schema)
        if meta is None:
            other = conn.execute(
                "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)", (_META,)
            ).fetchone()
            if other is not None and other[0] != schema:
                raise IndexLoadError(
                    f"schema {schema!r}, the first of the search_path, holds no index, but schema {other[0]!r} further along it "
                    f"does: to use that one put it first (?options=-csearch_path%3D{other[0]} in the URL); to build a new "
                    f"index in {schema!r}, run python -m qa index DOCS_DIR --index URL --rebuild"
                )
        return meta

    def _apply_meta(self, meta: dict[str, str] | None, expect_model: str | None = None) -> None:
        """Take the stored metadata, refusing what this version cannot read. The BM25 tokenizer
        is recorded, not checked (as the directory store's manifest): questions over another
        tokenizer's keywords are refused by qa.pipeline.load_index, for both stores, while
        listing, removing and updating go on (an update re-indexes them, keeping every document)."""
        if meta is None:
            raise IndexLoadError(
                f"no index at {self.directory!r} (no qa tables in the first schema of its search_path); "
                f"build one with: python -m qa index DOCS_DIR --index {self.directory}"
            )
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise _meta_error(
                self.directory, f"has schema version {version!r} but this version of qa reads version {SCHEMA_VERSION}"
            )
        model = meta.get("embedding_model", "")
        if expect_model is not None and model != expect_model:
            raise IndexLoadError(
                f"PostgreSQL index {self.directory!r} was built with embedding model {model!r}, not {expect_model!r}; "
                f"{rebuild_hint(self.directory)} (or use the model it was built with)"
            )
        try:
            self.dimension = int(meta["dimension"])
            self.chunking = json.loads(meta.get("chunking", "{}"))
        except (KeyError, ValueError) as exc:
            raise _meta_error(self.directory, f"has unreadable metadata ({exc})") from exc
        self.embedding_model = model
        self.encoder_variant = meta.get("encoder_variant")
        self.tokenizer = meta["tokenizer"]
        vector_type = meta.get("vector_type", "vector")
        if vector_type not in VECTOR_TYPES:
            raise _meta_error(self.directory, f"stores vectors as {vector_type!r}, not one of {', '.join(VECTOR_TYPES)}")
        self.vector_type = vector_type

    def refresh(self, *, expect_model: str | None = None) -> PostgresStore:
        """Re-read the schema version, model and dimension; returns ``self``.

        Raises:
            IndexLoadError: no index yet, another schema version, another
                embedding model than ``expect_model``; the message says how to rebuild.
            StoreUnavailableError: the server cannot be reached.
        """
        with self.connection() as conn:
            meta = self.read_meta(conn)
        self._apply_meta(meta, expect_model)
        return self

    def has_index(self) -> bool:
        """True when the database holds this project's tables."""
        with self.connection() as conn:
            return self.read_meta(conn) is not None

    def check_encoder(self, name: str, dimension: int, variant: str | None = None) -> None:
        """Refuse an encoder other than the one the index was built with (the rebuild message):
        another model or dimension, or another encoder variant (``variant`` ``None``: not checked)."""
        if name != self.embedding_model or int(dimension) != self.dimension:
            raise IndexLoadError(
                f"PostgreSQL index {self.directory!r} was built with embedding model {self.embedding_model!r} "
                f"(dimension {self.dimension}), not {name!r} (dimension {dimension}); "
                f"{rebuild_hint(self.directory)} (or use the model it was built with)"
            )
        check_variant(self.encoder_variant, variant, self.directory)

    # ------------------------------------------------------------------ reading

    def counts(self) -> tuple[int, int]:
        """``(documents, chunks)`` stored now."""
        with self.connection() as conn:
            row = conn.execute(
                sql.SQL("SELECT (SELECT count(*) FROM {}), (SELECT count(*) FROM {})").format(
                    sql.Identifier(_DOCUMENTS), sql.Identifier(_CHUNKS)
                )
            ).fetchone()
        return int(row[0]), int(row[1])

    def document_states(self, conn: psycopg.Connection | None = None) -> dict[str, tuple[str, str, list[int] | None]]:
        """``doc_id -> (sha256, sha256 of the extracted text, pages)`` of every stored document."""
        query = sql.SQL("SELECT doc_id, sha256, text_sha256, pages FROM {}").format(sql.Identifier(_DOCUMENTS))
        if conn is not None:
            rows = conn.execute(query).fetchall()
        else:
            with self.connection() as pooled:
                rows = pooled.execute(query).fetchall()
        return {r[0]: (r[1], r[2], list(r[3]) if r[3] is not None else None) for r in rows}

    def added_sources(self, conn: psycopg.Connection | None = None) -> dict[str, str]:
        """``doc_id -> source`` of the added documents whose bytes are kept (empty without any)."""

        def run(c: psycopg.Connection) -> dict[str, str]:
            schema = _schema_of(c)
            if not _tables_in(c, schema, (_ORIGINALS,)):
                return {}
            return dict(c.execute(sql.SQL("SELECT doc_id, source FROM {}").format(sql.Identifier(schema, _ORIGINALS))).fetchall())

        if conn is not None:
            return run(conn)
        with self.connection() as pooled:
            return run(pooled)

    def sources(self, conn: psycopg.Connection) -> dict[str, str]:
        """``doc_id -> source`` of every stored document."""
        return dict(conn.execute(sql.SQL("SELECT doc_id, source FROM {}").format(sql.Identifier(_DOCUMENTS))).fetchall())

    def listing(self) -> list[tuple[str, str, int, int, int | None]]:
        """``(doc_id, source, characters, chunks, pages or None)`` per document, sorted by id."""
        with self.connection() as conn:
            rows = conn.execute(
                sql.SQL(
                    "SELECT d.doc_id, d.source, length(d.text), "
                    "(SELECT count(*) FROM {c} c WHERE c.doc_id = d.doc_id), cardinality(d.pages) "
                    "FROM {d} d ORDER BY d.doc_id COLLATE \"C\""
                ).format(c=sql.Identifier(_CHUNKS), d=sql.Identifier(_DOCUMENTS))
            ).fetchall()
        return [(r[0], r[1], int(r[2]), int(r[3]), None if r[4] is None else int(r[4])) for r in rows]

    def documents(self) -> list[StoredDocument]:
        """Every stored document, sorted by id (:class:`~embeddings.stores.base.IndexStore`)."""
        self.refresh()
        added = self.added_sources()
        return [
            StoredDocument(
                doc_id=d, source=source, chunks=n, characters=chars, pages=pages,
                added=d in added or source.startswith("upload:"),
            )
            for d, source, chars, n, pages in self.listing()
        ]

    def summary(self) -> dict | None:
        """``{"embedding_model", "documents", "num_chunks", "chunking"}``, or ``None`` without an index.
        Read by writers before they take the writers' lock (qa.ingest.indexing): it waits out a
        rebuild in progress, as the writer will, instead of failing after the pool timeout."""
        with self.patiently():
            if not self.has_index():
                return None
            self.refresh()
            documents, chunks = self.counts()
        return {"embedding_model": self.embedding_model, "documents": documents, "num_chunks": chunks, "chunking": dict(self.chunking)}

    def document(self, doc_id: str, conn: psycopg.Connection | None = None) -> DocumentRecord | None:
        """The stored document ``doc_id`` (text and pages), or ``None``; on ``conn`` (a writer's)
        when given, else on a pooled connection."""
        query = sql.SQL("SELECT doc_id, source, sha256, text, pages FROM {} WHERE doc_id = %s").format(sql.Identifier(_DOCUMENTS))
        if conn is not None:
            row = conn.execute(query, (doc_id,)).fetchone()
        else:
            with self.connection() as pooled:
                row = pooled.execute(query, (doc_id,)).fetchone()
        return None if row is None else DocumentRecord(row[0], row[1], row[2], row[3], list(row[4]) if row[4] is not None else None)

    # ------------------------------------------------------------------ retrieval

    _DENSE = """
        WITH dense AS (
            SELECT id, embedding <#> %(q)s::vector AS dist FROM qa_chunks ORDER BY dist LIMIT %(k)s
        )
        SELECT c.doc_id, c.chunk_id, c.start_char, c.end_char, d.source, d.sha256, d.text, d.pages,
               -dense.dist AS cos
        FROM dense JOIN qa_chunks c ON c.id = dense.id JOIN qa_documents d ON d.doc_id = c.doc_id
        ORDER BY dense.dist, c.id
    """

    # BM25 exactly as qa.retrieval.bm25 computes it (Lucene idf, k1 = 1.5, b = 0.75, document length in
    # tokens, a repeated question token counted again), over at most ``per_term`` candidate
    # chunks per question term; document frequencies and lengths come from qa_terms/qa_stats,
    # written in the same transactions as the chunks.
    _KEYWORD_CTE = """
        terms AS (
            SELECT q.term, q.lit, q.mult, s.df::float8 AS df
            FROM unnest(%(terms)s::text[], %(lits)s::text[], %(mults)s::int[]) AS q(term, lit, mult)
            JOIN qa_terms s ON s.term = q.term
            WHERE s.df > 0
        ),
        stats AS (
            SELECT chunks::float8 AS n, tokens::float8 / greatest(chunks, 1) AS avgdl FROM qa_stats
        ),
        cand AS (
            SELECT DISTINCT m.id FROM terms
            CROSS JOIN LATERAL (
                SELECT id FROM qa_chunks WHERE tsv @@ terms.lit::tsquery LIMIT %(per_term)s
            ) m
        ),
        scored AS (
            SELECT c.id,
                   sum(t.mult * ln(1 + (st.n - t.df + 0.5) / (t.df + 0.5))
                       * cardinality(u.positions)
                       / (%(k1)s * ((1 - %(b)s) + %(b)s * c.ntokens / st.avgdl) + cardinality(u.positions))) AS score
            FROM cand
            JOIN qa_chunks c ON c.id = cand.id
            CROSS JOIN LATERAL unnest(c.tsv) AS u(lexeme, positions, weights)
            JOIN terms t ON t.term = u.lexeme
            CROSS JOIN stats st
            GROUP BY c.id
        ),
        kw AS (
            SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS rnk FROM scored
            ORDER BY rnk LIMIT %(depth)s
        )
    """

    _KEYWORD = (
        "WITH "
        + _KEYWORD_CTE
        + """
        SELECT c.doc_id, c.chunk_id, c.start_char, c.end_char, d.source, d.sha256, d.text, d.pages, kw.score
        FROM kw JOIN qa_chunks c ON c.id = kw.id JOIN qa_documents d ON d.doc_id = c.doc_id
        WHERE kw.score > 0
        ORDER BY kw.rnk LIMIT %(k)s
    """
    )

    _HYBRID = (
        """
        WITH dense AS (
            SELECT id, row_number() OVER (ORDER BY dist, id) AS rnk FROM (
                SELECT id, embedding <#> %(q)s::vector AS dist FROM qa_chunks ORDER BY dist LIMIT %(depth)s
            ) nn
        ),
        """
        + _KEYWORD_CTE
        + """,
        fused AS (
            SELECT id, sum(1.0::float8 / (%(rrf_k)s + rnk)) AS rrf, min(rnk) FILTER (WHERE src = 1) AS drank
            FROM (SELECT id, rnk, 1 AS src FROM dense UNION ALL SELECT id, rnk, 2 AS src FROM kw WHERE score > 0) u
            GROUP BY id
            ORDER BY rrf DESC, drank NULLS LAST, id
            LIMIT %(k)s
        )
        SELECT c.doc_id, c.chunk_id, c.start_char, c.end_char, d.source, d.sha256, d.text, d.pages,
               f.rrf, -(c.embedding <#> %(q)s::vector) AS cos, coalesce(kw.score, 0) AS kscore
        FROM fused f JOIN qa_chunks c ON c.id = f.id JOIN qa_documents d ON d.doc_id = c.doc_id
        LEFT JOIN kw ON kw.id = f.id
        ORDER BY f.rrf DESC, f.drank NULLS LAST, f.id
    """
    )

    def search(
        self,
        mode: str,
        k: int,
        *,
        query_vector: np.ndarray | None = None,
        tokens: Sequence[str] = (),
        depth: int = 50,
        rrf_k: int = 60,
    ) -> list[Hit]:
        """The ``k`` best chunks, best first: ``mode`` ``"dense"`` (cosine), ``"bm25"``
        (BM25 over the question's tokens, bounded candidates) or ``"hybrid"`` (RRF of both,
        top ``depth`` of each). One SQL statement, so one consistent snapshot.

        Raises:
            ValueError: unknown mode, bad ``k``, or a query vector of another dimension.
            StoreUnavailableError: the server cannot be reached.
        """
        from qa import config

        if k < 1:
            raise ValueError(f"top_k={k} must be at least 1")
        params: dict[str, object] = {"k": int(k), "depth": int(max(k, depth)), "rrf_k": int(rrf_k)}
        if mode in ("dense", "hybrid"):
            vec = np.asarray(query_vector, dtype=np.float32).ravel()
            if vec.shape[0] != self.dimension:
                raise ValueError(f"query dimension {vec.shape[0]} != index dimension {self.dimension}")
            params["q"] = vector_literal(vec)
        if mode in ("bm25", "hybrid"):
            counts: dict[str, int] = {}
            for t in tokens:
                if t and len(t) <= MAX_LEXEME_CHARS:
                    counts[t] = counts.get(t, 0) + 1
            if not counts and mode == "bm25":
                return []
            params["terms"] = list(counts)
            params["lits"] = query_terms(counts)
            params["mults"] = list(counts.values())
            params["k1"] = BM25_K1
            params["b"] = BM25_B
            params["per_term"] = int(max(config.PG_KEYWORD_CANDIDATES_PER_TERM, params["depth"]))  # type: ignore[call-overload]
        if mode == "dense":
            query = self._DENSE
        elif mode == "bm25":
            query = self._KEYWORD
        elif mode == "hybrid":
            query = self._HYBRID
        else:
            raise ValueError(f"mode={mode!r} is unknown; use dense, bm25 or hybrid")
        if self.vector_type != "vector":  # the query vector must have the column's type for HNSW
            query = query.replace("::vector", f"::{self.vector_type}")
        with self.connection() as conn:
            try:
                rows = conn.execute(query, params).fetchall()
            except psycopg.errors.UndefinedTable as exc:
                raise IndexLoadError(
                    f"no index at {self.directory!r}; build one with: python -m qa index DOCS_DIR --index {self.directory}"
                ) from exc
        hits: list[Hit] = []
        for r in rows:
            doc = DocumentRecord(r[0], r[4], r[5], r[6], list(r[7]) if r[7] is not None else None)
            chunk = ChunkRecord(r[1], r[0], int(r[2]), int(r[3]))
            if mode == "dense":
                hits.append(Hit(doc, chunk, float(r[8]), {"dense": float(r[8])}))
            elif mode == "bm25":
                hits.append(Hit(doc, chunk, float(r[8]), {"bm25": float(r[8])}))
            else:
                hits.append(Hit(doc, chunk, float(r[8]), {"rrf": float(r[8]), "dense": float(r[9]), "bm25": float(r[10])}))
        return hits

    def search_dense(self, query_vector: np.ndarray, k: int) -> list[Hit]:
        """:meth:`search` ``"dense"`` (:class:`~embeddings.stores.base.Store`)."""
        return self.search("dense", k, query_vector=query_vector)

    def search_bm25(self, tokens: Sequence[str], k: int) -> list[Hit]:
        """:meth:`search` ``"bm25"`` (:class:`~embeddings.stores.base.Store`)."""
        return self.search("bm25", k, tokens=tokens)

    def search_hybrid(
        self, query_vector: np.ndarray, tokens: Sequence[str], k: int, *, depth: int = 50, rrf_k: int = 60
    ) -> list[Hit]:
        """:meth:`search` ``"hybrid"``: fused by reciprocal rank in one SQL statement."""
        return self.search("hybrid", k, query_vector=query_vector, tokens=tokens, depth=depth, rrf_k=rrf_k)

    # ------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def writer(self, *, wait_s: float = 0.0) -> Iterator[StoreWriter]:
        """A dedicated connection holding the writers' advisory lock; waits up to ``wait_s``
        seconds for another writer, then fails clearly.

        Raises:
            RuntimeError: another process holds the lock after ``wait_s`` seconds.
            StoreUnavailableError: the server cannot be reached.
        """
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self.timeout_s)))
        except psycopg.OperationalError as exc:
            raise self.unavailable(exc) from exc
        locked = False
        try:
            deadline = time.monotonic() + wait_s
            while not conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]:
                if time.monotonic() >= deadline:
                    raise IndexBusyError(
                        f"index {self.directory!r} is being updated by another process; "
                        "wait for it to finish (or pass a longer --wait) and try again"
                    )
                time.sleep(0.1)
            locked = True
            yield StoreWriter(self, conn)
        except psycopg.OperationalError as exc:
            if not conn.broken:
                raise  # the server said no (a timeout, a full disk...): its own message says why
            # Each update commits document by document (a rebuild at its end): those committed stay.
            raise StoreUnavailableError(
                f"lost the connection to the PostgreSQL index at {self.directory!r} while writing "
                f"({type(exc).__name__}: {scrub_secrets(str(exc).strip(), self.url) or 'connection lost'}); what was committed before it is "
                "kept (each document of an update at once, a rebuild only as a whole) and nothing is half-written; "
                "run the command again when the server is back"
            ) from exc
        finally:
            if locked and not conn.broken:
                # Released now, not when the server notices the closed session (the next
                # writer may already be asking). A killed writer's session releases it anyway.
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            conn.close()


class StoreWriter:
    """Transactional writes on a connection that holds the writers' lock (see :meth:`PostgresStore.writer`)."""

    def __init__(self, store: PostgresStore, conn: psycopg.Connection) -> None:
        self.store = store
        self.conn = conn
        # BM25 statistics of inserted chunks not yet written (see flush_stats).
        self._df: dict[str, int] = {}
        self._chunks = 0
        self._tokens = 0
        self._kept_sources: dict[str, str] | None = None

    @functools.cached_property
    def schema(self) -> str:
        """The schema this writer's index lives in (:func:`_schema_of`), asked once."""
        return _schema_of(self.conn)

    def _originals(self) -> sql.Identifier:
        """The kept-originals table of this index's schema (never another schema's of the path)."""
        return sql.Identifier(self.schema, _ORIGINALS)

    def _ensure_originals(self) -> None:
        self.conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (doc_id text PRIMARY KEY, source text NOT NULL, sha256 text NOT NULL, data bytea NOT NULL)"
            ).format(self._originals())
        )

    def keep_original(self, doc_id: str, source: str, sha256: str, data: bytes) -> None:
        """Keep an added document's bytes (in the caller's transaction, with its insert)."""
        self._ensure_originals()
        self.conn.execute(
            sql.SQL(
                "INSERT INTO {} (doc_id, source, sha256, data) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (doc_id) DO UPDATE SET source = EXCLUDED.source, sha256 = EXCLUDED.sha256, data = EXCLUDED.data"
            ).format(self._originals()),
            (doc_id, source, sha256, data),
        )

    def forget_originals(self, doc_ids: Iterable[str]) -> None:
        """Drop the kept bytes of removed documents (in the caller's transaction)."""
        ids = list(doc_ids)
        if ids and self.store.added_sources(self.conn):
            self.conn.execute(sql.SQL("DELETE FROM {} WHERE doc_id = ANY(%s)").format(self._originals()), (ids,))

    def original(self, doc_id: str) -> bytes | None:
        """The kept bytes of an added document, or ``None``."""
        if not self.store.added_sources(self.conn):
            return None
        row = self.conn.execute(
            sql.SQL("SELECT data FROM {} WHERE doc_id = %s").format(self._originals()), (doc_id,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def transaction(self) -> contextlib.AbstractContextManager:
        """One transaction: everything inside commits together or not at all."""
        return self.conn.transaction()

    def create_schema(
        self,
        *,
        embedding_model: str,
        dimension: int,
        chunking: dict[str, int],
        indexes: bool = True,
        vector_type: str | None = None,
        encoder_variant: str | None = None,
    ) -> None:
        """Drop and recreate the tables for ``embedding_model`` / ``dimension`` (call inside :meth:`transaction`).

        ``vector_type``: ``"vector"`` (float32) or ``"halfvec"`` (float16: half the memory);
        default ``qa.config.PG_VECTOR_TYPE``. ``encoder_variant``: how the vectors are computed
        (recorded so questions are embedded the same way; ``None``: not recorded).
        """
        from qa import config
        from qa.retrieval.bm25 import TOKENIZER_VERSION

        vector_type = vector_type or config.PG_VECTOR_TYPE
        if vector_type not in VECTOR_TYPES:
            raise ValueError(f"vector type {vector_type!r} is unknown; set QA_PG_VECTOR_TYPE to one of {', '.join(VECTOR_TYPES)}")
        limit = 2000 if vector_type == "vector" else 4000  # pgvector's HNSW limits
        if not 1 <= int(dimension) <= limit:
            raise ValueError(f"dimension={dimension} must be from 1 to {limit} for an HNSW index over {vector_type}")
        try:
            with self.conn.transaction():
                self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ValueError(
                f"the pgvector extension is not enabled in {self.store.directory!r} and this user may not enable it "
                "(ask an administrator to run: CREATE EXTENSION vector)"
            ) from exc
        c = self.conn
        schema = self.schema
        # Only an index's own tables are dropped: tables of these names beside no qa_meta (or a
        # qa_meta without a schema version) are someone's data.
        present = _tables_in(c, schema, (_CHUNKS, _DOCUMENTS, _TERMS, _STATS, _META, _ORIGINALS))
        if present == [_ORIGINALS]:
            present = []  # kept uploads left after the index's own tables were dropped: brought back
        meta = _meta_in(c, schema) if _META in present else None  # IndexLoadError: not an index's
        if present and meta is None:
            raise ValueError(
                f"schema {schema!r} of {self.store.directory!r} holds tables named {', '.join(present)} that are not a qa index; "
                "nothing was changed. Keep the index in a database or schema of its own "
                "(e.g. ?options=-csearch_path%3Dmy_schema,public in the URL, after CREATE SCHEMA my_schema)"
            )
        c.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(
                sql.SQL(", ").join(sql.Identifier(schema, t) for t in (_CHUNKS, _DOCUMENTS, _TERMS, _STATS, _META))
            )
        )
        c.execute(sql.SQL("CREATE TABLE {} (key text PRIMARY KEY, value text NOT NULL)").format(sql.Identifier(_META)))
        c.execute(
            sql.SQL(
                "CREATE TABLE {} (doc_id text PRIMARY KEY, source text NOT NULL, sha256 text NOT NULL, "
                "text_sha256 text NOT NULL, text text NOT NULL, pages integer[])"
            ).format(sql.Identifier(_DOCUMENTS))
        )
        if c.execute("SELECT to_regtype(%s)", (vector_type,)).fetchone()[0] is None:
            raise ValueError(
                f"pgvector's type {vector_type} is not in the search_path of {self.store.directory!r} (a schema alone, "
                "without the one holding the extension); add it, usually public: ?options=-csearch_path%3Dmy_schema,public"
            )
        c.execute(
            sql.SQL(
                "CREATE TABLE {c} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                "doc_id text NOT NULL REFERENCES {d} (doc_id) ON DELETE CASCADE, chunk_id text NOT NULL, "
                "start_char integer NOT NULL, end_char integer NOT NULL, text text NOT NULL, "
                "ntokens integer NOT NULL, embedding {vtype}({dim}) NOT NULL, tsv tsvector NOT NULL)"
            ).format(
                c=sql.Identifier(_CHUNKS), d=sql.Identifier(_DOCUMENTS), vtype=sql.SQL(vector_type), dim=sql.Literal(int(dimension))
            )
        )
        c.execute(sql.SQL("CREATE INDEX qa_chunks_doc_id ON {} (doc_id)").format(sql.Identifier(_CHUNKS)))
        # Keyword statistics for BM25: chunks containing each term, and chunk/token totals.
        c.execute(sql.SQL("CREATE TABLE {} (term text PRIMARY KEY, df integer NOT NULL)").format(sql.Identifier(_TERMS)))
        c.execute(
            sql.SQL(
                "CREATE TABLE {} (id integer PRIMARY KEY CHECK (id = 1), chunks bigint NOT NULL, tokens bigint NOT NULL)"
            ).format(sql.Identifier(_STATS))
        )
        c.execute(sql.SQL("INSERT INTO {} VALUES (1, 0, 0)").format(sql.Identifier(_STATS)))
        meta = {
            "schema_version": str(SCHEMA_VERSION),
            "embedding_model": embedding_model,
            **({"encoder_variant": encoder_variant} if encoder_variant is not None else {}),
            "dimension": str(int(dimension)),
            "chunking": json.dumps(chunking, sort_keys=True),
            "tokenizer": TOKENIZER_VERSION,
            "vector_type": vector_type,
        }
        with c.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO {} (key, value) VALUES (%s, %s)").format(sql.Identifier(_META)), list(meta.items())
            )
        self.store.vector_type = vector_type
        if indexes:
            self.create_indexes()

    def create_indexes(self) -> None:
        """The HNSW (vectors) and GIN (keywords) indexes; after a bulk load it is faster to build them last."""
        from qa import config

        self.conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(config.PG_MAINTENANCE_WORK_MEM)))
        self.conn.execute(
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS qa_chunks_embedding ON {} USING hnsw (embedding {}) "
                "WITH (m = {}, ef_construction = {})"
            ).format(
                sql.Identifier(_CHUNKS),
                sql.SQL(f"{self.store.vector_type}_ip_ops"),
                sql.Literal(config.PG_HNSW_M),
                sql.Literal(config.PG_HNSW_EF_CONSTRUCTION),
            )
        )
        self.conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS qa_chunks_tsv ON {} USING gin (tsv)").format(sql.Identifier(_CHUNKS)))

    def delete_documents(self, doc_ids: Iterable[str]) -> int:
        """Delete documents (their chunks cascade); returns how many existed."""
        ids = list(doc_ids)
        if not ids:
            return 0
        self.conn.execute(
            sql.SQL(
                "WITH gone AS (SELECT u.lexeme, count(*) AS n FROM {c} c CROSS JOIN LATERAL unnest(c.tsv) AS u(lexeme) "
                "WHERE c.doc_id = ANY(%s) GROUP BY u.lexeme) "
                "UPDATE {t} t SET df = t.df - gone.n FROM gone WHERE t.term = gone.lexeme"
            ).format(c=sql.Identifier(_CHUNKS), t=sql.Identifier(_TERMS)),
            (ids,),
        )
        self.conn.execute(sql.SQL("DELETE FROM {} WHERE df <= 0").format(sql.Identifier(_TERMS)))
        self.conn.execute(
            sql.SQL(
                "UPDATE {s} SET chunks = chunks - x.n, tokens = tokens - x.t FROM "
                "(SELECT count(*) AS n, coalesce(sum(ntokens), 0) AS t FROM {c} WHERE doc_id = ANY(%s)) x"
            ).format(s=sql.Identifier(_STATS), c=sql.Identifier(_CHUNKS)),
            (ids,),
        )
        cur = self.conn.execute(
            sql.SQL("DELETE FROM {} WHERE doc_id = ANY(%s)").format(sql.Identifier(_DOCUMENTS)), (ids,)
        )
        return cur.rowcount

    def insert_document(
        self,
        document: DocumentRecord,
        text_sha256: str,
        chunks: Sequence[ChunkRecord],
        vectors: np.ndarray,
        tokens: Sequence[Sequence[str]],
        *,
        defer_stats: bool = False,
    ) -> None:
        """Insert one document and its chunks (``vectors`` and ``tokens`` row-aligned with ``chunks``).

        With ``defer_stats`` its BM25 statistics are only collected, and written by
        :meth:`flush_stats` (call it in the same transaction): a bulk load then updates each
        term's row once, not once per document.
        """
        if len(vectors) != len(chunks) or len(tokens) != len(chunks):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors and {len(tokens)} token lists")
        self.conn.execute(
            sql.SQL("INSERT INTO {} (doc_id, source, sha256, text_sha256, text, pages) VALUES (%s, %s, %s, %s, %s, %s)").format(
                sql.Identifier(_DOCUMENTS)
            ),
            (document.doc_id, document.source, document.sha256, text_sha256, document.text, document.pages),
        )
        if not chunks:
            return
        copy = sql.SQL(
            "COPY {} (doc_id, chunk_id, start_char, end_char, text, ntokens, embedding, tsv) FROM STDIN"
        ).format(sql.Identifier(_CHUNKS))
        df = self._df
        total = 0
        with self.conn.cursor() as cur, cur.copy(copy) as out:
            for rec, vec, toks in zip(chunks, vectors, tokens, strict=True):
                # As qa.retrieval.bm25: a chunk of stopwords only counts as one (empty) token.
                ntokens = max(len(toks), 1)
                total += ntokens
                for t in {t for t in toks if t and len(t) <= MAX_LEXEME_CHARS}:
                    df[t] = df.get(t, 0) + 1
                out.write_row(
                    (
                        rec.doc_id, rec.chunk_id, rec.start, rec.end, document.text[rec.start : rec.end], ntokens,
                        vector_literal(vec), tsvector_literal(toks),
                    )
                )
        self._chunks += len(chunks)
        self._tokens += total
        if not defer_stats:
            self.flush_stats()

    def flush_stats(self) -> None:
        """Add the collected BM25 statistics (document frequencies, chunk and token counts)."""
        if self._df:
            self.conn.execute(
                sql.SQL(
                    "INSERT INTO {t} (term, df) SELECT * FROM unnest(%s::text[], %s::int[]) "
                    "ON CONFLICT (term) DO UPDATE SET df = {t}.df + EXCLUDED.df"
                ).format(t=sql.Identifier(_TERMS)),
                (list(self._df), list(self._df.values())),
            )
        if self._chunks:
            self.conn.execute(
                sql.SQL("UPDATE {} SET chunks = chunks + %s, tokens = tokens + %s").format(sql.Identifier(_STATS)),
                (self._chunks, self._tokens),
            )
        self._df, self._chunks, self._tokens = {}, 0, 0

    # ------------------------------------------------------- the StoreWriter interface (embeddings.stores.base)

    def meta(self, *, required: bool = False) -> IndexMeta | None:
        """How the stored index was built; ``None`` for a database without one (``required``:
        :class:`IndexLoadError` instead, as for another schema version or unreadable metadata)."""
        raw = PostgresStore.read_meta(self.conn)
        if raw is None and not required:
            return None
        self.store._apply_meta(raw)
        store = self.store
        return IndexMeta(store.embedding_model, store.dimension, dict(store.chunking), store.tokenizer, store.encoder_variant)

    def states(self) -> dict[str, tuple[str, str, list[int] | None]]:
        """``doc_id -> (sha256, sha256 of the extracted text, pages)``."""
        return self.store.document_states(self.conn)

    def needs_update(self, doc: object, state: tuple[str, str, list[int] | None]) -> bool:
        """Other bytes, text or pages; or added now but not kept yet (it was a folder's, or an older upload)."""
        sha, text_sha, pages = state
        if doc.sha256 != sha or text_sha256(doc.text) != text_sha or doc.page_starts() != pages:  # type: ignore[attr-defined]
            return True
        return doc.data is not None and doc.doc_id not in self._kept()  # type: ignore[attr-defined]

    def _kept(self) -> dict[str, str]:
        if self._kept_sources is None:
            self._kept_sources = self.store.added_sources(self.conn)
        return self._kept_sources

    def sources(self) -> dict[str, str]:
        """``doc_id -> source`` of the stored documents ({} when the tables are of another schema)."""
        if _meta_in(self.conn, self.schema) is None:  # this schema's index only
            return {}
        try:
            return self.store.sources(self.conn)
        except psycopg.Error:
            return {}

    def added(self) -> dict[str, str]:
        """Added documents with kept bytes, and uploads from before originals were kept."""
        if _meta_in(self.conn, self.schema) is None:  # this schema's index only
            return {}
        legacy = {d: src for d, src in self.sources().items() if src.startswith("upload:")}
        return {**legacy, **self._kept()}

    def stored_document(self, doc_id: str) -> DocumentRecord:
        """The stored document ``doc_id`` with its text (``KeyError`` if none): what a rebuild
        carries over; an added one keeps its kept bytes (``qa_originals`` outlives a rebuild)."""
        record = self.store.document(doc_id, self.conn)
        if record is None:
            raise KeyError(doc_id)
        added = doc_id in self._kept() or record.source.startswith("upload:")
        return dataclasses.replace(record, origin="added" if added else "folder")

    def unstorable(self, doc: object) -> str | None:
        """PostgreSQL text cannot hold NUL (the directory store would keep such a document)."""
        if "\x00" in doc.text:  # type: ignore[attr-defined]
            return "contains NUL characters, which PostgreSQL cannot store; remove them and add it again"
        return None

    def stage(self, docs: dict[str, object]) -> None:
        """Nothing: an added document's bytes go into the store with it (same transaction)."""

    def counts(self) -> tuple[int, int]:
        """``(documents, chunks)`` stored now (on this writer's connection)."""
        row = self.conn.execute(
            sql.SQL("SELECT (SELECT count(*) FROM {}), (SELECT count(*) FROM {})").format(
                sql.Identifier(_DOCUMENTS), sql.Identifier(_CHUNKS)
            )
        ).fetchone()
        return int(row[0]), int(row[1])

    def _keep(self, doc: object) -> None:
        if doc.data is not None:  # type: ignore[attr-defined]
            self.keep_original(doc.doc_id, doc.source, doc.sha256, doc.data)  # type: ignore[attr-defined]

    def apply(self, plan: Plan, embed: Embed) -> Applied:
        """A fresh plan: everything embedded first, then the tables recreated and filled in one
        transaction (HNSW and GIN built after the bulk load). Otherwise the removals in one
        transaction, then each new or changed document embedded and replaced in its own."""
        embedded = 0
        meta = plan.meta
        if plan.fresh:
            prepared = embed(plan.documents)
            docs = {d.doc_id: d for d in plan.documents}
            with self.transaction():
                self.create_schema(
                    embedding_model=meta.embedding_model, dimension=meta.dimension, chunking=meta.chunking,
                    indexes=False, encoder_variant=meta.encoder_variant,
                )
                for new in prepared:
                    self.insert_document(
                        new.record, text_sha256(new.record.text), new.chunks, new.vectors, new.tokens, defer_stats=True
                    )
                    self._keep(docs[new.record.doc_id])
                    embedded += len(new.chunks)
                self.flush_stats()
                self.create_indexes()
                # Kept bytes outlive the tables: those of removed documents go now, or the next rebuild would bring them back.
                self.forget_originals(plan.remove)
        else:
            if plan.remove:
                with self.transaction():
                    self.delete_documents(plan.remove)
                    self.forget_originals(plan.remove)
            for doc in plan.documents:
                (new,) = embed([doc])
                with self.transaction():  # a reader sees the old document or the new one, never half
                    self.delete_documents([doc.doc_id])
                    self.insert_document(new.record, text_sha256(new.record.text), new.chunks, new.vectors, new.tokens)
                    self._keep(doc)
                embedded += len(new.chunks)
        self.store._apply_meta(PostgresStore.read_meta(self.conn))
        documents, chunks = self.counts()
        return Applied(documents, chunks, embedded)
