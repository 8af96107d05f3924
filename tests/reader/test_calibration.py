"""Confidence calibration: features, the fitted model and its file, the reader's use of it,
and the fitting tool on a tiny corpus."""

from __future__ import annotations

import gzip
import json
import shutil
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from qa import config
from qa.answer import Passage
from qa.reader.calibration import (
    CALIBRATION_FILE,
    FEATURES,
    CalibrationMismatch,
    Calibrator,
    Candidate,
    coverage_at_accuracy,
    expected_calibration_error,
    fit_logistic,
    span_features,
    weights_fingerprint,
)
from qa.reader.squad import QAExample, split_holdout


def _passage(text: str, components: dict[str, float] | None = None, doc: str = "d") -> Passage:
    return Passage(doc, doc, f"{doc}#0", 0, len(text), text, 0.5, text, (), components or {})


PASSAGES = [
    _passage("Baykar has built six prototypes of the Kizilelma since 2021.", {"rrf": 2 / 61, "dense": 0.7, "bm25": 8.0}, "a"),
    _passage("The Kizilelma first flew in December 2022, Baykar said.", {"rrf": 1 / 62, "dense": 0.6, "bm25": 4.0}, "b"),
    _passage("Ankara hosted the meeting.", {"rrf": 1 / 63, "dense": 0.2, "bm25": 0.0}, "c"),
]


def test_span_features_by_hand() -> None:
    text = PASSAGES[0].text
    six = (text.index("six"), text.index("six") + 3)
    candidates = [
        Candidate(0, *six, 12.0),
        Candidate(0, six[0], six[1] + 11, 9.0),  # overlaps the best: not a runner-up
        Candidate(1, 0, 13, 7.0),  # the other passage's best span, says something else
    ]
    f = span_features("How many prototypes of the Kizilelma exist?", candidates, 2.0, PASSAGES)
    assert list(f) == list(FEATURES)
    assert f["margin"] == 10.0 and f["best_logit"] == 12.0
    assert f["runner_up_gap"] == 5.0  # 12 - 7: the first span that does not overlap
    assert f["agreement"] == 0.0 and f["inverse_rank"] == 1.0 and f["has_retrieval"] == 1.0
    assert f["rrf"] == pytest.approx(2 * 60 / 61) and f["dense"] == 0.7 and f["bm25_share"] == 1.0
    assert f["wants_number"] == 1.0 and f["number_ok"] == 1.0 and f["wants_date"] == 0.0
    # BM25 terms of the question: how, many, prototyp, kizilelma, exist; the passage has 2 of 5.
    assert f["question_overlap"] == pytest.approx(0.4) and f["sentence_overlap"] == pytest.approx(0.4)
    assert f["answer_in_question"] == 0.0 and f["answer_words"] == pytest.approx(np.log(2))
    # A date question answered with a name; a lone paragraph has no retrieval scores.
    lone = [_passage(PASSAGES[1].text)]
    f2 = span_features("When did the Kizilelma first fly?", [Candidate(0, 0, 13, 3.0)], 4.0, lone)
    assert f2["wants_date"] == 1.0 and f2["date_ok"] == 0.0 and f2["has_retrieval"] == 0.0 and f2["margin"] == -1.0
    # Two passages that give the same answer agree.
    same = [Candidate(1, PASSAGES[1].text.index("Baykar"), PASSAGES[1].text.index("Baykar") + 6, 8.0), Candidate(0, 0, 6, 7.0)]
    f3 = span_features("Who builds the Kizilelma?", same, 0.0, PASSAGES)
    assert f3["agreement"] == 0.5 and f3["inverse_rank"] == 0.5 and f3["wants_person"] == 1.0 and f3["person_ok"] == 1.0


def _synthetic(n: int = 400, seed: int = 0) -> tuple[list[dict[str, float]], list[bool]]:
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for _ in range(n):
        row = {name: float(rng.normal()) for name in FEATURES}
        row["softmax"] = float(1 / (1 + np.exp(-row["margin"])))
        rows.append(row)
        # Right more often with a large runner-up gap, and (against intuition) with a *small* margin.
        labels.append(bool(rng.random() < 1 / (1 + np.exp(-(2 * row["runner_up_gap"] - 1.5 * row["margin"])))))
    return rows, labels


