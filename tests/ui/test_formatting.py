"""ui.formatting: answers, "I don't know" and hostile text, on hand-built answers (no models)."""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser

import pytest

from qa.answer import Answer, Citation, Passage
from ui import formatting as fmt

DOC = (
    "Baykar's Kizilelma completed its inaugural flight in December 2022. "
    "Earlier in the year, both Belgium and Turkey joined the International Drone Coalition."
)


def _citation(doc: str, answer: str, doc_id: str = "turkey.txt", passage_start: int = 0) -> Citation:
    start = doc.index(answer)
    return Citation(
        doc_id=doc_id,
        source=f"/docs/{doc_id}",
        chunk_id=f"{doc_id}#0",
        passage=doc[passage_start:],
        passage_start=passage_start,
        passage_end=len(doc),
        answer_start=start,
        answer_end=start + len(answer),
    )


def _passage(doc: str, doc_id: str = "turkey.txt", score: float = 0.5, start: int = 0) -> Passage:
    return Passage(doc_id, f"/docs/{doc_id}", f"{doc_id}#0", start, len(doc), doc[start:], score, doc)


def _answer(text: str, doc: str = DOC, score: float = 0.72, passage_start: int = 0, **kw) -> Answer:
    return Answer(
        question=kw.pop("question", "When did the Kizilelma make its first flight?"),
        text=text,
        score=score,
        reader=kw.pop("reader", "offline"),
        citations=[_citation(doc, text, passage_start=passage_start)],
        passages=[_passage(doc)],
    )


def _visible(html_text: str) -> str:
    """What a browser shows: tags dropped, character references decoded."""
    import html

    return html.unescape(re.sub(r"<[^>]+>", "", html_text))


# ------------------------------------------------------------------------------ answers


def test_answer_message_has_bold_span_confidence_reader_and_numbered_citation():
    answer = _answer("December 2022")
    start = DOC.index("December 2022")
    out = fmt.format_answer_html(answer)
    assert "<strong>December 2022</strong>" in out
    assert "72 % chance this is right" in out
    assert "reader: offline" in out
    assert "[1]" in out and "turkey.txt" in out
    # Offsets and scores are there for those who open "details", not in the reading line.
    details = out.split('<details class="qa-details"><summary>details</summary>', 1)[1].split("</details>", 1)[0]
    assert f"chars {start}–{start + len('December 2022')}" in details and "chance right 0.720" in details
    assert "chars" not in out.split("<details", 1)[0]
    assert "/docs/turkey.txt" not in out  # no filesystem path
    assert "I don't know" not in out


def test_answer_message_numbers_every_citation():
    doc2 = "Belgium joined the coalition."
    cite2 = _citation(doc2, "Belgium", doc_id="second.txt")
    answer = Answer("q?", "Belgium", 0.9, "offline", [_citation(DOC, "Belgium"), cite2], [])
    out = fmt.format_answer_html(answer)
    assert "[1]" in out and "[2]" in out
    assert out.index("turkey.txt") < out.index("[2]") < out.index("second.txt")
    assert "chars 0–7" in out


def test_answer_context_trims_long_passages_around_the_span():
    doc = "word " * 100 + "Belgium" + " tail" * 100
    citation = _citation(doc, "Belgium")
    before, span, after = fmt.answer_context(citation, "Belgium", context=30)
    assert span == "Belgium"
    assert before.startswith("…") and len(before) <= 32
    assert after.endswith("…") and len(after) <= 32


def test_answer_context_uses_passage_relative_offsets():
    # The passage starts mid-document: the span is found with document offsets minus passage_start.
    passage_start = DOC.index("Earlier")
    citation = _citation(DOC, "Belgium", passage_start=passage_start)
    before, span, after = fmt.answer_context(citation, "Belgium")
    assert span == "Belgium"
    assert before == "Earlier in the year, both "


def test_confidence_levels_and_clamping():
    assert fmt.confidence_level(0.9) == "high"
    assert fmt.confidence_level(0.5) == "medium"
    assert fmt.confidence_level(0.1) == "low"
    assert "&gt;99 % chance this is right" in fmt.format_answer_html(_answer("December 2022", score=1.3))  # escaped


def test_sources_panel_marks_the_answer_with_document_and_offsets():
    answer = _answer("December 2022")
    start = DOC.index("December 2022")
    out = fmt.format_sources_html(answer)
    assert "<mark>December 2022</mark>" in out
    assert "turkey.txt" in out
    assert f"answer chars {start}–{start + 13}" in out
    assert f"passage chars 0–{len(DOC)}" in out
    # The whole passage is there, around the mark.
    assert _visible(out).count("Kizilelma completed its inaugural flight") == 1


def test_sources_panel_mark_with_passage_not_at_document_start():
    passage_start = DOC.index("Earlier")
    answer = _answer("Belgium", passage_start=passage_start)
    out = fmt.format_sources_html(answer)
    assert "both <mark>Belgium</mark> and Turkey" in out


