"""Calibration statistics: what a layer's inputs look like, for output-aware quantization.

A linear layer's output error on inputs X is ||X (W - Ŵ)ᵀ||² = tr((W - Ŵ) XᵀX (W - Ŵ)ᵀ),
so all a quantizer needs from the calibration data is XᵀX (in_features²), or its diagonal
when only per-input importance is known.  ``Stats`` accumulates XᵀX in float64 over as
many batches as the caller runs, in bounded memory; ``save`` / ``load`` keep the
statistics of a whole model in one .safetensors file for reuse (``--calibration FILE``).

``compress(..., calibration=...)`` takes, per tensor name, a ``Stats``, an activation
matrix X (n × in_features) or a 1-D importance vector (in_features,).

Quantizing a model layer by layer, the inputs a layer sees in the partly quantized model
(X) differ from those of the original (R, the reference).  ``Stats.add(X, reference=R)``
also accumulates XᵀR; the quantizer then aims, on those inputs, at the original model's
output R Wᵀ rather than at X Wᵀ: the weight that does best there, least squares, is
W (XᵀR)ᵀ (XᵀX)⁻¹ (``Stats.target``), so a layer makes up for some of the error of the
layers before it (GPTAQ, Li et al. 2025, "asymmetric calibration").

An embedding table sees ids, not activations: what matters there is how often each row is
looked up.  ``RowCounts`` counts that; the policy option ``hot_rows:N`` stores the N most
used rows and the rest with settings of their own (``vqcompress.pipeline``).
"""
from __future__ import annotations

import json
import os

import numpy as np

from ._validation import as_float_array
from .errors import FormatError, InputError

FORMAT = "vqcompress-calibration"
CHUNK_ROWS = 1024  # rows of X buffered, then converted to float64 and added at once


