"""The Gradio app over a real index, called through gradio_client like any API user."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.ui_helpers import ROOT, SEEDS, running_app


@pytest.fixture(scope="module")
def seeds_index(tmp_path_factory) -> Path:
    from qa.indexing import index_folder

    index_dir = tmp_path_factory.mktemp("ui-index") / "seeds"
    index_folder(SEEDS, index_dir)
    return index_dir


@pytest.fixture(scope="module")
def app_url(seeds_index):
    with running_app(seeds_index) as url:
        yield url


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def _chat_text(result) -> str:
    """All the text of the chat returned by /ask (messages are dicts with content parts)."""
    _question, chat, *_ = result
    parts = []
    for message in chat:
        content = message["content"]
        parts.extend(c.get("text", "") for c in content) if isinstance(content, list) else parts.append(str(content))
    return "\n".join(parts)


@pytest.mark.reader
@pytest.mark.slow
def test_ask_endpoint_answers_with_citation(client):
    result = client.predict("Which European country joined the drone coalition alongside Turkey?", api_name="/ask")
    question_box, chat, sources, _picker, index_info, document = result
    assert question_box == ""
    assert len(chat) == 2 and chat[0]["role"] == "user" and chat[1]["role"] == "assistant"
    text = _chat_text(result)
    assert "<strong>Belgium</strong>" in text
    assert "chance this is right" in text and "reader: " in text and "[1]" in text
    assert "<mark>Belgium</mark>" in sources
    assert "1 document" in index_info and "chunk" in index_info
    assert "Belgium" in document  # the answer in its whole document


@pytest.mark.reader
@pytest.mark.slow
def test_ask_endpoint_takes_top_k(client):
    question = "Which drone has Baykar begun mass-producing?"
    one = client.predict(question, 1, api_name="/ask")
    assert "Kızılelma" in _chat_text(one)
    # Without an answer the sources panel lists exactly the passages the reader was given.
    for k in (1, 3):
        panel = client.predict("What is the population of Tokyo?", k, api_name="/ask")[2]
        assert panel.count('class="qa-source-head"') == k


@pytest.mark.reader
@pytest.mark.slow
@pytest.mark.parametrize("question", ["", "   ", "?!", "x" * 1001])
def test_bad_questions_show_a_message_not_a_crash(client, question):
    result = client.predict(question, api_name="/ask")
    text = _chat_text(result)
    assert "Cannot answer" in text
    assert "question" in text  # the reason from ask()'s ValueError
    assert "No sources" in result[2]


@pytest.mark.slow
def test_questions_are_answered_concurrently(client, app_url):
    from gradio_client import Client

    questions = [
        "Who is Turkey's defense minister?",
        "When did the Kizilelma make its first flight?",
        "Which European country joined the drone coalition alongside Turkey?",
        "What is the population of Tokyo?",
    ]
    results: dict[str, str] = {}

    def run(q: str) -> None:
        results[q] = _chat_text(Client(app_url, verbose=False).predict(q, api_name="/ask"))

    threads = [threading.Thread(target=run, args=(q,)) for q in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert set(results) == set(questions)
    assert "December 2022" in results[questions[1]]
    assert "Belgium" in results[questions[2]]


@pytest.mark.slow
def test_app_is_queued_for_concurrent_questions(seeds_index):
    from ui.app import CONCURRENCY_LIMIT, build_app

    demo = build_app(seeds_index, warm_up=False)
    assert CONCURRENCY_LIMIT >= 4
    assert demo._queue.default_concurrency_limit == CONCURRENCY_LIMIT
    ask_fn = next(fn for fn in demo.fns.values() if fn.api_name == "ask")
    assert ask_fn.concurrency_limit in (None, "default", CONCURRENCY_LIMIT)


def test_cli_help_and_loopback_default():
    out = subprocess.run([sys.executable, "-m", "ui", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for flag in ("--host", "--port", "--index"):
        assert flag in out.stdout
    assert "--share" not in out.stdout
    from ui.__main__ import build_parser

    args = build_parser().parse_args([])
    assert args.host == "127.0.0.1" and args.port == 7860 and args.index is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--share"])
