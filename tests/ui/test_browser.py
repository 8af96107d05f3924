"""The chat in headless Chromium: answers in bold, highlighted sources, "I don't know",
and documents that try to run script.

Needs /usr/bin/chromium (Debian package ``chromium``; CI installs it, see .ci/run).
"""

from __future__ import annotations

import re

import pytest

from tests.ui.helpers import CHROMIUM, CHROMIUM_ARGS, REPLY, ROOT, SEEDS, TIMEOUT_MS, ask_in_page, running_app

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
def seeds_index(tmp_path_factory):
    from qa.ingest.indexing import index_folder

    index_dir = tmp_path_factory.mktemp("ui-browser") / "seeds"
    index_folder(SEEDS, index_dir)
    return index_dir


@pytest.fixture(scope="module")
def seeds_url(seeds_index):
    with running_app(seeds_index) as url:
        yield url


@pytest.fixture(scope="module")
def hostile_url(tmp_path_factory):
    from qa.ingest.indexing import index_folder

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


@pytest.fixture
def narrow_page(browser):
    """A page in a 420 px wide window (a phone held upright)."""
    context = browser.new_context(viewport={"width": 420, "height": 900})
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
    assert text.startswith("I don't know.") and "japan_defense_minister_turkey_visit.txt" in text
    # No answer is highlighted as one; a low-confidence guess, if shown, is marked as a guess.
    assert page.locator("#qa-sources-panel mark:not(.qa-guess-mark)").count() == 0
    if page.locator("#qa-chat .qa-guess").count():
        assert "Closest match (not an answer):" in text
        assert page.locator("#qa-sources-panel mark.qa-guess-mark").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui_no_answer_guess.png"), full_page=True)


#: A user message or a reply in the chat (Gradio's rows).
MESSAGE_ROWS = "#qa-chat .message-row"


@pytest.mark.parametrize("how", ["click", "enter"])
def test_a_blank_question_is_not_sent(page, seeds_url, how):
    """Ask with an empty or whitespace-only box does nothing: no question turn, no error
    turn; after a click the cursor is back in the box."""
    page.goto(seeds_url)
    page.wait_for_selector("#qa-question textarea", timeout=TIMEOUT_MS)
    ask_in_page(page, "Who is Turkey's defense minister?")
    before = page.locator(MESSAGE_ROWS).count()
    assert before == 2
    for blank in ("", "   ", " \n "):
        page.fill("#qa-question textarea", blank)
        if how == "click":
            page.click("#qa-ask")
        else:
            page.press("#qa-question textarea", "Enter")
        page.wait_for_timeout(1500)  # time for a round trip to the server, had one been made
        assert page.locator(MESSAGE_ROWS).count() == before
        assert page.locator("#qa-chat .qa-error").count() == 0
        assert page.evaluate("() => document.activeElement === document.querySelector('#qa-question textarea')")
    assert "Guler" in page.locator("#qa-sources-panel").inner_text()  # the last answer's sources stay


# --------------------------------------------------------------------------- layout (scripted reader)


class ScriptedReader:
    """Answers with the longest sentence of the best passage (a span that must wrap in a
    narrow chat); for questions about "population" abstains with that sentence as its guess,
    like the real reader's low-confidence guesses (a 170-character sentence, score 0)."""

    name = "scripted"

    def read(self, question: str, passages: list):
        from qa.answer import Answer, Citation

        p = passages[0]
        best = max(re.finditer(r"[^.\n]+\.", p.text), key=lambda m: len(m.group()))
        start = p.start + best.start() + len(best.group()) - len(best.group().lstrip())
        end = p.start + best.end()
        cite = Citation(p.doc_id, p.source, p.chunk_id, p.text, p.start, p.end, start, end, p.page_of(start))
        if "population" in question.lower():
            return Answer(question, None, 0.0, self.name, [], list(passages), guess=cite)
        return Answer(question, p.document_text[start:end], 0.9, self.name, [cite], list(passages))


@pytest.fixture(scope="module")
def scripted_url(seeds_index):
    with running_app(seeds_index, reader=ScriptedReader()) as url:
        yield url


