"""Evaluation metrics: SQuAD-normalised exact match and F1, abstention, retrieval recall."""

from __future__ import annotations

import re
import string
from collections import Counter

_PUNCT = set(string.punctuation) | {"’", "‘", "“", "”", "—", "–", "…"}


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, drop punctuation and articles, squeeze whitespace."""
    text = "".join(c for c in text.lower() if c not in _PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str | None, answers: list[str]) -> float:
    """1.0 when the normalised prediction equals a normalised accepted answer.

    With no accepted answers (unanswerable), 1.0 exactly when the prediction is ``None``.
    """
    if not answers:
        return 1.0 if prediction is None else 0.0
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    return 1.0 if any(pred == normalize_answer(a) for a in answers) else 0.0


def f1_score(prediction: str | None, answers: list[str]) -> float:
    """Best token-overlap F1 against the accepted answers (SQuAD definition)."""
    if not answers or prediction is None:
        return exact_match(prediction, answers)
    pred_tokens = normalize_answer(prediction).split()
    best = 0.0
    for answer in answers:
        gold = normalize_answer(answer).split()
        common = Counter(pred_tokens) & Counter(gold)
        same = sum(common.values())
        if same == 0:
            continue
        precision, recall = same / len(pred_tokens), same / len(gold)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best