def test_fit_is_deterministic_and_monotone_in_the_margin() -> None:
    rows, labels = _synthetic()
    a, b = fit_logistic(rows, labels), fit_logistic(rows, labels)
    assert a == b
    coef = dict(zip(FEATURES, a.coef, strict=True))
    assert coef["runner_up_gap"] > 0.5  # it learned the real signal
    # The data reward a small margin; the bounds keep the margin's weights at >= 0 anyway.
    assert coef["margin"] >= 0.0 and coef["softmax"] >= 0.0
    text = PASSAGES[0].text
    probabilities = [
        a.probability(span_features("How many prototypes?", [Candidate(0, 20, 23, 6.0), Candidate(1, 0, 5, 1.0)], null, PASSAGES))
        for null in np.linspace(12.0, -12.0, 25)  # margin rising from -6 to 18
    ]
    assert all(y >= x - 1e-12 for x, y in pairwise(probabilities))
    assert text  # (passage used above)
    with pytest.raises(ValueError, match="as many labels"):
        fit_logistic(rows, labels[:-1])


def test_an_answer_of_the_asked_kind_never_scores_below_one_without_it() -> None:
    # Data in which "how many" answers without a number are right more often than those with one.
    rows, _ = _synthetic(seed=1)
    rng = np.random.default_rng(1)
    labels = []
    for row in rows:
        wants = rng.random() < 0.5
        has = wants and rng.random() < 0.5
        row.update(wants_number=float(wants), number_ok=float(has), wants_date=0.0, date_ok=0.0, wants_person=0.0, person_ok=0.0)
        labels.append(bool(rng.random() < 1 / (1 + np.exp(-(row["runner_up_gap"] + (1.5 if wants and not has else 0.0))))))
    calibrator = fit_logistic(rows, labels)
    coef = dict(zip(FEATURES, calibrator.coef, strict=True))
    assert coef["number_ok"] >= 0.0 and coef["date_ok"] >= 0.0 and coef["person_ok"] >= 0.0
    assert coef["wants_number"] > 0.1  # the data's signal is still learned where it is allowed
    features = span_features("How many prototypes has Baykar built?", [Candidate(0, 17, 20, 6.0)], 2.0, PASSAGES[:1])
    assert PASSAGES[0].text[17:20] == "six" and features["wants_number"] == features["number_ok"] == 1.0
    with_number = calibrator.probability(features)
    words = calibrator.probability({**features, "number_ok": 0.0})  # the same answer had it held no number
    assert with_number >= words - 1e-12


def test_ece_and_coverage_by_hand() -> None:
    # Bin [0.9, 1.0): p 0.95 x2, one right -> |0.5 - 0.95| = 0.45, weight 0.5; bin [0.2, 0.3): p 0.25 x2, none right -> 0.25 x 0.5.
    assert expected_calibration_error([0.95, 0.95, 0.25, 0.25], [True, False, False, False]) == pytest.approx(0.35)
    assert expected_calibration_error([], []) is None
    # Most confident first: right, right, wrong, right, wrong -> accuracy 1, 1, .67, .75, .6
    assert coverage_at_accuracy([0.9, 0.8, 0.7, 0.6, 0.5], [True, True, False, True, False], accuracy=0.75) == 0.8
    assert coverage_at_accuracy([0.9], [False]) == 0.0


def test_weights_count_as_copies() -> None:
    # A weight of 2 is the row twice: the same fit, the same ECE and coverage.
    rows, labels = _synthetic()
    doubled = fit_logistic(rows + rows[:40], labels + labels[:40])
    weighted = fit_logistic(rows, labels, weights=[2.0] * 40 + [1.0] * (len(rows) - 40))
    assert np.allclose(doubled.coef, weighted.coef, atol=2e-3) and doubled.intercept == pytest.approx(weighted.intercept, abs=2e-3)
    p, r = [0.95, 0.25, 0.25, 0.6], [True, False, True, True]
    assert expected_calibration_error(p, r, weights=[2, 1, 1, 0]) == pytest.approx(expected_calibration_error([0.95, 0.95, 0.25, 0.25], [True, True, False, True]))
    assert coverage_at_accuracy([0.9, 0.8, 0.7], [True, False, True], weights=[3, 1, 0]) == coverage_at_accuracy([0.9] * 3 + [0.8], [True] * 3 + [False]) == 0.75
    assert coverage_at_accuracy([0.9, 0.8, 0.7], [True, False, False], weights=[3, 1, 4], accuracy=0.75) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="non-negative weights"):
        fit_logistic(rows, labels, weights=[-1.0] * len(rows))
    with pytest.raises(ValueError, match="non-negative weights"):
        expected_calibration_error(p, r, weights=[1, 1])


