"""Evaluation: SQuAD-normalised exact match and F1, abstention, retrieval recall, latency.

Question files are JSON Lines: ``{"question", "answers": [...], "type"?, "doc"?}``; an
empty ``answers`` list marks an unanswerable question (the right output is "I don't know").

Retrieval hit rule: a passage *contains* an accepted answer when the answer occurs in the
passage text after both are normalised (lower-case, articles dropped, punctuation turned
into spaces, whitespace squeezed) **on word boundaries**: "Yasar Guler" is found in
"Yasar Guler's visit" and "3.5-inch" in "a 3.5-inch screen", while "art" is not found
inside "start". Accents are kept (an answer must be spelled as in the document).
Unanswerable questions are left out of the retrieval metrics.

``python -m qa eval QUESTIONS.jsonl --index DIR`` runs :func:`evaluate` from the shell.
"""

from __future__ import annotations

import json
import os
import re
import string
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_PUNCT = set(string.punctuation) | {"’", "‘", "“", "”", "—", "–", "…"}

#: Cut-offs reported for retrieval recall.
RECALL_KS: tuple[int, ...] = (1, 3, 5, 10)


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


# --------------------------------------------------------------------------- abstention


def abstention_metrics(abstained: Sequence[bool], answerable: Sequence[bool]) -> dict[str, float | None]:
    """Abstention precision and recall.

    precision = of the questions where the bot abstained, the fraction truly unanswerable;
    recall = of the unanswerable questions, the fraction where it abstained. ``None`` when
    the denominator is zero (no abstentions / no unanswerable questions).
    """
    n_abst = sum(bool(a) for a in abstained)
    n_unans = sum(not u for u in answerable)
    both = sum(bool(a) and not u for a, u in zip(abstained, answerable, strict=True))
    return {
        "abstention_precision": both / n_abst if n_abst else None,
        "abstention_recall": both / n_unans if n_unans else None,
    }


# --------------------------------------------------------------------------- retrieval


def _search_form(text: str) -> str:
    """Like :func:`normalize_answer` but punctuation becomes a space ("Guler's" -> "guler s")."""
    text = "".join(" " if c in _PUNCT else c for c in text.lower())
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def contains_answer(passage_text: str, answers: Iterable[str]) -> bool:
    """True when an accepted answer occurs in the passage, both normalised, on word boundaries."""
    haystack = f" {_search_form(passage_text)} "
    return any((needle := _search_form(a)) and f" {needle} " in haystack for a in answers)


def first_hit_rank(passage_texts: Sequence[str], answers: Sequence[str]) -> int | None:
    """1-based rank of the first passage containing an accepted answer, ``None`` if none does."""
    for rank, text in enumerate(passage_texts, 1):
        if contains_answer(text, answers):
            return rank
    return None


def retrieval_metrics(ranks: Sequence[int | None], ks: Iterable[int] = RECALL_KS) -> dict[str, float]:
    """Recall@k (share of questions with a hit in the top k) and MRR from first-hit ranks.

    ``ranks`` holds one entry per answerable question: the 1-based rank of its first
    answer-bearing passage, or ``None`` when none was retrieved (reciprocal rank 0).
    """
    n = len(ranks)
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = sum(r is not None and r <= k for r in ranks) / n if n else float("nan")
    out["mrr"] = sum(1.0 / r for r in ranks if r is not None) / n if n else float("nan")
    return out


