"""Check codes and the error-correcting code of the watermark payload.

- ``crc(bits, spec)``: a bitwise CRC (MSB first) with a non-zero start value, so that an all-zero
  message does not have an all-zero check.
- ``conv_encode`` / ``viterbi_decode``: the rate-1/2, constraint-length-7 convolutional code
  (generators 171 and 133 octal, the NASA/Voyager code) with soft-decision Viterbi decoding. The
  encoder is terminated with 6 zero bits, so the decoder starts and ends in state 0.

Bits are numpy uint8 arrays of 0/1, most significant first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CrcSpec:
    width: int
    poly: int
    init: int
    xorout: int


CRC10 = CrcSpec(width=10, poly=0x233, init=0x3FF, xorout=0x000)
"""CRC-10/ATM polynomial with a non-zero start: detects every burst of up to 10 bits."""
CRC24 = CrcSpec(width=24, poly=0x864CFB, init=0xB704CE, xorout=0x000)
"""CRC-24/OpenPGP: one random word passes with probability 2**-24."""

CONV_K = 7
CONV_POLYS = (0o171, 0o133)
CONV_TAIL = CONV_K - 1


def bits_from_int(value: int, width: int) -> np.ndarray:
    return np.array([(value >> (width - 1 - i)) & 1 for i in range(width)], dtype=np.uint8)


def int_from_bits(bits: np.ndarray) -> int:
    value = 0
    for bit in np.asarray(bits, dtype=np.uint8).tolist():
        value = (value << 1) | int(bit)
    return value


def crc(bits: np.ndarray, spec: CrcSpec) -> int:
    """The CRC of ``bits`` (MSB first) as an integer of ``spec.width`` bits."""
    top = 1 << (spec.width - 1)
    mask = (1 << spec.width) - 1
    reg = spec.init
    for bit in np.asarray(bits, dtype=np.uint8).tolist():
        feedback = bool(reg & top) ^ bool(bit)
        reg = (reg << 1) & mask
        if feedback:
            reg ^= spec.poly
    return reg ^ spec.xorout


def _conv_tables() -> tuple[np.ndarray, np.ndarray]:
    """Output bits for (state, input): ``out[state, input] -> (2,)`` and next state."""
    n_states = 1 << (CONV_K - 1)
    out = np.zeros((n_states, 2, 2), dtype=np.uint8)
    nxt = np.zeros((n_states, 2), dtype=np.int64)
    for state in range(n_states):
        for bit in (0, 1):
            reg = (bit << (CONV_K - 1)) | state  # newest bit in the top position
            for k, poly in enumerate(CONV_POLYS):
                out[state, bit, k] = bin(reg & poly).count("1") & 1
            nxt[state, bit] = reg >> 1
    return out, nxt


_OUT, _NEXT = _conv_tables()  # constant tables, never mutated


def conv_encode(bits: np.ndarray) -> np.ndarray:
    """Encode ``bits`` plus a 6-bit zero tail: ``2 * (len(bits) + 6)`` coded bits."""
    data = np.concatenate([np.asarray(bits, dtype=np.uint8), np.zeros(CONV_TAIL, dtype=np.uint8)])
    state = 0
    coded = np.empty((data.size, 2), dtype=np.uint8)
    for t, bit in enumerate(data.tolist()):
        coded[t] = _OUT[state, bit]
        state = int(_NEXT[state, bit])
    return coded.reshape(-1)


def viterbi_decode(soft: np.ndarray, n_bits: int) -> np.ndarray:
    """Decode soft values (positive means bit 1) of ``2 * (n_bits + 6)`` coded bits.

    Maximises the correlation between the soft values and the codeword: the most likely message
    under Gaussian noise. Returns ``n_bits`` message bits (the tail is dropped).
    """
    steps = n_bits + CONV_TAIL
    soft = np.asarray(soft, dtype=np.float64).reshape(steps, 2)
    n_states = _NEXT.shape[0]
    signs = _OUT.astype(np.float64) * 2.0 - 1.0  # (state, input, 2)
    # Predecessors: each state has two (state, input) pairs leading into it.
    pred_state = np.zeros((n_states, 2), dtype=np.int64)
    pred_input = np.zeros((n_states, 2), dtype=np.int64)
    filled = np.zeros(n_states, dtype=np.int64)
    for state in range(n_states):
        for bit in (0, 1):
            target = _NEXT[state, bit]
            pred_state[target, filled[target]] = state
            pred_input[target, filled[target]] = bit
            filled[target] += 1
    branch_signs = signs[pred_state, pred_input]  # (target, 2 preds, 2 outputs)

    metric = np.full(n_states, -np.inf)
    metric[0] = 0.0
    choice = np.zeros((steps, n_states), dtype=np.int8)
    for t in range(steps):
        gains = branch_signs @ soft[t]  # (target, 2)
        candidates = metric[pred_state] + gains
        if t >= n_bits:  # the tail: only input 0 is allowed
            candidates = np.where(pred_input == 0, candidates, -np.inf)
        best = np.argmax(candidates, axis=1)
        choice[t] = best
        metric = candidates[np.arange(n_states), best]

    bits = np.zeros(steps, dtype=np.uint8)
    state = 0
    for t in range(steps - 1, -1, -1):
        which = choice[t, state]
        bits[t] = pred_input[state, which]
        state = int(pred_state[state, which])
    return bits[:n_bits]
