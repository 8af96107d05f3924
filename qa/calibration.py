"""Fitting the offline reader's candidate-scoring weights and abstention threshold.

The offline reader scores each candidate span with a logistic model over a dozen
features (evidence, type fit, proximity ...). This module refits those weights on a
labelled question set (JSON Lines ``{"question", "answers": [...]}``) so the numbers in
``qa/offline_reader.py`` are reproducible: ``python -m qa.calibration DEV.jsonl --index DIR``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from qa import config
from qa.evaluation import normalize_answer


def candidate_table(questions: list[dict], index_dir: str | Path, top_k: int = config.DEFAULT_TOP_K) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels (candidate text matches an accepted answer) and question ids."""
    from qa.offline_reader import OfflineReader
    from qa.pipeline import load_index
    from qa.retrieval import DenseRetriever

    reader = OfflineReader()
    index = load_index(index_dir)
    retriever = DenseRetriever(index)
    xs, ys, qs = [], [], []
    for q_id, row in enumerate(questions):
        passages = retriever.retrieve(row["question"], top_k)
        accepted = {normalize_answer(a) for a in row["answers"]}
        for c in reader.candidates(row["question"], passages):
            text = passages[c.passage].text[c.start : c.end]
            xs.append(c.features)
            ys.append(1.0 if normalize_answer(text) in accepted else 0.0)
            qs.append(q_id)
    return np.array(xs), np.array(ys), np.array(qs)


def fit_ranker(x: np.ndarray, y: np.ndarray, q: np.ndarray, *, l2: float = 0.01, steps: int = 1500, lr: float = 0.5) -> np.ndarray:
    """Listwise (softmax over each question's candidates) linear ranker by gradient descent.

    Only questions with at least one correct candidate contribute; the loss is the
    negative log of the probability mass on correct candidates.
    """
    w = np.zeros(x.shape[1])
    groups = [np.flatnonzero(q == i) for i in np.unique(q) if y[q == i].sum() > 0]
    for _ in range(steps):
        grad = np.zeros_like(w)
        for idx in groups:
            s = x[idx] @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            hit = p * y[idx]
            grad += x[idx].T @ (p - hit / hit.sum())
        w -= lr * (grad / max(len(groups), 1) + l2 * w)
    return w


def best_per_question(scores: np.ndarray, y: np.ndarray, q: np.ndarray, n_questions: int) -> tuple[np.ndarray, np.ndarray]:
    """For each question: the top candidate's score (-inf if none) and whether it is correct."""
    best = np.full(n_questions, -np.inf)
    correct = np.zeros(n_questions, dtype=bool)
    for i in range(n_questions):
        idx = np.flatnonzero(q == i)
        if idx.size:
            j = idx[np.argmax(scores[idx])]
            best[i], correct[i] = scores[j], y[j] > 0
    return best, correct


def fit_confidence(best: np.ndarray, correct: np.ndarray, *, steps: int = 5000, lr: float = 0.1) -> tuple[float, float]:
    """Platt scaling: ``P(top answer is right) = sigmoid(a * score + c)`` by logistic regression."""
    finite = np.isfinite(best)
    x, y = best[finite], correct[finite].astype(float)
    mu, sd = x.mean(), x.std() or 1.0
    z = (x - mu) / sd
    a = c = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(a * z + c)))
        a -= lr * ((p - y) * z).mean()
        c -= lr * (p - y).mean()
    return a / sd, c - a * mu / sd


def main() -> None:
    """Print fitted weights for ``qa/offline_reader.py``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("questions", type=Path)
    parser.add_argument("--index", type=Path, required=True)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.questions.read_text(encoding="utf-8").splitlines() if line.strip()]
    x, y, q = candidate_table(rows, args.index)
    w = fit_ranker(x, y, q)
    best, correct = best_per_question(x @ w, y, q, len(rows))
    a, c = fit_confidence(best, correct)
    print("_WEIGHTS =", np.round(w, 3).tolist())
    print("_CONFIDENCE = ", (round(a, 3), round(c, 3)))


if __name__ == "__main__":
    main()
