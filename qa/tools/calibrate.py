"""Fit the reader's confidence calibrator on training hold-outs (``python -m qa calibrate-reader``).

Takes SQuAD-format *training* files and a reader checkpoint; gives ``calibration.json`` beside
the checkpoint's weights (:class:`qa.reader.calibration.Calibrator`) and a report.

The questions come only from articles the reader never trained on: the held-out share of
each file (:func:`qa.reader.squad.split_holdout`, the split training leaves out), minus any
paragraph the checkpoint's ``training.json`` says it was trained on. Those articles are
split by a stable hash into *indexed* ones and *absent* ones; the indexed ones become
documents of a real index, and every case goes through the real pipeline (hybrid retrieval,
top k, the reader):

* questions of indexed articles (gold: their answers);
* questions of absent articles: "not in the documents" (any span is wrong);
* questions of indexed articles with a name or number swapped for one of another article,
  or a word turned to its opposite (SQuAD 2.0's commonest unanswerable kinds; any span is
  wrong);
* and each question over its own paragraph alone, as ``eval-reader`` reads it (no
  retrieval scores), answerable, with the answer's sentence cut out, or made unanswerable
  as above (a name or number swapped, also for another of the same paragraph; a word
  turned to its opposite), and negated ("What didn't ..."): SQuAD 2.0's negation kind, the
  one kind no training generator makes, so the reader meets it as unprepared as a user's.

Each case's best span is labelled right (token F1 >= 0.5 with a gold answer) or wrong and
described by :func:`qa.reader.calibration.span_features`. A stable hash of the article
splits the cases once more: the calibrator is fitted on the *fit* part, and the threshold
and the reported figures (ECE, coverage at 80 % accuracy) come from the *check* part. The
retrieved cases and the lone ones get a regression each (:attr:`Calibrator.lone`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from qa.answer import Passage
from qa.reader.calibration import (
    CALIBRATION_FILE,
    FEATURES,
    RIGHT_F1,
    Calibrator,
    Candidate,
    coverage_at_accuracy,
    expected_calibration_error,
    fit_logistic,
    row_weights,
    span_features,
    weights_fingerprint,
)
from qa.reader.squad import (
    QAExample,
    add_contrast_negatives,
    add_cut_negatives,
    add_inside_swapped_negatives,
    add_swapped_negatives,
    load_squad,
    split_holdout,
)

logger = logging.getLogger(__name__)



@dataclass
class Case:
    """One question put to the reader, what the reader read and decoded, its features and
    whether the shown span was right."""

    question: str
    kind: str  # answerable | absent | swapped | contrast | lone | lone_cut | lone_swapped | lone_contrast | lone_inside | lone_negated
    article: str
    features: dict[str, float]
    right: bool
    answerable: bool
    part: str = "fit"  # fit | check
    #: :func:`reading_of` the reader's output: with it the features are recomputed when
    #: :func:`~qa.reader.calibration.span_features` changes, without reading again.
    reading: dict[str, Any] | None = None
    #: A question set's case (``kind`` ``set:NAME``, ``part`` ``sets``): its accepted answers
    #: ([] = unanswerable) and the shown span, for the sets' exact-match accuracy.
    answers: list[str] | None = None
    span: str | None = None


def reading_of(candidates: list[Candidate], null_logit: float, passages: list[Passage]) -> dict[str, Any]:
    """What :func:`~qa.reader.calibration.span_features` needs of one reading, as JSON: every
    decoded span (passage, start, end, logit), the null logit, each passage's text and scores."""
    return {
        "candidates": [[c.passage, c.start, c.end, c.logit] for c in candidates],
        "null": null_logit,
        "passages": [{"text": p.text, "components": dict(p.components)} for p in passages],
    }


def features_of(question: str, reading: dict[str, Any]) -> dict[str, float]:
    """:func:`~qa.reader.calibration.span_features` of a saved :func:`reading_of`: the same
    function the reader calls when answering, on the same values (``{}``: no span decoded)."""
    if not reading["candidates"]:
        return {}
    candidates = [Candidate(int(p), int(s), int(e), float(logit)) for p, s, e, logit in reading["candidates"]]
    passages = [
        Passage("", "", "", 0, len(p["text"]), p["text"], 0.0, components={k: float(v) for k, v in p["components"].items()})
        for p in reading["passages"]
    ]
    return span_features(question, candidates, float(reading["null"]), passages)


