"""The calibrator's fitting tool: how much each collected case counts, how the thresholds are
chosen, and how the question sets are scored."""

from __future__ import annotations

import numpy as np
import pytest

from qa.reader.calibration import FEATURES, Calibrator
from qa.tools.calibrate import (
    THRESHOLDS,
    Case,
    case_weights,
    choose_threshold,
    choose_with_sets,
    negated_question,
    plan_cases,
    sets_report,
    sets_sweep,
)


def _case(kind: str, answerable: bool) -> Case:
    return Case(question="q", kind=kind, article="a", features={}, right=False, answerable=answerable)


def test_retrieved_cases_are_weighted_to_the_unanswerable_share_and_lone_cases_are_not() -> None:
    cases = [_case("answerable", True)] * 6 + [_case("absent", False)] * 3 + [_case("swapped", False)] * 3
    cases += [_case("lone", True)] * 5 + [_case("lone_cut", False)] * 5
    w = case_weights(cases, 0.2)
    retrieved, lone = w[:12], w[12:]
    unanswerable = np.array([not c.answerable for c in cases[:12]])
    assert retrieved.sum() == pytest.approx(12)  # the retrieved cases keep their total weight
    assert retrieved[unanswerable].sum() / retrieved.sum() == pytest.approx(0.2)
    assert (lone == 1.0).all()
    assert (case_weights(cases, None) == 1.0).all()
    # Only one side in the retrieved cases: no mix to set, every case counts 1.
    assert (case_weights([_case("answerable", True)] * 3, 0.2) == 1.0).all()
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            case_weights(cases, bad)


def test_threshold_is_chosen_on_weighted_accuracy() -> None:
    # Two wrong answers to unanswerable questions at 0.3 and right ones at 0.6: abstaining
    # between them is right every time (ties go to the threshold nearest 0.5).
    p = np.array([0.3, 0.3, 0.6, 0.6])
    right = np.array([False, False, True, True])
    answerable = np.array([False, False, True, True])
    best, sweep = choose_threshold(p, right, answerable)
    assert 0.3 < best <= 0.6 and max(r["accuracy"] for r in sweep) == 1.0
    # A right answer at 0.25 too: counted once each, abstaining above 0.3 is best (3 of 4);
    # when the unanswerable questions weigh little, answering everything is.
    p2 = np.array([0.3, 0.3, 0.6, 0.25])
    right2 = np.array([False, False, True, True])
    answerable2 = np.array([False, False, True, True])
    low, _ = choose_threshold(p2, right2, answerable2, np.array([0.1, 0.1, 1.0, 1.0]))
    even, _ = choose_threshold(p2, right2, answerable2)
    assert low <= 0.25 < even


def _margin_calibrator() -> Calibrator:
    """P(correct) = sigmoid(margin): the other features weigh nothing."""
    coef = tuple(1.0 if name == "margin" else 0.0 for name in FEATURES)
    return Calibrator((0.0,) * len(FEATURES), (1.0,) * len(FEATURES), coef, 0.0, 0.5)


def _set_case(name: str, answers: list[str], span: str | None, margin: float | None) -> Case:
    features = {} if margin is None else {**{f: 0.0 for f in FEATURES}, "margin": margin, "has_retrieval": 1.0}
    right = span is not None and bool(answers) and span == answers[0]
    return Case(question="q", kind=f"set:{name}", article=name, features=features, right=right, answerable=bool(answers), part="sets", answers=answers, span=span)


def test_question_sets_are_scored_by_exact_match_or_a_right_abstention() -> None:
    cases = [
        _set_case("a", ["Paris"], "Paris", 2.0),  # p 0.88, right
        _set_case("a", ["1984"], "1985", 1.0),  # p 0.73, wrong
        _set_case("b", [], "Ankara", -1.0),  # p 0.27, a span for an unanswerable question
        _set_case("b", [], None, None),  # no span decoded: never answered
    ]
    cal = _margin_calibrator()
    assert sets_sweep(cases, cal, np.array([0.05, 0.5, 0.8, 0.9])) == [0.5, 0.75, 0.75, 0.5]
    report = sets_report(cases, cal, 0.5)
    assert (report["questions"], report["right"], report["answered"]) == (4, 3, 2)
    assert report["accuracy_answered"] == 0.5 and report["sets"]["a"] == {"questions": 2, "right": 1, "answered": 2, "answerable_em": 0.5}
    assert report["sets"]["b"] == {"questions": 2, "right": 2, "answered": 0, "answerable_em": None}
    # ECE over the two answered: |0.88 - 1| and |0.73 - 0| in separate bins, averaged.
    assert report["ece"] == pytest.approx(((1 - 0.8808) + 0.7311) / 2, abs=1e-3)


def test_threshold_with_sets_is_the_best_mean_and_near_ties_go_toward_one_half() -> None:
    retrieved = [{"threshold": float(t), "accuracy": 0.6, "answered": 0.5} for t in THRESHOLDS]
    sets = [0.6] * len(THRESHOLDS)
    sets[2] = 0.7  # 0.15: the best mean, clearly
    best, sweep = choose_with_sets(retrieved, sets)
    assert best == 0.15 and sweep[2]["mean"] == 0.65 and sweep[2]["sets_accuracy"] == 0.7
    sets[8] = 0.6996  # 0.45: within TIE of the best and nearer 0.5 -> chosen
    assert choose_with_sets(retrieved, sets)[0] == 0.45
    sets[8] = 0.6985  # no longer within TIE
    assert choose_with_sets(retrieved, sets)[0] == 0.15


def test_negated_question_turns_the_first_auxiliary_after_the_wh_word_negative() -> None:
    context = "The Normans conquered England in 1066. Their duke was William."
    assert negated_question("What did the Normans conquer in 1066?", context) == "What didn't the Normans conquer in 1066?"
    assert negated_question("In what year was William duke?", context) == "In what year wasn't William duke?"
    assert negated_question("How many ships were built?", context) == "How many ships weren't built?"
    assert negated_question("Who Was the duke?", context) == "Who Wasn't the duke?"  # the auxiliary's case is kept
    # No auxiliary after a wh-word, or a negation already there (in either text): nothing.
    assert negated_question("Name the duke.", context) is None
    assert negated_question("Who was not the duke?", context) is None
    assert negated_question("Who was the duke?", context + " He never lost a battle.") is None
    assert negated_question("Who was the duke?", context + " They didn't stay.") is None


def test_negated_cases_are_drawn_last_so_the_earlier_kinds_stay_as_they_were() -> None:
    from qa.reader.squad import QAExample

    examples = [
        QAExample(f"q{a}-{i}", f"What was the {i}th name of {t}?", f"{t} had many names in 1900, the {i}th was Name{i}.", ((0, t),), a, t)
        for a, t in enumerate(f"Article{n}" for n in range(12))
        for i in range(6)
    ]
    jobs, indexed = plan_cases(examples, per_kind=8)
    again, _ = plan_cases(examples, per_kind=8)
    assert [(k, e.id, e.question) for k, e, _ in jobs] == [(k, e.id, e.question) for k, e, _ in again]  # deterministic
    kinds = [k for k, _, _ in jobs]
    negated = [e for k, e, _ in jobs if k == "lone_negated"]
    assert negated and kinds[-len(negated) :] == ["lone_negated"] * len(negated) and len(negated) == 8 // 4
    assert all("wasn't" in e.question and not e.answers and e.title in indexed for e in negated)
    # Nothing is drawn after them, so the cases before them are collector 4's.
    assert all(k != "lone_negated" for k in kinds[: -len(negated)])
