"""Entropy-constrained scalar quantization: the decision envelope, the fit, the sizes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vqcompress as vq
from vqcompress import ecsq
from vqcompress.errors import InputError


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 12), penalty=st.floats(0, 5))
def test_assign_is_the_least_penalised_cost(seed, k, penalty):
    rng = np.random.default_rng(seed)
    book = np.sort(np.round(rng.standard_normal(k), 1))  # rounding makes equal codewords
    lengths = rng.uniform(0.5, 8, k)
    x = rng.standard_normal(500) * 2
    got = ecsq.assign(x, book, lengths, penalty)
    cost = (x[:, None] - book[None]) ** 2 + penalty * lengths[None]
    assert np.all(cost[np.arange(x.size), got] <= cost.min(axis=1) + 1e-9)


def test_zero_penalty_is_nearest_and_lengths():
    book = np.array([-1.0, 0.0, 2.0])
    x = np.array([-0.6, -0.4, 0.9, 1.1, 5.0])
    np.testing.assert_array_equal(ecsq.assign(x, book, np.ones(3), 0.0), [0, 1, 1, 2, 2])
    # a costly middle codeword loses its interval: thresholds move by penalty*dl/(2*dc)
    np.testing.assert_array_equal(ecsq.assign(x, book, np.array([1.0, 9.0, 1.0]), 0.5),
                                  [0, 0, 2, 2, 2])
    lengths = ecsq.code_lengths(np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(lengths, [-np.log2(0.75), 2.0, 2.0])  # unused: as if seen once


def test_larger_lambda_gives_smaller_files_and_beats_plain_at_equal_size():
    rng = np.random.default_rng(0)
    W = rng.laplace(size=(256, 256)).astype(np.float32)
    rows = []
    for bits, lam in [(4, 0.0), (5, 0.0), (6, 0.0), (6, 0.003), (6, 0.01), (6, 0.03), (6, 0.1)]:
        m = vq.compress({"w": W}, method="kmeans", bits=bits, entropy_lambda=lam)
        rows.append((bits, lam, m["w"].bits_per_weight, m["w"].info["sqnr_db"]))
    ecsq_rows = [r for r in rows if r[1] > 0]
    sizes = [r[2] for r in ecsq_rows]
    assert sizes == sorted(sizes, reverse=True)
    plain = [(r[2], r[3]) for r in rows if r[1] == 0]
    # at the size of each ECSQ point inside the plain range, plain (interpolated) is worse
    for _, _, size, sqnr in ecsq_rows:
        if plain[0][0] <= size <= plain[-1][0]:
            assert sqnr > np.interp(size, *zip(*plain)) + 0.3


def test_options_and_errors():
    W = np.random.default_rng(1).standard_normal((32, 64)).astype(np.float32)
    q = vq.KMeansQuantizer(4, entropy_lambda=0.05).fit(W)
    assert q.code_lengths_.shape == (16,)
    codes = q.encode(W)
    np.testing.assert_array_equal(codes, ecsq.assign(W, q.codebook_.astype(np.float64),
                                                     q.code_lengths_, q.penalty_))
    for bad in (-1, "x", True):
        with pytest.raises(InputError, match="entropy_lambda"):
            vq.KMeansQuantizer(4, entropy_lambda=bad).fit(W)
    with pytest.raises(InputError, match="zero_codeword"):
        vq.KMeansQuantizer(4, entropy_lambda=0.1, zero_codeword=True).fit(W)
    with pytest.raises(InputError, match="entropy_lambda does not combine with prune"):
        vq.compress({"w": W}, prune=0.5, entropy_lambda=0.1)
    # other methods ignore it, so one global value and a rule for another method mix
    m = vq.compress({"w": W, "v": W}, entropy_lambda=0.1,
                    policy=["v=method:pq,bits:4,block_size:4"])
    assert m["v"].method == "pq" and m["w"].quantizer.entropy_lambda == 0.1
    m = vq.compress({"w": W}, policy=["w=method:kmeans,bits:5,entropy_lambda:0.05"])
    assert m["w"].quantizer.entropy_lambda == 0.05


def test_output_aware_ecsq_trades_error_for_size():
    rng = np.random.default_rng(2)
    W = rng.standard_normal((128, 64)).astype(np.float32)
    X = rng.standard_normal((1000, 64)) * np.exp(rng.standard_normal(64))

    def out_err(t):
        D = W - t.decompress()
        return np.sum((X @ D.T) ** 2)

    plain = vq.compress({"w": W}, method="kmeans", bits=5, calibration={"w": X})
    small = vq.compress({"w": W}, method="kmeans", bits=5, calibration={"w": X},
                        entropy_lambda=0.05)
    assert small["w"].nbytes < 0.8 * plain["w"].nbytes
    assert out_err(small["w"]) > out_err(plain["w"])
    three = vq.compress({"w": W}, method="kmeans", bits=3, calibration={"w": X})
    if small["w"].nbytes <= three["w"].nbytes:  # smaller than plain 3 bits and better
        assert out_err(small["w"]) < out_err(three["w"])
