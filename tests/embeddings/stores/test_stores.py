"""One contract, two stores: the directory (FAISS + BM25) and PostgreSQL (pgvector) must index,
update incrementally, add/remove/list, retrieve and cite alike (fake encoder, real server)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from embeddings.stores import is_store_url, load_store, writable_store
from embeddings.stores.index import IndexLoadError
from qa.ingest.documents import Document
from qa.ingest.indexing import add_files, index_folder, list_documents, remove_documents, update_index
from qa.pipeline import ask, load_index
from qa.retrieval.retrievers import get_retriever
from tests.conftest import FakeEncoder

STORES = [pytest.param("directory", id="directory"), pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=STORES)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where an index goes: a directory, or a fresh PostgreSQL database URL."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return tmp_path / "index"


def _doc(doc_id: str, text: str, pages: tuple[int, ...] | None = None) -> Document:
    return Document(doc_id, f"/docs/{doc_id}", text, hashlib.sha256(text.encode()).hexdigest(), pages)


PDF_TEXT = (
    "Page one talks about the harbour master. The harbour opens at dawn.\n\n"
    "Page two: the lighthouse keeper Ingrid Solberg lit the lamp in 1911. The lighthouse stands on granite."
)
DOCS = [
    _doc("alpha.txt", "Alpha river flows north. It is long and cold. Fishermen love the alpha river in spring."),
    _doc("beta.md", "Beta mountain is tall. Climbers reach the beta summit in July."),
    _doc("sub/gamma.txt", "Gamma city has a port. The gamma port ships grain and coal. Part XJ-4471B is stored there."),
    _doc("report.pdf", PDF_TEXT, pages=(0, PDF_TEXT.index("Page two"))),
]


def _index(location: str | Path, encoder: FakeEncoder, docs: list[Document] = DOCS, **kw: object):
    return update_index(location, docs, encoder=encoder, max_tokens=12, overlap_sentences=0, **kw)


def test_index_list_and_incremental_update(location: str | Path, docs_dir: Path) -> None:
    enc = FakeEncoder()
    report = index_folder(docs_dir, location, encoder=enc, max_tokens=12, overlap_sentences=0)
    assert report.added == ["alpha.txt", "beta.md", "sub/gamma.txt"]
    assert report.embedded_chunks == report.chunks > 0
    listed = list_documents(location)
    assert [d.doc_id for d in listed] == ["alpha.txt", "beta.md", "sub/gamma.txt"]
    assert sum(d.chunks for d in listed) == report.chunks

    # Nothing changed: nothing embedded.
    again = FakeEncoder()
    report = index_folder(docs_dir, location, encoder=again, max_tokens=12, overlap_sentences=0)
    assert again.encoded == [] and report.unchanged == 3 and not (report.added or report.changed or report.removed)

    # One document changed, one removed, one new: only the changed and new ones are embedded.
    (docs_dir / "alpha.txt").write_text("Alpha river now flows south. Salmon return in autumn.", encoding="utf-8")
    (docs_dir / "beta.md").unlink()
    (docs_dir / "delta.txt").write_text("Delta marsh hosts herons.", encoding="utf-8")
    changed = FakeEncoder()
    report = index_folder(docs_dir, location, encoder=changed, max_tokens=12, overlap_sentences=0)
    assert report.changed == ["alpha.txt"] and report.added == ["delta.txt"] and report.removed == ["beta.md"]
    assert report.unchanged == 1
    assert changed.encoded and all(("Salmon" in t or "south" in t or "Delta" in t or "herons" in t) for t in changed.encoded)
    assert not any("Gamma" in t for t in changed.encoded)
    assert [d.doc_id for d in list_documents(location)] == ["alpha.txt", "delta.txt", "sub/gamma.txt"]


def test_add_and_remove(location: str | Path, docs_dir: Path, tmp_path: Path) -> None:
    enc = FakeEncoder()
    report = add_files(location, [docs_dir / "alpha.txt", docs_dir / "sub"], encoder=enc)
    assert report.added == ["alpha.txt", "gamma.txt"]
    # Re-adding unchanged files embeds nothing; a changed file replaces its document.
    (docs_dir / "alpha.txt").write_text("Alpha lake is calm.", encoding="utf-8")
    enc2 = FakeEncoder()
    report = add_files(location, [docs_dir / "alpha.txt", docs_dir / "sub"], encoder=enc2)
    assert report.changed == ["alpha.txt"] and report.unchanged == 1
    assert enc2.encoded == ["Alpha lake is calm."]
    with pytest.raises(ValueError, match="did you mean 'gamma.txt'"):
        remove_documents(location, ["sub/gamma.txt"])
    assert [d.doc_id for d in list_documents(location)] == ["alpha.txt", "gamma.txt"]
    report = remove_documents(location, ["gamma.txt"])
    assert report.removed == ["gamma.txt"] and report.unchanged == 1
    assert [(d.doc_id, d.characters) for d in list_documents(location)] == [("alpha.txt", len("Alpha lake is calm."))]


def test_adding_files_keeps_the_indexs_own_chunking(location: str | Path, tmp_path: Path) -> None:
    # A library caller's chunking (12 tokens here, not the default) is what later additions use:
    # nothing already stored is re-embedded at the default.
    _index(location, FakeEncoder())
    stored = writable_store(location).summary()
    assert stored["chunking"] == {"max_tokens": 12, "overlap_sentences": 0}
    new = tmp_path / "delta.txt"
    new.write_text("Delta bay is shallow. Boats anchor in the delta bay at night. The tide is low in May.", encoding="utf-8")
    enc = FakeEncoder()
    report = add_files(location, [new], encoder=enc)
    assert report.added == ["delta.txt"] and report.unchanged == len(DOCS)
    assert enc.encoded and all(len(t.split()) <= 12 for t in enc.encoded)
    assert writable_store(location).summary()["chunking"] == {"max_tokens": 12, "overlap_sentences": 0}


def test_every_store_implements_the_one_interface(location: str | Path) -> None:
    """The pipeline reaches a store only through embeddings.stores.base: writing (IndexStore,
    StoreWriter.apply of a Plan), listing and searching (Store.search_dense/bm25/hybrid)."""
    from embeddings.stores import IndexStore, Store, StoreWriter, writable_store
    from embeddings.stores.base import IndexMeta, Plan
    from embeddings.stores.records import Hit
    from qa.retrieval.bm25 import tokenize

    enc = FakeEncoder()
    store = writable_store(location)
    assert isinstance(store, IndexStore) and not store.has_index() and store.summary() is None
    with store.writer() as writer:
        assert isinstance(writer, StoreWriter) and writer.meta() is None
        with pytest.raises(IndexLoadError, match="build one with"):
            writer.meta(required=True)
    _index(location, enc)
    with store.writer() as writer:
        meta = writer.meta(required=True)
        assert meta == IndexMeta(enc.name, enc.dimension, {"max_tokens": 12, "overlap_sentences": 0}, meta.tokenizer, None)
        assert sorted(writer.states()) == sorted(d.doc_id for d in DOCS)
        # An empty plan changes nothing.
        before = writer.counts()
        applied = writer.apply(Plan(meta), lambda batch: pytest.fail("nothing to embed"))
        assert (applied.documents, applied.chunks, applied.embedded_chunks) == (*before, 0)
    listed = store.documents()
    assert [d.doc_id for d in listed] == sorted(d.doc_id for d in DOCS) and not any(d.added for d in listed)
    assert store.summary()["embedding_model"] == enc.name
    index = load_index(location)
    assert isinstance(index, Store)
    query = enc.encode(["gamma port grain"])[0]
    tokens = tokenize("gamma port")
    for hits in (index.search_dense(query, 2), index.search_bm25(tokens, 2), index.search_hybrid(query, tokens, 2)):
        assert hits and all(isinstance(h, Hit) for h in hits) and len(hits) <= 2
        assert all(h.document.text[h.chunk.start : h.chunk.end] for h in hits)
    assert index.search_bm25(tokens, 1)[0].chunk.doc_id == "sub/gamma.txt"


@pytest.mark.parametrize(
    ("mode", "question", "expected"),
    [
        ("dense", "which port ships grain and coal", "sub/gamma.txt"),
        ("bm25", "where is part XJ-4471B", "sub/gamma.txt"),
        ("hybrid", "who lit the lighthouse lamp", "report.pdf"),
        ("bm25", "climbers summit", "beta.md"),
    ],
)
def test_retrieval_finds_the_expected_chunk_first(location: str | Path, mode: str, question: str, expected: str) -> None:
    enc = FakeEncoder()
    _index(location, enc)
    retriever = get_retriever(mode, load_index(location), encoder=enc)
    passages = retriever.retrieve(question, 3)
    assert passages and passages[0].doc_id == expected
    top = passages[0]
    assert top.document_text[top.start : top.end] == top.text
    assert set(top.components) == ({"dense"} if mode == "dense" else {"bm25"} if mode == "bm25" else {"rrf", "dense", "bm25"})
    if expected == "report.pdf":
        assert top.page == 2 and "Ingrid" in top.text


def test_a_question_of_stopwords_only(location: str | Path) -> None:
    enc = FakeEncoder()
    _index(location, enc)
    index = load_index(location)
    assert get_retriever("bm25", index, encoder=enc).retrieve("the and of", 3) == []
    hybrid = get_retriever("hybrid", index, encoder=enc).retrieve("the and of", 3)
    dense = get_retriever("dense", index, encoder=enc).retrieve("the and of", 3)
    assert [p.chunk_id for p in hybrid] == [p.chunk_id for p in dense]


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_passages_and_citations_are_identical_across_stores(pg_url: str, tmp_path: Path, mode: str, fake_reader) -> None:
    answers = {}
    for where in (tmp_path / "index", pg_url):
        enc = FakeEncoder()
        _index(where, enc)
        retriever = get_retriever(mode, load_index(where), encoder=enc)
        answers[is_store_url(where)] = [
            ask(q, index=where, retriever=retriever, reader=fake_reader, top_k=3)
            for q in ("who lit the lighthouse lamp", "which port ships grain", "XJ-4471B", "where do fishermen go in spring")
        ]
    for directory, postgres in zip(answers[False], answers[True], strict=True):
        d, p = directory.to_dict(), postgres.to_dict()
        assert d["answer"] == p["answer"] and d["citations"] == p["citations"]
        # Exact vs HNSW on a handful of vectors, BM25 in NumPy vs in SQL: the same ranking and scores.
        assert [(x["doc_id"], x["chunk_id"], x["start"], x["end"]) for x in d["passages"]] == [
            (x["doc_id"], x["chunk_id"], x["start"], x["end"]) for x in p["passages"]
        ]
        for x, y in zip(d["passages"], p["passages"], strict=True):
            assert x["score"] == pytest.approx(y["score"], abs=1e-5)
            assert x["components"] == pytest.approx(y["components"], abs=1e-5)
        dp, pp = directory.passages[0], postgres.passages[0]
        assert (dp.doc_id, dp.chunk_id, dp.start, dp.end, dp.text, dp.page, dp.source) == (
            pp.doc_id, pp.chunk_id, pp.start, pp.end, pp.text, pp.page, pp.source
        )
        assert dp.document_text == pp.document_text and dp.pages == pp.pages


@pytest.mark.postgres
def test_keyword_scores_stay_equal_after_incremental_changes(pg_url: str, tmp_path: Path) -> None:
    """BM25's statistics in PostgreSQL (document frequencies, lengths) follow adds, replaces and removals."""
    steps = [
        DOCS,
        [_doc("beta.md", "Beta mountain has a port too. Grain climbers."), _doc("new.txt", "Port grain port coal.")],
        None,  # remove alpha.txt
    ]
    retrievers = {}
    for where in (tmp_path / "index", pg_url):
        enc = FakeEncoder()
        for docs in steps:
            if docs is None:
                remove_documents(where, ["alpha.txt"])
            else:
                _index(where, enc, docs)
        retrievers[is_store_url(where)] = get_retriever("bm25", load_index(where), encoder=enc)
    for question in ("port grain", "climbers summit", "coal port port", "alpha river"):
        d, p = (retrievers[k].retrieve(question, 10) for k in (False, True))
        assert [(x.chunk_id, round(x.score, 5)) for x in d] == [(x.chunk_id, round(x.score, 5)) for x in p], question


