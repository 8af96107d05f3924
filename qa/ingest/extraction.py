"""Text extraction: turn the bytes of a supported file into the plain text that is indexed.

Every citation's offsets refer to the text produced here (it is stored in the index), so
extraction is deterministic and keeps sentence boundaries: paragraphs, headings, list
items and table rows end with a line break (:func:`qa.ingest.chunking.split_sentences` always
cuts there), while text inside one paragraph is joined with single spaces.

=============  ==================================================================
``.txt``       UTF-8 as is (a BOM is dropped)
``.md``        Markdown rendered with markdown-it-py, then the text of that HTML:
               markup (``#``, ``*``/``_``, ``[text](url)``, bullets, raw HTML tags)
               never reaches an answer; images are dropped; code blocks stay as text
``.html``      the main text (``<main>`` if there is one, else ``<body>``) without
``.htm``       scripts, styles, navigation, asides and page headers/footers
``.pdf``       text of each page (pypdf), pages joined by a blank line; ``pages``
               holds the offset where each page starts, so a citation names its page
``.docx``      paragraphs and tables of the body, in order (python-docx)
=============  ==================================================================

A file that cannot be extracted raises :class:`ExtractionError` whose message is the
reason shown to the user (corrupt, encrypted, no text layer, ...).

Work per file is bounded. Text is capped per document (:data:`MAX_DOCUMENT_CHARS`) and DOCX
parts by size before they are inflated. PDF, DOCX and HTML, whose parsers can be made to
work hard by a small hostile file, are parsed in a worker process that is killed after
:data:`qa.config.EXTRACT_TIMEOUT_S` and whose address space may grow by only
:data:`qa.config.EXTRACT_MEMORY_MB` per file: the file is then skipped with that reason, and
the calling process -- a chat server answering other users -- neither grows nor stalls. Text and
Markdown are parsed in-process (their work is linear in the bytes, which uploads cap).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import logging
import os
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from qa import config

logger = logging.getLogger(__name__)

#: File types that can be indexed (lower-case suffixes).
SUPPORTED_SUFFIXES: tuple[str, ...] = (".txt", ".md", ".html", ".htm", ".pdf", ".docx")

#: Human names of the types, for listings.
KIND_NAMES: dict[str, str] = {
    ".txt": "text",
    ".md": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}


class ExtractionError(ValueError):
    """The file cannot be turned into text; the message is the reason, for people.

    ``transient``: it ran over a time or memory limit, which depends on the machine's load
    and the settings as much as on the file, so an indexed version of it is kept, not dropped."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Extracted:
    """Extracted text; ``pages`` (PDF only) is the start offset of each page in ``text``."""

    text: str
    pages: tuple[int, ...] | None = None


#: A UTF-16 surrogate code point (never valid text on its own in a Python string).
_SURROGATE = re.compile("[\ud800-\udfff]")


def suffix_of(name: str) -> str:
    """The lower-case suffix of a file name (``""`` when it has none)."""
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 and "/" not in name[dot:] else ""


def is_supported(name: str) -> bool:
    """True when a file named ``name`` can be indexed."""
    return suffix_of(name) in SUPPORTED_SUFFIXES


def kind_of(name: str) -> str:
    """``"pdf"``, ``"html"``, ... for a document id or file name."""
    return KIND_NAMES.get(suffix_of(name), suffix_of(name).lstrip(".") or "?")


#: Bounded work for hostile files. A DOCX is a zip: members are refused by their declared size
#: before anything is inflated (Python's zipfile stops inflating a member at its declared size,
#: so a member that lies fails its CRC check instead of growing), and every document's text is
#: capped. A 3 MB DOCX whose document.xml expands to 3 GB cost 65 s and 6.2 GB before this.
MAX_ZIP_MEMBER_BYTES: int = 64 * 1024 * 1024
MAX_ZIP_TOTAL_BYTES: int = 160 * 1024 * 1024
#: Longest extracted text of one document (characters): what a plain-text upload at the 20 MB
#: limit can hold, so only formats that expand (DOCX, PDF, HTML) can reach it.
MAX_DOCUMENT_CHARS: int = 21_000_000


