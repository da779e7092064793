"""Fuzz campaign against the .vqz reader (the long run of tests/test_fuzz.py).

Mutated files (tests/vqz_mutations.py) are checked in batches in child processes, so a
segmentation fault or an abort shows up as a dead child with its batch seed instead of
ending the campaign.  Each case must load and decode to its declared shapes or raise
FormatError, within 1 s, with bounded memory.  Prints the outcome counts and which check
rejected the files (so we see the mutations reach past the checksums).

    python benchmarks/fuzz_vqz.py [--cases 50000] [--batch 2500] [--workers 2]
"""
import _harness  # noqa: F401  (first: pins thread counts before numba, BLAS, faiss start)

import argparse
import collections
import multiprocessing as mp
import os
import random
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from _harness import header, table


def run_batch(args):
    seed, n = args
    import vqz_mutations as mut
    from vqcompress import FormatError

    bases = mut.base_files()
    rng = random.Random(seed)
    counts = collections.Counter()
    reasons = collections.Counter()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "case.vqz")
        for i in range(n):
            case_seed = rng.randrange(2**32)
            which = case_seed % len(bases)
            data = mut.mutate(bases[which], random.Random(case_seed))
            try:
                outcome = mut.check(data, path)
                counts[outcome] += 1
                if outcome == "rejected":
                    try:
                        import vqcompress as vq
                        vq.load(path)
                    except FormatError as exc:
                        reasons[_reason(str(exc))] += 1
            except AssertionError as exc:
                counts["wrong shape, slow or memory"] += 1
                failures.append((case_seed, which, str(exc)[:200]))
            except Exception as exc:  # anything but FormatError is a bug
                counts[f"other exception: {type(exc).__name__}"] += 1
                failures.append((case_seed, which, repr(exc)[:200]))
    return seed, counts, reasons, failures


def _reason(msg: str) -> str:
    """The kind of check that fired, from a FormatError message (paths and numbers out)."""
    msg = re.sub(r"^\S+\.vqz: ", "", msg)
    msg = re.sub(r"tensor '[^']*': ", "", msg)
    msg = re.sub(r"'[^']*'", "'…'", msg)
    msg = re.sub(r"-?\d[\d_.e+-]*", "N", msg)
    return msg[:70]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=2_500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20261122)
    args = ap.parse_args()
    header(f"Fuzz campaign: {args.cases:,} mutated .vqz files")
    rng = random.Random(args.seed)
    jobs = []
    left = args.cases
    while left > 0:
        jobs.append((rng.randrange(2**32), min(args.batch, left)))
        left -= args.batch
    counts, reasons, failures, crashed = collections.Counter(), collections.Counter(), [], []
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers, maxtasksperchild=1) as pool:
        pending = {seed: pool.apply_async(run_batch, ((seed, n),)) for seed, n in jobs}
        for seed, res in pending.items():
            try:
                _, c, r, f = res.get(timeout=3600)
                counts.update(c)
                reasons.update(r)
                failures.extend(f)
            except Exception as exc:  # a child that died: a crash
                crashed.append((seed, repr(exc)[:200]))
    elapsed = time.perf_counter() - t0
    total = sum(counts.values())
    print(f"{total:,} cases in {elapsed:.0f} s; crashed batches: {len(crashed)}\n")
    table([{"outcome": k, "cases": v} for k, v in counts.most_common()], ["outcome", "cases"])
    print("What rejected the files (FormatError messages, numbers and names elided):\n")
    table([{"check": k, "cases": v} for k, v in reasons.most_common(25)], ["check", "cases"])
    for f in failures[:20]:
        print("FAILURE seed/base/message:", f)
    for c in crashed:
        print("CRASHED batch seed:", c)
    if failures or crashed:
        sys.exit(1)


if __name__ == "__main__":
    main()
