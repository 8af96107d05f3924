"""Confidence calibration: the chance that the reader's best span is right.

The reader's raw score, a two-way softmax of the best span's logit against the "no answer"
logit, says which of the two the model prefers, not how often it is right: release 3 put
wrong answers at 0.99 and was right on 0.41-0.49 of every bin below 0.9. A calibrator maps
what the pipeline already knows about an answer -- span and null logits, the margin to the
runner-up span, whether other passages agree, where the passage ranked and how retrieval
scored it, the answer's length and shape against the question's wh-word, how much of the
question the passage covers -- to P(correct) with a logistic regression.

* :func:`span_features` computes the features, the one function both answering
  (:class:`qa.reader.TransformersReader`) and fitting (:mod:`qa.tools.calibrate`) use;
* :class:`Calibrator` is the fitted model: a versioned JSON file (no pickle) next to the
  weights it was fitted for (``calibration.json``), refused when the weights differ. It holds
  two regressions: one for answers read from retrieved passages (``ask()``), one for a
  paragraph read alone (``eval-reader``, SQuAD's setting), whose unanswerable questions are
  of other kinds and mix;
* :func:`fit_logistic` fits it deterministically (L-BFGS-B with bounds), with the weights
  of the span-vs-null margin kept non-negative so the probability can only rise with it.

"Right" means token F1 >= 0.5 against a gold answer after SQuAD normalisation; any span for
a question the documents cannot answer is wrong.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from qa import config
from qa.answer import Passage
from qa.reader.decoding import span_confidence
from qa.reader.metrics import normalize_answer

#: A shown span is "right" at this token F1 (SQuAD normalisation) with a gold answer: the label
#: the calibrator is fitted to, and what ECE and coverage are measured against.
RIGHT_F1 = 0.5

#: File name of a checkpoint's calibrator, beside its ``model.safetensors``.
CALIBRATION_FILE = "calibration.json"
#: Format tag and version of that file; loading refuses any other.
CALIBRATION_FORMAT = "qa-reader-calibrator"
#: 2: a second regression for a paragraph read alone (``"lone"``); files of version 1 (one
#: regression for both) still load.
CALIBRATION_VERSION = 2
_READABLE_VERSIONS = (1, 2)

#: The features, in the order of the fitted coefficients.
FEATURES: tuple[str, ...] = (
    "margin",  # best span logit - null logit (clipped)
    "softmax",  # the raw two-way softmax of the margin (release 3's score)
    "best_logit",  # the best span's start + end logit
    "runner_up_gap",  # best logit - best logit of a span that does not overlap it
    "agreement",  # share of the other passages whose best span says the same
    "inverse_rank",  # 1 / retrieval rank of the answer's passage
    "has_retrieval",  # 1 when the passages carry retrieval scores (ask()), 0 for a lone paragraph
    "rrf",  # fused score of the answer's passage x RRF_K (hybrid retrieval)
    "dense",  # cosine of the answer's passage to the question
    "bm25_share",  # BM25 of the answer's passage / the best BM25 among the passages
    "answer_words",  # log(1 + words in the answer)
    "wants_number",  # "how many/much ...", "what year/percentage ..."
    "number_ok",  # ... and the answer holds a number
    "wants_date",  # "when ...", "what year/date/century ..."
    "date_ok",  # ... and the answer holds a year, month or date
    "wants_person",  # "who/whom/whose ..."
    "person_ok",  # ... and the answer holds a capitalised word
    "question_overlap",  # share of the question's content words in the answer's passage
    "sentence_overlap",  # share of them in the answer's sentence
    "answer_in_question",  # share of the answer's words already in the question
)
#: Features whose coefficient must be >= 0: the probability never falls as the margin rises,
#: and an answer holding the kind of thing asked for (a number for "how many", a year or month
#: for "when", a name for "who") is never given less chance than one without it. A prior, not a
#: fit: with few typed cases the free fit gave ``number_ok`` a negative weight, so "sixth" as an
#: answer to "how many ..." scored above a number would.
MONOTONE: tuple[str, ...] = ("margin", "softmax", "number_ok", "date_ok", "person_ok")


@dataclass(frozen=True)
class Candidate:
    """A decoded span: ``passages[passage].text[start:end]`` with its start + end logit."""

    passage: int
    start: int
    end: int
    logit: float


# --------------------------------------------------------------------------- features

_NUMBER_Q = re.compile(r"\b(how (many|much|long|old|far|big|large|tall|high|often)|what (percentage|percent|number|amount|proportion)|how many)\b")
_DATE_Q = re.compile(r"^(when\b|in what year|what year|which year|what date|on what date|what century|what decade|in which year|what day|what time)|\bwhen\b|\bwhat year\b")
_PERSON_Q = re.compile(r"^(who|whom|whose)\b|\bwho\b")
_NUMBER_WORDS = frozenset("one two three four five six seven eight nine ten eleven twelve dozen hundred thousand million billion half first second third".split())
_MONTHS = frozenset(
    "january february march april may june july august september october november december jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
_YEARISH = re.compile(r"\b(1[0-9]{3}|20[0-9]{2}|[0-9]{1,2}(st|nd|rd|th)?\s+century|[0-9]{2,4}s)\b", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _content(text: str) -> set[str]:
    from qa.retrieval.bm25 import tokenize

    return set(tokenize(text))


def _sentence_around(text: str, start: int, end: int) -> str:
    """The sentence(s) of ``text`` that hold characters ``start:end``."""
    lo = 0
    for m in _SENTENCE_END.finditer(text, 0, start):
        lo = m.end()
    m = _SENTENCE_END.search(text, end)
    return text[lo : m.start() if m else len(text)]


def _same_answer(a: str, b: str) -> bool:
    """The normalised texts are equal, or one holds the other (a name and its surname)."""
    x, y = normalize_answer(a), normalize_answer(b)
    return bool(x) and bool(y) and (x == y or f" {x} " in f" {y} " or f" {y} " in f" {x} ")


def span_features(question: str, candidates: Sequence[Candidate], null_logit: float, passages: Sequence[Passage]) -> dict[str, float]:
    """The calibrator's inputs for ``candidates[0]`` (the best span) as a question's answer.

    ``candidates`` are the decoded spans, best first (the runner-up and the other passages'
    best spans come from them); ``passages`` are what the reader read, in retrieval order.
    """
    best = candidates[0]
    passage = passages[best.passage]
    answer = passage.text[best.start : best.end]
    margin = float(np.clip(best.logit - null_logit, -15.0, 15.0))
    runner = next(
        (c.logit for c in candidates[1:] if c.passage != best.passage or c.end <= best.start or c.start >= best.end),
        best.logit - 15.0,
    )
    # Each other passage's best span: does it say what the answer says?
    others: dict[int, str] = {}
    for c in candidates[1:]:
        if c.passage != best.passage and c.passage not in others:
            others[c.passage] = passages[c.passage].text[c.start : c.end]
    n_other = len(passages) - 1
    agree = sum(_same_answer(answer, t) for t in others.values()) / n_other if n_other > 0 else 0.0
    comp = passage.components or {}
    bm25_best = max((p.components or {}).get("bm25", 0.0) for p in passages)
    q = " ".join(question.lower().split())
    words = _words(answer)
    wants_number = bool(_NUMBER_Q.search(q))
    wants_date = not wants_number and bool(_DATE_Q.search(q))
    wants_person = not wants_number and not wants_date and bool(_PERSON_Q.search(q))
    has_number = any(ch.isdigit() for ch in answer) or any(w in _NUMBER_WORDS for w in words)
    has_date = bool(_YEARISH.search(answer)) or any(w in _MONTHS for w in words)
    has_name = any(t[:1].isupper() for t in answer.split())
    q_content = _content(question)
    overlap = len(q_content & _content(passage.text)) / len(q_content) if q_content else 0.0
    sentence = _sentence_around(passage.text, best.start, best.end)
    s_overlap = len(q_content & _content(sentence)) / len(q_content) if q_content else 0.0
    a_content = _content(answer)
    in_question = len(a_content & q_content) / len(a_content) if a_content else 0.0
    return {
        "margin": margin,
        "softmax": 1.0 / (1.0 + math.exp(-margin)),
        "best_logit": float(np.clip(best.logit, -20.0, 40.0)),
        "runner_up_gap": float(np.clip(best.logit - runner, 0.0, 15.0)),
        "agreement": float(agree),
        "inverse_rank": 1.0 / (best.passage + 1),
        "has_retrieval": 1.0 if comp else 0.0,
        "rrf": float(comp.get("rrf", 0.0)) * config.RRF_K,
        "dense": float(comp.get("dense", 0.0)),
        "bm25_share": float(comp.get("bm25", 0.0)) / bm25_best if bm25_best > 0 else 0.0,
        "answer_words": math.log1p(len(words)),
        "wants_number": float(wants_number),
        "number_ok": float(wants_number and has_number),
        "wants_date": float(wants_date),
        "date_ok": float(wants_date and has_date),
        "wants_person": float(wants_person),
        "person_ok": float(wants_person and has_name),
        "question_overlap": overlap,
        "sentence_overlap": s_overlap,
        "answer_in_question": in_question,
    }


def answer_score(
    calibrator: "Calibrator | None", question: str, candidates: Sequence[Candidate], null_logit: float, passages: Sequence[Passage]
) -> float:
    """The score shown for ``candidates[0]``: P(correct) from ``calibrator``, or without one the
    raw two-way softmax of best span vs "no answer". What the reader and eval-reader both show."""
    if calibrator is None:
        return span_confidence(candidates[0].logit, null_logit)
    return calibrator.probability(span_features(question, candidates, null_logit, passages))


# --------------------------------------------------------------------------- the model


def weights_fingerprint(checkpoint: str | Path) -> str:
    """SHA-256 of a checkpoint's ``model.safetensors``: what a calibrator was fitted for.

    Computed once per file version (path, inode, size, modification and change times): a
    reader's start asks for it twice, for its onnx-q8 build's cache key and for its calibrator,
    and hashing 45 MB costs about 0.1 s of a 0.9 s cold start. Weights rewritten in place get
    new times, so they are hashed again."""
    path = (Path(checkpoint) / "model.safetensors").resolve()
    stat = path.stat()
    key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    with _FINGERPRINTS_LOCK:
        if key in _FINGERPRINTS:
            return _FINGERPRINTS[key]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    with _FINGERPRINTS_LOCK:
        _FINGERPRINTS[key] = digest.hexdigest()
    return _FINGERPRINTS[key]


_FINGERPRINTS: dict[tuple[str, int, int, int, int], str] = {}
_FINGERPRINTS_LOCK = threading.Lock()


class CalibrationMismatch(ValueError):
    """A calibrator file that does not belong to these weights or this code."""


@dataclass(frozen=True)
class Calibrator:
    """Logistic regression over standardised :data:`FEATURES`: P(the shown span is right)."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    #: "I don't know" below this probability (chosen on training hold-outs, see the file).
    threshold: float
    model_sha256: str = ""
    #: How it was fitted and checked (files, counts, the threshold sweep, figures); not compared.
    info: dict[str, Any] = field(default_factory=dict, compare=False)
    #: The regression for a paragraph read alone (no retrieval scores: ``has_retrieval`` 0),
    #: fitted on such cases only; ``None``: this one serves both.
    lone: Calibrator | None = None

    def probability(self, features: dict[str, float]) -> float:
        """P(correct) for one answer's features (a lone paragraph's by :attr:`lone`)."""
        if self.lone is not None and features["has_retrieval"] == 0.0:
            return self.lone.probability(features)
        x = (np.array([features[name] for name in FEATURES]) - np.array(self.mean)) / np.array(self.scale)
        z = float(x @ np.array(self.coef) + self.intercept)
        return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))

    def to_json(self) -> dict[str, Any]:
        """The file's content (see :meth:`load`)."""
        return {
            "format": CALIBRATION_FORMAT,
            "version": CALIBRATION_VERSION,
            "model_sha256": self.model_sha256,
            "features": list(FEATURES),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "threshold": self.threshold,
            "lone": None if self.lone is None else {k: getattr(self.lone, k) for k in ("mean", "scale", "coef", "intercept")},
            "info": self.info,
        }

    def save(self, path: str | Path) -> None:
        """Write the file atomically (temporary file, then rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, *, model_sha256: str | None = None) -> "Calibrator":
        """Read a calibrator file; with ``model_sha256``, check it was fitted for those weights.

        Raises:
            CalibrationMismatch: another format or version, other features, or other weights
                (the message says how to refit).
        """
        path = Path(path)
        refit = f"refit it with `python -m qa calibrate-reader --reader-model {path.parent}`, or delete {path} to show the uncalibrated score"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CalibrationMismatch(f"calibrator {path} cannot be read ({exc}); {refit}") from exc
        if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT or data.get("version") not in _READABLE_VERSIONS:
            raise CalibrationMismatch(
                f"calibrator {path} is not a {CALIBRATION_FORMAT} file of version {' or '.join(map(str, _READABLE_VERSIONS))}; {refit}"
            )
        if data.get("features") != list(FEATURES):
            raise CalibrationMismatch(f"calibrator {path} was fitted on other features than this version computes; {refit}")
        if model_sha256 is not None and data.get("model_sha256") != model_sha256:
            raise CalibrationMismatch(
                f"calibrator {path} was fitted for other reader weights (sha256 {str(data.get('model_sha256'))[:12]}…, "
                f"these are {model_sha256[:12]}…); {refit}"
            )
        n = len(FEATURES)
        lone = data.get("lone")
        parts = [data] if lone is None else [data, lone]
        if not all(isinstance(part, dict) for part in parts) or any(len(part.get(k) or ()) != n for part in parts for k in ("mean", "scale", "coef")):
            raise CalibrationMismatch(f"calibrator {path} is damaged (expected {n} values per field); {refit}")

        def regression(part: dict[str, Any], **rest: Any) -> Calibrator:
            made = cls(
                mean=tuple(float(v) for v in part["mean"]),
                scale=tuple(float(v) for v in part["scale"]),
                coef=tuple(float(v) for v in part["coef"]),
                intercept=float(part["intercept"]),
                threshold=float(data["threshold"]),
                **rest,
            )
            # JSON admits NaN: a NaN threshold would show every span as an answer, a NaN or zero
            # scale would make every score NaN.
            values = (*made.mean, *made.scale, *made.coef, made.intercept)
            if not all(math.isfinite(v) for v in values) or 0.0 in made.scale or not 0.0 <= made.threshold <= 1.0:
                raise ValueError("a value is not finite, a scale is 0, or the threshold is outside 0-1")
            return made

        try:
            return regression(
                data,
                model_sha256=str(data.get("model_sha256", "")),
                info=data.get("info") or {},
                lone=None if lone is None else regression(lone),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationMismatch(f"calibrator {path} is damaged ({type(exc).__name__}: {exc}); {refit}") from None


def fit_logistic(
    rows: Sequence[dict[str, float]],
    labels: Sequence[bool],
    *,
    weights: Sequence[float] | None = None,
    l2: float = 1.0,
    threshold: float = 0.5,
) -> Calibrator:
    """A :class:`Calibrator` fitted to ``rows`` (feature dicts) and ``labels`` (right/wrong).

    L2-penalised log loss minimised by L-BFGS-B from zeros: deterministic for the same data.
    ``weights``: how much each row counts (a row of weight 2 counts as two copies of it, in
    the standardisation, the loss and the penalty's scale). The :data:`MONOTONE` coefficients
    are bounded below by 0.
    """
    from scipy.optimize import minimize

    if len(rows) != len(labels) or not rows:
        raise ValueError(f"need as many labels as rows and at least one row (got {len(rows)} rows, {len(labels)} labels)")
    X = np.array([[r[name] for name in FEATURES] for r in rows], dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    w_rows = row_weights(weights, len(rows))
    n = float(w_rows.sum())  # the weighted count: a row of weight 2 is two rows everywhere below
    mean = np.average(X, axis=0, weights=w_rows)
    scale = np.sqrt(np.average((X - mean) ** 2, axis=0, weights=w_rows))
    scale[scale < 1e-9] = 1.0  # a constant feature (e.g. no retrieval scores) gets weight 0 anyway
    Z = (X - mean) / scale
    d = Z.shape[1]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = Z @ w[:d] + w[d]
        # log(1 + e^z) - y z, computed stably.
        value = np.logaddexp(0.0, z) - y * z
        p = 1.0 / (1.0 + np.exp(-z))
        g = (p - y) * w_rows
        grad = np.concatenate([Z.T @ g / n + l2 * w[:d] / n, [g.sum() / n]])
        return float((value * w_rows).sum() / n + 0.5 * l2 * float(w[:d] @ w[:d]) / n), grad

    bounds = [(0.0, None) if name in MONOTONE else (None, None) for name in FEATURES] + [(None, None)]
    result = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 2000})
    w = result.x
    return Calibrator(
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        coef=tuple(float(v) for v in w[:d]),
        intercept=float(w[d]),
        threshold=threshold,
    )


def row_weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    """``weights`` as an array of ``n`` non-negative floats (all 1 when ``None``)."""
    if weights is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or (w < 0).any() or (n and w.sum() <= 0):
        raise ValueError(f"need {n} non-negative weights, not all 0 (got shape {w.shape})")
    return w


def expected_calibration_error(
    probabilities: Sequence[float], right: Sequence[bool], *, bins: int = 10, weights: Sequence[float] | None = None
) -> float | None:
    """ECE over ``bins`` equal-width probability bins: sum of |accuracy - mean probability|
    weighted by the bin's share of the answers (``None`` without answers). ``weights``: how
    much each answer counts (as in :func:`fit_logistic`)."""
    p = np.asarray(probabilities, dtype=np.float64)
    r = np.asarray(right, dtype=np.float64)
    if p.size == 0:
        return None
    w = row_weights(weights, p.size)
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any() and w[sel].sum() > 0:
            total += w[sel].sum() / w.sum() * abs(np.average(r[sel], weights=w[sel]) - np.average(p[sel], weights=w[sel]))
    return float(total)


def coverage_at_accuracy(
    probabilities: Sequence[float], right: Sequence[bool], *, accuracy: float = 0.8, weights: Sequence[float] | None = None
) -> float:
    """The largest share of questions answerable (most confident first) with at least
    ``accuracy`` of the answered right (0.0 when no prefix reaches it). ``weights``: how much
    each question counts."""
    p = np.asarray(probabilities, dtype=np.float64)
    r = np.asarray(right, dtype=np.float64)
    if p.size == 0:
        return 0.0
    w = row_weights(weights, p.size)
    order = np.argsort(-p, kind="stable")
    mass = np.cumsum(w[order])
    hits = np.cumsum((r * w)[order]) / np.maximum(mass, 1e-300)
    ok = np.flatnonzero((hits >= accuracy) & (mass > 0))
    return float(mass[ok.max()] / mass[-1]) if ok.size else 0.0
