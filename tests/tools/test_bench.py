"""``qa bench encoders`` / ``qa bench query`` plumbing with tiny fakes (the real numbers come
from running them; README "Speed")."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.tools import bench
from tests.conftest import FakeEncoder


class VariantFake(FakeEncoder):
    def __init__(self, variant: str) -> None:
        super().__init__()
        self.variant = variant
        self._tokenizer = self  # bench_query times the tokenizer when an encoder exposes one

    def encode(self, texts, *, batch_size=32, show_progress=False, bulk=False):  # noqa: ANN001, ANN201
        if isinstance(texts, str):  # called as the tokenizer
            return texts.split()
        return super().encode(texts, batch_size=batch_size, show_progress=show_progress, bulk=bulk)


@pytest.fixture
def small_sets(docs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        '{"question": "Where does the alpha river flow?", "answers": ["north"]}\n'
        '{"question": "What does the gamma port ship?", "answers": ["grain and coal"]}\n'
        '{"question": "Who owns the moon?", "answers": []}\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(bench, "question_sets", lambda: {"small": (docs_dir, questions)})
    monkeypatch.setattr("embeddings.encoders.encoder.make_encoder", lambda name=None, variant=None: VariantFake(variant))
    monkeypatch.setattr("embeddings.encoders.encoder.get_encoder", lambda name=None, variant=None: VariantFake(variant or "onnx-int8"))


def test_bench_encoders_reports_throughput_agreement_and_recall(small_sets: None) -> None:
    results = bench.bench_encoders(("fp32", "onnx-int8"))
    assert results["chunks"] == 3
    assert results["fp32_chunks_per_s"] > 0 and results["onnx-int8_chunks_per_s"] > 0
    assert results["onnx-int8_cosine_vs_fp32_min"] == pytest.approx(1.0)  # the fakes compute alike
    for v in ("fp32", "onnx-int8"):
        for r in ("dense", "hybrid"):
            assert results[f"{v}_small_{r}_recall@5"] == 1.0
    assert "fp32_small_dense_recall@1" in results


def test_bench_query_reports_stages_and_concurrent_throughput(small_sets: None) -> None:
    results = bench.bench_query(chunks=50, threads=4, questions=2)
    assert results["variant"] == "onnx-int8" and results["chunks"] == 50
    for stage in ("tokenize", "encode", "faiss_search", "dense_retrieve", "hybrid_retrieve"):
        assert results[f"{stage}_p50_ms"] <= results[f"{stage}_p95_ms"]
    assert results["dense_c4_queries_per_s"] > 0


def test_cli_bench_choices_include_encoders_and_query() -> None:
    from qa.tools.cli import build_parser

    args = build_parser().parse_args(["bench", "encoders", "--variants", "onnx-int8,fp32", "--no-recall"])
    assert args.what == "encoders" and args.variants == "onnx-int8,fp32" and args.no_recall
    args = build_parser().parse_args(["bench", "query", "--threads", "8", "--variant", "onnx-int8"])
    assert args.what == "query" and args.threads == 8 and args.chunks is None


# --------------------------------------------------------------------------- scale on real text (issue 25)

_WORDS = (
    "amber basalt cedar delta ember fjord garnet harbor iris jasper kelp lagoon marble nectar onyx prairie quartz "
    "reef sierra tundra umber valley willow xenon yarrow zephyr anchor beacon canyon dune estuary forest glacier "
    "heath island jungle knoll lake mesa nook oasis peak quarry ridge savanna terrace upland vista wetland"
).split()


def _squad_file(path: Path, paragraphs: list[str], prefix: str) -> None:
    import gzip
    import json

    data = {"data": [{"title": f"{prefix} article", "paragraphs": [
        {"context": c, "qas": [{"id": f"{prefix}-{i}", "question": f"Where is the {c.split()[1]} {c.split()[2]}?",
                                "answers": [{"text": c.split()[1], "answer_start": c.index(c.split()[1])}]}]}
        for i, c in enumerate(paragraphs)
    ]}]}
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(data, fh)


@pytest.fixture
def real_texts(tmp_path: Path) -> Path:
    """A folder with two SQuAD files (one paragraph in both) and a text document: 13 distinct
    paragraphs of 4 sentences, every sentence of its own words."""
    import itertools

    words = itertools.cycle(_WORDS)
    para = [" ".join(f"The {next(words)} {next(words)} {next(words)} stays{n}{s}." for s in range(4)) for n in range(12)]
    folder = tmp_path / "texts"
    folder.mkdir()
    _squad_file(folder / "a.json.gz", para[:8], "a")
    _squad_file(folder / "b.json.gz", para[7:], "b")  # para[7] again: kept once
    (folder / "notes.txt").write_text("Zebra yak walrus vole. Urchin tapir stoat raven. Quail puma otter newt.", encoding="utf-8")
    return folder


def test_load_real_texts_dedupes_paragraphs_and_keeps_questions(real_texts: Path) -> None:
    documents, questions = bench.load_real_texts([real_texts])
    assert len(documents) == 13  # 12 distinct paragraphs + the text document
    assert len({d.text for d in documents}) == 13
    assert len(questions) == 13  # 8 + 5 questions; the repeated paragraph's two point at one document
    ids = {d.doc_id for d in documents}
    assert all(doc_id in ids for _, doc_id in questions)
    with pytest.raises(ValueError, match="does not exist"):
        bench.load_real_texts([real_texts / "missing.json.gz"])


def test_bench_scale_real_chunks_finer_caches_vectors_and_reuses_them(
    real_texts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from qa import config

    monkeypatch.setattr(config, "ANN_MIN_ROWS", 8)  # an IVF segment even at this size
    cache = tmp_path / "cache"
    first = FakeEncoder()
    lines: list[str] = []
    (row,) = bench.bench_scale_real([20], [real_texts], cache=cache, questions=12, nprobes=[1, 4], encoder=first, log=lines.append)
    # 12 documents besides the spare give 12 chunks of <= 160 tokens, fewer than 20: 2-sentence windows.
    assert "chunked finer: 2-sentence windows" in row["note"]
    assert any(line.startswith("note: ") and "chunked finer" in line for line in lines)
    assert row["chunking"] == "2-sentence windows" and row["chunks"] == 20 and row["chunks_in_text"] >= 20
    assert row["vectors"] == "real" and row["encoder"].startswith("fake/bag-of-words")
    assert first.calls > 0 and row["embedded_now"] > 20 and row["embedded_cached"] == 0
    assert row["queries"] == 12 and 0 < row["queries_from_questions"] < 12  # the rest: perturbed chunk texts
    assert row["ivf_nlist"] == 4  # sqrt(20) lists
    assert row["nprobe4_recall_at_10"] == 1.0  # every list probed: exact
    assert 0.0 <= row["nprobe1_recall_at_10"] <= 1.0
    for key in ("build_s", "load_s", "dense_p50_ms", "bm25_p50_ms", "hybrid_p50_ms", "peak_rss_mb", "add_one_s", "remove_one_s"):
        assert row[key] > 0, key
    parts = sorted(cache.rglob("part-*.jsonl"))
    assert parts and len(parts) == len(list(cache.rglob("part-*.npy")))
    header = json.loads(parts[0].read_text(encoding="utf-8").splitlines()[0])
    assert header["format"] == bench.VECTOR_CACHE_FORMAT and header["encoder"] == "fake/bag-of-words"
    assert header["kind"] == "chunks" and header["chunking"] == {"kind": "sentences", "sentences": 2}

    again = FakeEncoder()
    (rerun,) = bench.bench_scale_real([20], [real_texts], cache=cache, questions=12, encoder=again, log=lines.append)
    assert again.calls == 0  # every chunk and query vector came from the cache
    assert rerun["embedded_now"] == 0 and rerun["queries_embedded_now"] == 0
    assert rerun["embedded_cached"] == row["embedded_now"]
    assert rerun["recall_at_10"] == row["recall_at_10"]


def test_bench_scale_real_caps_at_what_the_text_gives(real_texts: Path, tmp_path: Path) -> None:
    (row,) = bench.bench_scale_real([10_000], [real_texts], cache=tmp_path / "c", questions=5, encoder=FakeEncoder(), log=lambda _: None)
    assert row["chunking"] == "single sentences"
    assert row["chunks"] == row["chunks_in_text"] < 10_000
    assert f"measured at {row['chunks']:,}, not 10,000" in row["note"]


def test_cli_bench_scale_real_options() -> None:
    from qa.tools.cli import build_parser

    args = build_parser().parse_args(
        ["bench", "scale", "--vectors", "real", "--texts", "a.json.gz", "--texts", "docs", "--cache", "c", "--chunks", "50000", "--nprobe", "8", "16"]
    )
    assert args.vectors == "real" and args.texts == [Path("a.json.gz"), Path("docs")] and args.cache == Path("c")
    assert args.chunks == [50000] and args.nprobe == [8, 16]
    assert build_parser().parse_args(["bench", "scale"]).vectors == "synthetic"