def _style(page, selector: str, *props: str) -> list[str]:
    return page.evaluate(
        "([sel, props]) => { const s = getComputedStyle(document.querySelector(sel)); return props.map(p => s[p]); }",
        [selector, list(props)],
    )


def _rects(page, selector: str) -> list[dict]:
    """The line boxes of the first element matching ``selector`` (one per line it wraps onto)."""
    return page.evaluate(
        "(sel) => [...document.querySelector(sel).getClientRects()].map(r => ({x: r.x, y: r.y, width: r.width, height: r.height}))",
        selector,
    )


def _inside(inner: dict, outer: dict, slack: float = 1.0) -> bool:
    return (
        inner["x"] >= outer["x"] - slack
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + slack
        and inner["y"] >= outer["y"] - slack
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + slack
    )


def test_i_dont_know_is_the_headline_and_the_guess_a_small_plain_line(page, scripted_url):
    page.goto(scripted_url)
    page.wait_for_selector("#qa-question textarea", timeout=TIMEOUT_MS)
    # An answer first: its mark, for comparison with the guess's.
    ask_in_page(page, "Which European country joined the drone coalition alongside Turkey?")
    page.locator("#qa-docview-box").get_by_text("Answer in its document").click()
    page.locator("#qa-docview mark").wait_for(timeout=TIMEOUT_MS)
    answer_mark = _style(page, "#qa-docview mark", "backgroundColor", "outlineStyle")
    assert answer_mark[1] == "none"

    reply = ask_in_page(page, "What is the population of Tokyo?")
    assert reply.locator(".qa-idk").inner_text() == "I don't know."
    # All four boxes in one frame: the chat may still scroll to the new reply between calls.
    headline, line, meta, box = _boxes(
        page,
        "#qa-chat .qa-noanswer .qa-idk",
        "#qa-chat .qa-noanswer .qa-guess-line",
        "#qa-chat .qa-noanswer .qa-meta",
        "#qa-chat .qa-noanswer",
    )
    # Headline first, alone on its line(s); the labelled guess below it, then the chance.
    assert headline["y"] + headline["height"] <= line["y"] + 1 and line["y"] + line["height"] <= meta["y"] + 1
    assert headline["y"] - box["y"] < 30 and _inside(line, box)
    assert line["height"] < 3 * headline["height"]  # a 170-character guess is a small line, not a headline
    assert reply.locator(".qa-guess-line").inner_text().startswith("Closest match (not an answer): “")
    head_size, head_weight = _style(page, "#qa-chat .qa-noanswer .qa-idk", "fontSize", "fontWeight")
    line_size, = _style(page, "#qa-chat .qa-noanswer .qa-guess-line", "fontSize")
    guess_style, guess_weight = _style(page, "#qa-chat .qa-noanswer .qa-guess", "fontStyle", "fontWeight")
    assert float(line_size[:-2]) < 0.85 * float(head_size[:-2]) and int(head_weight) >= 600
    assert guess_style == "normal" and int(guess_weight) <= 400  # plain, not bold-italic
    # The chance is shown, but not as a coloured "low confidence" badge.
    assert "<1 % chance the guess is right" in reply.inner_text()  # score 0: never shown as "0 %"
    assert reply.locator(".qa-conf").count() == 0
    assert _style(page, "#qa-chat .qa-noanswer .qa-conf-guess", "backgroundColor")[0] == "rgba(0, 0, 0, 0)"

    # Wherever the guess is marked (chat, sources panel, document view) it does not look like an answer.
    page.locator("#qa-docview mark.qa-guess-mark").wait_for(timeout=TIMEOUT_MS)
    for where in ("#qa-chat .qa-noanswer", "#qa-sources-panel", "#qa-docview"):
        background, outline = _style(page, f"{where} mark.qa-guess-mark", "backgroundColor", "outlineStyle")
        assert background != answer_mark[0] and outline == "dashed", where
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui_i_dont_know_layout.png"), full_page=True)


