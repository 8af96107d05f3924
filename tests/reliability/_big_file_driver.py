"""Index one large generated text file with a fast fake encoder; print memory and timings as JSON.

Usage: python _big_file_driver.py WORKDIR MEGABYTES
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.reliability.helpers import FastEncoder  # noqa: E402


def rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux keeps the parent's peak
    across fork + exec, so under a pytest process that had grown to 2.2 GB (reader tests before
    this one) a 470 MB indexing peak read as 2.2 GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    work, megabytes = Path(sys.argv[1]), float(sys.argv[2])
    docs = work / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1)
    vocab = ["".join(rng.choices("abcdefghijklmnoprstuvwyz", k=rng.randint(3, 9))) for _ in range(20000)]
    target = int(megabytes * 1024 * 1024)
    with (docs / "big.txt").open("w", encoding="utf-8") as fh:
        written = 0
        while written < target:
            para = " ".join(
                " ".join(rng.choices(vocab, k=rng.randint(8, 20))).capitalize() + "." for _ in range(rng.randint(3, 8))
            )
            fh.write(para + "\n\n")
            written += len(para) + 2
    (docs / "small.txt").write_text("The lighthouse keeper is Ada Byron. She lives by the sea.", encoding="utf-8")

    import gc

    import bm25s  # noqa: F401
    import psutil

    from embeddings.stores.index import VectorIndex
    from qa.ingest.indexing import index_folder  # imports (faiss, numpy, bm25s) before the baseline
    from qa.retrieval.retrievers import BM25Retriever, DenseRetriever

    encoder = FastEncoder()
    gc.collect()
    # Current RSS, not the high-water mark: a transient peak while importing must not hide growth.
    baseline = psutil.Process().memory_info().rss / 2**20
    t = time.perf_counter()
    report = index_folder(docs, work / "index", encoder=encoder, show_progress=True)
    seconds = time.perf_counter() - t
    peak = rss_mb()
    index = VectorIndex.load(work / "index")
    hits = BM25Retriever(index).retrieve("lighthouse keeper Ada Byron", 1)
    dense = DenseRetriever(index, encoder).retrieve("lighthouse keeper Ada Byron", 1)
    print(
        json.dumps(
            {
                "file_mb": (docs / "big.txt").stat().st_size / 2**20,
                "baseline_rss_mb": baseline,
                "peak_rss_mb": peak,
                "growth_mb": peak - baseline,
                "seconds": seconds,
                "chunks": report.chunks,
                "skipped": [s.reason for s in report.skipped],
                "progress_calls": [c for c in encoder.calls if c[1]],
                "encode_calls": len(encoder.calls),
                "bm25_top_doc": hits[0].doc_id if hits else None,
                "dense_top_doc": dense[0].doc_id if dense else None,
            }
        )
    )


if __name__ == "__main__":
    main()
