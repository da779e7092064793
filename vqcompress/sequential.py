"""Sequential quantization: a model's matrices quantized again in the order the model uses
them, each for the original model's output on the inputs it sees once the matrices before
it are quantized.

Quantized one at a time on the original model's inputs, every matrix assumes the layers
before it are exact; they are not, and their errors add up along the model.  Here each
group of matrices (those that read the same point of the model, such as a block's query,
key and value projections) is recorded on calibration data twice, in the partly quantized
model (X) and in the original (R), and quantized for the original output on X
(``calibration.Stats.target``, moved ``correction`` of the way), with the setting the
first pass chose for it (``compress``, with or without ``target_bits_per_weight``).

The model is the caller's: ``record(current, names)`` runs the calibration data through it
with the weights ``current`` and returns each named matrix's ``Stats`` with reference
inputs (``Stats.add(X, reference=R)``).  ``vqcompress.examples.minilm.SequentialRecorder``
is one, for BERT encoders.
"""
from __future__ import annotations

import glob

from . import container
from .errors import InputError
from .pipeline import CompressedModel, compress
from .policy import parse_policy

# compress() options that choose settings; the second pass keeps the first pass's choice
_CHOOSING = ("target_bits_per_weight", "candidates", "sensitivity", "calibration", "executor",
             "progress")


def requantize(model: CompressedModel, weights: dict, groups: list, record, **options) -> CompressedModel:
    """``model`` with the matrices of ``groups`` quantized again, in order.

    Parameters
    ----------
    model : CompressedModel, the first pass (``compress`` of ``weights`` with ``options``)
    weights : {name: ndarray}, the original weights
    groups : list of lists of tensor names, in the order the model uses them; a group's
        inputs may depend only on the groups before it
    record : callable(current, names) -> {name: calibration.Stats with reference inputs},
        ``current`` being {name: ndarray}, every weight of the model as it now stands
    options : the keyword options ``model`` was compressed with (method, policy,
        hadamard, ...; ``correction`` sets how far each target moves).  A tensor the
        allocation chose a candidate for keeps that candidate; the others take the plan
        of ``options`` (a model read from a file carries no allocation record, so pass
        the options that give its settings).  With
        ``target_bits_per_weight`` the result stays within that budget: if the new codes
        came out larger, matrices go back to their first-pass codes, the one that grew
        most first, until it fits.
    """
    names = [n for g in groups for n in g]
    unknown = [n for n in names if n not in model.tensors or n not in weights]
    if unknown:
        raise InputError(f"requantize: groups name tensors not in the model: {unknown[:4]}")
    if len(set(names)) != len(names):
        raise InputError("requantize: a tensor is named in more than one group")
    budget = options.get("target_bits_per_weight")
    kw = {k: v for k, v in options.items() if k not in _CHOOSING}
    policy = parse_policy(kw.pop("policy", None))
    tensors = dict(model.tensors)
    current = {n: t.decompress() for n, t in tensors.items()}
    for group in groups:
        stats = record(current, list(group))
        missing = [n for n in group if n not in stats or stats[n].xtr is None]
        if missing:
            raise InputError(f"requantize: record gave no statistics with reference inputs "
                             f"for {missing[:4]}")
        # each matrix at the setting the first pass chose for it (an allocation's
        # candidate), as a rule naming it alone, ahead of the caller's rules
        rules = parse_policy([(glob.escape(n), tensors[n].info["allocation"]["candidate"])
                              for n in group if "allocation" in tensors[n].info])
        sub = compress({n: weights[n] for n in group}, calibration=stats,
                       policy=rules + policy, **kw)
        for n in group:
            tensors[n] = sub.tensors[n]
            current[n] = tensors[n].decompress()
    if budget is not None:
        limit = budget * sum(t.size for t in tensors.values()) / 8
        grown = sorted(names, key=lambda n: tensors[n].nbytes - model.tensors[n].nbytes)
        while container.file_size(tensors) > limit and grown:
            n = grown.pop()  # the one that grew most goes back
            tensors[n] = model.tensors[n]
    return CompressedModel(tensors, source_bytes=model.source_bytes)