def test_a_paragraph_read_alone_is_scored_by_its_own_regression(tmp_path: Path) -> None:
    rows, labels = _synthetic(300)
    retrieved = fit_logistic(rows, labels)
    # Alone, the same spans are right less often (harder unanswerable questions): another fit.
    lone_fit = fit_logistic(rows, [l and i % 3 > 0 for i, l in enumerate(labels)])
    lone = Calibrator(lone_fit.mean, lone_fit.scale, lone_fit.coef, lone_fit.intercept, 0.3)
    cal = Calibrator(retrieved.mean, retrieved.scale, retrieved.coef, retrieved.intercept, 0.3, "ab" * 32, {}, lone)
    with_scores = span_features("How many prototypes?", [Candidate(0, 20, 23, 6.0)], 1.0, PASSAGES)
    alone = span_features("How many prototypes?", [Candidate(0, 20, 23, 6.0)], 1.0, [_passage(PASSAGES[0].text)])
    assert with_scores["has_retrieval"] == 1.0 and alone["has_retrieval"] == 0.0
    assert cal.probability(with_scores) == retrieved.probability(with_scores)
    assert cal.probability(alone) == lone.probability(alone) != retrieved.probability(alone)
    # Monotone in the span-vs-null margin in both regressions.
    for passages in (PASSAGES, [_passage(PASSAGES[0].text)]):
        ps = [cal.probability(span_features("How many prototypes?", [Candidate(0, 20, 23, 6.0)], null, passages)) for null in np.linspace(12.0, -12.0, 25)]
        assert all(y >= x - 1e-12 for x, y in pairwise(ps))
    # The file keeps both; a file of version 1 (one regression for both) still loads.
    cal.save(tmp_path / CALIBRATION_FILE)
    again = Calibrator.load(tmp_path / CALIBRATION_FILE, model_sha256="ab" * 32)
    assert again == cal and again.probability(alone) == cal.probability(alone)
    data = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    (tmp_path / "v1.json").write_text(json.dumps({**{k: v for k, v in data.items() if k != "lone"}, "version": 1}))
    v1 = Calibrator.load(tmp_path / "v1.json")
    assert v1.lone is None and v1.probability(alone) == retrieved.probability(alone)
    (tmp_path / "bad.json").write_text(json.dumps({**data, "lone": {**data["lone"], "coef": [1.0]}}))
    with pytest.raises(CalibrationMismatch, match="damaged"):
        Calibrator.load(tmp_path / "bad.json")


