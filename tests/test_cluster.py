"""vqcompress.kmeans and kmeans_1d_optimal: hand-computed cases and independent oracles."""
import numpy as np
import pytest

import naive
import vqcompress as vq
from vqcompress import InputError, VQCompressError

INITS = ["linear", "density", "random", "kmeans++"]


@pytest.mark.parametrize("method", ["sorted", "lloyd"])
def test_hand_computed_two_clusters(method):
    res = vq.kmeans(np.array([0.0, 1.0, 10.0, 11.0]), 2, init="linear", method=method)
    np.testing.assert_allclose(np.sort(res.centers), [0.5, 10.5])
    assert res.inertia == pytest.approx(1.0)
    assert res.labels[0] == res.labels[1] != res.labels[2] == res.labels[3]


@pytest.mark.parametrize("method", ["sorted", "lloyd"])
def test_hand_computed_weighted_single_cluster(method):
    res = vq.kmeans(np.array([0.0, 1.0, 2.0]), 1, sample_weight=[1, 1, 2], method=method)
    assert res.centers[0] == pytest.approx(1.25)
    assert res.inertia == pytest.approx(2.75)  # 1.5625 + 0.0625 + 2 * 0.5625


def test_hand_computed_optimal():
    res = vq.kmeans_1d_optimal(np.array([0.0, 1.0, 2.0, 10.0]), 2)
    np.testing.assert_allclose(res.centers, [1.0, 10.0])
    assert res.inertia == pytest.approx(2.0)
    assert res.labels.tolist() == [0, 0, 0, 1]


def test_hand_computed_2d():
    X = np.array([[0, 0], [0, 2], [10, 0], [10, 2]], dtype=np.float64)
    res = vq.kmeans(X, 2, init=np.array([[1.0, 1.0], [9.0, 1.0]]))
    np.testing.assert_allclose(res.centers, [[0, 1], [10, 1]])
    assert res.inertia == pytest.approx(4.0)


@pytest.mark.parametrize("init", INITS)
def test_lloyd_from_same_start_matches_naive(rng, init):
    # 'linear' spaces centers along the diagonal, which would leave clusters empty in 3-D
    X = rng.normal(size=(800, 1 if init == "linear" else 3))
    w = rng.random(800) + 0.2
    # First get the init our code would use, then compare 10 iterations with the twin.
    start = vq.kmeans(X, 6, w, init=init, max_iter=1, tol=0, random_state=7)
    from vqcompress._validation import rng_from
    from vqcompress.cluster import _init_centers
    c0 = _init_centers(X, w, 6, init, rng_from(7))
    res = vq.kmeans(X, 6, w, init=c0, max_iter=10, tol=0)
    ref = naive.lloyd(X, w, c0, 10)
    np.testing.assert_allclose(res.centers, ref, rtol=1e-10, atol=1e-10)
    assert res.inertia == pytest.approx(naive.inertia(X, w, res.centers), rel=1e-10)
    assert start.n_iter == 1


def test_sorted_path_matches_lloyd_path(rng):
    x = rng.laplace(size=3000)
    a = vq.kmeans(x, 16, init="linear", method="sorted", max_iter=40, tol=0)
    b = vq.kmeans(x, 16, init="linear", method="lloyd", max_iter=40, tol=0)
    np.testing.assert_allclose(a.centers, b.centers, rtol=1e-9, atol=1e-9)
    assert a.inertia == pytest.approx(b.inertia, rel=1e-9)
    np.testing.assert_array_equal(a.labels, b.labels)


@pytest.mark.parametrize("seed", range(5))
def test_optimal_matches_brute_force_over_all_partitions(seed):
    r = np.random.default_rng(seed)
    x = r.normal(size=7)
    w = r.random(7) + 0.1
    for k in (1, 2, 3):
        res = vq.kmeans_1d_optimal(x, k, w)
        assert res.inertia == pytest.approx(naive.optimal_1d_brute(x, w, k), rel=1e-9)
        assert res.inertia == pytest.approx(naive.inertia(x[:, None], w, res.centers[:, None]),
                                            rel=1e-9)


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("k", [4, 32])
def test_optimal_never_worse_than_lloyd(rng, init, k):
    x = rng.laplace(size=4000) * rng.choice([0.1, 1.0], size=4000)
    w = rng.random(4000)
    opt = vq.kmeans_1d_optimal(x, k, w)
    for seed in range(3):
        lloyd = vq.kmeans(x, k, w, init=init, random_state=seed)
        assert opt.inertia <= lloyd.inertia * (1 + 1e-9)


def test_duplicate_values_and_zero_weights(rng):
    x = np.repeat([1.0, 2.0, 3.0, 50.0], 100)
    w = np.ones(400)
    w[-100:] = 0.0  # the value 50 carries no weight
    res = vq.kmeans_1d_optimal(x, 3, w)
    np.testing.assert_allclose(res.centers, [1.0, 2.0, 3.0])
    assert res.inertia == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InputError, match="3 distinct values"):
        vq.kmeans_1d_optimal(x, 4, w)


def test_reproducible_from_random_state(rng):
    X = rng.normal(size=(2000, 4)).astype(np.float32)
    for init in ("random", "kmeans++"):
        a = vq.kmeans(X, 20, init=init, random_state=11)
        b = vq.kmeans(X, 20, init=init, random_state=11)
        np.testing.assert_array_equal(a.centers, b.centers)


