"""The four quantizers: oracles (faiss, naive numpy), invariants, sizes and bad input."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import naive
import vqcompress as vq
from vqcompress import InputError, VQCompressError

faiss = pytest.importorskip("faiss")


def _mse(a, b):
    return float(np.mean((np.asarray(a, np.float64) - b) ** 2))


@pytest.fixture(scope="module")
def layer():
    """A weight-like matrix: heavy-tailed rows of varying scale."""
    r = np.random.default_rng(7)
    W = r.laplace(size=(256, 64)) * r.uniform(0.5, 2.0, size=(256, 1))
    return W.astype(np.float32)


# --- faiss as the oracle ----------------------------------------------------------------


def test_product_quantizer_not_worse_than_faiss(layer):
    d, nbits = 8, 6
    faiss.omp_set_num_threads(1)
    pq = faiss.ProductQuantizer(layer.shape[1], layer.shape[1] // d, nbits)
    pq.train(layer)
    ref = _mse(pq.decode(pq.compute_codes(layer)), layer)
    ours = vq.ProductQuantizer(d, nbits, codebook_per_block=True, random_state=0)
    err = _mse(ours.decode(ours.fit_encode(layer)), layer)
    assert err <= 1.02 * ref, (err, ref)


def test_shared_codebook_pq_not_worse_than_faiss_kmeans(layer):
    d, k = 8, 64
    blocks = layer.reshape(-1, d)
    km = faiss.Kmeans(d, k, niter=25, seed=1, max_points_per_centroid=10**6)
    km.train(blocks)
    _, idx = km.index.search(blocks, 1)
    ref = _mse(km.centroids[idx[:, 0]], blocks)
    ours = vq.ProductQuantizer(d, 6, random_state=0)
    err = _mse(ours.decode(ours.fit_encode(layer)), layer)
    assert err <= 1.02 * ref, (err, ref)


def test_residual_quantizer_not_worse_than_faiss(layer):
    d, nbits, stages, beam = 8, 6, 2, 8
    blocks = np.ascontiguousarray(layer.reshape(-1, d))
    rq = faiss.ResidualQuantizer(d, stages, nbits)
    rq.max_beam_size = beam
    rq.train(blocks)
    ref = _mse(rq.decode(rq.compute_codes(blocks)), blocks)
    ours = vq.ResidualQuantizer(d, nbits, stages, beam, random_state=0)
    err = _mse(ours.decode(ours.fit_encode(layer)), layer)
    assert err <= 1.02 * ref, (err, ref)


# --- naive oracles and hand-computed cases ----------------------------------------------


@pytest.mark.parametrize("group, symmetric", [("channel", False), (16, False), (16, True),
                                              ("channel", True)])
def test_uniform_matches_naive(layer, group, symmetric):
    q = vq.UniformQuantizer(4, group_size=group, symmetric=symmetric)
    out = q.decode(q.fit_encode(layer))
    np.testing.assert_allclose(out, naive.uniform_roundtrip(layer, 4, group, symmetric),
                               rtol=1e-6, atol=1e-6)


def test_uniform_hand_computed():
    W = np.array([[0.0, 1.0, 2.0, 3.0]], dtype=np.float32)
    q = vq.UniformQuantizer(2, group_size="tensor").fit(W)
    assert float(q.scales_[0, 0]) == 1.0 and int(q.zero_points_[0, 0]) == 0
    np.testing.assert_array_equal(q.encode(W), [[0, 1, 2, 3]])
    np.testing.assert_array_equal(q.decode(q.encode(W)), W)
    # 2 bits per weight + one float16 scale + one 2-bit zero point, packed: 1 + 2 + 1 bytes
    assert q.nbytes_breakdown() == {"codes": 1, "scales": 2, "zero_points": 1, "total": 4}
    assert q.bits_per_weight == 8.0


def test_uniform_mse_clipping_not_worse_than_minmax(layer):
    mm = vq.UniformQuantizer(3, group_size=32)
    mse = vq.UniformQuantizer(3, group_size=32, clip="mse")
    e_mm = _mse(mm.decode(mm.fit_encode(layer)), layer)
    e_mse = _mse(mse.decode(mse.fit_encode(layer)), layer)
    assert e_mse < e_mm


def test_kmeans_quantizer_hand_computed():
    W = np.array([[0.0, 0.1, 5.0], [5.2, 9.9, 10.0]], dtype=np.float32)
    q = vq.KMeansQuantizer(n_bits=2, init="optimal").fit(W)
    # {0, 0.1} {5} {5.2} {9.9, 10}: error 4 * 0.05^2, better than merging 5 and 5.2
    np.testing.assert_allclose(q.codebook_, [0.05, 5.0, 5.2, 9.95], rtol=1e-6)
    np.testing.assert_array_equal(q.encode(W), [[0, 0, 1], [2, 3, 3]])
    assert q.inertia_ == pytest.approx(4 * 0.05**2, rel=1e-5)
    assert q.nbytes_breakdown() == {"codes": 2, "codebook": 16, "total": 18}


@pytest.mark.parametrize("init", ["linear", "density", "random", "kmeans++", "optimal"])
def test_kmeans_quantizer_inits(layer, init):
    q = vq.KMeansQuantizer(4, init=init, random_state=0)
    err = _mse(q.decode(q.fit_encode(layer)), layer)
    opt = vq.KMeansQuantizer(4, init="optimal").fit(layer)
    assert q.inertia_ == pytest.approx(err * layer.size, rel=1e-4)
    assert opt.inertia_ <= q.inertia_ * (1 + 1e-6)
    assert q.codebook_.dtype == np.float32 and q.encode(layer).dtype == np.uint8


def test_kmeans_quantizer_ignores_zero_weight_entries(layer):
    mask = np.abs(layer) > 1.0  # a pruning mask: only survivors shape the codebook
    q = vq.KMeansQuantizer(3, init="optimal").fit(layer, sample_weight=mask)
    ref = vq.kmeans_1d_optimal(layer[mask], 8)
    np.testing.assert_allclose(q.codebook_, ref.centers, rtol=1e-6)


def test_codebook_float16_storage(layer):
    for q in (vq.KMeansQuantizer(4, codebook_dtype="float16"),
              vq.ProductQuantizer(8, 6, codebook_dtype="float16", random_state=0)):
        codes = q.fit_encode(layer)
        book = q.codebook_ if hasattr(q, "codebook_") else q.codebooks_
        assert book.dtype == np.float16
        assert q.decode(codes).dtype == np.float32
    pq32 = vq.ProductQuantizer(8, 6, random_state=0).fit(layer)
    pq16 = vq.ProductQuantizer(8, 6, codebook_dtype="float16", random_state=0).fit(layer)
    assert pq32.nbytes_breakdown()["codebook"] == 2 * pq16.nbytes_breakdown()["codebook"]


def test_code_dtypes_follow_codebook_size():
    W = np.random.default_rng(0).normal(size=(64, 600)).astype(np.float32)
    assert vq.KMeansQuantizer(8).fit_encode(W).dtype == np.uint8
    assert vq.KMeansQuantizer(9).fit_encode(W).dtype == np.uint16
    assert vq.UniformQuantizer(12).fit_encode(W).dtype == np.uint16


def test_bits_per_weight_counts_everything(layer):
    pq = vq.ProductQuantizer(8, 8, random_state=0, max_iter=5).fit(layer)
    n = layer.size
    assert pq.bits_per_weight == pytest.approx((n / 8 * 8 + 256 * 8 * 32) / n)
    rq = vq.ResidualQuantizer(8, 6, 2, 4, random_state=0, max_iter=5, n_refine=0).fit(layer)
    assert rq.bits_per_weight == pytest.approx((n / 8 * 2 * 6 + 2 * 64 * 8 * 32) / n)
    assert "bits/weight" in repr(rq)


def test_residual_stages_reduce_error(layer):
    errs = []
    for s in (1, 2, 3):
        q = vq.ResidualQuantizer(8, 5, s, 4, random_state=0, max_iter=10)
        errs.append(_mse(q.decode(q.fit_encode(layer)), layer))
    assert errs[0] > errs[1] > errs[2]


def test_pq_pads_odd_input_dimension(rng):
    W = rng.normal(size=(40, 13)).astype(np.float32)
    q = vq.ProductQuantizer(4, 4, random_state=0)
    codes = q.fit_encode(W)
    assert codes.shape == (40, 4) and q.decode(codes).shape == (40, 13)


def test_convolution_weights_are_viewed_as_matrices(rng):
    W = rng.normal(size=(16, 3, 3, 3)).astype(np.float32)
    q = vq.ProductQuantizer(9, 4, random_state=0)
    assert q.fit_encode(W).shape == (16, 3)
    assert q.decode(q.encode(W)).shape == (16, 27)


# --- hypothesis ------------------------------------------------------------------------


@st.composite
def matrices(draw):
    rows = draw(st.integers(1, 12))
    cols = draw(st.integers(1, 20))
    seed = draw(st.integers(0, 2**16))
    return np.random.default_rng(seed).normal(size=(rows, cols)).astype(np.float32)


@given(matrices(), st.integers(1, 3))
def test_pq_encoding_is_nearest_codeword(W, d):
    nb = -(-W.shape[1] // d)
    assume(W.shape[0] * nb >= 2)
    n_bits = int(np.clip(np.log2(max(W.shape[0] * nb, 2)), 1, 3))
    q = vq.ProductQuantizer(d, n_bits, random_state=0, max_iter=3).fit(W)
    other = np.random.default_rng(1).normal(size=(5, W.shape[1])).astype(np.float32)
    codes = q.encode(other)
    blocks = np.pad(other, ((0, 0), (0, nb * d - W.shape[1]))).reshape(-1, d)
    _, best = naive.assign_nearest(blocks, q.codebooks_[0])
    got = ((blocks - q.codebooks_[0][codes.reshape(-1)]) ** 2).sum(1)
    np.testing.assert_allclose(got, best, rtol=1e-5, atol=1e-6)


@given(matrices(), st.sampled_from(["kmeans", "pq", "rq", "uniform"]))
def test_decode_encode_shape_and_dtype(W, method):
    n = W.size
    bits = max(1, min(3, int(np.log2(n)))) if n > 1 else None
    if bits is None:
        return
    q = {"kmeans": lambda: vq.KMeansQuantizer(1),
         "pq": lambda: vq.ProductQuantizer(1, bits, random_state=0, max_iter=3),
         "rq": lambda: vq.ResidualQuantizer(1, 1, 2, 2, random_state=0, max_iter=3),
         "uniform": lambda: vq.UniformQuantizer(bits, group_size=4)}[method]()
    if method == "kmeans" and len(np.unique(W)) < 2:
        return
    codes = q.fit_encode(W)
    out = q.decode(codes)
    assert out.shape == W.shape and out.dtype == np.float32
    assert codes.dtype == np.uint8
    np.testing.assert_array_equal(q.encode(out), codes) if method in ("kmeans", "pq") else None


# --- bad input -------------------------------------------------------------------------

ALL = [lambda b=4: vq.KMeansQuantizer(b), lambda b=4: vq.ProductQuantizer(2, b),
       lambda b=4: vq.ResidualQuantizer(2, b, 2), lambda b=4: vq.UniformQuantizer(b)]


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("bad, match", [
    (np.array([[1.0, np.nan], [0.0, 2.0]]), "NaN"),
    (np.array([[1.0, -np.inf], [0.0, 2.0]]), "infinite"),
    (np.zeros((0, 4), dtype=np.float32), "empty"),
    (np.arange(12).reshape(3, 4), "not floating point"),
    (np.array([[True, False]]), "not floating point"),
    (np.array([[object(), 1.0]], dtype=object), "object"),
    (np.float32(3.0), "0-d|distinct"),
])
def test_bad_weights_are_clear_errors(make, bad, match):
    with pytest.raises(VQCompressError, match=match):
        make().fit(bad)


@pytest.mark.parametrize("make, match", [
    (ALL[0], "W: 2 distinct values, fewer than the 16 codewords"),
    (ALL[1], "W: 32 blocks of 2 hold 2 distinct vectors, fewer than the 16 codewords"),
    (ALL[2], "W: 32 blocks of 2 hold 2 distinct vectors, fewer than the 16 codewords"),
    (lambda b: vq.ProductQuantizer(2, b, codebook_per_block=True),
     "W, block column 0: 8 blocks of 2 hold 2 distinct vectors"),
    (lambda b: vq.KMeansQuantizer(b, zero_codeword=True),
     "W: 1 distinct nonzero value, fewer than the 15 codewords"),
])
def test_fewer_distinct_values_than_codewords(make, match):
    """The error counts what the codebook was short of, in the quantizer's terms."""
    W = np.tile(np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32), (4, 4))
    with pytest.raises(InputError, match=match):
        make(4).fit(W)


