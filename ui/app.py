"""The Gradio app: a chat that answers from an index, with a sources panel beside it.

A thin layer: every answer comes from :func:`qa.ask`, the index summary from
:func:`qa.pipeline.load_index`, uploads and removals from :mod:`qa.ingest.indexing`
(``add_uploads``, ``remove_documents``), and all markup from :mod:`ui.formatting`.

:func:`launch` serves the chat and the HTTP API (:mod:`ui.api`) on one port with uvicorn.
With a credentials file (:mod:`ui.auth`) the chat asks to sign in, and only editors may
upload and remove documents (the handlers check the signed-in user, not only the page).

>>> from ui.app import build_app, launch
>>> launch(build_app(), host="127.0.0.1", port=7860)   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import unicodedata
from pathlib import Path
from typing import Any

import gradio as gr

from embeddings.stores import StoreUnavailableError, display_location, is_store_url
from embeddings.stores.index import VectorIndex
from qa import config
from qa.ingest.extraction import SUPPORTED_SUFFIXES
from qa.ingest.indexing import MAX_UPLOAD_BYTES, add_uploads, index_directory, list_documents, remove_documents
from qa.pipeline import ask, load_index
from qa.retrieval.followup import conversation_subject
from ui import DEFAULT_HOST, DEFAULT_PORT
from ui import formatting as fmt
from ui.auth import SignIns

logger = logging.getLogger(__name__)

TITLE = "Ask your documents"
DESCRIPTION = (
    "Extractive question answering that runs offline: every answer is a span copied from your "
    "documents, with its confidence and the exact characters it came from."
)
EXAMPLES = [
    "Who is Turkey's defense minister?",
    "When did the Kizilelma make its first flight?",
    "Which European country joined the drone coalition alongside Turkey?",
]
#: Client-side: scroll the document view and the sources panel so that their first mark (the
#: answer, or the guess) is in view: whole and centred when it fits, else from its first line
#: (on a narrow screen a long answer wraps onto more lines than the box shows). Runs after each
#: answer, selection and opening of the view (a closed view has no layout, so opening it
#: scrolls again); a short delay lets the new HTML render first.
_SHOW_IN_BOX_JS = """const qaShow = (box, el) => {
    if (!box || !el || !box.clientHeight) return;
    const b = box.getBoundingClientRect(), r = el.getBoundingClientRect();
    if (r.top >= b.top && r.bottom <= b.bottom) return;
    const room = box.clientHeight - r.height;
    box.scrollTop += r.top - b.top - (room > 0 ? room / 2 : 8);
  };
  const qaShowMark = (sel) => { const box = document.querySelector(sel); qaShow(box, box && box.querySelector('mark')); };"""
SCROLL_TO_MARK_JS = (
    "() => { setTimeout(() => {\n  " + _SHOW_IN_BOX_JS + """
  qaShowMark('#qa-docview .qa-docview-text'); qaShowMark('#qa-sources-panel .qa-sources');
}, 150); }"""
)
#: After an answer, also in the chat (whose own autoscroll is off): scrolled to the newest
#: message, but a reply taller than the chat (a long answer on a narrow screen) is shown from
#: its top, so the answer itself is not scrolled out of view above it. Nothing moves when no
#: new reply came (a blank question is not sent).
SHOW_NEW_REPLY_JS = (
    "() => { setTimeout(() => {\n  " + _SHOW_IN_BOX_JS + """
  const chat = document.querySelector('#qa-chat .bubble-wrap');
  const replies = chat ? chat.querySelectorAll('.message-row.bot-row') : [];
  const last = replies[replies.length - 1];
  if (!last || last === window.qaLastReply) return;
  window.qaLastReply = last;
  qaShowMark('#qa-docview .qa-docview-text'); qaShowMark('#qa-sources-panel .qa-sources');
  chat.scrollTop = chat.scrollHeight;
  if (last.getBoundingClientRect().top < chat.getBoundingClientRect().top) {
    chat.scrollTop += last.getBoundingClientRect().top - chat.getBoundingClientRect().top - 8;
  }
  // On a phone the columns stack and the page may sit scrolled down at the question box: bring
  // the reply itself into the window when it is out of it (on a wide page it already is).
  const top = last.getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight - 40) last.scrollIntoView({block: 'start'});
}, 150); }"""
)

#: Client-side, after Ask is clicked: a blank question is not sent, so the cursor goes back to
#: the question box (instead of staying on the button).
REFOCUS_IF_BLANK_JS = """(q) => { if (!(q || '').trim()) { const box = document.querySelector('#qa-question textarea');
  if (box) box.focus(); } }"""

#: Questions answered at the same time; a slow one does not hold up the others.
CONCURRENCY_LIMIT = 4

CSS = """
.gradio-container { max-width: 1280px !important; margin: 0 auto !important; }
/* Keyboard focus is visible on the question box and the sliders (Gradio's theme removes it). */
#qa-question textarea:focus-visible, input[type=range]:focus-visible, input[type=number]:focus-visible {
  outline: 2px solid #2563eb !important; outline-offset: 2px !important; }
