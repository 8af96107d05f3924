"""Fixtures of the reliability suite (see tests/reliability/helpers.py for the fakes)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # plain `pytest` (not `python -m pytest`) does not put the root on sys.path
    sys.path.insert(0, _ROOT)

import pytest  # noqa: E402

from tests.reliability.helpers import HERE, PY, ROOT, FastEncoder, NoTorchMiniLM, subprocess_env  # noqa: E402

SEEDS = ROOT / "seeds"


@pytest.fixture
def fast_encoder() -> FastEncoder:
    return FastEncoder()


@pytest.fixture(scope="session")
def real_seeds_index(tmp_path_factory) -> Path:
    """A real index over seeds/ (packaged MiniLM in ONNX Runtime, the default variant: no PyTorch import)."""
    from qa.ingest.indexing import index_folder

    index_dir = tmp_path_factory.mktemp("reliability-seeds") / "index"
    index_folder(SEEDS, index_dir, encoder=NoTorchMiniLM())
    return index_dir


HOSTILE_NAME = "museum <b>notes<i> [x](javascript:alert(1)).txt"
HOSTILE_TEXT = (
    "Visitor notes for the harbour museum.\n"
    "<script>window.__pwned=1</script>\n"
    '<img src=x onerror="window.__pwned=2"> <svg onload="window.__pwned=5"></svg>\n'
    "The night guard of the harbour museum is Orla Quigley, who has worked there since 2009.\n"
    '<a href="javascript:window.__pwned=4">open</a> <iframe src="http://203.0.113.7/frame"></iframe>\n'
    "[click here](javascript:window.__pwned=3) and ![pixel](http://203.0.113.7/pixel.png)\n"
    '<img src="https://evil.example/track.gif"> <link rel="stylesheet" href="http://203.0.113.7/l.css">\n'
    "<style>@import url(http://203.0.113.7/s.css); body { background: url(http://203.0.113.7/bg.png) }</style>\n"
    '<meta http-equiv="refresh" content="0;url=http://203.0.113.7/"> <http://203.0.113.7/autolink>\n'
    "The museum shop sells maps of the harbour and postcards of the lighthouse.\n"
)


@pytest.fixture(scope="session")
def hostile_docs(tmp_path_factory) -> Path:
    """seeds/ plus one document full of markup that must stay inert text."""
    import shutil

    docs = tmp_path_factory.mktemp("reliability-hostile") / "docs"
    shutil.copytree(SEEDS, docs)
    (docs / HOSTILE_NAME).write_text(HOSTILE_TEXT, encoding="utf-8")
    return docs


@pytest.fixture(scope="session")
def hostile_index(hostile_docs) -> Path:
    from qa.ingest.indexing import index_folder

    index_dir = hostile_docs.parent / "index"
    report = index_folder(hostile_docs, index_dir, encoder=NoTorchMiniLM())
    assert len(report.added) == 2, report.summary()
    return index_dir


@pytest.fixture(scope="session")
def served_app(hostile_index):
    """``python -m ui`` (via _serve.py) over seeds/ + the hostile document, in its own
    process, on a free port with the default host. Yields ``(url, process)``."""
    import subprocess

    from tests.ui.helpers import free_port, wait_until_up

    port = free_port()
    log = open(hostile_index.parent / "server.log", "w+", encoding="utf-8")  # noqa: SIM115
    proc = subprocess.Popen(
        [PY, str(HERE / "_serve.py"), "--index", str(hostile_index), "--port", str(port)],
        cwd=ROOT, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        try:
            wait_until_up(url, timeout_s=120)
        except OSError:
            log.seek(0)
            raise AssertionError(f"server did not start: {log.read()[-3000:]}") from None
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
