"""Adding and removing documents: ``python -m qa add|remove|list`` and the functions behind them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from embeddings.stores.index import VectorIndex, current_generation
from qa.ingest.indexing import add_files, collect_files, index_folder, list_documents, remove_documents
from tests.doc_fixtures import ARTICLE_HTML, SHIP_PAGES, make_docx, make_pdf, write
from tests.tools.test_cli import run_qa

pytest.importorskip("reportlab")


def _state(index_dir: Path) -> tuple[str, dict]:
    """The live generation and its manifest: equal before and after means "unchanged"."""
    gen = current_generation(index_dir)
    return gen.name, json.loads((gen / "manifest.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- functions (fake encoder, fast)


def test_add_files_ids_and_incremental_update(tmp_path: Path, docs_dir: Path, fake_encoder) -> None:
    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    extra = tmp_path / "extra"
    write(extra / "report.pdf", make_pdf(SHIP_PAGES))
    write(extra / "more" / "page.html", ARTICLE_HTML)
    write(extra / "more" / "deep" / "memo.docx", make_docx(["The memo is short."]))
    write(extra / "image.png", b"\x89PNG\r\n")

    fake_encoder.encoded.clear()
    report = add_files(index, [extra / "report.pdf", extra / "more", extra / "image.png"], encoder=fake_encoder)
    # A file is named by its file name, a folder's files by their path inside it.
    assert report.added == ["deep/memo.docx", "page.html", "report.pdf"]
    assert report.unchanged == 3 and report.removed == []
    assert [Path(s.path).name for s in report.skipped] == ["image.png"]
    assert "unsupported file type" in report.skipped[0].reason
    # Only the new documents were embedded.
    assert all("Alpha" not in t for t in fake_encoder.encoded)

    docs = {d.doc_id: d for d in list_documents(index)}
    assert set(docs) == {"alpha.txt", "beta.md", "sub/gamma.txt", "deep/memo.docx", "page.html", "report.pdf"}
    assert docs["report.pdf"].kind == "pdf" and docs["report.pdf"].pages == 3
    assert docs["page.html"].kind == "html" and docs["page.html"].pages is None

    # Adding the same file again changes nothing; a changed file replaces its document.
    again = add_files(index, [extra / "report.pdf"], encoder=fake_encoder)
    assert again.added == [] and again.changed == [] and again.unchanged == 6
    write(extra / "report.pdf", make_pdf([SHIP_PAGES[1]]))
    changed = add_files(index, [extra / "report.pdf"], encoder=fake_encoder)
    assert changed.changed == ["report.pdf"]
    assert {d.doc_id: d.pages for d in list_documents(index)}["report.pdf"] == 1


def test_add_refuses_clashing_ids_and_missing_paths(tmp_path: Path, fake_encoder) -> None:
    write(tmp_path / "a" / "notes.txt", "Notes from a.")
    write(tmp_path / "b" / "notes.txt", "Notes from b.")
    with pytest.raises(ValueError, match="same document id.*notes.txt"):
        collect_files([tmp_path / "a" / "notes.txt", tmp_path / "b" / "notes.txt"])
    with pytest.raises(ValueError, match="does not exist"):
        add_files(tmp_path / "idx", [tmp_path / "nope.txt"], encoder=fake_encoder)
    assert not (tmp_path / "idx" / "CURRENT").exists()
    # The same file twice is not a clash.
    assert len(collect_files([tmp_path / "a" / "notes.txt", tmp_path / "a" / "notes.txt"])) == 1


def test_remove_documents_and_unknown_ids(tmp_path: Path, docs_dir: Path, fake_encoder) -> None:
    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    before = _state(index)
    with pytest.raises(ValueError) as info:
        remove_documents(index, ["gamma.txt", "alpha.txt"])
    message = str(info.value)
    assert "'gamma.txt'" in message and "did you mean 'sub/gamma.txt'" in message and "Nothing was removed" in message
    assert _state(index) == before  # not even alpha.txt went

    report = remove_documents(index, ["sub/gamma.txt"])
    assert report.removed == ["sub/gamma.txt"] and report.unchanged == 2
    loaded = VectorIndex.load(index)
    assert set(loaded.documents) == {"alpha.txt", "beta.md"}
    assert {c.doc_id for c in loaded.chunks} == {"alpha.txt", "beta.md"}
    assert len(loaded.vectors()) == len(loaded.chunks)

    # Removing everything leaves a valid, empty index.
    remove_documents(index, ["alpha.txt", "beta.md"])
    assert list_documents(index) == []
    with pytest.raises(ValueError, match="no document"):
        remove_documents(index, ["alpha.txt"])


def test_asked_index_sees_added_and_removed_documents(tmp_path: Path, docs_dir: Path, fake_encoder) -> None:
    from qa.pipeline import load_index

    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    assert "page.html" not in load_index(index).documents
    write(tmp_path / "page.html", ARTICLE_HTML)
    add_files(index, [tmp_path / "page.html"], encoder=fake_encoder)
    assert "page.html" in load_index(index).documents  # a new generation is picked up
    remove_documents(index, ["page.html"])
    assert "page.html" not in load_index(index).documents


# --------------------------------------------------------------------------- command line (real encoder)


@pytest.mark.slow
def test_cli_add_list_remove(tmp_path: Path, docs_dir: Path) -> None:
    index = str(tmp_path / "idx")
    assert run_qa("index", str(docs_dir), "--index", index).returncode == 0
    write(tmp_path / "new" / "report.pdf", make_pdf(SHIP_PAGES))
    write(tmp_path / "new" / "broken.pdf", b"%PDF-1.4 broken")
    added = run_qa("add", str(tmp_path / "new" / "report.pdf"), str(tmp_path / "new" / "broken.pdf"), "--index", index)
    assert added.returncode == 0, added.stderr
    assert "1 added, 0 changed, 0 removed, 3 unchanged, 1 skipped" in added.stdout
    assert "broken.pdf" in added.stderr and "corrupt" in added.stderr and "Traceback" not in added.stderr

    listed = run_qa("list", "--index", index, "--json")
    rows = {json.loads(line)["doc_id"]: json.loads(line) for line in listed.stdout.splitlines()}
    assert set(rows) == {"alpha.txt", "beta.md", "sub/gamma.txt", "report.pdf"}
    assert rows["report.pdf"]["pages"] == 3 and rows["report.pdf"]["kind"] == "pdf"

    asked = run_qa("ask", "Who is the ship's captain?", "--index", index, "--json")
    assert asked.returncode == 0, asked.stderr
    data = json.loads(asked.stdout)
    assert data["answer"] == "Ilse Varga"
    assert data["citations"][0]["doc_id"] == "report.pdf" and data["citations"][0]["page"] == 2

    removed = run_qa("remove", "report.pdf", "--index", index)
    assert removed.returncode == 0, removed.stderr
    # About the removal only: no "0 added ... (0 embedded)".
    assert re.fullmatch(r"removed 1 document \(\d+ chunks?\): report\.pdf; 3 documents \(\d+ chunks?\) left in .*\n", removed.stdout)
    assert "report.pdf" not in run_qa("list", "--index", index).stdout


def test_cli_remove_unknown_id_fails_and_changes_nothing(tmp_path: Path, docs_dir: Path, fake_encoder) -> None:
    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)  # removal embeds nothing: any model will do
    before = _state(index)
    result = run_qa("remove", "alpha.txt", "gamma.txt", "--index", str(index))
    assert result.returncode != 0
    assert "'gamma.txt'" in result.stderr and "sub/gamma.txt" in result.stderr and "Traceback" not in result.stderr
    assert _state(index) == before
    ok = run_qa("remove", "sub/gamma.txt", "--index", str(index))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == f"removed 1 document (1 chunk): sub/gamma.txt; 2 documents (2 chunks) left in {index}\n"
    assert "added" not in ok.stdout and "embedded" not in ok.stdout
    listed = run_qa("list", "--index", str(index))
    lines = listed.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["alpha.txt", "beta.md"]
    assert lines[1].startswith("beta.md\tmarkdown, 1 chunk, ") and "2 documents" in listed.stderr


def test_cli_add_errors(tmp_path: Path) -> None:
    write(tmp_path / "a" / "notes.txt", "Notes from a.")
    write(tmp_path / "b" / "notes.txt", "Notes from b.")
    clash = run_qa("add", str(tmp_path / "a" / "notes.txt"), str(tmp_path / "b" / "notes.txt"), "--index", str(tmp_path / "idx"))
    assert clash.returncode != 0 and "same document id" in clash.stderr and "Traceback" not in clash.stderr
    missing = run_qa("add", str(tmp_path / "nope.pdf"), "--index", str(tmp_path / "idx"))
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    write(tmp_path / "bad.docx", b"PK\x03\x04 truncated")
    refused = run_qa("add", str(tmp_path / "bad.docx"), "--index", str(tmp_path / "idx"))
    assert refused.returncode != 0 and "bad.docx" in refused.stderr and "DOCX" in refused.stderr
    assert not (tmp_path / "idx" / "CURRENT").exists()


def test_cli_compact_merges_segments_and_keeps_every_document(tmp_path: Path, docs_dir: Path, fake_encoder) -> None:
    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    write(tmp_path / "more" / "delta.txt", "Delta lake is shallow and warm.")
    add_files(index, [tmp_path / "more" / "delta.txt"], encoder=fake_encoder)
    remove_documents(index, ["beta.md"])
    before = {d.doc_id: d.chunks for d in list_documents(index)}
    assert len(_state(index)[1]["segments"]) == 2
    refused = run_qa("index", str(docs_dir), "--index", str(index), "--compact")
    assert refused.returncode != 0 and "--compact takes no documents folder" in refused.stderr
    done = run_qa("index", "--index", str(index), "--compact")  # merging embeds nothing: no model loads
    assert done.returncode == 0, done.stderr
    assert "compacted 2 segments into 1" in done.stdout
    manifest = _state(index)[1]
    assert len(manifest["segments"]) == 1 and manifest["segments"][0]["rows"] == manifest["num_chunks"]
    assert {d.doc_id: d.chunks for d in list_documents(index)} == before
    again = run_qa("index", "--index", str(index), "--compact")
    assert again.returncode == 0 and "already compact" in again.stdout


@pytest.mark.parametrize("verbose", [False, True])
def test_cli_add_of_only_a_refused_file_fails_once_with_its_reason(tmp_path: Path, docs_dir: Path, verbose: bool) -> None:
    from qa.ingest.indexing import index_folder
    from tests.conftest import FakeEncoder

    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=FakeEncoder())  # an index that already has documents
    bad = write(tmp_path / "notes.xyz", b"plain words")
    # Nothing to embed: no model is loaded. With -v too, the reason is printed once (no log line).
    done = run_qa(*(["-v"] if verbose else []), "add", str(bad), "--index", str(index))
    assert done.returncode == 1
    assert done.stderr.count("notes.xyz") == 1 and "unsupported file type" in done.stderr, done.stderr


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch, fake_encoder):  # noqa: ANN201
    """`qa add` in this process embeds with the fake encoder (the model the index names)."""
    import qa.ingest.indexing

    monkeypatch.setattr(qa.ingest.indexing, "get_encoder", lambda name=None, **_: fake_encoder)
    return fake_encoder


@pytest.mark.parametrize(
    ("files", "status", "summary"),
    [
        (["new.md"], 0, "0 added, 0 changed, 0 removed, 4 unchanged, 0 skipped"),  # merely unchanged
        (["new.md", "new.md"], 0, "0 added, 0 changed, 0 removed, 4 unchanged, 0 skipped"),  # a duplicate
        (["other.md", "bad.pdf"], 0, "1 added, 0 changed, 0 removed, 4 unchanged, 1 skipped"),  # one added: done
        (["bad.pdf"], 1, "0 added, 0 changed, 0 removed, 4 unchanged, 1 skipped"),  # only refused
        (["new.md", "bad.pdf"], 1, "0 added, 0 changed, 0 removed, 4 unchanged, 1 skipped"),  # nothing taken, an error
    ],
)
def test_cli_add_exit_status(tmp_path: Path, docs_dir: Path, fake_model, capsys, files: list[str], status: int, summary: str) -> None:  # noqa: ANN001
    """Exit 1 when nothing given was added because of errors; 0 when files were merely unchanged."""
    from qa.tools.cli import main

    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_model)
    add_files(index, [write(tmp_path / "in" / "new.md", "Delta lake is shallow and warm.")], encoder=fake_model)
    write(tmp_path / "in" / "other.md", "Epsilon station logs wind speed hourly.")
    write(tmp_path / "in" / "bad.pdf", b"not a pdf at all")
    assert main(["add", *(str(tmp_path / "in" / f) for f in files), "--index", str(index)]) == status
    out, err = capsys.readouterr()
    assert summary in out
    assert err.count("bad.pdf") == ("bad.pdf" in files)  # each refusal once, on stderr
