"""SQuAD data for the reader: loading, negative passages and labelled windows (golden tests)."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from qa.reader.squad import (
    QAExample,
    add_contrast_negatives,
    add_cut_negatives,
    add_negatives,
    add_noisy_positives,
    add_retrieved_negatives,
    add_inside_swapped_negatives,
    add_role_swapped_negatives,
    add_swapped_negatives,
    length_grouped_batches,
    load_squad,
    make_features,
)

CONTEXT = "The Kızılelma is an unmanned combat aircraft. Baykar builds it in Turkey’s Istanbul region."
OTHER = "Ankara is the capital of Turkey. It hosts the parliament."


def squad_file(path: Path, *, v2: bool = False, gz: bool = False) -> Path:
    qas = [
        {"id": "q1", "question": "Who builds the Kızılelma?", "answers": [{"text": "Baykar", "answer_start": CONTEXT.index("Baykar")}]},
        {"id": "q2", "question": "Where is it built?", "answers": [{"text": "Turkey’s Istanbul region", "answer_start": CONTEXT.index("Turkey’s")}]},
    ]
    if v2:
        qas.append({"id": "q3", "question": "When was Baykar founded?", "answers": [], "is_impossible": True})
    data = {"version": "v2.0" if v2 else "1.1", "data": [{"title": "Drones", "paragraphs": [{"context": CONTEXT, "qas": qas}, {"context": OTHER, "qas": []}]}]}
    text = json.dumps(data, ensure_ascii=False)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201 - transformers tokenizer
    from transformers import AutoTokenizer

    from embeddings.encoders.encoder import packaged_minilm_path

    return AutoTokenizer.from_pretrained(packaged_minilm_path())


def test_load_squad_v1_v2_and_gzip(tmp_path: Path) -> None:
    v1 = load_squad(squad_file(tmp_path / "a.json"))
    assert [e.id for e in v1] == ["q1", "q2"] and v1[0].answers == ((CONTEXT.index("Baykar"), "Baykar"),)
    v2 = load_squad(squad_file(tmp_path / "b.json.gz", v2=True, gz=True))
    assert [e.is_impossible for e in v2] == [False, False, True]
    assert len(load_squad(tmp_path / "b.json.gz", limit=1)) == 1


def test_load_squad_bad_input_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_squad(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="not SQuAD JSON"):
        load_squad(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="'data' list"):
        load_squad(tmp_path / "y.json")


def test_answer_token_positions_are_exact(tmp_path: Path, tokenizer) -> None:  # noqa: ANN001
    examples = load_squad(squad_file(tmp_path / "a.json"))
    features = make_features(examples, tokenizer, max_length=128, stride=32)
    assert len(features) == 2
    for f, ex in zip(features, examples, strict=True):
        piece = tokenizer.decode(f.input_ids[f.start : f.end + 1])
        # Uncased word pieces: the labelled tokens spell the answer, no more and no less.
        assert piece.replace(" ’ ", "’").replace(" ", "") == ex.answers[0][1].lower().replace(" ", "").replace("ı", "i")
        assert f.start > 0 and f.token_type_ids[f.start] == 1
    golden = features[0]
    assert (golden.start, golden.end) == (tokenizer.convert_ids_to_tokens(golden.input_ids).index("bay"), tokenizer.convert_ids_to_tokens(golden.input_ids).index("##kar"))


def test_windows_without_the_answer_point_at_cls(tokenizer) -> None:  # noqa: ANN001
    context = "Filler sentence about nothing in particular. " * 30 + "The answer is Zanzibar."
    ex = QAExample("z", "What is the answer?", context, ((context.index("Zanzibar"), "Zanzibar"),))
    features = make_features([ex], tokenizer, max_length=64, stride=16)
    assert len(features) > 3
    labelled = [f for f in features if (f.start, f.end) != (0, 0)]
    assert len(labelled) >= 1 and all(tokenizer.decode(f.input_ids[f.start : f.end + 1]) == "zanzibar" for f in labelled)
    assert features[0].start == features[0].end == 0  # the first window cannot see the answer
    assert all(f.example == 0 for f in features)


def test_unanswerable_v2_questions_are_labelled_cls(tmp_path: Path, tokenizer) -> None:  # noqa: ANN001
    examples = load_squad(squad_file(tmp_path / "b.json", v2=True))
    features = make_features(examples, tokenizer, max_length=128, stride=32)
    assert [(f.start, f.end) for f in features][2] == (0, 0)


def test_negatives_come_from_the_same_article_and_never_hold_the_answer(tmp_path: Path) -> None:
    examples = load_squad(squad_file(tmp_path / "a.json"))
    other_article = QAExample("o", "What is Ankara?", "Istanbul is large. Baykar is a company.", ((19, "Baykar"),), article=7)
    negatives = add_negatives(examples + [other_article], 1.0, random.Random(0))
    # q1 and q2 pair with the other paragraph of their article; article 7 has no other paragraph.
    assert {n.id for n in negatives} <= {"q1-neg", "q2-neg"}
    assert all(n.is_impossible and n.context != CONTEXT for n in negatives)
    assert add_negatives(examples, 0.0, random.Random(0)) == []
    # A paragraph that contains the gold answer text is never used as a negative.
    holder = [QAExample("h", "Who?", "Baykar builds drones.", ((0, "Baykar"),), 1), QAExample("g", "Where?", "Baykar is in Istanbul.", ((0, "Baykar"),), 1)]
    assert add_negatives(holder, 1.0, random.Random(0)) == []


LONG = (
    "The Kızılelma is an unmanned combat aircraft designed for carrier decks and long patrols. "
    "Baykar builds it in a large new plant near Istanbul. "
    "Its first flight took place in December 2022 after three years of design work and ground tests. "
    "The aircraft carries its weapons internally to keep a low radar signature on every mission!"
)


def test_cut_negatives_drop_exactly_the_answer_sentence() -> None:
    ex = QAExample("c", "Who builds the Kızılelma?", LONG, ((LONG.index("Baykar"), "Baykar"),), 3, "Drones")
    (neg,) = add_cut_negatives([ex], 1.0, random.Random(0), min_words=10)
    assert neg.id == "c-cut" and neg.is_impossible and neg.article == 3
    assert neg.context == LONG.replace("Baykar builds it in a large new plant near Istanbul. ", "")
    assert add_cut_negatives([ex], 0.0, random.Random(0)) == []
    # Too little left, or the answer text still occurs elsewhere: no negative.
    assert add_cut_negatives([ex], 1.0, random.Random(0), min_words=60) == []
    twice = LONG + " Baykar also exports it."
    holder = QAExample("d", "Who builds the Kızılelma?", twice, ((twice.index("Baykar"), "Baykar"),))
    assert add_cut_negatives([holder], 1.0, random.Random(0), min_words=10) == []


def test_retrieved_negatives_are_keyword_matches_from_other_articles() -> None:
    q = QAExample("r", "Which company builds the Kızılelma aircraft?", CONTEXT, ((CONTEXT.index("Baykar"), "Baykar"),), 0)
    near = QAExample("n", "What is it?", "The Kızılelma aircraft was shown at an air show in Ankara.", ((4, "Kızılelma"),), 1)
    same = QAExample("s", "What?", "The Kızılelma aircraft flies fast over the Kızılelma aircraft range.", ((4, "Kızılelma"),), 0)
    far = QAExample("f", "What?", "Bread is baked in ovens.", ((0, "Bread"),), 2)
    negs = {n.id: n for n in add_retrieved_negatives([q, near, same, far], 1.0, random.Random(0))}
    # The question's best match in another article, never its own article, never one holding the answer.
    assert negs["r-hard"].context == near.context and negs["r-hard"].is_impossible and negs["r-hard"].article == 1
    assert add_retrieved_negatives([q, near], 0.0, random.Random(0)) == []


def test_swapped_negatives_change_one_name_or_number_the_paragraph_holds() -> None:
    ctx = "Baykar first flew the Kızılelma in December 2022 near Istanbul."
    q = QAExample("w", "Where did Baykar fly the Kızılelma in 2022?", ctx, ((ctx.index("Istanbul"), "Istanbul"),), 0)
    other = QAExample("o", "Who rules Portugal and Brazil?", "Portugal ...", ((0, "Portugal"),), 1)
    same_article = QAExample("s", "Is Ankara the capital?", ctx, ((0, "Baykar"),), 0)
    seen = set()
    for seed in range(40):
        negs = [n for n in add_swapped_negatives([q, other, same_article], 1.0, random.Random(seed)) if n.id == "w-swap"]
        if not negs:
            continue
        (neg,) = negs
        assert neg.is_impossible and neg.context == ctx and neg.article == 0
        before, after = q.question.split(), neg.question.split()
        changed = {(a, b) for a, b in zip(before, after, strict=False) if a != b}  # lengths differ when a two-word name came in
        if len(before) == len(after):
            assert len(changed) == 1
            old, new = changed.pop()
            # Only what the paragraph mentions is swapped, for something it never mentions:
            # a name from another article (never "Ankara", from the same one) or a moved year.
            assert old.rstrip("?") in {"Baykar", "Kızılelma", "2022"}
            new = new.rstrip("?")
            assert new not in ctx and new != "Ankara"
            assert new in {"Portugal", "Brazil"} or (new.isdigit() and 1982 <= int(new) <= 2062)
            seen.add(old.rstrip("?"))
        else:  # a two-word name came in
            assert "Portugal and Brazil" not in neg.question
    assert len(seen) >= 2  # the choice of what to swap varies with the seed
    assert add_swapped_negatives([q, other], 0.0, random.Random(0)) == []
    # A question the paragraph is not pinned to (no name or number of it) is left alone.
    loose = QAExample("l", "What flew over the sea?", ctx, ((0, "Baykar"),), 0)
    assert add_swapped_negatives([loose, other], 1.0, random.Random(0)) == []


def test_inside_swaps_take_a_name_or_number_of_the_same_paragraph_never_the_answers_sentence() -> None:
    ctx = (
        "Tokyo became the capital of Japan in 1868, when the emperor moved there. "
        "Before that, Kyoto had been the seat of the court for a thousand years, and Edo the seat of the Shogun. "
        "Visitors to Nara and Osaka often come by train since 1964."
    )
    q = QAExample("t", "When did Tokyo become the capital of Japan?", ctx, ((ctx.index("1868"), "1868"),), 0)
    made = set()
    for seed in range(40):
        (neg,) = add_inside_swapped_negatives([q], 1.0, random.Random(seed))
        assert neg.is_impossible and neg.context == ctx and neg.id == "t-inside"
        before, after = q.question.split(), neg.question.split()
        (old, new), = {(a, b) for a, b in zip(before, after, strict=True) if a != b}
        # Only what pins the question to the paragraph is swapped ("Tokyo", "Japan"), for a
        # name of the same paragraph outside the answer's sentence: never "Before" (it starts
        # a sentence), never a year (not a name), never "Japan" for "Tokyo" (in the question).
        assert old in {"Tokyo", "Japan?"} and new.rstrip("?") in {"Kyoto", "Edo", "Shogun", "Nara", "Osaka"}
        made.add(neg.question)
    assert len(made) >= 4  # the choice varies with the seed
    # A year is swapped for another year of the paragraph (1964), never the answer's 1868.
    y = QAExample("y", "Who moved to Tokyo in 1868?", ctx, ((ctx.index("the emperor"), "the emperor"),), 0)
    years = {n.question for seed in range(40) for n in add_inside_swapped_negatives([y], 1.0, random.Random(seed))}
    names = ("Kyoto", "Edo", "Shogun", "Nara", "Osaka")
    assert "Who moved to Tokyo in 1964?" in years and years <= {"Who moved to Tokyo in 1964?", *(f"Who moved to {n} in 1868?" for n in names)}
    # Nothing of its kind elsewhere in the paragraph: no swap.
    lone = "Baykar first flew the Kizilelma in December 2022."
    only = QAExample("o", "When did Baykar first fly the Kizilelma?", lone, ((lone.index("December 2022"), "December 2022"),), 0)
    assert add_inside_swapped_negatives([only], 1.0, random.Random(0)) == []
    assert add_inside_swapped_negatives([q], 0.0, random.Random(0)) == []



def test_role_swaps_ask_about_a_role_of_the_same_kind_the_paragraph_never_mentions() -> None:
    ctx = (
        "Japanese Defense Minister Gen Nakatani met his Turkish counterpart Yasar Guler in Ankara. "
        "The president of Turkey was abroad, and the foreign minister joined them."
    )
    q = QAExample("t", "Who is the defense minister of Japan?", ctx, ((ctx.index("Gen Nakatani"), "Gen Nakatani"),), 0)
    made = {n.question for seed in range(80) for n in add_role_swapped_negatives([q], 1.0, random.Random(seed))}
    assert "Who is the prime minister of Japan?" in made and "Who is the mayor of Japan?" in made
    # Never a role the paragraph names ("president", "foreign minister") or another spelling of
    # the same role ("defence minister"); "vice president" may come in: the paragraph never says it.
    roles = {m.removeprefix("Who is the ").removesuffix(" of Japan?") for m in made}
    assert roles.isdisjoint({"president", "foreign minister", "defence minister", "defense minister"})
    assert "vice president" in roles and all(r.islower() for r in roles)
    (neg,) = add_role_swapped_negatives([q], 1.0, random.Random(0))
    assert neg.is_impossible and neg.context == ctx and neg.id == "t-role"
    # "an author" becomes "a composer" (the article follows the new role); a title before a
    # name is part of the name, and a role no sentence mentions pins nothing: no swap.
    book = "The author wrote the novel in 1960. An editor read the draft."
    a = QAExample("a", "What did an author write in 1960?", book, ((book.index("the novel"), "the novel"),), 0)
    swaps = {n.question for seed in range(80) for n in add_role_swapped_negatives([a], 1.0, random.Random(seed))}
    assert "What did a composer write in 1960?" in swaps and "What did an architect write in 1960?" in swaps
    assert not any("editor" in s or "an composer" in s for s in swaps)
    visit = "President Erdogan visited in 2020."
    titled = QAExample("p", "When did President Erdogan visit?", visit, ((visit.index("2020"), "2020"),), 0)
    unpinned = QAExample("u", "Who is the mayor of Ankara?", ctx, ((ctx.index("Yasar Guler"), "Yasar Guler"),), 0)
    assert add_role_swapped_negatives([titled, unpinned], 1.0, random.Random(0)) == []
    assert add_role_swapped_negatives([q], 0.0, random.Random(0)) == []

def test_contrast_negatives_turn_a_word_to_its_opposite_the_paragraph_never_uses() -> None:
    ctx = "The first flight of the drone took place in 2022. It flew north of the city."
    q = QAExample("c", "When was the first flight?", ctx, ((ctx.index("2022"), "2022"),), 0)
    (neg,) = add_contrast_negatives([q], 1.0, random.Random(0))
    assert neg.id == "c-contrast" and neg.is_impossible and neg.context == ctx
    assert neg.question == "When was the last flight?"
    # Capitalised words keep their case; the paragraph holding the opposite rules the edit out.
    q2 = QAExample("n", "North of what did it fly?", ctx, ((ctx.index("the city"), "the city"),), 0)
    assert [n.question for n in add_contrast_negatives([q2], 1.0, random.Random(0))] == ["South of what did it fly?"]
    both = "The first and the last flights were in May."
    q3 = QAExample("b", "When was the first flight?", both, ((both.index("May"), "May"),), 0)
    assert add_contrast_negatives([q3], 1.0, random.Random(0)) == []
    assert add_contrast_negatives([q], 0.0, random.Random(0)) == []


def test_contrast_negatives_add_a_year_the_dated_fact_rules_out() -> None:
    ctx = "Baykar was founded in 1984. In 2022 Baykar flew the Kızılelma from Çorlu."
    q = QAExample("y", "Where did Baykar fly the Kızılelma?", ctx, ((ctx.index("Çorlu"), "Çorlu"),), 0)
    for seed in range(10):
        (neg,) = add_contrast_negatives([q], 1.0, random.Random(seed))
        head, year = neg.question[: -len(" in 2000?")], neg.question[-5:-1]
        assert head == "Where did Baykar fly the Kızılelma" and neg.question.endswith("?")
        # A year near the answer sentence's own, never one the paragraph names, never ahead.
        assert year.isdigit() and year not in ctx and 1962 <= int(year) <= 2024
    # Never for a question that asks for a date, or already names a year.
    when = QAExample("w", "When did Baykar fly the Kızılelma?", ctx, ((ctx.index("2022"), "2022"),), 0)
    named = QAExample("n", "Where did Baykar fly in 2022?", ctx, ((ctx.index("Çorlu"), "Çorlu"),), 0)
    assert add_contrast_negatives([when, named], 1.0, random.Random(0)) == []


def test_noisy_positives_misspell_one_word_and_keep_the_answer() -> None:
    ctx = "Baykar manufactures the Kızılelma."
    q = QAExample("t", "Who manufactures the Kizilelma?", ctx, ((0, "Baykar"),), 0)
    for seed in range(20):
        (pos,) = add_noisy_positives([q], 1.0, random.Random(seed))
        assert pos.id == "t-typo" and pos.answers == q.answers and pos.context == ctx
        changed = [(a, b) for a, b in zip(q.question.split(), pos.question.split(), strict=True) if a != b]
        assert len(changed) == 1
        old, new = changed[0]
        assert old in {"manufactures", "Kizilelma?"} and new[0] == old[0] and new[-1] == old[-1]
        if len(new) == len(old):  # two neighbouring letters swapped
            assert sorted(new) == sorted(old)
        else:  # one letter dropped or doubled
            assert abs(len(new) - len(old)) == 1 and set(new) <= set(old)
    no_long_word = QAExample("s", "Who is it?", ctx, ((0, "Baykar"),), 0)
    assert add_noisy_positives([no_long_word], 1.0, random.Random(0)) == []
    assert add_noisy_positives([QAExample("u", q.question, ctx, (), 0)], 1.0, random.Random(0)) == []


def test_length_grouped_batches_cover_every_feature_once() -> None:
    lengths = [random.Random(i).randint(10, 300) for i in range(1000)]
    batches = length_grouped_batches(lengths, 16, random.Random(1), group=8)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))
    # Little padding: within a batch, lengths are close (random batches spread ~250 here).
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 50
    assert batches == length_grouped_batches(lengths, 16, random.Random(1), group=8)  # seeded
