"""The calibrator's fitting tool: how much each collected case counts."""

from __future__ import annotations

import numpy as np
import pytest

from qa.tools.calibrate import Case, case_weights, choose_threshold


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
