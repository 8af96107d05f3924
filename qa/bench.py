"""Speed benchmarks behind ``python -m qa bench`` (numbers, not pass/fail)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from embeddings.encoder import get_encoder
from qa import config
from qa.chunking import chunk_text
from qa.documents import load_folder


def bench_index(docs_dir: Path, *, copies: int = 40) -> dict[str, float | int]:
    """Indexing throughput vs raw ``SentenceTransformer.encode`` on the same chunks.

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
        encoder = get_encoder()
        model = encoder.model  # load sentence-transformers before timing
        copied, _ = load_folder(corpus)
        texts = [
            c.text
            for d in copied
            for c in chunk_text(d.doc_id, d.text, encoder.count_tokens, config.CHUNK_MAX_TOKENS, config.CHUNK_OVERLAP_SENTENCES)
        ]
        model.encode(texts[:64], batch_size=config.EMBED_BATCH_SIZE)  # warm up kernels

        from qa.indexing import index_folder

        raw_best = index_best = float("inf")
        for _ in range(2):  # alternate and keep the best of two, to damp noise on a busy machine
            t = time.perf_counter()
            model.encode(texts, batch_size=config.EMBED_BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True)
            raw_best = min(raw_best, time.perf_counter() - t)
            t = time.perf_counter()
            report = index_folder(corpus, Path(tmp) / "index", encoder=encoder, rebuild=True)
            index_best = min(index_best, time.perf_counter() - t)
        assert report.chunks == len(texts), (report.chunks, len(texts))
    return {
        "documents": len(copied),
        "chunks": len(texts),
        "raw_encode_chunks_per_s": len(texts) / raw_best,
        "indexing_chunks_per_s": len(texts) / index_best,
        "indexing_vs_raw": raw_best / index_best,
    }


DEFAULT_BENCH_QUESTIONS = config.PROJECT_ROOT / "notebooks" / "data" / "seeds_dev.jsonl"


def bench_ask(*, questions: Path | None = None, reader: str | None = None, index: Path | None = None, rounds: int = 3) -> dict[str, float | int | str]:
    """Cold start (process start to first answer) and warm per-question latency of ``ask()``.

    Runs over the default index on ``seeds/`` unless ``index`` is given; questions come
    from a JSON Lines file (default: the dev set).
    """
    import os
    import subprocess
    import sys

    import numpy as np

    from qa.evaluation import load_questions
    from qa.pipeline import ask, load_index

    path = questions or DEFAULT_BENCH_QUESTIONS
    rows = load_questions(path)
    texts = [r["question"] for r in rows]
    load_index(index)  # make sure the index exists before timing a cold process
    reader_name = reader or "transformers"
    script = (
        "import sys\nfrom qa import ask\n"
        f"a = ask({texts[0]!r}, index={str(index) if index else None!r}, reader={reader_name!r})\n"
        "print(a.reader)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    cold = []
    for _ in range(2):
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", script], cwd=config.PROJECT_ROOT, env=env, capture_output=True, text=True, check=True)
        cold.append(time.perf_counter() - t)
    ask(texts[0], index=index, reader=reader_name)  # warm this process
    latencies = []
    for _ in range(rounds):
        for q in texts:
            t = time.perf_counter()
            answer = ask(q, index=index, reader=reader_name)
            latencies.append(time.perf_counter() - t)
    ms = np.array(latencies) * 1000
    return {
        "reader": answer.reader,
        "cold_reader": done.stdout.strip(),
        "questions": len(latencies),
        "cold_start_s": min(cold),
        "warm_p50_ms": float(np.percentile(ms, 50)),
        "warm_p95_ms": float(np.percentile(ms, 95)),
        "warm_mean_ms": float(ms.mean()),
    }
