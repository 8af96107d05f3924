"""Evaluation metrics against hand-computed cases, and ``python -m qa eval`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qa.tools.evaluation import (
    EvalRecord,
    abstention_metrics,
    contains_answer,
    exact_match,
    f1_score,
    first_hit_rank,
    load_questions,
    normalize_answer,
    retrieval_metrics,
    summarize,
    threshold_sweep,
)
from tests.conftest import ROOT
from tests.tools.test_cli import run_qa


def test_normalisation_drops_case_punctuation_articles_and_spacing() -> None:
    assert normalize_answer("  The  Danube-Commission! ") == "danubecommission"
    assert normalize_answer("An apple, a pear & THE plum.") == "apple pear plum"
    assert normalize_answer("“Götze”") == "götze"


def test_exact_match_with_several_accepted_answers() -> None:
    answers = ["Yasar Guler", "Turkish Defense Minister Yasar Guler"]
    assert exact_match("yasar guler.", answers) == 1.0
    assert exact_match("Turkish defense minister Yasar Guler", answers) == 1.0
    assert exact_match("Guler", answers) == 0.0
    assert exact_match(None, answers) == 0.0


def test_empty_answers_mean_unanswerable() -> None:
    assert exact_match(None, []) == 1.0 and f1_score(None, []) == 1.0
    assert exact_match("Paris", []) == 0.0 and f1_score("Paris", []) == 0.0


def test_f1_partial_overlap_takes_best_answer() -> None:
    # pred tokens: minister yasar guler (3); gold "yasar guler" (2): common 2 -> P=2/3, R=1 -> F1=0.8
    assert f1_score("the minister Yasar Guler", ["Yasar Guler"]) == pytest.approx(0.8)
    # best of two: against "turkish defense minister yasar guler" common 3 -> P=1, R=3/5 -> 0.75; max is 0.8
    assert f1_score("minister Yasar Guler", ["Yasar Guler", "Turkish Defense Minister Yasar Guler"]) == pytest.approx(0.8)
    assert f1_score("Belgium", ["Yasar Guler"]) == 0.0


def test_abstention_precision_and_recall() -> None:
    # 5 questions: answerable A A A, unanswerable U U; abstained on A, U, (not on the other U)
    abstained = [True, False, False, True, False]
    answerable = [True, True, True, False, False]
    m = abstention_metrics(abstained, answerable)
    assert m["abstention_precision"] == pytest.approx(1 / 2)
    assert m["abstention_recall"] == pytest.approx(1 / 2)
    none = abstention_metrics([False, False], [True, True])
    assert none == {"abstention_precision": None, "abstention_recall": None}


def test_contains_answer_uses_normalised_word_boundaries() -> None:
    assert contains_answer("Minister Yasar Guler's visit.", ["yasar guler"])
    assert contains_answer("flew in the 113th minute", ["113th minute"])
    assert not contains_answer("They start early.", ["art"])
    assert not contains_answer("anything", [""])


def test_recall_at_k_and_mrr_on_a_constructed_ranking() -> None:
    passages = ["nothing here", "still nothing", "Belgium joined", "Belgium again"]
    assert first_hit_rank(passages, ["Belgium"]) == 3
    assert first_hit_rank(passages, ["Japan"]) is None
    ranks = [1, 3, None, 2]
    m = retrieval_metrics(ranks, ks=(1, 2, 3, 10))
    assert m["recall@1"] == pytest.approx(0.25)
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["recall@3"] == pytest.approx(0.75)
    assert m["recall@10"] == pytest.approx(0.75)
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 0 + 1 / 2) / 4)


def test_threshold_sweep_on_hand_made_records() -> None:
    records = [
        (0.9, "Belgium", ["Belgium"]),  # answerable, right, confident
        (0.6, "Ankara", ["Istanbul"]),  # answerable, wrong
        (0.3, "Guler", ["Guler"]),  # answerable, right, unsure
        (0.5, "Tokyo", []),  # unanswerable, would answer something
        (0.1, "Paris", []),  # unanswerable, unsure
    ]
    rows = {r["threshold"]: r for r in threshold_sweep(records, [0.0, 0.2, 0.4, 0.7, 1.0])}
    assert rows[0.0]["answerable_em"] == pytest.approx(2 / 3)
    assert rows[0.0]["abstention_precision"] is None and rows[0.0]["abstention_recall"] == 0.0
    assert rows[0.0]["em"] == pytest.approx(2 / 5)
    # t=0.2: abstain on Paris only -> precision 1, recall 1/2
    assert rows[0.2]["abstention_precision"] == 1.0 and rows[0.2]["abstention_recall"] == 0.5
    assert rows[0.2]["em"] == pytest.approx(3 / 5)
    # t=0.4: abstain on Guler (answerable) and Paris -> precision 1/2, recall 1/2; answerable EM 1/3
    assert rows[0.4]["abstention_precision"] == 0.5 and rows[0.4]["abstention_recall"] == 0.5
    assert rows[0.4]["answerable_em"] == pytest.approx(1 / 3)
    # t=0.7: only Belgium answered; both unanswerable abstained
    assert rows[0.7]["abstention_precision"] == pytest.approx(2 / 4) and rows[0.7]["abstention_recall"] == 1.0
    assert rows[0.7]["answered"] == pytest.approx(1 / 5) and rows[0.7]["em"] == pytest.approx(3 / 5)
    assert rows[1.0]["answered"] == 0.0 and rows[1.0]["answerable_em"] == 0.0
    # records as dicts give the same numbers; the default grid runs 0..1 by 0.05
    as_dicts = [{"score": s, "prediction": p, "answers": a} for s, p, a in records]
    assert threshold_sweep(as_dicts, [0.4]) == [rows[0.4]]
    grid = threshold_sweep(records)
    assert len(grid) == 21 and grid[0]["threshold"] == 0.0 and grid[-1]["threshold"] == 1.0


def test_summary_counts_types_and_retrieval() -> None:
    def rec(answers: list[str], prediction: str | None, type_: str, rank: int | None) -> EvalRecord:
        return EvalRecord("q", answers, type_, prediction, 0.5, exact_match(prediction, answers), f1_score(prediction, answers), 0.01, rank)

    s = summarize([rec(["a b"], "a b", "who", 1), rec(["c"], "d", "who", 3), rec([], None, "unanswerable", None)])
    assert s["questions"] == 3 and s["answerable"] == 2
    assert s["em"] == pytest.approx(2 / 3) and s["em_answerable"] == pytest.approx(0.5)
    assert s["recall@1"] == 0.5 and s["recall@3"] == 1.0 and s["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert s["abstention_precision"] == 1.0 and s["abstention_recall"] == 1.0
    assert s["by_type"]["who"] == {"n": 2, "em": 0.5, "f1": 0.5}
    assert s["latency_p50_ms"] == pytest.approx(10.0)


def test_load_questions_reports_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Who?", "answers": []}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_questions(bad)
    with pytest.raises(ValueError, match="answers"):
        load_questions([{"question": "Who?"}])
    with pytest.raises(ValueError, match="cannot read"):
        load_questions(tmp_path / "missing.jsonl")


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"question": "Who is the defense minister?", "answers": [42]}', '"answers" must be a list of non-blank texts'),
        ('{"question": "Who is the defense minister?", "answers": [""]}', '"answers" must be a list of non-blank texts'),
        ('{"question": "   ", "answers": []}', "question is empty"),
        ('{"question": "???", "answers": []}', "has no words"),
        ('["not", "an", "object"]', 'must be an object with "question"'),
    ],
)
def test_each_bad_row_is_named_by_its_file_and_line(tmp_path: Path, line: str, needle: str) -> None:
    """The error names the line (blank lines counted, as an editor shows them) and what is wrong;
    answers that could never match (a number, a blank) are refused, not scored as misses."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Who?", "answers": ["Ann"]}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl:3: ") as caught:
        load_questions(bad)
    assert needle in str(caught.value)


