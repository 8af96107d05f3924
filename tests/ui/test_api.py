"""The HTTP API (ui.api): its contract, its limits and its sign-in, over a small index.

Fast: the fake encoder, BM25 retrieval and a fake reader; FastAPI's TestClient in process.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from qa.answer import Answer
from qa.ingest.indexing import index_folder
from qa.pipeline import ask
from tests.conftest import FakeReader
from tests.doc_fixtures import write
from ui.auth import AuthStore, add_user

QUESTION = "Which river flows north?"


def LocalClient(app, **kwargs) -> TestClient:  # noqa: ANN001, N802 - stands in for TestClient
    """A test client addressing the app as http://127.0.0.1 (an open server answers only
    localhost and IP addresses: ui.guard), not TestClient's default host name "testserver"."""
    return TestClient(app, base_url="http://127.0.0.1", **kwargs)


@pytest.fixture
def small_index(tmp_path: Path, docs_dir: Path, fake_encoder) -> Path:  # noqa: ANN001
    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    return index


def _client(index, fake_encoder, **kwargs) -> TestClient:  # noqa: ANN001
    from ui.api import create_api

    return LocalClient(create_api(index, reader=FakeReader(), retriever="bm25", encoder=fake_encoder, **kwargs))


@pytest.fixture
def client(small_index: Path, fake_encoder) -> TestClient:  # noqa: ANN001
    return _client(small_index, fake_encoder)


@pytest.fixture
def users(tmp_path: Path) -> dict:
    """A credentials file with a viewer and an editor; their tokens and the store."""
    path = tmp_path / "auth.json"
    tokens = {
        "vic": add_user(path, "vic", "viewer", "viewer-password"),
        "eddie": add_user(path, "eddie", "editor", "editor-password"),
    }
    return {"path": path, "tokens": tokens, "store": AuthStore(path)}


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------- ask


def test_ask_returns_what_qa_ask_json_prints(client: TestClient, small_index: Path) -> None:
    response = client.post("/api/v1/ask", json={"question": QUESTION, "top_k": 2})
    assert response.status_code == 200
    expected = ask(QUESTION, index=small_index, top_k=2, reader=FakeReader(), retriever="bm25").to_dict()
    body = response.json()
    assert set(body) == set(Answer(QUESTION, None, 0.0, "x").to_dict()) == set(expected)
    assert body == json.loads(json.dumps(expected))
    assert body["answer"] == "Alpha" and body["citations"][0]["doc_id"] == "alpha.txt" and 1 <= len(body["passages"]) <= 2


def test_ask_takes_a_threshold(small_index: Path, fake_encoder) -> None:  # noqa: ANN001
    from ui.api import create_api

    client = LocalClient(create_api(small_index, reader=FakeReader(score=0.6), retriever="bm25", encoder=fake_encoder))
    strict = client.post("/api/v1/ask", json={"question": QUESTION, "threshold": 0.8}).json()
    assert strict["answer"] is None and strict["guess"]["text"] == "Alpha" and strict["score"] == 0.6
    for threshold in (0.5, 0, None):  # an int is a number too; null: the reader's own
        assert client.post("/api/v1/ask", json={"question": QUESTION, "threshold": threshold}).json()["answer"] == "Alpha"


def test_ask_passes_the_previous_question(client: TestClient) -> None:
    body = client.post("/api/v1/ask", json={"question": "Is it long?", "previous": QUESTION}).json()
    assert body["question"] == "Is it long?" and body["passages"]


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"question": ""}, "question is empty"),
        ({"question": "?!"}, "has no words"),
        ({"question": "x" * 1001}, "limit is 1,000"),
        ({"question": QUESTION, "top_k": 0}, "top_k=0 must be an integer from 1 to 100"),
        ({"question": QUESTION, "top_k": 101}, "from 1 to 100"),
        ({"question": QUESTION, "top_k": "3"}, "top_k"),
        ({"question": QUESTION, "top_k": 2.5}, "top_k"),
        ({"question": QUESTION, "top_k": True}, "top_k"),
        ({"question": QUESTION, "threshold": 1.5}, "threshold=1.5 must be a chance from 0 to 1"),
        ({"question": QUESTION, "threshold": "0.8"}, "threshold"),
        ({"question": QUESTION, "threshold": True}, "threshold"),
        ({"question": 42}, "question"),
        ({}, "question"),
    ],
)
def test_bad_asks_are_400_with_a_json_error(client: TestClient, payload: dict, needle: str) -> None:
    response = client.post("/api/v1/ask", json=payload)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"} and needle in response.json()["error"]