#: Formats parsed in a bounded child process (see the module docstring).
BOUNDED_SUFFIXES: frozenset[str] = frozenset({".pdf", ".docx", ".html", ".htm"})


def extract(data: bytes, suffix: str, *, timeout_s: float | None = None, memory_mb: int | None = None) -> Extracted:
    """Extract the text of a file's bytes according to its ``suffix`` (``".pdf"`` ...).

    PDF, DOCX and HTML are parsed in a child process within ``timeout_s`` seconds and
    ``memory_mb`` MB of growth (defaults: ``qa.config.EXTRACT_TIMEOUT_S`` / ``EXTRACT_MEMORY_MB``)
    in a worker process on POSIX systems; elsewhere in this process.

    Raises:
        ExtractionError: unsupported type, or the file is corrupt, encrypted, binary or
            has no text, or it took more time or memory than allowed; the message says which.
    """
    suffix = suffix.lower()
    if suffix in BOUNDED_SUFFIXES and _bounded_available():
        return _extract_in_worker(
            data,
            suffix,
            config.EXTRACT_TIMEOUT_S if timeout_s is None else timeout_s,
            config.EXTRACT_MEMORY_MB if memory_mb is None else memory_mb,
        )
    return extract_here(data, suffix)


def extract_here(data: bytes, suffix: str) -> Extracted:
    """:func:`extract` in this process, without the time and memory bounds of a child."""
    suffix = suffix.lower()
    if suffix == ".txt":
        result = Extracted(_decode_text(data))
    elif suffix == ".md":
        result = Extracted(markdown_to_text(_decode_text(data)))
    elif suffix in (".html", ".htm"):
        result = Extracted(html_to_text(_check_not_binary(data), main_only=True))
    elif suffix == ".pdf":
        result = _extract_pdf(data)
    elif suffix == ".docx":
        result = Extracted(_extract_docx(data))
    else:
        raise ExtractionError(f"unsupported file type {suffix or '(none)'!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    if _SURROGATE.search(result.text):
        # A PDF's ToUnicode map can name UTF-16 halves: no tokenizer, SQLite or PostgreSQL takes
        # them. One replacement character each keeps every offset (and page start) where it was.
        result = Extracted(_SURROGATE.sub("\ufffd", result.text), result.pages)
    if len(result.text) > MAX_DOCUMENT_CHARS:
        raise ExtractionError(
            f"too much text ({len(result.text):,} characters; the limit is {MAX_DOCUMENT_CHARS:,} per document): split it into smaller files"
        )
    if not result.text.strip():
        raise ExtractionError(_EMPTY_REASONS.get(suffix, "empty document (no text)"))
    return result


# --------------------------------------------------------------------------- bounded worker process
#
# Why a worker started with ``python -c`` rather than multiprocessing: multiprocessing's
# spawn/forkserver children re-import the caller's ``__main__`` (a user's script without a
# ``__main__`` guard would run again), and ``fork`` copies a server's threads' locks. A
# worker serves files one after another over its pipes (length-prefixed frames: a JSON header,
# then raw bytes; nothing is pickled), so only its first file pays for starting Python; it is
# killed when a file runs over time or memory and a fresh one starts for the next file.

_FRAME = struct.Struct(">Q")
_IDLE: list[_Worker] = []
_POOL_LOCK = threading.Lock()
#: Idle workers kept for reuse (concurrent uploads each take one; more are started as needed).
_MAX_IDLE = 2


def _bounded_available() -> bool:
    """Whether files can be parsed in a worker (POSIX pipes and ``select``)."""
    return os.name == "posix"


def _write_frame(fh, payload: bytes) -> None:  # noqa: ANN001 - a binary file object
    fh.write(_FRAME.pack(len(payload)))
    fh.write(payload)


def _read_exact_blocking(fh, n: int) -> bytes | None:  # noqa: ANN001
    chunks, got = [], 0
    while got < n:
        chunk = fh.read(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _serve() -> None:
    """The worker's loop: read a request, extract, answer; exit when the parent closes the pipe.
    Each file may grow the worker's address space by its request's ``memory_mb`` only."""
    import resource

    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a library's print() must not corrupt the reply stream
    while True:
        raw = _read_exact_blocking(requests, _FRAME.size)
        if raw is None:
            return
        head = json.loads(_read_exact_blocking(requests, _FRAME.unpack(raw)[0]) or b"{}")
        size = _read_exact_blocking(requests, _FRAME.size)
        data = _read_exact_blocking(requests, _FRAME.unpack(size)[0]) if size else None
        if data is None:
            return
        base = _vm_bytes()
        if base:
            resource.setrlimit(resource.RLIMIT_AS, (base + int(head["memory_mb"]) * 1024 * 1024, resource.getrlimit(resource.RLIMIT_AS)[1]))
        body = b""
        try:
            result = extract_here(data, head["suffix"])
            reply: dict = {"pages": list(result.pages) if result.pages is not None else None}
            del data
            body = result.text.encode("utf-8", "surrogatepass")
        except ExtractionError as exc:
            reply = {"refused": str(exc)}
        except MemoryError:
            reply = {"memory": True}
        except Exception as exc:  # a parser bug on one odd file
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            if base:
                resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.getrlimit(resource.RLIMIT_AS)[1]))
        _write_frame(replies, json.dumps(reply).encode())
        _write_frame(replies, body)
        replies.flush()


