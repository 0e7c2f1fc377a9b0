"""Output ids: random, balanced, check-coded; typos are rejected, look-alikes are forgiven."""

from __future__ import annotations

import re

import numpy as np
import pytest

from likeness.disclosure.output_id import (
    ALPHABET,
    ID_BITS,
    MAX_WEIGHT,
    MIN_WEIGHT,
    format_output_id,
    new_output_id,
    output_id_bits,
    parse_output_id,
    short_output_id,
)
from likeness.errors import UsageError

ID_PATTERN = re.compile(r"^lk-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")


def test_new_ids_are_well_formed_unique_and_balanced() -> None:
    ids = [new_output_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for output_id in ids:
        assert ID_PATTERN.match(output_id), output_id
        assert parse_output_id(output_id) == output_id
        weight = int(output_id_bits(output_id).sum())
        assert MIN_WEIGHT <= weight <= MAX_WEIGHT


def test_bits_roundtrip() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        bits = rng.integers(0, 2, ID_BITS).astype(np.uint8)
        assert np.array_equal(output_id_bits(format_output_id(bits)), bits)


def test_every_single_character_typo_is_rejected() -> None:
    for output_id in [new_output_id() for _ in range(20)]:
        chars = list(output_id)
        positions = [i for i, c in enumerate(chars) if c in ALPHABET and i >= 3]
        assert len(positions) == 12
        for i in positions:
            for replacement in ALPHABET:
                if replacement == chars[i]:
                    continue
                typo = "".join([*chars[:i], replacement, *chars[i + 1 :]])
                with pytest.raises(UsageError, match="check characters"):
                    parse_output_id(typo)


def test_neighbour_swaps_are_rejected() -> None:
    for output_id in [new_output_id() for _ in range(50)]:
        raw = output_id[3:].replace("-", "")
        for i in range(len(raw) - 1):
            if raw[i] == raw[i + 1]:
                continue
            swapped = raw[:i] + raw[i + 1] + raw[i] + raw[i + 2 :]
            with pytest.raises(UsageError):
                parse_output_id(swapped)


def test_forgiving_input_forms() -> None:
    output_id = new_output_id()
    raw = output_id[3:].replace("-", "")
    assert parse_output_id(raw.lower()) == output_id
    assert parse_output_id(f"  LK-{raw}  ") == output_id
    spaced = " ".join(raw[i : i + 4] for i in range(0, 12, 4))
    assert parse_output_id(spaced) == output_id
    # Crockford look-alikes: O reads as 0, I and L as 1.
    if "0" in raw or "1" in raw:
        confusable = raw.replace("0", "O").replace("1", "I")
        assert parse_output_id(confusable) == output_id


@pytest.mark.parametrize(
    "text", ["", "lk-", "hello", "lk-ABCD-EFGH-JKM", "lk-ABCD-EFGH-JKMNP", "lk-ABCD-EFGH-JKM!"]
)
def test_garbage_is_rejected_with_a_hint(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_output_id(text)
    assert info.value.hint


def test_short_form_is_the_first_eight_characters() -> None:
    output_id = new_output_id()
    short = short_output_id(output_id)
    assert output_id.startswith(short)
    assert re.match(r"^lk-[0-9A-Z]{4}-[0-9A-Z]{4}$", short)
