"""Hostile content: markup in documents (and questions) shows as inert text in headless
Chromium, no script runs, and no request leaves the machine; no pickle/eval on disk data."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.reliability.helpers import ROOT
from tests.ui.helpers import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, ask_in_page

LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}

browser_marks = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def page(served_app):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 940})
        page = context.new_page()
        page.requests = []  # every URL the page asks for, from the first navigation on
        page.on("request", lambda request: page.requests.append(request.url))
        page.on("dialog", lambda dialog: (page.requests.append(f"dialog:{dialog.message}"), dialog.dismiss()))
        yield page
        browser.close()


def assert_nothing_ran_or_left(page) -> None:
    page.wait_for_timeout(800)  # give any injected handler or refresh a chance to fire
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    outside = [
        u for u in page.requests
        if not u.startswith(("data:", "blob:", "about:")) and urlparse(u).hostname not in LOCAL_HOSTS
    ]
    assert not outside, outside
    for scope in ("#qa-chat", "#qa-sources-panel"):
        assert page.locator(f"{scope} script, {scope} iframe, {scope} svg[onload], {scope} link, {scope} meta").count() == 0
        assert page.locator(f"{scope} .qa-msg img, {scope} .qa-sources img, {scope} .qa-passage img").count() == 0
        assert page.locator(f"{scope} a[href^='javascript'], {scope} a[href*='203.0.113'], {scope} [onerror]").count() == 0


@pytest.mark.parametrize("_", [0], ids=["hostile-document"])
@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")
def test_hostile_document_is_inert_text_and_nothing_leaves(page, served_app, _):
    from tests.reliability.conftest import HOSTILE_NAME

    url, _proc = served_app
    page.goto(url)
    page.wait_for_selector("#qa-question textarea", timeout=TIMEOUT_MS)
    page.locator("#qa-docview-box").get_by_text("Answer in its document").click()  # open the document view
    shown, panel = "", ""
    for question in (
        "Who is the night guard of the harbour museum?",
        "What does the museum shop sell?",
        # About the markup itself: answered or not, the passages shown are the markup lines.
        "What background image does the style sheet import?",
    ):
        reply = ask_in_page(page, question)
        if "night guard" in question:
            assert "Orla Quigley" in reply.inner_text()
        page.wait_for_timeout(300)
        panel = page.locator("#qa-sources-panel").inner_text()
        # The answer's whole document, as the document view shows it.
        document = page.locator("#qa-docview").inner_text()
        shown += page.locator("#qa-chat").inner_text() + "\n" + panel + "\n" + document
    # The markup is visible as the characters it is made of.
    for literal in (
        "<script>window.__pwned=1</script>",
        '<img src=x onerror="window.__pwned=2">',
        "[click here](javascript:window.__pwned=3)",
        "![pixel](http://203.0.113.7/pixel.png)",
        '<a href="javascript:window.__pwned=4">open</a>',
        "<style>@import url(http://203.0.113.7/s.css);",
    ):
        assert literal in shown, literal
    assert HOSTILE_NAME in panel
    assert_nothing_ran_or_left(page)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")
def test_hostile_question_is_echoed_as_text(page, served_app):
    url, _proc = served_app
    page.goto(url)
    page.wait_for_selector("#qa-question textarea", timeout=TIMEOUT_MS)
    question = '<img src=x onerror="window.__pwned=6"> ![t](http://203.0.113.7/q.png) who <script>window.__pwned=7</script>guards the museum?'
    ask_in_page(page, question)
    assert '<img src=x onerror="window.__pwned=6">' in page.locator("#qa-chat").inner_text()
    assert_nothing_ran_or_left(page)


# --------------------------------------------------------------------------- no unsafe loading

SOURCE_DIRS = ("qa", "embeddings", "ui")
#: (pattern over code tokens, why it is unsafe)
FORBIDDEN = [
    (re.compile(r"\b(c?pickle|dill|shelve|marshal|joblib)\b"), "unpickling runs arbitrary code"),
    (re.compile(r"(?<![\w.])(eval|exec)\s*\("), "evaluates text as code"),
    (re.compile(r"\ballow_pickle\s*=\s*True\b"), "NumPy unpickling"),
    (re.compile(r"\btorch\s*\.\s*load\s*\("), "torch.load unpickles"),
    (re.compile(r"\btrust_remote_code\s*=\s*True\b"), "runs code shipped with a model"),
    (re.compile(r"\byaml\s*\.\s*(unsafe_)?load\s*\("), "yaml.load can construct objects"),
]


def code_without_comments_and_strings(path: Path) -> list[tuple[int, str]]:
    """Each line's code with comments and string literals (docstrings too) blanked out."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = [list(line) for line in lines]
    for tok in tokenize.generate_tokens(io.StringIO("".join(lines)).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING) or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            (r0, c0), (r1, c1) = tok.start, tok.end
            for r in range(r0, r1 + 1):
                row = keep[r - 1]
                start = c0 if r == r0 else 0
                end = c1 if r == r1 else len(row)
                for c in range(start, min(end, len(row))):
                    if row[c] != "\n":
                        row[c] = " "
    return [(n, "".join(row)) for n, row in enumerate(keep, 1)]


