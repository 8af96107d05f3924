"""What the server refuses before any handler sees a request (:class:`RequestGuard`).

:func:`ui.api.create_api` puts it on the app that serves the HTTP API, so the chat that
:func:`ui.app.create_server` mounts on that app is covered too:

- **Writes from other sites** (cross-site request forgery). A browser attaches the chat's
  sign-in cookie to a form a foreign page posts (Gradio sets it ``SameSite=None``), and an
  open server on 127.0.0.1 takes a multipart upload from any page its user visits. A
  POST / PUT / PATCH / DELETE (or a WebSocket) whose ``Origin`` is neither the server's own
  (the ``Host`` or ``X-Forwarded-Host`` it was sent to) nor in :data:`qa.config.ALLOWED_ORIGINS`
  is refused with 403. Clients that are not browsers (curl, scripts) send no ``Origin``.
- **Foreign host names on a server without sign-in** (DNS rebinding: a page whose name the
  attacker points at 127.0.0.1 is "same origin" with the server). Without a credentials file
  only requests addressed to ``localhost``, an IP address or a name in
  :data:`qa.config.ALLOWED_HOSTS` are answered.
- **Uploads by viewers** to Gradio's upload route (:class:`EditorsOnlyUploads`, added by
  :func:`ui.app.create_server` on a server with sign-in).
- **Sign-in floods** on Gradio's ``POST /login``: at most :data:`qa.config.SIGNIN_FAILURES`
  failed or pending attempts per client address in :data:`qa.config.SIGNIN_WINDOW_S`
  (:class:`SignInThrottle`; more get 429 and ``Retry-After`` without a password check; a
  success does not reset the count). At most :data:`qa.config.SIGNIN_CONCURRENCY` passwords
  are checked at once, by the chat's sign-in function (:func:`ui.app.create_server`), after the
  form is read, so clients that send their form slowly cannot hold the turns.

Gradio's sign-in cookies are made ``SameSite=Lax`` (it sets ``None``), and over HTTPS its twin
cookie without ``Secure`` is not set. Reading answers from another site is stopped by CORS: ``create_api`` adds Starlette's
``CORSMiddleware`` (allowing only :data:`qa.config.ALLOWED_ORIGINS`), which also makes Gradio
stand aside its own, which echoes any origin with credentials on a non-localhost host.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from qa import config

#: Methods that change nothing (a browser may send them cross-site; CORS keeps the answer from the page).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Gradio's sign-in route (the chat is mounted at ``/``).
LOGIN_PATH = "/login"
#: GETs that change something (Gradio's sign-out ends every session of its user): held to the
#: same origin rule as writes, so an image on another site cannot sign a user out.
CHANGING_GETS = frozenset({"/logout"})
#: Gradio's routes that take files from a client (the chat is mounted at ``/``): see :class:`EditorsOnlyUploads`.
UPLOAD_PATHS = frozenset({"/gradio_api/upload", "/gradio_api/process_recording"})


def _header(scope: dict, name: str) -> str | None:
    return Headers(scope=scope).get(name)


def _authority(value: str, scheme: str) -> str:
    """``host[:port]`` lower-cased, without the scheme's default port."""
    value = value.strip().lower().rstrip("/")
    default = {"http": ":80", "https": ":443", "ws": ":80", "wss": ":443"}.get(scheme)
    return value[: -len(default)] if default and value.endswith(default) else value


def _arrived_over(scope: dict) -> str:
    """The scheme the client used: the proxy's ``X-Forwarded-Proto``, else the connection's."""
    return (_header(scope, "x-forwarded-proto") or "").split(",")[0].strip().lower() or str(scope.get("scheme", "http"))


