"""Pruning masks (True = keep) and schedules.

Masks are plain boolean arrays of the weight's shape, so any training loop can re-apply
them after each update (``W *= mask``) during iterative prune-and-retrain.
"""
from __future__ import annotations

import numpy as np

from ._validation import as_float_array, check_int
from .errors import InputError


def _check_fraction(value, name, *, high_open=True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < 0 or (value >= 1 if high_open else value > 1):
        raise InputError(f"{name} must lie in [0, 1{')' if high_open else ']'}, got {value!r}")
    return float(value)


def _keep_largest(scores: np.ndarray, n_keep: int) -> np.ndarray:
    """Boolean mask keeping exactly ``n_keep`` of the largest scores (ties: earlier wins)."""
    flat = scores.reshape(-1)
    mask = np.zeros(flat.shape[0], dtype=bool)
    if n_keep > 0:
        order = np.argsort(-flat, kind="stable")
        mask[order[:n_keep]] = True
    return mask.reshape(scores.shape)


def magnitude_mask(W, sparsity: float) -> np.ndarray:
    """Keep the largest-magnitude weights so that ``round(sparsity * size)`` are pruned.

    Parameters
    ----------
    W : array-like of any shape
    sparsity : float in [0, 1), fraction of weights to prune
    """
    W = as_float_array(W, name="W")
    s = _check_fraction(sparsity, "sparsity")
    return _keep_largest(np.abs(W), W.size - int(round(s * W.size)))


def threshold_mask(W, quality: float) -> np.ndarray:
    """Han et al.'s rule: prune weights with |w| <= quality * std(W)."""
    W = as_float_array(W, name="W")
    if not isinstance(quality, (int, float)) or not np.isfinite(quality) or quality < 0:
        raise InputError(f"quality must be a non-negative number, got {quality!r}")
    return np.abs(W) > quality * float(np.std(W, dtype=np.float64))


def global_magnitude_masks(weights: dict, sparsity: float) -> dict:
    """One magnitude threshold across all tensors: ``round(sparsity * total)`` of all the
    weights together are pruned, so layers with small weights lose more."""
    s = _check_fraction(sparsity, "sparsity")
    arrays = {k: np.abs(as_float_array(v, name=k)) for k, v in weights.items()}
    if not arrays:
        return {}
    flat = np.concatenate([a.reshape(-1) for a in arrays.values()])
    keep = _keep_largest(flat, flat.size - int(round(s * flat.size)))
    out, pos = {}, 0
    for k, a in arrays.items():
        out[k] = keep[pos:pos + a.size].reshape(a.shape)
        pos += a.size
    return out


def structured_mask(W, sparsity: float, *, norm: int = 2) -> np.ndarray:
    """Prune whole output channels (rows of (out, ...)) with the smallest L1/L2 norm."""
    W = as_float_array(W, name="W", ndim=(2, 3, 4))
    s = _check_fraction(sparsity, "sparsity")
    if norm not in (1, 2):
        raise InputError(f"norm must be 1 or 2, got {norm!r}")
    rows = W.reshape(W.shape[0], -1).astype(np.float64)
    scores = np.abs(rows).sum(axis=1) if norm == 1 else np.sqrt((rows ** 2).sum(axis=1))
    keep_rows = _keep_largest(scores, W.shape[0] - int(round(s * W.shape[0])))
    return np.broadcast_to(keep_rows.reshape((-1,) + (1,) * (W.ndim - 1)), W.shape).copy()


def nm_mask(W, n: int = 2, m: int = 4) -> np.ndarray:
    """N:M sparsity along the input dimension: in every run of ``m`` consecutive weights of a
    row keep the ``n`` largest in magnitude (2:4 is what sparse tensor cores run).  The
    input dimension must be a multiple of ``m``."""
    W = as_float_array(W, name="W", ndim=(2, 3, 4))
    m = check_int(m, name="m", low=1)
    n = check_int(n, name="n", low=0, high=m)
    rows = W.reshape(W.shape[0], -1)
    if rows.shape[1] % m:
        raise InputError(f"W: {rows.shape[1]} inputs per row is not a multiple of m={m}")
    groups = np.abs(rows).reshape(rows.shape[0], -1, m)
    order = np.argsort(-groups, axis=-1, kind="stable")
    mask = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(mask, order[..., :n], True, axis=-1)
    return mask.reshape(W.shape)


def cubic_sparsity(step: int, final_sparsity: float, *, begin_step: int, end_step: int,
                   initial_sparsity: float = 0.0) -> float:
    """Gradual pruning schedule of Zhu & Gupta (2017):
    s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (t_end - t_0))**3, held at s_i before
    ``begin_step`` and at s_f after ``end_step``."""
    s_f = _check_fraction(final_sparsity, "final_sparsity")
    s_i = _check_fraction(initial_sparsity, "initial_sparsity")
    begin_step = check_int(begin_step, name="begin_step", low=0)
    end_step = check_int(end_step, name="end_step", low=begin_step + 1)
    t = min(max(int(step), begin_step), end_step)
    frac = (t - begin_step) / (end_step - begin_step)
    return s_f + (s_i - s_f) * (1.0 - frac) ** 3


def centroid_gradients(codes, grad, n_centroids: int, mask=None) -> np.ndarray:
    """Gradient of the loss with respect to each shared weight (Deep Compression §3.3):
    the sum of the gradients of all (unpruned) weights that share it.

    codes : integer array, the weights' codebook indices; grad : same shape, dL/dW;
    mask : optional boolean array, False for pruned weights.  Returns (n_centroids,)
    float64.  For block codes (PQ), pass grad reshaped to (..., block_size) blocks and
    get (n_centroids, block_size).
    """
    codes = np.asarray(codes)
    grad = np.asarray(grad, dtype=np.float64)
    if codes.dtype.kind not in "ui":
        raise InputError(f"codes: dtype {codes.dtype} is not an integer type")
    vector = grad.ndim == codes.ndim + 1
    if grad.shape[: codes.ndim] != codes.shape or not (vector or grad.ndim == codes.ndim):
        raise InputError(f"grad: shape {grad.shape} does not match codes {codes.shape}")
    if codes.size and (codes.min() < 0 or codes.max() >= n_centroids):
        raise InputError(f"codes: values must lie in [0, {n_centroids})")
    keep = np.ones(codes.shape, bool) if mask is None else np.asarray(mask, dtype=bool)
    c = codes[keep].astype(np.int64)
    g = grad[keep]
    if not vector:
        return np.bincount(c, weights=g, minlength=n_centroids)
    return np.stack([np.bincount(c, weights=g[:, j], minlength=n_centroids)
                     for j in range(g.shape[1])], axis=1)