def test_another_model_is_refused_with_the_rebuild_command(location: str | Path) -> None:
    _index(location, FakeEncoder())
    with pytest.raises(IndexLoadError, match=r"built with embedding model 'fake/bag-of-words'.*--rebuild"):
        load_store(location, expect_model="sentence-transformers/all-MiniLM-L6-v2")
    assert load_store(location, expect_model="fake/bag-of-words") is not None


def test_missing_index_says_how_to_build_one(location: str | Path) -> None:
    with pytest.raises(IndexLoadError, match="python -m qa index DOCS_DIR --index"):
        load_index(location)


def test_rebuild_with_another_model_replaces_everything(location: str | Path) -> None:
    _index(location, FakeEncoder())

    class Wider(FakeEncoder):
        name = "fake/wider"
        dimension = 96

    wider = Wider()
    report = _index(location, wider)
    assert "re-embedding everything" in report.note and report.added == sorted(d.doc_id for d in DOCS)
    index = load_store(location, expect_model="fake/wider")
    assert index.dimension == 96
    passages = get_retriever("dense", load_index(location), encoder=wider).retrieve("port grain coal", 1)
    assert passages[0].doc_id == "sub/gamma.txt"


def test_adding_to_an_index_of_another_encoder_variant_keeps_every_document(location: str | Path, docs_dir: Path, tmp_path: Path) -> None:
    """``qa index`` under one encoder variant, then ``qa add`` (or an upload) under another: the
    add re-embeds everything the index holds -- the folder's documents from their stored text --
    and drops nothing (it used to leave the added file alone in a new index)."""
    index_folder(docs_dir, location, encoder=FakeEncoder())
    other = FakeEncoder()
    other.variant = "onnx-q8@9"
    note = tmp_path / "mine" / "note.txt"
    note.parent.mkdir()
    note.write_text("Epsilon station logs wind speed hourly.", encoding="utf-8")
    report = add_files(location, [note], encoder=other)
    assert "encoder variant" in report.note and report.removed == []
    assert report.embedded_chunks == report.chunks  # everything, with the new variant
    listed = {d.doc_id: d.origin for d in list_documents(location)}
    assert listed == {"alpha.txt": "folder", "beta.md": "folder", "sub/gamma.txt": "folder", "note.txt": "added"}
    index = load_store(location)
    assert index.encoder_variant == "onnx-q8@9"
    assert index.document("sub/gamma.txt").text == (docs_dir / "sub" / "gamma.txt").read_text(encoding="utf-8")
    passages = get_retriever("dense", load_index(location), encoder=other).retrieve("port grain coal", 1)
    assert passages[0].doc_id == "sub/gamma.txt"
    # The folder's documents stay the folder's: a sync still drops one that leaves it.
    (docs_dir / "beta.md").unlink()
    assert index_folder(docs_dir, location, encoder=other).removed == ["beta.md"]