def test_calibrator_file_round_trip_and_refusals(tmp_path: Path) -> None:
    rows, labels = _synthetic(100)
    cal = fit_logistic(rows, labels, threshold=0.4)
    cal = Calibrator(cal.mean, cal.scale, cal.coef, cal.intercept, 0.4, "ab" * 32, {"note": "test"})
    path = tmp_path / CALIBRATION_FILE
    cal.save(path)
    again = Calibrator.load(path, model_sha256="ab" * 32)
    assert again.probability(rows[0]) == cal.probability(rows[0]) and again.threshold == 0.4
    with pytest.raises(CalibrationMismatch, match="other reader weights.*calibrate-reader"):
        Calibrator.load(path, model_sha256="cd" * 32)
    data = json.loads(path.read_text())
    for key, value, message in (
        ("version", 99, "version 1"),
        ("format", "pickle", "not a qa-reader-calibrator"),
        ("features", ["margin"], "other features"),
        ("coef", [1.0], "damaged"),
        # Hand-edited or cut files: each the damaged-file message with the refit command, not a traceback.
        ("threshold", None, "damaged.*calibrate-reader"),
        ("threshold", float("nan"), "damaged.*calibrate-reader"),
        ("threshold", 1.5, "damaged"),
        ("intercept", "x", "damaged"),
        ("scale", [0.0] * len(data["scale"]), "damaged"),
        ("mean", [None] * len(data["mean"]), "damaged"),
    ):
        (tmp_path / "bad.json").write_text(json.dumps({**data, key: value}))
        with pytest.raises(CalibrationMismatch, match=message):
            Calibrator.load(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text(json.dumps({k: v for k, v in data.items() if k != "intercept"}))
    with pytest.raises(CalibrationMismatch, match="damaged"):
        Calibrator.load(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CalibrationMismatch, match="cannot be read"):
        Calibrator.load(tmp_path / "bad.json")


def test_holdout_split_is_stable_whole_articles_and_by_paragraph_for_one_article_files() -> None:
    rows = [QAExample(f"{t}-{i}", "q?", f"context {t} {i // 2}", ((0, "c"),), 0, f"Title {t}") for t in range(200) for i in range(4)]
    kept, held = split_holdout(rows, 10)
    assert split_holdout(rows, 10) == (kept, held) and len(kept) + len(held) == len(rows)
    assert 40 <= len(held) <= 140  # about 10 % of 200 articles x 4 questions
    assert {r.title for r in held}.isdisjoint({r.title for r in kept})  # whole articles
    assert split_holdout(rows, 0) == (rows, [])
    one = [QAExample(str(i), "q?", f"paragraph {i}", ((0, "p"),), 0, "QED-train") for i in range(400)]
    kept1, held1 = split_holdout(one, 10)
    assert 10 <= len(held1) <= 80  # by paragraph: not all or nothing


def _fake_calibrator(tmp: Path, checkpoint: Path) -> Calibrator:
    rows, labels = _synthetic(200)
    fitted = fit_logistic(rows, labels)
    cal = Calibrator(fitted.mean, fitted.scale, fitted.coef, fitted.intercept, 0.3, weights_fingerprint(checkpoint))
    cal.save(checkpoint / CALIBRATION_FILE)
    return cal


def test_reader_scores_with_its_calibrator_the_same_way_as_eval_reader(tmp_path: Path, tiny_qa_checkpoint: Path) -> None:
    from qa.reader import ReaderUnavailable, TransformersReader
    from qa.reader.squad_eval import predict

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_qa_checkpoint, ckpt)
    cal = _fake_calibrator(tmp_path, ckpt)
    reader = TransformersReader(str(ckpt), quantize="none")
    assert reader.calibrator() == cal and reader.threshold == 0.3  # the calibrator's threshold
    question, context = "When did the drone fly?", "The Kizilelma drone first flew in December 2022 near Istanbul."
    answer = reader.read(question, [_passage(context)])
    candidates, null = reader.candidates(question, [_passage(context)])
    expected = cal.probability(span_features(question, candidates, null, [_passage(context)]))
    assert answer.score == pytest.approx(expected)
    assert (answer.text is not None) == (expected >= 0.3)
    # eval-reader computes the same features for a lone paragraph: the same score.
    tok, model = reader.load()
    (pred,) = predict(model, tok, [QAExample("x", question, context, ())], calibrator=cal)
    assert pred.confidence == pytest.approx(expected, abs=1e-6)
    # A question too long for the window's overlap is cut as the reader cuts it, not refused.
    long_question = "When did the drone fly " + "and where " * 80 + "?"
    long_context = " ".join([context] * 30)
    (long_pred,) = predict(model, tok, [QAExample("y", long_question, long_context, ())], max_length=256, stride=96)
    assert long_pred.text == long_context[long_pred.start : long_pred.end]
    assert TransformersReader(str(ckpt), threshold=0.9).threshold == 0.9  # an explicit threshold wins
    # Other weights: the file is refused with the way out, not silently applied.
    other = tmp_path / "other"
    shutil.copytree(ckpt, other)
    data = json.loads((other / CALIBRATION_FILE).read_text())
    data["model_sha256"] = "0" * 64
    (other / CALIBRATION_FILE).write_text(json.dumps(data))
    with pytest.raises(ReaderUnavailable, match="other reader weights.*calibrate-reader"):
        TransformersReader(str(other)).warm_up()


def test_reader_without_calibrator_shows_the_raw_softmax(tmp_path: Path, tiny_qa_checkpoint: Path) -> None:
    from qa.reader import TransformersReader, span_confidence

    reader = TransformersReader(str(tiny_qa_checkpoint), quantize="none")
    assert reader.calibrator() is None and reader.threshold == 0.5
    candidates, null = reader.candidates("Who?", [_passage("Baykar builds drones in Istanbul.")])
    answer = reader.read("Who?", [_passage("Baykar builds drones in Istanbul.")])
    assert answer.score == pytest.approx(span_confidence(candidates[0].logit, null))


