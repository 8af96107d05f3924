"""Incremental indexing: only changed documents are embedded; removals; atomic failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from embeddings.stores.index import VectorIndex
from qa.ingest.indexing import index_folder
from qa.retrieval.retrievers import DenseRetriever


def test_first_build_then_noop(docs_dir: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    report = index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder, max_tokens=8)
    assert report.added == ["alpha.txt", "beta.md", "sub/gamma.txt"]
    assert report.embedded_chunks == report.chunks > 3
    again = index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder, max_tokens=8)
    assert (again.added, again.changed, again.removed, again.unchanged, again.embedded_chunks) == ([], [], [], 3, 0)


def test_changing_one_document_re_embeds_only_its_chunks(docs_dir: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder, max_tokens=8)
    fake_encoder.encoded.clear()
    (docs_dir / "beta.md").write_text("# Beta\n\nBeta mountain is very tall indeed.", encoding="utf-8")
    report = index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder, max_tokens=8)
    assert report.changed == ["beta.md"] and report.unchanged == 2
    index = VectorIndex.load(tmp_path / "idx")
    beta_texts = [index.chunk_text(int(r)) for r, c in zip(index.live_rows(), index.chunks, strict=True) if c.doc_id == "beta.md"]
    assert sorted(fake_encoder.encoded) == sorted(beta_texts)
    assert any("very tall" in t for t in beta_texts)
    # Vectors of the other documents were carried over and still retrieve them.
    hit = DenseRetriever(index, fake_encoder).retrieve("gamma port grain", k=1)[0]
    assert hit.doc_id == "sub/gamma.txt" and "grain" in hit.text


def test_deleting_a_document_removes_its_chunks(docs_dir: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder, max_tokens=8)
    (docs_dir / "alpha.txt").unlink()
    calls = fake_encoder.calls
    report = index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder, max_tokens=8)
    assert report.removed == ["alpha.txt"] and fake_encoder.calls == calls
    index = VectorIndex.load(tmp_path / "idx")
    assert "alpha.txt" not in index.documents
    assert all(c.doc_id != "alpha.txt" for c in index.chunks)
    assert len(index.vectors()) == len(index.chunks) == len(index)


def test_bad_files_are_reported_and_the_rest_indexed(docs_dir: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    (docs_dir / "bad.txt").write_bytes(b"\x00\x01garbage")  # (b"\xff\xfe..." now reads as UTF-16 with its mark)
    report = index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder)
    assert [Path(s.path).name for s in report.skipped] == ["bad.txt"]
    assert len(report.added) == 3
    assert "1 skipped" in report.summary()


def test_failure_mid_build_leaves_previous_index_loadable(docs_dir: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder, max_tokens=8)
    before = VectorIndex.load(tmp_path / "idx")

    class Exploding(type(fake_encoder)):
        def encode(self, texts, **kw):  # noqa: ANN001, ANN003, ANN202
            raise RuntimeError("out of memory")

    (docs_dir / "new.txt").write_text("A brand new document arrives.", encoding="utf-8")
    with pytest.raises(RuntimeError, match="out of memory"):
        index_folder(docs_dir, tmp_path / "idx", encoder=Exploding(), max_tokens=8)
    after = VectorIndex.load(tmp_path / "idx")
    assert after.chunks == before.chunks
    assert not [p for p in (tmp_path / "idx").iterdir() if p.name.startswith(".tmp")]


def test_changed_chunking_re_embeds_everything(docs_dir: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder, max_tokens=8)
    report = index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder, max_tokens=20)
    assert report.embedded_chunks == report.chunks
    assert "chunking" in report.note


def test_add_uploads_reports_progress(tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    from qa.ingest.indexing import add_uploads

    (tmp_path / "a.txt").write_text("Alpha text about rivers.", encoding="utf-8")
    (tmp_path / "b.txt").write_text("Beta text about mountains.", encoding="utf-8")
    seen: list[tuple[float, str]] = []
    report = add_uploads(
        tmp_path / "idx", [("a.txt", tmp_path / "a.txt"), ("b.txt", tmp_path / "b.txt")], encoder=fake_encoder,
        progress=lambda f, what: seen.append((f, what)),
    )
    assert report.added == ["a.txt", "b.txt"]
    assert [w for _, w in seen] == ["extracting a.txt", "extracting b.txt", "embedding and indexing 2 documents", "done"]
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1][0] == 1.0


def test_the_default_index_is_rebuilt_when_its_format_is_outdated(tmp_path: Path) -> None:
    """An index the project built itself (ensure_index) is rebuilt after an upgrade instead of
    refusing every question; the rebuilt one answers as configured."""
    import json

    from embeddings.stores.index import current_generation, read_manifest
    from qa.ingest.indexing import ensure_index

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Ankara is the capital of Turkey.", encoding="utf-8")
    index_dir = tmp_path / "idx"
    ensure_index(index_dir, docs)
    manifest_file = current_generation(index_dir) / "manifest.json"
    raw = json.loads(manifest_file.read_text())
    raw["format_version"] = 1  # what an index of the previous release says
    manifest_file.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="--rebuild"):
        read_manifest(index_dir)
    ensure_index(index_dir, docs)
    assert set(read_manifest(index_dir).documents) == {"a.txt"}
    # Postings of another BM25 tokenizer would not match questions' tokens: rebuilt too.
    manifest_file = current_generation(index_dir) / "manifest.json"
    raw = json.loads(manifest_file.read_text())
    raw["tokenizer"] = "an-older-tokenizer"
    manifest_file.write_text(json.dumps(raw))
    ensure_index(index_dir, docs)
    assert read_manifest(index_dir).tokenizer != "an-older-tokenizer"
    # Vectors of an earlier build of the configured encoder variant (revision 1 recorded the
    # bare name): re-embedded, and recorded with the current revision.
    from embeddings.encoders.encoder import encoder_variant, get_encoder, split_tag

    current = encoder_variant(get_encoder())
    manifest_file = current_generation(index_dir) / "manifest.json"
    raw = json.loads(manifest_file.read_text())
    assert raw["encoder_variant"] == current
    raw["encoder_variant"] = f"{split_tag(current)[0]}@0"  # a revision this version does not compute
    manifest_file.write_text(json.dumps(raw))
    ensure_index(index_dir, docs)
    assert read_manifest(index_dir).encoder_variant == current


def test_sources_are_absolute_so_a_sync_from_another_directory_still_drops_deleted_files(
    docs_dir: Path, tmp_path: Path, fake_encoder, monkeypatch  # noqa: ANN001
) -> None:
    """`qa index docs` run in one directory, then the same folder synced from another: the
    sources (absolute) still place every document in that folder, so a deleted file goes."""
    from qa.ingest.indexing import list_documents

    monkeypatch.chdir(tmp_path)
    index_folder("docs", tmp_path / "idx", encoder=fake_encoder)
    sources = {d.doc_id: d.source for d in list_documents(tmp_path / "idx")}
    assert sources["sub/gamma.txt"] == str(docs_dir / "sub" / "gamma.txt")
    (docs_dir / "beta.md").unlink()
    monkeypatch.chdir(docs_dir / "sub")
    report = index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder)
    assert report.removed == ["beta.md"] and report.unchanged == 2


def test_an_index_with_relative_sources_still_loads_and_syncs(docs_dir: Path, tmp_path: Path, fake_encoder, monkeypatch) -> None:  # noqa: ANN001
    """Indexes written before recorded sources relative to where `qa index` ran: they load,
    and sync from that directory as before (unchanged documents keep their recorded source)."""
    import os

    import qa.ingest.documents
    from embeddings.stores.index import VectorIndex
    from qa.ingest.indexing import list_documents

    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as old_version:
        old_version.setattr(qa.ingest.documents, "source_of", os.fspath)  # what an older version recorded
        index_folder("docs", tmp_path / "idx", encoder=fake_encoder)
    assert VectorIndex.load(tmp_path / "idx").documents["alpha.txt"].source == "docs/alpha.txt"
    (docs_dir / "alpha.txt").unlink()
    (docs_dir / "beta.md").write_text("# Beta\n\nBeta mountain is taller now.", encoding="utf-8")
    report = index_folder("docs", tmp_path / "idx", encoder=fake_encoder)
    assert report.removed == ["alpha.txt"] and report.changed == ["beta.md"] and report.unchanged == 1
    sources = {d.doc_id: d.source for d in list_documents(tmp_path / "idx")}
    assert sources == {"beta.md": str(docs_dir / "beta.md"), "sub/gamma.txt": "docs/sub/gamma.txt"}


# --------------------------------------------------------------------------- where an index may live


def test_an_index_is_never_written_into_a_folder_of_someone_elses(docs_dir: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    """A folder holding no index but other things (here folders named like an index's own,
    "gen-ai" and "seg-2024") is refused as an index location, and nothing in it is touched."""
    home = tmp_path / "home"
    (home / "gen-ai").mkdir(parents=True)
    (home / "gen-ai" / "notes.txt").write_text("Orca is the model.", encoding="utf-8")
    (home / "seg-2024").mkdir()
    (home / "seg-2024" / "budget.xlsx").write_bytes(b"keep")
    before = sorted(p.relative_to(home).as_posix() for p in home.rglob("*"))
    for build in (lambda: index_folder(docs_dir, home, encoder=fake_encoder), lambda: index_folder(home, home, encoder=fake_encoder)):
        with pytest.raises(ValueError, match=r"holds no index but other files \('gen-ai', 'seg-2024'\).*folder of its own"):
            build()
        assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == before


def test_an_index_never_deletes_a_users_folder_named_like_its_own(docs_dir: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    """Garbage collection removes only the generations and segments it named itself: a folder a
    user put into an index folder, named "gen-..." or "seg-...", survives every update."""
    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    for name in ("gen-ai", "seg-2024", "gen-20240101T000000-notours", ".tmp-mine"):
        (index / name).mkdir()
        (index / name / "keep.txt").write_text("mine", encoding="utf-8")
    (docs_dir / "beta.md").write_text("# Beta\n\nChanged twice over.", encoding="utf-8")
    index_folder(docs_dir, index, encoder=fake_encoder)
    (docs_dir / "beta.md").write_text("# Beta\n\nChanged three times.", encoding="utf-8")
    index_folder(docs_dir, index, encoder=fake_encoder)
    for name in ("gen-ai", "seg-2024", "gen-20240101T000000-notours", ".tmp-mine"):
        assert (index / name / "keep.txt").read_text(encoding="utf-8") == "mine"
    # Its own old generations are still collected (the live one and one before it stay).
    assert len([p for p in index.glob("gen-2*") if p.name != "gen-20240101T000000-notours"]) == 2


@pytest.mark.parametrize("where", ["", "   "])
def test_an_empty_index_or_documents_path_is_refused_not_taken_as_the_current_folder(
    where: str, docs_dir: Path, tmp_path: Path, fake_encoder, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    from qa.ingest.indexing import add_files
    from qa.pipeline import load_index

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="index location is empty"):
        index_folder(docs_dir, where, encoder=fake_encoder)
    with pytest.raises(ValueError, match="documents folder is empty"):
        index_folder(where, tmp_path / "idx", encoder=fake_encoder)
    with pytest.raises(ValueError, match="empty path"):
        add_files(tmp_path / "idx", [where], encoder=fake_encoder)
    with pytest.raises(ValueError, match="index is an empty path"):
        load_index(where)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs"]


def test_an_index_location_that_is_a_file_is_refused_clearly(docs_dir: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    (tmp_path / "q1.txt").write_text("not an index", encoding="utf-8")
    with pytest.raises(ValueError, match=r"'.*q1\.txt' is a file, not a folder"):
        index_folder(docs_dir, tmp_path / "q1.txt", encoder=fake_encoder)
    assert (tmp_path / "q1.txt").read_text(encoding="utf-8") == "not an index"


def test_removing_from_a_missing_index_creates_nothing(tmp_path: Path) -> None:
    from embeddings.errors import IndexLoadError
    from qa.ingest.indexing import remove_documents

    with pytest.raises(IndexLoadError, match="no index at .*nothing was removed"):
        remove_documents(tmp_path / "noidx", ["a.txt"])
    assert not (tmp_path / "noidx").exists()


def test_an_index_inside_its_documents_folder_does_not_index_itself(docs_dir: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    """``qa index proj --index proj/index``: the index's kept originals (of added files) are
    never picked up as documents of the folder."""
    from qa.ingest.indexing import add_files, list_documents

    index = docs_dir / "index"
    index_folder(docs_dir, index, encoder=fake_encoder)
    extra = tmp_path / "extra" / "volcano.txt"
    extra.parent.mkdir()
    extra.write_text("The volcano last erupted in 1912.", encoding="utf-8")
    add_files(index, [extra], encoder=fake_encoder)
    assert any((index / "originals").iterdir())
    index_folder(docs_dir, index, encoder=fake_encoder)
    add_files(index, [docs_dir], encoder=fake_encoder)
    assert sorted(d.doc_id for d in list_documents(index)) == ["alpha.txt", "beta.md", "sub/gamma.txt", "volcano.txt"]


def test_a_named_pipe_in_the_documents_folder_is_passed_over(docs_dir: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    """Reading a FIFO never ends (nothing writes to it): indexing takes regular files only."""
    import os
    import threading

    from qa.ingest.indexing import list_documents

    fifo = docs_dir / "pipe.txt"
    os.mkfifo(fifo)
    done = threading.Event()
    errors: list[BaseException] = []

    def build() -> None:
        try:
            index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=build, daemon=True)
    thread.start()
    if not done.wait(60):
        # Unblock the reader stuck on the pipe, so the test process can end.
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(10)
        pytest.fail("indexing hung on a named pipe")
    assert not errors, errors
    assert sorted(d.doc_id for d in list_documents(tmp_path / "idx")) == ["alpha.txt", "beta.md", "sub/gamma.txt"]
    # Reported, not passed over in silence; `qa add` of the folder reads it the same way.
    from qa.ingest.indexing import add_files

    for report in (index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder), add_files(tmp_path / "idx", [docs_dir], encoder=fake_encoder)):
        assert [(Path(s.path).name, s.reason.split(";")[0]) for s in report.skipped] == [("pipe.txt", "not a regular file (a named pipe, socket or device)")]


def test_a_document_that_runs_over_its_time_limit_on_an_update_keeps_its_indexed_version(
    docs_dir: Path, tmp_path: Path, fake_encoder, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    """An unchanged HTML/PDF/DOCX file whose reading runs over the time limit this time (a busy
    machine, a lower QA_EXTRACT_TIMEOUT) is reported as skipped, and its indexed version stays."""
    from qa.ingest import extraction
    from qa.ingest.indexing import list_documents

    (docs_dir / "page.html").write_text("<html><body><p>The lighthouse keeper is Margaret Hale.</p></body></html>", encoding="utf-8")
    first = index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder)
    assert "page.html" in first.added

    def busy(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise TimeoutError

    monkeypatch.setattr(extraction._Worker, "run", busy)
    report = index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder)
    assert [s.path for s in report.skipped] == [str(docs_dir / "page.html")] and "took longer" in report.skipped[0].reason
    assert report.removed == [] and report.unchanged == 4
    assert "page.html" in {d.doc_id for d in list_documents(tmp_path / "idx")}
    # A file that cannot be read for good (corrupt) is still dropped by a folder sync.
    monkeypatch.undo()
    (docs_dir / "page.html").write_bytes(b"\x00\x01binary")
    assert index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder).removed == ["page.html"]


def test_files_of_other_types_in_a_folder_are_named_in_the_report(docs_dir: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    """A folder read passes over files of unsupported types (images, spreadsheets beside the
    documents) without listing each as skipped, but says how many and of which types."""
    from qa.ingest.indexing import add_files

    (docs_dir / "budget.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (docs_dir / "sub" / "old.rtf").write_text("{\\rtf1 hello}", encoding="utf-8")
    (docs_dir / "sub" / "more.csv").write_text("c\n3\n", encoding="utf-8")
    (docs_dir / "README").write_text("no extension", encoding="utf-8")
    (docs_dir / ".hidden.csv").write_text("hidden files are not counted", encoding="utf-8")
    note = "passed over 4 files of other types (.csv 2, (no extension) 1, .rtf 1); supported: .txt"
    report = index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder)
    assert report.added == ["alpha.txt", "beta.md", "sub/gamma.txt"] and report.skipped == []
    assert note in report.note and note in report.summary()
    assert note in add_files(tmp_path / "idx2", [docs_dir], encoder=fake_encoder).note
    (docs_dir / "budget.csv").unlink()
    (docs_dir / "sub" / "old.rtf").unlink()
    (docs_dir / "sub" / "more.csv").unlink()
    (docs_dir / "README").unlink()
    assert "passed over" not in index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder).note


def test_what_a_file_system_or_desktop_puts_in_a_folder_does_not_make_it_someones(
    docs_dir: Path, tmp_path: Path, fake_encoder, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    """A fresh volume's lost+found, Finder's .DS_Store and a credentials file put there by
    QA_AUTH_FILE do not stop a first build in that folder; the check comes before any reading."""
    from qa import config
    from qa.ingest import indexing

    volume = tmp_path / "volume"
    (volume / "lost+found").mkdir(parents=True)
    (volume / ".DS_Store").write_bytes(b"\0")
    (volume / "auth.json").write_text("{}", encoding="utf-8")
    monkeypatch.setattr(config, "AUTH_FILE", volume / "auth.json")
    assert index_folder(docs_dir, volume, encoder=fake_encoder).added == ["alpha.txt", "beta.md", "sub/gamma.txt"]
    assert (volume / "auth.json").read_text(encoding="utf-8") == "{}" and (volume / "lost+found").is_dir()

    home = tmp_path / "home"
    home.mkdir()
    (home / "taxes.pdf").write_bytes(b"%PDF")
    monkeypatch.setattr(indexing, "load_folder", lambda *a, **k: pytest.fail("the folder was read before the refusal"))
    with pytest.raises(ValueError, match="holds no index but other files"):
        index_folder(docs_dir, home, encoder=fake_encoder)
    monkeypatch.setattr(indexing, "_read_all", lambda *a, **k: pytest.fail("the files were read before the refusal"))
    with pytest.raises(ValueError, match="holds no index but other files"):
        indexing.add_files(home, [docs_dir], encoder=fake_encoder)


def test_compacting_a_missing_index_creates_nothing(tmp_path: Path) -> None:
    from embeddings.errors import IndexLoadError
    from qa.ingest.indexing import compact_index

    with pytest.raises(IndexLoadError, match="no index at .* to compact"):
        compact_index(tmp_path / "noidx")
    assert not (tmp_path / "noidx").exists()
