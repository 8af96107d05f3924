"""Tests for ui.guard: cross-site writes, foreign host names on an open server, sign-in floods,
CORS in place of Gradio's, and the body limit of the chat's own routes."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from qa import config
from qa.ingest.indexing import index_folder
from tests.conftest import FakeReader
from ui.auth import AuthStore, SignIns, add_user
from ui.guard import SignInThrottle, host_allowed, origin_allowed

LOCAL = "http://127.0.0.1:7860"
EVIL = "https://evil.example"


@pytest.fixture
def small_index(tmp_path: Path, docs_dir: Path, fake_encoder) -> Path:  # noqa: ANN001
    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    return index


@pytest.fixture
def open_api(small_index: Path, fake_encoder):  # noqa: ANN001, ANN201
    from ui.api import create_api

    return create_api(small_index, reader=FakeReader(), retriever="bm25", encoder=fake_encoder)


@pytest.fixture
def team_server(small_index: Path, fake_encoder, tmp_path: Path):  # noqa: ANN001, ANN201
    """Chat + API with sign-in (an editor, eddie)."""
    from ui.app import build_app, create_server

    path = tmp_path / "auth.json"
    add_user(path, "eddie", "editor", "editor-password")
    demo = build_app(small_index, reader=FakeReader(), warm_up=False, auth=AuthStore(path))
    return create_server(demo, retriever="bm25", encoder=fake_encoder)


def _ids(client: TestClient) -> list[str]:
    return sorted(d["id"] for d in client.get("/api/v1/documents").json()["documents"])


def _scope(headers: dict[str, str]) -> dict:
    return {"headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:7860", True), ("localhost:7860", True), ("app.localhost", True), ("[::1]:7860", True),
        ("192.168.1.20:7860", True), ("10.0.0.5", True), (None, True),
        ("evil.example:7860", False), ("localhost.evil.example", False), ("qa.lan", False), ("127.0.0.1.nip.io:7860", False),
    ],
)
def test_an_open_server_answers_localhost_and_ip_addresses_only(host: str | None, ok: bool) -> None:
    assert host_allowed(host) is ok


def test_allowed_host_names_are_added_by_the_setting() -> None:
    assert host_allowed("QA.lan:7860", ("qa.lan",)) and not host_allowed("qa.lan.evil.example", ("qa.lan",))


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ({}, True),  # curl, scripts
        ({"Host": "127.0.0.1:7860", "Origin": LOCAL}, True),
        ({"Host": "qa.team", "Origin": "https://qa.team"}, True),
        ({"Host": "qa.team:443", "Origin": "https://qa.team"}, True),  # default port written or not
        ({"Host": "127.0.0.1:7860", "X-Forwarded-Host": "qa.team", "Origin": "https://qa.team"}, True),  # behind a proxy
        ({"Host": "127.0.0.1:7860", "Origin": "http://127.0.0.1:7861"}, False),  # another port is another origin
        ({"Host": "127.0.0.1:7860", "Origin": EVIL}, False),
        ({"Host": "qa.team", "Origin": "https://qa.team.evil.example"}, False),
        ({"Host": "127.0.0.1:7860", "Origin": "null"}, False),  # sandboxed frame, local file
        ({"Host": "127.0.0.1:7860", "Sec-Fetch-Site": "cross-site"}, False),
        ({"Host": "127.0.0.1:7860", "Sec-Fetch-Site": "same-origin"}, True),
        ({"Host": "qa.team", "X-Forwarded-Proto": "https", "Origin": "http://qa.team"}, False),  # a plain-HTTP page posing as the site
        ({"Host": "qa.team", "X-Forwarded-Proto": "https", "Origin": "https://qa.team"}, True),
    ],
)
def test_only_the_servers_own_origin_may_write(headers: dict[str, str], ok: bool) -> None:
    assert origin_allowed(_scope(headers)) is ok


def test_allowed_origins_are_added_by_the_setting() -> None:
    scope = _scope({"Host": "127.0.0.1:7860", "Origin": "https://portal.example.com"})
    assert origin_allowed(scope, ("https://portal.example.com",)) and not origin_allowed(scope, (EVIL,))


def test_the_throttle_refuses_after_the_limit_until_the_oldest_failure_ages_out() -> None:
    throttle = SignInThrottle(limit=3, window_s=100.0)
    for t in (0.0, 10.0, 20.0):
        assert throttle.begin("1.2.3.4", now=t) == 0.0
        throttle.end("1.2.3.4", succeeded=False, now=t)
    assert throttle.begin("1.2.3.4", now=30.0) == pytest.approx(70.0)  # until the failure at 0 is 100 s old
    assert throttle.begin("5.6.7.8", now=30.0) == 0.0  # per address
    assert throttle.begin("1.2.3.4", now=100.5) == 0.0
    throttle.end("1.2.3.4", succeeded=True, now=100.5)


def test_a_success_does_not_reset_the_count() -> None:
    """Else an account holder could guess at another account, sign in as themselves, guess again."""
    throttle = SignInThrottle(limit=3, window_s=100.0)
    for t in (0.0, 1.0):
        throttle.begin("a", now=t)
        throttle.end("a", succeeded=False, now=t)
    throttle.begin("a", now=2.0)
    throttle.end("a", succeeded=True, now=2.0)
    assert throttle.begin("a", now=3.0) == 0.0
    throttle.end("a", succeeded=False, now=3.0)
    assert throttle.begin("a", now=4.0) == pytest.approx(96.0)


def test_pending_attempts_count_so_a_burst_cannot_slip_past_the_limit() -> None:
    throttle = SignInThrottle(limit=3, window_s=100.0)
    assert [throttle.begin("a", now=0.0) for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]
    throttle.end("a", succeeded=False, now=1.0)
    assert throttle.begin("a", now=2.0) == pytest.approx(99.0)  # 1 failure + 2 pending: at the limit


def test_the_throttle_forgets_quiet_addresses_beyond_its_size() -> None:
    throttle = SignInThrottle(limit=3, window_s=10.0, max_keys=5)
    for i in range(20):
        throttle.begin(f"10.0.0.{i}", now=float(i))
        throttle.end(f"10.0.0.{i}", succeeded=False, now=float(i))
    assert len(throttle._failures) <= 6


# --------------------------------------------------------------------------- an open server (no sign-in)


def test_a_cross_site_upload_or_removal_is_refused_and_changes_nothing(open_api) -> None:  # noqa: ANN001
    """A page on another site can post a multipart form to 127.0.0.1 without a preflight."""
    with TestClient(open_api, base_url=LOCAL) as client:
        before = _ids(client)
        files = {"files": ("planted.txt", io.BytesIO(b"The launch code is 0000."), "text/plain")}
        refused = client.post("/api/v1/documents", files=files, headers={"Origin": EVIL})
        assert refused.status_code == 403 and "QA_ALLOWED_ORIGINS" in refused.json()["error"]
        assert client.delete(f"/api/v1/documents/{before[0]}", headers={"Origin": EVIL}).status_code == 403
        assert client.post("/api/v1/ask", json={"question": "What is the code?"}, headers={"Origin": "null"}).status_code == 403
        assert _ids(client) == before
        # The page the server itself serves may (its Origin is the server's).
        files = {"files": ("planted.txt", io.BytesIO(b"The launch code is 0000."), "text/plain")}
        assert client.post("/api/v1/documents", files=files, headers={"Origin": LOCAL}).status_code == 200
        assert "planted.txt" in _ids(client)


def test_a_rebound_host_name_gets_nothing_from_an_open_server(open_api, monkeypatch: pytest.MonkeyPatch, small_index: Path, fake_encoder) -> None:  # noqa: ANN001
    """DNS rebinding: evil.example resolves to 127.0.0.1, so its page is "same origin"."""
    with TestClient(open_api, base_url="http://evil.example:7860") as client:
        before = client.get("/api/v1/documents")
        assert before.status_code == 403 and "QA_ALLOWED_HOSTS" in before.json()["error"]
        assert client.delete("/api/v1/documents/alpha.txt", headers={"Origin": "http://evil.example:7860"}).status_code == 403
    with TestClient(open_api, base_url=LOCAL) as client:
        assert "alpha.txt" in _ids(client)
    from ui.api import create_api

    monkeypatch.setattr(config, "ALLOWED_HOSTS", ("qa.lan",))
    named = create_api(small_index, reader=FakeReader(), retriever="bm25", encoder=fake_encoder)
    with TestClient(named, base_url="http://qa.lan:7860") as client:
        assert client.get("/api/v1/documents").status_code == 200


def test_other_sites_cannot_read_answers_unless_allowed(open_api, monkeypatch: pytest.MonkeyPatch, small_index: Path, fake_encoder) -> None:  # noqa: ANN001
    with TestClient(open_api, base_url=LOCAL) as client:
        response = client.get("/api/v1/documents", headers={"Origin": EVIL})
        assert "access-control-allow-origin" not in response.headers
        preflight = client.options("/api/v1/ask", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in preflight.headers
    from ui.api import create_api

    monkeypatch.setattr(config, "ALLOWED_ORIGINS", ("https://portal.example.com",))
    portal = create_api(small_index, reader=FakeReader(), retriever="bm25", encoder=fake_encoder)
    with TestClient(portal, base_url=LOCAL) as client:
        headers = {"Origin": "https://portal.example.com"}
        assert client.get("/api/v1/documents", headers=headers).headers["access-control-allow-origin"] == "https://portal.example.com"
        assert client.post("/api/v1/ask", json={"question": "Who lit the lamp?"}, headers=headers).status_code == 200


# --------------------------------------------------------------------------- a team server (sign-in)


def test_gradio_no_longer_hands_the_chat_to_any_origin(team_server) -> None:  # noqa: ANN001
    """Gradio echoes any Origin with credentials on a non-localhost host (its sign-in cookie is
    SameSite=None): a page elsewhere could read a signed-in user's session token."""
    with TestClient(team_server, base_url="https://qa.team") as client:
        assert client.post("/login", data={"username": "eddie", "password": "editor-password"}).status_code == 200
        response = client.get("/gradio_api/token", headers={"Origin": EVIL})
        assert "access-control-allow-origin" not in response.headers
        assert client.post("/gradio_api/queue/join", json={}, headers={"Origin": EVIL}).status_code == 403
        # The team server's own page still works, writes included.
        own = {"Origin": "https://qa.team"}
        assert client.get("/config", headers=own).status_code == 200
        assert client.post("/gradio_api/queue/join", json={}, headers=own).status_code not in (401, 403)
        # An image on another site cannot sign the user out.
        assert client.get("/logout", headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False).status_code == 403
        assert client.get("/gradio_api/user").json() == "eddie"
        assert client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"}, follow_redirects=False).status_code < 400
        assert client.get("/gradio_api/user").json() is None