#qa-header { padding: 6px 2px 2px; }
#qa-header h1 { font-size: 1.75rem; font-weight: 600; margin: 0 0 4px; letter-spacing: -0.01em; }
#qa-header p { margin: 0; color: var(--body-text-color-subdued); font-size: 0.98rem; }
#qa-index-info { font-size: 0.85rem; color: var(--body-text-color-subdued); }
#qa-index-info p { margin: 0; }
.qa-question { white-space: pre-wrap; overflow-wrap: anywhere; }
/* Long spans (a URL, a name without spaces) wrap inside the bubble at any width, never cut off. */
.qa-msg { line-height: 1.5; overflow-wrap: anywhere; min-width: 0; max-width: 100%; }
/* Gradio pins the chat's Clear and Copy icons over the top of the message list, where they
   covered the first visible question once the chat scrolled: give them their own row above it. */
#qa-chat .icon-button-wrapper.top-panel { position: static; align-self: flex-end; flex: none; margin: 4px 6px 0; }
#qa-chat .bubble-wrap { flex: 1 1 auto; min-height: 0; height: auto; }
.qa-answer-text { font-size: 1.12rem; margin-bottom: 4px; }
.qa-answer-text strong { font-weight: 600; }
.qa-meta { font-size: 0.82rem; color: var(--body-text-color-subdued); margin: 2px 0 6px; }
.qa-conf, .qa-reader { display: inline-block; border-radius: 999px; padding: 1px 9px; margin-right: 4px;
  font-size: 0.78rem; font-weight: 600; border: 1px solid transparent; }
