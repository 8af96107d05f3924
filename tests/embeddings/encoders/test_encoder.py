"""Encoder variants: choosing one, recording it in the index, refusing a mismatch (tiny fakes;
the real models are in tests/embeddings/test_integration.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from embeddings.encoders import encoder as enc
from embeddings.stores.index import IndexLoadError, VectorIndex, current_generation
from qa.ingest.indexing import index_folder
from qa.retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever
from tests.conftest import FakeEncoder


class VariantFake(FakeEncoder):
    """The bag-of-words fake, saying which encoder variant it stands for."""

    def __init__(self, variant: str) -> None:
        super().__init__()
        self.variant = variant


def _manifest(index_dir: Path) -> dict:
    return json.loads((current_generation(index_dir) / "manifest.json").read_text(encoding="utf-8"))


def _legacy(index_dir: Path) -> None:
    """Rewrite the live manifest as an index from before variants were recorded."""
    path = current_generation(index_dir) / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.pop("encoder_variant", None)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def test_the_variant_is_recorded_next_to_the_model(docs_dir: Path, tmp_path: Path) -> None:
    index_folder(docs_dir, tmp_path / "idx", encoder=VariantFake("onnx-int8"))
    manifest = _manifest(tmp_path / "idx")
    assert manifest["embedding_model"] == FakeEncoder.name
    assert manifest["encoder_variant"] == "onnx-int8"
    assert VectorIndex.load(tmp_path / "idx").encoder_variant == "onnx-int8"


def test_an_encoder_without_a_variant_records_none(docs_dir: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder)
    assert "encoder_variant" not in _manifest(tmp_path / "idx")


def test_another_variant_is_refused_with_the_rebuild_command(docs_dir: Path, tmp_path: Path) -> None:
    index_folder(docs_dir, tmp_path / "idx", encoder=VariantFake("onnx-int8"))
    index = VectorIndex.load(tmp_path / "idx")
    for make in (DenseRetriever, HybridRetriever):
        with pytest.raises(IndexLoadError) as err:
            make(index, VariantFake("fp32"))
        message = str(err.value)
        assert "encoder variant 'onnx-int8'" in message and "'fp32'" in message
        assert f"python -m qa index DOCS_DIR --index {tmp_path / 'idx'} --rebuild" in message
        assert "QA_ENCODER_VARIANT=onnx-int8" in message
    with pytest.raises(IndexLoadError, match=r"encoder variant 'onnx-int8'.*--rebuild"):
        VectorIndex.load(tmp_path / "idx", expect_variant="bf16")
    assert DenseRetriever(index, VariantFake("onnx-int8")).retrieve("gamma port", 1)[0].doc_id == "sub/gamma.txt"


def test_an_index_without_a_variant_is_read_as_fp32(docs_dir: Path, tmp_path: Path) -> None:
    """Indexes written before variants existed were embedded by sentence-transformers fp32:
    they keep working with that variant, and are refused (with the way out) with another."""
    index_folder(docs_dir, tmp_path / "idx", encoder=VariantFake("fp32"))
    _legacy(tmp_path / "idx")
    index = VectorIndex.load(tmp_path / "idx", expect_variant="fp32")
    assert index.encoder_variant is None
    assert DenseRetriever(index, VariantFake("fp32")).retrieve("alpha river", 1)[0].doc_id == "alpha.txt"
    with pytest.raises(IndexLoadError, match=r"variant 'fp32' but questions would be embedded with 'onnx-int8'.*--rebuild"):
        DenseRetriever(index, VariantFake("onnx-int8"))
    # Keywords need no encoder: BM25 answers whatever the variant.
    assert BM25Retriever(index).retrieve("beta summit", 1)[0].doc_id == "beta.md"
    # An encoder that names no variant (a custom one) is not checked.
    DenseRetriever(index, FakeEncoder())


def test_a_new_variant_re_embeds_everything_on_update(docs_dir: Path, tmp_path: Path) -> None:
    index_folder(docs_dir, tmp_path / "idx", encoder=VariantFake("fp32"))
    _legacy(tmp_path / "idx")
    same = index_folder(docs_dir, tmp_path / "idx", encoder=VariantFake("fp32"))
    assert same.embedded_chunks == 0  # no variant recorded = fp32: nothing to redo
    onnx = VariantFake("onnx-int8")
    report = index_folder(docs_dir, tmp_path / "idx", encoder=onnx)
    assert report.embedded_chunks == report.chunks > 0
    assert "encoder variant 'fp32'" in report.note
    assert _manifest(tmp_path / "idx")["encoder_variant"] == "onnx-int8"
    DenseRetriever(VectorIndex.load(tmp_path / "idx"), VariantFake("onnx-int8"))


def test_an_earlier_revision_of_a_variant_is_refused_then_re_embedded(docs_dir: Path, tmp_path: Path) -> None:
    """onnx-q8's vectors changed in revision 2 (7-bit weights); indexes embedded by revision 1
    recorded the bare name. Querying such an index is refused with the rebuild command (no
    setting brings the old computation back), and updating it re-embeds every chunk."""
    assert enc.VARIANT_REVISIONS["onnx-q8"] >= 2 and enc.variant_tag("onnx-q8") == f"onnx-q8@{enc.VARIANT_REVISIONS['onnx-q8']}"
    assert enc.variant_tag("onnx-int8") == "onnx-int8" and enc.split_tag("onnx-int8") == ("onnx-int8", 1)
    index_folder(docs_dir, tmp_path / "idx", encoder=VariantFake("onnx-q8"))
    assert _manifest(tmp_path / "idx")["encoder_variant"] == enc.variant_tag("onnx-q8")
    path = current_generation(tmp_path / "idx") / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["encoder_variant"] = "onnx-q8"  # what revision 1 wrote
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexLoadError) as err:
        DenseRetriever(VectorIndex.load(tmp_path / "idx"), VariantFake("onnx-q8"))
    message = str(err.value)
    assert "revision 1 of encoder variant 'onnx-q8'" in message and "--rebuild" in message
    assert "QA_ENCODER_VARIANT" not in message  # no setting computes revision 1 any more
    # Another variant asked of a revision-1 index: also only a rebuild helps.
    with pytest.raises(IndexLoadError, match=r"no longer computes.*--rebuild"):
        DenseRetriever(VectorIndex.load(tmp_path / "idx"), VariantFake("fp32"))
    report = index_folder(docs_dir, tmp_path / "idx", encoder=VariantFake("onnx-q8"))
    assert report.embedded_chunks == report.chunks > 0 and "'onnx-q8'" in report.note
    assert _manifest(tmp_path / "idx")["encoder_variant"] == enc.variant_tag("onnx-q8")
    DenseRetriever(VectorIndex.load(tmp_path / "idx"), VariantFake("onnx-q8"))
    # A variant *name* (QA_ENCODER_VARIANT) asks for this version's revision of it.
    VectorIndex.load(tmp_path / "idx", expect_variant="onnx-q8")


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match=r"encoder variant 'fp8' is unknown; use one of onnx-q8, onnx-int8, fp32, bf16, int8"):
        enc.make_encoder(None, "fp8")


def test_default_variant_is_onnx_for_minilm_and_fp32_for_other_models(monkeypatch: pytest.MonkeyPatch) -> None:
    from qa import config

    assert config.ENCODER_VARIANT == "onnx-q8" or os.environ.get("QA_ENCODER_VARIANT")  # the shipped default
    default = enc.make_encoder()
    assert default.variant == config.ENCODER_VARIANT and default.name == enc.CANONICAL_MINILM
    monkeypatch.setattr("qa.config.ENCODER_VARIANT", "onnx-int8")
    assert enc.make_encoder().variant == "onnx-int8"
    other = enc.make_encoder("/models/some-bert")  # constructed lazily: nothing loads
    assert isinstance(other, enc.SentenceTransformerEncoder) and other.variant == "fp32"
    with pytest.raises(ValueError, match=r"'onnx-int8' exists for sentence-transformers/all-MiniLM-L6-v2 .* only"):
        enc.make_encoder("/models/some-bert", "onnx-int8")
    monkeypatch.setattr("qa.config.ENCODER_VARIANT", "bf16")
    chosen = enc.make_encoder()
    assert isinstance(chosen, enc.SentenceTransformerEncoder) and chosen.variant == "bf16"


def test_get_encoder_shares_one_encoder_per_model_and_variant() -> None:
    assert enc.get_encoder(None, "onnx-int8") is enc.get_encoder("all-MiniLM-L6-v2", "onnx-int8")
    assert enc.get_encoder(None, "int8") is not enc.get_encoder(None, "onnx-int8")
    assert enc.get_encoder(None, "int8").variant == "int8"