def test_scanner_is_precise():
    sample = (
        '"""No pickle anywhere; never eval( text."""\n'
        "model.eval()  # torch.load( in a comment\n"
        "x = np.load(p, allow_pickle=False)\n"
        "s = 'pickle eval( exec( allow_pickle=True'\n"
        "def _cmd_eval(a): return a\n"
        "y = eval(s)\n"
        "import pickle\n"
        "z = np.load(p, allow_pickle=True)\n"
        "m = torch.load(p)\n"
    )
    path = Path(__file__).parent / "_scanner_sample.tmp"
    path.write_text(sample, encoding="utf-8")
    try:
        code = code_without_comments_and_strings(path)
    finally:
        path.unlink()
    hits = [n for n, line in code for pattern, _ in FORBIDDEN if pattern.search(line)]
    assert hits == [6, 7, 8, 9]


def test_no_pickle_eval_or_exec_in_project_sources():
    files = [p for d in SOURCE_DIRS for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(files) >= 15, files
    found = []
    for path in files:
        for n, line in code_without_comments_and_strings(path):
            for pattern, why in FORBIDDEN:
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}  ({why})")
    assert not found, "\n".join(found)


# --------------------------------------------------------------------------- uploads


def _upload_api():
    import qa.ingest.indexing as indexing

    if not all(hasattr(indexing, n) for n in ("add_uploads", "safe_upload_name")):
        pytest.skip("chat uploads (qa.ingest.indexing.add_uploads) are not implemented in this checkout")
    return indexing


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd.txt", "..\\..\\windows\\win.ini.txt", "/abs/path/notes.txt", "a/../../b.md", "CURRENT.txt", "gen-x/../../y.txt"],
)
def test_upload_names_cannot_escape_or_hide(name):
    indexing = _upload_api()
    safe = indexing.safe_upload_name(name)
    assert "/" not in safe and "\\" not in safe and not safe.startswith(".") and ".." not in safe.split("/")


@pytest.mark.parametrize("name", ["..", ".", "", ".hidden.txt", "\u202e\u200b", "/"])
def test_unusable_upload_names_are_refused(name):
    indexing = _upload_api()
    with pytest.raises(ValueError):
        indexing.safe_upload_name(name)


def test_hostile_uploads_are_refused_and_index_is_untouched(tmp_path, docs_dir):
    from embeddings.stores.index import VectorIndex
    from tests.reliability.helpers import FastEncoder

    indexing = _upload_api()
    index = tmp_path / "index"
    indexing.index_folder(docs_dir, index, encoder=FastEncoder())
    before = sorted(VectorIndex.load(index).documents)
    files = {
        "big.txt": b"word " * 300,
        "evil.exe": b"MZ\x90\x00" + bytes(100),
        "binary.txt": b"\x00\x01\x02" * 50,
        "../../escape.txt": b"The escapee is called Ned.",
    }
    uploads = []
    for n, (name, data) in enumerate(files.items()):
        # Like Gradio: each upload in its own temporary folder, under its (base) name.
        path = tmp_path / f"upload{n}" / name.rsplit("/", 1)[-1]
        path.parent.mkdir()
        path.write_bytes(data)
        uploads.append((name, path))
    report = indexing.add_uploads(index, uploads, max_bytes=1000, encoder=FastEncoder())
    reasons = {s.path: s.reason for s in report.skipped}
    assert "too large" in reasons["big.txt"] and "unsupported" in reasons["evil.exe"] and "binary" in reasons["binary.txt"]
    after = VectorIndex.load(index).documents
    assert sorted(after) == sorted(before + ["escape.txt"])
    assert not (tmp_path.parent / "escape.txt").exists() and not list(index.rglob("escape.txt"))
