"""The segmented directory index: round trip, version/model checks, atomic commits, and
updates (add, remove, replace, merge, compact) that retrieve exactly like a from-scratch build."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from embeddings.stores.index import (
    ChunkRecord,
    DocumentRecord,
    IndexLoadError,
    Manifest,
    NewDocument,
    VectorIndex,
    commit,
    compact,
    current_generation,
    read_manifest,
    write_lock,
)
from qa import config
from qa.ingest.chunking import chunk_text
from qa.retrieval.bm25 import TOKENIZER_VERSION, BM25Index, tokenize

CHUNKING = {"max_tokens": 8, "overlap_sentences": 0}


def new_document(doc_id: str, text: str, encoder, pages: list[int] | None = None) -> NewDocument:  # noqa: ANN001
    chunks = chunk_text(doc_id, text, encoder.count_tokens, CHUNKING["max_tokens"], 0)
    vectors = encoder.encode([c.text for c in chunks]) if chunks else np.zeros((0, encoder.dimension), np.float32)
    return NewDocument(
        DocumentRecord(doc_id, f"/src/{doc_id}", f"sha-{hash(text)}", text, pages),
        [ChunkRecord(c.chunk_id, doc_id, c.start, c.end) for c in chunks],
        vectors,
        [tokenize(c.text) for c in chunks],
    )


def write(root: Path, encoder, docs: dict[str, str], base: Manifest | None = None, remove=(), merge=True) -> Manifest:  # noqa: ANN001
    with write_lock(root):
        return commit(
            root, base, embedding_model=encoder.name, dimension=encoder.dimension, chunking=CHUNKING,
            tokenizer=TOKENIZER_VERSION, add=[new_document(d, t, encoder) for d, t in docs.items()], remove=remove, merge=merge,
        )


WORDS = (
    "river mountain harbour grain coal copper treaty bridge canal engine signal vaccine glacier orbit "
    "telescope merger strike festival ledger kelp ozone transistor marathon plant battery cargo"
).split()


def make_corpus(n: int, seed: int = 0) -> dict[str, str]:
    rng = random.Random(seed)
    docs = {}
    for i in range(n):
        sentences = [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))).capitalize() + f" item{i}x{j}."
            for j in range(rng.randint(1, 6))
        ]
        docs[f"doc{i:03d}.txt"] = " ".join(sentences)
    return docs


QUESTIONS = ["river grain", "glacier orbit telescope", "merger strike ledger", "item7x0 canal", "ozone kelp battery", "coal coal cargo"]


def rankings(index: VectorIndex, encoder, k: int = 8) -> dict[str, list[list[tuple[str, float]]]]:  # noqa: ANN001
    dense = [[(index.chunk(r).chunk_id, s) for r, s in index.search(encoder.encode([q]), k)[0]] for q in QUESTIONS]
    sparse = [[(index.chunk(r).chunk_id, s) for r, s in index.bm25_search(tokenize(q), k)] for q in QUESTIONS]
    return {"dense": dense, "bm25": sparse}


def assert_same_ranking(got: list[tuple[str, float]], want: list[tuple[str, float]], tol: float) -> None:
    """Equal scores position by position; equal ids except among ties at the cut-off."""
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=tol)
    if want:
        last = want[-1][1]
        assert {c for c, s in got if s > last + tol} == {c for c, s in want if s > last + tol}
        assert {c: s for c, s in got if s > last + tol} == pytest.approx({c: s for c, s in want if s > last + tol}, abs=tol)


def assert_same_retrieval(a: VectorIndex, b: VectorIndex, encoder) -> None:  # noqa: ANN001
    ra, rb = rankings(a, encoder), rankings(b, encoder)
    for got, want in zip(ra["dense"], rb["dense"], strict=True):
        assert_same_ranking(got, want, 1e-5)
    for got, want in zip(ra["bm25"], rb["bm25"], strict=True):
        assert_same_ranking(got, want, 1e-4)


# --------------------------------------------------------------------------- basics


def test_round_trip(tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    text = "Alpha is the first one. Beta is the second one."
    manifest = write(tmp_path / "idx", fake_encoder, {"a.txt": text})
    loaded = VectorIndex.load(tmp_path / "idx", expect_model=fake_encoder.name)
    assert loaded.chunks == [ChunkRecord("a.txt#0", "a.txt", 0, 23), ChunkRecord("a.txt#1", "a.txt", 24, 47)]
    assert loaded.documents["a.txt"] == DocumentRecord("a.txt", "/src/a.txt", f"sha-{hash(text)}", text, None)
    np.testing.assert_allclose(loaded.vectors(), fake_encoder.encode([text[0:23], text[24:47]]), atol=1e-6)
    assert loaded.chunk_text(1) == "Beta is the second one."
    hits = loaded.search(fake_encoder.encode(["beta second"]), k=2)[0]
    assert hits[0][0] == 1 and hits[0][1] > hits[1][1]
    raw = json.loads((current_generation(tmp_path / "idx") / "manifest.json").read_text())
    assert raw["format_version"] == 2 and raw["embedding_model"] == fake_encoder.name and raw["dimension"] == 64
    assert raw["chunking"] == CHUNKING and raw["tokenizer"] == TOKENIZER_VERSION and raw["num_chunks"] == 2
    entry = raw["documents"]["a.txt"]
    assert (entry["source"], entry["chunks"], entry["characters"], entry["row"]) == ("/src/a.txt", 2, len(text), 0)
    assert entry["segment"] == manifest.segments[0]["name"]


def test_other_embedding_model_is_refused_with_rebuild_hint(tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    write(tmp_path / "idx", fake_encoder, {"a.txt": "Alpha."})
    with pytest.raises(IndexLoadError, match=r"embedding model 'fake/bag-of-words'.*--rebuild"):
        VectorIndex.load(tmp_path / "idx", expect_model="sentence-transformers/all-MiniLM-L6-v2")


def test_old_format_index_is_refused_with_the_rebuild_command(tmp_path: Path) -> None:
    # A version-1 index, as the previous release wrote it: one generation with a FAISS file.
    gen = tmp_path / "idx" / "gen-20240101T000000-abcdef12"
    gen.mkdir(parents=True)
    (gen / "manifest.json").write_text(json.dumps({"format_version": 1, "embedding_model": "m", "dimension": 4, "documents": {}}))
    (gen / "index.faiss").write_bytes(b"IxFI")
    (tmp_path / "idx" / "CURRENT").write_text(gen.name + "\n")
    with pytest.raises(IndexLoadError) as info:
        VectorIndex.load(tmp_path / "idx")
    message = str(info.value)
    assert "format version 1" in message and "reads version 2" in message
    assert f"python -m qa index DOCS_DIR --index {tmp_path / 'idx'} --rebuild" in message


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


# --------------------------------------------------------------------------- updates


def test_add_remove_replace_merge_and_compact_retrieve_like_a_fresh_build(tmp_path: Path, fake_encoder, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(config, "MAX_SEGMENTS", 4)
    corpus = make_corpus(40)
    root = tmp_path / "idx"
    live: dict[str, str] = {}

    def step(add: dict[str, str], remove: tuple[str, ...] = ()) -> None:
        base = read_manifest(root) if (root / "CURRENT").exists() else None
        write(root, fake_encoder, add, base, remove)
        for d in remove:
            live.pop(d, None)
        live.update(add)
        fresh = tmp_path / f"fresh{len(list(tmp_path.iterdir()))}"
        write(fresh, fake_encoder, live)
        incremental, scratch = VectorIndex.load(root), VectorIndex.load(fresh)
        assert len(incremental) == len(scratch) and sorted(incremental.documents) == sorted(live)
        assert sorted(c.chunk_id for c in incremental.chunks) == sorted(c.chunk_id for c in scratch.chunks)
        assert_same_retrieval(incremental, scratch, fake_encoder)

    names = list(corpus)
    step({d: corpus[d] for d in names[:15]})
    step({d: corpus[d] for d in names[15:20]}, remove=("doc003.txt", "doc011.txt"))
    step({"doc004.txt": "Completely new river text item4x0. Grain and coal ships."})  # a changed document
    step({}, remove=("doc016.txt",))
    for d in names[20:27]:  # one document at a time: the merge policy kicks in
        step({d: corpus[d]})
    manifest = read_manifest(root)
    assert len(manifest.segments) <= 4
    assert len(manifest.segments) < 1 + 1 + 1 + 7  # segments were merged

    with write_lock(root):
        compacted = compact(root)
    assert compacted is not None and len(compacted.segments) == 1
    assert compacted.segments[0]["rows"] == compacted.num_chunks  # no tombstones left
    fresh = tmp_path / "fresh-final"
    write(fresh, fake_encoder, live)
    assert_same_retrieval(VectorIndex.load(root), VectorIndex.load(fresh), fake_encoder)
    with write_lock(root):
        assert compact(root) is None  # already compact


def test_bm25_scores_equal_bm25s_over_the_live_chunks(tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    corpus = make_corpus(25, seed=3)
    root = tmp_path / "idx"
    names = list(corpus)
    write(root, fake_encoder, {d: corpus[d] for d in names[:12]})
    write(root, fake_encoder, {d: corpus[d] for d in names[12:]}, read_manifest(root), remove=("doc002.txt", "doc015.txt"))
    index = VectorIndex.load(root)
    rows = index.live_rows()
    reference = BM25Index.build([index.chunk_text(int(r)) for r in rows])  # bm25s over exactly the live chunks
    for q in QUESTIONS:
        want = reference.scores(q)
        got = index.bm25_scores(tokenize(q), rows)
        np.testing.assert_allclose(got, want, atol=1e-4)
        top = index.bm25_search(tokenize(q), 5)
        assert [s for _, s in top] == pytest.approx(sorted(want[want > 0], reverse=True)[:5], abs=1e-4)


def test_tombstones_never_cost_live_results(tmp_path: Path, fake_encoder, monkeypatch) -> None:  # noqa: ANN001
    # The best matches of the question are removed; k live rows must still come back, from
    # an exact segment and from an IVF one.
    for ann_min_rows in (10_000, 30):
        monkeypatch.setattr(config, "ANN_MIN_ROWS", ann_min_rows)
        root = tmp_path / f"idx{ann_min_rows}"
        docs = {f"hit{i}.txt": "Glacier orbit telescope. Glacier orbit." for i in range(12)}
        docs.update({f"other{i}.txt": f"River grain coal number{i}. Canal engine signal {i}." for i in range(25)})
        manifest = write(root, fake_encoder, docs)
        assert bool(manifest.segments[0]["ann"]) == (ann_min_rows == 30)
        write(root, fake_encoder, {}, read_manifest(root), remove=[f"hit{i}.txt" for i in range(12)])
        index = VectorIndex.load(root)
        hits = index.search(fake_encoder.encode(["glacier orbit telescope"]), 10)[0]
        assert len(hits) == 10 and not any(index.chunk(r).doc_id.startswith("hit") for r, _ in hits)
        assert all(index.chunk(r).doc_id.startswith("other") for r, _ in index.bm25_search(tokenize("glacier coal"), 10))


def test_ivf_segment_finds_what_exact_search_finds(tmp_path: Path, monkeypatch) -> None:
    from qa.tools.bench import scale_corpus

    data = scale_corpus(3000, questions=50, seed=1)
    vectors = data["vectors"][:3000]
    docs = data["documents"]
    per_doc = data["per_doc"]

    class RowEncoder:
        name, dimension = "bench", vectors.shape[1]

    encoder = RowEncoder()
    added = [
        NewDocument(
            DocumentRecord(d.doc_id, d.source, d.sha256, d.text),
            [ChunkRecord(f"{d.doc_id}#{j}", d.doc_id, 0, 1) for j in range(per_doc)],
            vectors[i * per_doc : (i + 1) * per_doc],
            [["w"]] * per_doc,
        )
        for i, d in enumerate(docs)
    ]
    results = {}
    for ann_min_rows in (10**9, 1000):
        monkeypatch.setattr(config, "ANN_MIN_ROWS", ann_min_rows)
        root = tmp_path / f"idx{ann_min_rows}"
        with write_lock(root):
            manifest = commit(root, None, embedding_model="bench", dimension=encoder.dimension, chunking=CHUNKING, tokenizer=TOKENIZER_VERSION, add=added)
        assert bool(manifest.segments[0]["ann"]) == (ann_min_rows == 1000)
        index = VectorIndex.load(root)
        queries = np.stack(list(data["questions"].values()))
        results[ann_min_rows] = [[r for r, _ in hits] for hits in index.search(queries, 10)]
    exact, approx = results[10**9], results[1000]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx, strict=True)])
    assert recall >= 0.95
    assert [a[0] for a in approx] == [e[0] for e in exact]


def test_an_update_writes_one_segment_and_leaves_the_others_alone(tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    root = tmp_path / "idx"
    write(root, fake_encoder, make_corpus(10))
    (old_segment,) = [p.name for p in root.glob("seg-*")]
    before = {p.name: p.stat().st_mtime_ns for p in (root / old_segment).iterdir()}
    first_gen = current_generation(root).name
    write(root, fake_encoder, {"new.txt": "A new river document."}, read_manifest(root))
    after = {p.name for p in root.glob("seg-*")}
    assert len(after) == 2
    assert old_segment in after
    assert {p.name: p.stat().st_mtime_ns for p in (root / old_segment).iterdir()} == before
    # A removal writes no segment at all: only a manifest.
    write(root, fake_encoder, {}, read_manifest(root), remove=["doc001.txt"])
    assert {p.name for p in root.glob("seg-*")} == after
    # Garbage collection keeps the previous generation (a reader may be opening it), no older one.
    gens = sorted(p.name for p in root.glob("gen-*"))
    assert len(gens) == 2 and first_gen not in gens
    assert not list(root.glob(".tmp-*"))


def test_documents_whose_rows_are_all_removed_drop_their_segment(tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    root = tmp_path / "idx"
    write(root, fake_encoder, {"a.txt": "Alpha river."})
    write(root, fake_encoder, {"b.txt": "Beta mountain."}, read_manifest(root))
    manifest = write(root, fake_encoder, {}, read_manifest(root), remove=["a.txt"])
    assert len(manifest.segments) == 1
    write(root, fake_encoder, {}, read_manifest(root), remove=["b.txt"])
    index = VectorIndex.load(root)
    assert len(index) == 0 and index.search(fake_encoder.encode(["beta"]), 3) == [[]] and index.bm25_search(["beta"], 3) == []