def test_a_cross_site_sign_in_is_refused(team_server) -> None:  # noqa: ANN001
    with TestClient(team_server, base_url="https://qa.team") as client:
        assert client.post("/login", data={"username": "eddie", "password": "editor-password"}, headers={"Origin": EVIL}).status_code == 403
        assert client.get("/config").status_code == 401


def test_sign_in_failures_are_throttled_per_address(team_server) -> None:  # noqa: ANN001
    wrong = {"username": "eddie", "password": "guess"}
    with TestClient(team_server, base_url="https://qa.team") as client:
        # Gradio's page says "incorrect credentials" to any refusal: the page's note says why it may be the limit.
        assert f"After {config.SIGNIN_FAILURES} failed tries from one address, sign-in is refused" in client.get("/").text
        assert [client.post("/login", data=wrong).status_code for _ in range(config.SIGNIN_FAILURES)] == [400] * config.SIGNIN_FAILURES
        refused = client.post("/login", data={"username": "eddie", "password": "editor-password"})  # right, but too late
        assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= config.SIGNIN_WINDOW_S
        assert "too many failed sign-ins" in refused.json()["detail"]
        assert client.get("/config").status_code == 401
    with TestClient(team_server, base_url="https://qa.team", client=("10.1.2.3", 5000)) as other:
        assert other.post("/login", data={"username": "eddie", "password": "editor-password"}).status_code == 200


