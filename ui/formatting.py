"""Pure functions that turn an :class:`~qa.answer.Answer` into HTML for the browser chat.

Everything that comes from a document, a question or an answer is untrusted: it goes
through :func:`escape` before it is put into markup. ``escape`` does HTML escaping *and*
turns Markdown/LaTeX punctuation into numeric character references, so text such as
``<script>``, ``<img onerror=…>``, ``[x](javascript:…)`` or ``![](http://…)`` is shown
literally wherever it ends up (raw HTML, Markdown, the chat bubble), never interpreted.

No Gradio import here: these functions are unit-tested on hand-built answers.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from qa.answer import Answer, Citation, Passage, percent

#: Characters that Markdown (inline syntax, autolinks), GFM tables/strikethrough or
#: KaTeX could interpret. Replaced by numeric references after HTML escaping, so they
#: render as themselves but no parser sees syntax in them.
_MARKDOWN_CHARS = "\\`*[]!$|~"
_MARKDOWN_TABLE = {ord(c): f"&#{ord(c)};" for c in _MARKDOWN_CHARS}

#: Characters of context shown either side of an answer in the chat.
CHAT_CONTEXT_CHARS = 90
#: Length of the excerpt shown for a passage the reader looked at without answering.
EXCERPT_CHARS = 180
#: Passages listed under "I don't know".
CLOSEST_PASSAGES = 3


def escape(text: object) -> str:
    """``text`` made safe for HTML *and* Markdown: shows as itself, executes and links nothing."""
    return html.escape(str(text), quote=True).translate(_MARKDOWN_TABLE)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def confidence_level(score: float) -> str:
    """``"high"``, ``"medium"`` or ``"low"``: the CSS class of a confidence badge."""
    if score >= 0.7:
        return "high"
    if score >= 0.4:
        return "medium"
    return "low"


def chance_text(score: float, *, guess: bool = False) -> str:
    """The reader's score as what it is: ``"72 % chance this is right"`` (calibrated P(correct));
    a ``guess``'s is rounded down (:func:`qa.answer.percent`)."""
    return f"{percent(score, guess=guess)} chance this is right"


_CONFIDENCE_TITLE = "the reader's estimate, measured on questions it was not trained on"


def _confidence_badge(score: float) -> str:
    """An answer's chance of being right, as a coloured pill (green, yellow, red)."""
    score = min(max(float(score), 0.0), 1.0)
    return f'<span class="qa-conf qa-conf-{confidence_level(score)}" title="{_CONFIDENCE_TITLE}">{escape(chance_text(score))}</span>'


def _guess_confidence(score: float) -> str:
    """A guess's chance of being right as plain, muted text: a red "<1 %" pill beside
    "I don't know" would read as an alarm about the headline, not about the guess."""
    text = chance_text(score, guess=True).replace("this is right", "the guess is right")
    return f'<span class="qa-conf-guess" title="{_CONFIDENCE_TITLE}">{escape(text)}</span>'


def _reader_badge(reader: str) -> str:
    return f'<span class="qa-reader">reader: {escape(reader)}</span>'


def _cite_label(n: int) -> str:
    return f'<span class="qa-cite-num">[{n}]</span>'


def _offsets(start: int, end: int) -> str:
    return f"chars {start}–{end}"