def test_sources_panel_placeholder_before_any_question():
    assert "Ask a question" in fmt.format_sources_html(None)


# --------------------------------------------------------------------------- no answer


def test_no_answer_says_i_dont_know_with_the_closest_passages():
    # Retrieval order (best first) is kept: scores of fused rankings are not comparable to sort by.
    passages = [
        _passage(DOC, doc_id="near.txt", score=0.016),
        _passage("Tokyo is far from Ankara. " * 20, doc_id="far.txt", score=0.9),
    ]
    answer = Answer("What is the capital of Japan?", None, 0.12, "offline", [], passages)
    out = fmt.format_answer_html(answer)
    assert "I don&#x27;t know" in out or "I don't know" in out
    assert "I don't know" in _visible(out)
    assert "<strong>" not in out  # nothing is presented as an answer
    assert "chance" not in out  # no guess: no probability of one
    # Closest first, with names and short excerpts.
    assert out.index("near.txt") < out.index("far.txt")
    assert "[1]" in out and "[2]" in out
    far_excerpt = _visible(out).split("far.txt", 1)[1]
    assert "…" in far_excerpt and len(far_excerpt) < fmt.EXCERPT_CHARS + 60


def test_no_answer_sources_panel_lists_closest_passages_without_marks():
    answer = Answer("What is the capital of Japan?", None, 0.1, "offline", [], [_passage(DOC)])
    out = fmt.format_sources_html(answer)
    assert "<mark>" not in out
    assert "closest passages" in out
    assert "turkey.txt" in out


def _guess_answer() -> Answer:
    start = DOC.index("December 2022")
    guess = Citation("turkey.txt", "/docs/turkey.txt", "turkey.txt#0", DOC, 0, len(DOC), start, start + 13)
    return Answer("When did it first fly?", None, 0.31, "minilm-squad (shipped)", [], [_passage(DOC)], guess=guess)


def test_no_answer_shows_the_best_guess_marked_as_a_guess():
    answer = _guess_answer()
    assert answer.guess_text == "December 2022" and answer.text is None
    out = fmt.format_answer_html(answer)
    visible = _visible(out)
    # "I don't know" is the headline, alone; the guess is a labelled line of its own below it.
    headline = re.search(r'<div class="qa-idk">(.*?)</div>', out).group(1)
    assert _visible(headline) == "I don't know."
    assert "Closest match (not an answer): “December 2022”" in visible
    assert visible.index("I don't know.") < visible.index("Closest match") < visible.index("31 % chance the guess is right")
    guess_line = re.search(r'<div class="qa-guess-line">(.*?)</div>', out).group(1)
    assert "<strong>" not in guess_line and "<em" not in guess_line  # plain text, not bold-italic
    assert "<strong>" not in out  # never presented like an answer
    # Its chance is plain text, not a red "low confidence" badge that reads as an alarm.
    assert "qa-conf-low" not in out and 'class="qa-conf ' not in out and "qa-conf-guess" in out
    assert '<mark class="qa-guess-mark" title="the guess, not an answer">December 2022</mark>' in out
    panel = fmt.format_sources_html(answer)
    assert '<mark class="qa-guess-mark">December 2022</mark>' in panel and "<mark>" not in panel
    assert "a guess, not an answer" in _visible(panel)
    data = answer.to_dict()
    assert data["answer"] is None and data["guess"]["text"] == "December 2022"
    assert DOC[data["guess"]["answer_start"] : data["guess"]["answer_end"]] == "December 2022"


def test_a_long_guess_is_quoted_short_on_its_line():
    doc = "The committee discussed " + "many long and winding procedural matters " * 5 + "at length."
    guess = Citation("m.txt", "/docs/m.txt", "m.txt#0", doc, 0, len(doc), 0, len(doc))
    out = fmt.format_answer_html(Answer("q?", None, 0.0, "r", [], [_passage(doc, "m.txt")], guess=guess))
    line = _visible(re.search(r'<div class="qa-guess-line">(.*?)</div>', out).group(1))
    assert len(doc) > 200 and line.endswith("…”") and len(line) < fmt.GUESS_CHARS + 40
    assert _visible(re.search(r'<div class="qa-idk">(.*?)</div>', out).group(1)) == "I don't know."


def test_no_answer_without_passages():
    out = fmt.format_answer_html(Answer("q?", None, 0.0, "offline", [], []))
    assert "I don't know" in _visible(out)
    assert "Closest passages" not in out


def test_excerpt_cuts_at_a_word_and_flattens_whitespace():
    text = "alpha beta\n\ngamma " * 40
    out = fmt.excerpt(text, limit=50)
    assert "\n" not in out and out.endswith("…") and len(out) <= 51
    assert fmt.excerpt("short  text") == "short text"