def test_a_document_removed_in_a_rebuild_does_not_come_back_in_the_next(location: str | Path, docs_dir: Path, tmp_path: Path) -> None:
    enc = FakeEncoder()
    index_folder(docs_dir, location, encoder=enc)
    note = tmp_path / "mine" / "note.txt"
    note.parent.mkdir()
    note.write_text("Epsilon station logs wind speed hourly.", encoding="utf-8")
    add_files(location, [note], encoder=enc)
    report = update_index(location, [], remove={"note.txt"}, rebuild=True, encoder=enc)
    assert report.removed == ["note.txt"] and "note.txt" not in {d.doc_id for d in list_documents(location)}
    index_folder(docs_dir, location, encoder=enc, rebuild=True)  # its kept bytes went with it
    assert {d.doc_id for d in list_documents(location)} == {"alpha.txt", "beta.md", "sub/gamma.txt"}


def test_vector_and_tsvector_literals_round_trip() -> None:
    np = pytest.importorskip("numpy")
    postgres = pytest.importorskip("embeddings.stores.postgres")
    vectors = np.random.default_rng(0).standard_normal((50, 64)).astype(np.float32)
    for v in vectors:
        parsed = np.array([float(x) for x in postgres.vector_literal(v)[1:-1].split(",")], dtype=np.float32)
        assert (parsed == v).all()
    assert postgres.tsvector_literal(["port", "grain", "port", "o'neil"]) == "'port':1,3 'grain':2 'o''neil':4"
    assert postgres.query_terms(["port", "port", "x" * 600, "a\\b"]) == ["'port'", "'a\\\\b'"]


