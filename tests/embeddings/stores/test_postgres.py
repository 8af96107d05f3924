"""PostgreSQL store only: writers' lock, atomic replace, the shared pool under 20 callers,
kill -9 mid-index, a server restart, the schema version, and the CLI/chat entry points."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed: pip install -e '.[postgres]'")

from embeddings.encoders.encoder import variant_tag
from embeddings.stores import display_location, open_store
from embeddings.stores.index import IndexLoadError
from embeddings.stores.postgres import StoreUnavailableError
from qa.ingest.documents import Document
from qa.ingest.indexing import list_documents, update_index
from qa.pipeline import ask, load_index
from qa.retrieval.retrievers import StoreRetriever, get_retriever
from tests.conftest import ROOT, FakeEncoder

pytestmark = pytest.mark.postgres


def _doc(doc_id: str, text: str) -> Document:
    return Document(doc_id, f"/docs/{doc_id}", text, hashlib.sha256(text.encode()).hexdigest())


def _docs(n: int) -> list[Document]:
    return [
        _doc(f"doc{i:02d}.txt", " ".join(f"Sentence {j} of document {i} mentions topic{i} and river{j}." for j in range(6)))
        for i in range(n)
    ]


def test_second_writer_waits_or_fails_clearly(pg_url: str) -> None:
    update_index(pg_url, _docs(2), encoder=FakeEncoder())
    store = open_store(pg_url)
    with store.writer(), pytest.raises(RuntimeError, match="being updated by another process.*--wait"):
        update_index(pg_url, _docs(3), encoder=FakeEncoder(), lock_wait_s=0.3)
    # The lock is free again; a writer that waits gets it once the holder is done.
    released = threading.Event()

    def hold() -> None:
        with store.writer():
            released.wait(5)
            time.sleep(0.5)

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.3)
    released.set()
    started = time.monotonic()
    report = update_index(pg_url, _docs(3), encoder=FakeEncoder(), lock_wait_s=10)
    holder.join()
    assert report.added == ["doc02.txt"] and time.monotonic() - started >= 0.2


def test_a_replaced_document_is_never_seen_half_written(pg_url: str) -> None:
    version_a = " ".join(f"Marker alpha version line {i}." for i in range(3))
    version_b = " ".join(f"Marker bravo version line {i}." for i in range(7))
    enc = FakeEncoder()
    kw = {"encoder": enc, "max_tokens": 5, "overlap_sentences": 0}
    update_index(pg_url, [_doc("other.txt", "Nothing to see."), _doc("x.txt", version_a)], **kw)
    store = open_store(pg_url).refresh()
    chunks_a = list_documents(pg_url)[1].chunks
    update_index(pg_url, [_doc("x.txt", version_b)], **kw)
    chunks_b = list_documents(pg_url)[1].chunks
    assert (chunks_a, chunks_b) == (3, 7)

    stop = threading.Event()
    seen: list[tuple[str, int]] = []
    errors: list[BaseException] = []

    def read() -> None:
        retriever = StoreRetriever("bm25", store)
        while not stop.is_set():
            try:
                passages = [p for p in retriever.retrieve("marker version", 50) if p.doc_id == "x.txt"]
                versions = {("alpha" in p.text, "bravo" in p.text) for p in passages}
                texts = {p.document_text for p in passages}
                assert len(versions) == 1 and len(texts) == 1, (versions, len(texts))
                version = "a" if "alpha" in passages[0].text else "b"
                assert all(p.document_text == (version_a if version == "a" else version_b) for p in passages)
                seen.append((version, len(passages)))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    for n in range(12):
        update_index(pg_url, [_doc("x.txt", version_a if n % 2 == 0 else version_b)], **kw)
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors[0]
    assert {v for v, _ in seen} == {"a", "b"}, "readers should have seen both versions"
    assert {(v, n) for v, n in seen} <= {("a", chunks_a), ("b", chunks_b)}


def test_twenty_concurrent_ask_callers_share_the_pool(pg_url: str, fake_reader) -> None:
    enc = FakeEncoder()
    update_index(pg_url, _docs(30), encoder=enc, max_tokens=12, overlap_sentences=0)
    store = open_store(pg_url)
    questions = [f"which sentence mentions topic{i % 30} and river{i % 6}" for i in range(100)]
    retrievers = {m: StoreRetriever(m, store, enc) for m in ("dense", "bm25", "hybrid")}
    expected = {
        (q, m): ask(q, index=pg_url, retriever=r, reader=fake_reader).to_dict()
        for q in questions[:10]
        for m, r in retrievers.items()
    }

    def one(i: int) -> tuple[tuple[str, str], dict]:
        q, m = questions[i % 10], ("dense", "bm25", "hybrid")[i % 3]
        return (q, m), ask(q, index=pg_url, retriever=retrievers[m], reader=fake_reader).to_dict()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(200)))  # any exception would propagate here
    assert len(results) == 200
    for key, answer in results:
        assert answer == expected[key]
    assert [expected[(q, "bm25")]["citations"][0]["doc_id"] for q in questions[:10]] == [f"doc{i:02d}.txt" for i in range(10)]
    assert store._get_pool().get_stats()["pool_size"] <= store.pool_size


def test_server_restart_gives_a_clear_error_then_answers_again(pg_server, pg_url: str, fake_reader) -> None:
    enc = FakeEncoder()
    update_index(pg_url, _docs(3), encoder=enc)
    store = open_store(pg_url)
    store.close()
    store.timeout_s = 2.0  # the pool reopens with it on next use
    retriever = StoreRetriever("hybrid", store, enc)
    assert ask("topic1 river2", index=pg_url, retriever=retriever, reader=fake_reader).citations[0].doc_id == "doc01.txt"
    pg_server.stop_server("fast")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="cannot reach the PostgreSQL index .*Questions work again"):
            ask("topic1 river2", index=pg_url, retriever=retriever, reader=fake_reader)
        assert time.monotonic() - started < 15
    finally:
        pg_server.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            answer = ask("topic2 river3", index=pg_url, retriever=retriever, reader=fake_reader)
            break
        except StoreUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert answer.citations[0].doc_id == "doc02.txt"
    assert open_store(pg_url) is store  # the same store object and pool, no restart of the app


_INDEXER = textwrap.dedent(
    """
    import sys, time, hashlib
    sys.path.insert(0, {root!r})
    from tests.conftest import FakeEncoder
    from qa.ingest.documents import Document
    from qa.ingest.indexing import update_index

    class Slow(FakeEncoder):
        def encode(self, texts, **kw):
            time.sleep(0.04 * len(texts))  # embedding costs time per chunk: 6 chunks a document
            return super().encode(texts, **kw)

    docs = [Document(f"doc{{i:02d}}.txt", "s", " ".join(f"Sentence {{j}} of document {{i}} mentions topic{{i}} and river{{j}}." for j in range(6)), "")
            for i in range(12)]
    docs = [Document(d.doc_id, d.source, d.text, hashlib.sha256(d.text.encode()).hexdigest()) for d in docs]
    print("start", flush=True)
    update_index({url!r}, docs, encoder=Slow(), max_tokens=12, overlap_sentences=0)
    print("done", flush=True)
    """
)


def test_kill_9_mid_index_leaves_whole_documents_and_a_rerun_completes(pg_url: str) -> None:
    enc = FakeEncoder()
    update_index(pg_url, _docs(1), encoder=enc, max_tokens=12, overlap_sentences=0)  # an existing index: incremental
    expected = {d.doc_id: d for d in _docs(12)}
    proc = subprocess.Popen([sys.executable, "-c", _INDEXER.format(root=str(ROOT), url=pg_url)], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(list_documents(pg_url)) < 4:
            assert proc.poll() is None, "the indexer ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    listed = {d.doc_id: d for d in list_documents(pg_url)}
    assert 4 <= len(listed) < 12
    probe = FakeEncoder()
    from qa.ingest.chunking import chunk_text

    for doc_id, info in listed.items():  # every stored document is whole: all its chunks, its full text
        assert info.characters == len(expected[doc_id].text)
        assert info.chunks == len(list(chunk_text(doc_id, expected[doc_id].text, probe.count_tokens, 12, 0)))
    rerun = FakeEncoder()
    report = update_index(pg_url, list(expected.values()), encoder=rerun, max_tokens=12, overlap_sentences=0, lock_wait_s=10)
    assert report.added == sorted(set(expected) - set(listed)) and report.unchanged == len(listed)
    assert {t.split(" mentions ")[0].split(" of document ")[1] for t in rerun.encoded} == {
        str(int(d[3:5])) for d in report.added
    }
    assert len(list_documents(pg_url)) == 12


def test_another_schema_version_is_refused_with_the_rebuild_command(pg_url: str) -> None:
    update_index(pg_url, _docs(1), encoder=FakeEncoder())
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE qa_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(IndexLoadError, match=r"schema version '999'.*--rebuild"):
        load_index(pg_url)
    report = update_index(pg_url, _docs(2), encoder=FakeEncoder(), rebuild=True)
    assert report.added == ["doc00.txt", "doc01.txt"]
    assert load_index(pg_url).counts()[0] == 2


def test_an_encoder_of_another_dimension_is_refused(pg_url: str) -> None:
    update_index(pg_url, _docs(1), encoder=FakeEncoder())

    class Other(FakeEncoder):
        name = "fake/other"
        dimension = 32

    with pytest.raises(IndexLoadError, match=r"'fake/other' \(dimension 32\).*--rebuild"):
        get_retriever("dense", load_index(pg_url), encoder=Other())


def test_the_encoder_variant_is_recorded_and_another_is_refused(pg_url: str) -> None:
    class Variant(FakeEncoder):
        def __init__(self, variant: str) -> None:
            super().__init__()
            self.variant = variant

    update_index(pg_url, _docs(2), encoder=Variant("onnx-int8"))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT value FROM qa_meta WHERE key = 'encoder_variant'").fetchone() == ("onnx-int8",)
    store = load_index(pg_url)
    assert store.encoder_variant == "onnx-int8"
    assert get_retriever("dense", store, encoder=Variant("onnx-int8")).retrieve("topic1", 1)
    with pytest.raises(IndexLoadError, match=r"variant 'onnx-int8' but questions would be embedded with 'fp32'.*--rebuild"):
        get_retriever("hybrid", store, encoder=Variant("fp32"))
    # An index from before the variant was recorded is fp32; updating it with another variant re-embeds it.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM qa_meta WHERE key = 'encoder_variant'")
    store = load_index(pg_url)
    assert store.encoder_variant is None
    get_retriever("dense", store, encoder=Variant("fp32"))
    with pytest.raises(IndexLoadError, match=r"variant 'fp32' but questions would be embedded with 'onnx-int8'"):
        get_retriever("dense", store, encoder=Variant("onnx-int8"))
    report = update_index(pg_url, _docs(2), encoder=Variant("onnx-int8"))
    assert "encoder variant 'fp32'" in report.note and report.embedded_chunks > 0
    assert load_index(pg_url).encoder_variant == "onnx-int8"
    # onnx-q8 is recorded with its revision; vectors of revision 1 (the bare name) are refused
    # for questions and re-embedded by the next update.
    update_index(pg_url, _docs(2), encoder=Variant("onnx-q8"))
    assert load_index(pg_url).encoder_variant == variant_tag("onnx-q8") != "onnx-q8"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE qa_meta SET value = 'onnx-q8' WHERE key = 'encoder_variant'")
    with pytest.raises(IndexLoadError, match=r"revision 1 of encoder variant 'onnx-q8'.*--rebuild"):
        get_retriever("dense", load_index(pg_url), encoder=Variant("onnx-q8"))
    report = update_index(pg_url, _docs(2), encoder=Variant("onnx-q8"))
    assert "'onnx-q8'" in report.note and report.embedded_chunks > 0
    assert load_index(pg_url).encoder_variant == variant_tag("onnx-q8")


def test_keyword_candidates_are_bounded_for_common_words(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from qa import config

    docs = [_doc(f"c{i:03d}.txt", f"Common words everywhere number{i}.") for i in range(60)]
    docs.append(_doc("rare.txt", "Common words and the rare zircon."))
    update_index(pg_url, docs, encoder=FakeEncoder())
    store = open_store(pg_url).refresh()
    monkeypatch.setattr(config, "PG_KEYWORD_CANDIDATES_PER_TERM", 10)
    # "common" matches 61 chunks but only 10 of them become candidates; candidates are bounded per
    # term, so the chunk with the rare term (stored last) is still scored and wins.
    hits = store.search("bm25", 5, tokens=["common", "zircon"], depth=5)
    assert hits[0].document.doc_id == "rare.txt"
    assert len(store.search("bm25", 5, tokens=["common"], depth=5)) == 5


def test_password_is_masked_in_messages() -> None:
    assert display_location("postgresql://qa:s3cret@db.example:5432/qa") == "postgresql://qa:***@db.example:5432/qa"
    assert display_location("postgresql://qa@db/qa") == "postgresql://qa@db/qa"
    assert display_location("postgresql://db.example:5432/qa") == "postgresql://db.example:5432/qa"
    # Where urlsplit stops at # or ? but libpq reads a password, and libpq's password parameter.
    assert display_location("postgresql://qa:ab#cd@db/qa") == "postgresql://qa:***@db/qa"
    assert display_location("postgresql://qa:ab?cd@db/qa") == "postgresql://qa:***@db/qa"
    assert display_location("postgresql://qa@db/qa?sslmode=require&password=s3cret") == "postgresql://qa@db/qa?sslmode=require&password=***"
    assert display_location("postgresql://qa@db/qa?pass%77ord=s3cret") == "postgresql://qa@db/qa?pass%77ord=***"


def test_part_of_a_password_with_an_unencoded_at_never_reaches_a_message_or_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """libpq cuts ``qa:abc@SECRETPART@127.0.0.1`` at the first ``@`` and fails to resolve the
    host ``SECRETPART@127.0.0.1``: its error, repeated by us and by psycopg-pool's log, would show
    part of the password."""
    import logging

    url = "postgresql://qa:abc@SECRETPART@127.0.0.1:1/nodb"
    store = open_store(url)
    store.timeout_s = 1.0
    with caplog.at_level(logging.DEBUG), pytest.raises(StoreUnavailableError) as caught:
        store.summary()
    assert "SECRETPART" not in str(caught.value) and "***" in str(caught.value), caught.value
    assert "SECRETPART" not in caplog.text
    store.close()


def test_a_missing_database_or_bad_url_option_is_named_not_called_an_outage(pg_url: str) -> None:
    """The pool only times out; the error then carries the server's (or libpq's) own reason."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(pg_url)
    no_database = urlunsplit(parts._replace(path="/nosuchdb"))
    bad_option = urlunsplit(parts._replace(query="sslmode=bogus"))
    for url, reason in ((no_database, 'database "nosuchdb" does not exist'), (bad_option, "invalid sslmode value")):
        store = open_store(url)
        store.timeout_s = 1.0
        with pytest.raises(StoreUnavailableError, match=reason):
            store.summary()
        store.close()