def _vm_bytes() -> int:
    """This process's current address-space size (Linux), or 0 where unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class _Worker:
    """One worker process and its pipes (parent side)."""

    def __init__(self) -> None:
        root = str(config.PROJECT_ROOT)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from qa.ingest.extraction import _serve; _serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # parser warnings; failures come back as replies or exit codes
            env=env,
            close_fds=True,
        )

    def _read(self, n: int, deadline: float) -> bytes:
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, min(n - got, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def run(self, data: bytes, suffix: str, timeout_s: float, memory_mb: int) -> tuple[dict, bytes]:
        deadline = time.monotonic() + timeout_s
        stdin = self.proc.stdin
        assert stdin is not None
        _write_frame(stdin, json.dumps({"suffix": suffix, "memory_mb": memory_mb}).encode())
        _write_frame(stdin, data)
        stdin.flush()
        head = json.loads(self._read(_FRAME.unpack(self._read(_FRAME.size, deadline))[0], deadline))
        body = self._read(_FRAME.unpack(self._read(_FRAME.size, deadline))[0], deadline)
        return head, body

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for fh in (self.proc.stdin, self.proc.stdout):
            if fh is not None:
                with contextlib.suppress(OSError):
                    fh.close()


def _close_idle() -> None:
    with _POOL_LOCK:
        while _IDLE:
            _IDLE.pop().close()


atexit.register(_close_idle)


def _extract_in_worker(data: bytes, suffix: str, timeout_s: float, memory_mb: int) -> Extracted:
    with _POOL_LOCK:
        worker = None
        while _IDLE and worker is None:
            candidate = _IDLE.pop()
            if candidate.proc.poll() is None:
                worker = candidate
            else:
                candidate.close()
    worker = worker or _Worker()
    healthy = False
    try:
        head, body = worker.run(data, suffix, timeout_s, memory_mb)
    except TimeoutError:
        raise ExtractionError(
            f"took longer than {timeout_s:g} s to read (the limit per file, QA_EXTRACT_TIMEOUT); "
            "a hostile file, or split the document",
            transient=True,
        ) from None
    except (EOFError, BrokenPipeError, ConnectionResetError, ValueError):
        # Dead (no reply), or alive but unreadable (a reply that is not ours): its exit code
        # is read before the finally below kills a live one, so our kill is not taken for
        # the out-of-memory killer's.
        try:
            code: int | None = worker.proc.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        if code == -signal.SIGKILL:  # what the kernel's out-of-memory killer sends
            raise ExtractionError(_too_big(memory_mb), transient=True) from None
        raise ExtractionError(f"could not be read (the reader process ended with code {code})") from None
    else:
        if "memory" in head:
            raise ExtractionError(_too_big(memory_mb), transient=True)
        healthy = True
        if "refused" in head:
            raise ExtractionError(head["refused"])
        if "error" in head:
            raise RuntimeError(head["error"])  # reported like an in-process parser bug
        pages = tuple(head["pages"]) if head["pages"] is not None else None
        return Extracted(body.decode("utf-8", "surrogatepass"), pages)
    finally:
        if healthy:
            with _POOL_LOCK:
                if len(_IDLE) < _MAX_IDLE:
                    _IDLE.append(worker)
                    worker = None
        if worker is not None:
            worker.close()


def _too_big(memory_mb: int) -> str:
    return (
        f"needs more than {memory_mb:,} MB of memory to read (the limit per file, QA_EXTRACT_MEMORY_MB); "
        "a hostile file, or split the document"
    )


_EMPTY_REASONS = {
    ".pdf": "no extractable text (scanned PDF?)",
    ".html": "no text (the HTML has no visible text outside scripts and navigation)",
    ".htm": "no text (the HTML has no visible text outside scripts and navigation)",
    ".docx": "empty document (the DOCX has no text)",
}


# --------------------------------------------------------------------------- plain text


def _check_not_binary(data: bytes) -> bytes:
    # NUL bytes never occur in real text files; other control bytes are tolerated.
    if b"\x00" in data[:8192]:
        raise ExtractionError("binary file (contains NUL bytes); a text file must be UTF-8, or UTF-16 with its byte-order mark")
    return data


def _decode_text(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        # UTF-16 with its byte-order mark: what Windows Notepad saves as "Unicode". Its NUL bytes
        # would read as binary below.
        try:
            text = data.decode("utf-16")  # the mark says the byte order and is dropped
        except UnicodeDecodeError as exc:
            raise ExtractionError(f"not valid UTF-16 (byte {exc.start}); re-save it as UTF-8") from None
        if "\x00" in text:
            raise ExtractionError("binary file (contains NUL characters); index text files (UTF-8 or UTF-16)")
        return text
    _check_not_binary(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExtractionError(f"not valid UTF-8 (byte {exc.start}); re-save it as UTF-8") from None
    # A BOM is an encoding marker, not content; offsets are on the text without it.
    return text.removeprefix("\ufeff")


# --------------------------------------------------------------------------- HTML

#: Never content.
_DROP = frozenset(
    "script style noscript template head title meta link iframe object embed svg math canvas "
    "nav aside form button select option input textarea dialog img picture video audio source track map".split()
)
#: Page chrome, dropped unless inside the main content (an article's own header is content).
_CHROME = frozenset({"header", "footer"})
_CHROME_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search"})
#: Elements that start and end a paragraph (blank line around them).
_PARAGRAPH = frozenset(
    "p h1 h2 h3 h4 h5 h6 pre blockquote table ul ol dl figure hr address article section main header footer "
    "details summary fieldset center".split()
)
#: Elements that start and end a line.
_LINE = frozenset("div li dt dd tr caption figcaption body html legend".split())
_CELL = frozenset({"td", "th"})
_SPACE = re.compile(r"\s+")


def _is_hidden(tag) -> bool:  # noqa: ANN001 - bs4.Tag
    attrs = tag.attrs or {}
    if "hidden" in attrs or str(attrs.get("aria-hidden", "")).lower() == "true":
        return True
    if str(attrs.get("role", "")).lower() in _CHROME_ROLES:
        return True
    style = str(attrs.get("style", "")).replace(" ", "").lower()
    return "display:none" in style or "visibility:hidden" in style


class _TextBuilder:
    """Collects inline text and break requests; the strongest pending break wins."""

    _RANK = {"": 0, " ": 1, "\t": 2, "\n": 3, "\n\n": 4}

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pending = ""

    def brk(self, sep: str) -> None:
        if self._RANK[sep] > self._RANK[self.pending]:
            self.pending = sep

    def text(self, raw: str) -> None:
        flat = _SPACE.sub(" ", raw)
        if flat.startswith(" "):
            self.brk(" ")
        content = flat.strip()
        if content:
            self.literal(content)
        if flat.endswith(" ") and content:
            self.brk(" ")

    def literal(self, content: str) -> None:
        if self.parts and self.pending:
            self.parts.append(self.pending)
        self.parts.append(content)
        self.pending = ""

    def result(self) -> str:
        return "".join(self.parts)


def _walk(node, out: _TextBuilder, in_main: bool) -> None:  # noqa: ANN001 - bs4 node
    from bs4 import NavigableString, Tag
    from bs4.element import PreformattedString

    for child in node.children:
        if isinstance(child, NavigableString):
            if not isinstance(child, PreformattedString):  # comments, doctypes, CDATA, PIs
                out.text(str(child))
            continue
        if not isinstance(child, Tag):
            continue
        name = (child.name or "").lower()
        if name in _DROP or _is_hidden(child) or (name in _CHROME and not in_main):
            continue
        if name == "br":
            out.brk("\n")
        elif name == "pre":
            out.brk("\n\n")
            lines = [line.rstrip() for line in child.get_text().replace("\r\n", "\n").split("\n")]
            while lines and not lines[0].strip():
                lines.pop(0)
            while lines and not lines[-1].strip():
                lines.pop()
            if lines:
                out.literal("\n".join(lines))
            out.brk("\n\n")
        elif name in _PARAGRAPH or name in _LINE:
            sep = "\n\n" if name in _PARAGRAPH else "\n"
            out.brk(sep)
            _walk(child, out, in_main or name in ("main", "article"))
            out.brk(sep)
        elif name in _CELL:
            out.brk("\t")
            _walk(child, out, in_main)
            out.brk("\t")
        else:
            _walk(child, out, in_main)


def html_to_text(html: str | bytes, *, main_only: bool = False) -> str:
    """Visible text of an HTML document, one paragraph/heading/list item per line.

    With ``main_only`` the ``<main>`` element (or ``role="main"``) is used when the page
    has one; page headers, footers, navigation and asides are dropped either way.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    root = soup
    in_main = False
    if main_only:
        main = soup.find("main") or soup.find(attrs={"role": "main"})
        if main is not None and main.get_text(strip=True):
            root, in_main = main, True
        elif soup.body is not None:
            root = soup.body
    out = _TextBuilder()
    try:
        _walk(root, out, in_main)
        text = out.result()
    except RecursionError:  # absurdly deep nesting: fall back to a flat walk
        text = "\n".join(line for line in (_SPACE.sub(" ", s).strip() for s in root.stripped_strings) if line)
    return text


