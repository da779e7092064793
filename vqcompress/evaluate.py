"""sweep(): the compression pipeline over a grid of settings, each scored by the user's
evaluation function on the model read back from a real file.

A grid is a list of option dicts for ``compress`` (or one dict whose list values are
expanded into their product).  Each point is compressed, saved to a file (sizes are that
file's), read back, decompressed (or loaded as lookup-table layers) and evaluated.  A point
whose compression or evaluation raises is recorded with its error and the sweep goes on.
"""
from __future__ import annotations

import inspect
import itertools
import os
import tempfile
import time

import numpy as np

from .errors import InputError
from .io import open_weights
from .pipeline import compress, load

UNIFORM_BASELINE = (8, 4, 3, 2)  # what everyone would otherwise use
_DEFAULTS = {k: p.default for k, p in inspect.signature(compress).parameters.items()}


def expand_grid(grid) -> list[dict]:
    """A list of option dicts: dicts in a list are taken as they are, and list values in a
    dict are expanded into their Cartesian product."""
    if isinstance(grid, dict):
        grid = [grid]
    if not isinstance(grid, (list, tuple)):
        raise InputError("grid must be a dict or a list of dicts of compress options")
    points = []
    for spec in grid:
        if not isinstance(spec, dict):
            raise InputError(f"grid entry {spec!r} is not a dict of compress options")
        keys = list(spec)
        values = [v if isinstance(v, (list, tuple)) else [v] for v in spec.values()]
        points.extend(dict(zip(keys, combo)) for combo in itertools.product(*values))
    return points


def sweep(weights, evaluate, grid, *, baseline: bool = True, layers: bool = False,
          out_dir: str | None = None, progress=None) -> dict:
    """Run the pipeline over ``grid`` and score each point with ``evaluate``.

    Parameters
    ----------
    weights : {name: ndarray} or a weight file path
    evaluate : callable taking {name: dense ndarray} (or, with ``layers``, the
        ``vqcompress.nn.load`` layers) and returning a number (higher is better, e.g.
        accuracy) or a dict of numbers whose first entry is the metric.
    grid : list of dicts of ``compress`` options, or a dict of option lists
    baseline : also run uniform quantization at 8, 4, 3 and 2 bits (per output channel)
    layers : evaluate lookup-table layers instead of decompressed arrays
    out_dir : keep each point's .vqz here (otherwise in a temporary folder)
    progress : callable(i, n, point) before each point

    Returns {"reference": metric of the uncompressed weights, "source_bytes", "rows": [...]}
    where each row has the point's options, method, bits, file_bytes, ratio (source bytes /
    file bytes), bits_per_weight (file bits / weights), metric (or None), seconds and error.
    """
    if not callable(evaluate):
        raise InputError("evaluate must be callable")
    points = expand_grid(grid)
    if baseline:
        points += [{"method": "uniform", "bits": b, "group_size": "channel"}
                   for b in UNIFORM_BASELINE]
    if isinstance(weights, (str, os.PathLike)):
        src = open_weights(os.fspath(weights))
        weights = {name: np.asarray(src[name]) for name in src}
    original = {k: np.asarray(v) for k, v in weights.items()}
    reference = _metric(evaluate(original))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = out_dir or tmp
        os.makedirs(folder, exist_ok=True)
        for i, point in enumerate(points):
            if progress:
                progress(i, len(points), point)
            rows.append(_run_point(original, evaluate, point, i, folder, layers))
    return {"reference": reference,
            "source_bytes": int(sum(v.nbytes for v in original.values())), "rows": rows}


def _run_point(original, evaluate, point, i, folder, layers) -> dict:
    row = {"point": i, **point, "method": point.get("method", _DEFAULTS["method"]),
           "bits": point.get("bits", _DEFAULTS["bits"]), "file_bytes": None, "ratio": None,
           "bits_per_weight": None, "metric": None, "seconds": None, "error": None}
    t0 = time.perf_counter()
    stage = "compress"
    try:
        model = compress(original, **point)
        path = os.path.join(folder, f"point{i:03d}.vqz")
        model.save(path, force=True)  # sizes below are the written file's
        totals = model.report()["totals"]
        row.update(file_bytes=totals["file_bytes"], ratio=round(totals["ratio"], 4),
                   bits_per_weight=round(totals["bits_per_weight"], 4))
        stage = "evaluate"
        if layers:
            from . import nn
            result = evaluate(nn.load(path))
        else:
            result = evaluate(load(path).decompress())
        row["metric"] = _metric(result)
    except Exception as exc:  # a failing point is reported, and the sweep goes on
        row["error"] = f"{stage} failed at grid point {i} {point}: {type(exc).__name__}: {exc}"
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


def _metric(result) -> float:
    if isinstance(result, dict):
        if not result:
            raise InputError("evaluate returned an empty dict")
        result = next(iter(result.values()))
    try:
        return float(result)
    except (TypeError, ValueError):
        raise InputError(f"evaluate must return a number, got {result!r}") from None


def best_ratio(rows, reference: float, max_loss: float) -> dict | None:
    """The row with the highest ratio whose metric is within ``max_loss`` of the
    reference (None if no point qualifies)."""
    ok = [r for r in rows if r["metric"] is not None and r["metric"] >= reference - max_loss]
    return max(ok, key=lambda r: r["ratio"]) if ok else None
