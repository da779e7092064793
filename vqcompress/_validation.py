"""Checks at the numpy boundary: every public function funnels its arrays through here.

Each check names the tensor (``name``) in its message, so an error raised deep inside a
pipeline still says which weight was at fault.
"""
from __future__ import annotations

import numbers

import numpy as np

from .errors import InputError


def as_float_array(x, *, name: str, ndim: int | tuple[int, ...] | None = None,
                   dtype=None) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 or float64 array, or raise InputError.

    float16 input is widened to float32; float64 is kept unless ``dtype`` says otherwise.
    Rejects object, integer and boolean arrays, the wrong rank, empty arrays and
    non-finite values.
    """
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise InputError(f"{name}: cannot be converted to an array ({exc})") from None
    if x.dtype == object:
        raise InputError(f"{name}: object arrays are not supported; pass a float array")
    if x.dtype.kind != "f":
        raise InputError(
            f"{name}: dtype {x.dtype} is not floating point; weights must be float16, "
            f"float32 or float64 (convert integer or boolean data explicitly)")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise InputError(f"{name}: expected {want}-D array, got shape {x.shape}")
    if x.size == 0:
        raise InputError(f"{name}: array is empty (shape {x.shape})")
    target = np.dtype(dtype) if dtype is not None else (
        np.float64 if x.dtype == np.float64 else np.float32)
    x = np.asarray(x, dtype=target, order="C")  # ascontiguousarray would make 0-d 1-D
    finite = np.isfinite(x)
    if not finite.all():
        n_nan = int(np.isnan(x).sum())
        n_inf = int(x.size - finite.sum() - n_nan)
        raise InputError(f"{name}: contains {n_nan} NaN and {n_inf} infinite values")
    return x


def as_sample_weight(w, n: int, *, name: str = "sample_weight") -> np.ndarray:
    """Return per-sample weights as float64 of shape (n,); ``None`` means all ones.

    Integer and boolean weights (a pruning mask, say) are accepted and converted.
    """
    if w is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(w)
    if w.dtype.kind in "biu":
        w = w.astype(np.float64)
    w = as_float_array(w, name=name, ndim=1, dtype=np.float64)
    if w.shape[0] != n:
        raise InputError(f"{name}: has {w.shape[0]} entries for {n} samples")
    if (w < 0).any():
        raise InputError(f"{name}: contains negative weights")
    if not (w > 0).any():
        raise InputError(f"{name}: all weights are zero")
    return w


def check_int(value, *, name: str, low: int, high: int | None = None) -> int:
    """Return ``value`` as int if it is an integer in [low, high], else raise InputError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InputError(f"{name} must be {span}, got {value}")
    return value


def check_choice(value, *, name: str, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else raise InputError."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def rng_from(random_state) -> np.random.Generator:
    """A numpy Generator from None, an int seed, or an existing Generator."""
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.Generator)):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    raise InputError(f"random_state must be None, an int or a numpy Generator, got {random_state!r}")
