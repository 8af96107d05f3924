"""The chat in headless Chromium: answers in bold, highlighted sources, "I don't know",
and documents that try to run script.

Needs /usr/bin/chromium (Debian package ``chromium``; CI installs it, see .ci/run).
"""

from __future__ import annotations


import pytest

from tests.ui_helpers import CHROMIUM, CHROMIUM_ARGS, ROOT, SEEDS, TIMEOUT_MS, ask_in_page, running_app

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)"),
]

ARTIFACTS = ROOT / "artifacts"

HOSTILE_TEXT = (
    "Visitor notes for the harbour museum.\n"
    "<script>window.__pwned=1</script>\n"
    '<img src=x onerror="window.__pwned=2">\n'
    "The night guard of the harbour museum is Orla Quigley, who has worked there since 2009.\n"
    "[click here](javascript:window.__pwned=3) and ![pixel](http://127.0.0.1:9/pixel.png)\n"
)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def seeds_url(tmp_path_factory):
    from qa.indexing import index_folder

    index_dir = tmp_path_factory.mktemp("ui-browser") / "seeds"
    index_folder(SEEDS, index_dir)
    with running_app(index_dir) as url:
        yield url


@pytest.fixture(scope="module")
def hostile_url(tmp_path_factory):
    from qa.indexing import index_folder

    root = tmp_path_factory.mktemp("ui-hostile")
    (root / "docs").mkdir()
    (root / "docs" / "museum <b>notes<i>.txt").write_text(HOSTILE_TEXT, encoding="utf-8")
    index_folder(root / "docs", root / "index")
    with running_app(root / "index") as url:
        yield url


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1360, "height": 940})
    page = context.new_page()
    yield page
    context.close()


def test_answer_is_bold_with_highlighted_source(page, seeds_url):
    page.goto(seeds_url)
    page.wait_for_selector("#qa-question textarea", timeout=TIMEOUT_MS)
    reply = ask_in_page(page, "When did the Kizilelma make its first flight?")

    bold = reply.locator(".qa-answer-text strong")
    assert "December 2022" in bold.inner_text()
    text = reply.inner_text()
    assert "chance this is right" in text and "reader: minilm-squad (shipped)" in text and "[1]" in text
    # Offsets are behind a "details" disclosure, not in the reading line.
    assert "chars" not in text and "details" in text
    reply.locator(".qa-details summary").first.click()
    assert "answer chars" in reply.locator(".qa-details").first.inner_text()

    mark = page.locator("#qa-sources-panel mark")
    mark.first.wait_for(timeout=TIMEOUT_MS)
    assert "December 2022" in mark.first.inner_text()
    panel = page.locator("#qa-sources-panel").inner_text()
    assert "japan_defense_minister_turkey_visit.txt" in panel and "answer chars" in panel
    info = page.locator("#qa-index-info").inner_text()
    assert "1 document" in info and "/" not in info.split("·")[0]  # the index's name, not a filesystem path

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui_answer.png"), full_page=True)


def test_older_answer_sources_can_be_selected(page, seeds_url):
    page.goto(seeds_url)
    page.wait_for_selector("#qa-question textarea", timeout=TIMEOUT_MS)
    ask_in_page(page, "Who is Turkey's defense minister?")
    ask_in_page(page, "Which European country joined the drone coalition alongside Turkey?")
    page.wait_for_function(
        "() => (document.querySelector('#qa-sources-panel mark') || {}).textContent === 'Belgium'", timeout=TIMEOUT_MS
    )
    # Clicking the first answer brings its sources back.
    page.locator("#qa-chat .qa-answer").first.click()
    page.wait_for_function(
        "() => (document.querySelector('#qa-sources-panel mark') || {}).textContent?.includes('Guler')",
        timeout=TIMEOUT_MS,
    )


def test_unanswerable_question_says_i_dont_know(page, seeds_url):
    page.goto(seeds_url)
    page.wait_for_selector("#qa-question textarea", timeout=TIMEOUT_MS)
    reply = ask_in_page(page, "What is the population of Tokyo?")
    text = reply.inner_text()
    assert "I don't know" in text and "japan_defense_minister_turkey_visit.txt" in text
    # No answer is highlighted as one; a low-confidence guess, if shown, is marked as a guess.
    assert page.locator("#qa-sources-panel mark:not(.qa-guess-mark)").count() == 0
    if page.locator("#qa-chat .qa-guess").count():
        assert "closest:" in text and "a guess, not an answer" in text
        assert page.locator("#qa-sources-panel mark.qa-guess-mark").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui_no_answer_guess.png"), full_page=True)


