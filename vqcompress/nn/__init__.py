"""numpy layers that compute from a .vqz file's codes: ``load(path)`` and the classes;
``Recorder`` collects calibration statistics while a model runs."""
from __future__ import annotations

import fnmatch

from .layers import (
    CROSSOVER,
    LUTEmbedding,
    LUTLinear,
    default_crossover,
    default_tile_rows,
    tile_buffer_nbytes,
)
from .record import Recorder

__all__ = ["load", "LUTLinear", "LUTEmbedding", "CROSSOVER", "default_crossover",
           "default_tile_rows", "tile_buffer_nbytes", "Recorder"]


def load(path_or_model, *, embeddings=("*embed*",)) -> dict:
    """The layers of a .vqz file (or of a loaded CompressedModel), by weight tensor name.

    Every 2-D tensor whose name ends in 'weight' becomes a ``LUTLinear`` (with the bias
    stored beside it, ``<prefix>bias``, when there is one), or a ``LUTEmbedding`` when its
    name matches one of the ``embeddings`` glob patterns.
    """
    from ..pipeline import CompressedModel
    from ..pipeline import load as load_model

    model = path_or_model if isinstance(path_or_model, CompressedModel) \
        else load_model(path_or_model)
    layers = {}
    for name, t in model.tensors.items():
        if len(t.shape) != 2 or not name.endswith("weight"):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in embeddings):
            layers[name] = LUTEmbedding(t)
            continue
        bias_name = name[: -len("weight")] + "bias"
        bias = model.tensors[bias_name].decompress() if bias_name in model.tensors else None
        layers[name] = LUTLinear(t, bias)
    return layers