def test_kmeanspp_seeds_from_a_subset_of_large_inputs(rng, monkeypatch):
    # 40 tight blobs, 100 points each (more than 64 per center), and 1000 far points of
    # zero weight: the seeds are points of positive weight, one per blob, and the fit is as
    # good as when seeding from every point
    from vqcompress import cluster
    centers = rng.normal(0, 10, size=(40, 3))
    X = np.concatenate([np.repeat(centers, 100, axis=0) + rng.normal(0, 0.01, (4000, 3)),
                        rng.normal(1000, 1, (1000, 3))])
    w = np.r_[np.ones(4000), np.zeros(1000)]
    seeds = cluster._init_centers(X, w, 40, "kmeans++", np.random.default_rng(1))
    near = np.linalg.norm(seeds[:, None] - centers[None], axis=2).argmin(axis=1)
    assert sorted(near) == list(range(40))
    sub = vq.kmeans(X, 40, sample_weight=w, random_state=1).inertia
    monkeypatch.setattr(cluster, "SEED_POINTS_PER_CENTER", 10**6)
    full = vq.kmeans(X, 40, sample_weight=w, random_state=1).inertia
    assert sub <= full * 1.01


def test_empty_clusters_are_reseeded():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.1, (200, 2)), rng.normal(5, 0.1, (200, 2))])
    res = vq.kmeans(X, 4, init=np.array([[0, 0], [5, 5], [100, 100], [200, 200.0]]))
    assert np.bincount(res.labels, minlength=4).min() > 0
    assert np.isfinite(res.centers).all()


def test_lloyd_inertia_close_to_sklearn(rng):
    from sklearn.cluster import KMeans
    X = rng.normal(size=(3000, 8)).astype(np.float32)
    ours = min(vq.kmeans(X, 32, random_state=s).inertia for s in range(3))
    theirs = min(KMeans(32, n_init=1, random_state=s).fit(X).inertia_ for s in range(3))
    assert ours <= theirs * 1.01


@pytest.mark.parametrize("bad, match", [
    (np.array([1.0, np.nan, 2.0]), "NaN"),
    (np.array([1.0, np.inf, 2.0]), "infinite"),
    (np.array([], dtype=np.float32), "empty"),
    (np.arange(10), "not floating point"),
    (np.ones(10, dtype=bool), "not floating point"),
    (np.zeros((2, 2, 2)), "1 or 2-D"),
    (np.array([1.0, 1.0, 1.0, 2.0]), "distinct"),
])
def test_bad_input_is_a_clear_error(bad, match):
    with pytest.raises(VQCompressError, match=match):
        vq.kmeans(bad, 3)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_clusters": 0}, "n_clusters"), ({"n_clusters": 2.5}, "n_clusters"),
    ({"init": "bogus"}, "init"), ({"max_iter": 0}, "max_iter"), ({"tol": -1}, "tol"),
    ({"method": "x"}, "method"), ({"sample_weight": -np.ones(20)}, "negative"),
    ({"sample_weight": np.ones(3)}, "entries"), ({"random_state": "seed"}, "random_state"),
])
def test_bad_parameters_are_clear_errors(rng, kwargs, match):
    args = {"n_clusters": 2, **kwargs}
    with pytest.raises(InputError, match=match):
        vq.kmeans(rng.normal(size=20), **args)


def test_lloyd_too_few_distinct_points():
    X = np.repeat([[0.0, 0.0], [1.0, 1.0]], 50, axis=0)
    with pytest.raises(InputError, match="distinct"):
        vq.kmeans(X, 3)


@pytest.fixture
def force_penalty_search(monkeypatch):
    """Make kmeans_1d_optimal take the Lagrangian path even on small inputs."""
    from vqcompress import cluster
    monkeypatch.setattr(cluster, "_LAYERED_DP_MAX_CELLS", 0)
    calls = []
    real = cluster._penalty_search_cuts
    monkeypatch.setattr(cluster, "_penalty_search_cuts",
                        lambda data, k: calls.append(k) or real(data, k))
    return calls


@pytest.mark.parametrize("seed", range(8))
def test_penalty_search_matches_textbook_dp(force_penalty_search, seed):
    r = np.random.default_rng(seed)
    x = r.laplace(size=150) * r.choice([0.05, 1.0, 20.0], size=150)
    w = r.random(150) + 0.05
    # prefix sums round at eps times the total energy, which bounds the absolute error
    energy = float(w @ (x - (w @ x) / w.sum()) ** 2)
    for k in (2, 3, 7, 30, 149):
        res = vq.kmeans_1d_optimal(x, k, w)
        assert res.inertia == pytest.approx(naive.optimal_1d_dp(x, w, k), rel=1e-9,
                                            abs=1e-13 * energy)
    assert force_penalty_search  # the path under test really ran


def test_penalty_search_ties_fall_back_to_exact_dp(force_penalty_search):
    # Evenly spaced equal-weight values: many clusterings tie, counts jump over k.
    x = np.arange(40, dtype=np.float64)
    for k in (3, 6, 7, 13):
        res = vq.kmeans_1d_optimal(x, k)
        assert res.inertia == pytest.approx(naive.optimal_1d_dp(x, np.ones(40), k), rel=1e-9)
        assert len(np.unique(res.labels)) == k


def test_penalty_search_on_weights_sized_input(rng):
    # 200k distinct values, k = 64: takes the Lagrangian path by default; compare with the
    # layered program on the same data (both exact).
    from vqcompress import cluster
    x = rng.laplace(size=200_000)
    res = vq.kmeans_1d_optimal(x, 64)
    data = cluster._sorted_distinct(x, np.ones_like(x), 64)
    cuts = cluster._layered_dp_cuts(data, 64)
    dW, dA, dB = (np.diff(P[cuts]) for P in (data.W, data.A, data.B))
    assert res.inertia == pytest.approx(float(np.sum(dB - dA * dA / dW)), rel=1e-9)
