"""One mechanism for every integer stream a file stores (codes and sparse indices):
encode with a named coding, decode it back, or pick the smallest coding.

A coded stream is one uint8 array: its table, whose size follows from the coding and the
alphabet alone, then the payload.

- ``none``: no table; the symbols packed at ``n_bits`` each.
- ``huffman``: the code length of each of the 2**n_bits symbols in 4 bits (codes are
  limited to 15 bits), two per byte, low nibble first; then the canonical-code bit stream.
- ``rans``: the 2**n_bits quantised frequencies as little-endian uint32; then the rANS
  byte stream.
"""
from __future__ import annotations

import numpy as np

from ..errors import FormatError, InputError
from . import huffman, rans
from .bitpack import pack, unpack

CODINGS = ("none", "huffman", "rans")
HUFFMAN_MAX_LEN = 15  # code lengths fit a nibble


def table_bytes(coding: str, n_bits: int) -> int:
    """Size of the table that starts a stream coded with ``coding``."""
    if coding == "huffman":
        return ((1 << n_bits) + 1) // 2
    if coding == "rans":
        return 4 << n_bits
    return 0


def encode_stream(symbols, n_bits: int, coding: str) -> np.ndarray:
    """``symbols`` (< 2**n_bits) coded with ``coding`` as one uint8 array."""
    if coding == "none":
        return pack(symbols, n_bits)
    if coding == "huffman":
        lengths, payload = huffman.encode(symbols, 1 << n_bits, max_len=HUFFMAN_MAX_LEN)
        padded = np.zeros(2 * table_bytes("huffman", n_bits), np.uint8)
        padded[: lengths.shape[0]] = lengths
        table = padded[0::2] | (padded[1::2] << 4)
        return np.concatenate([table, payload])
    if coding == "rans":
        freq, payload = rans.encode(symbols, 1 << n_bits)
        return np.concatenate([freq.astype("<u4").view(np.uint8), payload])
    raise InputError(f"entropy coding must be one of {list(CODINGS)} or 'auto', got {coding!r}")


def decode_stream(stream, n_bits: int, count: int, coding: str) -> np.ndarray:
    """Inverse of encode_stream; FormatError for a corrupt or short stream."""
    if coding not in CODINGS:
        raise FormatError(f"unknown stream coding {coding!r}")
    stream = np.asarray(stream)
    if stream.dtype != np.uint8 or stream.ndim != 1:
        raise FormatError(f"{coding} stream: expected a 1-D uint8 array, got {stream.dtype} "
                          f"{stream.shape}")
    head = table_bytes(coding, n_bits)
    if stream.shape[0] < head:
        raise FormatError(f"{coding} stream: {stream.shape[0]} bytes, shorter than its "
                          f"{head}-byte table")
    table, payload = stream[:head], stream[head:]
    if coding == "none":
        return unpack(payload, n_bits, count)
    if coding == "huffman":
        lengths = np.empty(2 * head, np.uint8)
        lengths[0::2], lengths[1::2] = table & 15, table >> 4
        return huffman.decode(lengths[: 1 << n_bits], payload, count, 1 << n_bits)
    freq = table.view("<u4").astype(np.uint32)
    return rans.decode(freq, payload, count, 1 << n_bits)


def choose(symbols, n_bits: int, coding: str = "auto") -> tuple[str, np.ndarray]:
    """(coding, stream): the given coding, or with 'auto' the smallest of all (ties go to
    the simpler: none, then huffman).  An alphabet too large for 15-bit Huffman codes
    simply leaves Huffman out of the choice."""
    if coding != "auto":
        return coding, encode_stream(symbols, n_bits, coding)
    best = None
    for c in CODINGS:
        try:
            stream = encode_stream(symbols, n_bits, c)
        except InputError:
            if c != "huffman":
                raise
            continue
        if best is None or stream.nbytes < best[1].nbytes:
            best = (c, stream)
    return best


def stats(symbols, n_bits: int, stream: np.ndarray) -> dict:
    """Shannon entropy of the stream and its coded size, both in bits per symbol (the
    coded size includes the stream's table)."""
    n = max(int(np.asarray(symbols).size), 1)
    return {"entropy_bits": round(huffman.entropy_bits(symbols, 1 << n_bits), 4),
            "coded_bits": round(int(stream.nbytes) * 8 / n, 4)}
