"""Every kernel against its naive numpy twin in tests/naive.py."""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import naive
import vqcompress._kernels as kernels
from vqcompress._kernels import simd
from vqcompress._kernels.assign import assign_nearest, center_sums
from vqcompress._kernels.beam import rq_beam_encode
from vqcompress._kernels.kmeans1d import dc_tree, label_by_midpoints, optimal_1d, sorted_lloyd
from vqcompress._kernels.seeding import kmeans_plusplus
from vqcompress._kernels.simd import (
    BATCH,
    dot_table1,
    dot_table4,
    dot_table_batch,
    dot_table_x4,
    gather_batch_sum,
    gather_sum,
    permute_set,
)
from vqcompress.cluster import _sorted_distinct


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,d,k", [(1, 1, 1), (37, 3, 5), (3000, 8, 256), (500, 1, 16)])
def test_assign_nearest_matches_naive(rng, dtype, n, d, k):
    X = rng.normal(size=(n, d)).astype(dtype)
    C = rng.normal(size=(k, d)).astype(dtype)
    labels = np.empty(n, dtype=np.int32)
    dists = np.empty(n)
    assign_nearest(X, C, labels, dists)
    ref_labels, ref_d = naive.assign_nearest(X, C)
    # float32 distances may flip near-ties: the chosen center must be as near as the best.
    chosen = ((X.astype(np.float64) - C[labels].astype(np.float64)) ** 2).sum(1)
    np.testing.assert_allclose(chosen, ref_d, rtol=1e-5, atol=1e-6)
    assert (labels == ref_labels).mean() > 0.999
    np.testing.assert_allclose(dists, ref_d, rtol=1e-5, atol=1e-6)


def test_assign_nearest_ties_go_to_lower_index():
    X = np.array([[0.5], [1.5]], dtype=np.float32)
    C = np.array([[0.0], [1.0], [2.0]], dtype=np.float32)
    labels = np.empty(2, dtype=np.int32)
    assign_nearest(X, C, labels, np.empty(2))
    assert labels.tolist() == [0, 1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_assign_nearest_ties_across_vector_lanes_and_padding(rng, dtype):
    # 37 centers: groups of 16 (8 in float64) and padding columns that repeat center 0.
    # Centers 20..36 repeat centers 3..19, so most rows' nearest centers tie exactly; the
    # lower index must win whichever lane or group holds it.
    base = rng.normal(size=(20, 5)).astype(dtype)
    C = np.concatenate([base, base[3:]])  # center 20 + t repeats center 3 + t
    X = np.concatenate([base, base + dtype(1e-3)])  # 40 rows: n % 4 == 0 and a tail below
    X = np.concatenate([X, base[:3]])
    labels = np.empty(len(X), dtype=np.int32)
    dists = np.empty(len(X))
    assign_nearest(X, C, labels, dists)
    ref_labels, ref_d = naive.assign_nearest(X, C)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(dists, ref_d, rtol=1e-5, atol=1e-12)
    assert labels.max() < 20


def test_center_sums_matches_naive(rng):
    X = rng.normal(size=(200, 4)).astype(np.float32)
    w = rng.random(200)
    labels = rng.integers(0, 7, 200).astype(np.int32)
    sums, wsum, sse = np.empty((7, 4)), np.empty(7), np.empty(7)
    dists = rng.random(200)
    center_sums(X, w, labels, dists, sums, wsum, sse)
    ref_sums, ref_w = naive.center_sums(X, w, labels, 7)
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-12)
    np.testing.assert_allclose(wsum, ref_w, rtol=1e-12)
    np.testing.assert_allclose(sse, np.bincount(labels, weights=w * dists, minlength=7))


def test_kmeans_plusplus_matches_naive(rng):
    X = rng.normal(size=(300, 3)).astype(np.float32)
    w = rng.random(300) + 0.1
    uniforms = rng.random((12, 4))
    idx = np.empty(12, dtype=np.int64)
    kmeans_plusplus(np.ascontiguousarray(X.T, dtype=np.float64), w, uniforms, idx)
    np.testing.assert_array_equal(idx, naive.kmeans_plusplus(X, w, uniforms))