def test_an_unparsable_url_is_refused_without_repeating_the_password() -> None:
    with pytest.raises(ValueError, match="percent-encoded") as caught:
        open_store("postgresql://qa:p%zzs3cret@db/qa")
    assert "s3cret" not in str(caught.value)


def test_qa_add_never_prints_the_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import qa.ingest.indexing as indexing
    from qa.tools.cli import main

    monkeypatch.setattr(indexing, "_manifest", lambda index_dir: None)  # no server needed: every file is refused
    odd = tmp_path / "notes.xyz"
    odd.write_text("not a supported format", encoding="utf-8")
    main(["add", str(odd), "--index", "postgresql://qa:s3cret@127.0.0.1:1/qa"])
    out = capsys.readouterr()
    assert "qa:***@127.0.0.1" in out.out + out.err and "s3cret" not in out.out + out.err


def test_a_connection_lost_while_writing_is_a_clear_error_and_loses_nothing(pg_url: str) -> None:
    update_index(pg_url, _docs(3), encoder=FakeEncoder())
    store = open_store(pg_url)
    with pytest.raises(StoreUnavailableError, match="while writing.*run the command again"):
        with store.writer() as writer:
            with psycopg.connect(pg_url, autocommit=True) as other:  # the server drops the writer's session
                other.execute("SELECT pg_terminate_backend(%s)", (writer.conn.info.backend_pid,))
            writer.states()
    assert {d.doc_id for d in list_documents(pg_url)} == {"doc00.txt", "doc01.txt", "doc02.txt"}
    update_index(pg_url, _docs(4), encoder=FakeEncoder())  # the lock went with the session
    assert len(list_documents(pg_url)) == 4


