"""Transformers reader: span decoding from fixed logits, and end to end on a local checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qa.answer import Passage
from qa.reader import (
    ReaderUnavailable,
    TransformersReader,
    best_spans,
    decode,
    get_reader,
    locate_checkpoint,
    span_confidence,
)


def logits(n: int, **peaks: float) -> np.ndarray:
    out = np.full(n, -5.0, dtype=np.float32)
    for k, v in peaks.items():
        out[int(k[1:])] = v
    return out


def test_fold_letters_keeps_length_and_makes_typed_spellings_match() -> None:
    from tokenizers import Tokenizer

    from embeddings.encoders.encoder import packaged_minilm_path
    from qa.reader.decoding import fold_letters

    doc = "Kızılelma — Turkey’s drone; Łódź, Ørsted, Đoković"
    folded = fold_letters(doc)
    assert len(folded) == len(doc) and folded == "Kizilelma — Turkey’s drone; Lódź, Orsted, Doković"
    assert fold_letters("plain ASCII text") == "plain ASCII text"
    # The uncased tokenizer strips accents (ó, ź, ć) but keeps ı, ł, ø, đ apart: folding closes that gap.
    tok = Tokenizer.from_file(str(Path(packaged_minilm_path()) / "tokenizer.json"))
    assert tok.encode("Kızılelma").ids != tok.encode("Kizilelma").ids
    assert tok.encode(fold_letters("Kızılelma Łódź Ørsted")).ids == tok.encode("Kizilelma Lodz Orsted").ids


def test_best_span_respects_context_and_order() -> None:
    mask = np.array([False, False, True, True, True, True, False])
    start = logits(7, t1=9.0, t3=4.0, t5=1.0)  # t1 is in the question: never a start
    end = logits(7, t2=9.0, t4=3.0)
    assert best_spans(start, end, mask, max_answer_tokens=10) == [(3, 4, 7.0)]


def test_max_answer_length_excludes_long_spans() -> None:
    mask = np.ones(10, dtype=bool)
    mask[0] = False
    start = logits(10, t1=5.0, t7=2.0)
    end = logits(10, t9=5.0, t8=1.0)
    # (1, 9) scores 10 but is 9 tokens long; with a limit of 3 the best is (7, 9).
    assert best_spans(start, end, mask, max_answer_tokens=3)[0] == (7, 9, 7.0)
    assert best_spans(start, end, mask, max_answer_tokens=9)[0] == (1, 9, 10.0)


def test_end_before_start_is_never_chosen() -> None:
    mask = np.ones(5, dtype=bool)
    start = logits(5, t3=8.0)
    end = logits(5, t1=8.0)
    i, j, _ = best_spans(start, end, mask, max_answer_tokens=5)[0]
    assert i <= j


def test_decode_picks_best_window_and_minimum_null() -> None:
    masks = np.array([[False, True, True, True], [False, True, True, True]])
    starts = np.stack([logits(4, t0=1.0, t1=2.0), logits(4, t0=0.5, t2=6.0)])
    ends = np.stack([logits(4, t0=1.0, t1=2.0), logits(4, t0=0.5, t3=6.0)])
    best, null = decode(starts, ends, masks, max_answer_tokens=5)
    assert best is not None and (best.window, best.start_token, best.end_token, best.logit) == (1, 2, 3, 12.0)
    assert null == pytest.approx(1.0)  # min over windows of CLS start+end
    assert span_confidence(best.logit, null) > 0.99


def test_null_answer_wins_when_cls_scores_highest() -> None:
    masks = np.array([[False, True, True]])
    best, null = decode(np.array([logits(3, t0=8.0, t1=1.0)]), np.array([logits(3, t0=8.0, t2=1.0)]), masks, max_answer_tokens=5)
    assert best is not None and best.logit < null
    assert span_confidence(best.logit, null) < 0.01


def test_missing_checkpoint_directory_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ReaderUnavailable, match="does not exist"):
        locate_checkpoint(str(tmp_path / "nope"))


def test_uncached_hub_id_offline_is_unavailable_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ReaderUnavailable, match="not cached.*hf download"):
        locate_checkpoint("deepset/this-model-is-not-cached")


def test_get_reader_names_and_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ReaderUnavailable, match="not cached"):
        get_reader("transformers", model="deepset/not-cached-anywhere")
    with pytest.raises(ValueError, match="unknown.*transformers"):
        get_reader("offline")
    class Mine:
        def read(self, question, passages):  # noqa: ANN001, ANN202
            return None

    mine = Mine()
    assert get_reader(mine) is mine  # reader objects pass through
    with pytest.raises(ValueError, match="neither a reader name nor an object with read"):
        get_reader(object())  # type: ignore[arg-type]


def test_threshold_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        TransformersReader("shipped", threshold=1.5)


@pytest.fixture(scope="module")
def local_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real QA checkpoint: packaged MiniLM weights with a seeded, untrained QA head."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from embeddings.encoders.encoder import packaged_minilm_path

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("qa-checkpoint")
    model = AutoModelForQuestionAnswering.from_pretrained(packaged_minilm_path())
    AutoTokenizer.from_pretrained(packaged_minilm_path()).save_pretrained(path)
    model.save_pretrained(path)
    return path


def make_passages() -> list[Passage]:
    doc = "Prefix text. " + "Kızılelma — Turkey’s drone flew in December 2022. " * 40
    first = Passage("a.txt", "/a.txt", "a.txt#0", 13, len(doc), doc[13:], 0.9, doc)
    other = "Ankara is the capital. Istanbul has shipyards."
    second = Passage("b.txt", "/b.txt", "b.txt#0", 0, len(other), other, 0.5, other)
    return [first, second]


@pytest.mark.slow
def test_transformers_reader_end_to_end_on_local_checkpoint(local_checkpoint: Path) -> None:
    reader = TransformersReader(str(local_checkpoint), threshold=0.0, max_length=128, stride=32)
    passages = make_passages()
    answer = reader.read("When did the drone fly?", passages)
    assert answer.reader == local_checkpoint.name
    assert answer.text is not None and 0.0 <= answer.score <= 1.0
    c = answer.citations[0]
    source = next(p for p in passages if p.doc_id == c.doc_id)
    # Offsets map back to the document exactly, through windows, unicode and batching.
    assert source.document_text[c.answer_start : c.answer_end] == answer.text
    assert source.document_text[c.passage_start : c.passage_end] == c.passage
    assert c.passage_start <= c.answer_start < c.answer_end <= c.passage_end


@pytest.mark.slow
def test_transformers_reader_abstains_below_threshold(local_checkpoint: Path) -> None:
    reader = TransformersReader(str(local_checkpoint), threshold=1.0)
    answer = reader.read("When did the drone fly?", make_passages())
    assert answer.text is None and answer.citations == []
    assert answer.score < 1.0


def test_reader_compute_modes() -> None:
    """bf16 autocast, int8, fp32 or "auto" (bf16 only where the CPU has it natively)."""
    import torch

    from qa.reader.transformers_reader import _Bf16Autocast, _quantize, bf16_supported

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x)

    model = Tiny()
    with pytest.raises(ValueError, match="fp8"):
        _quantize(model, "fp8")
    assert _quantize(model, "none") is model
    wrapped = _quantize(model, "bf16")
    assert isinstance(wrapped, _Bf16Autocast) and wrapped.linear is model.linear  # attributes pass through
    assert wrapped(x=torch.ones(1, 4)).dtype == torch.bfloat16
    assert isinstance(_quantize(Tiny(), "auto"), _Bf16Autocast) == bf16_supported()
    assert type(_quantize(Tiny(), "int8").linear).__name__ == "Linear" and "quantized" in type(_quantize(Tiny(), "int8").linear).__module__
    # int8 scales each output channel on its own: a row of small weights beside a row of large
    # ones keeps its value (one scale per tensor would round the small row to zero).
    uneven = Tiny()
    with torch.no_grad():
        uneven.linear.weight.copy_(torch.tensor([[0.001, -0.002, 0.003, 0.001], [10.0, -8.0, 6.0, 9.0]]))
        uneven.linear.bias.zero_()
    x = torch.tensor([[1.0, -0.5, 0.25, 2.0]])
    exact, approx = uneven(x), _quantize(uneven, "int8")(x)
    assert torch.allclose(approx, exact, rtol=0.05, atol=1e-5), (approx, exact)
