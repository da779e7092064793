"""Fixed-width bit packing of code arrays (public wrappers over the kernels)."""
from __future__ import annotations

import numpy as np

from .._kernels.bitpack import pack_bits, unpack_bits
from .._validation import check_int
from ..errors import FormatError, InputError


def code_dtype(n_bits: int) -> np.dtype:
    """uint8 for codebooks of up to 256 entries, uint16 up to 65,536."""
    return np.dtype(np.uint8) if n_bits <= 8 else np.dtype(np.uint16)


def packed_bytes(n_codes: int, n_bits: int) -> int:
    """Bytes taken by ``n_codes`` codes of ``n_bits`` each, packed back to back."""
    return (n_codes * n_bits + 7) // 8


def pack(codes, n_bits: int) -> np.ndarray:
    """Pack integer codes, each below 2**n_bits, into a uint8 stream of
    ceil(size * n_bits / 8) bytes (least significant bits first)."""
    n_bits = check_int(n_bits, name="n_bits", low=1, high=16)
    codes = np.ascontiguousarray(np.asarray(codes).reshape(-1))
    if codes.dtype.kind not in "ui":
        raise InputError(f"codes: dtype {codes.dtype} is not an integer type")
    if codes.size and (codes.min() < 0 or codes.max() >= (1 << n_bits)):
        raise InputError(f"codes: values must lie in [0, {1 << n_bits}) for {n_bits}-bit packing")
    out = np.empty(packed_bytes(codes.size, n_bits), dtype=np.uint8)
    if codes.size:
        pack_bits(codes, n_bits, out)
    return out


def unpack(packed, n_bits: int, count: int) -> np.ndarray:
    """Unpack ``count`` codes of ``n_bits`` from a uint8 stream; the stream length must be
    exactly what ``pack`` writes (FormatError otherwise)."""
    n_bits = check_int(n_bits, name="n_bits", low=1, high=16)
    packed = np.ascontiguousarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 1:
        raise FormatError(f"packed codes: expected a 1-D uint8 stream, got {packed.dtype} "
                          f"{packed.shape}")
    if packed.size != packed_bytes(count, n_bits):
        raise FormatError(f"packed codes: {packed.size} bytes cannot hold exactly {count} "
                          f"codes of {n_bits} bits")
    out = np.empty(count, dtype=code_dtype(n_bits))
    if count:
        unpack_bits(packed, n_bits, out)
    return out