class Stats:
    """XᵀX of a layer's inputs, accumulated in float64, and the number of rows seen; with
    reference inputs R (the same rows in the original model), XᵀR too.

    ``diagonal`` stats hold only the diagonal (a per-input importance vector): the
    quantizers then weight each input column, with no cross terms.
    """

    def __init__(self, in_features: int, *, diagonal: bool = False):
        self.in_features = int(in_features)
        self.diagonal = bool(diagonal)
        self._xtx = np.zeros(self.in_features if diagonal else (self.in_features,) * 2)
        self._xtr = None  # XᵀR, once rows come with a reference
        self._pending, self._pending_rows = [], 0  # small batches, added CHUNK_ROWS at once
        self.count = 0

    @property
    def xtx(self) -> np.ndarray:
        """XᵀX so far (float64; the diagonal only for ``diagonal`` stats)."""
        self._flush()
        return self._xtx

    @xtx.setter
    def xtx(self, value):
        self._flush()
        self._xtx = value

    @property
    def xtr(self) -> np.ndarray | None:
        """XᵀR so far (float64, in × in), or None: no reference inputs were given."""
        self._flush()
        return self._xtr

    def add(self, X, *, reference=None, name: str = "X") -> Stats:
        """Accumulate the rows of X (..., in_features), and with ``reference`` (the same
        rows' inputs in the original model, same shape) XᵀR; NaN or infinite values are
        refused.  Rows come with a reference every time or never.

        Rows are buffered (at most CHUNK_ROWS) and added in float64 a chunk at a time, so
        that many one-sentence batches cost what a few large ones do."""
        X = np.asarray(X)
        if X.ndim == 0 or X.shape[-1] != self.in_features:
            raise InputError(f"{name}: last dimension {X.shape[-1] if X.ndim else None}, "
                             f"expected {self.in_features}")
        if (reference is None) != (self._xtr is None) and self.count:
            raise InputError(f"{name}: rows come with a reference every time or never")
        if reference is not None:
            if self.diagonal:
                raise InputError(f"{name}: diagonal statistics take no reference")
            reference = np.asarray(reference)
            if reference.shape != X.shape:
                raise InputError(f"{name}: reference shape {reference.shape}, expected "
                                 f"{X.shape}")
        X = X.reshape(-1, self.in_features)
        if X.shape[0] == 0:
            return self
        X = np.array(as_float_array(X, name=name))  # a copy: callers may reuse the buffer
        if reference is not None:
            R = np.array(as_float_array(reference.reshape(X.shape), name=f"{name} reference"))
            X = np.concatenate([X, R], axis=1)  # buffered side by side
            if self._xtr is None:  # made with the first rows, so an empty add sets nothing
                self._xtr = np.zeros_like(self._xtx)
        self._pending.append(X)
        self._pending_rows += X.shape[0]
        self.count += X.shape[0]
        if self._pending_rows >= CHUNK_ROWS:
            self._flush()
        return self

    def _flush(self):
        if not self._pending:
            return
        X = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending, self._pending_rows = [], 0
        n = self.in_features
        for start in range(0, X.shape[0], CHUNK_ROWS):
            part = X[start:start + CHUNK_ROWS].astype(np.float64)
            if self.diagonal:
                self._xtx += np.einsum("ij,ij->j", part, part)
                continue
            rows = part[:, :n]
            self._xtx += rows.T @ rows
            if self._xtr is not None:
                self._xtr += rows.T @ part[:, n:]

    @classmethod
    def from_xtx(cls, xtx, count: int, *, xtr=None, name: str = "xtx") -> Stats:
        """Stats from a precomputed XᵀX (square, symmetric) or its diagonal, over ``count``
        rows, and optionally XᵀR (square, the same size)."""
        xtx = as_float_array(xtx, name=name, ndim=(1, 2), dtype=np.float64)
        if xtx.ndim == 2 and (xtx.shape[0] != xtx.shape[1] or
                              not np.allclose(xtx, xtx.T, rtol=1e-6, atol=0)):
            raise InputError(f"{name}: XᵀX must be square and symmetric, got {xtx.shape}")
        diag = xtx if xtx.ndim == 1 else np.diag(xtx)
        if (diag < 0).any():
            raise InputError(f"{name}: XᵀX has negative diagonal entries")
        if int(count) < 1:
            raise InputError(f"{name}: count must be at least 1, got {count}")
        if xtr is not None:
            xtr = as_float_array(xtr, name=f"{name} XᵀR", ndim=2, dtype=np.float64)
            if xtx.ndim != 2 or xtr.shape != xtx.shape:
                raise InputError(f"{name}: XᵀR must be square like XᵀX {xtx.shape}, got "
                                 f"{xtr.shape}")
        s = cls(xtx.shape[0], diagonal=xtx.ndim == 1)
        s.xtx = np.array(xtx)
        s._xtr = None if xtr is None else np.array(xtr)
        s.count = int(count)
        return s

    def target(self, W: np.ndarray, strength: float, *, damp: float = 0.01) -> np.ndarray:
        """The weight (out, in) to quantize for: W moved ``strength`` (0 to 1) of the way
        to the weight that best reproduces the reference output R Wᵀ on the inputs X.
        That weight solves Ŵ XᵀX = W (XᵀR)ᵀ, i.e. Ŵ = W + W (XᵀR - XᵀX)ᵀ (XᵀX)⁻¹; the
        inverse is damped (XᵀX + λI, λ = damp × mean diagonal, as GPTQ damps) in the
        correction term only, so that with R = X the target is W itself.  Without a
        reference, W.  Moved all the way it also fits the calibration rows' own noise: on
        all-MiniLM-L6-v2, a little over half the way did best (docs/benchmarks.md)."""
        if self.xtr is None or strength == 0:
            return W
        H = self.xtx
        lam = damp * float(np.mean(np.diag(H)))
        M = np.linalg.solve(H + lam * np.eye(len(H)), self.xtr - H)
        W64 = np.asarray(W, np.float64)
        return (W64 + strength * (W64 @ M.T)).astype(W.dtype)

    def hessian(self) -> np.ndarray:
        """E[xᵀx] = XᵀX / count as a dense (in, in) float64 matrix (diagonal ones expanded)."""
        if self.count == 0:
            raise InputError("calibration statistics have seen no rows")
        h = self.xtx / self.count
        return np.diag(h) if self.diagonal else h

    def __repr__(self):
        kind = "diagonal" if self.diagonal else "full"
        ref = ", with reference" if self._xtr is not None else ""
        return f"Stats({self.in_features} inputs, {kind}{ref}, {self.count} rows)"


class RowCounts:
    """How many times each row of a table (an embedding's ids) was looked up."""

    def __init__(self, counts=None, *, name: str = "counts"):
        if counts is None:
            self.counts = np.zeros(0, dtype=np.int64)
            return
        arr = np.asarray(counts)
        if arr.ndim != 1 or arr.dtype.kind not in "iu" or (arr.size and arr.min() < 0):
            raise InputError(f"{name}: row counts are a 1-D array of non-negative integers, "
                             f"got {arr.dtype} of shape {arr.shape}")
        self.counts = arr.astype(np.int64)

    def add(self, ids, *, name: str = "ids") -> RowCounts:
        """Count every id of ``ids`` (any shape, non-negative integers)."""
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise InputError(f"{name}: ids dtype {ids.dtype} is not an integer type")
        if ids.size == 0:
            return self
        if ids.min() < 0:
            raise InputError(f"{name}: negative ids")
        add = np.bincount(ids.reshape(-1), minlength=self.counts.size)
        add[: self.counts.size] += self.counts
        self.counts = add
        return self

    def for_rows(self, n_rows: int, *, name: str) -> np.ndarray:
        """The counts of a table of ``n_rows`` rows (rows never seen: 0)."""
        if self.counts.size > n_rows:
            raise InputError(f"calibration for {name!r}: counts for {self.counts.size} rows, "
                             f"but the tensor has {n_rows}")
        out = np.zeros(n_rows, dtype=np.int64)
        out[: self.counts.size] = self.counts
        return out

    def __repr__(self):
        return f"RowCounts({self.counts.size} rows, {int(self.counts.sum())} lookups)"


