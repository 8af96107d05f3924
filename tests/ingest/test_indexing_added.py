"""Added documents (``qa add``, chat uploads) survive every re-index and rebuild: the index
keeps their original bytes, records their origin, and only an explicit remove drops them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embeddings.stores.index import current_generation, read_manifest
from qa.ingest.indexing import add_files, add_uploads, index_folder, list_documents, remove_documents, update_index

NOTES = "Delta lake is shallow. Herons nest by the delta lake every April."


def _upload(tmp_path: Path, index: Path, encoder, name: str = "notes.md", text: str = NOTES):  # noqa: ANN001, ANN202
    temp = tmp_path / f"upload-{name}"
    temp.write_text(text, encoding="utf-8")
    return add_uploads(index, [(name, temp)], encoder=encoder)


def _originals(index: Path) -> set[str]:
    folder = index / "originals"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def _text_of(index: Path, doc_id: str) -> str:
    from embeddings.stores.index import VectorIndex

    return VectorIndex.load(index).documents[doc_id].text


def test_upload_survives_reindex_of_the_folder_and_is_listed_as_added(tmp_path: Path, docs_dir: Path, fake_encoder) -> None:  # noqa: ANN001
    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    report = _upload(tmp_path, index, fake_encoder)
    assert report.added == ["notes.md"]
    # The steps: restart (a fresh load), then `qa index` on the folder.
    again = index_folder(docs_dir, index, encoder=fake_encoder)
    assert again.removed == [] and again.added == [] and again.changed == []
    listing = {d.doc_id: d for d in list_documents(index)}
    assert listing["notes.md"].origin == "added" and listing["alpha.txt"].origin == "folder"
    assert _text_of(index, "notes.md") == NOTES
    # Its bytes are kept, once, content-addressed.
    entry = read_manifest(index).documents["notes.md"]
    assert entry.origin == "added" and entry.original is not None and _originals(index) == {entry.original}
    assert (index / "originals" / entry.original).read_text(encoding="utf-8") == NOTES
    # A file that leaves the folder still goes.
    (docs_dir / "beta.md").unlink()
    assert index_folder(docs_dir, index, encoder=fake_encoder).removed == ["beta.md"]


@pytest.mark.parametrize("how", ["rebuild", "other chunking", "another encoder variant", "unreadable manifest format"])
def test_rebuilds_read_added_documents_again_from_their_originals(tmp_path: Path, docs_dir: Path, fake_encoder, how: str) -> None:  # noqa: ANN001
    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    _upload(tmp_path, index, fake_encoder)
    add_files(index, [_write(tmp_path / "mine" / "report.txt", "Epsilon station logs wind speed hourly.")], encoder=fake_encoder)
    if how == "rebuild":
        report = index_folder(docs_dir, index, encoder=fake_encoder, rebuild=True)
    elif how == "other chunking":
        report = index_folder(docs_dir, index, encoder=fake_encoder, max_tokens=7)
        assert "chunking" in report.note
    elif how == "another encoder variant":
        # An upgrade that changes how vectors are computed (QA_ENCODER_VARIANT, or a new
        # revision of the variant such as onnx-q8@2): everything is re-embedded.
        fake_encoder.variant = "onnx-q8"
        report = index_folder(docs_dir, index, encoder=fake_encoder)
        assert "encoder variant" in report.note and report.embedded_chunks == report.chunks
    else:
        # An index of an older (or newer) format: the default index is rebuilt on upgrade.
        manifest = current_generation(index) / "manifest.json"
        raw = json.loads(manifest.read_text())
        raw["format_version"] = 1
        manifest.write_text(json.dumps(raw))
        report = index_folder(docs_dir, index, encoder=fake_encoder)
        assert "unusable" in report.note
    docs = {d.doc_id: d for d in list_documents(index)}
    assert {"notes.md", "report.txt", "alpha.txt"} <= set(docs)
    assert docs["notes.md"].origin == docs["report.txt"].origin == "added"
    assert _text_of(index, "notes.md") == NOTES and report.removed == []
    assert len(_originals(index)) == 2


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_only_an_explicit_remove_drops_an_added_document_and_its_original(tmp_path: Path, docs_dir: Path, fake_encoder) -> None:  # noqa: ANN001
    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    _upload(tmp_path, index, fake_encoder)
    assert len(_originals(index)) == 1
    remove_documents(index, ["notes.md"])
    assert "notes.md" not in {d.doc_id for d in list_documents(index)}
    assert _originals(index) == set()  # nothing kept for a removed document
    index_folder(docs_dir, index, encoder=fake_encoder, rebuild=True)
    assert "notes.md" not in {d.doc_id for d in list_documents(index)}  # and it does not come back


def test_indexing_another_folder_keeps_the_first_folders_documents(tmp_path: Path, docs_dir: Path, fake_encoder) -> None:  # noqa: ANN001
    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    other = tmp_path / "other"
    _write(other / "zeta.txt", "Zeta forest has old oaks.")
    report = index_folder(other, index, encoder=fake_encoder)
    assert report.removed == [] and report.added == ["zeta.txt"]
    assert {"alpha.txt", "beta.md", "sub/gamma.txt", "zeta.txt"} == {d.doc_id for d in list_documents(index)}


def test_a_folder_file_never_replaces_an_added_document_of_the_same_id(tmp_path: Path, docs_dir: Path, fake_encoder) -> None:  # noqa: ANN001
    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    # An upload of that name is added beside it (alpha-<hash>.txt); `qa add` of a file with the
    # id replaces the folder's alpha.txt, by hand.
    assert _upload(tmp_path, index, fake_encoder, name="alpha.txt", text=NOTES).added[0].startswith("alpha-")
    add_files(index, [_write(tmp_path / "mine" / "alpha.txt", NOTES)], encoder=fake_encoder)
    assert read_manifest(index).documents["alpha.txt"].origin == "added"
    report = index_folder(docs_dir, index, encoder=fake_encoder)
    assert _text_of(index, "alpha.txt") == NOTES
    assert any(s.doc_id == "alpha.txt" and "qa remove alpha.txt" in s.reason for s in report.skipped)


def test_uploads_from_before_origins_were_recorded_are_protected(tmp_path: Path, docs_dir: Path, fake_encoder) -> None:  # noqa: ANN001
    from qa.ingest.documents import Document

    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    # What an older version wrote for an upload: source "upload:NAME", no origin, no original.
    legacy = Document("old.md", "upload:old.md", NOTES, "0" * 64)
    update_index(index, [legacy], encoder=fake_encoder)
    assert read_manifest(index).documents["old.md"].added
    assert index_folder(docs_dir, index, encoder=fake_encoder).removed == []
    # A rebuild cannot read it again (no bytes were kept): it carries the text the index holds.
    report = index_folder(docs_dir, index, encoder=fake_encoder, rebuild=True)
    assert report.removed == [] and "old.md" in report.added and "add them again" not in report.note
    assert _text_of(index, "old.md") == NOTES and read_manifest(index).documents["old.md"].added


def test_a_rebuild_that_cannot_extract_an_added_original_keeps_its_indexed_text(
    tmp_path: Path, docs_dir: Path, fake_encoder, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    """An extraction that fails on rebuild (a timeout on a busy machine, a parser that changed):
    the upload keeps its indexed text, its record and its kept original."""
    import qa.ingest.indexing as indexing
    from qa.ingest.documents import Skipped

    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    _upload(tmp_path, index, fake_encoder)
    original = read_manifest(index).documents["notes.md"].original
    monkeypatch.setattr(indexing, "document_from_bytes", lambda data, suffix, doc_id, source, **kw: Skipped(source, "took too long"))
    report = index_folder(docs_dir, index, encoder=fake_encoder, rebuild=True)
    assert report.removed == [] and "notes.md" in report.added and "took too long" not in report.note
    entry = read_manifest(index).documents["notes.md"]
    assert entry.origin == "added" and entry.original == original and _originals(index) == {original}
    assert _text_of(index, "notes.md") == NOTES


def test_adding_to_an_unreadable_index_is_refused_and_changes_nothing(tmp_path: Path, docs_dir: Path, fake_encoder) -> None:  # noqa: ANN001
    from embeddings.stores.index import IndexLoadError

    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    manifest = current_generation(index) / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["format_version"] = 1
    manifest.write_text(json.dumps(raw))
    before = sorted(str(p.relative_to(index)) for p in index.rglob("*"))
    with pytest.raises(IndexLoadError, match=r"format version 1.*--rebuild.*Nothing was added"):
        add_files(index, [_write(tmp_path / "mine" / "x.txt", "Zeta forest has old oaks.")], encoder=fake_encoder)
    assert sorted(str(p.relative_to(index)) for p in index.rglob("*")) == before


def test_a_damaged_manifest_does_not_cost_the_uploads_their_bytes(tmp_path: Path, docs_dir: Path, fake_encoder) -> None:  # noqa: ANN001
    """Which document a kept original was is lost with a damaged manifest; its bytes are not:
    the folder's rebuild brings each back as an added document of its own, to keep or remove."""
    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    _upload(tmp_path, index, fake_encoder)
    original = read_manifest(index).documents["notes.md"].original
    manifest = current_generation(index) / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])  # cut short
    report = index_folder(docs_dir, index, encoder=fake_encoder)
    assert "unusable" in report.note
    recovered = f"recovered-{original[:12]}.md"
    listed = {d.doc_id: d.origin for d in list_documents(index)}
    assert listed[recovered] == "added" and "alpha.txt" in listed
    assert _text_of(index, recovered) == NOTES and _originals(index) == {original}
    remove_documents(index, [recovered])
    assert _originals(index) == set()


