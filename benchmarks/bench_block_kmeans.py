"""Block k-means, d=8, K=256, on the 73,728 blocks of a real 1536x384 layer
(all-MiniLM-L6-v2 encoder.layer.0.intermediate.dense.weight), 25 iterations.

Ours against faiss.Kmeans and scikit-learn KMeans in the same process; time includes the
final labels (faiss: one search after training).  Inertia recomputed the same way for all.

    python benchmarks/bench_block_kmeans.py
"""
import _harness  # noqa: F401  (first: pins thread counts before numba, BLAS, faiss start)

import faiss
import numpy as np
from safetensors.numpy import load_file
from sklearn.cluster import KMeans

import vqcompress as vq
from _harness import best_of, header, minilm_safetensors, table


TENSOR = "encoder.layer.0.intermediate.dense.weight"


def inertia(X, centers):
    """Exact sum of squared distances to the nearest center (float64, chunked)."""
    C = np.asarray(centers, dtype=np.float64)
    total = 0.0
    for s in range(0, X.shape[0], 8192):
        B = X[s:s + 8192].astype(np.float64)
        d = ((B[:, None, :] - C[None, :, :]) ** 2).sum(-1)
        total += float(d.min(axis=1).sum())
    return total


def main():
    header("Block k-means d=8 K=256 on a real MiniLM layer (73,728 blocks), 25 iterations")
    W = load_file(minilm_safetensors())[TENSOR]
    X = np.ascontiguousarray(W.reshape(-1, 8))
    k, it = 256, 25
    vq.kmeans(X[:3000], 16, max_iter=2, init="random")  # compile outside the timings
    vq.kmeans(X[:3000], 16, max_iter=2, init="kmeans++")

    def faiss_run():
        km = faiss.Kmeans(8, k, niter=it, seed=1, max_points_per_centroid=X.shape[0])
        km.train(X)
        km.index.search(X, 1)
        return km.centroids

    runs = [
        ("vqcompress kmeans (init=random)", lambda: vq.kmeans(X, k, init="random", max_iter=it, tol=0, random_state=0).centers, 5),
        ("vqcompress kmeans (init=kmeans++)", lambda: vq.kmeans(X, k, init="kmeans++", max_iter=it, tol=0, random_state=0).centers, 5),
        ("faiss.Kmeans (random init)", faiss_run, 5),
        ("sklearn KMeans (random init, lloyd)", lambda: KMeans(
            k, init="random", n_init=1, max_iter=it, tol=0, algorithm="lloyd",
            random_state=0).fit(X).cluster_centers_, 1),
    ]
    rows = []
    for name, fn, rep in runs:
        t, centers = best_of(fn, rep)
        rows.append({"method": name, "time s": t, "inertia": inertia(X, centers)})
    f = rows[2]
    for r in rows:
        r["time / faiss"] = r["time s"] / f["time s"]
        r["inertia / faiss"] = r["inertia"] / f["inertia"]
        r["speed vs sklearn"] = rows[3]["time s"] / r["time s"]
    table(rows, ["method", "time s", "inertia", "time / faiss", "inertia / faiss", "speed vs sklearn"])


if __name__ == "__main__":
    main()