def _tiny_squad(path: Path) -> Path:
    """Six small articles in SQuAD format (written here, not evaluation data)."""
    facts = [
        ("Baykar", "Baykar is a Turkish drone maker founded in 1984 by Ozdemir Bayraktar. It builds the Kizilelma in Istanbul.", [("Who founded Baykar?", "Ozdemir Bayraktar"), ("When was Baykar founded?", "1984")]),
        ("Ankara", "Ankara is the capital of Turkey. It has about 5.8 million inhabitants and hosts the Grand National Assembly.", [("What is the capital of Turkey?", "Ankara"), ("How many people live in Ankara?", "about 5.8 million")]),
        ("Nile", "The Nile is a river in Africa about 6,650 km long. It flows north into the Mediterranean Sea.", [("How long is the Nile?", "about 6,650 km"), ("Where does the Nile flow into?", "the Mediterranean Sea")]),
        ("Curie", "Marie Curie won the Nobel Prize in Physics in 1903 with Pierre Curie and Henri Becquerel.", [("When did Marie Curie win the Nobel Prize in Physics?", "1903"), ("Who shared the 1903 prize with Marie Curie?", "Pierre Curie and Henri Becquerel")]),
        ("Tokyo", "Tokyo became the capital of Japan in 1868, when the emperor moved there from Kyoto.", [("When did Tokyo become the capital of Japan?", "1868"), ("Where did the emperor move from?", "Kyoto")]),
        ("Everest", "Mount Everest is 8,849 metres high. Tenzing Norgay and Edmund Hillary first climbed it in 1953.", [("How high is Mount Everest?", "8,849 metres"), ("Who first climbed Everest?", "Tenzing Norgay and Edmund Hillary")]),
    ]
    data = {"data": []}
    for title, context, qas in facts:
        rows = [{"id": f"{title}-{i}", "question": q, "answers": [{"text": a, "answer_start": context.index(a)}]} for i, (q, a) in enumerate(qas)]
        data["data"].append({"title": title, "paragraphs": [{"context": context, "qas": rows}]})
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(data, fh)
    return path