.qa-conf-high { background: #dcfce7; color: #166534; border-color: #bbf7d0; }
.qa-conf-medium { background: #fef9c3; color: #854d0e; border-color: #fde68a; }
.qa-conf-low { background: #fee2e2; color: #991b1b; border-color: #fecaca; }
.qa-reader { background: var(--background-fill-secondary); color: var(--body-text-color-subdued);
  border-color: var(--border-color-primary); font-weight: 500; }
.qa-cites { margin-top: 6px; display: flex; flex-direction: column; gap: 6px; }
.qa-cite { font-size: 0.86rem; border-left: 3px solid var(--color-accent); padding: 2px 0 2px 9px; }
.qa-cite-num { font-weight: 600; color: var(--color-accent); margin-right: 2px; }
.qa-doc { font-weight: 600; }
.qa-offsets { color: var(--body-text-color-subdued); font-variant-numeric: tabular-nums; }
.qa-context { color: var(--body-text-color-subdued); margin-top: 2px; }
.qa-context strong { color: var(--body-text-color); font-weight: 600; }
.qa-idk { font-size: 1.12rem; font-weight: 600; margin-bottom: 2px; }
.qa-closest-title { font-size: 0.84rem; font-weight: 600; margin-top: 6px; }
.qa-error { color: #b91c1c; }
.qa-error-label { font-weight: 600; }
#qa-sources-panel { border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
  background: var(--background-fill-primary); padding: 14px 16px; min-height: 200px; max-height: 600px;
  overflow-y: auto !important; overflow-x: hidden !important; }
/* Gradio's own rules set overflow: visible on the HTML component's inner wrappers, so the
   scroll box is also our own inner element: its height is bounded whatever wraps it. */
#qa-sources-panel .qa-sources { max-height: 568px; overflow-y: auto; overflow-x: hidden; overflow-wrap: anywhere; }
.qa-details { font-size: 0.78rem; margin-top: 2px; }
.qa-docview-head { font-size: 0.8rem; color: var(--body-text-color-subdued); margin-bottom: 6px; }
.qa-docview-empty { font-size: 0.86rem; color: var(--body-text-color-subdued); }
#qa-docview .qa-docview-text { position: relative; white-space: pre-wrap; font-size: 0.9rem; line-height: 1.6;
  max-height: 420px; overflow-y: auto; overflow-wrap: anywhere; padding: 8px 10px; border-radius: var(--radius-md);
  border: 1px solid var(--border-color-primary); background: var(--background-fill-secondary); }
#qa-docview mark { background: #fde047; color: #111827; padding: 1px 3px; border-radius: 3px; font-weight: 600; }
.qa-details summary { cursor: pointer; color: var(--body-text-color-subdued); }
/* "I don't know" is the headline; the reader's guess is a small plain line under it, and its
   span is marked grey with a dashed outline wherever it shows, never in an answer's yellow. */
.qa-guess-line { font-size: 0.84rem; color: var(--body-text-color-subdued); margin: 2px 0 4px; }
.qa-guess-label { font-weight: 500; }
.qa-guess { font-style: normal; font-weight: 400; }
.qa-conf-guess { font-size: 0.78rem; margin-right: 6px; }
mark.qa-guess-mark, #qa-docview mark.qa-guess-mark, .qa-passage mark.qa-guess-mark { background: #e5e7eb; color: inherit;
  outline: 1px dashed #6b7280; outline-offset: 0; box-shadow: none; font-weight: 400; padding: 0 2px; border-radius: 2px; }
.qa-sources-empty { color: var(--body-text-color-subdued); font-size: 0.92rem; }
.qa-sources-q { font-size: 0.85rem; color: var(--body-text-color-subdued); margin-bottom: 10px; }
.qa-sources-q q { color: var(--body-text-color); font-weight: 600; }
.qa-sources-note { font-size: 0.86rem; color: var(--body-text-color-subdued); margin-bottom: 8px; }
.qa-source { margin-bottom: 14px; }
.qa-source-head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 10px; margin-bottom: 6px; font-size: 0.88rem; }
.qa-source-head .qa-offsets { font-size: 0.8rem; }
.qa-passage { white-space: pre-wrap; font-size: 0.92rem; line-height: 1.6; background: var(--background-fill-secondary);
  border-radius: var(--radius-md); padding: 10px 12px; border: 1px solid var(--border-color-primary); }
.qa-source-dim .qa-passage { opacity: 0.85; }
.qa-passage mark { background: #fde047; color: #111827; padding: 1px 3px; border-radius: 3px; font-weight: 600;
  box-shadow: 0 0 0 1px #facc15; }
#qa-sources-title { margin: 0; }
#qa-sources-title h3 { margin: 0; font-size: 1rem; }
#qa-hint { font-size: 0.8rem; color: var(--body-text-color-subdued); }
#qa-hint p { margin: 0; }
.qa-page { font-weight: 600; color: var(--body-text-color); }
#qa-docs-note { font-size: 0.84rem; color: var(--body-text-color-subdued); }
#qa-docs-note p { margin: 0 0 4px; }
/* Light rules between rows only (Gradio's own table style draws a dark grid); names wrap
   between their parts (ui.formatting.breakable_name puts <wbr> after _ - . /), not mid-word. */
#qa-docs-list table.qa-docs { width: 100%; font-size: 0.84rem; border-collapse: collapse; border: none; margin: 0; }
#qa-docs-list table.qa-docs tr, #qa-docs-list table.qa-docs thead, #qa-docs-list table.qa-docs tbody { border: none; }
#qa-docs-list table.qa-docs th, #qa-docs-list table.qa-docs td { text-align: left; padding: 3px 6px; border: none;
  border-bottom: 1px solid var(--border-color-primary); background: transparent; }
#qa-docs-list table.qa-docs th { font-weight: 600; color: var(--body-text-color-subdued); }
#qa-docs-list table.qa-docs td.qa-doc { word-break: normal; overflow-wrap: anywhere; }
/* The remove dropdown and its button: one row of controls of the same height. */
#qa-remove-label p { margin: 0; font-size: 0.84rem; font-weight: 600; }
#qa-remove-row { align-items: stretch; }
#qa-remove-choice { border: 1px solid var(--border-color-primary); }
#qa-remove { align-self: stretch; height: auto; min-height: 0; }
.qa-docs-empty { font-size: 0.86rem; color: var(--body-text-color-subdued); }
.qa-status { font-size: 0.86rem; padding: 4px 0; }
.qa-status-ok { color: #166534; }
.qa-status-error { color: #b91c1c; }
.qa-status-line.qa-status-error { font-weight: 500; }
"""


def _theme() -> gr.themes.Base:
    return gr.themes.Soft(
        primary_hue="indigo",
        neutral_hue="slate",
        # System fonts: native on every platform, nothing fetched, and complete glyph sets.
        font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
    )


def index_summary(index: Any = None) -> str:
    """The Markdown line naming the index in use (loads it; builds the default one if needed)."""
    vector_index = load_index(index)
    if index is None:
        directory = config.DEFAULT_INDEX_DIR
    elif isinstance(index, (str, os.PathLike)):
        directory = index
    else:  # a loaded index object: its own directory, if it has one
        directory = vector_index.directory
    if isinstance(vector_index, VectorIndex):
        return fmt.format_index_info(directory, len(vector_index.documents), len(vector_index))
    # A database store: counted by the database; named by its database, never its password.
    return fmt.format_index_info(display_location(directory), *vector_index.counts())


# --------------------------------------------------------------------------- documents


def _upload_items(files: Any) -> list:
    """The uploaded items of an upload event's value (one, several, or Gradio's ``ListFiles``)."""
    if hasattr(files, "root"):  # Gradio's ListFiles (the upload event runs with preprocess=False)
        files = list(files.root)
    return list(files) if isinstance(files, (list, tuple)) else ([files] if files else [])


def not_uploaded(files: Any, handed_out: set[str]) -> list[str]:
    """The paths among an upload event's files that Gradio's upload route did not hand out
    (``handed_out``: its ``Blocks.upload_file_set``). A chat event names its files by server
    path; any other path is a server file (the credentials file, /etc/...) that Gradio copied
    into its cache for the event: never the user's upload."""
    # Both sides absolute and normalised: the route records its paths as GRADIO_TEMP_DIR is
    # written (./tmp, say), the event hands over absolute ones.
    handed = {os.path.abspath(p) for p in handed_out}
    return [path for path in (_upload_path(item) for item in _upload_items(files)) if os.path.abspath(path) not in handed]


def _upload_path(item: Any) -> str:
    # Gradio's FileData (.path), its dict form, a path, or (older versions) an object with .name.
    if isinstance(item, dict):
        return str(item.get("path") or item.get("name"))
    return str(getattr(item, "path", None) or getattr(item, "name", None) or item)


def _upload_name(item: Any, path: str) -> str:
    """The name the browser sent (``orig_name``), else the stored file's name."""
    sent = item.get("orig_name") if isinstance(item, dict) else getattr(item, "orig_name", None)
    return str(sent or Path(path).name)


def upload_documents(
    index_dir: Path | None, files: Any, *, max_bytes: int = MAX_UPLOAD_BYTES, encoder: Any = None, progress: Any = None
) -> str:
    """Index uploaded files into ``index_dir``; returns the status message (HTML).

    The checks (safe names, supported types, size) live in :func:`qa.ingest.indexing.add_uploads`;
    each refused file is listed with its reason."""
    if index_dir is None:
        return fmt.format_status_html(["This app answers from an in-memory index: start it on an index directory to add documents."], ok=False)
    items = _upload_items(files)
    if not items:
        return fmt.format_status_html(["No file was uploaded."], ok=False)
    uploads = []
    for item in items:
        path = _upload_path(item)
        uploads.append((_upload_name(item, path), path))
    try:
        report = add_uploads(
            index_dir, uploads, max_bytes=max_bytes, encoder=encoder,
            progress=(lambda fraction, what: progress(fraction, desc=what)) if progress is not None else None,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        return fmt.format_status_html([f"Could not add the files: {exc}"], ok=False)
    try:
        chunks = {d.doc_id: d.chunks for d in list_documents(load_index(index_dir))}
    except (ValueError, OSError, StoreUnavailableError):  # the upload went in: say so, without the chunk counts
        chunks = {}
    return fmt.format_index_report_html(report, chunks=chunks)


def remove_document(index_dir: Path | None, doc_id: Any) -> str:
    """Remove one document from ``index_dir``; returns the status message (HTML)."""
    if index_dir is None:
        return fmt.format_status_html(["This app answers from an in-memory index: nothing can be removed."], ok=False)
    if not isinstance(doc_id, str) or not doc_id:
        return fmt.format_status_html(["Choose a document to remove."], ok=False)
    try:
        report = remove_documents(index_dir, [doc_id], lock_wait_s=60.0)
    except (ValueError, RuntimeError, OSError) as exc:
        return fmt.format_status_html([str(exc)], ok=False)
    return fmt.format_index_report_html(report)


def documents_view(index: Any) -> tuple[str, list[str]]:
    """The documents table (HTML) and the ids for the remove dropdown."""
    try:
        docs = list_documents(load_index(index))
    except (ValueError, OSError, StoreUnavailableError) as exc:
        return fmt.format_status_html([f"Cannot list the documents: {exc}"], ok=False), []
    return fmt.format_documents_html(docs), [d.doc_id for d in docs]


def documents_note(index_dir: Path | None) -> str:
    """The Markdown text above the upload button."""
    if index_dir is None:
        return "Documents can be added only when the app runs on an index directory."
    types = " ".join(f"`{s}`" for s in SUPPORTED_SUFFIXES)
    if is_store_url(index_dir):
        name = Path(display_location(index_dir)).name
        return (
            f"Add {types} files (up to {MAX_UPLOAD_BYTES // (1024 * 1024)} MB each). They are indexed into "
            f"the PostgreSQL index {fmt.escape(name)} and can be asked about right away; uploading a file again "
            "replaces it."
        )
    note = (
        f"Add {types} files (up to {MAX_UPLOAD_BYTES // (1024 * 1024)} MB each). They are indexed into "
        f"the index {fmt.escape(index_dir.name)} and can be asked about right away; uploading a file again "
        "replaces it."
    )
    if index_dir.resolve() == Path(config.DEFAULT_INDEX_DIR).resolve():
        note += f" This is the default index over {fmt.escape(Path(config.DEFAULT_DOCS_DIR).name)}/: uploads are added to it."
    return note


def is_blank(question: object) -> bool:
    """True for a question that is not worth sending: not a string, empty, or only whitespace
    (including invisible format characters such as a zero-width space)."""
    if not isinstance(question, str):
        return True
    return not "".join(c for c in question if not c.isspace() and unicodedata.category(c) != "Cf")


def _messages(turns: list[dict]) -> list[dict]:
    out: list[dict] = []
    for t in turns:
        out.append({"role": "user", "content": t["question_html"]})
        out.append({"role": "assistant", "content": t["reply_html"]})
    return out


def _picker(turns: list[dict], selected: int | None) -> gr.Dropdown:
    choices = [(fmt.question_label(i + 1, t["question"]), i) for i, t in enumerate(turns)]
    return gr.Dropdown(choices=choices, value=selected, interactive=bool(turns))


def user_role(auth: Any, request: Any) -> str | None:
    """The role of the user of ``request`` (a :class:`gr.Request`): ``"editor"`` for everyone
    when sign-in is off (``auth`` is ``None``), else the signed-in user's role (``None``: not
    signed in, or no longer a user)."""
    if auth is None:
        return "editor"
    return auth.role_of(getattr(request, "username", None))


def editor_refusal(auth: Any, request: Any, what: str) -> str | None:
    """The status message refusing ``what`` to a user who is not an editor, else ``None``."""
    if user_role(auth, request) == "editor":
        return None
    name = getattr(request, "username", None)
    role = "a viewer" if user_role(auth, request) == "viewer" else "no longer a user"
    who = f"you are signed in as {name} ({role})" if name else "you are not signed in"
    return fmt.format_status_html([f"Only editors can {what}; {who}."], ok=False)


def reader_threshold_percent(reader: Any = None) -> int:
    """The reader's own threshold in percent, where the chat's "at least this sure" slider
    starts: read from the calibrator file beside the weights, without loading them."""
    if reader is None or isinstance(reader, str):  # a reader name ("transformers"): the default checkpoint
        from qa.reader.transformers_reader import TransformersReader

        reader = TransformersReader(config.DEFAULT_READER_MODEL)
    try:
        threshold = float(getattr(reader, "threshold", 0.0))
    except Exception:  # a checkpoint that cannot load: its error shows at the first question
        logger.warning("the reader's threshold could not be read; the slider starts at 0", exc_info=True)
        threshold = 0.0
    return round(min(max(threshold, 0.0), 1.0) * 100)


def build_app(index: Any = None, *, reader: Any = None, warm_up: bool = True, auth: Any = None) -> gr.Blocks:
    """The chat app over ``index`` (a directory, a loaded index, or ``None`` for the default
    index over ``seeds/``). Queued with :data:`CONCURRENCY_LIMIT` workers; the main event's
    API name is ``/ask`` (inputs: question, top_k, the "at least this sure" percent).

    ``auth`` (a :class:`ui.auth.AuthStore`, or ``None`` for no sign-in) is the credentials
    the app is served with (:func:`launch` makes the chat ask to sign in); the upload and
    remove controls are shown to editors only, and their handlers refuse anyone else.

    With ``warm_up`` the models load in a background thread right away, so the first
    visitor does not wait for them (questions asked meanwhile wait for that load instead
    of starting their own)."""
    summary = index_summary(index)
    index_dir = index_directory(index)
    default_sure = reader_threshold_percent(reader)
    docs_html, doc_ids = documents_view(index)
    warmed = threading.Event()

    def _warm_up() -> None:
        try:
            ask(EXAMPLES[0], index=index, reader=reader)
        except Exception:  # the real question will report the problem
            logger.warning("warming up the models failed", exc_info=True)
        finally:
            warmed.set()

    if warm_up:
        threading.Thread(target=_warm_up, name="qa-ui-warm-up", daemon=True).start()
    else:
        warmed.set()

    def respond(question: str | None, top_k: float | None, sure: float | None, turns: list[dict] | None):
        question = question if isinstance(question, str) else ""
        if is_blank(question):
            # Nothing was asked: no turn, no error turn; the chat and the box stay as they are.
            return (gr.skip(),) * 7
        turns = list(turns or [])
        warmed.wait(timeout=config.READER_LOAD_TIMEOUT_S)
        k = int(round(top_k)) if top_k is not None else None
        # The slider starts at the reader's own threshold; only a move away from it overrides it.
        threshold = None if sure is None or round(sure) == default_sure else min(max(float(sure), 0.0), 100.0) / 100
        document = fmt.format_document_html(None)
        previous = None
        try:
            # The conversation's subject (its last question that named one): a follow-up ("when
            # did it fly?") retrieves with it, also after another follow-up.
            previous = next((t.get("subject", t["question"]) for t in reversed(turns) if t.get("answered_ok")), None)
            answer = ask(question, index=index, top_k=k, reader=reader, previous=previous, threshold=threshold)
        except (ValueError, StoreUnavailableError) as exc:  # bad input; a database store that is down
            reply, sources = fmt.format_error_html(str(exc)), fmt.format_sources_error_html(str(exc))
        except Exception as exc:  # a failure must read as a message, not take the page down
            logger.exception("answering %r failed", question)
            message = f"something went wrong while answering ({type(exc).__name__}: {exc})"
            reply, sources = fmt.format_error_html(message), fmt.format_sources_error_html(message)
        else:
            reply, sources = fmt.format_answer_html(answer), fmt.format_sources_html(answer)
            document = fmt.format_document_html(answer)
        shown = question.strip()
        turns.append(
            {
                "question": question,
                "subject": conversation_subject(question, previous),
                "question_html": fmt.format_question_html(shown),
                "reply_html": reply,
                "sources_html": sources,
                "document_html": document,
                "answered_ok": reply.startswith('<div class="qa-msg qa-answer') or reply.startswith('<div class="qa-msg qa-noanswer'),
            }
        )
        try:
            info = index_summary(index)
        except Exception:  # the index went away: keep the last line; the error shows in the chat
            info = gr.skip()
        return "", _messages(turns), sources, _picker(turns, len(turns) - 1), turns, info, document

    def show_turn(choice: int | None, turns: list[dict] | None):
        turns = turns or []
        if choice is None or not isinstance(choice, int) or not 0 <= choice < len(turns):
            return gr.skip(), gr.skip()
        return turns[choice]["sources_html"], turns[choice].get("document_html", gr.skip())

    def select_message(turns: list[dict] | None, evt: gr.SelectData):
        turns = turns or []
        position = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not isinstance(position, int) or not turns:
            return gr.skip(), gr.skip(), gr.skip()
        turn = min(max(position // 2, 0), len(turns) - 1)  # every turn is a question and a reply
        return turns[turn]["sources_html"], gr.Dropdown(value=turn), turns[turn].get("document_html", gr.skip())

    def clear():
        return [], fmt.format_sources_html(None), _picker([], None), fmt.format_document_html(None)

    def _after_change(status: str):
        table, ids = documents_view(index)
        try:
            info = index_summary(index)
        except Exception:
            info = gr.skip()
        return status, table, gr.Dropdown(choices=ids, value=None, interactive=bool(ids) and index_dir is not None), info

    def upload(files: Any, request: gr.Request, progress: gr.Progress = gr.Progress()):  # noqa: B008 - Gradio's progress idiom
        refused = editor_refusal(auth, request, "add documents")
        if refused is not None:
            return _after_change(refused)
        if not_uploaded(files, demo.upload_file_set):
            # Gradio refuses a path outside its upload folder before this handler (create_server
            # turns its check on); should a later Gradio not, the server file it copied for the
            # event is still never indexed.
            logger.warning("refused an upload event naming files Gradio's upload route did not hand out")
            return _after_change(fmt.format_status_html(["Refused: only files uploaded from this page can be added."], ok=False))
        return _after_change(upload_documents(index_dir, files, progress=progress))

    def remove(doc_id: Any, request: gr.Request):
        refused = editor_refusal(auth, request, "remove documents")
        if refused is not None:
            return _after_change(refused)
        return _after_change(remove_document(index_dir, doc_id))

    def show_documents():
        """At page load: the documents and the index line as they are now (uploads through the
        API, another session or ``qa add`` since the server started), not as at start-up."""
        table, ids = documents_view(index)
        try:
            info = index_summary(index)
        except Exception:  # the index went away: keep the line; asking shows the error
            info = gr.skip()
        return table, gr.Dropdown(choices=ids, value=None, interactive=bool(ids) and index_dir is not None), info

    def show_user(request: gr.Request):
        """At page load: who is signed in; the write controls for editors only."""
        editor = user_role(auth, request) == "editor"
        name = getattr(request, "username", None) or ""
        role = user_role(auth, request) or "not a user"
        who = f"Signed in as **{fmt.escape(name)}** ({role}) · [Sign out](logout)" if auth is not None else ""
        return (
            gr.Markdown(who, visible=bool(who)),
            gr.UploadButton(visible=editor),
            gr.Column(visible=editor),
        )

    # Uploaded files sit in Gradio's cache only until indexed (the index keeps what it needs):
    # swept hourly, not kept until the disk fills.
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        turns_state = gr.State([])
        with gr.Column(elem_id="qa-header"):
            gr.HTML(f"<h1>{fmt.escape(TITLE)}</h1><p>{fmt.escape(DESCRIPTION)}</p>")
        with gr.Row(equal_height=False):
            with gr.Column(scale=7, min_width=420):
                chatbot = gr.Chatbot(
                    label="Chat",
                    show_label=False,
                    elem_id="qa-chat",
                    height=540,
                    # Messages are HTML built by ui.formatting with everything escaped;
                    # no Markdown or LaTeX parsing on top, and Gradio still sanitizes.
                    render_markdown=False,
                    sanitize_html=True,
                    latex_delimiters=[],
                    feedback_options=None,
                    buttons=["copy_all"],
                    # Scrolled by SHOW_NEW_REPLY_JS instead: Gradio's autoscroll pins the bottom of
                    # the chat, which scrolls the top of a tall reply (the answer) out of view.
                    autoscroll=False,
                    placeholder="### Ask a question about your documents\n"
                    "Answers are quoted word for word from the text, with their sources. "
                    "Click an answer to show its passages on the right.",
                )
                with gr.Row(equal_height=True):
                    question = gr.Textbox(
                        placeholder="Ask a question, e.g. Who is Turkey's defense minister?",
                        show_label=False,
                        container=False,
                        scale=8,
                        max_length=config.MAX_QUESTION_CHARS + 1,
                        elem_id="qa-question",
                        autofocus=True,
                    )
                    ask_button = gr.Button("Ask", variant="primary", scale=1, min_width=90, elem_id="qa-ask")
                gr.Examples(examples=[[q] for q in EXAMPLES], inputs=[question], label="Try one of these")
            with gr.Column(scale=5, min_width=340):
                gr.Markdown("### Sources", elem_id="qa-sources-title")
                picker = gr.Dropdown(
                    choices=[],
                    value=None,
                    label="Show sources for",
                    interactive=False,
                    elem_id="qa-picker",
                )
                sources = gr.HTML(fmt.format_sources_html(None), elem_id="qa-sources-panel", js_on_load=None)
                top_k = gr.Slider(
                    minimum=1,
                    maximum=10,
                    step=1,
                    value=config.DEFAULT_TOP_K,
                    label="Passages to read (top-k)",
                    info="How many retrieved passages the reader looks at.",
                    elem_id="qa-top-k",
                )
                sure_slider = gr.Slider(
                    minimum=0,
                    maximum=100,
                    step=1,
                    value=default_sure,
                    label="Answer only when at least this sure (%)",
                    info="Below it the reply is \"I don't know\" with the closest match. Starts at the reader's own threshold.",
                    elem_id="qa-sure",
                )
                with gr.Accordion("Answer in its document", open=False, elem_id="qa-docview-box") as docview_box:
                    document_view = gr.HTML(fmt.format_document_html(None), elem_id="qa-docview")
                index_info = gr.Markdown(summary, elem_id="qa-index-info")
                with gr.Accordion("Documents", open=True, elem_id="qa-docs"):
                    gr.Markdown(documents_note(index_dir), elem_id="qa-docs-note")
                    # Without sign-in everyone edits; with it, the controls appear for editors
                    # once the page has loaded (show_user), and the handlers check again.
                    user_info = gr.Markdown("", visible=False, elem_id="qa-user")
                    upload_button = gr.UploadButton(
                        "Upload documents",
                        file_count="multiple",
                        # No file_types: Gradio would refuse the whole batch for one wrong file;
                        # qa.ingest.indexing.add_uploads refuses such files one by one, with a reason.
                        size="sm",
                        interactive=index_dir is not None,
                        visible=auth is None,
                        elem_id="qa-upload",
                    )
                    docs_status = gr.HTML("", elem_id="qa-docs-status")
                    docs_table = gr.HTML(docs_html, elem_id="qa-docs-list")
                    with gr.Column(visible=auth is None, elem_id="qa-remove-box", min_width=0) as remove_row:
                        # The label above the row, not inside the dropdown's box: the dropdown and its
                        # button are then two controls of one height, side by side.
                        gr.Markdown("Remove a document", elem_id="qa-remove-label")
                        with gr.Row(equal_height=True, elem_id="qa-remove-row"):
                            remove_choice = gr.Dropdown(
                                choices=doc_ids,
                                value=None,
                                label="Remove a document",
                                show_label=False,
                                container=False,
                                interactive=bool(doc_ids) and index_dir is not None,
                                scale=3,
                                elem_id="qa-remove-choice",
                            )
                            remove_button = gr.Button(
                                "Remove", variant="stop", size="md", scale=1, min_width=80, elem_id="qa-remove"
                            )

        gr.on(
            triggers=[question.submit, ask_button.click],
            fn=respond,
            inputs=[question, top_k, sure_slider, turns_state],
            outputs=[question, chatbot, sources, picker, turns_state, index_info, document_view],
            api_name="ask",
            api_description="Answer a question from the index; returns the chat and the sources panel HTML.",
            show_progress="minimal",
            show_progress_on=[chatbot],
        ).then(None, js=SHOW_NEW_REPLY_JS)
        # A blank question is not sent (respond skips it); the cursor goes back to the box.
        ask_button.click(None, inputs=[question], js=REFOCUS_IF_BLANK_JS)
        picker.input(show_turn, inputs=[picker, turns_state], outputs=[sources, document_view], api_visibility="private").then(
            None, js=SCROLL_TO_MARK_JS
        )
        chatbot.select(
            select_message, inputs=[turns_state], outputs=[sources, picker, document_view], api_visibility="private"
        ).then(None, js=SCROLL_TO_MARK_JS)
        docview_box.expand(None, js=SCROLL_TO_MARK_JS)
        chatbot.clear(clear, outputs=[turns_state, sources, picker, document_view], api_visibility="private")
        # Index writes one at a time (the index's writer lock would refuse a second anyway).
        index_write = {
            "outputs": [docs_status, docs_table, remove_choice, index_info],
            "api_visibility": "private",
            "concurrency_limit": 1,
            "concurrency_id": "index-write",
        }
        # preprocess=False: the handler gets Gradio's FileData (moved into its cache and checked
        # as usual) with orig_name, the name the browser sent; preprocessing would hand over only
        # the stored path, whose name Gradio cleans of ! $ : and the like, so report!.pdf and
        # report.pdf would reach add_uploads as one name and the second would replace the first.
        upload_button.upload(upload, inputs=[upload_button], preprocess=False, **index_write)
        remove_button.click(remove, inputs=[remove_choice], **index_write)
        demo.load(show_documents, outputs=[docs_table, remove_choice, index_info], api_visibility="private")
        if auth is not None:
            demo.load(show_user, outputs=[user_info, upload_button, remove_row], api_visibility="private")

    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT)
    # What launch() needs to serve the HTTP API over the same index beside the chat.
    demo.qa_settings = {"index": index, "reader": reader, "auth": auth}  # type: ignore[attr-defined]
    return demo


def _may_upload(demo: gr.Blocks, auth: Any, scope: dict) -> bool:
    """Whether the chat session of the request ``scope`` belongs to an editor (Gradio's sign-in
    cookie, looked up in its signed-in sessions)."""
    from starlette.requests import HTTPConnection

    app = getattr(demo, "app", None)
    if app is None:
        return False
    cookies = HTTPConnection(scope).cookies
    token = cookies.get(f"access-token-{app.cookie_id}") or cookies.get(f"access-token-unsecure-{app.cookie_id}")
    name = app.tokens.get(token) if token else None
    return name is not None and auth.role_of(name) == "editor"


def create_server(demo: gr.Blocks, *, api: Any = None, max_file_size: int | str | None = None, **api_kwargs: Any) -> Any:
    """The FastAPI app serving the HTTP API (:func:`ui.api.create_api`, over the index and
    reader ``demo`` was built with) and the chat mounted at ``/``, with the app's theme and
    CSS. With a credentials file the chat asks to sign in (Gradio's login page, checked
    against the scrypt hashes). ``api``: an app of your own to mount the chat on instead."""
    import fastapi
    from starlette.concurrency import run_in_threadpool
    from starlette.routing import Mount

    from ui.api import create_api
    from ui.guard import EditorsOnlyUploads, protect

    settings = dict(getattr(demo, "qa_settings", {}))
    auth = settings.get("auth")
    if api is None:
        api = create_api(settings.get("index"), reader=settings.get("reader"), auth=auth, **api_kwargs)
    else:
        protect(api, auth)  # what create_api's app has: cross-site and sign-in guards, CORS
    login = None
    if auth is not None:
        # At most SIGNIN_CONCURRENCY checks at once, taken once the form has been read (a client
        # sending its form slowly holds no turn), so a flood of sign-ins cannot starve the rest.
        checks = asyncio.Semaphore(config.SIGNIN_CONCURRENCY)

        async def login(username: str, password: str) -> bool:
            async with checks:
                # scrypt costs ~50 ms of CPU and 16 MiB: off the event loop.
                return await run_in_threadpool(lambda: auth.check_password(username, password) is not None)

    gr.mount_gradio_app(
        api,
        demo,
        path="/",
        footer_links=["api"],
        auth=login,
        auth_message=(
            "Sign in with the name and password from `qa auth add-user`. After "
            f"{config.SIGNIN_FAILURES} failed tries from one address, sign-in is refused (also with the right "
            f"password: the page still says the credentials are incorrect) for up to {int(config.SIGNIN_WINDOW_S // 60)} minutes."
        )
        if auth is not None
        else None,
        show_error=True,
        # A hard cap on what the chat accepts at all; files over MAX_UPLOAD_BYTES but under
        # this get a per-file message from qa.ingest.indexing.add_uploads instead.
        max_file_size=max_file_size if max_file_size is not None else 4 * MAX_UPLOAD_BYTES,
        ssr_mode=False,
        theme=_theme(),
        css=CSS,
    )
    # Gradio checks that a file a chat event names was uploaded through its upload route (lies in
    # its upload folder) only for Blocks it counts as launched, and a mounted one never is: without
    # this, an event could name any file the server can read (the credentials file, /dev/zero,
    # which hangs the event loop) and have it cached and indexed. The upload handler checks again.
    demo.has_launched = True
    if auth is not None:
        # Gradio's upload route takes files from any signed-in user; only editors can add them.
        api.add_middleware(EditorsOnlyUploads, may_upload=lambda scope: _may_upload(demo, auth, scope))
    # demo.close() stops what launch() started, as after Blocks.launch().
    demo.app = next(r.app for r in api.routes if isinstance(r, Mount) and isinstance(r.app, fastapi.FastAPI))
    if auth is not None:
        # Gradio keeps a chat sign-in until the server restarts; these end it when the user is
        # removed or their password is set again (the API's tokens are checked per request anyway).
        demo.app.tokens = SignIns(auth)
    return api


def launch(
    demo: gr.Blocks,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
    **kwargs: Any,
) -> Any:
    """Serve ``demo`` and the HTTP API on ``host:port`` with uvicorn (loopback by default,
    never a public share link). Blocks until interrupted, or with ``prevent_thread_lock``
    serves from a thread and returns the app (``demo.close()`` stops it). Other keyword
    arguments go to :func:`create_server`."""
    import uvicorn

    app = create_server(demo, **kwargs)
    config_ = uvicorn.Config(
        app, host=host, port=port, log_level="warning" if quiet else "info", access_log=False, timeout_graceful_shutdown=5
    )
    if prevent_thread_lock:
        from gradio.http_server import Server

        server = Server(config_)
        server.run_in_thread()
        demo.server = server
        demo.server_port = port
        return app
    uvicorn.Server(config_).run()  # Ctrl+C stops it
    return app
