"""Load: 20 simultaneous chat users through gradio_client; a client that disconnects
mid-request does not take the app down. The server runs in its own process (the real
``python -m ui`` entry point), so client threads do not compete with it for the GIL."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

from tests.reliability.helpers import ARTIFACTS, PY, ROOT, record_figure, subprocess_env

pytestmark = pytest.mark.slow

USERS = 20
QUESTIONS = [
    "Who is Turkey's defense minister?",
    "When did the Kizilelma make its first flight?",
    "Who is the night guard of the harbour museum?",
    "Which European country joined the drone coalition alongside Turkey?",
    "What does the museum shop sell?",
    "What is the capital of Japan?",
]
PER_USER = 3


def chat_text(result) -> str:
    _q, chat, *_ = result
    parts = []
    for message in chat:
        content = message["content"]
        if isinstance(content, list):
            parts.extend(c.get("text", "") for c in content)
        else:
            parts.append(str(content))
    return "\n".join(parts)


def assert_answered(result) -> str:
    text = chat_text(result)
    assert "Cannot answer" not in text and "something went wrong" not in text, text[-500:]
    assert "qa-answer" in text or "I don't know" in text, text[-500:]
    return text


def test_server_listens_on_loopback_only(served_app):
    import psutil

    url, proc = served_app
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    listening = [c for c in psutil.Process(proc.pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening, "the server process listens on no socket"
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}, listening
    assert port in {c.laddr.port for c in listening}


def test_twenty_simultaneous_users(served_app):
    from gradio_client import Client

    url, proc = served_app
    t = time.perf_counter()
    assert_answered(Client(url, verbose=False).predict(QUESTIONS[0], api_name="/ask"))  # waits for the warm-up
    first = time.perf_counter() - t

    latencies: list[float] = []
    errors: list[str] = []
    answered = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(USERS + 1)

    def user(n: int) -> None:
        try:
            client = Client(url, verbose=False)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"user {n} could not connect: {exc!r}")
            barrier.abort()
            return
        try:
            barrier.wait(timeout=120)
        except threading.BrokenBarrierError:
            return
        for i in range(PER_USER):
            question = QUESTIONS[(n + i) % len(QUESTIONS)]
            t0 = time.perf_counter()
            try:
                result = client.predict(question, api_name="/ask")
                assert_answered(result)
            except Exception as exc:  # noqa: BLE001
                with lock:
                    errors.append(f"user {n} question {question!r}: {exc!r}")
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)
                answered[0] += 1

    threads = [threading.Thread(target=user, args=(n,), daemon=True) for n in range(USERS)]
    for th in threads:
        th.start()
    barrier.wait(timeout=180)
    t0 = time.perf_counter()
    for th in threads:
        th.join(timeout=300)
    wall = time.perf_counter() - t0

    assert not errors, errors[:5]
    assert answered[0] == USERS * PER_USER
    ms = np.array(latencies) * 1000
    figures = {
        "users": USERS,
        "questions_per_user": PER_USER,
        "requests": int(answered[0]),
        "errors": len(errors),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "max_ms": round(float(ms.max()), 1),
        "throughput_rps": round(answered[0] / wall, 2),
        "wall_s": round(wall, 2),
        "first_request_incl_warm_up_s": round(first, 2),
        "server_concurrency_limit": 4,
        "reader": "minilm-squad (shipped)",
        "machine_cpus": __import__("os").cpu_count(),
    }
    print("\nload:", json.dumps(figures))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load.json").write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    record_figure("load", figures)
    assert proc.poll() is None


def test_app_survives_clients_disconnecting_mid_request(served_app):
    from gradio_client import Client

    url, proc = served_app
    # 1. A client process killed while its request is being answered.
    script = (
        "import sys\nfrom gradio_client import Client\nc = Client(sys.argv[1], verbose=False)\n"
        "print('ready', flush=True)\nc.predict('[slow 4] Who is Turkey\\'s defense minister?', api_name='/ask')\n"
        "print('finished', flush=True)\n"
    )
    victim = subprocess.Popen([PY, "-c", script, url], cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    assert victim.stdout.readline().strip() == "ready"
    time.sleep(1.5)  # the request is now sleeping inside the server
    victim.send_signal(signal.SIGKILL)
    assert "finished" not in victim.communicate(timeout=30)[0]

    # 2. An in-process client that cancels its job and closes mid-request.
    client = Client(url, verbose=False)
    job = client.submit("[slow 4] When did the Kizilelma make its first flight?", api_name="/ask")
    time.sleep(1.0)
    job.cancel()
    close = getattr(client, "close", None)
    if callable(close):
        close()

    # The app is still up and answers a new user right away (not after a stuck slot).
    assert proc.poll() is None
    t0 = time.perf_counter()
    text = assert_answered(Client(url, verbose=False).predict("When did the Kizilelma make its first flight?", api_name="/ask"))
    assert "December 2022" in text
    assert time.perf_counter() - t0 < 30
    # Several more at once still all get answers (no worker slot leaked by the dropped requests).
    results: list[str] = []

    def one() -> None:
        results.append(assert_answered(Client(url, verbose=False).predict(QUESTIONS[0], api_name="/ask")))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert len(results) == 4 and all("Yasar Guler" in r for r in results)