def test_a_notepad_file_with_a_byte_order_mark_loads_and_other_encodings_are_named(tmp_path: Path) -> None:
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes('{"question": "Who?", "answers": ["Ann"]}\r\n{"question": "Where?", "answers": []}\r\n'.encode("utf-8-sig"))
    assert [r["question"] for r in load_questions(bom)] == ["Who?", "Where?"]
    late = tmp_path / "late.jsonl"  # a bad byte after a byte-order mark: its line counted from the file's start
    late.write_bytes("\ufeff".encode() + b'{"question": "Who?", "answers": []}\n\xe9{"question": "Qui?", "answers": []}\n')
    with pytest.raises(ValueError, match=r"late.jsonl:2: not UTF-8"):
        load_questions(late)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"question": "Who?", "answers": []}\n{"question": "Qui est né?", "answers": []}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.jsonl:2: not UTF-8 text \(byte 0xe9\); save the file as UTF-8"):
        load_questions(latin)


def test_eval_command_on_a_tiny_fixture(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "river.txt").write_text(
        "The Vessa river rises in the Kallen hills. Its longest tributary is the Ommer. "
        "The river reaches the sea at the port of Dranholm.",
        encoding="utf-8",
    )
    (docs / "launch.txt").write_text(
        "The Zentra phone was launched on 4 March 2031 in Oslo. It was built by the Norvik company.",
        encoding="utf-8",
    )
    questions = tmp_path / "q.jsonl"
    rows = [
        {"question": "Which company built the Zentra phone?", "answers": ["Norvik", "the Norvik company"], "type": "which"},
        {"question": "At which port does the Vessa river reach the sea?", "answers": ["Dranholm"], "type": "where"},
        {"question": "Who was the first mayor of Dranholm?", "answers": [], "type": "unanswerable"},
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    index = str(tmp_path / "idx")
    assert run_qa("index", str(docs), "--index", index).returncode == 0
    table = run_qa("eval", str(questions), "--index", index)
    assert table.returncode == 0, table.stderr
    assert "EM" in table.stdout and "recall@1" in table.stdout and "Traceback" not in table.stderr
    as_json = run_qa("eval", str(questions), "--index", index, "--json", "--retriever", "bm25", "--top-k", "2")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["summary"]["questions"] == 3 and data["config"]["retriever"] == "bm25" and data["config"]["top_k"] == 2
    assert len(data["records"]) == 3 and {"prediction", "score", "em", "f1", "latency_s", "retrieval_rank"} <= set(data["records"][0])
    assert data["summary"]["recall@10"] == 1.0
    assert data["config"]["threshold"] == json.loads((ROOT / "qa/reader/models/minilm-squad/calibration.json").read_text())["threshold"]
    # --threshold 1: nothing is certain, so every question is "I don't know" with its guess kept.
    strict = json.loads(run_qa("eval", str(questions), "--index", index, "--json", "--threshold", "1").stdout)
    assert strict["config"]["threshold"] == 1 and all(r["prediction"] is None for r in strict["records"])
    assert [r["guess"] is not None for r in strict["records"]] == [r["prediction"] is not None or r["guess"] is not None for r in data["records"]]
    assert "; threshold 1" in run_qa("eval", str(questions), "--index", index, "--threshold", "1").stdout
    missing = run_qa("eval", str(tmp_path / "nope.jsonl"), "--index", index)
    assert missing.returncode != 0 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr


def test_apply_threshold_and_best_threshold() -> None:
    from qa.tools.evaluation import apply_threshold, best_threshold

    records = [
        EvalRecord("q1", ["Belgium"], "which", "Belgium", 0.9, 1.0, 1.0, 0.1, 1),
        EvalRecord("q2", [], "unanswerable", "Tokyo", 0.2, 0.0, 0.0, 0.1, None, cited_doc="x.txt"),
    ]
    at = apply_threshold(records, 0.5)
    assert [r.prediction for r in at] == ["Belgium", None] and [r.em for r in at] == [1.0, 1.0]
    assert at[1].cited_doc is None and records[1].prediction == "Tokyo"  # originals untouched
    sweep = threshold_sweep(records, [0.0, 0.3, 0.5, 1.0])
    # 0.3 and 0.5 are both perfect; the tie goes to the more cautious (higher) threshold.
    assert best_threshold(sweep) == 0.5
    assert best_threshold(threshold_sweep(records, [0.0, 0.3, 1.0])) == 0.3


def test_best_threshold_with_an_abstention_target() -> None:
    from qa.tools.evaluation import best_threshold

    records = [
        EvalRecord("a", ["Ankara"], "where", "Ankara", 0.5, 1.0, 1.0, 0.1, 1),
        EvalRecord("b", ["2026"], "when", "2026", 0.25, 1.0, 1.0, 0.1, 1),
        EvalRecord("c", ["Baykar"], "who", "Baykar", 0.35, 1.0, 1.0, 0.1, 1),
        EvalRecord("u", [], "unanswerable", "Tokyo", 0.3, 0.0, 0.0, 0.1, None),
    ]
    sweep = threshold_sweep(records, [0.0, 0.2, 0.4])
    assert best_threshold(sweep) == 0.2  # 3/4 right, but the unanswerable one is answered
    assert best_threshold(sweep, min_abstention_recall=0.9) == 0.4  # the only one that abstains on it
    # No threshold reaches the target: the most abstaining ones compete on EM.
    assert best_threshold(threshold_sweep(records, [0.0, 0.2]), min_abstention_recall=0.9) == 0.2
    # Answering nothing is no way to reach the target: when only "never answer" (1.0) would,
    # the threshold that abstains most while still answering wins.
    mixed = [
        EvalRecord("a", ["Ankara"], "where", "Ankara", 0.5, 1.0, 1.0, 0.1, 1),
        EvalRecord("u1", [], "unanswerable", "Tokyo", 0.6, 0.0, 0.0, 0.1, None),
        EvalRecord("u2", [], "unanswerable", "Osaka", 0.3, 0.0, 0.0, 0.1, None),
    ]
    assert best_threshold(threshold_sweep(mixed, [0.0, 0.4, 1.0]), min_abstention_recall=0.9) == 0.4
    with pytest.raises(ValueError, match="non-empty"):
        best_threshold([])


def test_question_type_inferred_from_wording() -> None:
    from qa.tools.evaluation import infer_question_type

    cases = {
        "How many drones were built?": "how_many",
        "Who visited Turkey?": "who",
        "When did it first fly?": "when",
        "In which year did it fly?": "when",
        "Where is Baykar based?": "where",
        "Why did the minister travel?": "why",
        "Which company makes the Kizilelma?": "which",
        "What is the Kizilelma?": "what",
        "Is the drone unmanned?": "yes_no",
        "The drone flew when?": "when",
        "Tell me about drones": "other",
    }
    assert {q: infer_question_type(q) for q in cases} == cases


def test_calibration_metrics_by_hand() -> None:
    from qa.tools.evaluation import EvalRecord, calibration_metrics

    rows = [
        EvalRecord("a", ["Ankara"], "where", "Ankara", 0.95, 1.0, 1.0, 0.1, 1),
        EvalRecord("b", ["2026"], "when", "2025", 0.95, 0.0, 0.0, 0.1, 1),
        EvalRecord("c", ["Baykar"], "who", None, 0.2, 0.0, 0.0, 0.1, 1, guess="Baykar"),
        EvalRecord("u", [], "unanswerable", None, 0.1, 1.0, 1.0, 0.1, None, guess="Tokyo"),
    ]
    m = calibration_metrics(rows)
    # Answered: a (right) and b (wrong), both at 0.95: one bin, |0.5 - 0.95|.
    assert m["ece"] == pytest.approx(0.45) and m["accuracy_answered"] == 0.5
    # Most confident first: right, wrong, right (the guess), wrong -> 0.8 never reached after the first.
    assert m["coverage_at_80"] == 0.25
    assert rows[2].right and not rows[3].right  # a guess counts for coverage; any span of an unanswerable is wrong