NEIGHBOURHOOD = 256  # rows around a never-seen row whose use predicts its own


def rank_rows(counts: np.ndarray) -> np.ndarray:
    """Row indices from most to least used: by count; ties (above all the rows the
    calibration never saw) to the row with more looked-up rows among its neighbours (the
    ``NEIGHBOURHOOD`` rows from i - 128 to i + 127), then to the lower row.

    Vocabularies are built in order of frequency (BPE merges, WordPiece), so a row nobody
    looked up is more likely to be used when its neighbours were: on all-MiniLM-L6-v2,
    counts from 500 sentences and 4,000 hot rows cover 93.9% of the tokens of 500 others
    this way, 91.1% with ties to the lower row (whose first thousand rows are unused
    tokens): benchmarks/hot_rows_coverage.py."""
    counts = np.asarray(counts)
    n, half = counts.size, NEIGHBOURHOOD // 2
    seen = np.concatenate(([0], np.cumsum(counts > 0)))  # seen[i]: rows below i looked up
    rows = np.arange(n)
    near = seen[np.minimum(rows + half, n)] - seen[np.maximum(rows - half, 0)]  # [i-h, i+h)
    return np.lexsort((rows, -near, -counts))


def as_stats(value, *, name: str, in_features: int) -> Stats:
    """A tensor's calibration as Stats: a Stats, activations X (n, in_features) or a 1-D
    importance vector (in_features,) (non-negative)."""
    if isinstance(value, Stats):
        s = value
    else:
        arr = np.asarray(value)
        if arr.ndim == 1:
            s = Stats.from_xtx(arr, 1, name=f"calibration for {name!r}")
        elif arr.ndim == 2:
            s = Stats(arr.shape[1]).add(arr, name=f"calibration for {name!r}")
            if s.count == 0:
                raise InputError(f"calibration for {name!r}: no rows of activations")
        else:
            raise InputError(f"calibration for {name!r}: expected Stats, activations "
                             f"(n, in_features) or an importance vector, got rank {arr.ndim}")
    if s.in_features != in_features:
        raise InputError(f"calibration for {name!r}: {s.in_features} input features, but the "
                         f"tensor has {in_features}")
    if s.count == 0:
        raise InputError(f"calibration for {name!r}: no rows seen")
    return s


def save(path: str, stats: dict, *, force: bool = False) -> int:
    """Write {tensor name: Stats or RowCounts} to a .safetensors file (atomically);
    returns its size.  A Stats' XᵀR, when it has one, is stored as ``NAME#reference``."""
    from ._safetensors import write

    path = os.fspath(path)
    if not path.endswith(".safetensors"):
        raise InputError(f"{path}: calibration statistics are written as .safetensors")
    meta, arrays = {}, {}
    for name, s in stats.items():
        if isinstance(s, RowCounts):
            meta[name], arrays[name] = {"rows": True}, s.counts
            continue
        meta[name], arrays[name] = {"count": s.count, "diagonal": s.diagonal}, s.xtx
        if s.xtr is not None:
            meta[name]["reference"] = True
            arrays[name + REFERENCE] = s.xtr
    return write(path, arrays, {"format": FORMAT, "stats": json.dumps(meta)}, force=force)


REFERENCE = "#reference"  # suffix of a stored XᵀR's name


def load(path: str) -> dict:
    """{tensor name: Stats or RowCounts} from a file written by ``save``, validated."""
    from .io import open_weights

    path = os.fspath(path)
    f = open_weights(path)
    meta = getattr(f, "metadata", None) or {}
    if meta.get("format") != FORMAT:
        raise FormatError(f"{path}: not a vqcompress calibration file")
    try:
        info = json.loads(meta["stats"])
        if set(info) | {n + REFERENCE for n in info if info[n].get("reference") is True} \
                != set(f):
            raise ValueError("the tensors and their descriptions differ")
        out = {}
        for name in info:
            if info[name].get("rows") is True:
                if f[name].dtype != np.int64:
                    raise ValueError(f"{name}: row counts must be int64")
                out[name] = RowCounts(f[name], name=f"{path}: {name}")
                continue
            xtx, count, diagonal = f[name], info[name]["count"], info[name]["diagonal"]
            if not isinstance(count, int) or isinstance(count, bool) or \
                    xtx.ndim != (1 if diagonal else 2) or xtx.dtype != np.float64:
                raise ValueError(f"{name}: bad entry")
            xtr = f[name + REFERENCE] if info[name].get("reference") is True else None
            if xtr is not None and xtr.dtype != np.float64:
                raise ValueError(f"{name}: bad reference entry")
            out[name] = Stats.from_xtx(xtx, count, xtr=xtr, name=f"{path}: {name}")
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{path}: malformed calibration file ({exc})") from None
    return out
