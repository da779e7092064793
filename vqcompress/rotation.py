"""Incoherence processing: a randomized Hadamard rotation of a weight's input dimension.

R = D B, with D a diagonal of random signs and B block-diagonal with orthonormal
Walsh-Hadamard blocks (the largest power of two that divides in_features: 128 for 384,
512 for 1536).  R is orthogonal, so y = x Wᵀ = (x R)(W R)ᵀ: the quantizers see W R, whose
entries are mixtures of many weights (no outliers, near-Gaussian: QuIP, Chee et al. 2023;
QuIP#, Tseng et al. 2024), and inference applies R to the input with a fast transform,
O(in log block) per input row.  The signs are stored in the file (one bit per input,
packed) and counted in the tensor's size.
"""
from __future__ import annotations

import numpy as np

from ._kernels.hadamard import fwht_rows


def block_size(n: int) -> int:
    """The Hadamard block for ``n`` inputs: the largest power of two dividing n."""
    return int(n & -n)


def random_signs(n: int, seed) -> np.ndarray:
    """n random signs from ``seed``, packed as bits (1 = negative), uint8 (ceil(n / 8),)."""
    rng = np.random.default_rng(seed)
    return np.packbits(rng.integers(0, 2, n, dtype=np.uint8), bitorder="little")


def _signs(packed: np.ndarray, n: int) -> np.ndarray:
    bits = np.unpackbits(packed, count=n, bitorder="little")
    return (1.0 - 2.0 * bits).astype(np.float32)


def rotate(X, packed) -> np.ndarray:
    """X R for X (..., n): the rotated weight rows, or the rotated inputs.  A new array,
    float32 unless X is float64."""
    return _apply(X, packed, signs_first=True)


def unrotate(Y, packed) -> np.ndarray:
    """Y Rᵀ for Y (..., n): the original weights from rotated ones."""
    return _apply(Y, packed, signs_first=False)


def _apply(X, packed, *, signs_first: bool) -> np.ndarray:
    """R = D B and Rᵀ = B D (B symmetric): the same two steps in either order."""
    X = np.asarray(X)
    n = X.shape[-1]
    out = np.array(X.reshape(-1, n), dtype=np.float64 if X.dtype == np.float64 else np.float32)
    signs = _signs(packed, n)
    if signs_first:
        out *= signs
    fwht_rows(out, block_size(n))
    if not signs_first:
        out *= signs
    return out.reshape(X.shape)


def rotate_hessian(H: np.ndarray, packed) -> np.ndarray:
    """Rᵀ H R: the calibration statistics of the rotated inputs x R."""
    return rotate(rotate(H, packed).T, packed)


def check_signs(packed, n: int, *, name: str) -> np.ndarray:
    """A stored sign vector: uint8, ceil(n / 8) bytes, unused high bits zero (FormatError)."""
    from .errors import FormatError

    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.shape != ((n + 7) // 8,):
        raise FormatError(f"{name}: signs must be {(n + 7) // 8} uint8 bytes, got "
                          f"{packed.dtype} {packed.shape}")
    if n % 8 and packed[-1] >> (n % 8):
        raise FormatError(f"{name}: signs have bits set past input {n}")
    return packed