def test_error_message_is_escaped():
    out = fmt.format_error_html("question <b>x</b> is empty")
    assert "Cannot answer" in out and "&lt;b&gt;" in out and "<b>" not in out


def test_index_info_line():
    # The index's name, never the absolute path on the server's disk.
    assert fmt.format_index_info("/srv/data/idx", 1, 4) == "**Index:** idx · 1 document · 4 chunks"
    assert "2 documents · 1 chunk" in fmt.format_index_info("/idx", 2, 1)
    assert "&lt;x&gt;" in fmt.format_index_info("/i/<x>", 1, 1)


def test_question_label_is_short():
    label = fmt.question_label(3, "word " * 40)
    assert label.startswith("3. word") and label.endswith("…") and len(label) <= 64


# ----------------------------------------------------------------------------- hostile

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
MD_LINK = "[click me](javascript:alert(1))"
MD_IMAGE = "![x](http://evil.example/pixel.png)"
HOSTILE_DOC = f"Intro {SCRIPT} and {IMG}. The launch code is {MD_LINK} then {MD_IMAGE} done."


def _hostile_outputs() -> list[str]:
    answer_text = SCRIPT + " " + IMG
    doc = f"The secret is {answer_text} indeed. {MD_LINK} {MD_IMAGE}"
    answered = Answer(
        question=f"What is {SCRIPT} {MD_LINK}?",
        text=answer_text,
        score=0.5,
        reader=f"reader {IMG}",
        citations=[_citation(doc, answer_text, doc_id=f"{IMG}.txt")],
        passages=[_passage(doc, doc_id=f"{SCRIPT}.txt")],
    )
    unanswered = Answer(SCRIPT, None, 0.1, "offline", [], [_passage(HOSTILE_DOC, doc_id=f"{MD_IMAGE}.txt")])
    guessed = dataclasses.replace(unanswered, guess=_citation(HOSTILE_DOC, f"{SCRIPT} and {IMG}", doc_id=f"{IMG}.txt"))
    return [
        fmt.format_answer_html(answered),
        fmt.format_sources_html(answered),
        fmt.format_answer_html(unanswered),
        fmt.format_sources_html(unanswered),
        fmt.format_question_html(answered.question),
        fmt.format_error_html(SCRIPT + IMG + MD_LINK),
        fmt.format_sources_error_html(SCRIPT + MD_IMAGE),
        fmt.format_answer_html(guessed),
        fmt.format_sources_html(guessed),
        fmt.format_document_html(guessed),
    ]


class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)


ALLOWED_TAGS = {"div", "span", "strong", "mark", "q", "details", "summary"}
ALLOWED_ATTRIBUTES = {"class", "title"}


@pytest.mark.parametrize("index", range(10))
def test_hostile_text_is_escaped_everywhere(index):
    out = _hostile_outputs()[index]
    parser = _TagCollector()
    parser.feed(out)
    parser.close()
    # Only the markup ui.formatting writes itself: no <script>, <img>, <a>, no on* handlers.
    assert parser.tags <= ALLOWED_TAGS, parser.tags
    assert parser.attributes <= ALLOWED_ATTRIBUTES, parser.attributes
    assert "<script" not in out.lower() and "<img" not in out.lower()
    # Markdown link/image syntax cannot be parsed: no literal "](" or "![" survives.
    assert "](" not in out and "![" not in out


def test_hostile_text_still_reads_as_itself():
    visible = _visible(fmt.format_sources_html(_answer_with_doc(HOSTILE_DOC, "launch code")))
    for literal in (SCRIPT, IMG, MD_LINK, MD_IMAGE):
        assert literal in visible


def test_hostile_answer_span_is_escaped_inside_bold_and_mark():
    answer = _answer(SCRIPT, doc=f"x {SCRIPT} y")
    assert "<strong>&lt;script&gt;alert(1)&lt;/script&gt;</strong>" in fmt.format_answer_html(answer)
    assert "<mark>&lt;script&gt;alert(1)&lt;/script&gt;</mark>" in fmt.format_sources_html(answer)


def test_escape_neutralises_markdown_and_html():
    out = fmt.escape('[a](javascript:x) ![i](http://e/p.png) <b> "q" `c` $x$ *e*')
    for raw in ("[", "]", "!", "<", ">", '"', "`", "$", "*"):
        assert raw not in out
    assert _visible(out) == '[a](javascript:x) ![i](http://e/p.png) <b> "q" `c` $x$ *e*'


def _answer_with_doc(doc: str, span: str) -> Answer:
    return Answer("q?", span, 0.5, "offline", [_citation(doc, span)], [_passage(doc)])


# --------------------------------------------------------------------------- document view