def test_empty_question_shows_a_message(page, seeds_url):
    page.goto(seeds_url)
    page.wait_for_selector("#qa-question textarea", timeout=TIMEOUT_MS)
    reply = ask_in_page(page, "   ")
    assert "Cannot answer" in reply.inner_text()


def test_hostile_document_runs_nothing_and_shows_as_text(page, hostile_url):
    page.goto(hostile_url)
    page.wait_for_selector("#qa-question textarea", timeout=TIMEOUT_MS)
    ask_in_page(page, "Who is the night guard of the harbour museum?")
    page.wait_for_timeout(500)  # give any injected handler a chance to fire

    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    panel = page.locator("#qa-sources-panel").inner_text()
    assert "<script>window.__pwned=1</script>" in panel
    assert '<img src=x onerror="window.__pwned=2">' in panel
    assert "[click here](javascript:window.__pwned=3)" in panel
    assert "museum <b>notes<i>.txt" in panel
    for scope in ("#qa-chat", "#qa-sources-panel"):
        assert page.locator(f"{scope} script").count() == 0
        assert page.locator(f"{scope} .qa-msg img, {scope} .qa-sources img").count() == 0
        assert page.locator(f"{scope} a[href^='javascript']").count() == 0
    assert page.locator("#qa-sources-panel b, #qa-sources-panel i, #qa-chat .qa-msg b, #qa-chat .qa-msg i").count() == 0


@pytest.fixture(scope="module")
def multidoc_url(tmp_path_factory):
    from qa.indexing import index_folder

    index_dir = tmp_path_factory.mktemp("ui-multidoc") / "multidoc"
    index_folder(ROOT / "notebooks" / "data" / "multidoc_docs", index_dir)
    with running_app(index_dir) as url:
        yield url


def _box(page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


def _overlap(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]


@pytest.mark.parametrize("top_k", [1, 10])
def test_sources_panel_content_stays_inside_its_box(page, multidoc_url, top_k):
    page.goto(multidoc_url)
    page.wait_for_selector("#qa-question textarea", timeout=TIMEOUT_MS)
    slider = page.locator("#qa-top-k input[type=number]")
    slider.fill(str(top_k))
    slider.press("Enter")
    # Unanswerable from these documents: the panel lists every passage the reader looked at.
    ask_in_page(page, "What is the boiling point of liquid nitrogen on Mars?")
    page.wait_for_function(
        "(n) => document.querySelectorAll('#qa-sources-panel .qa-source').length === n", arg=top_k, timeout=TIMEOUT_MS
    )
    panel = _box(page, "#qa-sources-panel")
    content = _box(page, "#qa-sources-panel .qa-sources")
    # The content's box lies inside the panel's box (it scrolls rather than spilling out)...
    assert content["y"] >= panel["y"] - 1 and content["y"] + content["height"] <= panel["y"] + panel["height"] + 1
    assert content["x"] >= panel["x"] - 1 and content["x"] + content["width"] <= panel["x"] + panel["width"] + 1
    # ... and the panel overlaps none of the controls below it.
    for other in ("#qa-top-k", "#qa-index-info", "#qa-docs"):
        assert not _overlap(panel, _box(page, other)), other
    if top_k == 10:
        scrolls = page.evaluate(
            "() => { const e = document.querySelector('#qa-sources-panel .qa-sources');"
            " return [e.scrollHeight > e.clientHeight, getComputedStyle(e).overflowY]; }"
        )
        assert scrolls == [True, "auto"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"ui_sources_panel_top{top_k}.png"), full_page=True)


def test_answer_opens_in_its_document_scrolled_to_the_mark(page, seeds_url):
    page.goto(seeds_url)
    page.wait_for_selector("#qa-question textarea", timeout=TIMEOUT_MS)
    ask_in_page(page, "Which European country joined the drone coalition alongside Turkey?")
    page.locator("#qa-docview-box").get_by_text("Answer in its document").click()
    mark = page.locator("#qa-docview mark")
    mark.wait_for(timeout=TIMEOUT_MS)
    assert mark.inner_text() == "Belgium"
    text = page.locator("#qa-docview .qa-docview-text")
    assert text.inner_text().startswith("Japanese Defense Minister Gen Nakatani")  # the whole document
    page.wait_for_function(
        "() => { const b = document.querySelector('#qa-docview .qa-docview-text'), m = b.querySelector('mark');"
        " const r = b.getBoundingClientRect(), q = m.getBoundingClientRect(); return q.top >= r.top && q.bottom <= r.bottom; }",
        timeout=10_000,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui_answer_in_document.png"), full_page=True)