# --------------------------------------------------------------------------- Markdown

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n.*?\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)


def markdown_to_text(markdown: str) -> str:
    """Plain text of a Markdown document: what a reader of the rendered page sees.

    Rendered with markdown-it-py (CommonMark plus tables and strikethrough; raw HTML
    allowed so that its tags are parsed and dropped rather than shown), then converted
    with :func:`html_to_text`. YAML front matter is dropped.
    """
    from markdown_it import MarkdownIt

    markdown = _FRONT_MATTER.sub("", markdown, count=1)
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    return html_to_text(md.render(markdown))


# --------------------------------------------------------------------------- PDF

_TERMINAL = tuple(".!?:;…\"'”’)")
_BULLET = re.compile(r"^\s*(?:[-•*–·▪◦]|\d{1,3}[.)])\s")


def _reflow(page: str) -> str:
    """Join lines that a PDF wrapped inside a paragraph, so a sentence is not cut at every line.

    A line break is kept after a line ending a sentence, before a bullet, at blank lines,
    and after short lines (headings, the last line of a paragraph) unless the next line
    starts in lower case.
    """
    lines = [_SPACE.sub(" ", line).strip() for line in page.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    widths = sorted(len(line) for line in lines if line)
    if not widths:
        return ""
    full = widths[max(int(len(widths) * 0.9) - 1, 0)] if len(widths) >= 10 else widths[-1]
    out, last, blank = "", "", False
    for line in lines:
        if not line:
            blank = bool(out)
            continue
        if not out:
            out = line
        elif blank:
            out += "\n\n" + line
        elif (
            not last.endswith(_TERMINAL)
            and not _BULLET.match(line)
            and (len(last) >= 0.6 * full or line[:1].islower())
        ):
            out += ("" if last.endswith("-") and line[:1].islower() else " ") + line
        else:
            out += "\n" + line
        last, blank = line, False
    return out


def _extract_pdf(data: bytes) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise ExtractionError("not a PDF file (no %PDF header); corrupt or mislabelled")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                unlocked = reader.decrypt("")
            except Exception as exc:  # missing crypto backend, unknown algorithm
                raise ExtractionError(f"encrypted PDF that cannot be opened ({exc})") from None
            if not unlocked:
                raise ExtractionError("encrypted PDF (password required); save an unencrypted copy")
        pages = list(reader.pages)
    except ExtractionError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError, IndexError, RecursionError) as exc:
        raise ExtractionError(f"corrupt or unreadable PDF ({type(exc).__name__}: {exc})") from None
    if not pages:
        raise ExtractionError("PDF has no pages")
    texts: list[str] = []
    for number, page in enumerate(pages, 1):
        try:
            raw = page.extract_text() or ""
        except MemoryError:  # over the worker's memory bound: the whole file is refused
            raise
        except Exception as exc:  # one broken page does not sink the document
            logger.warning("PDF page %d could not be read (%s: %s); it is left empty", number, type(exc).__name__, exc)
            raw = ""
        texts.append(_reflow(raw.replace("\x00", "")))
    starts: list[int] = []
    text = ""
    for page_text in texts:
        if text and page_text:
            text += "\n\n"
        starts.append(len(text))
        text += page_text
    return Extracted(text, tuple(starts))