def test_document_view_shows_the_whole_document_with_the_answer_marked():
    answer = _answer("Belgium")
    out = fmt.format_document_html(answer)
    assert "<mark>Belgium</mark>" in out
    visible = _visible(out)
    # Every character of the document is there, in order, around the mark.
    assert DOC in visible and f"characters 0–{len(DOC):,} of {len(DOC):,}" in visible
    assert "appears here" in fmt.format_document_html(None)


def test_document_view_of_a_pdf_answer_shows_its_page():
    pages_text = ["Page one text. ", "The captain is Ilse Varga. ", "Page three."]
    doc = "".join(pages_text)
    starts = (0, len(pages_text[0]), len(pages_text[0]) + len(pages_text[1]))
    s = doc.index("Ilse Varga")
    passage = Passage("r.pdf", "/r.pdf", "r.pdf#0", 0, len(doc), doc, 0.9, doc, starts)
    cite = Citation("r.pdf", "/r.pdf", "r.pdf#0", doc, 0, len(doc), s, s + 10, page=2)
    out = fmt.format_document_html(Answer("Who?", "Ilse Varga", 0.9, "r", [cite], [passage]))
    visible = _visible(out)
    assert "<mark>Ilse Varga</mark>" in out and "page 2" in visible
    assert "Page one" not in visible and "Page three" not in visible


def test_sources_and_documents_show_a_label_for_the_source_never_a_server_path():
    answer = _answer("December 2022")
    cite = answer.citations[0]
    absolute = Answer(answer.question, answer.text, 0.7, "r", [dataclasses.replace(cite, source="/srv/data/seeds/turkey.txt")], answer.passages)
    panel = fmt.format_sources_html(absolute)
    assert 'title="seeds/turkey.txt"' in panel and "/srv/data" not in panel
    assert fmt.source_label("/srv/data/seeds/sub/a.txt", "sub/a.txt") == "seeds/sub/a.txt"
    assert fmt.source_label("seeds/a.txt", "a.txt") == "seeds/a.txt"  # relative, from an older index
    assert fmt.source_label("upload:a.txt", "a.txt") == "uploaded"


def test_documents_table_breaks_names_between_their_parts():
    from qa.ingest.indexing import DocumentInfo

    docs = [DocumentInfo("japan_defense_minister.txt", "text", 4, 100, None, "/srv/seeds/japan_defense_minister.txt")]
    table = fmt.format_documents_html(docs)
    assert ">japan_<wbr>defense_<wbr>minister.<wbr>txt</td>" in table  # break opportunities, not break-all
    assert 'title="japan_defense_minister.txt"' in table  # the whole name on hover
    assert 'title="seeds/japan_defense_minister.txt"' in table and "/srv" not in table
    assert fmt.breakable_name("a<b>_c") == "a&lt;b&gt;_<wbr>c"


def test_document_view_marks_a_guess_as_a_guess():
    out = fmt.format_document_html(_guess_answer())
    assert '<mark class="qa-guess-mark">December 2022</mark>' in out and "a guess, not an answer" in _visible(out)


# --------------------------------------------------------------------------- upload status


def _report(**kw):  # noqa: ANN202
    from qa.ingest.documents import Skipped
    from qa.ingest.indexing import IndexReport

    skipped = [Skipped(name, reason) for name, reason in kw.pop("skipped", [])]
    return IndexReport(directory="/idx", skipped=skipped, **kw)


def _lines(status: str) -> dict[str, str]:
    """Each status line's text -> its colour class."""
    return {_visible(text): cls for cls, text in re.findall(r'<div class="qa-status-line (qa-status-\w+)">(.*?)</div>', status)}


def test_rejected_uploads_show_in_the_error_colour_even_beside_added_ones():
    mixed = fmt.format_index_report_html(
        _report(added=["notes.md"], skipped=[("report.pdf", "not a PDF file (no %PDF header); corrupt or mislabelled")]),
        chunks={"notes.md": 2},
    )
    assert _lines(mixed) == {
        "Added: notes.md (2 chunks)": "qa-status-ok",
        "Not added: report.pdf: not a PDF file (no %PDF header); corrupt or mislabelled": "qa-status-error",
    }
    assert mixed.startswith('<div class="qa-status qa-status-mixed">')
    only_refused = fmt.format_index_report_html(_report(skipped=[("run.sh", "unsupported file type")]))
    assert only_refused.startswith('<div class="qa-status qa-status-error">')
    assert _lines(only_refused) == {"Not added: run.sh: unsupported file type": "qa-status-error"}
    done = fmt.format_index_report_html(_report(removed=["a.txt"]))
    assert done.startswith('<div class="qa-status qa-status-ok">') and "qa-status-error" not in done
    assert "Already indexed, unchanged." in _visible(fmt.format_index_report_html(_report()))
    assert "&lt;b&gt;" in fmt.format_index_report_html(_report(skipped=[("<b>.pdf", "bad")]))