# --- Which store serves a URL: found by the modules' own declarations -------------------------


def test_postgres_is_found_by_its_declaration_without_importing_its_driver() -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = (
        "import sys, embeddings.stores as s; found = s.url_stores(); "
        "print(found['postgresql'].module, found['postgres'].store_class, found['postgres'].extra, "
        "'embeddings.stores.postgres' in sys.modules, 'psycopg' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout.split()
    assert out == ["embeddings.stores.postgres", "PostgresStore", "postgres", "False", "False"]


@pytest.mark.parametrize("location", ["C:/Users/me/index", "index", "./postgresql/index", "/srv/qa-index"])
def test_paths_are_not_urls(location: str) -> None:
    assert not is_store_url(location)


def test_an_unknown_scheme_is_refused_with_the_known_ones() -> None:
    from embeddings.stores import open_store

    assert is_store_url("mysql://u:secret@db/qa")
    with pytest.raises(ValueError) as err:
        open_store("mysql://u:secret@db/qa")
    message = str(err.value)
    assert "mysql://" in message and "postgresql://" in message and "folder path" in message
    assert "secret" not in message  # the password never reaches a message


@pytest.fixture
def extra_store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A folder added to ``embeddings.stores``'s search path: a module written there is a module
    of the package, as a new file in ``embeddings/stores/`` would be."""
    import sys

    import embeddings.stores as stores

    folder = tmp_path / "stores"
    folder.mkdir()
    monkeypatch.setattr(stores, "__path__", [*stores.__path__, str(folder)])
    yield folder
    stores.close_stores()
    for name in [m for m in sys.modules if m.startswith("embeddings.stores.qa_test_")]:
        del sys.modules[name]


def test_a_third_store_is_one_module(extra_store_dir: Path) -> None:
    from embeddings.stores import load_store, open_store, writable_store

    (extra_store_dir / "qa_test_memory.py").write_text(
        '"""A store that serves mem:// URLs."""\n'
        'URL_SCHEMES = ("mem", "memory")  # both spellings\n'
        'URL_STORE = "MemoryStore"\n'
        'URL_EXTRA = "memory"\n\n'
        "class MemoryStore:\n"
        "    def __init__(self, url):\n"
        "        self.url, self.closed = url, False\n"
        "    def refresh(self, expect_model=None):\n"
        "        self.expected = expect_model\n"
        "        return self\n"
        "    def close(self):\n"
        "        self.closed = True\n",
        encoding="utf-8",
    )
    store = open_store(" MEM://shelf/one ")
    assert type(store).__name__ == "MemoryStore" and store.url == "MEM://shelf/one"
    assert open_store("MEM://shelf/one") is store and writable_store("MEM://shelf/one") is store
    assert load_store("MEM://shelf/one", expect_model="m").expected == "m"
    assert open_store("memory://x") is not store