def load_questions(questions: str | os.PathLike[str] | Iterable[dict]) -> list[dict]:
    """Rows of a JSON Lines question file (or the given rows), checked for the required keys.

    Each row needs ``question`` (text) and ``answers`` (a list of non-blank texts; empty: the
    documents cannot answer it). Errors name the file and line (or the row's number).

    Raises:
        ValueError: unreadable file (not UTF-8 included), bad JSON, or a row of another shape.
    """
    from qa.pipeline import validate_question

    if isinstance(questions, (str, os.PathLike)):
        path = Path(questions)
        try:
            # utf-8-sig: a file saved by Notepad starts with a byte-order mark.
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except OSError as exc:
            raise ValueError(f"cannot read questions file {str(path)!r}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raw = path.read_bytes()
            bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0  # exc.start counts after the mark
            line = raw[: bom + exc.start].count(b"\n") + 1
            raise ValueError(f"{path}:{line}: not UTF-8 text (byte {exc.object[exc.start]:#x}); save the file as UTF-8") from None
        rows, where = [], []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
            where.append(f"{path}:{n}")
    else:
        rows = list(questions)
        where = [f"question {n}" for n in range(1, len(rows) + 1)]
    for at, row in zip(where, rows, strict=True):
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not isinstance(row.get("answers"), list):
            raise ValueError(f'{at}: must be an object with "question" (text) and "answers" (a list)')
        if not all(isinstance(a, str) and a.strip() for a in row["answers"]):
            raise ValueError(f'{at}: "answers" must be a list of non-blank texts (an empty list: the documents cannot answer it), not {row["answers"]!r}')
        try:
            validate_question(row["question"])
        except ValueError as exc:
            raise ValueError(f"{at}: {exc}") from None
    if not rows:
        raise ValueError("no questions to evaluate")
    return rows


def retrieval_ranks(rows: Sequence[dict], retriever: Any, depth: int = max(RECALL_KS)) -> list[int | None]:
    """First-hit rank of each answerable question's top-``depth`` retrieval."""
    return [
        first_hit_rank([p.text for p in retriever.retrieve(r["question"], depth)], r["answers"])
        for r in rows
        if r["answers"]
    ]


class _MemoEncoder:
    """Wraps an encoder and remembers single-text encodings (each question is embedded once)."""

    def __init__(self, encoder: Any) -> None:
        self._encoder = encoder
        self._memo: dict[str, np.ndarray] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        if len(texts) != 1:
            return self._encoder.encode(texts, **kwargs)
        if texts[0] not in self._memo:
            self._memo[texts[0]] = self._encoder.encode(texts, **kwargs)
        return self._memo[texts[0]]


def compare_retrievers(
    questions: str | os.PathLike[str] | Iterable[dict],
    index: Any,
    retrievers: Sequence[str] = ("dense", "bm25", "hybrid"),
    ks: Sequence[int] = RECALL_KS,
) -> dict[str, dict[str, float]]:
    """Recall@k and MRR of each named retriever on the answerable questions (no reader)."""
    from embeddings.encoders.encoder import get_encoder
    from qa.pipeline import load_index
    from qa.retrieval.retrievers import get_retriever

    rows = load_questions(questions)
    vector_index = load_index(index)
    encoder = _MemoEncoder(get_encoder(vector_index.embedding_model))
    return {
        name: retrieval_metrics(retrieval_ranks(rows, get_retriever(name, vector_index, encoder=encoder), max(ks)), ks)
        for name in retrievers
    }


# --------------------------------------------------------------------------- end to end


@dataclass
class EvalRecord:
    """One question's outcome."""

    question: str
    answers: list[str]
    type: str
    prediction: str | None
    score: float
    em: float
    f1: float
    latency_s: float
    retrieval_rank: int | None  # first answer-bearing passage among the retrieved (None: none / unanswerable)
    doc: str | None = None
    cited_doc: str | None = None
    #: The best span when the reader abstained (its score is that span's chance of being right).
    guess: str | None = None

    @property
    def right(self) -> bool:
        """The shown span (the answer, or the guess when abstaining) is right: token F1 >= 0.5
        with an accepted answer; any span for an unanswerable question is wrong."""
        from qa.reader.calibration import RIGHT_F1

        span = self.prediction if self.prediction is not None else self.guess
        return bool(self.answers) and span is not None and f1_score(span, self.answers) >= RIGHT_F1

    @property
    def answerable(self) -> bool:
        return bool(self.answers)

    @property
    def abstained(self) -> bool:
        return self.prediction is None


@dataclass
class EvalReport:
    """Per-question records and the summary metrics of an evaluation run."""

    records: list[EvalRecord]
    summary: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``python -m qa eval --json``)."""
        return {"config": self.config, "summary": self.summary, "records": [asdict(r) for r in self.records]}


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def summarize(records: Sequence[EvalRecord], ks: Sequence[int] = RECALL_KS) -> dict[str, Any]:
    """Summary metrics of ``records``: EM/F1 (all, answerable), abstention, retrieval, latency, by type."""
    answerable = [r for r in records if r.answerable]
    latency_ms = np.array([r.latency_s for r in records]) * 1000
    summary: dict[str, Any] = {
        "questions": len(records),
        "answerable": len(answerable),
        "unanswerable": len(records) - len(answerable),
        "em": _mean([r.em for r in records]),
        "f1": _mean([r.f1 for r in records]),
        "em_answerable": _mean([r.em for r in answerable]),
        "f1_answerable": _mean([r.f1 for r in answerable]),
        "answered": sum(not r.abstained for r in records),
        **abstention_metrics([r.abstained for r in records], [r.answerable for r in records]),
        **calibration_metrics(records),
    }
    if answerable:
        summary.update(retrieval_metrics([r.retrieval_rank for r in answerable], [k for k in ks]))
    if len(latency_ms):
        summary.update(
            latency_p50_ms=float(np.percentile(latency_ms, 50)),
            latency_p95_ms=float(np.percentile(latency_ms, 95)),
            latency_mean_ms=float(latency_ms.mean()),
        )
    by_type: dict[str, list[EvalRecord]] = defaultdict(list)
    for r in records:
        by_type[r.type].append(r)
    summary["by_type"] = {
        t: {"n": len(rs), "em": _mean([r.em for r in rs]), "f1": _mean([r.f1 for r in rs])} for t, rs in sorted(by_type.items())
    }
    return summary


def calibration_metrics(records: Sequence[EvalRecord]) -> dict[str, float | None]:
    """Does the score mean what it says? ``ece``: expected calibration error (10 bins) of the
    score over the answered questions ("right": :attr:`EvalRecord.right`); ``accuracy_answered``;
    ``coverage_at_80``: the largest share of all questions that can be answered, most
    confident first (guesses included), with 80 % of those answers right."""
    from qa.reader.calibration import coverage_at_accuracy, expected_calibration_error

    answered = [r for r in records if not r.abstained]
    return {
        "ece": expected_calibration_error([r.score for r in answered], [r.right for r in answered]),
        "accuracy_answered": _mean([float(r.right) for r in answered]),
        "coverage_at_80": coverage_at_accuracy([r.score for r in records], [r.right for r in records]) if records else None,
    }


_TYPE_PATTERNS = (
    ("how_many", r"^(how many|how much|how long|how old|how far|how tall|how big|how large)\b"),
    ("why", r"^why\b"),
    ("when", r"^(when|what year|which year|what date|what time|in what year|in which year|on what date)\b"),
    ("where", r"^(where|in what country|in which country|in what city|in which city)\b"),
    ("who", r"^(who|whom|whose)\b"),
    ("which", r"^(which|in which|at which|on which|from which|to which)\b"),
    ("what", r"^(what|in what|at what|on what|how)\b"),
    ("yes_no", r"^(is|are|was|were|do|does|did|can|could|will|would|has|have|had|should)\b"),
)


def infer_question_type(question: str) -> str:
    """The question's type from its wording ("how many ...", "who ...", "is ..."), for files
    without a ``type`` field; ``"other"`` when no pattern fits. Reported as inferred."""
    q = " ".join(question.lower().split())
    for name, pattern in _TYPE_PATTERNS:
        if re.search(pattern, q):
            return name
    # Wh-word later in the sentence ("The drone flew when?", "In 2022, who visited?").
    for name, word in (("who", "who"), ("when", "when"), ("where", "where"), ("why", "why"), ("which", "which"), ("what", "what")):
        if re.search(rf"\b{word}\b", q):
            return name
    return "other"


def evaluate(
    questions_path_or_rows: str | os.PathLike[str] | Iterable[dict],
    index: Any = None,
    *,
    reader: Any = None,
    top_k: int | None = None,
    retriever: Any = None,
    retrieval_depth: int = max(RECALL_KS),
    threshold: float | None = None,
) -> EvalReport:
    """Answer every question with ``reader`` over ``index`` and score the answers.

    Args:
        questions_path_or_rows: a JSON Lines file or rows ``{"question", "answers", "type"?, "doc"?}``.
        index: index directory, loaded :class:`~embeddings.stores.index.VectorIndex`, or ``None`` (default index).
        reader: reader name or object (default: the shipped reader). For a threshold
            sweep pass one that never abstains, e.g. ``TransformersReader("shipped", threshold=0.0)``.
        top_k: passages handed to the reader (default ``qa.config.DEFAULT_TOP_K``).
        retriever: ``"dense"``, ``"bm25"``, ``"hybrid"`` or an object (default ``DEFAULT_RETRIEVER``).
        retrieval_depth: passages retrieved per question for recall@k (the reader gets the first ``top_k``).
        threshold: answer only at this chance of being right or above, as ``ask(threshold=...)``
            (default: the reader's own).

    Latency is per question: retrieval plus reading, models already loaded (one warm-up
    question is answered before timing).
    """
    from qa.pipeline import load_index, validate_question, validate_threshold, validate_top_k
    from qa.reader import get_reader
    from qa.retrieval.retrievers import DEFAULT_RETRIEVER, get_retriever

    rows = load_questions(questions_path_or_rows)
    k = validate_top_k(top_k)
    validate_threshold(threshold)
    vector_index = load_index(index)
    resolved_reader = get_reader(reader)
    resolved_retriever = get_retriever(retriever, vector_index)
    depth = max(k, retrieval_depth)

    def run(question: str) -> tuple[list, Any]:
        passages = resolved_retriever.retrieve(question, depth)
        answer = resolved_reader.read(question, passages[:k])
        return passages, answer if threshold is None else answer.at_threshold(threshold)

    run(validate_question(rows[0]["question"]))  # warm up models and caches before timing
    records = []
    for row in rows:
        question = validate_question(row["question"])
        started = time.perf_counter()
        passages, answer = run(question)
        latency = time.perf_counter() - started
        answers = [str(a) for a in row["answers"]]
        records.append(
            EvalRecord(
                question=row["question"],
                answers=answers,
                type=str(row.get("type") or infer_question_type(row["question"])),
                prediction=answer.text,
                score=float(answer.score),
                em=exact_match(answer.text, answers),
                f1=f1_score(answer.text, answers),
                latency_s=latency,
                retrieval_rank=first_hit_rank([p.text for p in passages], answers) if answers else None,
                doc=row.get("doc"),
                cited_doc=answer.citations[0].doc_id if answer.citations else None,
                guess=answer.guess_text,
            )
        )
    retriever_name = retriever if isinstance(retriever, str) else getattr(resolved_retriever, "name", DEFAULT_RETRIEVER)
    return EvalReport(
        records=records,
        summary=summarize(records),
        config={
            "questions": str(questions_path_or_rows) if isinstance(questions_path_or_rows, (str, os.PathLike)) else None,
            "index": str(vector_index.directory) if vector_index.directory else None,
            "reader": getattr(resolved_reader, "name", str(reader)),
            "retriever": retriever_name,
            "top_k": k,
            # What decided "I don't know": the given threshold, else the reader's own.
            "threshold": threshold if threshold is not None else getattr(resolved_reader, "threshold", None),
            "types_inferred": sum(1 for row in rows if not row.get("type")),
        },
    )


# --------------------------------------------------------------------------- threshold sweep


def threshold_sweep(
    records: Iterable[EvalRecord | dict | tuple],
    thresholds: Sequence[float] | None = None,
) -> list[dict[str, float | None]]:
    """Abstention trade-off for each threshold ``t`` (default 0, 0.05, ..., 1).

    ``records`` come from a run whose reader never abstains (e.g.
    ``TransformersReader("shipped", threshold=0.0)``): each is an :class:`EvalRecord`, a dict with
    ``score``, ``prediction`` and ``answers``, or a ``(score, prediction, answers)`` tuple.
    At threshold ``t`` the bot answers when ``score >= t`` (and it has a span), else abstains.

    Returns one row per threshold: ``answerable_em`` (share of answerable questions
    answered correctly), ``answered`` (share of all questions answered), ``em`` (overall,
    abstaining on an unanswerable question counts as right), ``abstention_precision`` and
    ``abstention_recall``.
    """
    triples: list[tuple[float, str | None, list[str]]] = []
    for r in records:
        if isinstance(r, EvalRecord):
            triples.append((r.score, r.prediction, r.answers))
        elif isinstance(r, dict):
            triples.append((float(r["score"]), r.get("prediction"), list(r["answers"])))
        else:
            score, prediction, answers = r
            triples.append((float(score), prediction, list(answers)))
    ts = [round(float(t), 4) for t in (np.linspace(0.0, 1.0, 21) if thresholds is None else thresholds)]
    n_answerable = sum(bool(a) for _, _, a in triples)
    rows = []
    for t in ts:
        answered = [p is not None and s >= t for s, p, _ in triples]
        correct = [ok and exact_match(p, a) == 1.0 for ok, (_, p, a) in zip(answered, triples, strict=True)]
        abst = abstention_metrics([not a for a in answered], [bool(a) for _, _, a in triples])
        rows.append(
            {
                "threshold": t,
                "answerable_em": sum(c for c, (_, _, a) in zip(correct, triples, strict=True) if a) / n_answerable
                if n_answerable
                else None,
                "answered": sum(answered) / len(triples) if triples else None,
                "em": sum(
                    (c if a else not ans) for c, ans, (_, _, a) in zip(correct, answered, triples, strict=True)
                )
                / len(triples)
                if triples
                else None,
                **abst,
            }
        )
    return rows


def apply_threshold(records: Iterable[EvalRecord], threshold: float) -> list[EvalRecord]:
    """``records`` of a never-abstaining run as they would be with abstention below ``threshold``.

    One reader run then gives both the sweep and the metrics at any threshold (the reader's
    span and score do not depend on the threshold).
    """
    out = []
    for r in records:
        prediction = r.prediction if r.prediction is not None and r.score >= threshold else None
        out.append(
            EvalRecord(
                **{
                    **asdict(r),
                    "prediction": prediction,
                    "em": exact_match(prediction, r.answers),
                    "f1": f1_score(prediction, r.answers),
                    "cited_doc": r.cited_doc if prediction is not None else None,
                    "guess": r.guess if prediction is not None else (r.prediction if r.prediction is not None else r.guess),
                }
            )
        )
    return out


def best_threshold(sweep: Sequence[dict[str, Any]], *, min_abstention_recall: float | None = None) -> float:
    """The threshold with the highest overall EM (answering right or abstaining right).

    With ``min_abstention_recall`` only thresholds that abstain on at least that share of
    the unanswerable questions compete (the product's target is 0.9); if none does, the
    one that abstains most wins. A threshold that answers nothing reaches any such target
    trivially, so it competes only when no threshold answers anything. Ties go to the
    highest threshold: at equal accuracy, "I don't know" is better than a wrong answer.
    """
    if not sweep:
        raise ValueError("best_threshold needs a non-empty sweep (see threshold_sweep)")
    rows = list(sweep)
    if min_abstention_recall is not None:
        rows = [row for row in rows if row.get("answered")] or rows
        recall = [row.get("abstention_recall") or 0.0 for row in rows]
        meeting = [row for row, r in zip(rows, recall, strict=True) if r >= min_abstention_recall]
        rows = meeting or [row for row, r in zip(rows, recall, strict=True) if r == max(recall)]
    return max(rows, key=lambda row: (row["em"] or 0.0, row["threshold"]))["threshold"]


# --------------------------------------------------------------------------- formatting


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def format_report(report: EvalReport) -> str:
    """The summary as an aligned plain-text table (``python -m qa eval``)."""
    s = report.summary
    lines = [
        f"questions {s['questions']} ({s['answerable']} answerable, {s['unanswerable']} unanswerable); "
        f"reader: {report.config.get('reader')}; retriever: {report.config.get('retriever')}; top_k {report.config.get('top_k')}"
        + (f"; threshold {report.config['threshold']:g}" if report.config.get("threshold") is not None else ""),
        "",
        f"{'metric':24s} value",
    ]
    keys = ["em", "f1", "em_answerable", "f1_answerable", "answered", "abstention_precision", "abstention_recall", "accuracy_answered", "ece", "coverage_at_80"]
    keys += [k for k in s if k.startswith("recall@")] + ["mrr", "latency_p50_ms", "latency_p95_ms", "latency_mean_ms"]
    labels = {"em": "EM", "f1": "F1", "em_answerable": "EM (answerable)", "f1_answerable": "F1 (answerable)", "mrr": "MRR"}
    for key in keys:
        if key in s:
            lines.append(f"{labels.get(key, key):24s} {_fmt(s[key])}")
    inferred = report.config.get("types_inferred")
    note = f"  (inferred from the wording for {inferred} questions without a 'type' field)" if inferred else ""
    lines += ["", f"{'type':12s} {'n':>4s} {'EM':>6s} {'F1':>6s}{note}"]
    for t, m in s["by_type"].items():
        lines.append(f"{t:12s} {m['n']:4d} {_fmt(m['em']):>6s} {_fmt(m['f1']):>6s}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- follow-up questions


def followup_gain(
    path_or_rows: str | os.PathLike[str] | Iterable[dict], index: Any = None, *, reader: Any = None, top_k: int | None = None
) -> dict[str, dict[str, float]]:
    """What retrieving follow-ups with their previous question gains (:mod:`qa.retrieval.followup`).

    Rows are ``{"previous", "question", "answers"}`` (JSON Lines or dicts). Returns, for
    ``"alone"`` and ``"with_previous"``: recall@1 (an answer-bearing passage first) and EM.
    """
    from qa.pipeline import ask, load_index

    if isinstance(path_or_rows, (str, os.PathLike)):
        rows = [json.loads(line) for line in Path(path_or_rows).read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        rows = list(path_or_rows)
    vector_index = load_index(index)
    out: dict[str, dict[str, float]] = {}
    for mode in ("alone", "with_previous"):
        hits, em = [], []
        for row in rows:
            previous = row["previous"] if mode == "with_previous" else None
            answer = ask(row["question"], index=vector_index, reader=reader, top_k=top_k, previous=previous)
            hits.append(float(bool(answer.passages) and contains_answer(answer.passages[0].text, row["answers"])))
            em.append(exact_match(answer.text, row["answers"]))
        out[mode] = {"questions": len(rows), "recall@1": round(float(np.mean(hits)), 3), "em": round(float(np.mean(em)), 3)}
    return out