def test_too_few_distinct_residuals_name_the_stage():
    # 20 distinct blocks for 16 stage-1 codewords: at least 12 of them get a codeword to
    # themselves and leave a zero residual, so stage 2 sees at most 9 distinct vectors
    blocks = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    W = np.tile(blocks.reshape(1, -1), (3, 1))
    with pytest.raises(InputError, match="residuals after stage 1 of 2: 60 blocks of 2 hold "
                                         "[1-9] distinct vectors, fewer than the 16"):
        vq.ResidualQuantizer(2, 4, 2).fit(W)


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("n_bits", [0, 17, 2.5, True, "4"])
def test_n_bits_out_of_range(make, n_bits):
    with pytest.raises(InputError, match="n_bits"):
        make(n_bits).fit(np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32))


def test_decode_rejects_bad_codes(layer):
    pq = vq.ProductQuantizer(8, 4, random_state=0, max_iter=2).fit(layer)
    codes = pq.encode(layer)
    with pytest.raises(InputError, match="values"):
        pq.decode(codes.astype(np.int32) + 16)
    with pytest.raises(InputError, match="shape"):
        pq.decode(codes[:, :3])
    with pytest.raises(InputError, match="integer"):
        pq.decode(codes.astype(np.float32))
    with pytest.raises(InputError, match="input features"):
        pq.encode(layer[:, :10])
    with pytest.raises(InputError, match="not fitted"):
        vq.UniformQuantizer().encode(layer)


def test_bad_quantizer_parameters(layer):
    for q, match in [(vq.ProductQuantizer(0, 4), "block_size"),
                     (vq.ResidualQuantizer(4, 4, 0), "n_stages"),
                     (vq.ResidualQuantizer(4, 4, 2, 0), "beam_size"),
                     (vq.UniformQuantizer(4, group_size=0), "group_size"),
                     (vq.UniformQuantizer(4, clip="p99"), "clip"),
                     (vq.UniformQuantizer(1, symmetric=True), "n_bits"),
                     (vq.KMeansQuantizer(4, init="best"), "init"),
                     (vq.KMeansQuantizer(4, codebook_dtype="bfloat16"), "codebook_dtype")]:
        with pytest.raises(InputError, match=match):
            q.fit(layer)


def test_sklearn_conventions():
    from sklearn.base import clone
    q = vq.ProductQuantizer(block_size=4, n_bits=5, random_state=3)
    assert clone(q).get_params() == q.get_params()
    assert not hasattr(q, "codebooks_")
    assert q.fit(np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32)) is q
