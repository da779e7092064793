"""Scalar weight sharing: 1-D k-means on 1,000,000 Laplace float32 weights.

Ours (sorted Lloyd, and the exact optimum) against faiss.Kmeans(d=1) and scikit-learn
KMeans, same process.  Every inertia is recomputed the same way, over all weights, from
each method's centers.

    python benchmarks/bench_kmeans1d.py [--n 1000000]
"""
import _harness  # noqa: F401  (first: pins thread counts before numba, BLAS, faiss start)

import argparse

import faiss
import numpy as np
from sklearn.cluster import KMeans

import vqcompress as vq
from _harness import best_of, header, table


def inertia(x, centers):
    """Sum of squared distances to the nearest center, float64, over all of x."""
    c = np.sort(np.asarray(centers, dtype=np.float64).ravel())
    mids = 0.5 * (c[1:] + c[:-1])
    lab = np.searchsorted(mids, x, side="left")
    return float(np.sum((x.astype(np.float64) - c[lab]) ** 2))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    header(f"Scalar weight sharing, {args.n:,} Laplace float32 weights")
    x = np.random.default_rng(0).laplace(size=args.n).astype(np.float32)
    X = x[:, None]
    vq.kmeans(x[:5000], 8)  # compile / load the numba cache outside the timings
    vq.kmeans_1d_optimal(x[:5000], 8)
    for k in (16, 256):
        rows = []

        def faiss_run(max_ppc):
            km = faiss.Kmeans(1, k, niter=25, seed=1, max_points_per_centroid=max_ppc)
            km.train(X)
            km.index.search(X, 1)  # labels, which ours also returns
            return km.centroids[:, 0]

        runs = [
            ("vqcompress sorted Lloyd (init=linear)", lambda: vq.kmeans(x, k, init="linear").centers, args.repeats),
            ("vqcompress exact optimum", lambda: vq.kmeans_1d_optimal(x, k).centers, args.repeats),
            ("faiss.Kmeans d=1, all weights, 25 it", lambda: faiss_run(args.n // k + 1), args.repeats),
            ("faiss.Kmeans d=1, default 256/centroid sample", lambda: faiss_run(256), args.repeats),
            ("sklearn KMeans (random init, 25 it)", lambda: KMeans(
                k, init="random", n_init=1, max_iter=25, random_state=0).fit(X).cluster_centers_, 1),
        ]
        for name, fn, rep in runs:
            t, centers = best_of(fn, rep)
            rows.append({"method": name, "time s": t, "inertia": inertia(x, centers)})
        ref = {r["method"]: r for r in rows}
        faiss_all = ref["faiss.Kmeans d=1, all weights, 25 it"]
        for r in rows:
            r["time / faiss(all)"] = r["time s"] / faiss_all["time s"]
            r["inertia / faiss(all)"] = r["inertia"] / faiss_all["inertia"]
        print(f"### K = {k}\n")
        table(rows, ["method", "time s", "inertia", "time / faiss(all)", "inertia / faiss(all)"])
        ours = rows[0]
        print(f"sorted Lloyd is {1 / ours['time / faiss(all)']:.1f}x faster than faiss on all "
              f"weights, inertia ratio {ours['inertia / faiss(all)']:.3f}; exact optimum "
              f"{rows[1]['time s']:.2f} s\n")


if __name__ == "__main__":
    main()
