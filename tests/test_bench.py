"""``qa bench encoders`` / ``qa bench query`` plumbing with tiny fakes (the real numbers come
from running them; README "Speed")."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa import bench
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
    monkeypatch.setattr("embeddings.encoder.make_encoder", lambda name=None, variant=None: VariantFake(variant))
    monkeypatch.setattr("embeddings.encoder.get_encoder", lambda name=None, variant=None: VariantFake(variant or "onnx-int8"))


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
    from qa.cli import build_parser

    args = build_parser().parse_args(["bench", "encoders", "--variants", "onnx-int8,fp32", "--no-recall"])
    assert args.what == "encoders" and args.variants == "onnx-int8,fp32" and args.no_recall
    args = build_parser().parse_args(["bench", "query", "--threads", "8", "--variant", "onnx-int8"])
    assert args.what == "query" and args.threads == 8 and args.chunks is None