def test_the_chats_own_routes_refuse_a_large_body_unread(team_server) -> None:  # noqa: ANN001
    """Gradio's open POST /login would spool a multipart body of any size to disk."""
    with TestClient(team_server, base_url="https://qa.team") as client:
        body = b"--x\r\nContent-Disposition: form-data; name=\"junk\"; filename=\"a\"\r\n\r\n" + b"x" * (2 * 1024 * 1024) + b"\r\n--x--\r\n"
        response = client.post("/login", content=body, headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert response.status_code == 413


def test_a_chat_sign_in_ends_after_its_maximum_age(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    add_user(path, "eddie", "editor", "editor-password")
    now = [1000.0]
    sessions = SignIns(AuthStore(path), max_age_s=3600.0, clock=lambda: now[0])
    sessions["t1"] = "eddie"
    now[0] += 3599.0
    assert sessions.get("t1") == "eddie"
    now[0] += 2.0
    assert sessions.get("t1") is None and "t1" not in sessions
    sessions["t2"] = "eddie"
    now[0] += 7200.0
    sessions["t3"] = "eddie"  # a new sign-in clears the expired ones nobody looks up
    assert "t2" not in sessions and sessions.get("t3") == "eddie"


def test_at_most_two_passwords_are_checked_at_once(team_server, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """scrypt costs ~50 ms of CPU and 16 MiB per check: a burst of sign-ins must queue."""
    running, peak, lock = [0], [0], threading.Lock()
    from ui.auth import AuthStore as Store

    real = Store.check_password

    def slow_check(self, name: str, password: str):  # noqa: ANN001, ANN202
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return real(self, name, password)

    monkeypatch.setattr(Store, "check_password", slow_check)

    # One client (one event loop, as under uvicorn), four at once: under the per-address limit.
    with TestClient(team_server, base_url="https://qa.team") as client, ThreadPoolExecutor(4) as pool:
        sign_in = lambda _: client.post("/login", data={"username": "eddie", "password": "editor-password"}).status_code  # noqa: E731
        assert list(pool.map(sign_in, range(4))) == [200] * 4
    assert peak[0] == config.SIGNIN_CONCURRENCY


def _set_cookies(response) -> list[str]:  # noqa: ANN001
    return [v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith("access-token")]


def test_sign_in_cookies_are_same_site_and_never_sent_in_clear_after_https(team_server) -> None:  # noqa: ANN001
    """Gradio sets SameSite=None, and a twin cookie without Secure that a plain-HTTP request would carry."""
    with TestClient(team_server, base_url="https://qa.team") as client:
        cookies = _set_cookies(client.post("/login", data={"username": "eddie", "password": "editor-password"}))
        assert len(cookies) == 1 and "secure" in cookies[0].lower() and "samesite=lax" in cookies[0].lower()
        assert client.get("/gradio_api/user").json() == "eddie"  # signed in with the one cookie
    with TestClient(team_server, base_url="http://192.168.1.20:7860") as lan:  # a LAN server without TLS keeps both
        cookies = _set_cookies(lan.post("/login", data={"username": "eddie", "password": "editor-password"}))
        assert len(cookies) == 2 and all("samesite=lax" in c.lower() for c in cookies)
        assert lan.get("/gradio_api/user").json() == "eddie"
