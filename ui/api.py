"""The HTTP API: versioned JSON endpoints over the same index, served beside the chat.

``python -m ui`` serves both on one port (:func:`ui.app.launch` mounts the chat on the app
built here)::

    POST   /api/v1/ask                {"question": str, "top_k"?: int, "previous"?: str, "threshold"?: number}
                                      -> what `qa ask --json` prints (Answer.to_dict())
    GET    /api/v1/documents          -> {"documents": [{"id", "source", "origin", "kind", "chunks",
                                          "characters", "pages"}], "count"}
    POST   /api/v1/documents          multipart, field "files" (one or more)
                                      -> {"added", "changed", "unchanged", "skipped": [{"name", "reason"}]}
    DELETE /api/v1/documents/{id}     (ids may contain "/") -> {"removed": [id]}
    GET    /api/v1/health             -> {"status", "index", "documents", "chunks", "models", "auth",
                                          "asks": {"limit", "computing", "waiting", "max_waiting"}}
    OpenAPI: /api/openapi.json, docs page: /api/docs

Errors are ``{"error": "..."}`` with status 400 (bad input), 401 (no or bad token), 403 (a
viewer writing), 404 (unknown document), 409 (index busy or in memory), 413 (too large),
415 (unsupported type), 422 (no file could be read), 503 (store or model unavailable; or
too many questions waiting: ``{"error": "busy: ..."}`` with ``Retry-After``).

At most ``ask_concurrency`` questions (:data:`qa.config.API_ASK_CONCURRENCY`) are computed at
once, in worker threads of their own (:class:`AskLimiter`); the others wait their turn in
arrival order, at most ``ask_queue`` of them. Uploads, removals, listings, health and sign-in
checks never wait behind questions: they run in Starlette's default thread pool, which
questions do not use.

With a credentials file (:mod:`ui.auth`) every endpoint needs ``Authorization: Bearer
TOKEN``; uploading and removing need the ``editor`` role. Request bodies are limited
before they are read (:class:`BodyLimitMiddleware`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, StrictFloat, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from embeddings.stores import StoreUnavailableError, display_location
from embeddings.stores.index import IndexBusyError, IndexLoadError, VectorIndex
from qa import config
from qa.ingest.indexing import MAX_UPLOAD_BYTES, add_uploads, index_directory, list_documents, remove_documents
from qa.pipeline import ask, load_index, validate_previous, validate_question, validate_threshold, validate_top_k
from ui.guard import protect

logger = logging.getLogger(__name__)

API_VERSION = "v1"
PREFIX = f"/api/{API_VERSION}"
#: Largest JSON body (an ask request is a question of at most MAX_QUESTION_CHARS characters).
MAX_JSON_BODY_BYTES = 64 * 1024
#: Body of any other request to the chat (Gradio's routes but its upload, which it limits itself).
MAX_CHAT_BODY_BYTES = 1024 * 1024
#: Gradio's upload route (the chat is mounted at ``/``).
GRADIO_UPLOAD_PATH = "/gradio_api/upload"
#: Largest upload request (several files; each is also held to MAX_UPLOAD_BYTES).
MAX_UPLOAD_REQUEST_BYTES = 4 * MAX_UPLOAD_BYTES + 1024 * 1024
#: Files in one upload request.
MAX_UPLOAD_FILES = 100


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(status_code: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """``{"error": message, **extra}`` with ``status_code``."""
    return JSONResponse({"error": message, **extra}, status_code=status_code, headers=headers)


# --------------------------------------------------------------------------- body size


class BodyLimitMiddleware:
    """Refuses request bodies over a limit with 413 before they are read whole.

    A declared ``Content-Length`` over the limit is refused without reading a byte; a body
    without one (chunked) is counted while the application reads it, and the request is
    cut off with 413 as soon as it passes the limit. ``limit_for(scope)`` gives the limit of
    a request (``None``: not limited here, e.g. the chat's own routes, which Gradio limits).
    """

    def __init__(self, app: Callable, limit_for: Callable[[dict], int | None]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]) -> None:
        limit = self.limit_for(scope) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if length is not None:
            if not length.strip().isdigit():
                await error_response(400, "invalid Content-Length header")(scope, receive, send)
                return
            if int(length) > limit:
                await self._too_large(limit, scope, receive, send)
                return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> dict:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True  # the application sees a client that went away
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the application answers to the cut-off body is replaced
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._too_large(limit, scope, receive, send)

    @staticmethod
    async def _too_large(limit: int, scope: dict, receive: Callable, send: Callable) -> None:
        mb = limit / (1024 * 1024)
        size = f"{mb:.1f} MB" if mb >= 1 else f"{limit:,} bytes"
        response = error_response(413, f"request body too large; the limit is {size}", headers={"Connection": "close"})
        await response(scope, receive, send)


# --------------------------------------------------------------------------- questions at once


class AskQueueFull(Exception):
    """Every turn is taken and the waiting line is full; retry after ``retry_after_s`` seconds."""

    def __init__(self, waiting: int, retry_after_s: int) -> None:
        super().__init__(f"{waiting} questions are waiting")
        self.waiting = waiting
        self.retry_after_s = retry_after_s


class AskLimiter:
    """At most ``concurrency`` questions computed at once; the others wait in arrival order
    (first come, first served), at most ``max_waiting`` of them (:class:`AskQueueFull` beyond).

    The questions compute in worker threads limited by ``threads`` (as many as ``concurrency``),
    not in Starlette's default pool, so uploads, listings and health checks always find a
    thread. Used from one event loop (the server's). A waiter is asked every ``poll_s`` seconds
    whether its client is still there (``gone``) and leaves the line when it is not."""

    def __init__(self, concurrency: int, max_waiting: int, poll_s: float = 0.5) -> None:
        if concurrency < 1 or max_waiting < 0:
            raise ValueError("ask concurrency must be at least 1 and the waiting line at least 0")
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self.poll_s = poll_s
        self.threads = anyio.CapacityLimiter(concurrency)
        self.computing = 0  # turns held (computing, or about to)
        self.abandoned = 0  # questions not computed: their client left first
        self.mean_s = 1.0  # running mean of one question's compute time (for Retry-After)
        self._waiters: deque[asyncio.Future] = deque()  # only pending ones: a waiter that leaves is removed

    @property
    def waiting(self) -> int:
        return len(self._waiters)  # safe to read from a worker thread (health)

    def stats(self) -> dict[str, int]:
        return {"limit": self.concurrency, "computing": self.computing, "waiting": self.waiting, "max_waiting": self.max_waiting}

    def retry_after_s(self) -> int:
        """Seconds until the questions waiting now should have had their turn (1 to 120)."""
        return int(min(120, max(1, math.ceil(self.mean_s * (self.waiting + 1) / self.concurrency))))

    async def acquire(self, gone: Callable[[], Awaitable[bool]] | None = None) -> bool:
        """Wait for a turn: ``True`` once held (:meth:`release` it), ``False`` if ``gone()`` said
        the client left while waiting (no turn held). Raises :class:`AskQueueFull`."""
        if self.computing < self.concurrency and not self.waiting:
            self.computing += 1
            return True
        if self.waiting >= self.max_waiting:
            raise AskQueueFull(self.waiting, self.retry_after_s())
        turn: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            while not turn.done():
                await asyncio.wait({turn}, timeout=self.poll_s)
                if not turn.done() and gone is not None and await gone() and not turn.done():
                    turn.cancel()
                    self._waiters.remove(turn)
                    self.abandoned += 1
                    return False
            return True  # handed over by release(): computing already counts it
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release()  # handed over as this task was cancelled: pass it on
            else:
                turn.cancel()
                if turn in self._waiters:
                    self._waiters.remove(turn)
            raise

    def release(self) -> None:
        """Give the turn to the longest-waiting question, if any."""
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():  # always, as waiters that leave are removed
                turn.set_result(None)
                return
        self.computing -= 1

    async def run(self, request: Request, work: Callable[[], Any]) -> Any:
        """``work()`` in a worker thread once a turn is free; :data:`GONE` instead when the client
        of ``request`` hung up before it started. Raises :class:`AskQueueFull`."""
        if await request.is_disconnected():
            self.abandoned += 1
            return GONE
        if not await self.acquire(request.is_disconnected):
            return GONE
        try:
            if await request.is_disconnected():
                self.abandoned += 1
                return GONE
            started = time.monotonic()
            try:
                return await anyio.to_thread.run_sync(work, limiter=self.threads)
            finally:
                self.mean_s = 0.8 * self.mean_s + 0.2 * (time.monotonic() - started)
        finally:
            self.release()


#: What :meth:`AskLimiter.run` returns for a question whose client left before it was computed.
GONE = object()


# --------------------------------------------------------------------------- payloads


class AskRequest(BaseModel):
    """The body of ``POST /api/v1/ask``."""

    question: StrictStr = Field(description="the question, in words", examples=["Who is Turkey's defense minister?"])
    top_k: StrictInt | None = Field(default=None, description=f"passages handed to the reader, 1-100 (default {config.DEFAULT_TOP_K})")
    previous: StrictStr | None = Field(
        default=None, description="the conversation's previous question, for follow-ups such as 'When did it first fly?'"
    )
    threshold: StrictFloat | StrictInt | None = Field(
        default=None,
        description="answer only when the chance the answer is right is at least this, 0-1 (e.g. 0.8); "
        "below it 'answer' is null and 'guess' holds the span (default: the reader's own)",
    )


def health_payload(
    location: object,
    *,
    documents: int,
    chunks: int,
    embedding_model: str | None,
    reader_model: str | None,
    auth_enabled: bool,
    encoder_variant: str | None = None,
) -> dict:
    """The body of ``GET /api/v1/health``. The index is named by :func:`display_location`:
    a database URL's password never appears."""
    return {
        "status": "ok",
        "api": API_VERSION,
        "index": display_location(location),
        "documents": documents,
        "chunks": chunks,
        "models": {"embedding": embedding_model, "encoder_variant": encoder_variant, "reader": reader_model},
        "auth": auth_enabled,
    }


def document_payload(doc: Any) -> dict:
    """One :class:`qa.ingest.indexing.DocumentInfo` as JSON."""
    return {
        "id": doc.doc_id,
        "source": doc.source,
        "origin": doc.origin,
        "kind": doc.kind,
        "chunks": doc.chunks,
        "characters": doc.characters,
        "pages": doc.pages,
    }


def upload_status(report: Any, files: int) -> tuple[int, str | None]:
    """The status of an upload's answer and its error, from its :class:`~qa.ingest.indexing.IndexReport`
    and the number of ``files`` sent: 200 unless every file was refused; then 415 if all were
    refused for their type, 413 if for their type or size, else 422 (unreadable files)."""
    if len(report.skipped) < files or report.added or report.changed:
        return 200, None
    reasons = [s.reason for s in report.skipped]
    unsupported = [r.startswith("unsupported file type") for r in reasons]
    too_large = [r.startswith("too large") for r in reasons]
    if all(unsupported):
        return 415, "no file was added: " + reasons[0]
    if all(u or t for u, t in zip(unsupported, too_large, strict=True)):
        first = next(r for r, t in zip(reasons, too_large, strict=True) if t)
        return 413, "no file was added: " + first
    return 422, "no file was added; see skipped for each file's reason"


def docs_html(schema: dict) -> str:
    """A self-contained HTML page describing the endpoints of an OpenAPI ``schema``."""
    from html import escape

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                name = node["$ref"].rsplit("/", 1)[-1]
                return resolve(schema.get("components", {}).get("schemas", {}).get(name, {}))
            return {k: resolve(v) for k, v in node.items() if k not in ("title",)}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    import json

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>" + escape(schema["info"]["title"]) + "</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;line-height:1.5}"
        "code,pre{font-family:ui-monospace,monospace;font-size:.88rem}pre{background:#f1f5f9;padding:.6rem;overflow-x:auto}"
        ".m{display:inline-block;min-width:4.5rem;font-weight:700;color:#4338ca}section{border-top:1px solid #e2e8f0;padding:.4rem 0}"
        "</style></head><body>",
        f"<h1>{escape(schema['info']['title'])} <small>{escape(str(schema['info'].get('version', '')))}</small></h1>",
        f"<p>{escape(schema['info'].get('description', ''))}</p>",
        "<p>Machine-readable: <a href='/api/openapi.json'>/api/openapi.json</a>. Errors are "
        "<code>{\"error\": \"...\"}</code>.</p>",
    ]
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            parts.append(f"<section><h3><span class='m'>{escape(method.upper())}</span><code>{escape(path)}</code></h3>")
            parts.append(f"<p><b>{escape(op.get('summary', ''))}</b>. {escape(op.get('description', ''))}</p>")
            if op.get("security"):
                parts.append("<p>Needs <code>Authorization: Bearer TOKEN</code>.</p>")
            for ctype, body in (op.get("requestBody") or {}).get("content", {}).items():
                text = json.dumps(resolve(body.get("schema", {})), indent=1)
                parts.append(f"<p>Body ({escape(ctype)}):</p><pre>{escape(text)}</pre>")
            codes = ", ".join(escape(str(c)) for c in op.get("responses", {}))
            if codes:
                parts.append(f"<p>Answers: {codes}</p>")
            parts.append("</section>")
    parts.append("</body></html>")
    return "".join(parts)


