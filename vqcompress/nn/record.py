"""Recording calibration statistics while a numpy model runs."""
from __future__ import annotations

import numpy as np

from ..calibration import RowCounts, Stats


class Recorder:
    """Accumulates XᵀX (float64) of the inputs each wrapped layer sees.

    ``recorder.wrap(layers)`` returns the same {name: layer} mapping with every layer
    wrapped: a call records its input and then runs the layer unchanged.  Floating-point
    inputs add to the layer's XᵀX; integer inputs (an embedding's ids) to its
    ``RowCounts``.  Memory is one in_features² float64 matrix per recorded layer
    (``diagonal=True``: one vector), or one count per row.
    ``recorder.stats`` is then what ``compress(..., calibration=...)`` and
    ``calibration.save`` take.  Padding rows are recorded like any other: run unpadded
    batches (batch size 1 for variable-length text) when padding should not count.
    """

    def __init__(self, *, diagonal: bool = False):
        self.diagonal = bool(diagonal)
        self.stats: dict[str, Stats | RowCounts] = {}

    def wrap(self, layers: dict) -> dict:
        return {name: _Recording(self, name, layer) for name, layer in layers.items()}

    def record(self, name: str, x) -> None:
        x = np.asarray(x)
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
