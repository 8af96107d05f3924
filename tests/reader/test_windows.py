"""qa.reader.windows: the reader's windows from the Rust tokenizer directly are exactly the
windows transformers' fast tokenizer makes (ids, masks, type ids, offsets, context tokens,
pair of each window), for both padding sides."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qa.reader import SHIPPED_READER_DIR
from qa.reader.windows import WindowTokenizer

SEED_DOC = Path(__file__).resolve().parents[2] / "seeds" / "japan_defense_minister_turkey_visit.txt"
QUESTIONS = ["Who is Turkey's defense minister?", "When did the Kizilelma first fly?", "What?"]


def _contexts() -> list[str]:
    text = SEED_DOC.read_text(encoding="utf-8")
    return [text[:3000], "Ankara is the capital of Turkey.", text[1000:1400] + " café Ölüdeniz — 1,2 «x»"]


def _reference(tokenizer, questions: list[str], contexts: list[str], max_length: int, stride: int) -> dict:  # noqa: ANN001
    """What the reader made before: transformers' tokenizer call."""
    right = tokenizer.padding_side == "right"
    enc = tokenizer(
        questions if right else contexts, contexts if right else questions,
        truncation="only_second" if right else "only_first", max_length=max_length, stride=stride,
        return_overflowing_tokens=True, return_offsets_mapping=True, padding="longest", return_tensors="np",
    )
    n = len(enc["input_ids"])
    context = np.array([[s == (1 if right else 0) for s in enc.sequence_ids(w)] for w in range(n)])
    return {**{k: np.asarray(v) for k, v in enc.items()}, "context": context}


def _assert_same(win, ref: dict) -> None:  # noqa: ANN001
    np.testing.assert_array_equal(win.input_ids, ref["input_ids"])
    np.testing.assert_array_equal(win.attention_mask, ref["attention_mask"])
    np.testing.assert_array_equal(win.token_type_ids, ref["token_type_ids"])
    np.testing.assert_array_equal(win.offsets, ref["offset_mapping"])
    np.testing.assert_array_equal(win.context, ref["context"])
    np.testing.assert_array_equal(win.sample, ref["overflow_to_sample_mapping"])


@pytest.mark.parametrize("max_length,stride", [(384, 128), (64, 16), (48, 0)])
def test_windows_are_transformers_windows(max_length: int, stride: int) -> None:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(SHIPPED_READER_DIR)
    contexts = _contexts()
    ref = _reference(hf, QUESTIONS, contexts, max_length, stride)
    for tok in (WindowTokenizer.from_checkpoint(SHIPPED_READER_DIR), WindowTokenizer.from_transformers(hf)):
        win = tok.windows(QUESTIONS, contexts, max_length=max_length, stride=stride)
        _assert_same(win, ref)
        assert len(win) > len(QUESTIONS)  # the long context overflows into several windows
    # The question's ids and their text, as the reader cuts a long question.
    ids = hf(QUESTIONS[0], add_special_tokens=False)["input_ids"]
    tok = WindowTokenizer.from_checkpoint(SHIPPED_READER_DIR)
    assert tok.ids(QUESTIONS[0]) == ids and tok.decode(ids[:4]) == hf.decode(ids[:4])


def test_left_padding_tokenizer_puts_the_question_second(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    folder = tmp_path / "left"
    shutil.copytree(SHIPPED_READER_DIR, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "padding_side": "left"}))
    hf = AutoTokenizer.from_pretrained(folder)
    assert hf.padding_side == "left"
    ref = _reference(hf, QUESTIONS, _contexts(), 64, 16)
    for tok in (WindowTokenizer.from_checkpoint(folder), WindowTokenizer.from_transformers(hf)):
        assert not tok.pad_right
        _assert_same(tok.windows(QUESTIONS, _contexts(), max_length=64, stride=16), ref)


def test_mismatched_lists_are_refused() -> None:
    tok = WindowTokenizer.from_checkpoint(SHIPPED_READER_DIR)
    with pytest.raises(ValueError, match="2 questions for 1 contexts"):
        tok.windows(["a?", "b?"], ["only one"], max_length=64, stride=16)


def test_windows_are_thread_safe() -> None:
    """Concurrent callers with different window settings each get their own windows."""
    from concurrent.futures import ThreadPoolExecutor

    tok = WindowTokenizer.from_checkpoint(SHIPPED_READER_DIR)
    contexts = _contexts()
    settings = [(384, 128), (64, 16), (48, 0)] * 20
    expected = {s: tok.windows(QUESTIONS, contexts, max_length=s[0], stride=s[1]).input_ids for s in set(settings)}
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda s: tok.windows(QUESTIONS, contexts, max_length=s[0], stride=s[1]).input_ids, settings))
    for s, ids in zip(settings, got, strict=True):
        np.testing.assert_array_equal(ids, expected[s])


def test_reading_the_tokenizer_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys\n"
        "from qa.reader.windows import WindowTokenizer\n"
        "from qa.reader import SHIPPED_READER_DIR\n"
        "w = WindowTokenizer.from_checkpoint(SHIPPED_READER_DIR).windows(['who?'], ['Ann wrote it.'], max_length=32, stride=8)\n"
        "assert len(w) == 1, len(w)\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