# --------------------------------------------------------------------------- the app


def _reader_model(reader: Any) -> str:
    if reader is not None and not isinstance(reader, str):
        return str(getattr(reader, "name", type(reader).__name__))
    try:
        from qa.reader import reader_display_name

        return reader_display_name(config.DEFAULT_READER_MODEL)
    except Exception:  # the name is informative only
        return config.DEFAULT_READER_MODEL


def create_api(
    index: Any = None,
    *,
    reader: Any = None,
    retriever: Any = None,
    encoder: Any = None,
    auth: Any = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_request_bytes: int = MAX_UPLOAD_REQUEST_BYTES,
    max_json_bytes: int = MAX_JSON_BODY_BYTES,
    ask_concurrency: int | None = None,
    ask_queue: int | None = None,
) -> FastAPI:
    """The API over ``index`` (as :func:`qa.ask` takes it), answering with ``reader`` and
    ``retriever``; uploads are embedded with ``encoder`` (default: the index's model).
    ``auth`` is a :class:`ui.auth.AuthStore` (sign-in required) or ``None`` (open).
    At most ``ask_concurrency`` questions are computed at once and ``ask_queue`` wait for a
    turn (defaults: :data:`qa.config.API_ASK_CONCURRENCY`, :data:`qa.config.API_ASK_QUEUE`);
    the limiter is ``app.state.qa_asks`` (an :class:`AskLimiter`).

    The chat is mounted on the returned app by :func:`ui.app.launch` / :func:`ui.app.create_server`."""
    index_dir = index_directory(index)
    location = config.DEFAULT_INDEX_DIR if index is None else (index_dir if index_dir is not None else "(in-memory index)")
    app = FastAPI(
        title="Ask your documents API",
        version=API_VERSION,
        description="Extractive question answering over your documents: every answer is a span quoted from them, "
        "with its sources. With sign-in enabled, send `Authorization: Bearer TOKEN` (`qa auth add-user` prints one).",
        openapi_url="/api/openapi.json",
        docs_url=None,  # FastAPI's Swagger page loads its scripts from a CDN: ours works offline
        redoc_url=None,
    )

    def limit_for(scope: dict) -> int | None:
        path = scope.get("path", "")
        if not path.startswith("/api/"):
            if scope.get("method") == "POST" and path.rstrip("/") == GRADIO_UPLOAD_PATH:
                return None  # the chat's uploads: Gradio limits them itself (max_file_size)
            # Everything else of the chat (sign-in, questions through its queue) is small; without
            # this, Gradio's open POST /login would spool a multipart body of any size to disk.
            return MAX_CHAT_BODY_BYTES
        if scope.get("method") == "POST" and path.rstrip("/") == f"{PREFIX}/documents":
            return max_request_bytes
        return max_json_bytes

    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)
    protect(app, auth)  # cross-site writes, foreign Host names on an open server, sign-in floods
    asks = AskLimiter(
        config.API_ASK_CONCURRENCY if ask_concurrency is None else ask_concurrency,
        config.API_ASK_QUEUE if ask_queue is None else ask_queue,
    )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {e.get('msg', 'invalid')}")
        return error_response(400, "invalid request: " + "; ".join(problems))

    # ----------------------------------------------------------------- auth

    def current_user(request: Request) -> Any:
        """The signed-in user (``None`` when sign-in is off); 401 without a valid token."""
        if auth is None:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "sign-in required: send 'Authorization: Bearer TOKEN' (qa auth add-user prints a token)", challenge)
        user = auth.check_token(token.strip())
        if user is None:
            raise ApiError(401, "invalid API token", challenge)
        return user

    def editor(user: Any = Depends(current_user)) -> Any:  # noqa: B008 - FastAPI's dependency idiom
        if user is not None and not user.can_edit:
            raise ApiError(403, f"user {user.name!r} is a viewer; adding and removing documents needs the editor role")
        return user

    # The scheme, for the OpenAPI page's "Authorize" button (checking is done above).
    security = [{"bearerAuth": []}] if auth is not None else None

    # ----------------------------------------------------------------- endpoints

    @app.post(
        f"{PREFIX}/ask", summary="Answer a question", response_model=dict,
        openapi_extra={"security": security} if security else None,
    )
    async def ask_question(request: Request, body: AskRequest, user: Any = Depends(current_user)) -> Any:  # noqa: B008
        """Answer ``question`` from the index: exactly the object `qa ask --json` prints
        (``answer`` is null when the documents do not support an answer). A few questions are
        computed at once, in worker threads; the others wait their turn in arrival order
        (503 ``busy`` with ``Retry-After`` when too many are waiting), and one whose client
        hangs up before its turn is not computed."""
        try:  # bad input is refused at once, never after waiting for a turn
            validate_question(body.question)
            validate_previous(body.previous)
            validate_top_k(body.top_k)
            validate_threshold(body.threshold)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        try:
            answer = await asks.run(request, lambda: _answer(body))
        except AskQueueFull as exc:
            raise ApiError(
                503, f"busy: {exc.waiting} questions are waiting for an answer; retry in {exc.retry_after_s} s",
                {"Retry-After": str(exc.retry_after_s)},
            ) from None
        if answer is GONE:
            # Nobody reads this (nginx's "client closed request"); the question was not computed.
            return error_response(499, "the client closed the connection before its question was answered")
        return answer

    def _answer(body: AskRequest) -> dict:
        try:
            answer = ask(
                body.question, index=index, top_k=body.top_k, reader=reader, retriever=retriever, previous=body.previous,
                threshold=body.threshold,
            )
        except IndexLoadError as exc:
            raise ApiError(503, f"the index cannot be used: {exc}") from None
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        except StoreUnavailableError as exc:
            raise ApiError(503, str(exc)) from None
        except RuntimeError as exc:  # the reader checkpoint cannot load (ReaderUnavailable)
            logger.warning("answering failed: %s", exc)
            raise ApiError(503, str(exc)) from None
        except Exception as exc:
            logger.exception("answering failed")
            raise ApiError(500, f"something went wrong while answering ({type(exc).__name__})") from None
        return answer.to_dict()

    def _listing() -> list:
        try:
            return list_documents(load_index(index))
        except IndexLoadError as exc:
            raise ApiError(503, f"the index cannot be used: {exc}") from None
        except StoreUnavailableError as exc:
            raise ApiError(503, str(exc)) from None
        except (ValueError, OSError) as exc:
            raise ApiError(503, f"cannot list the documents: {exc}") from None

    @app.get(f"{PREFIX}/documents", summary="List the documents", openapi_extra={"security": security} if security else None)
    def get_documents(user: Any = Depends(current_user)) -> dict:  # noqa: B008
        """Every indexed document, sorted by id: where it came from (``origin``: ``added`` by an
        upload or `qa add`, else ``folder``), its chunks and length in characters."""
        docs = [document_payload(d) for d in _listing()]
        return {"documents": docs, "count": len(docs)}

    upload_schema = {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["files"],
                        "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    }
                }
            },
        }
    }
    if security:
        upload_schema["security"] = security

    @app.post(f"{PREFIX}/documents", summary="Add documents (editors)", openapi_extra=upload_schema)
    async def post_documents(request: Request, user: Any = Depends(editor)) -> JSONResponse:  # noqa: B008
        """Upload one or more files (multipart field ``files``): indexed right away, with the
        chat's checks (safe names, supported types, at most the per-file size). A file uploaded
        again under its name replaces its document; another file whose safe name is taken is
        added beside it with a short hash in its id. Refused files are listed with their reason."""
        if index_dir is None:
            raise ApiError(409, "this server answers from an in-memory index: documents cannot be added")
        # Parsed only now, after the sign-in check: files are spooled to disk, not held in memory.
        try:
            form = await request.form(max_files=MAX_UPLOAD_FILES, max_fields=MAX_UPLOAD_FILES)
        except Exception as exc:  # malformed multipart, too many parts
            raise ApiError(400, f"invalid multipart upload: {getattr(exc, 'detail', None) or exc}") from None
        try:
            files = form.getlist("files")
            if not files:
                raise ApiError(400, "no file uploaded; send one or more files in the multipart field 'files'")
            if not all(isinstance(f, UploadFile) for f in files):
                raise ApiError(400, "the field 'files' must hold files, not text")
            report = await run_in_threadpool(_index_uploads, files)
        finally:
            await form.close()
        status, error = upload_status(report, len(files))
        body: dict[str, Any] = {
            "added": report.added,
            "changed": report.changed,
            "unchanged": report.unchanged,
            "skipped": [{"name": s.path, "reason": s.reason} for s in report.skipped],
        }
        if error:
            body = {"error": error, **body}
        return JSONResponse(body, status_code=status)

    def _index_uploads(files: list[UploadFile]) -> Any:
        temp = Path(tempfile.mkdtemp(prefix="qa-api-upload-"))
        try:
            uploads = []
            for n, f in enumerate(files):
                path = temp / str(n)  # the name travels separately: add_uploads makes it safe
                f.file.seek(0)
                with path.open("wb") as out:
                    shutil.copyfileobj(f.file, out, 1024 * 1024)
                uploads.append((f.filename or "", path))
            return add_uploads(index_dir, uploads, max_bytes=max_upload_bytes, encoder=encoder)
        except StoreUnavailableError as exc:
            raise ApiError(503, str(exc)) from None
        except IndexLoadError as exc:
            raise ApiError(503, f"the index cannot be used: {exc}") from None
        except IndexBusyError as exc:  # another writer holds the index's lock
            raise ApiError(409, f"could not add the files: {exc}") from None
        except ValueError as exc:
            raise ApiError(400, f"could not add the files: {exc}") from None
        except (OSError, RuntimeError) as exc:  # the server's side (a full disk, a model that cannot load): not the request's fault
            logger.exception("adding uploaded files failed")
            raise ApiError(500, f"the server could not add the files ({type(exc).__name__}: {exc}); nothing was added") from None
        finally:
            shutil.rmtree(temp, ignore_errors=True)

    @app.delete(
        PREFIX + "/documents/{doc_id:path}", summary="Remove a document (editors)",
        openapi_extra={"security": security} if security else None,
    )
    def delete_document(doc_id: str, user: Any = Depends(editor)) -> dict:  # noqa: B008
        """Remove the document ``doc_id`` (as listed; ids of documents in subfolders contain ``/``)."""
        if index_dir is None:
            raise ApiError(409, "this server answers from an in-memory index: documents cannot be removed")
        if doc_id not in {d.doc_id for d in _listing()}:
            raise ApiError(404, f"no document {doc_id!r} in the index")
        try:
            report = remove_documents(index_dir, [doc_id], lock_wait_s=60.0)
        except StoreUnavailableError as exc:
            raise ApiError(503, str(exc)) from None
        except IndexBusyError as exc:
            raise ApiError(409, f"could not remove {doc_id!r}: {exc}") from None
        except ValueError as exc:  # removed meanwhile by someone else
            if str(exc).startswith("no document"):
                raise ApiError(404, f"no document {doc_id!r} in the index") from None
            raise ApiError(400, str(exc)) from None
        except (OSError, RuntimeError) as exc:  # a read-only or full disk: the server's side
            logger.exception("removing %r failed", doc_id)
            raise ApiError(500, f"the server could not remove {doc_id!r} ({type(exc).__name__}: {exc}); nothing was removed") from None
        return {"removed": report.removed}

    @app.get(f"{PREFIX}/health", summary="Index and models in use", openapi_extra={"security": security} if security else None)
    def health(user: Any = Depends(current_user)) -> JSONResponse:  # noqa: B008
        """The index (a database URL without its password), its size, the models and the
        questions being computed and waiting (``asks``)."""
        try:
            loaded = load_index(index)
            if isinstance(loaded, VectorIndex):
                documents, chunks = len(loaded.documents), len(loaded)
            else:
                documents, chunks = loaded.counts()
        except (StoreUnavailableError, ValueError, OSError) as exc:
            return error_response(503, f"the index cannot be used: {exc}", status="unavailable", index=display_location(location))
        payload = health_payload(
            location,
            documents=documents,
            chunks=chunks,
            embedding_model=getattr(loaded, "embedding_model", None),
            encoder_variant=getattr(loaded, "encoder_variant", None),
            reader_model=_reader_model(reader),
            auth_enabled=auth is not None,
        )
        payload["asks"] = asks.stats()
        return JSONResponse(payload)

    @app.get("/api/docs", include_in_schema=False)
    def docs_page() -> HTMLResponse:
        """The endpoints, rendered from the OpenAPI schema on the server (no script, no CDN)."""
        return HTMLResponse(docs_html(app.openapi()))

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"], include_in_schema=False)
    def not_found(request: Request, rest: str) -> JSONResponse:
        """Unknown ``/api/...`` paths answer JSON (the chat is mounted at ``/`` behind them)."""
        for route in app.routes:
            if route.name != "not_found" and route.matches(request.scope)[0] == Match.PARTIAL:
                return error_response(405, f"method {request.method} is not allowed here")
        return error_response(404, f"no endpoint {request.url.path}; see /api/docs")

    original_openapi = app.openapi
    error_codes = {
        "400": "bad input (question, top_k, body)", "401": "no or invalid API token", "403": "a viewer adding or removing",
        "404": "unknown document", "409": "the index is busy or in memory", "413": "too large",
        "415": "every file of an unsupported type", "422": "no uploaded file could be read",
        "503": "the index, its database or the reader is unavailable (asks: or too many questions waiting, with Retry-After)",
    }

    def openapi() -> dict:
        """FastAPI's schema with the API's real errors (``{"error": ...}``; 400 for invalid input, not 422)."""
        if app.openapi_schema is None:
            schema = original_openapi()
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {})["Error"] = {
                "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}
            }
            if security:
                components.setdefault("securitySchemes", {})["bearerAuth"] = {
                    "type": "http", "scheme": "bearer", "description": "an API token printed by `qa auth add-user`"
                }
            for path, methods in schema.get("paths", {}).items():
                for method, op in methods.items():
                    responses = op.setdefault("responses", {})
                    responses.pop("422", None)
                    codes = ["400", "503"] if method == "post" or path.endswith("{doc_id}") else ["503"]
                    if security:
                        codes += ["401", "403"] if method in ("post", "delete") and "documents" in path else ["401"]
                    if path.endswith("{doc_id}"):
                        codes += ["404", "409"]
                    elif path.endswith("/documents") and method == "post":
                        codes += ["409", "413", "415", "422"]
                    elif method == "post":
                        codes += ["413"]
                    for code in sorted(codes):
                        responses[code] = {
                            "description": error_codes[code],
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                        }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    app.state.qa_index = index
    app.state.qa_auth = auth
    app.state.qa_asks = asks
    return app