def test_chat_buttons_never_cover_a_message(page, scripted_url):
    """Gradio's Clear and Copy icons sit in their own row above the messages: however the
    chat is scrolled, they overlap no question or reply."""
    page.goto(scripted_url)
    page.wait_for_selector("#qa-question textarea", timeout=TIMEOUT_MS)
    for q in ("Who is Turkey's defense minister?", "When did the Kizilelma make its first flight?", "What is the population of Tokyo?"):
        ask_in_page(page, q)
    scroller = "#qa-chat .bubble-wrap"
    assert page.evaluate(f"() => {{ const e = document.querySelector('{scroller}'); return e.scrollHeight > e.clientHeight; }}")
    icons = page.locator("#qa-chat .icon-button-wrapper button")
    assert icons.count() >= 1
    for n in range(page.locator(MESSAGE_ROWS).count()):
        # Scroll so that message n is the first one visible, at the very top of the list.
        page.evaluate(
            "([sel, n]) => { const box = document.querySelector(sel); const row = document.querySelectorAll('#qa-chat .message-row')[n];"
            " box.scrollTop += row.getBoundingClientRect().top - box.getBoundingClientRect().top; }",
            [scroller, n],
        )
        page.wait_for_timeout(100)
        visible = _box(page, scroller)
        for i in range(icons.count()):
            icon = icons.nth(i).bounding_box()
            for row in page.locator(f"{MESSAGE_ROWS} .message").all():
                b = row.bounding_box()
                # The part of the message the scroll box shows (the rest is clipped away).
                top, bottom = max(b["y"], visible["y"]), min(b["y"] + b["height"], visible["y"] + visible["height"])
                if bottom > top:
                    assert not _overlap(icon, {**b, "y": top, "height": bottom - top}), (n, i, icon, b, visible)
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#qa-chat").screenshot(path=str(ARTIFACTS / "ui_chat_scrolled.png"))


def test_at_420_px_the_answer_wraps_and_stays_visible(narrow_page, scripted_url):
    page = narrow_page
    page.goto(scripted_url)
    page.wait_for_selector("#qa-question textarea", timeout=TIMEOUT_MS)
    ask_in_page(page, "Which European country joined the drone coalition alongside Turkey?")
    page.locator("#qa-docview-box").get_by_text("Answer in its document").click()
    page.locator("#qa-docview mark").wait_for(timeout=TIMEOUT_MS)
    page.wait_for_timeout(300)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 420  # nothing sticks out sideways
    page.wait_for_timeout(500)  # the scroll-into-view after the answer
    for span, container, scroller in (
        ("#qa-chat .qa-answer-text strong", "#qa-chat .qa-answer", "#qa-chat .bubble-wrap"),
        ("#qa-chat .qa-context strong", "#qa-chat .qa-answer", None),
        ("#qa-sources-panel mark", "#qa-sources-panel .qa-passage", "#qa-sources-panel .qa-sources"),
        ("#qa-docview mark", "#qa-docview .qa-docview-text", "#qa-docview .qa-docview-text"),
    ):
        lines = _rects(page, span)
        assert len(lines) >= 2, span  # a long answer: it wraps ...
        outer = _box(page, container)
        for r in lines:  # ... and every line of it lies inside its box and the viewport
            assert r["x"] >= outer["x"] - 1 and r["x"] + r["width"] <= outer["x"] + outer["width"] + 1, (span, r, outer)
            assert r["x"] >= 0 and r["x"] + r["width"] <= 420, (span, r)
        if scroller:  # ... and is scrolled into view in its scroll box, not cut off at its edge
            box = _box(page, scroller)
            for r in lines:
                assert r["y"] >= box["y"] - 1 and r["y"] + r["height"] <= box["y"] + box["height"] + 1, (span, r, box)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui_answer_420px.png"), full_page=True)