def _prefix(x, w=None):
    w = np.ones_like(x, dtype=np.float64) if w is None else w
    return _sorted_distinct(x, w, 1)


def test_sorted_lloyd_matches_naive_lloyd(rng):
    x = rng.laplace(size=5000)
    data = _prefix(x)
    init = np.linspace(x.min(), x.max(), 8)
    centers = np.sort(init - data.shift)
    n_it = sorted_lloyd(data.xs, data.W, data.A, data.B, centers, 15, 0.0)
    assert n_it == 15
    ref = naive.lloyd(x[:, None], np.ones_like(x), init[:, None], 15)[:, 0]
    np.testing.assert_allclose(centers + data.shift, ref, rtol=1e-9, atol=1e-9)


def test_sorted_lloyd_reseeds_empty_clusters(rng):
    x = np.concatenate([rng.normal(0, 1, 500), rng.normal(100, 1, 500)])
    data = _prefix(x)
    centers = np.array([40.0, 41.0, 42.0, 43.0]) - data.shift  # three start empty
    sorted_lloyd(data.xs, data.W, data.A, data.B, centers, 100, 0.0)
    c = centers + data.shift
    assert np.isfinite(c).all() and len(np.unique(c)) == 4
    assert (c < 50).sum() == 2 and (c > 50).sum() == 2


def _layered_dp_cost(x, w, k):
    """Run the layered DP kernel directly; returns (cost, cuts, number of distinct values)."""
    data = _sorted_distinct(x, w, k)
    m = data.xs.shape[0]
    order, level_ptr, left, right = dc_tree(m)
    opt = np.empty((k, m + 1), dtype=np.int32)
    cuts = np.empty(k + 1, dtype=np.int64)
    cost = optimal_1d(data.W, data.A, data.B, order, level_ptr, left, right, opt, cuts)
    return cost, cuts, m


