"""Uploading and removing documents in the chat.

The checks on uploaded files (names, types, sizes) are tested on the functions the app
calls; one browser test uploads a PDF through the page and asks about it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qa.ingest.indexing import add_uploads, index_folder, list_documents, safe_upload_name
from tests.doc_fixtures import SHIP_PAGES, make_pdf, write
from tests.ui.helpers import CHROMIUM, CHROMIUM_ARGS, running_app


@pytest.fixture
def small_index(tmp_path: Path, docs_dir: Path, fake_encoder) -> Path:
    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    return index


# --------------------------------------------------------------------------- names, types, sizes (fast)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/evil.txt", "evil.txt"),
        ("..\\..\\windows\\evil.md", "evil.md"),
        ("/abs/path/notes.html", "notes.html"),
        ("we<i>rd</i> na:me?.txt", "i_ na_me_.txt"),  # "/" is a separator: base name only
        ("we<i>rd na:me?|*.txt", "we_i_rd na_me___.txt"),
        ("Zürich café.docx", "Zürich café.docx"),
        ("line\nbreak\x00.txt", "linebreak.txt"),
    ],
)
def test_upload_names_are_sanitised(name: str, expected: str) -> None:
    assert safe_upload_name(name) == expected


@pytest.mark.parametrize("name", ["", "..", "../..", ".hidden.txt", "dir/.env", "   "])
def test_empty_and_hidden_upload_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="empty|hidden"):
        safe_upload_name(name)


def test_uploads_are_checked_one_by_one(tmp_path: Path, small_index: Path, fake_encoder) -> None:
    good = write(tmp_path / "upload" / "a1" / "harbour.txt", "The harbour master is Piet Smit. He started in 2001.")
    evil = write(tmp_path / "upload" / "a2" / "evil.txt", "Traversal attempt. Nothing more.")
    exe = write(tmp_path / "upload" / "a3" / "tool.exe", b"MZ\x90\x00")
    big = write(tmp_path / "upload" / "a4" / "big.txt", "word " * 400)
    hidden = write(tmp_path / "upload" / "a5" / ".secret.txt", "Hidden file.")
    twin = write(tmp_path / "upload" / "a6" / "harbour.txt", "Another file with the same name.")
    bad_pdf = write(tmp_path / "upload" / "a7" / "broken.pdf", b"%PDF-1.4 not really")

    report = add_uploads(
        small_index,
        [
            ("harbour.txt", good),
            ("../../../evil.txt", evil),
            ("tool.exe", exe),
            ("big.txt", big),
            (".secret.txt", hidden),
            ("harbour.txt", twin),
            ("broken.pdf", bad_pdf),
        ],
        max_bytes=1000,
        encoder=fake_encoder,
    )
    assert report.added == ["evil.txt", "harbour.txt"]
    reasons = {s.path: s.reason for s in report.skipped}
    assert set(reasons) == {"tool.exe", "big.txt", ".secret.txt", "harbour.txt", "broken.pdf"}
    assert "unsupported file type" in reasons["tool.exe"] and ".pdf" in reasons["tool.exe"]
    assert "too large" in reasons["big.txt"] and "limit" in reasons["big.txt"]
    assert "hidden" in reasons[".secret.txt"]
    assert "same name" in reasons["harbour.txt"]
    assert "corrupt" in reasons["broken.pdf"]
    # Nothing was written outside the index, and the source names the upload, not a temp path.
    assert not (tmp_path.parent / "evil.txt").exists()
    sources = {d.doc_id: d.source for d in list_documents(small_index)}
    assert sources["evil.txt"] == "upload:evil.txt"


def test_an_upload_that_is_no_regular_file_is_refused_without_reading_it(tmp_path: Path, small_index: Path, fake_encoder) -> None:  # noqa: ANN001
    """A named pipe (or a device: /dev/zero reports size 0) as an upload's stored file would be
    read forever: it is refused as not a regular file, and the next upload still goes in."""
    import os
    import threading

    pipe = tmp_path / "upload" / "p1" / "notes.txt"
    pipe.parent.mkdir(parents=True)
    os.mkfifo(pipe)
    good = write(tmp_path / "upload" / "p2" / "harbour.txt", "The harbour master is Piet Smit.")
    result: list = []
    thread = threading.Thread(
        target=lambda: result.append(add_uploads(small_index, [("notes.txt", pipe), ("harbour.txt", good)], encoder=fake_encoder)), daemon=True
    )
    thread.start()
    thread.join(60)
    if thread.is_alive():
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))  # unblock the stuck read
        pytest.fail("add_uploads hung reading a named pipe")
    report = result[0]
    assert report.added == ["harbour.txt"] and [(s.path, s.reason) for s in report.skipped] == [("notes.txt", "not a regular file; upload a file")]


def _upload(tmp_path: Path, name: str, text: str, n: int) -> tuple[str, str]:
    """An ``(uploaded name, temporary path)`` pair, the file in a folder of its own (``n``)."""
    return name, str(write(tmp_path / "up" / str(n) / "file", text))


def test_an_upload_never_replaces_another_file_whose_name_was_made_safe_to_the_same_id(
    tmp_path: Path, small_index: Path, fake_encoder
) -> None:
    first = add_uploads(small_index, [_upload(tmp_path, "a+b.txt", "Plus file. It has five words.", 1)], encoder=fake_encoder)
    assert first.added == ["a_b.txt"]
    # A different file, same safe name: added beside the first under a hashed id, not over it.
    second = add_uploads(small_index, [_upload(tmp_path, "a&b.txt", "Ampersand file. Longer text than the plus one.", 2)], encoder=fake_encoder)
    assert len(second.added) == 1 and second.changed == []
    hashed = second.added[0]
    assert re.fullmatch(r"a_b-[0-9a-f]{8}\.txt", hashed)
    docs = {d.doc_id: d for d in list_documents(small_index)}
    assert docs["a_b.txt"].source == "upload:a+b.txt" and docs[hashed].source == "upload:a&b.txt"
    plus_chars = docs["a_b.txt"].characters
    # Uploading either name again replaces its own document only.
    again = add_uploads(small_index, [_upload(tmp_path, "a&b.txt", "Ampersand file, second version.", 3)], encoder=fake_encoder)
    assert again.changed == [hashed] and again.added == []
    docs = {d.doc_id: d for d in list_documents(small_index)}
    assert docs["a_b.txt"].characters == plus_chars and docs[hashed].characters == len("Ampersand file, second version.")
    assert add_uploads(small_index, [_upload(tmp_path, "a+b.txt", "Plus file, second version.", 4)], encoder=fake_encoder).changed == ["a_b.txt"]
    # A folder document's id is not taken over by an upload of that name.
    folder = add_uploads(small_index, [_upload(tmp_path, "alpha.txt", "An uploaded alpha. Not the river.", 5)], encoder=fake_encoder)
    assert folder.changed == [] and folder.added[0].startswith("alpha-")
    docs = {d.doc_id: d for d in list_documents(small_index)}
    assert docs["alpha.txt"].origin == "folder" and docs[folder.added[0]].origin == "added"
    # Two such names in one upload are both added; a long name keeps its extension and the limit.
    batch = add_uploads(
        small_index, [_upload(tmp_path, "x?.txt", "Question mark.", 6), _upload(tmp_path, "x*.txt", "Star.", 7), _upload(tmp_path, "n" * 200 + "!.md", "Long.", 8),
                      _upload(tmp_path, "n" * 200 + "?.md", "Longer.", 9)],
        encoder=fake_encoder,
    )
    assert len(batch.added) == 4 and "x_.txt" in batch.added
    long_ids = [d.doc_id for d in list_documents(small_index) if d.doc_id.startswith("nnn")]
    assert len(long_ids) == 2 and all(len(d) <= 150 and d.endswith(".md") for d in long_ids)
    assert len(list_documents(small_index)) == 3 + 7


def test_upload_ids_are_chosen_under_the_writer_lock_and_a_hashed_id_is_never_taken_over(
    tmp_path: Path, small_index: Path, fake_encoder
) -> None:
    import hashlib

    # Another writer lands a_b.txt after this upload read its files and before it writes: the
    # id is decided under the lock, so this upload goes beside it instead of over it.
    def meanwhile(fraction: float, what: str) -> None:
        if what.startswith("embedding"):
            assert add_uploads(small_index, [_upload(tmp_path, "a+b.txt", "The other writer's file.", 1)], encoder=fake_encoder).added == ["a_b.txt"]

    late = add_uploads(small_index, [_upload(tmp_path, "a&b.txt", "This upload's file.", 2)], encoder=fake_encoder, progress=meanwhile)
    assert late.changed == [] and len(late.added) == 1 and late.added[0].startswith("a_b-")
    # A file that bears the hash a third name would get keeps it; the third gets another.
    tag = hashlib.sha256("a$b.txt".encode()).hexdigest()[:8]
    assert add_uploads(small_index, [_upload(tmp_path, f"a_b-{tag}.txt", "Bears the hash.", 3)], encoder=fake_encoder).added == [f"a_b-{tag}.txt"]
    third = add_uploads(small_index, [_upload(tmp_path, "a$b.txt", "Third name.", 4)], encoder=fake_encoder)
    assert len(third.added) == 1 and third.added[0] not in {"a_b.txt", f"a_b-{tag}.txt", late.added[0]}
    sources = {d.doc_id: d.source for d in list_documents(small_index)}
    assert sources[f"a_b-{tag}.txt"] == f"upload:a_b-{tag}.txt" and sources[third.added[0]] == "upload:a$b.txt"
    # A refused file is named by its plain safe id, not an id it never got.
    refused = add_uploads(small_index, [_upload(tmp_path, "a%b.txt", "x" * 2000, 5)], max_bytes=1000, encoder=fake_encoder)
    assert [s.path for s in refused.skipped] == ["a_b.txt"] and "too large" in refused.skipped[0].reason


def test_upload_and_remove_messages(tmp_path: Path, small_index: Path, fake_encoder) -> None:
    from ui.app import documents_view, remove_document, upload_documents

    pdf = write(tmp_path / "up" / "ships <b>.pdf", make_pdf(SHIP_PAGES))
    exe = write(tmp_path / "up" / "run.sh", "echo hi")
    status = upload_documents(small_index, [str(pdf), str(exe)], encoder=fake_encoder)
    assert "Added: ships _b_.pdf (" in status and " chunk" in status  # listed with its chunk count
    assert "Not added: run.sh: unsupported file type" in status
    # Beside the added file, the refused one is in the error colour, not the success one.
    assert '<div class="qa-status-line qa-status-error">Not added: run.sh: unsupported file type' in status
    assert "<b>" not in status
    table, ids = documents_view(small_index)
    assert "ships _b_.pdf" in ids and "3 pages" in table and "pdf" in table

    too_big = upload_documents(small_index, [str(pdf)], max_bytes=10, encoder=fake_encoder)
    assert "too large" in too_big and "qa-status-error" in too_big
    assert "No file was uploaded" in upload_documents(small_index, [], encoder=fake_encoder)
    assert "in-memory index" in upload_documents(None, [str(pdf)], encoder=fake_encoder)

    assert "Removed: ships _b_.pdf" in remove_document(small_index, "ships _b_.pdf")
    assert "ships _b_.pdf" not in documents_view(small_index)[1]
    unknown = remove_document(small_index, "ships.pdf")
    assert "no document" in unknown and "qa-status-error" in unknown
    assert "Choose a document" in remove_document(small_index, None)


def test_documents_note_names_the_index(tmp_path: Path) -> None:
    from qa import config
    from ui.app import documents_note

    assert ".pdf" in documents_note(tmp_path) and "20 MB" in documents_note(tmp_path)
    assert "default index over" in documents_note(Path(config.DEFAULT_INDEX_DIR))
    assert "default index over" not in documents_note(tmp_path)


# --------------------------------------------------------------------------- in the browser (slow)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
def test_upload_in_the_browser_then_ask_then_remove(tmp_path: Path, docs_dir: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.ui.helpers import TIMEOUT_MS, ask_in_page

    index = tmp_path / "idx"
    index_folder(docs_dir, index)
    pdf = write(tmp_path / "upload" / "fleet_report.pdf", make_pdf(SHIP_PAGES))
    exe = write(tmp_path / "upload" / "payload.exe", b"MZ\x90\x00")
    # Gradio stores this one as "crew notes.txt" ("!" stripped); the name the browser sent
    # reaches add_uploads, whose safe id is "crew notes_.txt" (as through the API).
    notes = write(tmp_path / "upload" / "crew notes!.txt", "The harbour office opens at six in the morning.")

    with running_app(index) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 1100})
            page.goto(url)
            page.wait_for_selector("#qa-question textarea", timeout=TIMEOUT_MS)
            assert "3 documents" in page.locator("#qa-index-info").inner_text()

            # The file input sits beside the button (Gradio renders it hidden, outside #qa-upload).
            page.set_input_files("#qa-docs input[type=file]", [str(pdf), str(exe), str(notes)])
            page.wait_for_function(
                "() => (document.querySelector('#qa-docs-status') || {}).innerText?.includes('Added')", timeout=TIMEOUT_MS
            )
            status = page.locator("#qa-docs-status").inner_text()
            added = next(line for line in status.splitlines() if line.startswith("Added: "))
            assert re.search(r"fleet_report\.pdf \(\d+ chunks?\)", added), status
            assert "payload.exe" in status and "unsupported file type" in status
            assert re.search(r"crew notes_\.txt \(\d+ chunks?\)", added), status
            assert "fleet_report.pdf" in page.locator("#qa-docs-list").inner_text()
            page.wait_for_function(
                "() => document.querySelector('#qa-index-info').innerText.includes('5 documents')", timeout=TIMEOUT_MS
            )

            reply = ask_in_page(page, "Who is the ship's captain?")
            assert "Ilse Varga" in reply.locator(".qa-answer-text strong").inner_text()
            assert "fleet_report.pdf" in reply.inner_text() and "p. 2" in reply.inner_text()
            page.locator("#qa-sources-panel mark").first.wait_for(timeout=TIMEOUT_MS)
            assert "Ilse Varga" in page.locator("#qa-sources-panel mark").first.inner_text()
            assert "p. 2" in page.locator("#qa-sources-panel").inner_text()
            artifacts = Path(__file__).resolve().parents[2] / "artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "ui_upload.png"), full_page=True)

            # Remove it again through the dropdown and button.
            page.click("#qa-remove-choice input")
            page.get_by_role("option", name="fleet_report.pdf").click()
            page.click("#qa-remove")
            page.wait_for_function(
                "() => (document.querySelector('#qa-docs-status') || {}).innerText?.includes('Removed')",
                timeout=TIMEOUT_MS,
            )
            assert "fleet_report.pdf" not in page.locator("#qa-docs-list").inner_text()
            reply = ask_in_page(page, "Who is the ship's captain?")
            assert "Ilse Varga" not in reply.inner_text()
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
def test_a_signed_in_editors_upload_keeps_the_name_the_browser_sent(tmp_path: Path, docs_dir: Path) -> None:
    """With sign-in, the page load swaps the upload button for a per-session copy; the name the
    browser sent must still reach add_uploads ("crew notes!.txt" -> id "crew notes_.txt", where
    Gradio's stored name is "crew notes.txt")."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.ui.helpers import TIMEOUT_MS
    from ui.auth import AuthStore, add_user

    index = tmp_path / "idx"
    index_folder(docs_dir, index)
    add_user(tmp_path / "auth.json", "eddie", "editor", "editor-password")
    notes = write(tmp_path / "upload" / "crew notes!.txt", "The harbour office opens at six in the morning.")
    with running_app(index, auth=AuthStore(tmp_path / "auth.json")) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.fill("input[type=text]", "eddie")
            page.fill("input[type=password]", "editor-password")
            page.keyboard.press("Enter")
            page.wait_for_selector("#qa-question textarea", timeout=TIMEOUT_MS)
            page.locator("#qa-upload").wait_for(state="visible", timeout=TIMEOUT_MS)
            page.set_input_files("#qa-docs input[type=file]", [str(notes)])
            page.wait_for_function(
                "() => (document.querySelector('#qa-docs-status') || {}).innerText?.includes('Added')", timeout=TIMEOUT_MS
            )
            status = page.locator("#qa-docs-status").inner_text()
            assert "crew notes_.txt" in status, status
        finally:
            browser.close()


def test_an_upload_survives_a_chat_restart_and_a_folder_reindex(tmp_path: Path, small_index: Path, docs_dir: Path, fake_encoder) -> None:  # noqa: ANN001
    """The issue's steps: upload in the chat, restart the chat (a new process over the same
    index), run `qa index` on the folder: the upload is still listed, as added, and its text
    is still the one uploaded."""
    import subprocess
    import sys

    from ui.app import upload_documents

    note = write(tmp_path / "up" / "notes.md", "Herons nest by the delta lake every April.")
    assert "Added: notes.md" in upload_documents(small_index, [str(note)], encoder=fake_encoder)
    index_folder(docs_dir, small_index, encoder=fake_encoder)  # the folder re-indexed
    restarted = subprocess.run(
        [sys.executable, "-c", "import sys; from ui.app import documents_view; html, ids = documents_view(sys.argv[1]); print(ids); print(html)", str(small_index)],
        capture_output=True, text=True, timeout=120, check=True, cwd=Path(__file__).resolve().parents[2],
    )
    ids_line, table = restarted.stdout.split("\n", 1)
    assert "'notes.md'" in ids_line and "'alpha.txt'" in ids_line
    row = next(r for r in re.findall(r"<tr.*?</tr>", table, re.S) if "notes.md" in r)
    assert "added" in row
    from embeddings.stores.index import VectorIndex

    assert VectorIndex.load(small_index).documents["notes.md"].text.strip() == "Herons nest by the delta lake every April."
