"""Reader evaluation on SQuAD files: batched span prediction and the official metrics.

``python -m qa eval-reader FILE`` runs the reader on each question with its own paragraph
(no retrieval) and reports SQuAD's normalised exact match and F1 (max over gold answers,
percent), plus HasAns/NoAns figures at the reader's threshold when the file has
unanswerable questions. The metric functions follow the official SQuAD v2.0 script.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import groupby, pairwise
from typing import Any

import numpy as np

from qa import config
from qa.reader.metrics import exact_match, f1_score, normalize_answer  # noqa: F401 - also this module's API
from qa.reader.squad import QAExample

# The official metrics live in qa.reader.metrics (below the calibrator, which uses them too).


def score_example(prediction: str, example: QAExample) -> tuple[float, float]:
    """(EM, F1) of one prediction, max over gold answers; "" is the no-answer prediction."""
    golds = [t for _, t in example.answers if normalize_answer(t)] or [""]
    return max(exact_match(prediction, g) for g in golds), max(f1_score(prediction, g) for g in golds)


# --------------------------------------------------------------------------- prediction


@dataclass(frozen=True)
class Prediction:
    """The best span of one example and how sure the reader is of it."""

    text: str  # best non-null span ("" when no span could be decoded)
    start: int  # character offsets in the example's context
    end: int
    #: The reader's score: P(correct) from its calibrator (what ``ask()`` shows), or without
    #: one span_confidence(best, null), P(answer) vs "no answer".
    confidence: float


def predict(
    model: Any,
    tokenizer: Any,
    examples: list[QAExample],
    *,
    max_length: int = config.READER_MAX_LENGTH,
    stride: int = config.READER_STRIDE,
    max_answer_tokens: int = config.READER_MAX_ANSWER_TOKENS,
    batch_size: int = 32,
    calibrator: Any = None,
) -> list[Prediction]:
    """Best span and confidence for each example (own context only), batched across examples.

    ``model`` and ``tokenizer``: what :meth:`qa.reader.TransformersReader.load` gives (a
    ``QAModel`` and a ``WindowTokenizer``). Uses the same windowing, SQuAD2 decoding and (with
    ``calibrator``) the same confidence features as the product's reader
    (:mod:`qa.reader.calibration`), each paragraph as a lone passage without retrieval
    scores, so thresholds measured here hold in ``ask()``.
    """
    from qa.answer import Passage
    from qa.reader.calibration import Candidate, answer_score
    from qa.reader.decoding import decode_candidates, fold_letters, trim_span

    preds: list[Prediction] = []
    # Each question as the reader reads it (letters folded, a long one cut, its window overlap).
    fitted = [tokenizer.fit_question(fold_letters(e.question.strip()), max_length=max_length, stride=stride) for e in examples]
    # Sort by overlap, then length, so batches share one overlap and pad little; results are put
    # back in file order.
    order = sorted(range(len(examples)), key=lambda i: (-fitted[i][1], len(examples[i].context) + len(examples[i].question)))
    result: dict[int, Prediction] = {}
    group = max(1, batch_size // 2)
    batches = []
    for _, same in groupby(order, key=lambda i: fitted[i][1]):
        same = list(same)
        batches += [same[g : g + group] for g in range(0, len(same), group)]
    for idx in batches:
        chunk = [examples[i] for i in idx]
        # Letters folded as the reader folds them (same length: offsets hold for the context).
        enc = tokenizer.windows(
            [fitted[i][0] for i in idx], [fold_letters(e.context) for e in chunk], max_length=max_length, stride=fitted[idx[0]][1]
        )
        starts, ends = [], []
        for b in range(0, len(enc), batch_size):
            start, end = model.logits(enc.inputs(slice(b, b + batch_size)))
            starts.append(start)
            ends.append(end)
        start_logits, end_logits = np.concatenate(starts), np.concatenate(ends)
        for j, i in enumerate(idx):
            windows = np.flatnonzero(enc.sample == j)
            spans, null = decode_candidates(start_logits[windows], end_logits[windows], enc.context[windows], max_answer_tokens=max_answer_tokens)
            if not spans:
                result[i] = Prediction("", 0, 0, 0.0)
                continue
            context = examples[i].context
            candidates = []
            for span in spans:
                offsets = enc.offsets[windows[span.window]]
                s, e = trim_span(context, int(offsets[span.start_token][0]), int(offsets[span.end_token][1]))
                candidates.append(Candidate(0, s, e, span.logit))
            best = candidates[0]
            # An empty span has nothing to describe: it keeps the raw softmax.
            passage = Passage("", "", "", 0, len(context), context, 0.0)
            cal = calibrator if best.start < best.end else None
            confidence = answer_score(cal, examples[i].question, candidates, null, [passage])
            result[i] = Prediction(context[best.start : best.end], best.start, best.end, confidence)
    preds = [result[i] for i in range(len(examples))]
    return preds


def evaluate(
    examples: list[QAExample], predictions: list[Prediction], *, threshold: float, seconds: float | None = None
) -> dict[str, Any]:
    """SQuAD metrics in percent: ``exact``, ``f1``, ``total`` and, when the set has both kinds,
    HasAns/NoAns figures at ``threshold`` (below it the reader abstains).

    Files without unanswerable questions are scored on the best span (SQuAD 1.1 protocol:
    the reader always answers), and ``no_ans_accuracy`` is ``None``.
    """
    has_no_ans = any(e.is_impossible for e in examples)
    em = f1 = 0.0
    has_em = has_f1 = 0.0
    n_has = n_no = no_right = 0
    for ex, p in zip(examples, predictions, strict=True):
        text = p.text if (not has_no_ans or p.confidence >= threshold) else ""
        e, f = score_example(text, ex)
        em += e
        f1 += f
        if ex.is_impossible:
            n_no += 1
            no_right += int(text == "")
        else:
            n_has += 1
            has_em += e
            has_f1 += f
    total = len(examples)
    pct = lambda x, n: round(100.0 * x / n, 2) if n else None  # noqa: E731
    return {
        "exact": pct(em, total),
        "f1": pct(f1, total),
        "total": total,
        "has_ans_total": n_has,
        "has_ans_exact": pct(has_em, n_has),
        "has_ans_f1": pct(has_f1, n_has),
        "no_ans_total": n_no,
        "no_ans_accuracy": pct(no_right, n_no) if has_no_ans else None,
        "threshold": threshold if has_no_ans else None,
        "questions_per_s": round(total / seconds, 2) if seconds else None,
    }


def calibration_table(
    examples: list[QAExample], predictions: list[Prediction], bins: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0001)
) -> list[dict[str, Any]]:
    """Per confidence bin: how many predictions and how many are right (EM, unanswerable = wrong)."""
    rows = []
    for lo, hi in pairwise(bins):
        sel = [(ex, p) for ex, p in zip(examples, predictions, strict=True) if lo <= p.confidence < hi]
        right = sum(score_example(p.text, ex)[0] for ex, p in sel)
        rows.append({"bin": f"[{lo:.1f}, {min(hi, 1.0):.1f})", "n": len(sel), "exact": round(right / len(sel), 3) if sel else None})
    return rows


def score_calibration(examples: list[QAExample], predictions: list[Prediction], *, threshold: float | None) -> dict[str, Any]:
    """Whether the confidence means P(correct): ``ece`` (10 bins, over the answered questions;
    all of them when the file has no unanswerable ones, ``threshold`` ``None``) and
    ``coverage_at_80`` (largest share answerable at 80 % right, most confident first);
    "right" is token F1 >= 0.5 with a gold answer, any span of an unanswerable question wrong."""
    from qa.reader.calibration import RIGHT_F1, coverage_at_accuracy, expected_calibration_error

    right = [bool(p.text) and not ex.is_impossible and score_example(p.text, ex)[1] >= RIGHT_F1 for ex, p in zip(examples, predictions, strict=True)]
    conf = [p.confidence for p in predictions]
    answered = [i for i, c in enumerate(conf) if threshold is None or c >= threshold]
    ece = expected_calibration_error([conf[i] for i in answered], [right[i] for i in answered])
    return {"ece": None if ece is None else round(ece, 4), "coverage_at_80": round(coverage_at_accuracy(conf, right), 4)}


def timed_predict(model: Any, tokenizer: Any, examples: list[QAExample], **kw: Any) -> tuple[list[Prediction], float]:
    """:func:`predict` and the seconds it took."""
    t = time.perf_counter()
    preds = predict(model, tokenizer, examples, **kw)
    return preds, time.perf_counter() - t


def run_eval(examples: list[QAExample], *, model: str | None = None, threshold: float | None = None) -> dict[str, Any]:
    """Metrics of the product's reader (the shipped one unless ``model`` names another)
    on ``examples``, each read with its own paragraph; adds ``reader`` and ``calibration``."""
    from qa import config
    from qa.reader.transformers_reader import TransformersReader

    reader = TransformersReader(model or config.DEFAULT_READER_MODEL)
    tokenizer, qa_model = reader.load()
    preds, secs = timed_predict(
        qa_model,
        tokenizer,
        examples,
        max_length=reader.max_length,
        stride=reader.stride,
        max_answer_tokens=reader.max_answer_tokens,
        calibrator=reader.calibrator(),
    )
    result = evaluate(examples, preds, threshold=reader.threshold if threshold is None else threshold, seconds=secs)
    result["reader"] = reader.name
    result["calibration"] = calibration_table(examples, preds)
    result.update(score_calibration(examples, preds, threshold=result["threshold"]))
    if result["no_ans_accuracy"] is not None:
        # The trade-off at other thresholds, from the same predictions (how the shipped one was chosen).
        result["sweep"] = [
            {k: v for k, v in evaluate(examples, preds, threshold=t).items() if k in ("threshold", "exact", "f1", "has_ans_f1", "no_ans_accuracy")}
            for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
        ]
    return result


def format_eval(result: dict[str, Any]) -> str:
    """The metrics as a few lines for a terminal."""
    lines = [
        f"reader: {result['reader']}",
        f"questions: {result['total']}   exact match: {result['exact']:.2f}   F1: {result['f1']:.2f}   ({result['questions_per_s']} questions/s)",
    ]
    if result["no_ans_accuracy"] is not None:
        lines.append(
            f"answerable ({result['has_ans_total']}): exact {result['has_ans_exact']:.2f}  F1 {result['has_ans_f1']:.2f}   "
            f"unanswerable ({result['no_ans_total']}): abstained {result['no_ans_accuracy']:.2f}%   threshold {result['threshold']}"
        )
    if result.get("sweep"):
        lines.append("threshold   exact      F1   HasAns F1   NoAns acc")
        for row in result["sweep"]:
            lines.append(f"{row['threshold']:<9}{row['exact']:>8.2f}{row['f1']:>8.2f}{row['has_ans_f1']:>12.2f}{row['no_ans_accuracy']:>12.2f}")
    if result.get("ece") is not None:
        lines.append(f"calibration: ECE {result['ece']:.3f}   coverage at 80 % right {result['coverage_at_80']:.3f}")
    lines.append("confidence bin      n   exact")
    for row in result["calibration"]:
        exact = "-" if row["exact"] is None else f"{row['exact']:.3f}"
        lines.append(f"{row['bin']:<16}{row['n']:>6}   {exact}")
    return "\n".join(lines)