@pytest.mark.parametrize("seed", range(6))
def test_optimal_1d_matches_brute_force(seed):
    r = np.random.default_rng(seed)
    n, k = 8, int(r.integers(1, 4))
    x = np.round(r.laplace(size=n), 1)
    w = r.integers(1, 4, size=n).astype(np.float64)
    cost, _, _ = _layered_dp_cost(x, w, k)
    assert cost == pytest.approx(naive.optimal_1d_brute(x, w, k), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("k", [1, 2, 5, 17])
def test_optimal_1d_matches_textbook_dp(rng, k):
    x = rng.normal(size=120) ** 3
    w = rng.random(120) + 0.5
    cost, cuts, m = _layered_dp_cost(x, w, k)
    assert cost == pytest.approx(naive.optimal_1d_dp(x, w, k), rel=1e-9, abs=1e-12)
    assert (np.diff(cuts) > 0).all() and cuts[0] == 0 and cuts[-1] == m


def test_dc_tree_visits_every_position_once():
    for m in (1, 2, 3, 10, 1000):
        order, level_ptr, left, right = dc_tree(m)
        assert sorted(order.tolist()) == list(range(1, m + 1))
        assert level_ptr[0] == 0 and level_ptr[-1] == m
        for i in order:  # bounds are ancestors: outside (left, right) exclusive of i
            assert left[i] < i < right[i]


def test_label_by_midpoints_matches_argmin(rng):
    x = rng.normal(size=2000).astype(np.float32)
    centers = np.sort(rng.normal(size=9))
    labels = np.empty(2000, dtype=np.int32)
    label_by_midpoints(x, 0.5 * (centers[1:] + centers[:-1]), labels)
    ref, _ = naive.assign_nearest(x[:, None].astype(np.float64), centers[:, None])
    np.testing.assert_array_equal(labels, ref)


@pytest.mark.parametrize("beam", [1, 3, 16])
def test_beam_search_matches_naive(rng, beam):
    X = rng.normal(size=(60, 4)).astype(np.float32)
    books = rng.normal(size=(3, 8, 4)).astype(np.float32) * np.array([1.0, 0.5, 0.25])[:, None, None].astype(np.float32)
    codes = np.empty((60, 3), dtype=np.int32)
    errs = np.empty(60)
    rq_beam_encode(X, np.ascontiguousarray(books.transpose(0, 2, 1)), beam, codes, errs)
    ref_codes, ref_errs = naive.beam_search(X, books.astype(np.float64), beam)
    np.testing.assert_allclose(errs, ref_errs, rtol=1e-4, atol=1e-6)
    assert (codes == ref_codes).all(axis=1).mean() > 0.95  # float32 near-ties may differ


def test_full_beam_is_exhaustive(rng):
    X = rng.normal(size=(40, 3)).astype(np.float32)
    books = rng.normal(size=(2, 6, 3)).astype(np.float32)
    codes = np.empty((40, 2), dtype=np.int32)
    errs = np.empty(40)
    rq_beam_encode(X, np.ascontiguousarray(books.transpose(0, 2, 1)), 6, codes, errs)
    allsums = (books[0][:, None, :] + books[1][None, :, :]).reshape(-1, 3)
    _, best = naive.assign_nearest(X, allsums)
    np.testing.assert_allclose(errs, best, rtol=1e-4, atol=1e-6)


def test_results_do_not_depend_on_thread_count(rng):
    from vqcompress import kmeans
    X = rng.normal(size=(5000, 4)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        a = kmeans(X, 32, random_state=3)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        b = kmeans(X, 32, random_state=3)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(a.centers, b.centers)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.inertia == b.inertia


@pytest.mark.parametrize("kp,w", [(256, 8), (64, 3), (16, 5), (48, 8)])
def test_dot_table_matches_numpy(rng, kp, w):
    """One block's table (dot_table1, dot_table4) and four blocks' (dot_table_x4: input
    blocks 5 floats apart, tables kp + 2 apart); nothing written between or past them."""
    ct = rng.normal(size=(8, kp)).astype(np.float32)
    x = rng.normal(size=40).astype(np.float32)
    for op, blocks in ([(dot_table1, 1), (dot_table_x4, 4)]
                       + ([(dot_table4, 1)] if kp % 64 == 0 else [])):
        tab = np.full(4 * (kp + 2) + 3, 7.0, np.float32)
        _call_dot_table(op, ct, x, 4, 5, w, tab, kp + 2)
        for b in range(4):
            at = b * (kp + 2)
            if b < blocks:
                want = x[4 + 5 * b:4 + 5 * b + w].astype(np.float64) @ ct[:w].astype(np.float64)
                np.testing.assert_allclose(tab[at:at + kp], want, rtol=1e-5, atol=1e-5)
                assert (tab[at + kp:at + kp + 2] == 7.0).all()
            else:
                assert (tab[at:] == 7.0).all()


def _call_dot_table(op, ct, x, x0, x_step, w, tab, tab_step):
    @numba.njit
    def run(ct, x, x0, x_step, w, tab, tab_step):
        op(ct, x, x0, x_step, w, tab, tab_step)
    run(ct, x, x0, x_step, w, tab, tab_step)


@pytest.mark.parametrize("K,d", [(256, 8), (13, 3), (4, 1)])
def test_dot_table_batch_matches_numpy(rng, K, d):
    """Eight codewords at a time and the rest one by one; nothing written past K rows."""
    book = rng.normal(size=(K, d)).astype(np.float32)
    xt = rng.normal(size=(d, BATCH)).astype(np.float32)
    tab = np.full((K + 1, BATCH), 7.0, np.float32)

    @numba.njit
    def run(book, xt, tab):
        dot_table_batch(book, xt, tab)
    run(book, xt, tab)
    np.testing.assert_allclose(tab[:K], book.astype(np.float64) @ xt.astype(np.float64),
                               rtol=1e-5, atol=1e-5)
    assert (tab[K] == 7.0).all()


@pytest.mark.parametrize("dtype,K", [(np.uint8, 256), (np.uint16, 300)])
def test_gather_batch_sum_matches_naive(rng, dtype, K):
    """Each of 16 rows adds, in position order, its code's entry of BATCH floats."""
    n = 5
    table = rng.normal(size=(n, K, BATCH)).astype(np.float32)
    codes = rng.integers(0, K, size=(n, 16)).astype(dtype)
    acc = rng.normal(size=(16, BATCH)).astype(np.float32)
    want = acc.copy()
    for i in range(n):
        want += table[i, codes[i].astype(np.int64)]

    @numba.njit
    def run(acc, table, codes, n, K):
        gather_batch_sum(acc, table, codes, n, K)
    run(acc, table, codes, n, K)
    np.testing.assert_array_equal(acc, want)


def _compile_for(monkeypatch, isa):
    """Make simd's kernels compiled from here on take the ``isa`` branch, or skip the test
    when this CPU cannot run it."""
    widths = ["", "avx2", "avx512"]
    if widths.index(isa) > widths.index(simd._isa(numba.core.registry.cpu_target.target_context)):
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setattr(simd, "_isa", lambda context: isa)


@pytest.mark.parametrize("isa", ["avx512", ""])
@pytest.mark.parametrize("dtype,K", [(np.uint8, 256), (np.uint16, 300)])
def test_gather_sum_matches_naive(rng, monkeypatch, isa, dtype, K):
    """As vector gathers (AVX-512) and as one scalar sum per lane (elsewhere)."""
    _compile_for(monkeypatch, isa)
    n = 7
    table = rng.normal(size=n * K).astype(np.float32)
    codes = rng.integers(0, K, size=(n, 16)).astype(dtype)
    acc = rng.normal(size=16).astype(np.float32)
    want = acc.copy()
    for i in range(n):  # in order, one float32 add per position
        want += table[i * K + codes[i].astype(np.int64)]

    @numba.njit  # compiled here, after the patch
    def run(acc, table, codes, n, K):
        gather_sum(acc, table, codes, n, K)
    run(acc, table, codes, n, K)
    np.testing.assert_array_equal(acc, want)


@pytest.mark.parametrize("isa", ["avx512", "avx2", ""])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("K", [16, 32])
def test_permute_set_pairs_match_indexing(rng, monkeypatch, isa, dtype, K):
    """Pairs of 16 codes from a 16- or 32-float table (permute_set2, permute_set32): from
    its byte planes (AVX2, 8-bit codes), else two picks per pair; three pairs, every
    float's bits as they were (negative zero, a NaN payload), nothing past them written."""
    _compile_for(monkeypatch, isa)
    table = rng.normal(size=K + 4).astype(np.float32)  # only the first K can be picked
    table[3] = -0.0
    table[K - 5:K - 4].view(np.uint32)[0] = 0x7FC01234
    codes = rng.integers(0, K, size=97).astype(dtype)
    codes[:K] = rng.permutation(K)  # every entry at least once
    dst = np.full(97, 7.0, np.float32)

    @numba.njit  # compiled here, after the patch
    def run(dst, table, codes, n):
        if table.shape[0] == 20:
            simd.permute_set2(dst, table, codes, n)
        else:
            simd.permute_set32(dst, table, codes, n)
    run(dst, table, codes, 3)
    np.testing.assert_array_equal(dst[:96].view(np.uint32),
                                  table[codes[:96].astype(np.int64)].view(np.uint32))
    assert dst[96] == 7.0


@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_dot_matches_float64(rng, n):
    """Two float32 rows' dot product over n groups of 16, nothing past them read."""
    @numba.njit
    def run(a, x, n):
        return simd.dot(a, x, n)

    a, x = (rng.normal(size=16 * n + 3).astype(np.float32) for _ in range(2))
    a[16 * n:] = np.nan
    got = run(a, x, n)
    prods = a[:16 * n].astype(np.float64) * x[:16 * n]
    assert abs(got - prods.sum()) <= 1e-6 * (np.abs(prods).sum() + 1e-30)


@pytest.mark.parametrize("isa", ["avx512", "avx2", ""])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_permute_set_matches_indexing(rng, monkeypatch, isa, dtype):
    """The in-register lookup, as one 16-float vpermps, as two 8-float ones per half and
    as the gather it falls back to elsewhere."""
    _compile_for(monkeypatch, isa)
    table = rng.normal(size=20).astype(np.float32)  # only the first 16 can be picked
    codes = rng.integers(0, 16, size=16).astype(dtype)
    dst = np.full(17, 7.0, np.float32)

    @numba.njit  # compiled here, after the patch
    def run(dst, table, codes):
        permute_set(dst, table, codes)
    run(dst, table, codes)
    np.testing.assert_array_equal(dst[:16], table[codes.astype(np.int64)])
    assert dst[16] == 7.0


@pytest.mark.parametrize("isa", ["avx512", "avx2", ""])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_picked_dot_matches_float64(rng, monkeypatch, isa, dtype, n):
    """A row of scalar codes times an input, n groups of 16: from a 16-float table in
    registers (permute_dot: byte planes and vpshufb for pairs of groups of 8-bit codes
    with AVX2, vpermps with AVX-512, the gather elsewhere), from a 32-float one
    (permute_dot32: two sets of byte planes with AVX2, else the gather) and from a 200- or 300-float
    table by gathers (gather_dot), against float64, to float32 rounding of the sum of the
    products' sizes; none of the codes or inputs past n groups read."""
    _compile_for(monkeypatch, isa)

    @numba.njit  # compiled here, after the patch
    def in_register(table, codes, x, n):
        return simd.permute_dot(table, codes, x, n)

    @numba.njit
    def in_registers32(table, codes, x, n):
        return simd.permute_dot32(table, codes, x, n)

    @numba.njit
    def by_gathers(table, codes, x, n):
        return simd.gather_dot(table, codes, x, n)

    x = rng.normal(size=16 * n + 3).astype(np.float32)
    x[16 * n:] = np.nan  # past the groups: never read
    for run, K in ((in_register, 16), (in_registers32, 32),
                   (by_gathers, 200 if dtype == np.uint8 else 300)):
        table = rng.normal(size=K).astype(np.float32)
        codes = rng.integers(0, K, size=16 * n + 3).astype(dtype)
        prods = table[codes[:16 * n].astype(np.int64)].astype(np.float64) * x[:16 * n]
        got = run(table, codes, x, n)
        assert abs(got - prods.sum()) <= 1e-6 * (np.abs(prods).sum() + 1e-30)
        if n == 0:
            assert got == 0.0


@pytest.mark.parametrize("T,P", [(1, 4), (1, 40), (2, 30)])
def test_gram_by_unknown_matches_one_hot_products(rng, T, P):
    """Against sum over rows i of M_iᵀ H M_i, M_i (n, P) the row's decoder map (the sum of
    the one-hot rows of its T terms), in float64."""
    from vqcompress._kernels.refit import gram_by_unknown
    out, n = 7, 9
    idx = rng.integers(0, P, size=(T, out, n)).astype(np.int32)
    G = rng.normal(size=(n, n))
    H = G @ G.T
    flat = idx.reshape(-1)
    order = np.argsort(flat, kind="stable")
    starts = np.searchsorted(flat[order], np.arange(P + 1))
    A = np.zeros((P, P))
    gram_by_unknown(idx, order, starts, H, A)
    want = np.zeros((P, P))
    for i in range(out):
        M = np.zeros((n, P))
        for t in range(T):
            M[np.arange(n), idx[t, i]] += 1
        want += M.T @ H @ M
    np.testing.assert_allclose(A, want, rtol=1e-12, atol=1e-12)


def test_threading_layer_is_tbb_where_pip_installed_it():
    """A pip-installed libtbb sits in <prefix>/lib, off the loader's path: the package loads
    it so that Numba's TBB layer (2 us to start a parallel region, against 22-130 us for
    the workqueue) is the one picked.  Run in a child: a process keeps its first layer."""
    if not kernels._load_tbb():
        pytest.skip("no pip-installed libtbb here")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
    child = ("import numpy as np, numba, vqcompress\n"
             "vqcompress.kmeans(np.arange(64, dtype=np.float32).reshape(32, 2), 2)\n"
             "print(numba.threading_layer())")
    out = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[-1] == "tbb"
