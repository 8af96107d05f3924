"""The Gradio app over a real index, called through gradio_client like any API user."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.ui.helpers import ROOT, SEEDS, running_app


@pytest.fixture(scope="module")
def seeds_index(tmp_path_factory) -> Path:
    from qa.ingest.indexing import index_folder

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
def test_ask_endpoint_takes_how_sure_to_be(client):
    question = "Which European country joined the drone coalition alongside Turkey?"

    def reply(sure: int) -> str:  # the newest reply only (the client's session keeps the chat)
        return _chat_text((None, client.predict(question, 5, sure, api_name="/ask")[1][-1:]))

    assert "<strong>Belgium</strong>" in reply(0)
    # At 100 % nothing is sure enough: the same span comes back as the closest match, not as the answer.
    strict = reply(100)
    assert "qa-noanswer" in strict and "Belgium" in strict and "<strong>Belgium</strong>" not in strict


def test_the_sure_slider_starts_at_the_readers_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from qa import config
    from tests.conftest import FakeReader
    from ui.app import reader_threshold_percent

    class Strict(FakeReader):
        threshold = 0.35

    assert reader_threshold_percent(Strict()) == 35
    assert reader_threshold_percent(FakeReader()) == 0  # no threshold of its own: it answers what it reads
    monkeypatch.setattr(config, "READER_THRESHOLD", None)
    shipped = json.loads((ROOT / "qa/reader/models/minilm-squad/calibration.json").read_text())["threshold"]
    assert reader_threshold_percent() == round(shipped * 100)  # from the calibrator file, weights not loaded
    assert reader_threshold_percent("transformers") == round(shipped * 100)  # python -m ui --reader transformers


@pytest.mark.reader
@pytest.mark.slow
@pytest.mark.parametrize("question", ["?!", "x" * 1001])
def test_bad_questions_show_a_message_not_a_crash(client, question):
    result = client.predict(question, api_name="/ask")
    text = _chat_text(result)
    assert "Cannot answer" in text
    assert "question" in text  # the reason from ask()'s ValueError
    assert "No sources" in result[2]


@pytest.mark.slow
@pytest.mark.parametrize("question", ["", "   ", "\n\t", "\u200b "])
def test_a_blank_question_is_not_sent_over_the_api_either(client, question):
    """Through /ask a blank question changes nothing: every output is a skip, no turn."""
    result = client.predict(question, api_name="/ask")
    assert all(isinstance(r, dict) and r.get("__type__") == "update" and not r.get("value") for r in result), result


@pytest.fixture
def small_index(tmp_path: Path, docs_dir: Path, fake_encoder) -> Path:  # noqa: ANN001
    from qa.ingest.indexing import index_folder

    index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder)
    return tmp_path / "idx"


@pytest.mark.parametrize("question", ["", "   ", "\n\t ", "\u200b", None])
def test_a_blank_question_makes_no_turn_and_no_error(small_index, question):
    """Send on an empty or whitespace-only box does nothing: no chat turn, no "Cannot answer"
    turn, the box, sources and picker unchanged (no model is loaded for it)."""
    import gradio as gr

    from ui.app import build_app, is_blank

    demo = build_app(small_index, warm_up=False)
    respond = next(fn for fn in demo.fns.values() if fn.api_name == "ask").fn
    outputs = respond(question, 5, None, [{"question": "Earlier?", "question_html": "q", "reply_html": "r"}])
    assert len(outputs) == 7 and all(o == gr.skip() for o in outputs)
    assert is_blank(question) and not is_blank(" ?x ")


def test_launch_prints_no_share_link_hint(small_index, capfd):
    """Sharing is off (we serve with uvicorn, never Blocks.launch): Gradio's "set
    `share=True`" hint must not be printed, while our own start-up lines still are."""
    from tests.ui.helpers import free_port, wait_until_up
    from ui.app import build_app, launch

    demo = build_app(small_index, warm_up=False)
    port = free_port()
    launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/")
    finally:
        demo.close()
    out, err = capfd.readouterr()
    assert "share=True" not in out + err and "public link" not in (out + err).lower()
    assert "Uvicorn running on" in out + err or "Application startup complete" in out + err  # the log was captured


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


def test_a_chain_of_follow_ups_keeps_the_conversations_subject(small_index, monkeypatch):
    """"Who built it?" and then "When did it first fly?" after a question about the Kizilelma
    are both retrieved with that question, not the second with the first follow-up."""
    import ui.app
    from qa.answer import Answer
    from ui.app import build_app

    asked = []

    def fake_ask(question, *, previous=None, **kwargs):
        asked.append((question, previous))
        return Answer(question=question, text=None, score=0.0, reader="fake", citations=[], passages=[])

    monkeypatch.setattr(ui.app, "ask", fake_ask)
    demo = build_app(small_index, warm_up=False)
    respond = next(fn for fn in demo.fns.values() if fn.api_name == "ask").fn
    turns = []
    for question in ("When did the Kizilelma make its first flight?", "Who built it?", "When did it first fly?", "How long is the Panama Canal?", "When did it open?"):
        turns = respond(question, 5, None, turns)[4]
    first, canal = "When did the Kizilelma make its first flight?", "How long is the Panama Canal?"
    assert [p for _, p in asked] == [None, first, first, first, canal]
