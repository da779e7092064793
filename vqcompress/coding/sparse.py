"""Sparse storage of a code array whose code 0 means zero (see _kernels/sparse.py)."""
from __future__ import annotations

import numpy as np

from .._kernels.sparse import sparse_decode_kernel, sparse_encode_kernel
from .._validation import check_int
from ..errors import FormatError


def sparse_encode(codes, index_bits: int):
    """(entry_codes, rel) for codes of any shape (read flattened), 0 = zero.

    entry_codes has the codes' dtype, rel is uint16 (each < 2**index_bits); fillers are
    entries with code 0.  Every entry, filler or not, advances at least one position, so a
    tensor of n codes never has more than n entries.
    """
    index_bits = check_int(index_bits, name="index_bits", low=1, high=16)
    codes = np.ascontiguousarray(codes).reshape(-1)
    entry_codes = np.empty(codes.size, dtype=codes.dtype)
    rel = np.empty(codes.size, dtype=np.uint16)
    n = sparse_encode_kernel(codes, index_bits, entry_codes, rel)
    return entry_codes[:n].copy(), rel[:n].copy()


def sparse_decode(entry_codes, rel, size: int, dtype) -> np.ndarray:
    """The flat code array of ``size`` codes back; FormatError for streams of different
    lengths or positions that run past the end."""
    if entry_codes.shape[0] != rel.shape[0]:
        raise FormatError(f"sparse streams: {entry_codes.shape[0]} codes but "
                          f"{rel.shape[0]} indices")
    out = np.zeros(size, dtype=dtype)
    if sparse_decode_kernel(np.ascontiguousarray(entry_codes), np.ascontiguousarray(rel), out):
        raise FormatError("sparse streams: relative indices run past the end of the tensor")
    return out