def _page(page: int | None) -> str:
    """``"p. 3, "`` for a PDF page (before the offsets), else nothing."""
    return f'<span class="qa-page">p. {int(page)}</span>, ' if page is not None else ""


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The start of ``text`` on one line, cut at a word boundary, with "…" when cut (not escaped)."""
    flat = _one_line(text)
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:.") + "…"


def answer_context(citation: Citation, answer_text: str, context: int = CHAT_CONTEXT_CHARS) -> tuple[str, str, str]:
    """``(before, span, after)`` around the answer inside the cited passage, trimmed to ``context``
    characters each side (with "…" where trimmed). Unescaped."""
    before, span, after = citation.split_passage()
    if not span:
        span = answer_text
    if len(before) > context:
        tail = before[-context:]
        before = "…" + (tail.split(" ", 1)[1] if " " in tail else tail)
    if len(after) > context:
        head = after[:context]
        after = (head.rsplit(" ", 1)[0] if " " in head else head) + "…"
    left = _one_line(before) + (" " if before[-1:].isspace() else "")
    right = (" " if after[:1].isspace() else "") + _one_line(after)
    return left, span, right


def format_answer_html(answer: Answer) -> str:
    """The chat message for ``answer``: the bold answer span, confidence, reader and
    numbered citations; or "I don't know" with the closest passages looked at."""
    if answer.text is None:
        return format_no_answer_html(answer)
    parts = [
        '<div class="qa-msg qa-answer">',
        f'<div class="qa-answer-text"><strong>{escape(answer.text)}</strong></div>',
        f'<div class="qa-meta">{_confidence_badge(answer.score)} {_reader_badge(answer.reader)}</div>',
    ]
    if answer.citations:
        parts.append('<div class="qa-cites">')
        for n, c in enumerate(answer.citations, 1):
            before, span, after = answer_context(c, answer.text)
            parts.append(
                '<div class="qa-cite">'
                f'{_cite_label(n)} <span class="qa-doc">{escape(c.doc_id)}</span>{_page_suffix(c.page)}'
                f'<div class="qa-context">{escape(before)}<strong>{escape(span)}</strong>{escape(after)}</div>'
                f"{_details(c, answer.score)}"
                "</div>"
            )
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def _page_suffix(page: int | None) -> str:
    """``", p. 3"`` after a document name for PDFs, else nothing."""
    return f', <span class="qa-page">p. {int(page)}</span>' if page is not None else ""


def _details(c: Citation, score: float) -> str:
    """Offsets and scores for those who want them, folded away by default."""
    return (
        '<details class="qa-details"><summary>details</summary>'
        f'<span class="qa-offsets">answer {_offsets(c.answer_start, c.answer_end)} · '
        f"passage {_offsets(c.passage_start, c.passage_end)} · chunk {escape(c.chunk_id)} · "
        f"chance right {min(max(float(score), 0.0), 1.0):.3f}</span></details>"
    )


#: Longest guess quoted on the "Closest match (not an answer)" line of the chat (the whole
#: span is in the cited context below it).
GUESS_CHARS = 140


def format_no_answer_html(answer: Answer) -> str:
    """"I don't know" as the headline, with what the reader looked at below it.

    With a guess (the reader's best span, below its threshold): one small, plainly labelled
    line "Closest match (not an answer): …" (plain text, never bold or italic), the guess's
    chance as muted text (not a coloured badge), and its passage with the span marked as a
    guess (``qa-guess-mark``). Without one: the closest passages retrieved."""
    guess = answer.guess_text
    parts = [
        '<div class="qa-msg qa-noanswer">',
        '<div class="qa-idk">I don\'t know.</div>',
    ]
    if guess:
        parts.append(
            '<div class="qa-guess-line"><span class="qa-guess-label">Closest match (not an answer):</span> '
            f'<span class="qa-guess">“{escape(excerpt(guess, GUESS_CHARS))}”</span></div>'
        )
    parts.append(
        '<div class="qa-meta">'
        + (f"{_guess_confidence(answer.score)} " if guess else "The documents do not seem to answer this. ")
        + f"{_reader_badge(answer.reader)}</div>"
    )
    closest = _closest_passages(answer.passages)
    if answer.guess is not None:
        g = answer.guess
        before, span, after = answer_context(g, guess or "")
        parts.append(
            '<div class="qa-cites"><div class="qa-cite qa-cite-guess">'
            f'{_cite_label(1)} <span class="qa-doc">{escape(g.doc_id)}</span>{_page_suffix(g.page)}'
            f'<div class="qa-context">{escape(before)}<mark class="qa-guess-mark" title="the guess, not an answer">'
            f"{escape(span)}</mark>{escape(after)}</div>"
            f"{_details(g, answer.score)}</div></div>"
        )
    elif closest:
        parts.append('<div class="qa-closest-title">Closest passages I looked at:</div><div class="qa-cites">')
        for n, p in enumerate(closest, 1):
            parts.append(
                '<div class="qa-cite">'
                f'{_cite_label(n)} <span class="qa-doc">{escape(p.doc_id)}</span>{_page_suffix(p.page)}'
                f'<div class="qa-context">{escape(excerpt(p.text))}</div>'
                "</div>"
            )
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def _closest_passages(passages: list[Passage], limit: int = CLOSEST_PASSAGES) -> list[Passage]:
    # Retrieval order: passages arrive best first, whatever scale their scores are on.
    return list(passages[:limit])


def format_error_html(message: str) -> str:
    """A problem with the question (empty, too long, bad index) as a chat message."""
    return f'<div class="qa-msg qa-error"><span class="qa-error-label">Cannot answer:</span> {escape(message)}</div>'


def format_question_html(question: str) -> str:
    """The user's question as a chat message (escaped)."""
    return f'<div class="qa-question">{escape(question)}</div>'


def format_sources_html(answer: Answer | None) -> str:
    """The sources panel for ``answer``: each cited passage with the answer span in
    ``<mark>``, its document name and offsets; for "I don't know", the closest passages."""
    if answer is None:
        return (
            '<div class="qa-sources qa-sources-empty">'
            "<p>Ask a question: the passages behind the answer appear here, "
            "with the answer highlighted.</p></div>"
        )
    head = f'<div class="qa-sources-q">Sources for <q>{escape(answer.question)}</q></div>'
    parts = ['<div class="qa-sources">', head]
    if answer.text is not None and answer.citations:
        for n, c in enumerate(answer.citations, 1):
            before, span, after = c.split_passage()
            parts.append(
                '<div class="qa-source">'
                '<div class="qa-source-head">'
                f'{_cite_label(n)} <span class="qa-doc" title="{escape(source_label(c.source, c.doc_id))}">{escape(c.doc_id)}</span>'
                f'<span class="qa-offsets">{_page(c.page)}answer {_offsets(c.answer_start, c.answer_end)} · '
                f"passage {_offsets(c.passage_start, c.passage_end)}</span></div>"
                f'<div class="qa-passage">{escape(before)}<mark>{escape(span)}</mark>'
                f"{escape(after)}</div>"
                "</div>"
            )
    else:
        note = (
            "No answer: these are the closest passages retrieved."
            if answer.text is None
            else "The reader gave no citation for this answer."
        )
        if answer.text is None and answer.guess is not None:
            note = "No answer. The reader's low-confidence guess is marked in its passage (a guess, not an answer); below it, the other passages retrieved."
        parts.append(f'<div class="qa-sources-note">{note}</div>')
        # The panel lists every passage the reader looked at (the chat message, only the first few).
        shown = list(answer.passages)
        if answer.text is None and answer.guess is not None:
            g = answer.guess
            before, span, after = g.split_passage()
            parts.append(
                '<div class="qa-source qa-source-guess">'
                '<div class="qa-source-head">'
                f'<span class="qa-cite-num">guess</span> '
                f'<span class="qa-doc" title="{escape(source_label(g.source, g.doc_id))}">{escape(g.doc_id)}</span>'
                f'<span class="qa-offsets">{_page(g.page)}answer {_offsets(g.answer_start, g.answer_end)} · '
                f"passage {_offsets(g.passage_start, g.passage_end)}</span></div>"
                f'<div class="qa-passage">{escape(before)}<mark class="qa-guess-mark">{escape(span)}</mark>{escape(after)}</div>'
                "</div>"
            )
            shown = [p for p in shown if p.chunk_id != g.chunk_id]
        for n, p in enumerate(shown, 1):
            parts.append(
                '<div class="qa-source qa-source-dim">'
                '<div class="qa-source-head">'
                f'{_cite_label(n)} <span class="qa-doc" title="{escape(source_label(p.source, p.doc_id))}">{escape(p.doc_id)}</span>'
                f'<span class="qa-offsets">{_page(p.page)}passage {_offsets(p.start, p.end)} · retrieval rank {n}</span>'
                f'</div><div class="qa-passage">{escape(p.text)}</div></div>'
            )
    parts.append("</div>")
    return "".join(parts)


#: Longest document shown whole in the document view; longer ones show this many characters
#: around the answer (a browser renders a few hundred kilobytes of text without trouble).
DOCUMENT_VIEW_CHARS = 200_000


def format_document_html(answer: Answer | None) -> str:
    """The answer's whole document (for a PDF: the answer's page) with the answer, or the
    guess, marked; the app scrolls the mark into view. Empty note when there is nothing to show."""
    cite = None
    if answer is not None:
        cite = answer.citations[0] if answer.citations else answer.guess
    if cite is None:
        return '<div class="qa-docview qa-docview-empty">The document behind an answer appears here.</div>'
    passage = next((p for p in answer.passages if p.chunk_id == cite.chunk_id and p.document_text), None)
    if passage is None:
        return '<div class="qa-docview qa-docview-empty">The document text is not available for this answer.</div>'
    text = passage.document_text
    lo, hi, where = 0, len(text), escape(cite.doc_id)
    if passage.pages and cite.page is not None:
        starts = list(passage.pages) + [len(text)]
        lo, hi = starts[cite.page - 1], starts[cite.page]
        where += f", page {cite.page}"
    if hi - lo > DOCUMENT_VIEW_CHARS:
        lo = max(lo, cite.answer_start - DOCUMENT_VIEW_CHARS // 2)
        hi = min(hi, lo + DOCUMENT_VIEW_CHARS)
    a, b = max(cite.answer_start, lo), min(cite.answer_end, hi)
    kind = "guess" if not answer.citations else "answer"
    mark = f'<mark class="qa-guess-mark">{escape(text[a:b])}</mark>' if kind == "guess" else f"<mark>{escape(text[a:b])}</mark>"
    return (
        f'<div class="qa-docview"><div class="qa-docview-head">{where} · characters {lo:,}–{hi:,} of {len(text):,}'
        f'{" · the marked span is a guess, not an answer" if kind == "guess" else ""}</div>'
        f'<div class="qa-docview-text">{escape(text[lo:a])}{mark}{escape(text[b:hi])}</div></div>'
    )


def format_sources_error_html(message: str) -> str:
    """The sources panel after a refused question."""
    return f'<div class="qa-sources"><div class="qa-sources-note">No sources: {escape(message)}</div></div>'


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def format_index_info(directory: str | os.PathLike[str] | None, documents: int, chunks: int) -> str:
    """One Markdown line naming the index in use and its size (the path is escaped)."""
    # The folder's name, not its absolute path: users need to know which index, not where
    # on the server's disk it lives (the full path is in the CLI and logs).
    where = escape(Path(directory).name or str(directory)) if directory is not None else "(in memory)"
    return f"**Index:** {where} · {_plural(documents, 'document')} · {_plural(chunks, 'chunk')}"


def question_label(n: int, question: str, limit: int = 60) -> str:
    """A past question as a dropdown choice (plain text: Gradio renders choices as text)."""
    flat = _one_line(question)
    return f"{n}. " + (flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…")


# --------------------------------------------------------------------------- documents panel

#: Where a long document name may wrap: after these characters (``japan_defense_…``), never
#: inside one of the words between them.
_NAME_BREAKS = "_-./"


def breakable_name(name: str) -> str:
    """``name`` escaped, with a ``<wbr>`` (a line-break opportunity) after each ``_ - . /``:
    a narrow column wraps ``japan_defense_minister_turkey_visit.txt`` between its words
    rather than mid-word (``visi|t.txt``)."""
    out = []
    for ch in name:
        out.append(escape(ch))
        if ch in _NAME_BREAKS:
            out.append("<wbr>")
    return "".join(out)


def source_label(source: str, doc_id: str) -> str:
    """Where a document came from, as shown to chat users (unescaped): ``"uploaded"`` for an
    upload; for a file, the indexed folder's name and the document id (``"seeds/report.pdf"``),
    never the absolute path on the server's disk (sources are stored absolute)."""
    if not source:
        return doc_id
    if source.startswith("upload:"):
        return "uploaded"
    path = source.replace("\\", "/")
    if path.endswith("/" + doc_id):
        folder = path[: -len(doc_id) - 1].rstrip("/").rsplit("/", 1)[-1]
        return f"{folder}/{doc_id}" if folder else doc_id
    parts = [p for p in path.split("/") if p]
    return "/".join(parts[-2:]) if parts else doc_id


def format_documents_html(documents: list) -> str:
    """The indexed documents as a small table: id, type, chunks (and pages for PDFs).

    ``documents`` are :class:`qa.ingest.indexing.DocumentInfo` (anything with ``doc_id``, ``kind``,
    ``chunks`` and ``pages``)."""
    if not documents:
        return '<div class="qa-docs qa-docs-empty">No documents indexed yet: upload some.</div>'
    rows = []
    for d in documents:
        pages = f" · {_plural(d.pages, 'page')}" if getattr(d, "pages", None) is not None else ""
        # Where it came from: added ones stay until removed; folder ones follow their folder.
        added = getattr(d, "origin", "folder") == "added"
        origin = (
            '<td class="qa-origin" title="kept until you remove it">added</td>'
            if added
            else f'<td class="qa-origin" title="{escape(source_label(getattr(d, "source", ""), d.doc_id))}">folder</td>'
        )
        rows.append(
            f'<tr><td class="qa-doc" title="{escape(d.doc_id)}">{breakable_name(d.doc_id)}</td><td>{escape(d.kind)}</td>'
            f'<td class="qa-num">{int(d.chunks):,}{pages}</td>{origin}</tr>'
        )
    return (
        '<table class="qa-docs"><thead><tr><th>Document</th><th>Type</th><th>Chunks</th><th>From</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def format_status_html(lines: list[str], *, ok: bool = True) -> str:
    """A short status message (after an upload or removal); every line escaped.

    ``ok``: the success colour (``qa-status-ok``), else the error colour (``qa-status-error``)."""
    cls = "qa-status-ok" if ok else "qa-status-error"
    body = "<br>".join(escape(line) for line in lines)
    return f'<div class="qa-status {cls}">{body}</div>'


def format_index_report_html(report, chunks: dict[str, int] | None = None) -> str:  # noqa: ANN001 - qa.ingest.indexing.IndexReport
    """What an upload or removal did, with every refused file and its reason; with
    ``chunks`` (document id → chunk count) each added or replaced document shows its count.

    Each line has its own colour: what was done in the success colour (``qa-status-ok``),
    every refused file in the error colour (``qa-status-error``), so a mixed upload shows
    both at a glance. The outer ``qa-status`` block is ``qa-status-error`` when nothing was done
    and something was refused, else ``qa-status-mixed`` or ``qa-status-ok``."""
    chunks = chunks or {}

    def named(ids: list[str]) -> str:
        return ", ".join(f"{d} ({_plural(chunks[d], 'chunk')})" if d in chunks else d for d in ids)

    done: list[str] = []
    if report.added:
        done.append("Added: " + named(report.added))
    if report.changed:
        done.append("Replaced: " + named(report.changed))
    if report.removed:
        done.append("Removed: " + ", ".join(report.removed))
    refused = [f"Not added: {s.path}: {s.reason}" for s in report.skipped]
    if not (done or refused):
        done.append("Already indexed, unchanged.")
    overall = "qa-status-error" if refused and not done else "qa-status-mixed" if refused else "qa-status-ok"
    rows = [f'<div class="qa-status-line qa-status-ok">{escape(line)}</div>' for line in done]
    rows += [f'<div class="qa-status-line qa-status-error">{escape(line)}</div>' for line in refused]
    return f'<div class="qa-status {overall}">{"".join(rows)}</div>'
