"""Recording calibration statistics while a numpy model runs."""
from __future__ import annotations

import numpy as np

from ..calibration import RowCounts, Stats
from ..errors import InputError


class Recorder:
    """Accumulates XᵀX (float64) of the inputs each wrapped layer sees.

    ``recorder.wrap(layers)`` returns the same {name: layer} mapping with every layer
    wrapped: a call records its input and then runs the layer unchanged.  Floating-point
    inputs add to the layer's XᵀX; integer inputs (an embedding's ids) to its
    ``RowCounts``.  Memory is one in_features² float64 matrix per recorded layer
    (``diagonal=True``: one vector), or one count per row.
    ``recorder.stats`` is then what ``compress(..., calibration=...)`` and
    ``calibration.save`` take.

    Padded batches: set ``recorder.mask`` to a boolean array of the inputs' leading shape
    (for text, (batch, tokens), True on real tokens) before running the batch; inputs of
    that leading shape then count only their rows under True.  Inputs of another leading
    shape (a pooler's (batch, hidden)) are recorded whole.
    """

    def __init__(self, *, diagonal: bool = False):
        self.diagonal = bool(diagonal)
        self.stats: dict[str, Stats | RowCounts] = {}
        self._mask = None

    @property
    def mask(self):
        return self._mask

    @mask.setter
    def mask(self, value):
        if value is not None:
            value = np.asarray(value)
            if value.dtype != bool:
                raise InputError(f"recorder mask: expected a boolean array, got {value.dtype}")
        self._mask = value

    def wrap(self, layers: dict) -> dict:
        return {name: _Recording(self, name, layer) for name, layer in layers.items()}

    def record(self, name: str, x) -> None:
        x = np.asarray(x)
        if self._mask is not None:
            floats = x.dtype.kind == "f"
            if x.shape[: x.ndim - floats] == self._mask.shape:  # float rows end in features
                x = x[self._mask]
        if x.dtype.kind in "iu":
            self.stats.setdefault(name, RowCounts()).add(x, name=f"ids of {name!r}")
            return
        if x.dtype.kind != "f" or x.ndim == 0:
            return
        if name not in self.stats:
            self.stats[name] = Stats(x.shape[-1], diagonal=self.diagonal)
        self.stats[name].add(x, name=f"input of {name!r}")


class _Recording:
    """A layer that reports its inputs to a Recorder; other attributes are the layer's."""

    def __init__(self, recorder, name, layer):
        self._recorder, self._name, self._layer = recorder, name, layer

    def __call__(self, x):
        self._recorder.record(self._name, x)
        return self._layer(x)

    def __getattr__(self, attr):
        return getattr(self._layer, attr)