def host_name(host: str) -> str:
    """The name in a ``Host`` header: ``qa.lan:7860`` -> ``qa.lan``, ``[::1]:7860`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host: str | None, allowed: Iterable[str] = ()) -> bool:
    """True when an open server may answer a request sent to ``host``: ``localhost`` (or a
    ``*.localhost`` name), an IP address, or a name in ``allowed``. A request without a Host
    (HTTP/1.0) cannot be a rebound browser request and is allowed."""
    if host is None or not host.strip():
        return True
    name = host_name(host)
    if name == "localhost" or name.endswith(".localhost") or name in {a.lower() for a in allowed}:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def origin_allowed(scope: dict, allowed: Iterable[str] = ()) -> bool:
    """True when the request's ``Origin`` is absent (not a browser, or a same-origin GET), the
    server's own (the ``Host`` or first ``X-Forwarded-Host`` it was sent to), or in ``allowed``.
    ``Origin: null`` (a sandboxed frame or a local file) is never the server's own."""
    origin = _header(scope, "origin")
    if origin is None:
        # Browsers that send no Origin still say where a request came from.
        return _header(scope, "sec-fetch-site") not in ("cross-site", "same-site")
    origin = origin.strip().lower().rstrip("/")
    if origin in {a.lower().rstrip("/") for a in allowed}:
        return True
    scheme, sep, authority = origin.partition("://")
    if not sep:
        return False  # "null" and the like
    arrived = _arrived_over(scope)
    if scheme in ("http", "ws") and arrived in ("https", "wss"):
        return False  # a page on plain HTTP posing as the TLS site (one on the network path)
    own = [_header(scope, "host"), (_header(scope, "x-forwarded-host") or "").split(",")[0]]
    return any(h and _authority(h, scheme) == _authority(authority, scheme) for h in own)


