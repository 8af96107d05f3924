"""The persisted index: round trip, version/model checks, corruption, atomic commit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embeddings.index import ChunkRecord, DocumentRecord, IndexLoadError, VectorIndex, current_generation, write_lock


def make_index(encoder) -> VectorIndex:  # noqa: ANN001
    text = "Alpha is first. Beta is second."
    docs = {"a.txt": DocumentRecord("a.txt", "/src/a.txt", "h1", text)}
    chunks = [ChunkRecord("a.txt#0", "a.txt", 0, 15), ChunkRecord("a.txt#1", "a.txt", 16, 31)]
    vectors = encoder.encode([text[0:15], text[16:31]])
    return VectorIndex(
        embedding_model=encoder.name, dimension=encoder.dimension, chunking={"max_tokens": 5, "overlap_sentences": 0},
        documents=docs, chunks=chunks, vectors=vectors,
    )


def test_round_trip(tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    index = make_index(fake_encoder)
    index.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx", expect_model=fake_encoder.name)
    assert loaded.chunks == index.chunks
    assert loaded.documents == index.documents
    np.testing.assert_allclose(loaded.vectors(), index.vectors())
    assert loaded.chunk_text(1) == "Beta is second."
    hits = loaded.search(fake_encoder.encode(["beta second"]), k=2)[0]
    assert hits[0][0] == 1 and hits[0][1] > hits[1][1]
    manifest = json.loads((current_generation(tmp_path / "idx") / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["embedding_model"] == fake_encoder.name
    assert manifest["dimension"] == 64
    assert manifest["documents"]["a.txt"] == {"source": "/src/a.txt", "sha256": "h1", "chunks": 2}


def test_saving_again_replaces_generation_and_cleans_up(tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    index = make_index(fake_encoder)
    first = index.save(tmp_path / "idx")
    second = index.save(tmp_path / "idx")
    assert first != second and not first.exists() and second.exists()
    assert current_generation(tmp_path / "idx") == second


def test_other_embedding_model_is_refused_with_rebuild_hint(tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    make_index(fake_encoder).save(tmp_path / "idx")
    with pytest.raises(IndexLoadError, match=r"embedding model 'fake/bag-of-words'.*--rebuild"):
        VectorIndex.load(tmp_path / "idx", expect_model="sentence-transformers/all-MiniLM-L6-v2")


def test_other_format_version_is_refused(tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    gen = make_index(fake_encoder).save(tmp_path / "idx")
    manifest = json.loads((gen / "manifest.json").read_text())
    manifest["format_version"] = 99
    (gen / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexLoadError, match=r"format version 99.*--rebuild"):
        VectorIndex.load(tmp_path / "idx")


def test_truncated_faiss_file_is_detected(tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    gen = make_index(fake_encoder).save(tmp_path / "idx")
    data = (gen / "index.faiss").read_bytes()
    (gen / "index.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexLoadError, match=r"corrupt|inconsistent"):
        VectorIndex.load(tmp_path / "idx")


def test_missing_and_half_written_index_directories(tmp_path: Path) -> None:
    with pytest.raises(IndexLoadError, match="no index at"):
        VectorIndex.load(tmp_path / "missing")
    half = tmp_path / "half"
    (half / ".tmp-gen-x").mkdir(parents=True)
    with pytest.raises(IndexLoadError, match="no complete index"):
        VectorIndex.load(half)


def test_writer_lock_refuses_a_second_writer(tmp_path: Path) -> None:
    with write_lock(tmp_path / "idx"):
        with pytest.raises(RuntimeError, match="being updated by another process"):
            with write_lock(tmp_path / "idx", wait_s=0.2):
                pass
    with write_lock(tmp_path / "idx"):  # released afterwards
        pass