def test_a_file_added_from_inside_the_folder_stays_when_it_leaves_the_folder(tmp_path: Path, docs_dir: Path, fake_encoder) -> None:  # noqa: ANN001
    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    extra = _write(docs_dir / "extra.txt", "Eta bridge opened in 1931.")
    add_files(index, [extra], encoder=fake_encoder)
    assert read_manifest(index).documents["extra.txt"].origin == "added"
    extra.unlink()  # the user deletes their copy: the index keeps its own
    assert index_folder(docs_dir, index, encoder=fake_encoder).removed == []
    assert update_index(index, [], remove_missing=True, encoder=fake_encoder).removed == ["alpha.txt", "beta.md", "sub/gamma.txt"]
    assert "extra.txt" in {d.doc_id for d in list_documents(index)}
    assert _text_of(index, "extra.txt") == "Eta bridge opened in 1931."


# ------------------------------------------------------------------ both stores, through one API


@pytest.fixture(params=["directory", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An index location of each store: a directory, or a fresh PostgreSQL database."""
    if request.param == "directory":
        return str(tmp_path / "idx")
    pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    return request.getfixturevalue("pg_url")


def _stored_text(location: str, doc_id: str) -> str:
    from embeddings.stores import is_store_url, open_store

    if is_store_url(location):
        return open_store(location).refresh().document(doc_id).text
    return _text_of(Path(location), doc_id)


def test_added_documents_survive_reindex_and_every_rebuild_in_both_stores(location: str, tmp_path: Path, docs_dir: Path, fake_encoder) -> None:  # noqa: ANN001
    index_folder(docs_dir, location, encoder=fake_encoder)
    temp = _write(tmp_path / "upload.bin", NOTES)
    assert add_uploads(location, [("notes.md", temp)], encoder=fake_encoder).added == ["notes.md"]
    mine = _write(docs_dir / "report.txt", "Epsilon station logs wind speed hourly.")  # inside the folder
    add_files(location, [mine], encoder=fake_encoder)
    mine.unlink()  # the user's copy is gone: the index keeps its own, and the folder sync keeps the document
    for step in ("reindex", "rebuild", "other chunking"):
        options = {"rebuild": True} if step == "rebuild" else {"max_tokens": 9} if step == "other chunking" else {}
        report = index_folder(docs_dir, location, encoder=fake_encoder, **options)
        assert "notes.md" not in report.removed and "report.txt" not in report.removed, step
        docs = {d.doc_id: d for d in list_documents(location)}
        assert docs["notes.md"].origin == docs["report.txt"].origin == "added", step
        assert docs["alpha.txt"].origin == "folder", step
        assert _stored_text(location, "notes.md") == NOTES, step
    # Only an explicit remove drops one; a rebuild afterwards does not bring it back.
    remove_documents(location, ["notes.md"])
    index_folder(docs_dir, location, encoder=fake_encoder, rebuild=True)
    assert {d.doc_id for d in list_documents(location)} == {"alpha.txt", "beta.md", "sub/gamma.txt", "report.txt"}
