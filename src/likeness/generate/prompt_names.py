"""Enrolled people named in a prompt: a prompt that names someone asks for their likeness.

A name matches as whole words, case- and accent-insensitively (``"a portrait of ada lovelace"`` names
``Ada Lovelace``). Each enrolled identity's full name counts, and so does its surname or given name when
it is at least :data:`MIN_PART` letters and no other enrolled person shares it (an alias table is not
kept by the registry yet: this is the stand-in). The road then requires that person's consent for
generation, exactly as if their face had been given.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from likeness.consent.records import Identity

MIN_PART = 4


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", _fold(text))


@dataclass(frozen=True)
class NamedPerson:
    identity: Identity
    matched: str
    """The words of the prompt that named them."""


def _contains(words: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return n > 0 and any(list(words[i : i + n]) == list(phrase) for i in range(len(words) - n + 1))


def people_named(prompt: str, identities: Sequence[Identity]) -> list[NamedPerson]:
    """The enrolled (not erased) identities ``prompt`` names, in enrolment order."""
    words = _words(prompt)
    living = [person for person in identities if person.erased_at is None]
    part_counts = Counter(part for person in living for part in set(_words(person.name)))
    found: list[NamedPerson] = []
    for person in living:
        full = _words(person.name)
        if _contains(words, full):
            found.append(NamedPerson(person, " ".join(full)))
            continue
        parts = [p for p in full if len(p) >= MIN_PART and part_counts[p] == 1 and len(full) > 1]
        hit = next((p for p in parts if p in words), None)
        if hit is not None:
            found.append(NamedPerson(person, hit))
    return found