# --------------------------------------------------------------------------- DOCX


def _extract_docx(data: bytes) -> str:
    import zipfile

    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ExtractionError("corrupt or truncated DOCX (not a zip archive)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ExtractionError(f"corrupt or truncated DOCX ({exc})") from None
    big = max(members, key=lambda m: m.file_size, default=None)
    total = sum(m.file_size for m in members)
    if big is not None and big.file_size > MAX_ZIP_MEMBER_BYTES:
        raise ExtractionError(
            f"refused: its part {big.filename!r} would expand to {big.file_size / 1048576:,.0f} MB "
            f"(the limit is {MAX_ZIP_MEMBER_BYTES // 1048576} MB per part; a zip bomb, or split the document)"
        )
    if total > MAX_ZIP_TOTAL_BYTES:
        raise ExtractionError(
            f"refused: it would expand to {total / 1048576:,.0f} MB (the limit is {MAX_ZIP_TOTAL_BYTES // 1048576} MB)"
        )
    # The declared sizes may lie, and zipfile inflates a whole member in one call when asked for
    # all of it (as python-docx does): inflate each in 1 MB steps first, so a member that holds
    # more than it says fails its CRC check here, at bounded memory, before the parser sees it.
    try:
        for m in members:
            with archive.open(m) as fh:
                while fh.read(1 << 20):
                    pass
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ExtractionError(f"corrupt or truncated DOCX ({type(exc).__name__}: {exc})") from None
    try:
        document = docx.Document(io.BytesIO(data))
        blocks: list[str] = []

        def table_rows(table: Table) -> None:
            for row in table.rows:
                cells: list[str] = []
                seen: set[int] = set()
                for cell in row.cells:
                    if id(cell._tc) in seen:  # a merged cell repeats in every column it spans
                        continue
                    seen.add(id(cell._tc))
                    cells.append(" ".join(_SPACE.sub(" ", p.text).strip() for p in cell.paragraphs if p.text.strip()))
                line = "\t".join(c for c in cells if c)
                if line:
                    blocks.append(line)

        size = 0
        for item in document.iter_inner_content():
            if isinstance(item, Paragraph):
                line = _SPACE.sub(" ", item.text).strip()
                if line:
                    blocks.append(line)
                    size += len(line) + 2
            elif isinstance(item, Table):
                table_rows(item)
                size = sum(len(b) + 2 for b in blocks)
            if size > MAX_DOCUMENT_CHARS:  # stop reading now, not after the whole document
                raise ExtractionError(
                    f"too much text (over {MAX_DOCUMENT_CHARS:,} characters, the limit per document): split it into smaller files"
                )
    except (ExtractionError, MemoryError):  # over the worker's memory bound: say so, not "corrupt"
        raise
    except Exception as exc:  # zipfile, lxml and python-docx errors alike
        raise ExtractionError(f"corrupt or truncated DOCX ({type(exc).__name__}: {exc})") from None
    return "\n\n".join(blocks)
