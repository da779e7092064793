"""Uniform (affine) quantization: the baseline every codebook method is compared with."""
from __future__ import annotations

import numbers

import numpy as np

from .._validation import check_choice, check_int
from ..coding.bitpack import pack, unpack
from ..errors import InputError
from ._base import BaseQuantizer, as_matrix, check_codes, code_dtype, restore_check

SCALE_DTYPES = ("float16", "float32")
# Clipping ratios tried by clip='mse' (as GPTQ's grid search: shrink the range up to 80%).
_CLIP_GRID = np.linspace(1.0, 0.2, 41)


class UniformQuantizer(BaseQuantizer):
    """Round-to-nearest on an evenly spaced grid, one scale per group of weights.

    Parameters
    ----------
    n_bits : int in [1, 16] (2..16 when symmetric)
    group_size : 'tensor', 'channel' or int
        One scale for the whole tensor, one per output channel (row), or one per run of
        ``group_size`` consecutive weights of a row (GGUF Q4_0 uses 32).
    symmetric : bool
        True: grid ``scale * q`` with q in [-2**(b-1), 2**(b-1) - 1] and the scale signed so
        the largest-magnitude weight lands exactly on -2**(b-1) (as llama.cpp's Q4_0).
        False: ``scale * (q - zero_point)`` over [min, max] widened to include 0 (as GPTQ),
        with an n_bits integer zero point per group.
    clip : {'minmax', 'mse'}
        'mse' shrinks each group's range by the factor (of 41 in [0.2, 1]) with the least
        squared error.
    scale_dtype : {'float16', 'float32'}

    Attributes
    ----------
    scales_ : ndarray of shape (n_rows, n_groups) in ``scale_dtype``
    zero_points_ : ndarray of shape (n_rows, n_groups) (asymmetric only, else None)
    in_features_, shape_, n_weights_
    """

    def __init__(self, n_bits=4, group_size="channel", symmetric=False, clip="minmax",
                 scale_dtype="float16"):
        self.n_bits = n_bits
        self.group_size = group_size
        self.symmetric = symmetric
        self.clip = clip
        self.scale_dtype = scale_dtype

    def fit(self, W):
        """Choose the scale (and zero point) of every group of W."""
        n_bits, sdtype = self._check_params()
        Wm = as_matrix(W)
        self.in_features_ = Wm.shape[1]
        self.shape_ = np.shape(W)
        self.n_weights_ = int(Wm.size)
        G = self._groups(Wm).astype(np.float64)
        alphas = _CLIP_GRID if self.clip == "mse" else _CLIP_GRID[:1]
        best_err = None
        for a in alphas:
            scale, zero = _grid(G, a, n_bits, bool(self.symmetric), sdtype)
            err = np.sum((_roundtrip(G, scale, zero, n_bits, bool(self.symmetric)) - G) ** 2,
                         axis=-1)
            if best_err is None:
                best_err, best_scale, best_zero = err, scale, zero
            else:
                better = err < best_err
                best_err = np.where(better, err, best_err)
                best_scale = np.where(better[..., None], scale, best_scale)
                if zero is not None:
                    best_zero = np.where(better[..., None], zero, best_zero)
        self.scales_ = best_scale[..., 0].astype(sdtype)
        self.zero_points_ = None if best_zero is None else \
            best_zero[..., 0].astype(code_dtype(n_bits))
        return self

    _DECODE_PARAMS = ("n_bits", "group_size", "symmetric", "scale_dtype")

    def _check_params(self):
        n_bits = check_int(self.n_bits, name="n_bits", low=2 if self.symmetric else 1, high=16)
        check_choice(self.clip, name="clip", choices=("minmax", "mse"))
        sdtype = np.dtype(check_choice(self.scale_dtype, name="scale_dtype",
                                       choices=SCALE_DTYPES))
        if not (self.group_size in ("tensor", "channel") or (
                isinstance(self.group_size, numbers.Integral)
                and not isinstance(self.group_size, bool) and self.group_size >= 1)):
            raise InputError(f"group_size must be 'tensor', 'channel' or a positive integer, "
                             f"got {self.group_size!r}")
        return n_bits, sdtype

    def encode(self, W) -> np.ndarray:
        """Unsigned codes of shape (out_features, in_features)."""
        self._check_fitted()
        Wm = as_matrix(W)
        self._check_in_features(Wm)
        G = self._groups(Wm).astype(np.float64)
        scale, zero = self._params()
        q = _quantize(G, scale, zero, self.n_bits, bool(self.symmetric))
        if self.symmetric:
            q = q + (1 << (self.n_bits - 1))
        return self._ungroup(q, Wm.shape).astype(code_dtype(self.n_bits))

    def decode(self, codes) -> np.ndarray:
        """float32 matrix (out_features, in_features) from codes."""
        self._check_fitted()
        rows = self.n_weights_ // self.in_features_
        codes = check_codes(codes, n_entries=1 << self.n_bits, shape=(rows, self.in_features_))
        q = self._groups(codes.astype(np.float64))
        if self.symmetric:
            q = q - (1 << (self.n_bits - 1))
        scale, zero = self._params()
        out = (q if zero is None else q - zero) * scale
        return self._ungroup(out, codes.shape).astype(np.float32)

    def decode_rows(self, codes, rows) -> np.ndarray:
        """float32 rows of the weight matrix from codes[rows] (see BaseQuantizer)."""
        self._check_fitted()
        q = np.asarray(codes).astype(np.float64)
        n = q.shape[0]
        if self.group_size == "tensor":  # one group: the scale does not depend on the row
            G = q.reshape(n, 1, -1)
            scale, zero = self._params()
        else:
            G = self._groups(q)
            scale = self.scales_.astype(np.float64)[rows][..., None]
            zero = None if self.zero_points_ is None else \
                self.zero_points_.astype(np.float64)[rows][..., None]
        if self.symmetric:
            G = G - (1 << (self.n_bits - 1))
        out = (G if zero is None else G - zero) * scale
        return out.reshape(n, -1)[:, : self.in_features_].astype(np.float32)

    # -- grouping -------------------------------------------------------------------------
    def _groups(self, M):
        """(n_rows, n_groups, group_len) view of a (rows, in) matrix; the last group of a row
        is padded by repeating its last value (which changes neither min nor max)."""
        if self.group_size == "tensor":
            return M.reshape(1, 1, -1)
        if self.group_size == "channel":
            return M.reshape(M.shape[0], 1, -1)
        g = int(self.group_size)
        pad = (-M.shape[1]) % g
        if pad:
            M = np.pad(M, ((0, 0), (0, pad)), mode="edge")
        return M.reshape(M.shape[0], -1, g)

    def _ungroup(self, G, shape):
        rows, cols = shape
        return G.reshape(rows, -1)[:, :cols]

    def _params(self):
        scale = self.scales_.astype(np.float64)[..., None]
        zero = None if self.zero_points_ is None else self.zero_points_.astype(np.float64)[..., None]
        return scale, zero

    _STATE_META = ("shape_", "n_weights_", "in_features_")

    def _code_shape(self):
        return (self.n_weights_ // self.in_features_, self.in_features_)

    def _group_grid(self):
        """(n_rows, n_groups) of the scale array for the fitted shape."""
        rows = self.n_weights_ // self.in_features_
        if self.group_size == "tensor":
            return (1, 1)
        if self.group_size == "channel":
            return (rows, 1)
        return (rows, -(-self.in_features_ // int(self.group_size)))

    def _arrays(self):
        arrays = {"scales": self.scales_}
        if self.zero_points_ is not None:
            arrays["zero_points"] = pack(self.zero_points_, self.n_bits)
        return arrays

    def _restore_arrays(self, arrays):
        if self.n_weights_ % self.in_features_:
            raise ValueError("inconsistent shape")
        grid = self._group_grid()
        self.scales_ = restore_check(arrays["scales"], name="scales", shape=grid,
                                     dtypes=(self.scale_dtype,))
        if self.symmetric:
            self.zero_points_ = None
        else:
            self.zero_points_ = unpack(arrays["zero_points"], self.n_bits,
                                       grid[0] * grid[1]).reshape(grid)



# --- private core ---------------------------------------------------------------------------


def _grid(G, alpha, n_bits, symmetric, sdtype):
    """Scale (and zero point) per group for clipping ratio alpha, scales rounded to sdtype."""
    tiny = np.float64(2.0 ** -24) if sdtype == np.float16 else np.float64(1e-30)
    if symmetric:
        idx = np.argmax(np.abs(G), axis=-1)[..., None]
        extreme = np.take_along_axis(G, idx, axis=-1) * alpha
        scale = extreme / -(1 << (n_bits - 1))
        zero = None
    else:
        qmax = (1 << n_bits) - 1
        lo = np.minimum(G.min(axis=-1, keepdims=True) * alpha, 0.0)
        hi = np.maximum(G.max(axis=-1, keepdims=True) * alpha, 0.0)
        scale = (hi - lo) / qmax
    scale = np.where(np.abs(scale) < tiny, np.where(scale < 0, -tiny, tiny), scale)
    scale = scale.astype(sdtype)
    if not np.isfinite(scale).all():
        raise InputError(f"W: weights too large for {sdtype} scales; use scale_dtype='float32'")
    scale = scale.astype(np.float64)
    if not symmetric:
        zero = np.clip(np.rint(-lo / scale), 0, qmax)
    return scale, zero


def _quantize(G, scale, zero, n_bits, symmetric):
    if symmetric:
        half = 1 << (n_bits - 1)
        return np.clip(np.rint(G / scale), -half, half - 1)
    return np.clip(np.rint(G / scale) + zero, 0, (1 << n_bits) - 1)


def _roundtrip(G, scale, zero, n_bits, symmetric):
    q = _quantize(G, scale, zero, n_bits, symmetric)
    return q * scale if symmetric else (q - zero) * scale
