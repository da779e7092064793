"""What every quantizer shares: parameter handling, shapes, code dtypes and size accounting."""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from .._validation import as_float_array, check_choice, check_int
from ..errors import InputError

CODEBOOK_DTYPES = ("float32", "float16")


def code_dtype(n_bits: int) -> np.dtype:
    """uint8 for codebooks of up to 256 entries, uint16 up to 65,536."""
    return np.dtype(np.uint8) if n_bits <= 8 else np.dtype(np.uint16)


def packed_bytes(n_codes: int, n_bits: int) -> int:
    """Bytes taken by ``n_codes`` codes of ``n_bits`` each, packed back to back."""
    return (n_codes * n_bits + 7) // 8


def as_matrix(W, *, name: str = "W") -> np.ndarray:
    """View a weight tensor as a float32 matrix (out_features, in_features).

    1-D tensors are one row; (out, in, kh, kw) convolutions become (out, in*kh*kw).
    """
    W = as_float_array(W, name=name, dtype=np.float32)
    if W.ndim == 0:
        raise InputError(f"{name}: a 0-d scalar cannot be quantized")
    return W.reshape(1, -1) if W.ndim == 1 else W.reshape(W.shape[0], -1)


def check_codes(codes, *, n_entries: int, shape: tuple | None = None,
                name: str = "codes") -> np.ndarray:
    """Validate codes before they index a codebook: integer dtype, shape, range.

    ``shape`` may hold None for any length; None alone accepts any shape.
    """
    codes = np.asarray(codes)
    if codes.dtype.kind not in "ui":
        raise InputError(f"{name}: dtype {codes.dtype} is not an integer type")
    if shape is not None and (codes.ndim != len(shape) or any(
            s is not None and s != c for s, c in zip(shape, codes.shape))):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise InputError(f"{name}: expected shape {want}, got {codes.shape}")
    if codes.size and (codes.min() < 0 or codes.max() >= n_entries):
        raise InputError(f"{name}: values must lie in [0, {n_entries}), got "
                         f"[{codes.min()}, {codes.max()}]")
    return np.ascontiguousarray(codes)


class BaseQuantizer(BaseEstimator):
    """Shared behaviour; subclasses implement ``fit``, ``encode``, ``decode``, ``_sizes``.

    After ``fit`` every quantizer knows the byte sizes of what it would store for the
    fitted tensor (``nbytes_breakdown()``) and so its ``bits_per_weight``.
    """

    def _check_n_bits(self, high: int = 16) -> int:
        return check_int(self.n_bits, name="n_bits", low=1, high=high)

    def _check_codebook_dtype(self) -> np.dtype:
        return np.dtype(check_choice(self.codebook_dtype, name="codebook_dtype",
                                     choices=CODEBOOK_DTYPES))

    def _check_in_features(self, Wm: np.ndarray):
        if Wm.shape[1] != self.in_features_:
            raise InputError(f"W: has {Wm.shape[1]} input features; this "
                             f"{type(self).__name__} was fitted on {self.in_features_}")

    def _check_fitted(self):
        if not hasattr(self, "n_weights_"):
            raise InputError(f"this {type(self).__name__} is not fitted yet; call fit() first")

    def nbytes_breakdown(self) -> dict:
        """Bytes of each part stored for the fitted tensor: codes (packed), codebooks, scales."""
        self._check_fitted()
        parts = self._sizes()
        parts["total"] = sum(parts.values())
        return parts

    @property
    def bits_per_weight(self) -> float:
        """Stored bits (codes packed at their width, plus codebooks and scales) per weight."""
        return self.nbytes_breakdown()["total"] * 8 / self.n_weights_

    def fit_encode(self, W, *args, **kwargs) -> np.ndarray:
        """``fit(W)`` then ``encode(W)``."""
        return self.fit(W, *args, **kwargs).encode(W)

    def __repr__(self, N_CHAR_MAX=700):
        base = super().__repr__(N_CHAR_MAX)
        if hasattr(self, "n_weights_"):
            base += f"  # {self.bits_per_weight:.3f} bits/weight"
        return base


def to_blocks(Wm: np.ndarray, block_size: int) -> np.ndarray:
    """Split each row of a (out, in) matrix into blocks of ``block_size`` consecutive inputs.

    The input dimension is zero-padded to a multiple of ``block_size``.  Returns an array
    of shape (out, n_blocks, block_size), C-contiguous.
    """
    out, n_in = Wm.shape
    pad = (-n_in) % block_size
    if pad:
        Wm = np.pad(Wm, ((0, 0), (0, pad)))
    return np.ascontiguousarray(Wm.reshape(out, -1, block_size))


def training_sample(X: np.ndarray, k: int, max_points_per_centroid, rng) -> np.ndarray:
    """At most ``k * max_points_per_centroid`` rows of X drawn without replacement (all if None)."""
    if max_points_per_centroid is None:
        return X
    limit = k * check_int(max_points_per_centroid, name="max_points_per_centroid", low=1)
    if X.shape[0] <= limit:
        return X
    return X[np.sort(rng.choice(X.shape[0], size=limit, replace=False))]