def test_malformed_json_and_unknown_paths_answer_json(client: TestClient) -> None:
    response = client.post("/api/v1/ask", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "error" in response.json()
    assert client.get("/api/v1/nowhere").status_code == 404 and "error" in client.get("/api/v1/nowhere").json()
    assert client.get("/api/v1/ask").status_code == 405 and "error" in client.get("/api/v1/ask").json()


def test_openapi_and_docs_pages(client: TestClient) -> None:
    schema = client.get("/api/openapi.json").json()
    assert {"/api/v1/ask", "/api/v1/documents", "/api/v1/documents/{doc_id}", "/api/v1/health"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/api/v1/documents"]["post"]["requestBody"]["content"]
    ask_responses = schema["paths"]["/api/v1/ask"]["post"]["responses"]
    assert "400" in ask_responses and "422" not in ask_responses  # invalid input is 400, as answered
    assert {"404", "409"} <= set(schema["paths"]["/api/v1/documents/{doc_id}"]["delete"]["responses"])
    page = client.get("/api/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/api/v1/documents/{doc_id}" in page.text and "question" in page.text and "top_k" in page.text
    assert "<script" not in page.text and "cdn" not in page.text  # works offline


# --------------------------------------------------------------------------- documents


def test_list_documents(client: TestClient) -> None:
    body = client.get("/api/v1/documents").json()
    assert body["count"] == 3
    docs = {d["id"]: d for d in body["documents"]}
    assert set(docs) == {"alpha.txt", "beta.md", "sub/gamma.txt"}
    alpha = docs["alpha.txt"]
    assert set(alpha) == {"id", "source", "origin", "kind", "chunks", "characters", "pages"}
    assert alpha["origin"] == "folder" and alpha["chunks"] >= 1 and alpha["characters"] > 10


def test_upload_adds_and_lists_refused_files_with_reasons(client: TestClient, tmp_path: Path) -> None:
    files = [
        ("files", ("../../harbour.txt", b"The harbour master is Piet Smit.")),
        ("files", ("tool.exe", b"MZ\x90\x00")),
        ("files", (".secret.txt", b"hidden")),
    ]
    response = client.post("/api/v1/documents", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["added"] == ["harbour.txt"] and "error" not in body
    reasons = {s["name"]: s["reason"] for s in body["skipped"]}
    assert "unsupported file type" in reasons["tool.exe"] and "hidden" in reasons[".secret.txt"]
    listed = {d["id"]: d for d in client.get("/api/v1/documents").json()["documents"]}
    assert listed["harbour.txt"]["origin"] == "added" and listed["harbour.txt"]["source"] == "upload:harbour.txt"
    assert client.post("/api/v1/ask", json={"question": "Who is the harbour master?"}).json()["passages"]
    # Nothing was written outside the index.
    assert not (tmp_path.parent / "harbour.txt").exists()


def test_upload_refusals_have_their_status(small_index: Path, fake_encoder) -> None:  # noqa: ANN001
    client = _client(small_index, fake_encoder, max_upload_bytes=100)
    unsupported = client.post("/api/v1/documents", files=[("files", ("a.exe", b"MZ")), ("files", ("b.bin", b"x"))])
    assert unsupported.status_code == 415 and "unsupported file type" in unsupported.json()["error"]
    too_big = client.post("/api/v1/documents", files=[("files", ("big.txt", b"word " * 40)), ("files", ("c.exe", b"MZ"))])
    assert too_big.status_code == 413, too_big.text
    assert "too large" in too_big.json()["error"] and "limit" in too_big.json()["error"]
    broken = client.post("/api/v1/documents", files=[("files", ("broken.pdf", b"%PDF-1.4 not really"))])
    assert broken.status_code == 422 and "corrupt" in broken.json()["skipped"][0]["reason"]
    assert client.post("/api/v1/documents", files={}).status_code == 400
    assert client.post("/api/v1/documents", data={"files": "just text"}).status_code == 400
    assert {d["id"] for d in client.get("/api/v1/documents").json()["documents"]} == {"alpha.txt", "beta.md", "sub/gamma.txt"}


def test_delete_document_then_404(client: TestClient) -> None:
    response = client.delete("/api/v1/documents/sub/gamma.txt")  # an id with a "/"
    assert response.status_code == 200 and response.json() == {"removed": ["sub/gamma.txt"]}
    assert "sub/gamma.txt" not in {d["id"] for d in client.get("/api/v1/documents").json()["documents"]}
    again = client.delete("/api/v1/documents/sub/gamma.txt")
    assert again.status_code == 404 and "no document 'sub/gamma.txt'" in again.json()["error"]


def test_server_side_write_failures_are_500_and_a_held_lock_is_409(small_index: Path, fake_encoder, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """A full or read-only disk is the server's fault, not the request's (it was 400, or a
    plain-text 500 on DELETE); only another writer holding the lock is 409."""
    import errno

    import ui.api
    from embeddings.errors import IndexBusyError

    client = _client(small_index, fake_encoder)
    files = [("files", ("notes.md", b"Herons nest by the delta lake."))]
    for failure, status in [
        (OSError(errno.ENOSPC, "No space left on device"), 500),
        (RuntimeError("the embedding model could not load"), 500),
        (IndexBusyError("index is being updated by another process"), 409),
    ]:
        def fail(*args, exc=failure, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise exc

        monkeypatch.setattr(ui.api, "add_uploads", fail)
        monkeypatch.setattr(ui.api, "remove_documents", fail)
        added = client.post("/api/v1/documents", files=files)
        assert added.status_code == status and str(failure) in added.json()["error"], added.text
        removed = client.delete("/api/v1/documents/alpha.txt")
        assert removed.status_code == status and str(failure) in removed.json()["error"], removed.text
        if status == 500:
            assert "nothing was added" in added.json()["error"] and "nothing was removed" in removed.json()["error"]
    assert {d["id"] for d in client.get("/api/v1/documents").json()["documents"]} == {"alpha.txt", "beta.md", "sub/gamma.txt"}


def test_a_bad_previous_question_is_400_naming_it(client: TestClient) -> None:
    # JSON may carry a lone surrogate as an escape (a broken client); the tokenizer cannot take it.
    body = '{"question": "When did it first fly?", "previous": "Kizilelma \\ud800"}'
    response = client.post("/api/v1/ask", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "previous" in response.json()["error"] and "surrogate" in response.json()["error"]
    assert client.post("/api/v1/ask", json={"question": "When did it first fly?", "previous": "  "}).status_code == 200


# --------------------------------------------------------------------------- health


def test_health_names_the_index_and_models(client: TestClient, small_index: Path) -> None:
    body = client.get("/api/v1/health").json()
    assert body["status"] == "ok" and body["index"] == str(small_index)
    assert body["documents"] == 3 and body["chunks"] >= 3
    assert body["models"]["embedding"] == "fake/bag-of-words" and body["models"]["reader"] == "fake-first-word"
    assert body["auth"] is False


def test_health_payload_never_shows_a_database_password() -> None:
    from ui.api import health_payload

    payload = health_payload(
        "postgresql://qa_user:s3cret-Pa55@db.internal:5432/qa",
        documents=2, chunks=5, embedding_model="m", reader_model="r", auth_enabled=True,
    )
    text = json.dumps(payload)
    assert "s3cret-Pa55" not in text
    assert payload["index"] == "postgresql://qa_user:***@db.internal:5432/qa"


def test_health_of_an_unreachable_index_is_503(tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    response = _client(tmp_path / "missing", fake_encoder).get("/api/v1/health")
    assert response.status_code == 503 and "error" in response.json()
    assert _client(tmp_path / "missing", fake_encoder).post("/api/v1/ask", json={"question": QUESTION}).status_code == 503


# --------------------------------------------------------------------------- questions at once


class GatedReader(FakeReader):
    """A FakeReader that records the questions it reads, how many it reads at once (``peak``),
    and reads each only once ``gate`` is open (after ``delay_s``)."""

    def __init__(self, gate: threading.Event | None = None, delay_s: float = 0.0) -> None:
        self.gate = gate
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.now = self.peak = 0
        self.questions: list[str] = []

    def read(self, question: str, passages: list):  # noqa: ANN201
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.questions.append(question)
        try:
            if self.gate is not None:
                assert self.gate.wait(30), "the test never opened the gate"
            time.sleep(self.delay_s)
            return super().read(question, passages)
        finally:
            with self.lock:
                self.now -= 1


def _gated_api(index: Path, fake_encoder, reader: GatedReader, **kwargs):  # noqa: ANN001, ANN202
    from ui.api import create_api

    return create_api(index, reader=reader, retriever="bm25", encoder=fake_encoder, **kwargs)


def _until(condition, timeout_s: float = 15.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_at_most_ask_concurrency_questions_compute_at_once(small_index: Path, fake_encoder) -> None:  # noqa: ANN001
    reader = GatedReader(delay_s=0.05)
    questions = [f"Which river number {n} flows north?" for n in range(12)]
    with LocalClient(_gated_api(small_index, fake_encoder, reader, ask_concurrency=2)) as client, ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda q: client.post("/api/v1/ask", json={"question": q}), questions))
    assert [r.status_code for r in responses] == [200] * 12
    assert [r.json()["question"] for r in responses] == questions
    assert reader.peak == 2 and sorted(reader.questions) == sorted(questions)


def test_waiting_questions_go_in_arrival_order_and_a_full_line_is_503(small_index: Path, fake_encoder) -> None:  # noqa: ANN001
    gate = threading.Event()
    reader = GatedReader(gate)
    app = _gated_api(small_index, fake_encoder, reader, ask_concurrency=1, ask_queue=3)
    asks = app.state.qa_asks
    questions = [f"Which river number {n} flows north?" for n in range(4)]
    with LocalClient(app) as client, ThreadPoolExecutor(4) as pool:
        try:
            futures = []
            for n, q in enumerate(questions):  # one at a time: the order they arrive in is known
                futures.append(pool.submit(client.post, "/api/v1/ask", json={"question": q}))
                _until(lambda n=n: reader.now == 1 and asks.waiting == n)
            busy = client.post("/api/v1/ask", json={"question": QUESTION})
            assert busy.status_code == 503, busy.text
            assert busy.json()["error"].startswith("busy: 3 questions are waiting") and "retry" in busy.json()["error"]
            assert 1 <= int(busy.headers["retry-after"]) <= 120
            health = client.get("/api/v1/health").json()
            assert health["asks"] == {"limit": 1, "computing": 1, "waiting": 3, "max_waiting": 3}
        finally:
            gate.set()
        assert [f.result(timeout=30).status_code for f in futures] == [200] * 4
    assert reader.questions == questions and reader.peak == 1  # first come, first served; the refused one never read
    assert asks.computing == 0 and asks.waiting == 0


def test_bad_asks_are_refused_at_once_even_when_every_turn_is_taken(small_index: Path, fake_encoder) -> None:  # noqa: ANN001
    gate = threading.Event()
    reader = GatedReader(gate)
    app = _gated_api(small_index, fake_encoder, reader, ask_concurrency=1, ask_queue=1)
    asks = app.state.qa_asks
    with LocalClient(app) as client, ThreadPoolExecutor(2) as pool:
        try:
            first = pool.submit(client.post, "/api/v1/ask", json={"question": QUESTION})
            _until(lambda: reader.now == 1)
            for bad in ({"question": "?!"}, {"question": QUESTION, "top_k": 0}, {"question": QUESTION, "threshold": 2}):
                refused = pool.submit(client.post, "/api/v1/ask", json=bad).result(timeout=10)  # no wait for a turn
                assert refused.status_code == 400, refused.text
                assert asks.waiting == 0
        finally:
            gate.set()
        assert first.result(timeout=30).status_code == 200
    assert reader.questions == [QUESTION]


def test_uploads_removes_health_and_listing_do_not_wait_behind_questions(small_index: Path, fake_encoder, users: dict) -> None:  # noqa: ANN001
    # More questions than Starlette's default pool has threads (40), all stuck: the editor's
    # requests and the sign-in checks still find a thread and are answered at once.
    gate = threading.Event()
    reader = GatedReader(gate)
    app = _gated_api(small_index, fake_encoder, reader, ask_concurrency=2, auth=users["store"])
    asks = app.state.qa_asks
    viewer, editor = _bearer(users["tokens"]["vic"]), _bearer(users["tokens"]["eddie"])
    with LocalClient(app) as client, ThreadPoolExecutor(50) as pool:
        try:
            futures = [pool.submit(client.post, "/api/v1/ask", json={"question": QUESTION}, headers=viewer) for _ in range(45)]
            _until(lambda: reader.now == 2 and asks.waiting == 43)
            upload = [("files", ("notes.md", b"Herons nest by the delta lake."))]
            calls = {
                "health": lambda: client.get("/api/v1/health", headers=viewer),
                "list": lambda: client.get("/api/v1/documents", headers=viewer),
                "upload": lambda: client.post("/api/v1/documents", files=upload, headers=editor),
                "remove": lambda: client.delete("/api/v1/documents/notes.md", headers=editor),
                "refused": lambda: client.get("/api/v1/health"),
            }
            for name, call in calls.items():
                t = time.monotonic()
                response = pool.submit(call).result(timeout=10)  # the old code: stuck until the gate opens
                assert time.monotonic() - t < 5, name
                assert response.status_code == (401 if name == "refused" else 200), (name, response.text)
                if name == "health":
                    assert response.json()["asks"] == {"limit": 2, "computing": 2, "waiting": 43, "max_waiting": 200}
            assert reader.now == 2 and not any(f.done() for f in futures)  # the questions were still waiting
        finally:
            gate.set()
        assert all(f.result(timeout=30).status_code == 200 for f in futures)
    assert reader.peak == 2


async def _asgi_ask(app, question: str, gone: asyncio.Event | None = None) -> list[dict]:  # noqa: ANN001
    """POST /api/v1/ask straight to the ASGI app; the client hangs up once ``gone`` is set."""
    body = json.dumps({"question": question}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    sent: list[dict] = []
    delivered = False

    async def receive() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await (gone or asyncio.Event()).wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(_scope("/api/v1/ask", headers), receive, send)
    return sent


@pytest.mark.parametrize("poll_s", [0.02, 60.0], ids=["leaves-the-line", "noticed-at-its-turn"])
def test_a_question_whose_client_left_while_waiting_is_not_computed(small_index: Path, fake_encoder, poll_s: float) -> None:  # noqa: ANN001
    gate = threading.Event()
    reader = GatedReader(gate)
    app = _gated_api(small_index, fake_encoder, reader, ask_concurrency=1)
    asks = app.state.qa_asks
    asks.poll_s = poll_s

    async def until(condition) -> None:  # noqa: ANN001
        deadline = time.monotonic() + 15
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.01)

    async def scenario() -> tuple[list[dict], list[dict], list[dict]]:
        first = asyncio.create_task(_asgi_ask(app, "Which river flows north?"))
        await until(lambda: reader.now == 1)
        gone = asyncio.Event()
        leaver = asyncio.create_task(_asgi_ask(app, "Is the river long?", gone))
        await until(lambda: asks.waiting == 1)
        gone.set()
        if poll_s < 1:  # it notices while waiting and gives up its place in the line
            await until(lambda: asks.waiting == 0 and asks.abandoned == 1)
        last = asyncio.create_task(_asgi_ask(app, "Which river is the longest?"))
        await until(lambda: asks.waiting == (1 if poll_s < 1 else 2))
        gate.set()
        return await first, await leaver, await last

    try:
        first, leaver, last = asyncio.run(scenario())
    finally:
        gate.set()
    assert first[0]["status"] == 200 and last[0]["status"] == 200
    assert leaver[0]["status"] == 499  # never read by anyone
    assert reader.questions == ["Which river flows north?", "Which river is the longest?"]
    assert asks.abandoned == 1 and asks.computing == 0 and asks.waiting == 0


def test_ask_limits_come_from_the_config(small_index: Path, fake_encoder, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from qa import config

    monkeypatch.setattr(config, "API_ASK_CONCURRENCY", 3)
    monkeypatch.setattr(config, "API_ASK_QUEUE", 7)
    asks = _gated_api(small_index, fake_encoder, GatedReader()).state.qa_asks
    assert (asks.concurrency, asks.max_waiting, asks.threads.total_tokens) == (3, 7, 3)
    assert config._env_int("QA_TEST_UNSET_VARIABLE", 5, 1) == 5
    monkeypatch.setenv("QA_TEST_ASKS", "0")
    with pytest.raises(ValueError, match="QA_TEST_ASKS='0' must be a whole number, at least 1"):
        config._env_int("QA_TEST_ASKS", 5, 1)  # refused, not turned into 1 behind the user's back


# --------------------------------------------------------------------------- body size


def _run_asgi(app, scope: dict, chunks: list[bytes]) -> tuple[list[dict], int]:  # noqa: ANN001
    """Call an ASGI app with a body in ``chunks``; returns what it sent and how many chunks it read."""
    sent: list[dict] = []
    read = 0

    async def receive() -> dict:
        nonlocal read
        if read >= len(chunks):
            raise AssertionError("read past the end of the body")
        read += 1
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent, read


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": headers,
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }


def test_a_large_content_length_is_refused_without_reading_the_body(small_index: Path, fake_encoder) -> None:  # noqa: ANN001
    from ui.api import create_api

    app = create_api(small_index, reader=FakeReader(), retriever="bm25", encoder=fake_encoder)
    headers = [(b"content-type", b"multipart/form-data; boundary=x"), (b"content-length", str(100 * 1024 * 1024).encode())]
    sent, read = _run_asgi(app, _scope("/api/v1/documents", headers), [b"x" * 1024] * 3)
    assert read == 0
    assert sent[0]["status"] == 413 and "too large" in json.loads(sent[1]["body"])["error"]


def test_a_streamed_body_is_cut_off_at_the_limit(small_index: Path, fake_encoder) -> None:  # noqa: ANN001
    from ui.api import create_api

    app = create_api(small_index, reader=FakeReader(), retriever="bm25", encoder=fake_encoder, max_request_bytes=10_000)
    head = b'--x\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n\r\n'
    chunks = [head] + [b"x" * 4096] * 100  # 400 KB, no Content-Length
    sent, read = _run_asgi(app, _scope("/api/v1/documents", [(b"content-type", b"multipart/form-data; boundary=x")]), chunks)
    assert read <= 5  # stopped just past 10,000 bytes
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413 and len(sent) == 2


def test_json_bodies_have_a_small_limit(small_index: Path, fake_encoder) -> None:  # noqa: ANN001
    client = _client(small_index, fake_encoder, max_json_bytes=1000)
    response = client.post("/api/v1/ask", json={"question": QUESTION, "previous": "y" * 2000})
    assert response.status_code == 413 and "too large" in response.json()["error"]
    assert client.post("/api/v1/ask", json={"question": QUESTION}).status_code == 200


# --------------------------------------------------------------------------- sign-in


def test_without_a_token_everything_is_401(small_index: Path, fake_encoder, users: dict) -> None:  # noqa: ANN001
    client = _client(small_index, fake_encoder, auth=users["store"])
    for method, path, kwargs in [
        ("post", "/api/v1/ask", {"json": {"question": QUESTION}}),
        ("get", "/api/v1/documents", {}),
        ("post", "/api/v1/documents", {"files": [("files", ("n.txt", b"Some words here."))]}),
        ("delete", "/api/v1/documents/alpha.txt", {}),
        ("get", "/api/v1/health", {}),
    ]:
        for headers in ({}, _bearer("not-a-token"), {"Authorization": "Basic dmljOnZpZXdlci1wYXNzd29yZA=="}):
            response = getattr(client, method)(path, headers=headers, **kwargs)
            assert response.status_code == 401, (method, path, headers)
            assert response.headers["www-authenticate"] == "Bearer" and "error" in response.json()
    assert len(client.get("/api/v1/documents", headers=_bearer(users["tokens"]["vic"])).json()["documents"]) == 3
    schema = client.get("/api/openapi.json").json()  # the schema itself is public: it holds no secret
    assert "bearerAuth" in schema["components"]["securitySchemes"]
    assert {"401", "403"} <= set(schema["paths"]["/api/v1/documents"]["post"]["responses"])


def test_viewers_read_editors_write(small_index: Path, fake_encoder, users: dict) -> None:  # noqa: ANN001
    client = _client(small_index, fake_encoder, auth=users["store"])
    viewer, editor = _bearer(users["tokens"]["vic"]), _bearer(users["tokens"]["eddie"])
    assert client.post("/api/v1/ask", json={"question": QUESTION}, headers=viewer).json()["answer"] == "Alpha"
    assert client.get("/api/v1/health", headers=viewer).json()["auth"] is True
    upload = [("files", ("notes.md", b"Herons nest by the delta lake."))]
    refused = client.post("/api/v1/documents", files=upload, headers=viewer)
    assert refused.status_code == 403 and "editor" in refused.json()["error"]
    assert client.delete("/api/v1/documents/alpha.txt", headers=viewer).status_code == 403
    assert {d["id"] for d in client.get("/api/v1/documents", headers=viewer).json()["documents"]} == {"alpha.txt", "beta.md", "sub/gamma.txt"}
    assert client.post("/api/v1/documents", files=upload, headers=editor).json()["added"] == ["notes.md"]
    assert client.delete("/api/v1/documents/alpha.txt", headers=editor).status_code == 200
    assert {d["id"] for d in client.get("/api/v1/documents", headers=editor).json()["documents"]} == {"beta.md", "notes.md", "sub/gamma.txt"}


def test_a_removed_user_s_token_stops_working(small_index: Path, fake_encoder, users: dict) -> None:  # noqa: ANN001
    from ui.auth import remove_user

    client = _client(small_index, fake_encoder, auth=users["store"])
    token = _bearer(users["tokens"]["vic"])
    assert client.get("/api/v1/health", headers=token).status_code == 200
    remove_user(users["path"], "vic")
    assert client.get("/api/v1/health", headers=token).status_code == 401


def test_no_secret_in_answers_or_errors(small_index: Path, fake_encoder, users: dict) -> None:  # noqa: ANN001
    client = _client(small_index, fake_encoder, auth=users["store"])
    token = users["tokens"]["eddie"]
    texts = [
        client.get("/api/v1/health", headers=_bearer(token)).text,
        client.get("/api/v1/health", headers=_bearer(token + "x")).text,
        client.post("/api/v1/ask", json={"question": ""}, headers=_bearer(token)).text,
    ]
    for text in texts:
        assert token not in text and "editor-password" not in text


# --------------------------------------------------------------------------- the chat's handlers


def _handler(demo, name: str):  # noqa: ANN001, ANN202
    return next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == name)


def test_chat_upload_and_remove_handlers_refuse_viewers(
    small_index: Path, tmp_path: Path, fake_encoder, users: dict, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    import functools

    import gradio as gr

    import ui.app
    from qa.ingest.indexing import list_documents
    from ui.app import build_app

    monkeypatch.setattr(ui.app, "upload_documents", functools.partial(ui.app.upload_documents, encoder=fake_encoder))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # where Gradio's upload route puts files
    demo = build_app(small_index, reader=FakeReader(), warm_up=False, auth=users["store"])
    upload, remove, show_user = _handler(demo, "upload"), _handler(demo, "remove"), _handler(demo, "show_user")
    note = str(write(tmp_path / "gradio" / "c0ffee" / "notes.md", "Herons nest by the delta lake."))
    demo.upload_file_set.add(note)  # as Gradio's upload route records what it hands out
    ids = lambda: {d.doc_id for d in list_documents(small_index)}  # noqa: E731
    progress = lambda *a, **k: None  # noqa: E731

    for request in (gr.Request(username="vic"), gr.Request(username="mallory"), gr.Request()):
        status = upload([note], request, progress)[0]
        assert "Only editors can add documents" in status, status
        assert "Only editors can remove documents" in remove("alpha.txt", request)[0]
    assert ids() == {"alpha.txt", "beta.md", "sub/gamma.txt"}
    _, upload_button, remove_row = show_user(gr.Request(username="vic"))
    assert upload_button.visible is False and remove_row.visible is False

    editor = gr.Request(username="eddie")
    assert "Added: notes.md" in upload([note], editor, progress)[0]
    assert "Removed: alpha.txt" in remove("alpha.txt", editor)[0]
    assert ids() == {"beta.md", "notes.md", "sub/gamma.txt"}
    user_info, upload_button, remove_row = show_user(editor)
    assert upload_button.visible is True and remove_row.visible is True and "eddie" in user_info.value


def test_the_chat_upload_handler_adds_only_files_gradios_upload_route_handed_out(
    small_index: Path, tmp_path: Path, fake_encoder, users: dict, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    """A chat event names its files by server path: one naming a file Gradio's upload route did
    not hand out (the credentials file, anything the server can read, or Gradio's cached copy of
    it) is refused, even for an editor."""
    import functools

    import gradio as gr

    import ui.app
    from qa.ingest.indexing import list_documents
    from ui.app import build_app

    monkeypatch.setattr(ui.app, "upload_documents", functools.partial(ui.app.upload_documents, encoder=fake_encoder))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    demo = build_app(small_index, reader=FakeReader(), warm_up=False, auth=users["store"])
    upload = _handler(demo, "upload")
    secret = write(tmp_path / "secret.txt", "The vault code is 7741.")
    inside = write(tmp_path / "gradio" / "ab12" / "notes.md", "Herons nest by the delta lake.")
    # A symlink in the upload folder pointing out of it is outside too.
    link = tmp_path / "gradio" / "ab12" / "link.txt"
    link.symlink_to(secret)
    copied = write(tmp_path / "gradio" / "cd34" / "secret.txt", "The vault code is 7741.")  # Gradio's copy for an event
    # As the upload route records it with a relative GRADIO_TEMP_DIR: the same file, another spelling.
    demo.upload_file_set.add(os.path.relpath(inside))
    editor, progress = gr.Request(username="eddie"), (lambda *a, **k: None)
    before = {d.doc_id for d in list_documents(small_index)}
    for files in ([str(secret)], [str(inside), str(secret)], [{"path": str(link), "orig_name": "link.txt"}], [str(copied)]):
        status = upload(files, editor, progress)[0]
        assert "only files uploaded from this page" in status, status
        assert {d.doc_id for d in list_documents(small_index)} == before
    assert "Added: notes.md" in upload([str(inside)], editor, progress)[0]


def _chat_event(client, session: str, name: str, data: list) -> str:  # noqa: ANN001
    """Send the chat's ``name`` event as a browser would (Gradio's queue); its completion message."""
    dep = next(d for d in client.get("/config").json()["dependencies"] if d.get("api_name") == name)
    joined = client.post(
        "/gradio_api/queue/join",
        json={"data": data, "fn_index": dep["id"], "session_hash": session, "event_data": None, "trigger_id": dep["targets"][0][0]},
    )
    assert joined.status_code == 200, joined.text
    with client.stream("GET", f"/gradio_api/queue/data?session_hash={session}") as events:
        for line in events.iter_lines():
            if "process_completed" in line:
                return line
    raise AssertionError("the event never completed")


def test_a_chat_event_naming_a_server_file_is_refused_before_it_is_read(
    small_index: Path, tmp_path: Path, fake_encoder, users: dict, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    """On the real server: an editor's upload event naming a file on the server (here the
    credentials file) is refused by Gradio's upload-folder check, which a mounted chat only has
    because create_server turns it on; nothing is copied or indexed. Viewers cannot use Gradio's
    upload route at all; editors can."""
    import functools

    import httpx

    import ui.app
    from qa.ingest.indexing import list_documents
    from tests.ui.helpers import running_app

    monkeypatch.setattr(ui.app, "upload_documents", functools.partial(ui.app.upload_documents, encoder=fake_encoder))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    before = {d.doc_id for d in list_documents(small_index)}
    with running_app(small_index, reader=FakeReader(), warm_up=False, auth=users["store"]) as url:
        with httpx.Client(base_url=url, timeout=60) as editor, httpx.Client(base_url=url, timeout=60) as viewer:
            assert editor.post("/login", data={"username": "eddie", "password": "editor-password"}).status_code == 200
            assert viewer.post("/login", data={"username": "vic", "password": "viewer-password"}).status_code == 200
            leaked = {"path": str(users["path"]), "orig_name": "users.txt", "meta": {"_type": "gradio.FileData"}}
            done = _chat_event(editor, "s1", "upload", [[leaked]])
            assert '"success": false' in done.replace('"success":false', '"success": false'), done
            assert {d.doc_id for d in list_documents(small_index)} == before
            secret = users["path"].read_bytes()
            assert not any(p.is_file() and p.read_bytes() == secret for p in (tmp_path / "gradio").rglob("*"))

            files = {"files": ("notes.md", b"Herons nest by the delta lake.", "text/markdown")}
            for route in ("/gradio_api/upload", "/gradio_api/process_recording"):
                refused = viewer.post(route, files=files)
                assert refused.status_code == 403 and "only editors" in refused.json()["error"]
            uploaded = editor.post("/gradio_api/upload", files=files)
            assert uploaded.status_code == 200, uploaded.text
            stored = uploaded.json()[0]
            done = _chat_event(editor, "s2", "upload", [[{"path": stored, "orig_name": "notes.md", "meta": {"_type": "gradio.FileData"}}]])
            assert "Added: notes.md" in done, done
    assert {d.doc_id for d in list_documents(small_index)} == before | {"notes.md"}


def test_each_page_load_shows_the_documents_as_they_are_now(small_index: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    """A document added after the server started (the API, another session, ``qa add``) is
    listed, and removable, for the next visitor; one removed elsewhere is no longer offered."""
    from qa.ingest.indexing import add_files, remove_documents
    from ui.app import build_app

    demo = build_app(small_index, reader=FakeReader(), warm_up=False)
    show_documents = _handler(demo, "show_documents")
    add_files(small_index, [write(tmp_path / "up" / "notes.md", "Herons nest by the delta lake.")], encoder=fake_encoder)
    remove_documents(small_index, ["beta.md"])
    table, choice, info = show_documents()
    assert "notes.md" in table and "beta.md" not in table
    assert "3 documents" in info, info  # the index line as now, not as at start-up
    assert [c[0] if isinstance(c, tuple) else c for c in choice.choices] == ["alpha.txt", "notes.md", "sub/gamma.txt"]


def test_chat_without_sign_in_lets_everyone_edit(small_index: Path) -> None:
    import gradio as gr

    from ui.app import build_app

    demo = build_app(small_index, reader=FakeReader(), warm_up=False)
    assert "Removed: alpha.txt" in _handler(demo, "remove")("alpha.txt", gr.Request())[0]


# --------------------------------------------------------------------------- chat and API on one port


def test_chat_and_api_share_one_app(small_index: Path, fake_encoder, users: dict) -> None:  # noqa: ANN001
    from ui.app import CSS, build_app, create_server

    demo = build_app(small_index, reader=FakeReader(), warm_up=False, auth=users["store"])
    app = create_server(demo, retriever="bm25", encoder=fake_encoder)
    with LocalClient(app) as client:
        assert client.get("/api/v1/health", headers=_bearer(users["tokens"]["vic"])).json()["documents"] == 3
        assert client.get("/api/v1/health").status_code == 401
        assert client.get("/config").status_code == 401  # the chat asks to sign in
        assert client.post("/login", data={"username": "vic", "password": "wrong-password"}).status_code == 400
        assert client.post("/login", data={"username": "nobody", "password": "viewer-password"}).status_code == 400
        assert client.post("/login", data={"username": "vic", "password": "viewer-password"}).status_code == 200
        config = client.get("/config")
        assert config.status_code == 200 and ".qa-conf-high" in config.json()["css"] and CSS.strip()[:40] in config.json()["css"]
        assert client.get("/gradio_api/user").json() == "vic"


def test_a_chat_sign_in_ends_when_its_user_is_removed_or_their_password_changes(small_index: Path, fake_encoder, users: dict) -> None:  # noqa: ANN001
    """Gradio keeps a chat session until the server restarts; a removed user, or a password set
    again after a leak, must not keep the old session's rights."""
    from ui.app import build_app, create_server
    from ui.auth import remove_user

    demo = build_app(small_index, reader=FakeReader(), warm_up=False, auth=users["store"])
    app = create_server(demo, retriever="bm25", encoder=fake_encoder)
    with LocalClient(app) as vic, LocalClient(app) as eddie, LocalClient(app) as thief:
        assert vic.post("/login", data={"username": "vic", "password": "viewer-password"}).status_code == 200
        assert eddie.post("/login", data={"username": "eddie", "password": "editor-password"}).status_code == 200
        assert thief.post("/login", data={"username": "eddie", "password": "editor-password"}).status_code == 200
        assert vic.get("/gradio_api/user").json() == "vic" and thief.get("/gradio_api/user").json() == "eddie"

        remove_user(users["path"], "vic")
        assert vic.get("/gradio_api/user").json() is None and vic.get("/config").status_code == 401

        add_user(users["path"], "eddie", "editor", "a-new-password", replace=True)  # after a leak
        assert thief.get("/gradio_api/user").json() is None and thief.get("/config").status_code == 401
        assert eddie.get("/gradio_api/user").json() is None  # everyone signs in again, with the new password
        assert eddie.post("/login", data={"username": "eddie", "password": "editor-password"}).status_code == 400
        assert eddie.post("/login", data={"username": "eddie", "password": "a-new-password"}).status_code == 200
        assert eddie.get("/gradio_api/user").json() == "eddie" and eddie.get("/config").status_code == 200
        assert thief.get("/gradio_api/user").json() is None


# --------------------------------------------------------------------------- both stores


STORES = [pytest.param("directory", id="directory"), pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=STORES)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An index location of each store: a directory, or a fresh PostgreSQL database."""
    if request.param == "directory":
        return str(tmp_path / "idx")
    pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    return request.getfixturevalue("pg_url")


def test_api_contract_over_both_stores(location: str, docs_dir: Path, fake_encoder) -> None:  # noqa: ANN001
    from embeddings.stores import display_location

    index_folder(docs_dir, location, encoder=fake_encoder)
    client = _client(location, fake_encoder)
    answer = client.post("/api/v1/ask", json={"question": QUESTION})
    assert answer.status_code == 200 and set(answer.json()) == set(Answer(QUESTION, None, 0.0, "x").to_dict())
    assert answer.json()["citations"][0]["doc_id"] == "alpha.txt"
    assert client.post("/api/v1/ask", json={"question": QUESTION, "top_k": 0}).status_code == 400
    health = client.get("/api/v1/health").json()
    assert health["index"] == display_location(location) and health["documents"] == 3
    upload = client.post("/api/v1/documents", files=[("files", ("notes.md", b"Herons nest by the delta lake.")), ("files", ("x.exe", b"MZ"))])
    assert upload.status_code == 200 and upload.json()["added"] == ["notes.md"] and upload.json()["skipped"][0]["name"] == "x.exe"
    assert client.delete("/api/v1/documents/sub/gamma.txt").status_code == 200
    assert client.delete("/api/v1/documents/sub/gamma.txt").status_code == 404
    listed = {d["id"]: d["origin"] for d in client.get("/api/v1/documents").json()["documents"]}
    assert listed == {"alpha.txt": "folder", "beta.md": "folder", "notes.md": "added"}


def test_an_unreachable_database_is_503(small_index: Path, fake_encoder) -> None:  # noqa: ANN001
    from embeddings.stores import StoreUnavailableError
    from ui.api import create_api

    class DownRetriever:
        def retrieve(self, question: str, k: int) -> list:
            raise StoreUnavailableError("the PostgreSQL server at db:5432 cannot be reached")

    client = LocalClient(create_api(small_index, reader=FakeReader(), retriever=DownRetriever(), encoder=fake_encoder))
    response = client.post("/api/v1/ask", json={"question": QUESTION})
    assert response.status_code == 503 and "cannot be reached" in response.json()["error"]
