"""``qa bench api`` (qa.tools.bench_api): its statistics and report, its option checks, and its
clients against an in-process API server (fake encoder and reader, real uvicorn on loopback).
The real numbers come from running it; the faults against a real server are in
tests/reliability/test_api_faults.py."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from qa.ingest.indexing import index_folder
from qa.tools import bench_api
from tests.conftest import FakeReader
from ui.auth import AuthStore, add_user


def test_percentile_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 100):
        values = list(rng.exponential(size=n))
        for q in (0, 50, 95, 100):
            assert bench_api.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert np.isnan(bench_api.percentile([], 50))


def test_summarize_counts_errors_by_kind_and_rates() -> None:
    s = bench_api.summarize([0.1, 0.2, 0.3, 0.4], Counter({"http 503": 2, "timeout": 1}), wall_s=2.0)
    assert s == {
        "answered": 4, "errors": 3, "errors_by_kind": {"http 503": 2, "timeout": 1},
        "min_ms": 100.0, "p50_ms": 250.0, "p95_ms": 385.0, "max_ms": 400.0, "per_s": 2.0,
    }
    empty = bench_api.summarize([], {}, wall_s=1.0)
    assert empty["answered"] == 0 and empty["errors"] == 0 and empty["p50_ms"] is None and empty["per_s"] == 0.0


def _result(**overrides) -> dict:  # noqa: ANN003
    asks = bench_api.summarize([0.5] * 9 + [2.0], {"http 503": 1}, 10.0)
    result = {
        "clients": 50, "processes": 2, "store": "postgres", "seconds": 20.0, "wall_s": 21.5,
        "asks": asks, "answered_per_process": [6, 4], "first_answer_s": 0.5,
        "uploads": bench_api.summarize([0.3, 0.4], {}, 10.0), "removes": bench_api.summarize([0.2], {"http 409": 1}, 10.0),
        "index_clean_after": True, "servers_alive": True, "start_to_first_answer_s": 12.3,
        "machine": {"cpus": 2, "load_average_before": 1.5},
    }
    return {**result, **overrides}


def test_format_report_shows_every_figure() -> None:
    text = bench_api.format_report(_result())
    for needle in (
        "clients                  50 (pinned round-robin to 2 processes)", "store                    postgres",
        "questions answered       10  (per process: 6, 4)", "errors                   1  (http 503: 1)",
        "latency p50 / p95 / max  500 ms / 1,325 ms / 2,000 ms  (min 500 ms; first answer after 0.5 s)", "questions/s              1.0",
        "uploads / removes        2 / 1  (errors: 1; remove http 409: 1)", "servers still up         yes",
        "editor's document left   no",
    ):
        assert needle in text, (needle, text)
    faults = {
        "clients": 4, "baseline": bench_api.summarize([1.0], {}, 1.0), "all_ok": False,
        "checks": [
            {"fault": "100 MB ask", "ok": True, "outcome": "413 JSON error", "background": bench_api.summarize([1.0], {}, 1.0)},
            {"fault": "slow clients", "ok": False, "outcome": "1/4 answered", "background": bench_api.summarize([], {"timeout": 2}, 1.0)},
        ],
    }
    text = bench_api.format_report(_result(faults=faults, processes=1, servers_alive=False))
    assert "per process" not in text and "servers still up         NO" in text
    assert "ok   100 MB ask" in text and "FAIL slow clients" in text and "2 errors" in text


def test_two_processes_need_the_postgres_store() -> None:
    with pytest.raises(ValueError, match="--processes 2 needs --store postgres"), bench_api.served(processes=2, store="dir"):
        pass  # refused before anything is started
    with pytest.raises(ValueError, match="unknown store"), bench_api.served(store="sqlite"):
        pass


def test_cli_parses_bench_api_options() -> None:
    from qa.tools.cli import build_parser

    args = build_parser().parse_args(
        ["bench", "api", "--clients", "7", "--seconds", "5", "--processes", "2", "--store", "postgres", "--json", "--faults"]
    )
    assert (args.what, args.clients, args.seconds, args.processes, args.store, args.json, args.faults) == (
        "api", 7, 5.0, 2, "postgres", True, True
    )
    defaults = build_parser().parse_args(["bench", "api"])
    assert (defaults.clients, defaults.seconds, defaults.processes, defaults.store, defaults.faults) == (50, 60.0, 1, "dir", False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "api", "--processes", "3"])


def test_cli_refuses_two_processes_over_a_directory(capsys: pytest.CaptureFixture[str]) -> None:
    from qa.tools.cli import main

    assert main(["bench", "api", "--processes", "2"]) == 1
    assert "needs --store postgres" in capsys.readouterr().err


def test_multipart_body_is_parsed_as_files() -> None:
    import asyncio

    from starlette.requests import Request

    body, ctype = bench_api.multipart_body([("a.txt", b"alpha\r\n--x"), ("b.md", b"# beta")])

    async def parse() -> list[tuple[str, bytes]]:
        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        request = Request({"type": "http", "method": "POST", "headers": [(b"content-type", ctype.encode())]}, receive)
        form = await request.form()
        return [(f.filename, await f.read()) for f in form.getlist("files")]

    assert asyncio.run(parse()) == [("a.txt", b"alpha\r\n--x"), ("b.md", b"# beta")]


# --------------------------------------------------------------------------- against a live server


@pytest.fixture
def live(tmp_path: Path, docs_dir: Path, fake_encoder) -> dict:  # noqa: ANN001
    """The API (fake reader, BM25, sign-in with a viewer and an editor) under uvicorn on a free port."""
    import uvicorn

    from ui.api import create_api

    index = tmp_path / "idx"
    index_folder(docs_dir, index, encoder=fake_encoder)
    auth_file = tmp_path / "auth.json"
    viewer = add_user(auth_file, "vic", "viewer", "viewer-password")
    editor = add_user(auth_file, "eddie", "editor", "editor-password")
    app = create_api(index, reader=FakeReader(), retriever="bm25", encoder=fake_encoder, auth=AuthStore(auth_file))
    port = bench_api.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.05)
    yield {"endpoint": bench_api.Endpoint(port=port), "viewer": viewer, "editor": editor, "index": index}
    server.should_exit = True
    thread.join(timeout=10)


def test_run_load_asks_uploads_and_removes_without_errors(live: dict) -> None:
    result = bench_api.run_load([live["endpoint"]], live["viewer"], live["editor"], clients=4, seconds=1.5)
    asks = result["asks"]
    assert asks["errors"] == 0, result["ask_error_samples"]
    assert asks["answered"] > 4 and asks["p50_ms"] <= asks["p95_ms"] <= asks["max_ms"] and asks["per_s"] > 0
    assert result["answered_per_process"] == [asks["answered"]]
    assert 0 < result["first_answer_s"] <= result["wall_s"] and asks["min_ms"] <= asks["p50_ms"]
    assert result["uploads"]["answered"] >= 1 and result["uploads"]["errors"] == 0, result["editor_error_samples"]
    assert result["removes"]["answered"] == result["uploads"]["answered"] and result["removes"]["errors"] == 0
    from qa.ingest.indexing import list_documents
    from qa.pipeline import load_index

    assert bench_api.EDITOR_DOC not in {d.doc_id for d in list_documents(load_index(live["index"]))}


def test_wrong_token_and_viewer_uploads_count_as_errors(live: dict) -> None:
    bad = bench_api.run_load([live["endpoint"]], "not-a-token", live["viewer"], clients=2, seconds=0.5)
    assert bad["asks"]["answered"] == 0 and set(bad["asks"]["errors_by_kind"]) == {"http 401"}
    assert bad["uploads"]["answered"] == 0 and set(bad["uploads"]["errors_by_kind"]) == {"http 403"}


@pytest.mark.parametrize("chunked", [False, True])
def test_huge_ask_body_gets_a_413_before_it_is_sent(live: dict, chunked: bool) -> None:
    result = bench_api.fault_huge_body(live["endpoint"], live["viewer"], "/api/v1/ask", size=20 * 1024 * 1024, chunked=chunked)
    assert result["ok"], result
    assert result["status"] == 413 and "too large" in result["error"] and result["bytes_sent"] < 20 * 1024 * 1024


def test_faults_leave_the_others_answered(live: dict) -> None:
    result = bench_api.run_faults(
        [live["endpoint"]], live["viewer"], live["editor"], clients=2,
        faults=("disconnect after request", "disconnect mid-body", "100 MB upload"), baseline_s=0.5, min_seconds=0.5,
    )
    assert result["all_ok"], result
    assert [c["fault"] for c in result["checks"]] == ["disconnect after request", "disconnect mid-body", "100 MB upload"]
    assert all(c["background"]["answered"] > 0 and c["server_alive"] for c in result["checks"])


def test_a_connection_idle_past_the_servers_keep_alive_is_reopened(live: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn drops keep-alive connections idle 5 s; reusing one then fails with no fault of the
    server's (RemoteDisconnected), so the bench's clients reopen them first."""
    client = bench_api.ApiClient(live["endpoint"], live["viewer"])
    assert client.get("/api/v1/health")[0] == 200
    first = client._conn
    assert client.get("/api/v1/health")[0] == 200 and client._conn is first  # reused while fresh
    monkeypatch.setattr(bench_api, "IDLE_REOPEN_S", 0.0)
    time.sleep(0.01)
    assert client.get("/api/v1/health")[0] == 200 and client._conn is not first
    client.close()