def test_a_store_without_its_driver_names_the_extra(extra_store_dir: Path) -> None:
    from embeddings.stores import open_store

    (extra_store_dir / "qa_test_missing.py").write_text(
        'import qa_test_driver_that_is_not_installed\nURL_SCHEMES = ("nodriver",)\nURL_STORE = "Store"\nURL_EXTRA = "nodriver"\n',
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=r"needs the nodriver extra .*pip install -e '\.\[nodriver\]'"):
        open_store("nodriver://host/db")


def _set_stored_tokenizer(location: str | Path, value: str) -> None:
    """Make the index look built by a release with another BM25 tokenizer."""
    if is_store_url(str(location)):
        import psycopg

        with psycopg.connect(str(location), autocommit=True) as conn:
            conn.execute("UPDATE qa_meta SET value = %s WHERE key = 'tokenizer'", (value,))
        return
    import json

    from embeddings.stores.index import current_generation

    manifest = current_generation(Path(location)) / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["tokenizer"] = value
    manifest.write_text(json.dumps(raw))


def test_a_folder_sync_after_a_tokenizer_change_keeps_other_folders_documents(location: str | Path, tmp_path: Path) -> None:
    """A new release's tokenizer re-indexes the keywords; the PostgreSQL writer used to call the
    index unreadable instead, and a sync of one folder rebuilt it from that folder alone."""
    enc = FakeEncoder()
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, name, text in ((first, "a.txt", "Alpha river flows north."), (second, "b.txt", "Beta mountain is tall.")):
        folder.mkdir()
        (folder / name).write_text(text, encoding="utf-8")
        index_folder(folder, location, encoder=enc)
    _set_stored_tokenizer(location, "an-older-tokenizer")
    with pytest.raises(IndexLoadError, match="tokenizer"):
        load_index(location)  # questions are refused until it is re-indexed
    report = index_folder(first, location, encoder=enc)
    assert report.removed == [] and "tokenizer" in report.note
    assert {d.doc_id for d in list_documents(location)} == {"a.txt", "b.txt"}
    assert load_store(location).document("b.txt").text == "Beta mountain is tall."


def test_a_removal_from_an_index_of_an_older_tokenizer_is_not_reported_as_failed(location: str | Path, tmp_path: Path) -> None:
    """PostgreSQL removed the document, then said the index needed a rebuild (as if nothing happened)."""
    enc = FakeEncoder()
    _index(location, enc)
    _set_stored_tokenizer(location, "an-older-tokenizer")
    assert remove_documents(location, ["beta.md"]).removed == ["beta.md"]
    assert "beta.md" not in {d.doc_id for d in list_documents(location)}