def test_on_a_phone_the_new_reply_is_in_the_window_and_keyboard_focus_shows(browser, multidoc_url):
    """390 x 844, the columns stacked: after a question sent with Enter the reply is in the
    window. Tabbing onto the question box and a slider draws a focus outline."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        page.goto(multidoc_url)
        page.wait_for_selector("#qa-question textarea", timeout=TIMEOUT_MS)
        # As on a phone: the page sits scrolled down at the question box it focused (the columns
        # stack, the chat above it); typed there and sent with Enter (no button tapped).
        page.focus("#qa-question textarea")
        page.evaluate("() => window.scrollTo(0, document.documentElement.scrollHeight)")
        page.keyboard.type("Who discovered insulin?")
        page.keyboard.press("Enter")
        page.wait_for_function("(sel) => document.querySelectorAll(sel).length > 0", arg=REPLY, timeout=TIMEOUT_MS)
        in_window = (
            "(sel) => { const all = document.querySelectorAll(sel); const r = all[all.length - 1].getBoundingClientRect();"
            " return r.top >= 0 && r.top < window.innerHeight - 40; }"
        )
        page.wait_for_function(in_window, arg=REPLY, timeout=5000)  # the scroll after the answer
        page.focus("#qa-question textarea")
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")  # back by keyboard: :focus-visible
        assert _style(page, "#qa-question textarea", "outline-style")[0] != "none"
        slider = page.locator("input[type=range]").first
        slider.focus()
        page.keyboard.press("ArrowRight")
        assert page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") != "none"
    finally:
        context.close()


def test_documents_panel_names_borders_and_remove_row(narrow_page, seeds_url):
    page = narrow_page
    page.goto(seeds_url)
    page.wait_for_selector("#qa-docs-list td.qa-doc", timeout=TIMEOUT_MS)
    # The long name wraps, but only between its parts ("japan_" "defense_" ...), never mid-word.
    words = page.evaluate(
        """() => { const cell = document.querySelector('#qa-docs-list td.qa-doc'); const out = [];
          const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT); let node;
          while ((node = walker.nextNode())) { const range = document.createRange(); range.selectNodeContents(node);
            const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
            out.push([node.textContent, tops.size, Math.round(range.getBoundingClientRect().top)]); }
          return out; }"""
    )
    assert "".join(w for w, _, _ in words) == "japan_defense_minister_turkey_visit.txt"
    assert all(lines == 1 for _, lines, _ in words), words
    assert len({top for _, _, top in words}) >= 2, words  # it does wrap at this width
    # Light rules between rows, no dark grid.
    for cell in ("#qa-docs-list table.qa-docs", "#qa-docs-list table.qa-docs tr", "#qa-docs-list table.qa-docs td"):
        assert _style(page, cell, "borderLeftWidth", "borderTopWidth") == ["0px", "0px"], cell
    # The remove dropdown and its button: side by side, the same height, aligned.
    field, button = _boxes(page, "#qa-remove-choice", "#qa-remove")
    assert abs(field["height"] - button["height"]) <= 2 and abs(field["y"] - button["y"]) <= 2, (field, button)
    assert button["height"] < 60 and field["x"] + field["width"] <= button["x"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#qa-docs").screenshot(path=str(ARTIFACTS / "ui_documents_420px.png"))


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
    from qa.ingest.indexing import index_folder

    index_dir = tmp_path_factory.mktemp("ui-multidoc") / "multidoc"
    index_folder(ROOT / "notebooks" / "data" / "multidoc_docs", index_dir)
    with running_app(index_dir) as url:
        yield url


def _box(page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


def _boxes(page, *selectors: str) -> list[dict]:
    """The boxes of the first element matching each selector, read in one go (one layout, one
    scroll position), so that comparing them holds while the page scrolls or settles."""
    return page.evaluate(
        "(sels) => sels.map(s => { const r = document.querySelector(s).getBoundingClientRect(); "
        "return {x: r.x, y: r.y, width: r.width, height: r.height}; })",
        list(selectors),
    )


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
    others = ("#qa-top-k", "#qa-index-info", "#qa-docs")
    panel, content, *below = _boxes(page, "#qa-sources-panel", "#qa-sources-panel .qa-sources", *others)
    # The content's box lies inside the panel's box (it scrolls rather than spilling out)...
    assert content["y"] >= panel["y"] - 1 and content["y"] + content["height"] <= panel["y"] + panel["height"] + 1
    assert content["x"] >= panel["x"] - 1 and content["x"] + content["width"] <= panel["x"] + panel["width"] + 1
    # ... and the panel overlaps none of the controls below it.
    for other, other_box in zip(others, below, strict=True):
        assert not _overlap(panel, other_box), other
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
