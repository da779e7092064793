"""Sparse storage of a code matrix whose code 0 means zero (see _kernels/sparse.py)."""
from __future__ import annotations

import numpy as np

from .._kernels.sparse import sparse_decode_kernel, sparse_encode_kernel
from .._validation import check_int
from ..errors import FormatError


def sparse_encode(codes, index_bits: int):
    """(entry_codes, rel, row_counts) for codes (rows, cols), 0 = zero.

    entry_codes has the codes' dtype, rel is uint16 (each < 2**index_bits), row_counts
    uint32 per row (fillers included).
    """
    index_bits = check_int(index_bits, name="index_bits", low=1, high=16)
    codes = np.ascontiguousarray(codes)
    if codes.ndim != 2:
        codes = codes.reshape(codes.shape[0] if codes.ndim else 1, -1)
    cap = codes.size + codes.shape[0]
    entry_codes = np.empty(cap, dtype=codes.dtype)
    rel = np.empty(cap, dtype=np.uint16)
    row_counts = np.empty(codes.shape[0], dtype=np.uint32)
    n = sparse_encode_kernel(codes, index_bits, entry_codes, rel, row_counts)
    return entry_codes[:n].copy(), rel[:n].copy(), row_counts


def sparse_decode(entry_codes, rel, row_counts, shape, dtype) -> np.ndarray:
    """The (rows, cols) code matrix back; FormatError for inconsistent or overrunning rows."""
    rows, cols = shape
    row_counts = np.ascontiguousarray(row_counts)
    if row_counts.dtype != np.uint32 or row_counts.shape != (rows,):
        raise FormatError(f"sparse rows: expected ({rows},) uint32, got {row_counts.dtype} "
                          f"{row_counts.shape}")
    n = int(row_counts.sum(dtype=np.int64))
    if n != entry_codes.shape[0] or n != rel.shape[0]:
        raise FormatError(f"sparse rows: counts sum to {n} but the streams hold "
                          f"{entry_codes.shape[0]} codes and {rel.shape[0]} indices")
    if n > rows * cols + rows:
        raise FormatError("sparse rows: more entries than the matrix can hold")
    out = np.zeros((rows, cols), dtype=dtype)
    if sparse_decode_kernel(np.ascontiguousarray(entry_codes), np.ascontiguousarray(rel),
                            row_counts, out):
        raise FormatError("sparse rows: relative indices run past the end of a row")
    return out
