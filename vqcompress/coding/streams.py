"""One mechanism for every integer stream a file stores (codes now, sparse indices next):
encode with a named coding, decode it back, or pick the smallest coding.

A coded stream is a small dict of arrays keyed by suffix: '' is the stream itself, and
'.lengths' (Huffman) or '.freq' (rANS) its table.  Symbols are < 2**n_bits.
"""
from __future__ import annotations

import numpy as np

from ..errors import FormatError, InputError
from . import huffman, rans
from .bitpack import pack, unpack

CODINGS = ("none", "huffman", "rans")
TABLE = {"huffman": ".lengths", "rans": ".freq"}


def encode_stream(symbols, n_bits: int, coding: str) -> dict:
    """{suffix: array} of ``symbols`` coded with ``coding`` ('none' packs at n_bits)."""
    if coding == "none":
        return {"": pack(symbols, n_bits)}
    if coding == "huffman":
        lengths, stream = huffman.encode(symbols, 1 << n_bits)
        return {"": stream, ".lengths": lengths}
    if coding == "rans":
        freq, stream = rans.encode(symbols, 1 << n_bits)
        return {"": stream, ".freq": freq}
    raise InputError(f"entropy coding must be one of {list(CODINGS)} or 'auto', got {coding!r}")


def decode_stream(parts: dict, n_bits: int, count: int, coding: str) -> np.ndarray:
    """Inverse of encode_stream; FormatError for a missing part or a corrupt stream."""
    expected = {"", TABLE[coding]} if coding in TABLE else {""}
    if coding not in CODINGS:
        raise FormatError(f"unknown stream coding {coding!r}")
    if set(parts) != expected:
        raise FormatError(f"{coding} stream: parts {sorted(parts)} instead of {sorted(expected)}")
    if coding == "none":
        return unpack(parts[""], n_bits, count)
    if coding == "huffman":
        return huffman.decode(parts[".lengths"], parts[""], count, 1 << n_bits)
    return rans.decode(parts[".freq"], parts[""], count, 1 << n_bits)


def nbytes(parts: dict) -> int:
    return sum(int(v.nbytes) for v in parts.values())


def choose(symbols, n_bits: int, coding: str = "auto") -> tuple[str, dict]:
    """(coding, parts): the given coding, or with 'auto' the smallest of all (ties go to
    the simpler: none, then huffman)."""
    if coding != "auto":
        return coding, encode_stream(symbols, n_bits, coding)
    best = None
    for c in CODINGS:
        parts = encode_stream(symbols, n_bits, c)
        if best is None or nbytes(parts) < nbytes(best[1]):
            best = (c, parts)
    return best


def stats(symbols, n_bits: int, parts: dict) -> dict:
    """Shannon entropy of the stream and its coded size, both in bits per symbol (the
    coded size includes the stream's table)."""
    n = max(int(np.asarray(symbols).size), 1)
    return {"entropy_bits": round(huffman.entropy_bits(symbols, 1 << n_bits), 4),
            "coded_bits": round(nbytes(parts) * 8 / n, 4)}