class SignInThrottle:
    """Failed sign-ins per client address: at most ``limit`` failed or pending attempts within
    ``window_s`` seconds; :meth:`begin` says how long the next must wait (0: go ahead).
    Used from the event loop only (no lock); forgets quiet addresses beyond ``max_keys``."""

    def __init__(self, limit: int = config.SIGNIN_FAILURES, window_s: float = config.SIGNIN_WINDOW_S, max_keys: int = 10_000) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError(f"SignInThrottle(limit={limit}, window_s={window_s}): both must be positive")
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}
        self._pending: dict[str, int] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def begin(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key`` may try again (0.0: counted as pending; call :meth:`end`)."""
        now = time.monotonic() if now is None else now
        times = self._recent(key, now)
        pending = self._pending.get(key, 0)
        over = len(times) + pending - self.limit + 1  # failures that must age out first
        if over > 0:
            # Pending attempts alone at the limit: a second or so until one of them ends.
            return max(1.0, times[over - 1] + self.window_s - now) if over <= len(times) else 1.0
        self._pending[key] = pending + 1
        return 0.0

    def end(self, key: str, succeeded: bool, now: float | None = None) -> None:
        """Record the outcome of an attempt :meth:`begin` let through."""
        now = time.monotonic() if now is None else now
        pending = self._pending.get(key, 0) - 1
        if pending > 0:
            self._pending[key] = pending
        else:
            self._pending.pop(key, None)
        if succeeded:
            # Failures still age out as usual: were they cleared, an account holder could guess
            # 4 times at another account, sign in as themselves, and guess again.
            return
        times = self._recent(key, now)
        times.append(now)
        self._failures[key] = times
        if len(self._failures) > self.max_keys:
            self._forget(now)

    def _forget(self, now: float) -> None:
        for key in [k for k, t in self._failures.items() if not self._recent(k, now)]:
            del self._failures[key]
        while len(self._failures) > self.max_keys:  # still too many: drop the longest quiet
            del self._failures[min(self._failures, key=lambda k: self._failures[k][-1])]


Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


async def _refuse(status: int, message: str, scope: dict, receive: Receive, send: Send, headers: dict[str, str] | None = None) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    # "error" as the API's errors say it; "detail" where Gradio's pages look for it.
    await JSONResponse({"error": message, "detail": message}, status, headers)(scope, receive, send)


def _cookie_hardener(scope: dict, send: Send) -> Send:
    """``send`` with Gradio's sign-in cookies hardened: ``SameSite=Lax`` instead of ``None`` (a
    browser then sends them on no other site's form post or image: the chat is never framed by
    another site), and over HTTPS without the twin cookie Gradio sets without ``Secure`` (it
    would travel in clear text on any plain-HTTP request to the host)."""
    https = _arrived_over(scope) in ("https", "wss")

    async def hardened(message: dict) -> None:
        if message["type"] == "http.response.start" and any(k == b"set-cookie" for k, _ in message.get("headers", ())):
            headers = []
            for key, value in message["headers"]:
                if key == b"set-cookie" and value.lstrip().lower().startswith(b"access-token"):
                    lower = value.lower()
                    if https and lower.lstrip().startswith(b"access-token-unsecure-") and b"max-age=0" not in lower:
                        continue
                    value = re.sub(rb"(?i)samesite=none", b"SameSite=lax", value)
                headers.append((key, value))
            message = {**message, "headers": headers}
        await send(message)

    return hardened


class RequestGuard:
    """ASGI middleware: the refusals described in the module docstring. ``open_server``: no
    sign-in (the Host check applies); ``throttle``: the sign-in limiter (``None``: no sign-in)."""

    def __init__(
        self,
        app: Callable,
        *,
        open_server: bool,
        allowed_origins: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
        throttle: SignInThrottle | None = None,
    ) -> None:
        self.app = app
        self.open_server = open_server
        self.allowed_origins = tuple(allowed_origins)
        self.allowed_hosts = tuple(allowed_hosts)
        self.throttle = throttle

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self.open_server and not host_allowed(_header(scope, "host"), self.allowed_hosts):
            name = host_name(_header(scope, "host") or "")
            await _refuse(
                403,
                f"this server has no sign-in, so it answers only requests to localhost or an IP address, "
                f"not to {name!r}; add the name to QA_ALLOWED_HOSTS, or serve with sign-in (qa auth add-user)",
                scope,
                receive,
                send,
            )
            return
        changes = kind == "websocket" or scope["method"] not in SAFE_METHODS or scope["path"].rstrip("/") in CHANGING_GETS
        if changes and not origin_allowed(scope, self.allowed_origins):
            origin = _header(scope, "origin") or _header(scope, "sec-fetch-site") or "?"
            await _refuse(
                403,
                f"cross-site request refused: a page at {origin!r} may not change or query this server; "
                "to allow a site, add its origin to QA_ALLOWED_ORIGINS",
                scope,
                receive,
                send,
            )
            return
        if kind == "http":
            send = _cookie_hardener(scope, send)
        if self.throttle is not None and kind == "http" and scope["method"] == "POST" and scope["path"].rstrip("/") == LOGIN_PATH:
            await self._sign_in(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _sign_in(self, scope: dict, receive: Receive, send: Send) -> None:
        assert self.throttle is not None
        client = scope.get("client")
        key = client[0] if client else "?"
        wait = self.throttle.begin(key)
        if wait > 0:
            seconds = math.ceil(wait)
            await _refuse(429, f"too many failed sign-ins from this address; try again in {seconds} s", scope, receive, send, {"Retry-After": str(seconds)})
            return
        status: list[int] = []

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.throttle.end(key, succeeded=bool(status) and 200 <= status[0] < 300)


class EditorsOnlyUploads:
    """ASGI middleware: Gradio's routes that take files (:data:`UPLOAD_PATHS`; the upload route is
    behind the chat's "Upload documents") refused with 403 before the body is read unless
    ``may_upload(scope)`` says the signed-in user is an editor. Gradio takes files there from any
    signed-in user and keeps uploads until its hourly clean-up, so a viewer could otherwise fill
    the server's disk."""

    def __init__(self, app: Callable, *, may_upload: Callable[[dict], bool]) -> None:
        self.app = app
        self.may_upload = may_upload

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/") in UPLOAD_PATHS and not self.may_upload(scope):
            await _refuse(403, "only editors can upload files; sign in as an editor", scope, receive, send)
            return
        await self.app(scope, receive, send)


def protect(app: Any, auth: Any) -> Any:
    """Add CORS (only :data:`qa.config.ALLOWED_ORIGINS` may read answers from a browser) and,
    outside it, a :class:`RequestGuard` for a server with ``auth`` (an AuthStore, or ``None``:
    no sign-in) to the Starlette/FastAPI ``app``, before it serves; returns ``app``."""
    from starlette.middleware.cors import CORSMiddleware

    # Also makes Gradio's own CORS middleware stand aside (it checks the parent app for this class).
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(config.ALLOWED_ORIGINS),
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
    )
    app.add_middleware(
        RequestGuard,
        open_server=auth is None,
        allowed_origins=config.ALLOWED_ORIGINS,
        allowed_hosts=config.ALLOWED_HOSTS,
        throttle=None if auth is None else SignInThrottle(),
    )
    return app
