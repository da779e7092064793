"""Canonical Huffman coding of code streams (length-limited, table-decoded).

A stream is stored as its code lengths (one uint8 per symbol of the alphabet) and the
MSB-first bit stream; decoders rebuild the canonical codes from the lengths alone.
"""
from __future__ import annotations

import heapq

import numpy as np

from .._kernels.huffman import huffman_decode_kernel, huffman_encode_kernel
from ..errors import FormatError, InputError

MAX_LEN = 16  # longest code: the decoding table has 2**16 entries at most


def code_lengths(freqs, max_len: int = MAX_LEN) -> np.ndarray:
    """Huffman code lengths (uint8) for symbol frequencies, limited to ``max_len`` bits.

    Symbols of frequency 0 get length 0 (no code).  A lone symbol gets length 1.  If the
    tree is deeper than ``max_len``, lengths are rebalanced as in JPEG (Annex K.3), which
    keeps the code complete and close to optimal.
    """
    freqs = np.asarray(freqs, dtype=np.int64)
    present = np.flatnonzero(freqs > 0)
    lengths = np.zeros(freqs.shape[0], dtype=np.uint8)
    if present.size == 0:
        return lengths
    if present.size == 1:
        lengths[present[0]] = 1
        return lengths
    if present.size > (1 << max_len):
        raise InputError(f"{present.size} symbols cannot be coded in {max_len} bits")
    # heap of (weight, tie-breaker, node); leaves are symbol ids, internal nodes lists
    heap = [(int(freqs[s]), int(s), int(s)) for s in present]
    heapq.heapify(heap)
    parent = {}
    next_id = freqs.shape[0]
    while len(heap) > 1:
        w1, t1, a = heapq.heappop(heap)
        w2, t2, b = heapq.heappop(heap)
        parent[a] = parent[b] = next_id
        heapq.heappush(heap, (w1 + w2, min(t1, t2), next_id))
        next_id += 1
    depth = {heap[0][2]: 0}
    for node in sorted(parent, reverse=True):  # parents have larger ids than children
        depth[node] = depth[parent[node]] + 1
    lens = np.array([depth[s] for s in present], dtype=np.int64)
    if lens.max() > max_len:
        lens = _limit(lens, freqs[present], max_len)
    lengths[present] = lens
    return lengths


def _limit(lens, weights, max_len):
    """JPEG's rebalancing: move leaves up until no code is longer than max_len, then give
    the shortest lengths to the most frequent symbols."""
    count = np.bincount(lens, minlength=lens.max() + 1).astype(np.int64)
    for i in range(len(count) - 1, max_len, -1):
        while count[i] > 0:
            j = i - 2
            while count[j] == 0:
                j -= 1
            count[i] -= 2
            count[i - 1] += 1
            count[j + 1] += 2
            count[j] -= 1
    new = np.repeat(np.arange(len(count)), count)[: lens.size]
    out = np.empty_like(lens)
    out[np.argsort(-weights, kind="stable")] = new
    return out


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical codes (uint32) from code lengths: shorter first, then by symbol."""
    lengths = np.asarray(lengths)
    codes = np.zeros(lengths.shape[0], dtype=np.uint32)
    order = np.lexsort((np.arange(lengths.shape[0]), lengths))
    code = 0
    prev = 0
    for s in order:
        ln = int(lengths[s])
        if ln == 0:
            continue
        code <<= ln - prev
        codes[s] = code
        code += 1
        prev = ln
    return codes


def check_lengths(lengths, n_symbols: int) -> np.ndarray:
    """Validate stored code lengths: right size, <= MAX_LEN, a prefix code (Kraft sum
    <= 1).  FormatError otherwise."""
    lengths = np.asarray(lengths)
    if lengths.dtype != np.uint8 or lengths.shape != (n_symbols,):
        raise FormatError(f"huffman lengths: expected ({n_symbols},) uint8, got "
                          f"{lengths.dtype} {lengths.shape}")
    if lengths.size and int(lengths.max()) > MAX_LEN:
        raise FormatError(f"huffman lengths: a code longer than {MAX_LEN} bits")
    used = lengths[lengths > 0].astype(np.int64)
    if used.size and int(np.sum(np.left_shift(1, MAX_LEN - used))) > (1 << MAX_LEN):
        raise FormatError("huffman lengths: not a prefix code (Kraft sum above 1)")
    return lengths


def encode(symbols, n_symbols: int, max_len: int = MAX_LEN) -> tuple[np.ndarray, np.ndarray]:
    """(lengths uint8 (n_symbols,), stream uint8) for integer symbols < n_symbols."""
    symbols = np.ascontiguousarray(np.asarray(symbols).reshape(-1))
    if symbols.dtype.kind not in "ui":
        raise InputError(f"symbols: dtype {symbols.dtype} is not an integer type")
    if symbols.size and (symbols.min() < 0 or symbols.max() >= n_symbols):
        raise InputError(f"symbols: values must lie in [0, {n_symbols})")
    freqs = np.bincount(symbols, minlength=n_symbols) if symbols.size else np.zeros(n_symbols, np.int64)
    lengths = code_lengths(freqs, max_len)
    total_bits = int(np.dot(freqs.astype(np.int64), lengths.astype(np.int64)))
    out = np.empty((total_bits + 7) // 8, dtype=np.uint8)
    if symbols.size:
        n = huffman_encode_kernel(symbols, canonical_codes(lengths), lengths, out)
        assert n == out.shape[0]
    return lengths, out


def decode(lengths, stream, count: int, n_symbols: int) -> np.ndarray:
    """Decode ``count`` symbols; FormatError for a bad table, a bad code or a short stream."""
    lengths = check_lengths(lengths, n_symbols)
    stream = np.ascontiguousarray(stream)
    if stream.dtype != np.uint8 or stream.ndim != 1:
        raise FormatError("huffman stream: expected a 1-D uint8 array")
    dtype = np.uint8 if n_symbols <= 256 else np.uint16
    out = np.empty(count, dtype=dtype)
    if count == 0:
        return out
    max_len = int(lengths.max()) if lengths.size else 0
    if max_len == 0:
        raise FormatError("huffman stream: symbols to decode but no codes")
    table_sym, table_len = _decode_table(lengths, max_len)
    status = huffman_decode_kernel(stream, table_sym, table_len, max_len, out)
    if status == 1:
        raise FormatError("huffman stream: invalid code")
    if status == 2:
        raise FormatError("huffman stream: ran out of bits")
    return out


def _decode_table(lengths, max_len):
    codes = canonical_codes(lengths)
    size = 1 << max_len
    table_sym = np.zeros(size, dtype=np.uint16)
    table_len = np.zeros(size, dtype=np.uint8)
    for s in np.flatnonzero(lengths):
        ln = int(lengths[s])
        start = int(codes[s]) << (max_len - ln)
        table_sym[start:start + (1 << (max_len - ln))] = s
        table_len[start:start + (1 << (max_len - ln))] = ln
    return table_sym, table_len


def entropy_bits(symbols, n_symbols: int) -> float:
    """Shannon entropy of the stream's symbol frequencies, in bits per symbol."""
    symbols = np.asarray(symbols).reshape(-1)
    if symbols.size == 0:
        return 0.0
    p = np.bincount(symbols, minlength=n_symbols) / symbols.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())
