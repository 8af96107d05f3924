"""SQuAD-format data for the reader: loading, negative passages and training features.

Reads SQuAD 1.1 / 2.0 JSON (``.json`` or ``.json.gz``) into flat :class:`QAExample` rows,
adds *negative passages* labelled "no answer" -- exactly what retrieval hands the reader
when it misses -- of three kinds: another paragraph of the same article
(:func:`add_negatives`), the question's own paragraph with the answer's sentence cut out
(:func:`add_cut_negatives`: on topic, same entities, no answer, like SQuAD 2.0's
unanswerable questions), and the best keyword match from another article
(:func:`add_retrieved_negatives`: what a retriever's near miss looks like), and the
question with one name or number swapped for one its paragraph never mentions
(:func:`add_swapped_negatives`: SQuAD 2.0's commonest unanswerable kind) or turned by
an opposite word or an impossible year (:func:`add_contrast_negatives`); misspelt copies of
answerable questions (:func:`add_noisy_positives`); and turns
examples into token windows with start/end labels (standard SQuAD preprocessing: question
+ context windows with a stride; windows without the whole answer point at ``[CLS]``).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from qa.reader.decoding import fold_letters


@dataclass(frozen=True)
class QAExample:
    """One question over one context. ``answers`` is empty for "no answer"."""

    id: str
    question: str
    context: str
    answers: tuple[tuple[int, str], ...]  # (answer_start, text), every gold answer
    article: int = 0  # index of the article in its file, for negatives
    title: str = ""

    @property
    def is_impossible(self) -> bool:
        return not self.answers


def _open_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"SQuAD file {str(path)!r} does not exist; pass a .json or .json.gz file in SQuAD format")
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is not SQuAD JSON ({exc}); expected {{'data': [{{'paragraphs': ...}}]}}") from exc


def load_squad(path: Path | str, *, limit: int | None = None) -> list[QAExample]:
    """Examples of a SQuAD v1.1/v2.0 file in file order (``limit``: the first N questions).

    Raises:
        ValueError: missing file, not JSON, or not SQuAD-shaped.
    """
    data = _open_json(Path(path))
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"{str(path)!r} is not SQuAD JSON: expected a top-level object with a 'data' list")
    out: list[QAExample] = []
    for a, article in enumerate(data["data"]):
        for paragraph in article.get("paragraphs", []):
            context = paragraph["context"]
            for qa in paragraph.get("qas", []):
                answers: tuple[tuple[int, str], ...] = ()
                if not qa.get("is_impossible", False):
                    answers = tuple((int(x["answer_start"]), x["text"]) for x in qa.get("answers", []))
                out.append(QAExample(str(qa["id"]), qa["question"], context, answers, a, article.get("title", "")))
                if limit is not None and len(out) >= limit:
                    return out
    return out


def in_holdout(ex: QAExample, percent: float, *, by_paragraph: bool = False) -> bool:
    """Whether ``ex`` belongs to the held-out share (``percent`` of 100) of its file.

    Decided by a stable hash of the article title (of the context when ``by_paragraph``:
    files that are one big "article", like NQ-QED), so every question of a held-out article
    is held out with it, and training and calibration agree on the split without storing it.
    Held-out articles are never trained on; the confidence calibrator is fitted on them.
    """
    if percent <= 0:
        return False
    key = ex.context if by_paragraph else ex.title
    digest = hashlib.sha256(("holdout:" + key).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 10_000 < percent * 100


def split_holdout(rows: list[QAExample], percent: float) -> tuple[list[QAExample], list[QAExample]]:
    """``rows`` (one file's examples) as (kept for training, held out); see :func:`in_holdout`."""
    by_paragraph = len({r.title for r in rows}) <= 1
    kept, held = [], []
    for r in rows:
        (held if in_holdout(r, percent, by_paragraph=by_paragraph) else kept).append(r)
    return kept, held


def _holds_gold(ex: QAExample, text: str) -> bool:
    """Whether ``text`` contains a gold answer of ``ex`` (case-folded): never a negative then."""
    folded = text.casefold()
    return any(t.casefold() in folded for _, t in ex.answers)


def _picked(examples: list[QAExample], ratio: float, rng: random.Random) -> Iterator[QAExample]:
    """The answerable ``examples``, each with probability ``ratio``, drawn one by one as the
    caller iterates (so a caller's own draws per example keep their place in ``rng``'s
    sequence, and seeded runs stay reproducible)."""
    for ex in examples:
        if not ex.is_impossible and rng.random() < ratio:
            yield ex


def add_negatives(examples: list[QAExample], ratio: float, rng: random.Random) -> list[QAExample]:
    """Pair about ``ratio`` of the answerable questions with another paragraph of their article.

    The other paragraph is labelled "no answer". Paragraphs that contain any gold answer text
    (case-folded) are skipped, so a negative is never secretly answerable by string match.
    """
    if ratio <= 0:
        return []
    by_article: dict[int, list[str]] = {}
    for ex in examples:
        contexts = by_article.setdefault(ex.article, [])
        if not contexts or contexts[-1] != ex.context:
            contexts.append(ex.context)
    negatives = []
    for ex in _picked(examples, ratio, rng):
        others = [c for c in by_article[ex.article] if c != ex.context]
        rng.shuffle(others)
        for other in others[:5]:
            if not _holds_gold(ex, other):
                negatives.append(QAExample(ex.id + "-neg", ex.question, other, (), ex.article, ex.title))
                break
    return negatives


#: Sentence ends: . ! ? (optionally closed by a quote or bracket) followed by white space.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]?\s+")


def add_cut_negatives(examples: list[QAExample], ratio: float, rng: random.Random, *, min_words: int = 25) -> list[QAExample]:
    """About ``ratio`` of the answerable questions over their own paragraph minus the
    sentences that hold a gold answer, labelled "no answer".

    The rest of the paragraph keeps the topic and the entities the question names, so the
    model must learn that "about the same thing" is not "answers it". Skipped when what is
    left is shorter than ``min_words`` words or still contains a gold answer's text.
    """
    if ratio <= 0:
        return []
    out = []
    for ex in _picked(examples, ratio, rng):
        bounds, start = [], 0
        for m in _SENTENCE_END.finditer(ex.context):
            bounds.append((start, m.end()))
            start = m.end()
        bounds.append((start, len(ex.context)))
        spans = [(s, s + len(t)) for s, t in ex.answers]
        kept = [ex.context[a:b] for a, b in bounds if not any(s < b and e > a for s, e in spans)]
        rest = "".join(kept).strip()
        if len(rest.split()) < min_words or _holds_gold(ex, rest):
            continue
        out.append(QAExample(ex.id + "-cut", ex.question, rest, (), ex.article, ex.title))
    return out


def add_retrieved_negatives(examples: list[QAExample], ratio: float, rng: random.Random, *, top: int = 8) -> list[QAExample]:
    """About ``ratio`` of the answerable questions paired with their best BM25 paragraph from
    *another* article that does not contain a gold answer, labelled "no answer".

    A keyword retriever's near miss (same words, other subject) is the hardest negative the
    reader meets in ``ask()``; same-article negatives alone taught it to answer anything that
    mentions the question's words.
    """
    if ratio <= 0:
        return []
    from qa.retrieval.bm25 import BM25Index

    contexts: list[str] = []
    articles: list[int] = []
    seen: dict[str, int] = {}
    for ex in examples:
        if ex.context not in seen:
            seen[ex.context] = len(contexts)
            contexts.append(ex.context)
            articles.append(ex.article)
    index = BM25Index.build(contexts)
    out = []
    for ex in _picked(examples, ratio, rng):
        for row, _ in index.top(ex.question, top):
            if articles[row] != ex.article and not _holds_gold(ex, contexts[row]):
                out.append(QAExample(ex.id + "-hard", ex.question, contexts[row], (), articles[row], ""))
                break
    return out


#: What a question can be pinned to: runs of capitalised words (names) and numbers (years, counts).
_NAME = r"[A-Z][\w'’-]*[a-z][\w'’-]*"
_KEY_TOKEN = re.compile(rf"\b(?:{_NAME}(?:\s+{_NAME})*|\d[\d,.]*\d|\d)\b")
#: Capitalised words that are grammar, not a subject (question words, pronouns...).
_NOT_NAMES = frozenset(
    "what which who whom whose when where why how is are was were do does did the a an in on of "
    "for to by and or i it its this that these those name according".split()
)


def _as_read(text: str) -> str:
    """``text`` as the reader tells words apart: letters folded, case ignored."""
    return fold_letters(text).casefold()


@functools.lru_cache(maxsize=1 << 16)
def _word_pattern(token: str) -> re.Pattern[str]:
    # Cached: preparing the full training mix asks for ~200k tokens, and re's own cache of 512
    # patterns missed nearly every time (a quarter of the in-paragraph swaps' cost was compiling).
    return re.compile(rf"(?<!\w){re.escape(_as_read(token))}(?!\w)")


def _in_text(token: str, read: str) -> bool:
    """Whether ``token`` occurs as a word in ``read`` (a text passed through :func:`_as_read`)."""
    return _word_pattern(token).search(read) is not None


def _pinned(token: str, context: str, answers: list[str]) -> bool:
    """Whether a question is pinned to ``token``: its paragraph mentions it and no gold
    answer does (all texts through :func:`_as_read`). Only such a token can be changed to
    make the question one its paragraph no longer answers."""
    return _in_text(token, context) and not any(_in_text(token, t) for t in answers)


def _pinned_keys(ex: QAExample, context: str) -> list[re.Match[str]]:
    """The names and numbers of ``ex.question`` (not its first word) that pin it to its
    paragraph (``context`` through :func:`_as_read`): what a swap may change."""
    answers = [_as_read(t) for _, t in ex.answers]
    return [
        m
        for m in _KEY_TOKEN.finditer(ex.question)
        if m.start() > 0 and m.group().casefold() not in _NOT_NAMES and _pinned(m.group(), context, answers)
    ]


def _swap_for(token: str, context: str, names: list[tuple[int, str]], article: int, rng: random.Random) -> str | None:
    """A replacement for ``token`` of the same kind that ``context`` (through :func:`_as_read`)
    never mentions, or None."""
    for _ in range(8):
        if token[0].isdigit():
            digits = token.replace(",", "")
            if not digits.isdigit():
                return None
            value = int(digits)
            if 1000 <= value <= 2100 and len(digits) == 4:  # a year: another year nearby
                other = str(value + rng.choice([-1, 1]) * rng.randint(2, 40))
            else:  # a count or amount: another of the same magnitude
                other = str(max(1, value + rng.choice([-1, 1]) * rng.randint(1, max(2, value // 2))))
        else:
            other_article, other = names[rng.randrange(len(names))]
            if other_article == article:
                continue
        if other.casefold() != token.casefold() and not _in_text(other, context):
            return other
    return None


def add_swapped_negatives(examples: list[QAExample], ratio: float, rng: random.Random) -> list[QAExample]:
    """About ``ratio`` of the answerable questions with one name or number swapped for one the
    paragraph never mentions, over their own paragraph, labelled "no answer".

    "When did Beyoncé leave Destiny's Child?" becomes "When did Beyoncé leave Arsenal?":
    every other word still matches, so the model must check that what the question is about
    is what the passage says -- SQuAD 2.0's commonest unanswerable kind (entity swap), and
    what a user's question about a thing the documents never mention looks like. Only tokens
    the paragraph itself contains are swapped (the question is pinned to them); names come
    from other articles' questions, numbers are moved (years by 2-40).
    """
    if ratio <= 0:
        return []
    names: list[tuple[int, str]] = []
    for ex in examples:
        for m in _KEY_TOKEN.finditer(ex.question):
            word = m.group()
            if m.start() > 0 and not word[0].isdigit() and word.casefold() not in _NOT_NAMES:
                names.append((ex.article, word))
    if len({a for a, _ in names}) < 2:
        return []
    out = []
    for ex in _picked(examples, ratio, rng):
        context = _as_read(ex.context)
        keys = _pinned_keys(ex, context)
        if not keys:
            continue
        m = rng.choice(keys)
        other = _swap_for(m.group(), context, names, ex.article, rng)
        if other is None:
            continue
        question = ex.question[: m.start()] + other + ex.question[m.end() :]
        out.append(QAExample(ex.id + "-swap", question, ex.context, (), ex.article, ex.title))
    return out


def _kind(token: str) -> str:
    """What a key token is, for swapping like for like: ``year``, ``number`` or ``name``."""
    digits = token.replace(",", "")
    if digits.isdigit():
        return "year" if len(digits) == 4 and 1000 <= int(digits) <= 2100 else "number"
    return "name" if not token[0].isdigit() else "other"


def _inside_swap_for(token: str, ex: QAExample, rng: random.Random) -> str | None:
    """Another name or number of ``ex``'s own paragraph, of ``token``'s kind, for an
    in-paragraph swap, or None. Left out, because the swapped question might still be
    answered: words that start a sentence (capitalised as such, not names), anything in the
    question, in or around a gold answer, in a sentence that holds a gold answer, or sharing
    the token's first four letters ("Spain" for "Spanish")."""
    question = _as_read(ex.question)
    answers = [_as_read(t) for _, t in ex.answers]
    answer_sentences = [_as_read(_sentence_at(ex.context, start)) for start, _ in ex.answers]
    kind, stem = _kind(token), _as_read(token)[:4]
    pool = set()
    for c in _KEY_TOKEN.finditer(ex.context):
        word = c.group()
        before = ex.context[: c.start()].rstrip()
        if not before or before[-1] in ".!?\"'”:" or word.casefold() in _NOT_NAMES or _kind(word) != kind:
            continue
        read = _as_read(word)
        if read[:4] == stem or _in_text(word, question) or any(_in_text(word, t) or _in_text(t, read) for t in answers):
            continue
        if any(_in_text(word, sentence) for sentence in answer_sentences):
            continue
        pool.add(word)
    return rng.choice(sorted(pool)) if pool else None


def add_inside_swapped_negatives(examples: list[QAExample], ratio: float, rng: random.Random) -> list[QAExample]:
    """About ``ratio`` of the answerable questions with one name or number swapped for
    another of the *same* paragraph, over that paragraph, labelled "no answer".

    "When did Tokyo become the capital?" over a paragraph that also names Kyoto becomes "When
    did Kyoto become the capital?": every word is in the paragraph, and a span of the right
    kind sits right there, so matching words is not enough -- the model must check what the
    paragraph says of whom. Entity swap is SQuAD 2.0's commonest kind of unanswerable
    question (21 % in its paper), often with a name of the same paragraph;
    :func:`add_swapped_negatives`' names from other articles are easier (release
    4.1 answered 10 % of those but 72 % of these, near its 70 % on SQuAD 2.0 dev's
    unanswerable questions). The replacement never comes from a sentence that holds a gold
    answer (see :func:`_inside_swap_for`).
    """
    if ratio <= 0:
        return []
    out = []
    for ex in _picked(examples, ratio, rng):
        keys = _pinned_keys(ex, _as_read(ex.context))
        if not keys:
            continue
        m = rng.choice(keys)
        other = _inside_swap_for(m.group(), ex, rng)
        if other is None:
            continue
        question = ex.question[: m.start()] + other + ex.question[m.end() :]
        out.append(QAExample(ex.id + "-inside", question, ex.context, (), ex.article, ex.title))
    return out


#: Roles a question can ask about, in groups of like roles. "Who is the defense minister of
#: Japan?" over a paragraph that names only Japan's defense minister becomes "Who is the prime
#: minister of Japan?": the country and the kind of answer still match, so only reading which
#: role the paragraph gives whom tells that it no longer answers (release 4.1 answered the seed
#: article's "prime minister" question with the defense minister at 0.88).
_ROLE_GROUPS: tuple[tuple[str, ...], ...] = (
    (
        "prime minister/premier", "president", "vice president", "defense minister/defence minister",
        "foreign minister", "finance minister", "interior minister", "king", "queen", "emperor",
        "governor", "mayor", "chancellor", "ambassador", "senator", "secretary of state",
    ),
    (
        "ceo/chief executive/chief executive officer", "chairman/chairwoman/chairperson",
        "founder/co-founder/cofounder", "owner", "chief financial officer/cfo",
        "chief operating officer/coo", "head coach",
    ),
    (
        "author/writer", "director", "composer", "lyricist", "editor", "publisher",
        "architect", "designer", "illustrator", "narrator", "screenwriter",
    ),
    (
        "father", "mother", "son", "daughter", "wife", "husband", "brother", "sister", "grandfather",
        "grandmother", "uncle", "aunt",
    ),
    ("gold medal", "silver medal", "bronze medal"),
)
#: Each spelling of a role -> (its group, its spellings): one role's spellings ("defence
#: minister" for "defense minister") are never swapped for each other.
_ROLE_OF: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    spelling: (group, tuple(role.split("/")))
    for group in _ROLE_GROUPS
    for role in group
    for spelling in role.split("/")
}
_ACRONYMS = frozenset({"ceo", "cfo", "coo"})
#: Longest first, so "vice president" is one role rather than "president" after "vice".
_ROLE_WORD = re.compile(
    r"(?<![\w-])(?:" + "|".join(re.escape(r) for r in sorted(_ROLE_OF, key=len, reverse=True)) + r")(?![\w-])",
    re.IGNORECASE,
)


def add_role_swapped_negatives(examples: list[QAExample], ratio: float, rng: random.Random) -> list[QAExample]:
    """About ``ratio`` of the answerable questions that ask about a role ("prime minister",
    "founder", "father", "gold medal"; :data:`_ROLE_GROUPS`) asked about another role of its
    group that their paragraph never mentions, over that paragraph, labelled "no answer".

    The role must pin the question to its paragraph (the paragraph mentions it, no gold answer
    holds it) and the new role must appear nowhere in the paragraph (as a word: "president" is
    in "vice president"), so the paragraph cannot say who holds it. Questions without a role
    make nothing; most questions have none, so the yield is a few percent of ``ratio``.
    """
    return _edited_negatives(examples, ratio, rng, "-role", _role_edits)


def _role_edits(ex: QAExample, context: str, answers: list[str], rng: random.Random) -> list[str]:
    """Every role swap of ``ex.question`` (see :func:`add_role_swapped_negatives`)."""
    edits: list[str] = []
    for m in _ROLE_WORD.finditer(ex.question):
        role = m.group()
        # A title before a name ("President Obama", "Son Heung-min") is part of the name.
        if not _pinned(role, context, answers) or re.match(r"\s+[A-Z]", ex.question[m.end() :]):
            continue
        group, spellings = _ROLE_OF[role.lower()]
        for entry in group:
            others = tuple(entry.split("/"))
            if others == spellings or any(_in_text(o, context) for o in others):
                continue
            other = others[0]
            if other in _ACRONYMS:
                other = other.upper()
            elif role[0].isupper():
                other = other.capitalize()
            before = ex.question[: m.start()]
            article = re.search(r"\b(an?)\s+$", before, re.IGNORECASE)
            if article:  # "an author" -> "a composer"
                fixed = "an" if other[0].lower() in "aeiou" else "a"
                fixed = fixed.capitalize() if article.group(1)[0].isupper() else fixed
                before = before[: article.start(1)] + fixed + before[article.end(1) :]
            edits.append(before + other + ex.question[m.end() :])
    return edits


#: Words whose opposite turns a question into one its paragraph no longer answers
#: ("Who was the *first* ..." over a paragraph that only names the first). Both directions.
_OPPOSITES = dict(
    pair
    for a, b in (
        ("first", "last"), ("earliest", "latest"), ("largest", "smallest"), ("biggest", "smallest"),
        ("highest", "lowest"), ("longest", "shortest"), ("oldest", "youngest"), ("older", "younger"),
        ("most", "least"), ("maximum", "minimum"), ("before", "after"), ("above", "below"),
        ("increase", "decrease"), ("increased", "decreased"), ("north", "south"), ("northern", "southern"),
        ("east", "west"), ("eastern", "western"), ("best", "worst"), ("won", "lost"), ("win", "lose"),
        ("began", "ended"), ("rise", "fall"), ("rose", "fell"), ("larger", "smaller"), ("higher", "lower"),
        ("major", "minor"), ("inside", "outside"), ("ancient", "modern"), ("positive", "negative"),
        ("import", "export"), ("imported", "exported"), ("allowed", "banned"), ("supported", "opposed"),
        ("strongest", "weakest"), ("richest", "poorest"), ("fastest", "slowest"), ("cheapest", "costliest"),
    )
    for pair in ((a, b), (b, a))
)
_OPPOSITE_WORD = re.compile(r"\b(?:" + "|".join(sorted(_OPPOSITES, key=len, reverse=True)) + r")\b", re.IGNORECASE)
_YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")


def _sentence_at(text: str, pos: int) -> str:
    """The sentence of ``text`` that holds character ``pos``."""
    start = 0
    for m in _SENTENCE_END.finditer(text):
        if m.end() > pos:
            return text[start : m.end()]
        start = m.end()
    return text[start:]


def add_contrast_negatives(examples: list[QAExample], ratio: float, rng: random.Random) -> list[QAExample]:
    """About ``ratio`` of the answerable questions turned into near copies their paragraph
    does not answer, over that paragraph, labelled "no answer" -- SQuAD 2.0's antonym and
    impossible-condition kinds, which entity swaps do not cover.

    Two edits:

    * *opposite*: one word the paragraph uses, swapped for its opposite that the paragraph
      never uses ("first" -> "last", "north" -> "south", "won" -> "lost");
    * *condition*: when there is no opposite to use, a year the paragraph never mentions
      appended as "in YEAR" to a question about a past event ("did", "was") whose answer's
      sentence dates it (holds a year), unless the question already names a year or asks
      for a date.
    """
    return _edited_negatives(examples, ratio, rng, "-contrast", _contrast_edits)


def _contrast_edits(ex: QAExample, context: str, answers: list[str], rng: random.Random) -> list[str]:
    """The opposite-word edits of ``ex.question``, else its impossible-year edit (see
    :func:`add_contrast_negatives`)."""
    edits: list[str] = []
    for m in _OPPOSITE_WORD.finditer(ex.question):
        word = m.group()
        opposite = _OPPOSITES[word.lower()]
        if _pinned(word, context, answers) and not _in_text(opposite, context):
            if word[0].isupper():
                opposite = opposite.capitalize()
            edits.append(ex.question[: m.start()] + opposite + ex.question[m.end() :])
    if not edits:  # an opposite is the cleaner edit: a year only when there is none
        year_edit = _impossible_year(ex, context, rng)
        edits = [year_edit] if year_edit else []
    return edits


def _edited_negatives(
    examples: list[QAExample],
    ratio: float,
    rng: random.Random,
    suffix: str,
    edits_for: Callable[[QAExample, str, list[str], random.Random], list[str]],
) -> list[QAExample]:
    """About ``ratio`` of the answerable questions, each rewritten by one of the edits
    ``edits_for(example, context, answers, rng)`` proposes (context and answers through
    :func:`_as_read`), drawn at random, over its own paragraph, labelled "no answer"; id
    ``example.id + suffix``. A question with no edit makes nothing."""
    if ratio <= 0:
        return []
    out = []
    for ex in _picked(examples, ratio, rng):
        edits = edits_for(ex, _as_read(ex.context), [_as_read(t) for _, t in ex.answers], rng)
        if edits:
            out.append(QAExample(ex.id + suffix, rng.choice(edits), ex.context, (), ex.article, ex.title))
    return out


def _impossible_year(ex: QAExample, context: str, rng: random.Random) -> str | None:
    """``ex``'s question with "in YEAR" appended, a year its paragraph (``context``, through
    :func:`_as_read`) never names near the one its answer's sentence dates the fact by; None
    when the question is not about a dated past event or already names or asks for a date."""
    years = [int(y) for y in _YEAR.findall(_sentence_at(ex.context, ex.answers[0][0]))]
    question = ex.question.rstrip().rstrip("?").rstrip()
    if not (
        years
        and question
        and not _YEAR.search(ex.question)
        and not any(_YEAR.search(t) for _, t in ex.answers)  # not a question that asks for a date
        and not re.match(r"(?i)\s*(?:when|what year|in what year|which year|how long)\b", question)
        and not question.lower().endswith(" in")
        and re.search(r"(?i)\b(?:did|was|were|had)\b", question)  # a past event, which a year pins
    ):
        return None
    for _ in range(8):
        # A year the paragraph never names, near the fact's own and not in the future.
        base, shift = rng.choice(years), rng.randint(3, 60)
        year = str(base + shift if base + shift <= 2024 else base - shift)
        if not _in_text(year, context):
            return f"{question} in {year}?"
    return None


def _typo(word: str, rng: random.Random) -> str:
    """``word`` with one slip of the keyboard: a letter dropped, doubled, or two swapped."""
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i] + word[i:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def add_noisy_positives(examples: list[QAExample], ratio: float, rng: random.Random) -> list[QAExample]:
    """About ``ratio`` of the answerable questions again, with one word of five or more letters
    misspelt (a letter dropped, doubled or two swapped), keeping their answers.

    Users type "Kizilelma" and "recieve"; swapped negatives alone teach that a question word
    the paragraph lacks means "no answer", so these copies teach that a near spelling of a
    word the paragraph has is still that word.
    """
    if ratio <= 0:
        return []
    out = []
    for ex in _picked(examples, ratio, rng):
        words = [m for m in re.finditer(r"[^\W\d_]{5,}", ex.question)]
        if not words:
            continue
        m = rng.choice(words)
        question = ex.question[: m.start()] + _typo(m.group(), rng) + ex.question[m.end() :]
        out.append(QAExample(ex.id + "-typo", question, ex.context, ex.answers, ex.article, ex.title))
    return out


@dataclass
class Feature:
    """One training window: token ids and the answer's token positions (0, 0 = no answer)."""

    input_ids: list[int]
    token_type_ids: list[int]
    start: int
    end: int
    example: int = field(default=-1)  # index of its example


def make_features(
    examples: list[QAExample], tokenizer: Any, *, max_length: int = 256, stride: int = 96, batch: int = 512
) -> list[Feature]:
    """Tokenise examples into labelled windows (first gold answer is the training target).

    The windows are the reader's own (:meth:`qa.reader.windows.WindowTokenizer.windows`, over
    letter-folded text: same length, so offsets hold for the original context), so training
    sees exactly what answering will. ``tokenizer``: a ``WindowTokenizer`` or a ``transformers``
    fast tokenizer. A window's label is the token range covering the answer's characters when
    the whole answer lies inside the window's context; otherwise ``(0, 0)``, the ``[CLS]`` token.
    """
    from qa.reader.windows import WindowTokenizer

    windows = WindowTokenizer.of(tokenizer)
    features: list[Feature] = []
    for b in range(0, len(examples), batch):
        chunk = examples[b : b + batch]
        enc = windows.windows(
            [fold_letters(e.question.strip()) for e in chunk], [fold_letters(e.context) for e in chunk],
            max_length=max_length, stride=stride,
        )
        for r in range(len(enc)):
            w = enc.row(r)
            i = int(w.sample[0])
            ex = chunk[i]
            offsets = w.offsets[0]
            start = end = 0
            if ex.answers:
                a_start, text = ex.answers[0]
                a_end = a_start + len(text)
                ctx = np.flatnonzero(w.context[0])
                if len(ctx) and offsets[ctx[0]][0] <= a_start and offsets[ctx[-1]][1] >= a_end:
                    start = int(next(t for t in ctx if offsets[t][1] > a_start))
                    end = int(next(t for t in reversed(ctx) if offsets[t][0] < a_end))
            ids = w.input_ids[0].tolist()
            types = w.token_type_ids[0].tolist() if w.token_type_ids is not None else [0] * len(ids)
            features.append(Feature(ids, types, start, end, b + i))
    return features


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random, *, group: int = 64) -> list[list[int]]:
    """Batches of similar length (little padding), in random order.

    Shuffles all indices, sorts each run of ``group * batch_size`` by length, cuts batches,
    then shuffles the batches: the randomness of plain shuffling, the padding of sorting.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    span = group * batch_size
    for g in range(0, len(order), span):
        part = sorted(order[g : g + span], key=lambda i: lengths[i])
        batches.extend(part[k : k + batch_size] for k in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches
