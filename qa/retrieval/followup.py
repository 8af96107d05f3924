"""Follow-up questions: "When did it first fly?" after a question about the Kızılelma.

A question that leans on the conversation (a pronoun such as *it*, *its*, *he*, *they*) and
names nothing itself (no capitalised word after its first, no number) is retrieved with the
previous question in front of it, so retrieval finds the passages the conversation is about.
The reader still reads the question as asked. Measured in the note of the issue that added
it (notebooks/data/followups.jsonl).
"""

from __future__ import annotations

import re

PRONOUNS = frozenset(
    "it its it's itself he him his himself she her hers herself they them their theirs themselves this that these those there".split()
)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")


def needs_context(question: str) -> bool:
    """True when ``question`` refers back (a pronoun) and names no entity of its own."""
    words = _WORD.findall(question)
    if not any(w.lower().replace("’", "'") in PRONOUNS for w in words):
        return False
    named = any(w[:1].isupper() for w in words[1:]) or any(w[:1].isdigit() for w in words)
    return not named


def retrieval_query(question: str, previous: str | None) -> str:
    """What to retrieve with: the previous question and this one when this one needs context."""
    if previous and previous.strip() and needs_context(question):
        return f"{previous.strip()} {question}"
    return question


def conversation_subject(question: str, previous: str | None) -> str:
    """What the next follow-up should be retrieved with after ``question`` (asked after
    ``previous``, the subject so far): the question itself when it names its subject, else the
    subject it leaned on. So "Who built it?" and then "When did it first fly?" after a question
    about the Kizilelma both stay with the Kizilelma, not only the first follow-up."""
    if previous and previous.strip() and needs_context(question):
        return previous
    return question
