"""The shipped reader checkpoint: present, within size, answers the seed article with exact
spans and offsets (golden), abstains where the article has no answer, and is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qa import config
from qa.reader import SHIPPED_READER_DIR, TransformersReader, get_reader

SEED_DOC = Path(__file__).resolve().parents[2] / "seeds" / "japan_defense_minister_turkey_visit.txt"

#: (question, the right answer spans of the article). The reader must return one of them,
#: at its place in the document. Where the article says it twice ("In Ankara, he engaged in
#: discussions" / "his meetings in the capital") both spans are right; releases differ in which
#: they pick (release 2: "Ankara" and "Kızılelma"; release 3: "the capital" and the full name;
#: release 4: "Ankara" and the full name).
GOLDEN = [
    ("When did the Kizilelma make its first flight?", ("December 2022",)),
    ("Which European country joined the drone coalition alongside Turkey?", ("Belgium",)),
    ("Who manufactures the Kizilelma combat drone?", ("Baykar",)),
    ("Where did Nakatani meet his Turkish counterpart?", ("Ankara", "the capital")),
    ("Which drone has Baykar begun mass-producing?", ("Kızılelma", "Kızılelma unmanned combat aerial vehicle")),
    ("Who is Turkey's defense minister?", ("Yasar Guler",)),
]
#: Release 3 answered the last one "Turkey" at 0.52 before the calibrator. Release 4.2 (session 9) scores
#: these 0.00, 0.01-0.02 and 0.11-0.12 across bf16, int8, fp32 and onnx-q8 (AVX-512 Xeon); release 5
#: 0.00, 0.00 and 0.01-0.05 (AVX-512 EPYC), against the threshold 0.2.
UNANSWERABLE = ["What is the population of Tokyo?", "What is the top speed of the Kizilelma?", "What is the capital of Japan?"]


def test_shipped_checkpoint_files_and_size() -> None:
    files = {p.name for p in SHIPPED_READER_DIR.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "MODEL_CARD.md"} <= files
    assert (SHIPPED_READER_DIR / "model.safetensors").stat().st_size <= 50 * 1024 * 1024
    cfg = json.loads((SHIPPED_READER_DIR / "config.json").read_text())
    assert cfg["architectures"] == ["BertForQuestionAnswering"] and cfg["num_hidden_layers"] == 6
    card = (SHIPPED_READER_DIR / "MODEL_CARD.md").read_text()
    for must in ("all-MiniLM-L6-v2", "SQuAD", "python -m qa train-reader", "Exact match"):
        assert must in card
    assert config.DEFAULT_READER_MODEL == "shipped"


#: Every compute mode the reader ships: a golden answer must hold in each, whatever this CPU's
#: default ("auto") is, so a test cannot pass in one mode and fail in another.
MODES = ("bf16", "int8", "none", "onnx-q8")


@pytest.fixture(scope="module")
def seed_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed article indexed with the default encoder: answers go through real retrieval,
    whose scores the calibrated confidence uses, as in the product."""
    from qa.ingest.indexing import index_folder

    index = tmp_path_factory.mktemp("seed-index") / "idx"
    index_folder(SEED_DOC.parent, index)
    return index


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("question", "expected"), GOLDEN)
def test_shipped_reader_answers_with_exact_spans(seed_index, question: str, expected: tuple[str, ...], mode: str) -> None:  # noqa: ANN001
    from qa.pipeline import ask

    text = SEED_DOC.read_text(encoding="utf-8")
    # Measured: the lowest golden score is "Where did Nakatani meet ..." against the threshold 0.2:
    # release 5 (AVX-512 EPYC) 0.33 (bf16/fp32/onnx-q8) / 0.30 (int8); release 4.2 (AVX-512 Xeon)
    # 0.45-0.47 / 0.41; release 3: 0.33-0.38.
    answer = ask(question, index=seed_index, reader=TransformersReader("shipped", quantize=mode))
    assert answer.reader == "minilm-squad (shipped)"
    assert answer.text in expected, (answer.text, answer.score)
    c = answer.citations[0]
    # Exact offsets, also through unicode (Kızılelma) and letter folding.
    assert text[c.answer_start : c.answer_end] == answer.text
    assert text[c.passage_start : c.passage_end] == c.passage


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("question", UNANSWERABLE)
def test_shipped_reader_abstains_when_the_article_does_not_say(seed_index, question: str, mode: str) -> None:  # noqa: ANN001
    from qa.pipeline import ask

    reader = TransformersReader("shipped", quantize=mode)
    answer = ask(question, index=seed_index, reader=reader)
    assert answer.text is None and answer.citations == []
    assert answer.score < reader.threshold


def test_shipped_reader_has_a_calibrator_fitted_for_its_weights() -> None:
    from qa.reader.calibration import CALIBRATION_FILE, Calibrator, weights_fingerprint

    cal = Calibrator.load(SHIPPED_READER_DIR / CALIBRATION_FILE, model_sha256=weights_fingerprint(SHIPPED_READER_DIR))
    assert 0.05 <= cal.threshold <= 0.95
    # Fitted on held-out training articles only, and checked on a part it was not fitted on.
    assert cal.info["cases"]["fit"] > 500 and cal.info["cases"]["check"] > 200
    assert all("/eval/" not in f for f in cal.info["files"])


@pytest.mark.slow
def test_ask_names_the_shipped_reader(tmp_path: Path) -> None:
    from qa.ingest.indexing import index_folder
    from qa.pipeline import ask

    index_folder(SEED_DOC.parent, tmp_path / "idx")
    answer = ask("When did the Kizilelma make its first flight?", index=tmp_path / "idx")
    assert answer.reader == "minilm-squad (shipped)" and answer.text == "December 2022"
    assert get_reader() is get_reader("transformers")  # loaded once per process
