"""Per-tensor plans from name rules, like ``llama-quantize --tensor-type``.

A rule is a glob pattern and a spec; the first rule whose pattern matches a tensor's name
decides its options, on top of the defaults given to ``compress``.  A spec is ``skip``
(store the tensor as it is) or ``key:value`` pairs, e.g.::

    *.bias=skip
    *word_embeddings*=method:kmeans,bits:3
    encoder.layer.*.weight=method:pq,bits:8,block_size:8
    *.dense.weight=prune:0.5,bits:5
    *.bias=method:kmeans,bits:6,min_elements:0     (vectors are quantized only by a rule)

``hot_rows:N`` splits a table by its calibration row counts (``calibration.RowCounts``):
its N most used rows take the rule's settings, the others those of the first rule that
matches the name with ``#cold`` appended, so that rule must come first.  Rows the
calibration never saw are ranked by how many of their neighbours it saw
(``calibration.rank_rows``)::

    *word_embeddings*#cold=method:pq,bits:8,block_size:8
    *word_embeddings*=method:kmeans,bits:4,hot_rows:2000
"""
from __future__ import annotations

import fnmatch

from .errors import InputError


def _bool(text) -> bool:
    if isinstance(text, bool):
        return text
    if str(text).lower() in ("true", "1", "yes"):
        return True
    if str(text).lower() in ("false", "0", "no"):
        return False
    raise ValueError(text)


_bool.__name__ = "bool"

# option name -> type used to parse it from text
OPTIONS = {"method": str, "bits": int, "block_size": int, "stages": int, "beam_size": int,
           "group_size": str, "symmetric": _bool, "codebook_dtype": str, "init": str, "entropy": str, "prune": float,
           "index_bits": int, "min_elements": int, "calibrate": _bool,
           "hadamard": _bool, "entropy_lambda": float, "hot_rows": int, "correction": float,
           "refit_rounds": int}
SKIP = {"skip": True}


def parse_rule(text: str) -> tuple[str, dict]:
    """'PATTERN=SPEC' -> (pattern, options)."""
    if "=" not in text:
        raise InputError(f"policy rule {text!r}: expected PATTERN=SPEC")
    pattern, spec = (part.strip() for part in text.split("=", 1))
    if not pattern:
        raise InputError(f"policy rule {text!r}: empty pattern")
    return pattern, parse_spec(spec, where=f"policy rule {text!r}")


def parse_spec(spec, *, where: str = "policy") -> dict:
    """A spec ('skip', 'key:value,...' or a dict) as a validated options dict."""
    if isinstance(spec, dict):
        items = list(spec.items())
    elif isinstance(spec, str) and spec.strip() in ("skip", "raw"):
        return dict(SKIP)
    elif isinstance(spec, str):
        items = []
        for pair in filter(None, (p.strip() for p in spec.split(","))):
            if ":" not in pair:
                raise InputError(f"{where}: {pair!r} is not key:value")
            k, v = (x.strip() for x in pair.split(":", 1))
            items.append((k, v))
    else:
        raise InputError(f"{where}: a spec is 'skip', 'key:value,...' or a dict")
    out = {}
    for k, v in items:
        if k == "skip":
            if v not in (True, "true", "1"):
                raise InputError(f"{where}: skip takes no value but true")
            return dict(SKIP)
        if k not in OPTIONS:
            raise InputError(f"{where}: unknown option {k!r}; known: {sorted(OPTIONS)}")
        if isinstance(v, str):
            try:
                v = OPTIONS[k](v)
            except ValueError:
                raise InputError(f"{where}: {k}={v!r} is not a {OPTIONS[k].__name__}") from None
        if k == "group_size" and isinstance(v, str) and v not in ("tensor", "channel"):
            try:
                v = int(v)
            except ValueError:
                raise InputError(f"{where}: group_size {v!r} is not tensor, channel or an int") \
                    from None
        out[k] = v
    return out


def parse_policy(policy) -> list[tuple[str, dict]]:
    """Rules from None, a list of 'PATTERN=SPEC' strings or (pattern, spec) pairs, or a dict
    {pattern: spec} (in order)."""
    if policy is None:
        return []
    if isinstance(policy, str):
        policy = [policy]
    items = policy.items() if isinstance(policy, dict) else policy
    rules = []
    for item in items:
        if isinstance(item, str):
            rules.append(parse_rule(item))
        else:
            pattern, spec = item
            rules.append((pattern, parse_spec(spec, where=f"policy rule {pattern!r}")))
    return rules


def plan_for(name: str, rules: list, defaults: dict) -> dict:
    """The options for tensor ``name``: the defaults, overridden by the first matching rule
    (``ruled`` tells whether one matched: a rule that names a tensor may quantize what the
    defaults leave raw, such as 1-D biases)."""
    for pattern, spec in rules:
        if fnmatch.fnmatchcase(name, pattern):
            return {**defaults, **spec, "ruled": True}
    return {**defaults, "ruled": False}
