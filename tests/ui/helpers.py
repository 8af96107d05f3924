"""Start the Gradio app in this process on a free loopback port, for the UI tests."""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "seeds"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


@contextlib.contextmanager
def running_app(index: Any, **build_kwargs: Any) -> Iterator[str]:
    """Serve ``build_app(index)`` on 127.0.0.1 at a free port; yields its URL."""
    from ui.app import build_app, launch

    demo = build_app(index, **build_kwargs)
    port = free_port()
    launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url)
        yield url
    finally:
        demo.close()


#: The chat's reply bubbles (answer, "I don't know", error) in the rendered page.
REPLY = "#qa-chat .qa-answer, #qa-chat .qa-noanswer, #qa-chat .qa-error"
#: Generous: the first answer in a fresh app process loads the models.
TIMEOUT_MS = 120_000


def ask_in_page(page: Any, question: str) -> Any:
    """Type ``question`` in the chat, submit it, and return the new reply's locator once shown."""
    replies = page.locator(REPLY)
    before = replies.count()
    page.fill("#qa-question textarea", question)
    page.click("#qa-ask")
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel).length > n", arg=[REPLY, before], timeout=TIMEOUT_MS
    )
    return replies.nth(before)