@pytest.mark.slow
def test_calibrate_reader_fits_checks_and_writes_a_file_the_reader_loads(tmp_path: Path, tiny_qa_checkpoint: Path) -> None:
    from qa.reader import TransformersReader
    from qa.tools.calibrate import calibrate_reader

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_qa_checkpoint, ckpt)
    squad = _tiny_squad(tmp_path / "tiny.json.gz")
    cases = tmp_path / "cases.jsonl"
    result = calibrate_reader([str(squad)], reader_model=str(ckpt), holdout_percent=100, per_kind=10, progress=False, cases_file=cases)
    assert {"threshold", "check", "fit", "coef", "check_raw_softmax"} <= set(result)
    # The collected cases are kept: a refit with the same settings reads them, not the reader.
    from qa.tools import calibrate

    lines = cases.read_text().splitlines()
    assert json.loads(lines[0])["key"]["collector"] == calibrate.COLLECTOR_VERSION and len(lines) == result["fit"]["cases"] + result["check"].get("cases", 0) + 1
    original = calibrate.collect_cases
    calibrate.collect_cases = lambda *a, **k: pytest.fail("cases were collected again")  # type: ignore[assignment]
    try:
        again = calibrate_reader([str(squad)], reader_model=str(ckpt), holdout_percent=100, per_kind=10, progress=False, cases_file=cases)
    finally:
        calibrate.collect_cases = original  # type: ignore[assignment]
    assert again["coef"] == result["coef"]  # deterministic: the same fit from the same cases
    assert calibrate.load_cases(cases, {"other": "key"}) is None  # other settings: collected afresh
    # Readings at other window lengths are other readings: not reused.
    key = json.loads(lines[0])["key"]
    assert key["windows"] == [TransformersReader(str(ckpt)).max_length, TransformersReader(str(ckpt)).stride]
    assert calibrate.load_cases(cases, {**key, "windows": [384, 128]}) is None
    # Each case keeps what the reader read: its features are recomputed from it on loading
    # (a new feature refits without reading again) and equal those computed when collected,
    # which equal what the reader computes when it answers the same question.
    stale = [json.loads(line) for line in lines[1:]]
    cases.write_text("\n".join([lines[0], *(json.dumps({**c, "features": {"stale": 1.0}}) for c in stale)]) + "\n")
    saved = calibrate.load_cases(cases, json.loads(lines[0])["key"])
    assert saved is not None and [c.features for c in saved] == [c["features"] for c in stale]
    lone = next(c for c in saved if c.kind == "lone")
    text = lone.reading["passages"][0]["text"]
    candidates, null = TransformersReader(str(ckpt)).candidates(lone.question, [_passage(text)])
    assert span_features(lone.question, candidates, null, [_passage(text)]) == lone.features
    assert result["fit"]["cases"] > 0 and 0.0 <= result["fit"]["ece_all"] <= 1.0
    assert result["fit"]["ece"] is None or 0.0 <= result["fit"]["ece"] <= 1.0  # over the answered: none may be
    assert TransformersReader(str(ckpt)).calibrator().info["unanswerable_share"] == config.CALIBRATION_UNANSWERABLE_SHARE
    kinds = set(result["fit"]["by_kind"]) | set(result["check"].get("by_kind", {}))
    assert {"answerable", "lone"} <= kinds
    cal = TransformersReader(str(ckpt)).calibrator()
    assert cal is not None and cal.threshold == result["threshold"] and cal.model_sha256 == weights_fingerprint(ckpt)
    # A regression for lone paragraphs when their cases have both outcomes (else one for all).
    lone_cases = [json.loads(line) for line in lines[1:] if json.loads(line)["kind"].startswith("lone") and json.loads(line)["part"] == "fit"]
    retrieved_cases = [json.loads(line) for line in lines[1:] if not json.loads(line)["kind"].startswith("lone") and json.loads(line)["part"] == "fit"]
    both = all(len({c["right"] for c in part}) == 2 for part in (lone_cases, retrieved_cases))
    assert (cal.lone is not None) == both == (result["coef_lone"] is not None)
    # The lone cases' sweep is reported (one threshold serves both settings).
    if cal.lone is not None:
        assert cal.lone.threshold == cal.threshold and [r["threshold"] for r in cal.info["lone_sweep"]] == [float(t) for t in calibrate.THRESHOLDS]
    # With question sets: asked through an index of their documents, scored, and the threshold
    # chosen by the mean rule; their cases are kept beside the others and reused.
    docs = tmp_path / "set_docs"
    docs.mkdir()
    (docs / "baykar.txt").write_text("Baykar is a Turkish drone maker founded in 1984 by Ozdemir Bayraktar.\n")
    (docs / "nile.txt").write_text("The Nile is a river in Africa about 6,650 km long.\n")
    questions = tmp_path / "set.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in (
        {"question": "Who founded Baykar?", "answers": ["Ozdemir Bayraktar"]},
        {"question": "How long is the Nile?", "answers": ["about 6,650 km"]},
        {"question": "Who is the prime minister of Japan?", "answers": []},
    )))
    sets = {"tiny": (docs, questions)}
    with_sets = calibrate_reader([str(squad)], reader_model=str(ckpt), holdout_percent=100, per_kind=10, progress=False, cases_file=cases, sets=sets)
    assert with_sets["sets"]["questions"] == 3 and with_sets["sets"]["sets"]["tiny"]["questions"] == 3
    assert 0 <= with_sets["sets"]["right"] <= 3 and with_sets["threshold"] in [float(t) for t in calibrate.THRESHOLDS]
    rule = TransformersReader(str(ckpt)).calibrator().info["threshold_choice"]
    assert "question sets through ask()" in rule["rule"] and {"sets_accuracy", "mean"} <= set(rule["sweep"][0])
    set_file = cases.with_name(cases.stem + ".sets" + cases.suffix)
    assert len(set_file.read_text().splitlines()) == 4
    original_sets = calibrate.collect_set_cases
    calibrate.collect_set_cases = lambda *a, **k: pytest.fail("set cases were collected again")  # type: ignore[assignment]
    try:
        assert calibrate_reader([str(squad)], reader_model=str(ckpt), holdout_percent=100, per_kind=10, progress=False, cases_file=cases, sets=sets)["sets"] == with_sets["sets"]
    finally:
        calibrate.collect_set_cases = original_sets  # type: ignore[assignment]
    # Held out by nobody: with a 0 % hold-out there is nothing to fit on, and it says so.
    with pytest.raises(ValueError, match="no held-out questions"):
        calibrate_reader([str(squad)], reader_model=str(ckpt), holdout_percent=0, per_kind=10, progress=False)


@pytest.mark.parametrize("texts", [[], [""], ["   \n\t "], ["", "  "]])
def test_nothing_to_read_is_i_dont_know_with_score_zero(tiny_qa_checkpoint: Path, texts: list[str]) -> None:
    """No passages (an empty index, a retriever that found nothing) or only blank ones: the
    reader abstains with score 0 and no guess, in every mode's code path, without an error."""
    from qa.reader import TransformersReader

    reader = TransformersReader(str(tiny_qa_checkpoint), quantize="none")
    answer = reader.read("Who founded Baykar?", [_passage(t, doc=f"d{n}") for n, t in enumerate(texts)])
    assert answer.text is None and answer.score == 0.0 and answer.guess is None and answer.citations == []
