"""rANS coding of code streams with a static, stored frequency table.

Stored form: the quantised frequencies (uint32 per symbol, summing to 2**16) and the byte
stream.  The model is integers only, so every decoder rebuilds it exactly.
"""
from __future__ import annotations

import numpy as np

from .._kernels.rans import rans_decode_kernel, rans_encode_kernel
from ..errors import FormatError, InputError

SCALE_BITS = 16


def quantize_freqs(counts, scale_bits: int = SCALE_BITS) -> np.ndarray:
    """Frequencies (uint32) proportional to ``counts``, summing to 2**scale_bits, with every
    present symbol >= 1 (largest remainders first, then the most frequent symbols pay for
    the ones raised to 1)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = 1 << scale_bits
    present = counts > 0
    if not present.any():
        return np.zeros(counts.shape[0], dtype=np.uint32)
    if present.sum() > total:
        raise InputError(f"{int(present.sum())} symbols do not fit a {scale_bits}-bit model")
    exact = counts / counts.sum() * total
    freq = np.floor(exact).astype(np.int64)
    freq[present & (freq == 0)] = 1
    diff = total - int(freq.sum())
    order = np.argsort(-(exact - np.floor(exact)), kind="stable") if diff > 0 else \
        np.argsort(-freq, kind="stable")
    i = 0
    while diff != 0:
        s = order[i % order.size]
        if diff > 0 and present[s]:
            freq[s] += 1
            diff -= 1
        elif diff < 0 and freq[s] > 1:
            freq[s] -= 1
            diff += 1
        i += 1
    return freq.astype(np.uint32)


def check_freqs(freq, n_symbols: int) -> np.ndarray:
    """Validate a stored frequency table (FormatError otherwise)."""
    freq = np.asarray(freq)
    if freq.dtype != np.uint32 or freq.shape != (n_symbols,):
        raise FormatError(f"rans table: expected ({n_symbols},) uint32, got {freq.dtype} "
                          f"{freq.shape}")
    if int(freq.sum(dtype=np.int64)) != (1 << SCALE_BITS):
        raise FormatError(f"rans table: frequencies must sum to 2**{SCALE_BITS}")
    return freq


def encode(symbols, n_symbols: int) -> tuple[np.ndarray, np.ndarray]:
    """(freq uint32 (n_symbols,), stream uint8) for integer symbols < n_symbols."""
    symbols = np.ascontiguousarray(np.asarray(symbols).reshape(-1))
    if symbols.dtype.kind not in "ui":
        raise InputError(f"symbols: dtype {symbols.dtype} is not an integer type")
    if symbols.size and (symbols.min() < 0 or symbols.max() >= n_symbols):
        raise InputError(f"symbols: values must lie in [0, {n_symbols})")
    if symbols.size == 0:
        freq = np.zeros(n_symbols, np.uint32)
        freq[0] = 1 << SCALE_BITS
        return freq, np.zeros(0, np.uint8)
    freq = quantize_freqs(np.bincount(symbols, minlength=n_symbols))
    cum = (np.cumsum(freq, dtype=np.uint64) - freq).astype(np.uint32)
    out = np.empty(symbols.size * (SCALE_BITS // 8 + 1) + 8, dtype=np.uint8)
    start = rans_encode_kernel(symbols, freq, cum, SCALE_BITS, out)
    return freq, out[start:].copy()


def decode(freq, stream, count: int, n_symbols: int) -> np.ndarray:
    """Decode ``count`` symbols; FormatError for a bad table or a corrupt stream."""
    freq = check_freqs(freq, n_symbols)
    stream = np.ascontiguousarray(stream)
    if stream.dtype != np.uint8 or stream.ndim != 1:
        raise FormatError("rans stream: expected a 1-D uint8 array")
    out = np.empty(count, dtype=np.uint8 if n_symbols <= 256 else np.uint16)
    if count == 0:
        if stream.size:
            raise FormatError("rans stream: bytes left over")
        return out
    cum = (np.cumsum(freq, dtype=np.uint64) - freq).astype(np.uint32)
    slot_sym = np.repeat(np.arange(n_symbols, dtype=np.uint16), freq.astype(np.int64))
    status = rans_decode_kernel(stream, freq, cum, slot_sym, SCALE_BITS, out)
    if status == 2:
        raise FormatError("rans stream: ran out of bytes")
    if status == 3:
        raise FormatError("rans stream: corrupt (final state mismatch)")
    return out
