"""Fitting the offline reader's weights: candidate ranking and answerability.

The offline reader ranks candidate spans with a linear model over a dozen evidence
features, then decides whether to answer at all with a logistic model over the top
candidate and question-level evidence. This module refits both on labelled question sets
(JSON Lines ``{"question", "answers": [...]}``, empty answers = unanswerable; see
:data:`TRAINING_SETS`) so the constants in ``qa/offline_reader.py`` are reproducible:
``python -m qa.calibration``.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa import config
from qa.evaluation import load_questions, normalize_answer

#: The labelled sets the shipped weights are fitted on: (questions, documents folder).
TRAINING_SETS = (
    ("notebooks/data/seeds_dev.jsonl", "seeds"),
    ("notebooks/data/heldout.jsonl", "notebooks/data/heldout_docs"),
    # 480 questions over 30 documents in five domains, written for fitting only.
    *((f"notebooks/data/train/{domain}/questions.jsonl", f"notebooks/data/train/{domain}/docs")
      for domain in ("business", "culture", "places", "science", "workplace")),
)


@dataclass
class Labelled:
    """One question's candidates, which of them are right, and its question-level evidence."""

    candidates: list
    correct: np.ndarray
    evidence: np.ndarray
    answerable: bool


def label_candidates(questions: list[dict], index_dir: str | Path, top_k: int = config.DEFAULT_TOP_K) -> list[Labelled]:
    """Run the offline reader's candidate stage on each question and label the candidates."""
    from qa.offline_reader import OfflineReader
    from qa.pipeline import load_index
    from qa.retrieval import DenseRetriever

    reader = OfflineReader()
    retriever = DenseRetriever(load_index(index_dir))
    out = []
    for row in questions:
        passages = retriever.retrieve(row["question"], top_k)
        accepted = {normalize_answer(a) for a in row["answers"]}
        cands, evidence = reader.analyse(row["question"], passages)
        correct = np.array([normalize_answer(passages[c.passage].text[c.start : c.end]) in accepted for c in cands], dtype=bool)
        out.append(Labelled(cands, correct, evidence, bool(row["answers"])))
    return out


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


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1.0, steps: int = 5000, lr: float = 0.1) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (features standardised internally)."""
    mu, sd = x.mean(0), x.std(0)
    sd[sd == 0] = 1.0
    z = (x - mu) / sd
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        w -= lr * (z.T @ (p - y) / len(y) + l2 * w / len(y))
        b -= lr * float((p - y).mean())
    return w / sd, b - float((w / sd) @ mu)


def fit(labelled: list[Labelled], *, l2: float = 0.01) -> tuple[np.ndarray, np.ndarray, float]:
    """Ranker weights, then answerability weights and bias, on ``labelled`` questions."""
    from qa.offline_reader import answerability_features

    rows = [(lab, i) for i, lab in enumerate(labelled) if lab.candidates]
    x = np.concatenate([np.stack([c.features for c in lab.candidates]) for lab, _ in rows])
    y = np.concatenate([lab.correct.astype(float) for lab, _ in rows])
    q = np.concatenate([np.full(len(lab.candidates), i) for lab, i in rows])
    w = fit_ranker(x, y, q, l2=l2)
    feats, labels = [], []
    for lab, _ in rows:
        for c in lab.candidates:
            c.score = float(c.features @ w)
        top = int(np.argmax([c.score for c in lab.candidates]))
        feats.append(answerability_features(lab.candidates, lab.evidence))
        labels.append(1.0 if lab.correct[top] else 0.0)
    a, b = fit_logistic(np.stack(feats), np.array(labels))
    return w, a, b


def main() -> None:
    """Index each training set, fit both models, print the constants for offline_reader.py."""
    from qa.indexing import index_folder

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--l2", type=float, default=0.01, help="ranker L2 penalty")
    args = parser.parse_args()
    labelled: list[Labelled] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, (questions, docs) in enumerate(TRAINING_SETS):
            rows = load_questions(config.PROJECT_ROOT / questions)
            index_dir = Path(tmp) / f"set{n}"
            index_folder(config.PROJECT_ROOT / docs, index_dir)
            labelled.extend(label_candidates(rows, index_dir))
    w, a, b = fit(labelled, l2=args.l2)
    print("_WEIGHTS =", np.round(w, 3).tolist())
    print("_ANSWERABILITY =", np.round(a, 3).tolist())
    print("_ANSWERABILITY_BIAS =", round(float(b), 3))


if __name__ == "__main__":
    main()