def test_cli_list_remove_and_ask_options_take_a_url(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from qa.tools.cli import build_parser, main

    update_index(pg_url, _docs(2), encoder=FakeEncoder())
    assert build_parser().parse_args(["ask", "q", "--index", pg_url]).index == pg_url
    assert main(["list", "--index", pg_url, "--json"]) == 0
    out = capsys.readouterr().out
    assert '"doc_id": "doc00.txt"' in out and '"doc_id": "doc01.txt"' in out
    assert main(["remove", "doc00.txt", "--index", pg_url]) == 0
    assert re.match(r"removed 1 document \(\d+ chunks?\): doc00\.txt; 1 document \(\d+ chunks?\) left in ", capsys.readouterr().out)
    assert main(["remove", "nope.txt", "--index", pg_url]) == 1
    assert "no document 'nope.txt'" in capsys.readouterr().err
    assert [d.doc_id for d in list_documents(pg_url)] == ["doc01.txt"]


def test_chat_helpers_work_on_a_url(pg_url: str, tmp_path: Path) -> None:
    from ui.app import documents_note, documents_view, index_directory, index_summary, remove_document, upload_documents

    update_index(pg_url, _docs(2), encoder=FakeEncoder())
    assert index_directory(pg_url) == pg_url
    assert "PostgreSQL index" in documents_note(pg_url)
    assert "2 documents" in index_summary(pg_url)
    upload = tmp_path / "upload.txt"
    upload.write_text("Uploaded note about zebras.", encoding="utf-8")
    status = upload_documents(pg_url, [str(upload)], encoder=FakeEncoder())
    assert "upload.txt" in status
    _, ids = documents_view(pg_url)
    assert ids == ["doc00.txt", "doc01.txt", "upload.txt"]
    remove_document(pg_url, "doc00.txt")
    assert documents_view(pg_url)[1] == ["doc01.txt", "upload.txt"]


def test_nul_characters_are_skipped_and_huge_words_are_not_searched(pg_url: str) -> None:
    blob = "q" * 3000  # over PostgreSQL's 2047-byte lexeme limit
    docs = [_doc("nul.txt", "bad\x00text here"), _doc("blob.txt", f"Normal words and {blob} then zebra.")]
    report = update_index(pg_url, docs, encoder=FakeEncoder())
    assert report.added == ["blob.txt"]
    assert [s.doc_id for s in report.skipped] == ["nul.txt"] and "NUL" in report.skipped[0].reason
    passages = StoreRetriever("bm25", open_store(pg_url).refresh()).retrieve(f"zebra {blob}", 3)
    assert [p.doc_id for p in passages] == ["blob.txt"]


def _qa(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "qa", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_cli_end_to_end_with_the_real_encoder(pg_url: str, tmp_path: Path) -> None:
    """``qa index/list/ask/remove --index postgresql://...`` with the packaged MiniLM; the same
    passages as the directory store for the same question."""
    from qa.ingest.indexing import index_folder
    from qa.reader import SHIPPED_READER_DIR

    seeds = ROOT / "seeds"
    done = _qa("index", str(seeds), "--index", pg_url)
    assert done.returncode == 0, done.stderr
    assert "added" in done.stdout and "0 unchanged" in done.stdout
    again = _qa("index", str(seeds), "--index", pg_url)
    assert again.returncode == 0 and "(0 embedded)" in again.stdout, again.stdout + again.stderr
    listed = _qa("list", "--index", pg_url)
    assert listed.returncode == 0 and "japan_defense_minister_turkey_visit.txt" in listed.stdout

    index_folder(seeds, tmp_path / "idx")
    question = "Which European country joined the drone coalition alongside Turkey?"
    for mode in ("dense", "hybrid"):
        d = get_retriever(mode, load_index(tmp_path / "idx")).retrieve(question, 3)
        p = get_retriever(mode, load_index(pg_url)).retrieve(question, 3)
        if mode == "dense":
            assert [(x.chunk_id, x.start, x.end) for x in d] == [(x.chunk_id, x.start, x.end) for x in p]
        assert (d[0].chunk_id, d[0].start, d[0].end, d[0].text) == (p[0].chunk_id, p[0].start, p[0].end, p[0].text)

    if (SHIPPED_READER_DIR / "model.safetensors").is_file():
        import json

        asked = {where: _qa("ask", question, "--index", str(where), "--json") for where in (pg_url, tmp_path / "idx")}
        assert all(r.returncode == 0 for r in asked.values()), [r.stderr for r in asked.values()]
        answers = [json.loads(r.stdout) for r in asked.values()]
        assert answers[0]["answer"] == answers[1]["answer"] and answers[0]["citations"] == answers[1]["citations"]

    removed = _qa("remove", "japan_defense_minister_turkey_visit.txt", "--index", pg_url)
    assert removed.returncode == 0, removed.stderr
    assert list_documents(pg_url) == []


def test_kill_9_during_a_first_build_leaves_no_index_and_a_rerun_builds_it(pg_url: str) -> None:
    """A first build (or --rebuild) embeds everything, then writes it in one transaction."""
    proc = subprocess.Popen([sys.executable, "-c", _INDEXER.format(root=str(ROOT), url=pg_url)], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"start"
        time.sleep(1.0)  # 72 chunks at 40 ms take 3 s: still embedding
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    store = open_store(pg_url)
    assert not store.has_index()
    with pytest.raises(IndexLoadError, match="no index at"):
        load_index(pg_url)
    report = update_index(pg_url, _docs(12), encoder=FakeEncoder(), max_tokens=12, overlap_sentences=0, lock_wait_s=10)
    assert len(report.added) == 12 and store.counts()[0] == 12


def test_readers_see_documents_another_process_adds_once_committed(pg_url: str) -> None:
    """The chat keeps answering while another process indexes, and finds each new document after its commit."""
    enc = FakeEncoder()
    update_index(pg_url, _docs(1), encoder=enc, max_tokens=12, overlap_sentences=0)
    store = open_store(pg_url).refresh()
    retriever = StoreRetriever("bm25", store)
    proc = subprocess.Popen([sys.executable, "-c", _INDEXER.format(root=str(ROOT), url=pg_url)], cwd=ROOT, stdout=subprocess.PIPE)
    seen: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            found = {p.doc_id for i in range(12) for p in retriever.retrieve(f"topic{i}", 1)}
            seen.append(len(found))
            time.sleep(0.05)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert seen == sorted(seen), "a committed document never disappears"
    assert seen[0] < 12 and len(set(seen)) > 2, seen  # documents appeared one by one while answering
    assert len({p.doc_id for i in range(12) for p in retriever.retrieve(f"topic{i}", 1)}) == 12


def test_bench_store_runs_on_a_small_corpus(pg_url: str) -> None:
    from qa.tools.bench import bench_store

    results = bench_store(chunks=300, url=pg_url, questions=20)
    assert results["chunks"] == 300 and results["postgres_dense_uses_hnsw"] in (True, False)
    assert 0.9 <= results["postgres_dense_recall_at_10"] <= 1.0  # 300 vectors: HNSW is (nearly) exact
    for store in ("directory", "postgres"):
        for mode in ("dense", "hybrid"):
            assert results[f"{store}_{mode}_c8_p95_ms"] > 0


def test_halfvec_store_halves_vectors_and_answers_alike(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qa import config

    docs = _docs(6)
    update_index(tmp_path / "idx", docs, encoder=FakeEncoder(), max_tokens=12, overlap_sentences=0)
    monkeypatch.setattr(config, "PG_VECTOR_TYPE", "halfvec")
    update_index(pg_url, docs, encoder=FakeEncoder(), max_tokens=12, overlap_sentences=0)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(
            "SELECT udt_name FROM information_schema.columns WHERE table_name = 'qa_chunks' AND column_name = 'embedding'"
        ).fetchone()[0] == "halfvec"
        assert conn.execute("SELECT value FROM qa_meta WHERE key = 'vector_type'").fetchone()[0] == "halfvec"
    monkeypatch.setattr(config, "PG_VECTOR_TYPE", "vector")  # an existing index keeps its type
    update_index(pg_url, [*docs, _doc("extra.txt", "An extra topic99 document.")], encoder=FakeEncoder(), max_tokens=12, overlap_sentences=0)
    store = open_store(pg_url).refresh()
    assert store.vector_type == "halfvec"
    for question in ("topic3 river2", "sentence 4 of document 2 mentions topic2 and river4"):
        d = get_retriever("dense", load_index(tmp_path / "idx"), encoder=FakeEncoder()).retrieve(question, 3)
        p = get_retriever("dense", store, encoder=FakeEncoder()).retrieve(question, 3)
        assert d[0].chunk_id == p[0].chunk_id and d[0].score == pytest.approx(p[0].score, abs=2e-3)
    with pytest.raises(ValueError, match="QA_PG_VECTOR_TYPE"):
        monkeypatch.setattr(config, "PG_VECTOR_TYPE", "float8")
        update_index(pg_url, docs, encoder=FakeEncoder(), rebuild=True)
    assert open_store(pg_url).refresh().counts()[0] == 7  # the failed rebuild changed nothing


def test_a_common_word_scores_only_a_bounded_set_of_candidates(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from qa import config

    # Every chunk has "common"; BM25 prefers the shortest, stored last.
    docs = [_doc(f"c{i:03d}.txt", "Common " + " ".join(f"filler{j}" for j in range(61 - i)) + ".") for i in range(60)]
    update_index(pg_url, docs, encoder=FakeEncoder())
    store = open_store(pg_url).refresh()
    unbounded = store.search("bm25", 3, tokens=["common"], depth=3)
    assert [h.document.doc_id for h in unbounded] == ["c059.txt", "c058.txt", "c057.txt"]
    monkeypatch.setattr(config, "PG_KEYWORD_CANDIDATES_PER_TERM", 10)
    bounded = store.search("bm25", 3, tokens=["common"], depth=3)
    assert len(bounded) == 3 and not {h.document.doc_id for h in bounded} & {"c059.txt", "c058.txt", "c057.txt"}


def test_a_question_during_a_rebuild_is_told_so_instead_of_hanging(pg_url: str) -> None:
    """A rebuild holds the tables exclusively until it commits; readers used to wait for all of it
    on pooled connections (no lock timeout), and once the pool ran dry were told the server was down."""
    from embeddings.stores.postgres import PostgresStore

    update_index(pg_url, _docs(2), encoder=FakeEncoder())
    store = PostgresStore(pg_url, timeout_s=1.0)
    try:
        with psycopg.connect(pg_url) as rebuilding:  # what a rebuild's transaction holds
            rebuilding.execute("LOCK TABLE qa_meta IN ACCESS EXCLUSIVE MODE")
            outcome: list[BaseException | None] = []

            def question() -> None:
                try:
                    store.refresh()
                    outcome.append(None)
                except Exception as exc:  # noqa: BLE001 - inspected below
                    outcome.append(exc)

            asking = threading.Thread(target=question)
            asking.start()
            asking.join(10)
            rebuilding.rollback()  # the rebuild ends (and frees a question still waiting)
            asking.join()
        assert isinstance(outcome[0], StoreUnavailableError) and "being rebuilt" in str(outcome[0])
        assert store.refresh().embedding_model  # and answers again once it is done
    finally:
        store.close()


def test_a_writers_first_reads_wait_out_a_rebuild(pg_url: str) -> None:
    """What a writer reads before it takes the writers' lock (summary) waits as the writer would;
    only questions give up after the pool timeout."""
    from embeddings.stores.postgres import PostgresStore

    update_index(pg_url, _docs(2), encoder=FakeEncoder())
    store = PostgresStore(pg_url, timeout_s=1.0)
    try:
        with psycopg.connect(pg_url) as rebuilding:
            rebuilding.execute("LOCK TABLE qa_meta IN ACCESS EXCLUSIVE MODE")
            summaries: list[object] = []
            reading = threading.Thread(target=lambda: summaries.append(store.summary()))
            reading.start()
            reading.join(3.0)
            assert reading.is_alive()  # still waiting, past the 1 s a question would wait
            rebuilding.rollback()
            reading.join()
        assert summaries[0]["documents"] == 2
        with pytest.raises(StoreUnavailableError, match="being rebuilt"):  # questions still give up
            with psycopg.connect(pg_url) as rebuilding:
                rebuilding.execute("LOCK TABLE qa_meta IN ACCESS EXCLUSIVE MODE")
                store.refresh()
    finally:
        store.close()


def test_a_server_refusal_while_writing_keeps_its_own_message(pg_url: str) -> None:
    """Only a lost connection is called one: a statement timeout (also an OperationalError) is not."""
    update_index(pg_url, _docs(1), encoder=FakeEncoder())
    with pytest.raises(psycopg.errors.QueryCanceled):
        with open_store(pg_url).writer() as writer:
            writer.conn.execute("SET statement_timeout = 50")
            writer.conn.execute("SELECT pg_sleep(2)")
    assert len(list_documents(pg_url)) == 1


def test_tables_of_the_indexs_names_that_are_someone_elses_are_never_dropped(pg_url: str) -> None:
    """A database holding a user's own qa_documents (or a stray qa_meta of another shape) is
    refused with a message naming the tables, and every row of theirs stays."""
    from qa.ingest.indexing import add_documents

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE qa_documents (id serial, title text, body text)")
        conn.execute("INSERT INTO qa_documents (title, body) VALUES ('important', 'user data')")
    with pytest.raises(ValueError, match=r"holds tables named qa_documents that are not a qa index; nothing was changed"):
        update_index(pg_url, _docs(2), encoder=FakeEncoder(), remove_missing=True)
    with pytest.raises(ValueError, match="not a qa index"):
        add_documents(pg_url, _docs(1), encoder=FakeEncoder())
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT title, body FROM qa_documents").fetchall() == [("important", "user data")]
        conn.execute("DROP TABLE qa_documents")
        conn.execute("CREATE TABLE qa_meta (id int, note text)")
    with pytest.raises(IndexLoadError, match=r"qa_meta is not a qa index's"):
        list_documents(pg_url)
    with pytest.raises(IndexLoadError, match=r"qa_meta is not a qa index's"):
        update_index(pg_url, _docs(2), encoder=FakeEncoder(), remove_missing=True)


def test_an_index_in_a_schema_of_its_own_leaves_the_public_one_alone(pg_url: str) -> None:
    """``search_path=team2,public``: the index is built in team2 even though public holds one,
    and rebuilding it never drops public's; a schema alone (no pgvector type) or a missing one
    is refused with what to write instead."""
    from urllib.parse import quote

    update_index(pg_url, _docs(3), encoder=FakeEncoder(), remove_missing=True)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA team2")
    sep = "&" if "?" in pg_url else "?"
    team2 = f"{pg_url}{sep}options={quote('-csearch_path=team2,public')}"
    report = update_index(team2, _docs(2), encoder=FakeEncoder(), remove_missing=True)
    assert sorted(report.added) == sorted(d.doc_id for d in _docs(2)) and report.unchanged == 0
    update_index(team2, _docs(1), encoder=FakeEncoder(), remove_missing=True, rebuild=True)
    assert len(list_documents(pg_url)) == 3 and len(list_documents(team2)) == 1
    alone = f"{pg_url}{sep}options={quote('-csearch_path=team2')}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA team3")
    with pytest.raises(ValueError, match=r"pgvector's type vector is not in the search_path"):
        update_index(alone.replace("team2", "team3"), _docs(1), encoder=FakeEncoder(), remove_missing=True)
    with pytest.raises(IndexLoadError, match=r"none of the schemas in the URL's search_path \(nosuch\) exists"):
        update_index(alone.replace("team2", "nosuch"), _docs(1), encoder=FakeEncoder(), remove_missing=True)


def test_another_schemas_kept_uploads_are_never_read_or_deleted(pg_url: str) -> None:
    """public holds an index with an added document (its bytes kept in qa_originals); an index
    built, updated and trimmed in team2 (search_path team2,public) neither imports public's
    upload nor deletes its kept bytes; and a URL whose first schema has no index says where one is."""
    from urllib.parse import quote

    from qa.ingest.indexing import add_documents, remove_documents

    added = Document(doc_id="secret.txt", source="upload:secret.txt", text="The vault code is 7741.", sha256="ab" * 32, origin="added", data=b"The vault code is 7741.")
    add_documents(pg_url, [added], encoder=FakeEncoder())
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA team2")
        kept = conn.execute("SELECT count(*) FROM public.qa_originals").fetchone()[0]
    sep = "&" if "?" in pg_url else "?"
    team2 = f"{pg_url}{sep}options={quote('-csearch_path=team2,public')}"
    with pytest.raises(IndexLoadError, match=r"schema 'team2', the first of the search_path, holds no index, but schema 'public'"):
        list_documents(team2)
    update_index(team2, _docs(2), encoder=FakeEncoder(), remove_missing=True)
    update_index(team2, _docs(2), encoder=FakeEncoder(), remove_missing=True)
    remove_documents(team2, [_docs(2)[0].doc_id])
    assert [d.doc_id for d in list_documents(team2)] == [_docs(2)[1].doc_id]  # no secret.txt in team2
    assert [d.doc_id for d in list_documents(pg_url)] == ["secret.txt"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM public.qa_originals").fetchone()[0] == kept == 1


def test_every_piece_libpq_may_read_out_of_a_password_is_masked() -> None:
    from embeddings.stores.base import scrub_secrets

    url = "postgresql://qa:hunter2/xyzw@db/x"  # libpq: port 'hunter2', dbname 'xyzw@db/x'
    assert scrub_secrets("invalid port number: \"hunter2\"; database \"xyzw@db/x\"", url).count("***") == 2
    assert "SECRETPART" not in scrub_secrets("failed to resolve host 'SECRETPART@127.0.0.1'", "postgresql://qa:abc@SECRETPART@127.0.0.1/d")
    assert scrub_secrets("user \"qa\" failed", "postgresql://qa:longpassword@db/qa") == "user \"qa\" failed"  # nothing else masked