def _bucket(key: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def _file_rows(spec: str) -> tuple[str, list[QAExample]]:
    path = spec.rsplit(":", 1)[0] if spec.rsplit(":", 1)[-1].isdigit() else spec
    return Path(path).name, load_squad(path)


def trained_contexts(checkpoint: Path) -> set[str]:
    """Every paragraph the checkpoint may have been trained on, per its ``training.json``, the
    runs it continued (``"base"``, nested) and, for an average of runs, each of them (``"of"``):
    whole files, less each run's held-out share; samples count as the whole file."""
    meta = checkpoint / "training.json"
    if not meta.is_file():
        return set()
    seen: set[str] = set()
    from qa.reader.training import with_lineage

    runs: list[dict] = [with_lineage(json.loads(meta.read_text()))]
    done: set[tuple[str, object]] = set()
    while runs:  # this run, the runs its weights started from ("base"), and a soup's ingredients ("of")
        run = runs.pop()
        cfg = run.get("config", {})
        for spec in cfg.get("files", []):
            if (spec, cfg.get("holdout_percent")) in done:  # runs of one release share their files
                continue
            done.add((spec, cfg.get("holdout_percent")))
            try:
                _, rows = _file_rows(spec)
            except ValueError:
                logger.warning("training file %s of %s is not here; its paragraphs cannot be excluded", spec, checkpoint)
                continue
            kept, _ = split_holdout(rows, float(cfg.get("holdout_percent", 0.0)))
            seen.update(r.context for r in kept)
        runs.extend(r for r in [run.get("base"), *run.get("of", [])] if isinstance(r, dict))
    return seen


def holdout_examples(files: list[str], percent: float, exclude: set[str]) -> list[QAExample]:
    """The held-out questions of ``files`` whose paragraph is not in ``exclude``; each row's
    ``title`` becomes ``file/title`` (or ``file/#n`` for files that are one article)."""
    out: list[QAExample] = []
    for spec in files:
        name, rows = _file_rows(spec)
        one_article = len({r.title for r in rows}) <= 1
        _, held = split_holdout(rows, percent)
        contexts: dict[str, int] = {}
        for r in held:
            if r.context in exclude:
                continue
            key = f"{name}/#{contexts.setdefault(r.context, len(contexts))}" if one_article else f"{name}/{r.title}"
            out.append(QAExample(r.id, r.question, r.context, r.answers, r.article, key))
    return out


def _label(text: str, answers: list[str]) -> bool:
    from qa.tools.evaluation import f1_score

    return bool(answers) and f1_score(text, answers) >= RIGHT_F1


#: Negations a question or paragraph may already hold: a negated question over them is no
#: longer certainly unanswerable ("Who didn't sign?" over "... all but Smith did not sign").
_NEGATION = re.compile(r"\b(?:not|never|no|none|nor|neither|without|cannot|nobody|nothing|unable|failed|refused)\b|n't\b", re.IGNORECASE)
#: The first auxiliary after a question's wh-phrase ("In what year *did*", "How many people *were*").
_AUXILIARY = re.compile(
    r"^(?:\w+\s+){0,3}?(?:what|which|who|whom|whose|when|where|why|how)\b(?:\s+[\w'-]+){0,4}?\s+"
    r"(is|was|are|were|did|does|do|can|could|has|have|had|will|would|should)\b",
    re.IGNORECASE,
)
_CONTRACTED = {
    "is": "isn't", "was": "wasn't", "are": "aren't", "were": "weren't", "did": "didn't", "does": "doesn't",
    "do": "don't", "can": "can't", "could": "couldn't", "has": "hasn't", "have": "haven't", "had": "hadn't",
    "will": "won't", "would": "wouldn't", "should": "shouldn't",
}


def negated_question(question: str, context: str) -> str | None:
    """``question`` with its first auxiliary after the wh-word turned negative ("What did the
    Normans conquer?" -> "What didn't the Normans conquer?"), a question ``context`` does not
    answer; None when there is no such auxiliary or either text already holds a negation.

    SQuAD 2.0's negation kind of unanswerable question, and one no training generator makes
    (:mod:`qa.reader.squad`): the calibrator's one kind the reader has never learnt, so it sees
    how sure the reader is about a no-answer question it finds as hard as written ones. Kept
    here, out of the training generators, on purpose: trained on, it would be easy too.
    """
    if _NEGATION.search(question) or _NEGATION.search(context):
        return None
    m = _AUXILIARY.match(question)
    if not m:
        return None
    aux = m.group(1)
    negative = _CONTRACTED[aux.lower()]
    if aux[0].isupper():
        negative = negative.capitalize()
    return question[: m.start(1)] + negative + question[m.end(1) :]


def add_negated_negatives(examples: list[QAExample], rng: random.Random) -> list[QAExample]:
    """Every answerable question of ``examples`` that :func:`negated_question` can negate, as a
    "no answer" example over its own paragraph (id ``+ "-negated"``), in a random order."""
    out = [
        QAExample(e.id + "-negated", q, e.context, (), e.article, e.title)
        for e in examples
        if e.answers and (q := negated_question(e.question, e.context))
    ]
    rng.shuffle(out)
    return out


def plan_cases(examples: list[QAExample], *, per_kind: int, seed: int = 7) -> tuple[list[tuple[str, QAExample, bool]], set[str]]:
    """The questions to put to the reader (module docstring): ``(kind, example, through
    retrieval)`` each, drawn with ``seed``, and the articles to index. Pure: no reading."""
    rng = random.Random(seed)
    articles = sorted({e.title for e in examples})
    indexed = {a for a in articles if _bucket(a, "indexed") < 0.75}
    in_docs = [e for e in examples if e.title in indexed]
    absent = [e for e in examples if e.title not in indexed]
    answerable = rng.sample(in_docs, min(per_kind, len(in_docs)))
    swapped = add_swapped_negatives(in_docs, 1.0, rng)
    contrast = add_contrast_negatives(in_docs, 1.0, rng)
    cut = add_cut_negatives(answerable, 1.0, rng)
    jobs: list[tuple[str, QAExample, bool]] = [("answerable", e, True) for e in answerable]
    jobs += [("absent", e, True) for e in rng.sample(absent, min(per_kind // 2, len(absent)))]
    jobs += [("swapped", e, True) for e in rng.sample(swapped, min(per_kind // 4, len(swapped)))]
    jobs += [("contrast", e, True) for e in rng.sample(contrast, min(per_kind // 4, len(contrast)))]
    jobs += [("lone", e, False) for e in answerable]
    jobs += [("lone_cut", e, False) for e in rng.sample(cut, min(per_kind // 2, len(cut)))]
    # Collector 2: SQuAD 2.0's kinds of unanswerable question also over their own paragraph
    # alone (drawn after the others, so the cases above are the same as collector 1's).
    jobs += [("lone_swapped", e, False) for e in rng.sample(swapped, min(per_kind // 4, len(swapped)))]
    jobs += [("lone_contrast", e, False) for e in rng.sample(contrast, min(per_kind // 4, len(contrast)))]
    # Collector 4: a name or number swapped for another of the same paragraph (SQuAD 2.0's
    # writers' way: every word is there and a span of the right kind too); drawn after the
    # above, so they stay collector 2's.
    # Over the paragraph alone only: through retrieval they made the ask() part under-confident
    # on the project's sets (whose unanswerable questions are of other kinds).
    inside = add_inside_swapped_negatives(in_docs, 1.0, rng)
    jobs += [("lone_inside", e, False) for e in rng.sample(inside, min(per_kind // 4, len(inside)))]
    # Collector 5: negated questions, the one kind no training generator makes
    # (:func:`negated_question`); drawn last, so every case above stays collector 4's.
    negated = add_negated_negatives(in_docs, rng)
    jobs += [("lone_negated", e, False) for e in negated[: per_kind // 4]]
    return jobs, indexed


def collect_cases(
    examples: list[QAExample],
    *,
    reader: Any,
    top_k: int,
    per_kind: int,
    seed: int = 7,
    workdir: Path | None = None,
    progress: bool = True,
) -> list[Case]:
    """Run the cases (module docstring; :func:`plan_cases`) through the index and the reader;
    label them."""
    from qa.ingest.documents import Document
    from qa.ingest.indexing import update_index
    from qa.pipeline import load_index, validate_question
    from qa.retrieval.retrievers import get_retriever

    jobs, indexed = plan_cases(examples, per_kind=per_kind, seed=seed)
    # The documents: one per indexed article, its paragraphs in order.
    paragraphs: dict[str, list[str]] = {}
    for e in examples:
        if e.title in indexed:
            ps = paragraphs.setdefault(e.title, [])
            if e.context not in ps:
                ps.append(e.context)
    docs = []
    for title, ps in sorted(paragraphs.items()):
        text = "\n\n".join(ps)
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        docs.append(Document(doc_id=sha[:12], source=title, text=text, sha256=sha))
    root = Path(workdir or tempfile.mkdtemp(prefix="qa-calibrate-"))
    index_dir = root / "index"
    t0 = time.perf_counter()
    update_index(index_dir, docs, rebuild=True, remove_missing=True, show_progress=progress)
    logger.info("indexed %d documents in %.0fs", len(docs), time.perf_counter() - t0)
    retriever = get_retriever(None, load_index(index_dir))

    from tqdm.auto import tqdm

    cases: list[Case] = []
    for kind, ex, retrieve in tqdm(jobs, disable=not progress, unit="q", mininterval=5):
        question = validate_question(ex.question)
        if retrieve:
            passages = retriever.retrieve(question, top_k)
        else:
            passages = [Passage("", ex.title, "", 0, len(ex.context), ex.context, 0.0)]
        candidates, null = reader.candidates(question, passages)
        if not candidates or candidates[0].start >= candidates[0].end:
            continue
        best = candidates[0]
        gold = [t for _, t in ex.answers] if kind in ("answerable", "lone") else []  # every other kind: no answer
        text = passages[best.passage].text[best.start : best.end]
        reading = reading_of(candidates, null, passages)
        cases.append(
            Case(
                question=question,
                kind=kind,
                article=ex.title,
                features=features_of(question, reading),
                right=_label(text, gold),
                answerable=bool(gold),
                part="check" if _bucket(ex.title, "check") < 0.3 else "fit",
                reading=reading,
            )
        )
    return cases


def collect_set_cases(
    sets: dict[str, tuple[Path, Path]], *, reader: Any, top_k: int, workdir: Path | None = None, progress: bool = True
) -> list[Case]:
    """Every question of the question ``sets`` (``name -> (documents folder, questions file)``,
    :func:`qa.tools.bench.question_sets`) asked as ``ask()`` asks it: each set's folder indexed
    alone, the default retriever, ``top_k`` passages, the reader's best span. One case per
    question (``kind`` ``set:NAME``, ``part`` ``sets``), with its gold answers and shown span;
    a question with no span decoded keeps empty features (never answered)."""
    from qa.ingest.indexing import index_folder
    from qa.pipeline import load_index, validate_question
    from qa.retrieval.retrievers import get_retriever
    from qa.tools.evaluation import load_questions

    root = Path(workdir or tempfile.mkdtemp(prefix="qa-calibrate-sets-"))
    cases: list[Case] = []
    for name, (docs, questions) in sorted(sets.items()):
        index_dir = root / name.replace("/", "_")
        index_folder(docs, index_dir, show_progress=False)
        retriever = get_retriever(None, load_index(index_dir))
        for row in load_questions(questions):
            question = validate_question(row["question"])
            answers = [str(a) for a in row["answers"]]
            passages = retriever.retrieve(question, top_k)
            candidates, null = reader.candidates(question, passages) if passages else ([], float("inf"))
            candidates = [c for c in candidates if c.start < c.end]
            span = passages[candidates[0].passage].text[candidates[0].start : candidates[0].end] if candidates else None
            reading = reading_of(candidates, null, passages)
            cases.append(
                Case(
                    question=question, kind=f"set:{name}", article=name, features=features_of(question, reading),
                    right=span is not None and _label(span, answers), answerable=bool(answers), part="sets",
                    reading=reading, answers=answers, span=span,
                )
            )
        if progress:
            logger.info("question set %s: %d questions read", name, sum(c.article == name for c in cases))
    return cases


def sets_fingerprint(sets: dict[str, tuple[Path, Path]]) -> str:
    """A hash of the question sets' names, questions and documents: cached set cases are
    reused only for the same sets."""
    h = hashlib.sha256()
    for name, (docs, questions) in sorted(sets.items()):
        h.update(name.encode() + b"\0" + Path(questions).read_bytes())
        for f in sorted(Path(docs).rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(docs)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _set_probabilities(cases: list[Case], calibrator: Calibrator) -> np.ndarray:
    return np.array([calibrator.probability(c.features) if c.features else 0.0 for c in cases])


def sets_sweep(cases: list[Case], calibrator: Calibrator, thresholds: np.ndarray) -> list[float]:
    """The question sets' pooled overall accuracy at each threshold: an exact-match answer, or
    "I don't know" to an unanswerable question (``qa eval``'s
    :func:`~qa.tools.evaluation.threshold_sweep`, its ``em``)."""
    from qa.tools.evaluation import threshold_sweep

    p = _set_probabilities(cases, calibrator)
    rows = threshold_sweep([(float(s), c.span, c.answers or []) for s, c in zip(p, cases, strict=True)], list(thresholds))
    return [row["em"] or 0.0 for row in rows]


def sets_report(cases: list[Case], calibrator: Calibrator, threshold: float) -> dict[str, Any]:
    """The question sets at ``threshold``: right (exact match, or "I don't know" to an
    unanswerable question) per set and pooled; over the answered, ECE and accuracy (right =
    token F1 >= 0.5); coverage at 80 % accuracy; each set's answerable EM."""
    from qa.tools.evaluation import exact_match

    p = _set_probabilities(cases, calibrator)
    r = np.array([c.right for c in cases], dtype=bool)
    answered = np.array([c.span is not None for c in cases], dtype=bool) & (p >= threshold)
    # What is shown at the threshold, scored as `qa eval` scores it (None: "I don't know").
    ok = np.array([exact_match(c.span if a else None, c.answers or []) == 1.0 for c, a in zip(cases, answered, strict=True)], dtype=bool)
    answerable = np.array([c.answerable for c in cases], dtype=bool)
    per_set = {}
    for name in sorted({c.article for c in cases}):
        sel = np.array([c.article == name for c in cases], dtype=bool)
        per_set[name] = {
            "questions": int(sel.sum()),
            "right": int(ok[sel].sum()),
            "answered": int(answered[sel].sum()),
            "answerable_em": round(float(ok[sel & answerable].mean()), 4) if (sel & answerable).any() else None,
        }
    return {
        "threshold": threshold,
        "questions": len(cases),
        "right": int(ok.sum()),
        "accuracy": round(float(ok.mean()), 4) if cases else None,
        "answered": int(answered.sum()),
        "ece": round(expected_calibration_error(p[answered], r[answered]) or 0.0, 4) if answered.any() else None,
        "accuracy_answered": round(float(r[answered].mean()), 4) if answered.any() else None,
        "coverage_at_80": round(coverage_at_accuracy(p, r), 4) if cases else None,
        "sets": per_set,
    }


#: The thresholds a rule chooses among.
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
#: Means within this of the best tie (the sets' 679 questions move a mean by 0.0007 per answer).
TIE = 0.0005


def choose_with_sets(retrieved: list[dict[str, float]], sets: list[float]) -> tuple[float, list[dict[str, float]]]:
    """The threshold with the best mean of the retrieved check cases' accuracy (``retrieved``:
    :func:`choose_threshold`'s sweep over :data:`THRESHOLDS`) and the question sets' pooled
    accuracy (``sets``, same thresholds); means within :data:`TIE` of the best tie, and ties
    go toward 0.5. Returns it and the sweep with both figures and their mean."""
    sweep = [
        {**row, "sets_accuracy": round(a, 4), "mean": round((row["accuracy"] + a) / 2, 4)}
        for row, a in zip(retrieved, sets, strict=True)
    ]
    best = max(row["mean"] for row in sweep)
    tied = [row for row in sweep if row["mean"] >= best - TIE]
    return min(tied, key=lambda row: abs(row["threshold"] - 0.5))["threshold"], sweep


#: Bumped when the cases collected change (kinds, sampling, what is kept of them); recorded
#: with them and in the calibrator. 3: each case keeps its reading (features recomputed on load);
#: 4: in-paragraph swaps over their own paragraph (``lone_inside``); 5: negated questions over
#: their own paragraph (``lone_negated``), drawn after every case of 4.
COLLECTOR_VERSION = 5
_CASES_FORMAT = "qa-calibration-cases"


def save_cases(path: Path, cases: list[Case], key: dict[str, Any]) -> None:
    """Write the collected cases as JSON Lines (a header with ``key``, then one case a line),
    so a refit with other settings takes seconds instead of reading every case again."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"format": _CASES_FORMAT, "key": key}) + "\n")
        for c in cases:
            fh.write(json.dumps(asdict(c)) + "\n")
    tmp.replace(path)


def load_cases(path: Path, key: dict[str, Any]) -> list[Case] | None:
    """The cases saved at ``path`` when they were collected with ``key``, else ``None``; their
    features recomputed from their readings by this version's
    :func:`~qa.reader.calibration.span_features` (a new feature needs no new reading)."""
    try:
        with open(path, encoding="utf-8") as fh:
            header = json.loads(fh.readline())
            if header.get("format") != _CASES_FORMAT or header.get("key") != key:
                return None
            cases = [Case(**json.loads(line)) for line in fh if line.strip()]
    except (OSError, ValueError, TypeError):
        return None
    if any(c.reading is None for c in cases):
        return None
    for c in cases:
        c.features = features_of(c.question, c.reading)
    return cases


def case_weights(cases: list[Case], unanswerable_share: float | None) -> np.ndarray:
    """How much each case counts: the cases read through retrieval weighted so that
    ``unanswerable_share`` of their weight is on unanswerable questions (the rest on
    answerable ones; their total weight stays their count); ``lone`` cases (a question over
    its own paragraph) count 1. ``None``: every case counts 1 (the mix as drawn)."""
    w = np.ones(len(cases), dtype=np.float64)
    if unanswerable_share is None:
        return w
    if not 0.0 < unanswerable_share < 1.0:
        raise ValueError(f"unanswerable share {unanswerable_share} is not between 0 and 1 (exclusive); e.g. 0.2")
    retrieved = np.array([not c.kind.startswith("lone") for c in cases], dtype=bool)
    unanswerable = np.array([not c.answerable for c in cases], dtype=bool)
    n_un, n_ans = int((retrieved & unanswerable).sum()), int((retrieved & ~unanswerable).sum())
    if n_un and n_ans:  # with only one side there is no mix to set
        total = n_un + n_ans
        w[retrieved & unanswerable] = unanswerable_share * total / n_un
        w[retrieved & ~unanswerable] = (1.0 - unanswerable_share) * total / n_ans
    return w


def choose_threshold(
    probabilities: np.ndarray, right: np.ndarray, answerable: np.ndarray, weights: np.ndarray | None = None
) -> tuple[float, list[dict[str, float]]]:
    """The threshold with the best overall accuracy (a right answer, or "I don't know" to a
    question the documents cannot answer; ``weights``: how much each question counts), and
    the sweep it was chosen from."""
    sweep = []
    if probabilities.size == 0:
        return 0.5, sweep
    w = row_weights(weights, probabilities.size)
    for t in THRESHOLDS:
        answered = probabilities >= t
        accuracy = float(np.average(np.where(answered, right, ~answerable), weights=w))
        sweep.append({"threshold": float(t), "accuracy": round(accuracy, 4), "answered": round(float(np.average(answered, weights=w)), 4)})
    best = max(sweep, key=lambda r: (r["accuracy"], -abs(r["threshold"] - 0.5)))
    return best["threshold"], sweep


def report(cases: list[Case], calibrator: Calibrator, raw: bool = False, weights: np.ndarray | None = None) -> dict[str, Any]:
    """ECE, coverage at 80 % accuracy and accuracy of the answered (each case counting its
    ``weight``), and per kind of case (unweighted: counts)."""
    if not cases:
        return {"cases": 0}
    w = row_weights(weights, len(cases))
    p = np.array([c.features["softmax"] if raw else calibrator.probability(c.features) for c in cases])
    r = np.array([c.right for c in cases], dtype=bool)
    answered = p >= calibrator.threshold
    return {
        "cases": len(cases),
        "ece": round(expected_calibration_error(p[answered], r[answered], weights=w[answered]) or 0.0, 4) if answered.any() else None,
        "ece_all": round(expected_calibration_error(p, r, weights=w) or 0.0, 4),
        "coverage_at_80": round(coverage_at_accuracy(p, r, weights=w), 4),
        "answered": round(float(np.average(answered, weights=w)), 4),
        "accuracy_answered": round(float(np.average(r[answered], weights=w[answered])), 4) if answered.any() else None,
        "by_kind": {
            kind: {"n": int(sel.sum()), "right": round(float(r[sel].mean()), 4), "answered": round(float(answered[sel].mean()), 4)}
            for kind in sorted({c.kind for c in cases})
            if (sel := np.array([c.kind == kind for c in cases])).any()
        },
    }


def calibrate_reader(
    files: list[str],
    *,
    reader_model: str | None = None,
    holdout_percent: float = 5.0,
    per_kind: int = 1200,
    top_k: int | None = None,
    out: Path | None = None,
    progress: bool = True,
    cases_file: Path | None = None,
    unanswerable_share: float | None = None,
    sets: dict[str, tuple[Path, Path]] | None = None,
) -> dict[str, Any]:
    """Fit, check and save the calibrator of ``reader_model`` (default: the shipped reader)
    on the held-out articles of ``files``; returns the report (also saved beside it).

    The threshold ("I don't know" below it) is the best overall accuracy of the check part's
    retrieved cases or, with question ``sets`` (:func:`collect_set_cases`; e.g.
    :func:`qa.tools.bench.question_sets`), the best mean of that and the sets' pooled accuracy
    through ``ask()`` (:func:`choose_with_sets`, the rule releases are calibrated by; the sets'
    figures at it are reported under ``"sets"``). It serves a paragraph read alone too.

    ``unanswerable_share``: the share of unanswerable questions among those read through
    retrieval, fitted and checked for (:func:`case_weights`; default
    ``config.CALIBRATION_UNANSWERABLE_SHARE``).

    ``cases_file``: where the collected cases are kept (JSON Lines); when it holds cases
    collected for the same weights and settings they are reused instead of read again.

    Raises:
        ValueError: no held-out questions left, or a local checkpoint directory is needed.
    """
    from qa import config
    from qa.reader import TransformersReader, locate_checkpoint
    from qa.reader.transformers_reader import forget_calibrator

    share = config.CALIBRATION_UNANSWERABLE_SHARE if unanswerable_share is None else unanswerable_share
    case_weights([], share)  # a bad share is refused before minutes of reading
    reader = TransformersReader(reader_model or config.DEFAULT_READER_MODEL)
    location, _ = locate_checkpoint(reader.model_name)
    checkpoint = Path(location)
    if not (checkpoint / "model.safetensors").is_file():
        raise ValueError(f"{location} is not a local checkpoint with model.safetensors; calibrate a local directory")
    exclude = trained_contexts(checkpoint)
    examples = holdout_examples(files, holdout_percent, exclude)
    if not examples:
        raise ValueError("no held-out questions left: every held-out paragraph was trained on; pass other files or a larger --holdout-percent")
    k = top_k or config.DEFAULT_TOP_K
    # The compute mode reads differ by (onnx-q8, int8, fp32...), and so do the window lengths and
    # the onnx-q8 build's recipe: cached cases are for one of each.
    mode = reader.planned_mode
    from qa.reader.onnx_reader import RECIPE_VERSION

    reading = {"mode": mode, "windows": [reader.max_length, reader.stride], "onnx_recipe": RECIPE_VERSION if mode == "onnx-q8" else None}
    key = {
        "model_sha256": weights_fingerprint(checkpoint), "files": list(files), "holdout_percent": holdout_percent,
        "per_kind": per_kind, "top_k": k, "collector": COLLECTOR_VERSION, **reading,
    }
    cases = load_cases(cases_file, key) if cases_file is not None else None
    if cases is None:
        cases = collect_cases(examples, reader=reader, top_k=k, per_kind=per_kind, progress=progress)
        if cases_file is not None:
            save_cases(cases_file, cases, key)
    set_cases: list[Case] = []
    if sets:
        set_key = {"model_sha256": key["model_sha256"], "sets": sets_fingerprint(sets), "top_k": k, "collector": COLLECTOR_VERSION, **reading}
        set_file = None if cases_file is None else cases_file.with_name(cases_file.stem + ".sets" + cases_file.suffix)
        loaded = load_cases(set_file, set_key) if set_file is not None else None
        if loaded is None:
            loaded = collect_set_cases(sets, reader=reader, top_k=k, progress=progress)
            if set_file is not None:
                save_cases(set_file, loaded, set_key)
        set_cases = loaded
    fit = [c for c in cases if c.part == "fit"]
    check = [c for c in cases if c.part == "check"]
    if not fit:
        raise ValueError("no fitting cases: the reader decoded no span on the held-out questions; pass more or larger files")
    if len({c.right for c in fit}) < 2:
        logger.warning("every fitting case is %s: the calibrator can only learn that", "right" if fit[0].right else "wrong")
    # Two regressions: answers read from retrieved passages (ask(): weighted to ``share``
    # unanswerable, a user's mix) and a paragraph read alone (eval-reader, SQuAD's setting: the
    # mix as drawn, SQuAD 2.0's kinds of unanswerable question among them). One fit on both
    # let the lone cases' hard questions pull ask()'s scores down (session 8: ECE over the
    # project's sets 0.064 -> 0.086). A part without both outcomes cannot be fitted alone.
    retrieved_fit = [c for c in fit if not c.kind.startswith("lone")]
    lone_fit = [c for c in fit if c.kind.startswith("lone")]
    split = all(len({c.right for c in part}) == 2 for part in (retrieved_fit, lone_fit))
    model_fit = retrieved_fit if split else fit
    model = fit_logistic([c.features for c in model_fit], [c.right for c in model_fit], weights=case_weights(model_fit, share))
    lone = fit_logistic([c.features for c in lone_fit], [c.right for c in lone_fit]) if split else None
    in_pipeline = [c for c in check if not c.kind.startswith("lone")]
    chosen_on = "check"
    if not in_pipeline:  # a tiny corpus: say so rather than fail
        in_pipeline, chosen_on = [c for c in fit if not c.kind.startswith("lone")], "fit"
    probs = np.array([model.probability(c.features) for c in in_pipeline])
    threshold, sweep = choose_threshold(
        probs, np.array([c.right for c in in_pipeline], dtype=bool), np.array([c.answerable for c in in_pipeline], dtype=bool),
        case_weights(in_pipeline, share),
    )
    rule = f"best overall accuracy on the {chosen_on} part's retrieved cases ({share:.0%} of their weight unanswerable)"
    if set_cases:
        threshold, sweep = choose_with_sets(sweep, sets_sweep(set_cases, model, THRESHOLDS))
        rule = (
            "best mean of two pooled overall accuracies (a right answer, or 'I don't know' to an unanswerable "
            f"question): the {chosen_on} part's retrieved cases of the training hold-outs (right = token F1 >= "
            f"{RIGHT_F1}, weighted to {share:.0%} unanswerable) and {len(set_cases)} questions of "
            f"{len({c.article for c in set_cases})} question sets through ask() (exact match, reader {reader.name} "
            f"in {mode}, default retriever, top {k}); means within {TIE} of the best tie, and ties go toward 0.5"
        )
    # The lone cases' accuracy at each threshold, for the record: one threshold serves both
    # settings. Session 12 measured a threshold of their own chosen by this sweep (0.5 for
    # release 4.2): SQuAD 2.0 dev F1 53.2 -> 60.4 but HasAns F1 75.0 -> 60.0, so not shipped.
    lone_check = [c for c in check if c.kind.startswith("lone")]
    lone_sweep: list[dict[str, float]] = []
    if lone is not None and lone_check:
        _, lone_sweep = choose_threshold(
            np.array([lone.probability(c.features) for c in lone_check]),
            np.array([c.right for c in lone_check], dtype=bool),
            np.array([c.answerable for c in lone_check], dtype=bool),
        )
    info = {
        "fitted": time.strftime("%Y-%m-%d"),
        "files": files,
        "holdout_percent": holdout_percent,
        "cases": {"fit": len(fit), "check": len(check)},
        "right_f1": RIGHT_F1,
        "collector": COLLECTOR_VERSION,
        "mode": mode,
        "unanswerable_share": share,
        "threshold_choice": {"rule": rule, "sweep": sweep},
        "lone_sweep": lone_sweep,  # the check part's lone cases at each threshold (reported, not chosen on)
    }
    calibrator = Calibrator(
        model.mean, model.scale, model.coef, model.intercept, threshold, weights_fingerprint(checkpoint), info,
        None if lone is None else replace(lone, threshold=threshold),
    )
    check_weights = case_weights(check, share)
    result = {
        "reader": reader.name,
        "threshold": threshold,
        "check": report(check, calibrator, weights=check_weights),
        "check_raw_softmax": report(
            check, Calibrator(model.mean, model.scale, model.coef, model.intercept, 0.5), raw=True, weights=check_weights
        ),
        "check_retrieved": report(in_pipeline, calibrator, weights=case_weights(in_pipeline, share)),
        "check_lone": report([c for c in check if c.kind.startswith("lone")], calibrator),
        "fit": report(fit, calibrator, weights=case_weights(fit, share)),
        "coef": dict(zip(FEATURES, [round(c, 4) for c in model.coef], strict=True)),
        "coef_lone": None if lone is None else dict(zip(FEATURES, [round(c, 4) for c in lone.coef], strict=True)),
    }
    if set_cases:
        result["sets"] = sets_report(set_cases, calibrator, threshold)
    calibrator.info["report"] = {k: result[k] for k in ("check", "check_raw_softmax", "check_retrieved", "check_lone", "sets") if k in result}
    calibrator.save(out or checkpoint / CALIBRATION_FILE)
    forget_calibrator(location)  # readers made from now on in this process use the new file
    return result
