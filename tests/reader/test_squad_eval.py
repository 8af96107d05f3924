"""``eval-reader``: SQuAD metrics checked by hand on a small fixture, and the command's output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qa.reader.squad import QAExample
from qa.reader.squad_eval import Prediction, calibration_table, evaluate, f1_score, normalize_answer, score_example

ROOT = Path(__file__).resolve().parents[2]


def ex(answers: list[str], context: str = "ctx") -> QAExample:
    return QAExample("id", "q?", context, tuple((0, a) for a in answers))


def test_normalisation_and_f1_by_hand() -> None:
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple a day") == "apple day"
    # pred "in december 2022" vs gold "december 2022": 2 common of 3 predicted, 2 gold -> P=2/3, R=1, F1=0.8
    assert f1_score("in December 2022", "December 2022") == pytest.approx(0.8)
    assert f1_score("Ankara", "Istanbul") == 0.0
    assert score_example("the Baykar", ex(["Baykar", "Baykar company"])) == (1.0, 1.0)
    assert score_example("", ex([])) == (1.0, 1.0)


def test_squad1_metrics_by_hand() -> None:
    examples = [ex(["Baykar"]), ex(["December 2022"]), ex(["Ankara"])]
    preds = [Prediction("Baykar", 0, 6, 0.9), Prediction("in December 2022", 0, 16, 0.2), Prediction("Istanbul", 0, 8, 0.1)]
    out = evaluate(examples, preds, threshold=0.5, seconds=2.0)
    # SQuAD 1.1: the reader always answers, whatever the confidence. EM 1/3, F1 (1 + 0.8 + 0)/3.
    assert out["exact"] == pytest.approx(33.33) and out["f1"] == pytest.approx(60.0)
    assert out["total"] == 3 and out["no_ans_accuracy"] is None and out["questions_per_s"] == 1.5


def test_squad2_metrics_at_threshold_by_hand() -> None:
    examples = [ex(["Baykar"]), ex(["Ankara"]), ex([]), ex([])]
    preds = [
        Prediction("Baykar", 0, 6, 0.9),  # answered right
        Prediction("Ankara", 0, 6, 0.3),  # right span, but below the threshold -> abstains -> wrong
        Prediction("Istanbul", 0, 8, 0.2),  # unanswerable, abstains -> right
        Prediction("Izmir", 0, 5, 0.7),  # unanswerable, answers -> wrong
    ]
    out = evaluate(examples, preds, threshold=0.5)
    assert out["exact"] == 50.0 and out["f1"] == 50.0
    assert (out["has_ans_exact"], out["has_ans_f1"], out["no_ans_accuracy"]) == (50.0, 50.0, 50.0)
    assert out["has_ans_total"] == 2 and out["no_ans_total"] == 2 and out["threshold"] == 0.5


def test_calibration_table_counts_per_bin() -> None:
    examples = [ex(["a"]), ex(["b"]), ex(["c"])]
    preds = [Prediction("a", 0, 1, 0.95), Prediction("x", 0, 1, 0.91), Prediction("c", 0, 1, 0.1)]
    rows = {r["bin"]: r for r in calibration_table(examples, preds)}
    assert rows["[0.9, 1.0)"] == {"bin": "[0.9, 1.0)", "n": 2, "exact": 0.5}
    assert rows["[0.0, 0.2)"]["exact"] == 1.0 and rows["[0.4, 0.6)"]["n"] == 0


def write_v2(path: Path) -> Path:
    context = "Baykar builds the Kizilelma drone in Istanbul. It first flew in December 2022."
    qas = [
        {"id": "a", "question": "Who builds the drone?", "answers": [{"text": "Baykar", "answer_start": 0}]},
        {"id": "b", "question": "When did it fly?", "answers": [{"text": "December 2022", "answer_start": context.index("December")}]},
        {"id": "c", "question": "Who is the pilot?", "answers": [], "is_impossible": True},
    ]
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}))
    return path


def run_qa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qa", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_eval_reader_cli_json_fields(tmp_path: Path, tiny_qa_checkpoint: Path) -> None:
    data = write_v2(tmp_path / "dev.json")
    done = run_qa("eval-reader", str(data), "--json", "--reader-model", str(tiny_qa_checkpoint))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for key in ("exact", "f1", "total", "has_ans_exact", "has_ans_f1", "no_ans_accuracy", "questions_per_s"):
        assert key in out
    assert out["total"] == 3 and out["has_ans_total"] == 2 and 0 <= out["f1"] <= 100
    limited = json.loads(run_qa("eval-reader", str(data), "--json", "--limit", "2", "--reader-model", str(tiny_qa_checkpoint)).stdout)
    assert limited["total"] == 2 and limited["no_ans_accuracy"] is None  # the first two are answerable
    table = run_qa("eval-reader", str(data), "--reader-model", str(tiny_qa_checkpoint))
    assert "exact match" in table.stdout and "unanswerable (1)" in table.stdout


def test_eval_reader_held_out_reads_only_the_articles_training_kept_out(tmp_path: Path, tiny_qa_checkpoint: Path) -> None:
    from qa.reader.squad import load_squad, split_holdout

    context = "Baykar builds the Kizilelma drone in Istanbul."
    articles = [
        {"title": f"article {n}", "paragraphs": [{"context": context, "qas": [{"id": f"{n}-{k}", "question": "Who builds it?", "answers": [{"text": "Baykar", "answer_start": 0}]} for k in range(2)]}]}
        for n in range(40)
    ]
    data = tmp_path / "train.json"
    data.write_text(json.dumps({"data": articles}))
    kept, held = split_holdout(load_squad(data), 20)
    assert held and kept  # the fixture has both sides
    out = json.loads(run_qa("eval-reader", str(data), "--json", "--held-out", "20", "--reader-model", str(tiny_qa_checkpoint)).stdout)
    assert out["total"] == len(held)
    first = json.loads(run_qa("eval-reader", str(data), "--json", "--held-out", "20", "--limit", "3", "--reader-model", str(tiny_qa_checkpoint)).stdout)
    assert first["total"] == 3
    for bad in ("0", "100"):
        refused = run_qa("eval-reader", str(data), "--held-out", bad)
        assert refused.returncode == 1 and "--held-out" in refused.stderr and "Traceback" not in refused.stderr


def test_eval_reader_cli_bad_input(tmp_path: Path) -> None:
    missing = run_qa("eval-reader", str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    bad = run_qa("eval-reader", str(write_v2(tmp_path / "d.json")), "--limit", "0")
    assert bad.returncode == 1 and "--limit" in bad.stderr
