"""Output ids: random, check-coded, human-typable.

Format: ``lk-XXXX-XXXX-XXXX`` — 12 Crockford base32 characters (digits and capitals without
I, L, O, U) carrying 60 bits: 50 random id bits followed by a CRC-10 of them. The CRC detects every
error burst of up to 10 bits, so every single mistyped character (a 5-bit burst) and every swap of
two neighbouring characters is rejected by :func:`parse_output_id`.

Ids are drawn with a balanced bit weight (20 to 30 ones among the 50), never a low-weight pattern
that a decoder biased towards zero bits could produce from a clean image.

The short form (``lk-XXXX-XXXX``, the first 40 id bits) is printed in the visible label; it is not
checked and identifies an output only together with this installation's ledger.
"""

from __future__ import annotations

import secrets

import numpy as np

from likeness.disclosure.ecc import CRC10, bits_from_int, crc, int_from_bits
from likeness.errors import UsageError

PREFIX = "lk-"
ID_BITS = 50
CHECK_BITS = CRC10.width
CHARS = 12
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_ALIASES = {"O": "0", "I": "1", "L": "1"}
MIN_WEIGHT, MAX_WEIGHT = 20, 30


def _encode(value: int, n_chars: int) -> str:
    return "".join(ALPHABET[(value >> (5 * (n_chars - 1 - i))) & 31] for i in range(n_chars))


def _group(chars: str) -> str:
    return "-".join(chars[i : i + 4] for i in range(0, len(chars), 4))


def format_output_id(bits: np.ndarray) -> str:
    """The id string for 50 id bits (adds the check code)."""
    bits = np.asarray(bits, dtype=np.uint8)
    if bits.shape != (ID_BITS,):
        raise ValueError(f"an output id has {ID_BITS} bits, got {bits.shape}")
    value = (int_from_bits(bits) << CHECK_BITS) | crc(bits, CRC10)
    return PREFIX + _group(_encode(value, CHARS))


def is_balanced(bits: np.ndarray) -> bool:
    return MIN_WEIGHT <= int(np.count_nonzero(bits)) <= MAX_WEIGHT


def new_output_id() -> str:
    """A fresh random output id with a balanced bit weight."""
    while True:
        bits = bits_from_int(secrets.randbits(ID_BITS), ID_BITS)
        if is_balanced(bits):
            return format_output_id(bits)


def parse_output_id(text: str) -> str:
    """Validate a typed id and return its canonical form, or raise :class:`UsageError`.

    Accepts lower case, missing dashes, a missing ``lk-`` prefix, and Crockford's look-alikes
    (O for 0, I and L for 1).
    """
    raw = text.strip().upper()
    if raw.startswith(PREFIX.upper()):
        raw = raw[len(PREFIX) :]
    chars = "".join(_ALIASES.get(c, c) for c in raw if c not in "- ")
    bad = sorted({c for c in chars if c not in ALPHABET})
    if len(chars) != CHARS or bad:
        what = f"characters {''.join(bad)!r} are not used in ids" if bad else f"{len(chars)} characters"
        raise UsageError(
            f"{text!r} is not an output id ({what})",
            hint="an output id looks like lk-XXXX-XXXX-XXXX (12 characters, digits and capitals)",
        )
    value = 0
    for c in chars:
        value = (value << 5) | ALPHABET.index(c)
    bits = bits_from_int(value >> CHECK_BITS, ID_BITS)
    if crc(bits, CRC10) != value & ((1 << CHECK_BITS) - 1):
        raise UsageError(
            f"{text!r} is not a valid output id: its check characters do not match (a typo?)",
            hint="copy the id again from the label, `likeness verify` or the ledger",
        )
    return format_output_id(bits)


def output_id_bits(output_id: str) -> np.ndarray:
    """The 50 id bits of a (validated) id."""
    canonical = parse_output_id(output_id)
    value = 0
    for c in canonical[len(PREFIX) :].replace("-", ""):
        value = (value << 5) | ALPHABET.index(c)
    return bits_from_int(value >> CHECK_BITS, ID_BITS)


def short_output_id(output_id: str) -> str:
    """The short form printed in the label: ``lk-XXXX-XXXX`` (first 8 characters)."""
    canonical = parse_output_id(output_id)
    return canonical[: len(PREFIX) + 9]
