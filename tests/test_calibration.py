"""Calibration statistics and output-aware quantization (GPTQ-style assignment, refit)."""
import copy
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vqcompress as vq
from vqcompress import calibration, output_aware
from vqcompress.errors import FormatError, InputError
from vqcompress.nn import Recorder
from vqcompress.quantizers import KMeansQuantizer, ProductQuantizer, ResidualQuantizer


def anisotropic(out=96, n=48, rows=2000, seed=0):
    """A layer whose inputs have very unequal, correlated scales."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((out, n)).astype(np.float32)
    mix = rng.standard_normal((n, n)) * 0.4 + np.eye(n)
    X = (rng.standard_normal((rows, n)) @ mix * np.exp(1.5 * rng.standard_normal(n)))
    return W, X.astype(np.float32)


def output_error(W, Q, X):
    return float(np.sum((X.astype(np.float64) @ (W - Q).T.astype(np.float64)) ** 2))


# --- Stats ---------------------------------------------------------------------------------

def test_stats_accumulate_xtx_in_float64_over_batches():
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((r, 7)).astype(np.float32) for r in (3, 1500, 1, 800)]
    s = calibration.Stats(7)
    for b in batches:
        s.add(b[None])  # any leading shape
    X = np.concatenate(batches).astype(np.float64)
    assert s.count == X.shape[0]
    np.testing.assert_allclose(s.xtx, X.T @ X, rtol=1e-12)
    np.testing.assert_allclose(s.hessian(), X.T @ X / X.shape[0], rtol=1e-12)
    d = calibration.Stats(7, diagonal=True)
    for b in batches:
        d.add(b)
    np.testing.assert_allclose(d.hessian(), np.diag(np.diag(X.T @ X)) / X.shape[0], rtol=1e-12)


def test_stats_copy_their_input():
    x = np.ones((2, 3), np.float32)
    s = calibration.Stats(3).add(x)
    x[:] = 5  # a model reusing its buffer must not change what was recorded
    np.testing.assert_array_equal(s.xtx, np.full((3, 3), 2.0))


@pytest.mark.parametrize("bad, match", [
    (np.array([[np.nan, 1.0]]), "NaN"),
    (np.ones((2, 3)), "last dimension"),
    (np.ones((2, 2), np.int32), "not floating point"),
])
def test_stats_refuse_bad_rows(bad, match):
    with pytest.raises(InputError, match=match):
        calibration.Stats(2).add(bad)


def test_as_stats_forms_and_errors():
    X = np.random.default_rng(2).standard_normal((50, 4))
    s = calibration.as_stats(X, name="w", in_features=4)
    np.testing.assert_allclose(s.xtx, X.T @ X)
    imp = calibration.as_stats(np.array([1.0, 2, 3, 4]), name="w", in_features=4)
    np.testing.assert_array_equal(imp.hessian(), np.diag([1.0, 2, 3, 4]))
    with pytest.raises(InputError, match="'w'.*3 input features"):
        calibration.as_stats(np.ones(3), name="w", in_features=4)
    with pytest.raises(InputError, match="rank 3"):
        calibration.as_stats(np.ones((2, 2, 4)), name="w", in_features=4)
    with pytest.raises(InputError, match="symmetric"):
        calibration.Stats.from_xtx(np.arange(16.0).reshape(4, 4), 3)
    with pytest.raises(InputError, match="negative"):
        calibration.Stats.from_xtx(np.array([1.0, -1.0]), 3)
    with pytest.raises(InputError, match="no rows"):
        calibration.as_stats(calibration.Stats(4), name="w", in_features=4)


def test_save_load_round_trip_and_corrupt_files(tmp_path):
    rng = np.random.default_rng(3)
    stats = {"a.weight": calibration.Stats(5).add(rng.standard_normal((9, 5))),
             "b.weight": calibration.Stats(3, diagonal=True).add(rng.standard_normal((4, 3)))}
    path = str(tmp_path / "cal.safetensors")
    calibration.save(path, stats)
    back = calibration.load(path)
    assert set(back) == set(stats)
    for k in stats:
        np.testing.assert_array_equal(back[k].xtx, stats[k].xtx)
        assert (back[k].count, back[k].diagonal) == (stats[k].count, stats[k].diagonal)
    with pytest.raises(InputError, match="exists"):
        calibration.save(path, stats)
    with pytest.raises(InputError, match=".safetensors"):
        calibration.save(str(tmp_path / "cal.npz"), stats)
    data = open(path, "rb").read()
    cut = str(tmp_path / "cut.safetensors")
    open(cut, "wb").write(data[: len(data) - 8])
    with pytest.raises(FormatError):
        calibration.load(cut)
    vq.io.save_weights(str(tmp_path / "w.safetensors"), {"a": np.ones(3)})
    with pytest.raises(FormatError, match="not a vqcompress calibration file"):
        calibration.load(str(tmp_path / "w.safetensors"))
    # a file whose description lies about a tensor's count
    n = int.from_bytes(data[:8], "little")
    head = json.loads(data[8:8 + n])
    meta = json.loads(head["__metadata__"]["stats"])
    meta["a.weight"]["count"] = "many"
    head["__metadata__"]["stats"] = json.dumps(meta)
    new = json.dumps(head).encode()
    new += b" " * (-len(new) % 8)
    bad = str(tmp_path / "bad.safetensors")
    open(bad, "wb").write(len(new).to_bytes(8, "little") + new + data[8 + n:])
    with pytest.raises(FormatError, match="malformed"):
        calibration.load(bad)


def test_recorder_collects_each_layers_inputs():
    rng = np.random.default_rng(4)
    W1, W2 = rng.standard_normal((6, 4)), rng.standard_normal((3, 6))
    layers = {"l1": lambda x: x @ W1.T, "l2": lambda x: x @ W2.T, "emb": lambda ids: ids * 1.0}
    rec = Recorder()
    wrapped = rec.wrap(layers)
    xs = [rng.standard_normal((2, 5, 4)).astype(np.float32) for _ in range(3)]
    for x in xs:
        wrapped["emb"](np.arange(3))  # integer ids are counted, not added to XᵀX
        wrapped["l2"](np.maximum(wrapped["l1"](x), 0))
    X1 = np.concatenate([x.reshape(-1, 4) for x in xs]).astype(np.float64)
    X2 = np.maximum(X1 @ W1.T, 0)
    assert set(rec.stats) == {"l1", "l2", "emb"}
    np.testing.assert_array_equal(rec.stats["emb"].counts, [3, 3, 3])
    np.testing.assert_allclose(rec.stats["l1"].xtx, X1.T @ X1, rtol=1e-5)
    np.testing.assert_allclose(rec.stats["l2"].xtx, X2.T @ X2, rtol=1e-4)
    assert rec.stats["l1"].count == 30


def test_recorder_mask_leaves_out_padding():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    ids = np.array([[5, 6, 7, 0], [8, 0, 0, 0]])
    mask = np.array([[True, True, True, False], [True, False, False, False]])
    rec = Recorder()
    wrapped = rec.wrap({"lin": lambda t: t, "emb": lambda t: t, "pool": lambda t: t})
    rec.mask = mask
    wrapped["lin"](x)
    wrapped["emb"](ids)
    wrapped["pool"](x[:, 0])  # (batch, hidden): not the mask's shape, recorded whole
    X = x[mask].astype(np.float64)
    np.testing.assert_allclose(rec.stats["lin"].xtx, X.T @ X, rtol=1e-6)
    assert rec.stats["lin"].count == 4 and rec.stats["pool"].count == 2
    np.testing.assert_array_equal(rec.stats["emb"].counts, np.bincount([5, 6, 7, 8]))
    with pytest.raises(InputError, match="boolean"):
        rec.mask = mask.astype(np.int8)


# --- the output-aware core -------------------------------------------------------------------

def naive_gptq_scalar(W, H, book, damp=0.01):
    """Optimal Brain Surgeon one column at a time, largest diagonal of H first,
    re-deriving the inverse Hessian of the remaining columns by elimination (no Cholesky,
    no lazy batches, no permuted copies)."""
    W = W.astype(np.float64).copy()
    H = H + damp * np.mean(np.diag(H)) * np.eye(H.shape[0])
    Hinv = np.linalg.inv(H)
    codes = np.empty(W.shape, np.int64)
    done = np.zeros(W.shape[1], bool)
    for j in np.argsort(-np.diag(H), kind="stable"):
        codes[:, j] = np.argmin(np.abs(W[:, j, None] - book[None]), axis=1)
        err = (W[:, j] - book[codes[:, j]]) / Hinv[j, j]
        done[j] = True
        rest = ~done
        W[:, rest] -= np.outer(err, Hinv[j, rest])
        Hinv = Hinv - np.outer(Hinv[:, j], Hinv[j, :]) / Hinv[j, j]
    return codes


def test_gptq_scalar_matches_naive_optimal_brain_surgeon():
    W, X = anisotropic(out=40, n=300, rows=3000)  # more columns than one lazy batch
    H = X.T.astype(np.float64) @ X / X.shape[0]
    q = KMeansQuantizer(3).fit(W)
    part = output_aware._Scalar(q)
    codes = output_aware._gptq(W.astype(np.float64), H, part, 0.01)
    want = naive_gptq_scalar(W, H, q.codebook_.astype(np.float64))
    assert np.mean(codes == want) > 0.999  # ties at midpoints may round either way


def test_inverse_cholesky_is_reused_for_the_same_statistics_only(monkeypatch):
    """The allocation fits a tensor at several settings with one H: the factor is computed
    once, read-only, and a different H or damping gets its own."""
    monkeypatch.setattr(output_aware, "_FACTORS", {})
    calls = []
    factor = output_aware._factor
    monkeypatch.setattr(output_aware, "_factor", lambda H, d: calls.append(1) or factor(H, d))
    _, X = anisotropic(out=8, n=20, rows=200)
    H = X.T.astype(np.float64) @ X / X.shape[0]
    U = output_aware._inverse_cholesky(H, 0.01)
    np.testing.assert_allclose(U.T @ U, np.linalg.inv(H + 0.01 * np.mean(np.diag(H)) *
                                                      np.eye(20)), rtol=1e-8, atol=1e-10)
    assert output_aware._inverse_cholesky(H.copy(), 0.01) is U and len(calls) == 1
    assert not U.flags.writeable
    H2 = H.copy()
    H2[0, 0] *= 1.01
    output_aware._inverse_cholesky(H2, 0.01)
    output_aware._inverse_cholesky(H, 0.02)
    assert len(calls) == 3
    monkeypatch.setattr(output_aware, "_FACTORS_BYTES", 2 * U.nbytes)  # room for two
    output_aware._inverse_cholesky(H, 0.03)
    assert len(output_aware._FACTORS) == 2  # the oldest ones went
    assert output_aware._inverse_cholesky(H, 0.03) is not None and len(calls) == 4


def test_gptq_with_diagonal_statistics_is_nearest_rounding():
    W, X = anisotropic()
    H = np.diag(np.mean(X.astype(np.float64) ** 2, axis=0))
    q = ProductQuantizer(4, 5, random_state=0).fit(W)
    part = output_aware._Product(q)
    codes = output_aware._gptq(W.astype(np.float64), H, part, 0.01)
    # with no cross terms, the block metric is diagonal: nearest in the scaled space
    scale = np.sqrt(np.diag(H) + 0.01 * np.mean(np.diag(H)))
    blocks = (W * scale).reshape(W.shape[0], -1, 4)
    for j in range(blocks.shape[1]):
        book = q.codebooks_[0].astype(np.float64) * scale[4 * j: 4 * j + 4]
        d = ((blocks[:, j, None, :] - book[None]) ** 2).sum(-1)
        assert np.mean(codes[:, j] == d.argmin(1)) > 0.99


def naive_refit(W, H, idx, P):
    """Normal equations built from explicit one-hot decoders, row by row."""
    A, b = np.zeros((P, P)), np.zeros(P)
    for i in range(W.shape[0]):
        E = np.zeros((P, W.shape[1]))
        for t in range(idx.shape[0]):
            E[idx[t, i], np.arange(W.shape[1])] += 1
        A += E @ H @ E.T
        b += E @ H @ W[i]
    return A, b


@pytest.mark.parametrize("quantizer", [KMeansQuantizer(2), ProductQuantizer(3, 3),
                                       ResidualQuantizer(3, 2, n_stages=2)])
def test_refit_solves_the_normal_equations(quantizer):
    W, X = anisotropic(out=12, n=9, rows=200)
    H = X.T.astype(np.float64) @ X / 200
    q = copy.deepcopy(quantizer).set_params(random_state=0, codebook_dtype="float32")
    part = {KMeansQuantizer: output_aware._Scalar, ProductQuantizer: output_aware._Product,
            ResidualQuantizer: output_aware._Residual}[type(q)](q.fit(W))
    W64 = W.astype(np.float64)
    idx = part.index_maps(part.nearest(W64))
    old = part.unknowns()
    c = output_aware._refit(W64, H, idx, old)
    A, b = naive_refit(W64, H, idx, old.size)
    used = np.diag(A) > 0
    np.testing.assert_allclose((A @ c)[used], b[used], rtol=1e-5, atol=1e-6 * np.abs(b).max())
    np.testing.assert_allclose(c[~used], old[~used])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), bits=st.integers(1, 4))
def test_refit_never_increases_the_calibrated_error(seed, bits):
    W, X = anisotropic(out=20, n=12, rows=100, seed=seed)
    H = X.T.astype(np.float64) @ X / 100
    q = KMeansQuantizer(bits, codebook_dtype="float32").fit(W)
    part = output_aware._Scalar(q)
    W64 = W.astype(np.float64)
    codes = part.nearest(W64)
    before = output_aware._output_error(W64, part.decode(codes), H)
    part.set_unknowns(output_aware._refit(W64, H, part.index_maps(codes), part.unknowns()))
    after = output_aware._output_error(W64, part.decode(codes), H)
    assert after <= before * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize("make", [
    lambda: KMeansQuantizer(3),
    lambda: ProductQuantizer(4, 6, random_state=0),
    lambda: ResidualQuantizer(4, 4, n_stages=2, random_state=0),
])
def test_output_aware_beats_weight_mse_at_equal_bits(make):
    W, X = anisotropic()
    plain = make()
    plain_codes = plain.fit_encode(W)
    aware = make()
    codes, info = output_aware.fit_encode(aware, W, calibration.Stats(W.shape[1]).add(X))
    assert aware.bits_per_weight == plain.bits_per_weight
    e_plain = output_error(W, plain.decode(plain_codes).reshape(W.shape), X)
    e_aware = output_error(W, aware.decode(codes).reshape(W.shape), X)
    assert e_aware < 0.85 * e_plain
    signal = output_error(W, np.zeros_like(W), X)
    assert info["output_error"] == pytest.approx(e_aware / signal, rel=1e-3)


# --- through compress and the command line -----------------------------------------------------

def small_model(seed=0):
    rng = np.random.default_rng(seed)
    W, X = anisotropic(out=64, n=48, seed=seed)
    return {"fc.weight": W, "fc.bias": rng.standard_normal(64).astype(np.float32),
            "head.weight": rng.standard_normal((8, 64)).astype(np.float32)}, X


def test_compress_with_calibration_lowers_the_output_error(tmp_path):
    weights, X = small_model()
    plain = vq.compress(weights, method="kmeans", bits=3)
    aware = vq.compress(weights, method="kmeans", bits=3, calibration={"fc.weight": X})
    W = weights["fc.weight"]
    e = [output_error(W, m["fc.weight"].decompress(), X) for m in (plain, aware)]
    assert e[1] < 0.7 * e[0]
    assert "calibration" in aware["fc.weight"].info
    assert "calibration" not in aware["head.weight"].info
    np.testing.assert_array_equal(aware["head.weight"].codes, plain["head.weight"].codes)
    # what gets written reads back and decodes to the same weights
    path = str(tmp_path / "m.vqz")
    aware.save(path)
    np.testing.assert_array_equal(vq.load(path)["fc.weight"].decompress(),
                                  aware["fc.weight"].decompress())
    # opting out by policy gives the data-free result
    out = vq.compress(weights, method="kmeans", bits=3, calibration={"fc.weight": X},
                      policy=["fc.weight=calibrate:false"])
    np.testing.assert_array_equal(out["fc.weight"].codes, plain["fc.weight"].codes)


def test_compress_calibration_errors():
    weights, X = small_model()
    with pytest.raises(InputError, match="'nope.weight'.*not in the weights"):
        vq.compress(weights, calibration={"nope.weight": X})
    with pytest.raises(InputError, match="'fc.weight'.*kmeans, pq and rq"):
        vq.compress(weights, method="uniform", calibration={"fc.weight": X})
    with pytest.raises(InputError, match="'fc.weight'.*kmeans, pq and rq"):
        vq.compress(weights, prune=0.5, calibration={"fc.weight": X})
    with pytest.raises(InputError, match="'fc.bias'.*2-D"):
        vq.compress(weights, calibration={"fc.bias": X[:, :1]})
    with pytest.raises(InputError, match="'fc.weight'.*47 input features"):
        vq.compress(weights, calibration={"fc.weight": X[:, :47]})


def test_cli_calibration_file(tmp_path):
    from vqcompress.cli import main

    weights, X = small_model()
    src = str(tmp_path / "w.safetensors")
    vq.io.save_weights(src, weights)
    cal = str(tmp_path / "cal.safetensors")
    calibration.save(cal, {"fc.weight": calibration.Stats(48).add(X)})
    out = str(tmp_path / "m.vqz")
    assert main(["compress", src, out, "--method", "pq", "--bits", "6", "--block-size", "4",
                 "--calibration", cal, "--json"]) == 0
    direct = vq.compress(weights, method="pq", bits=6, block_size=4,
                         calibration={"fc.weight": X})
    np.testing.assert_allclose(vq.load(out)["fc.weight"].decompress(),
                               direct["fc.weight"].decompress(), rtol=1e-6, atol=1e-6)
    assert os.path.getsize(out) > 0


def test_data_aware_file_is_the_same_for_any_numba_thread_count(tmp_path):
    """Calibration, rotation, entropy-constrained codes and allocation together: byte-
    identical files with 1 and 2 Numba threads (each a fresh process)."""
    import subprocess
    import sys

    from vqcompress.examples.digits import WEIGHTS

    src = vq.io.open_weights(WEIGHTS)
    rng = np.random.default_rng(5)
    stats = {n: calibration.Stats(src.shape(n)[1]).add(
        rng.standard_normal((300, src.shape(n)[1])) * rng.uniform(0.1, 3, src.shape(n)[1]))
        for n in src if len(src.shape(n)) == 2}
    cal = str(tmp_path / "cal.safetensors")
    calibration.save(cal, stats)
    outs = []
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}.vqz"
        subprocess.run([sys.executable, "-m", "vqcompress", "compress", WEIGHTS, str(out),
                        "--calibration", cal, "--hadamard", "--entropy-lambda", "0.01",
                        "--target-bpw", "5", "--candidate", "method:kmeans,bits:3",
                        "--candidate", "method:kmeans,bits:5",
                        "--candidate", "method:pq,bits:6,block_size:2", "--json"],
                       env={**os.environ, "NUMBA_NUM_THREADS": threads}, check=True,
                       capture_output=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_all_zero_calibration_warns_and_falls_back():
    weights, X = small_model()
    with pytest.warns(UserWarning, match="'fc.weight'.*all zero"):
        m = vq.compress(weights, method="kmeans", bits=3,
                        calibration={"fc.weight": np.zeros_like(X)})
    plain = vq.compress(weights, method="kmeans", bits=3)
    np.testing.assert_array_equal(m["fc.weight"].codes, plain["fc.weight"].codes)
    assert "calibration" not in m["fc.weight"].info


@pytest.mark.parametrize("method, opts", [("kmeans", {"bits": 3}),
                                          ("pq", {"bits": 6, "block_size": 2})])
def test_more_refit_rounds_never_raise_the_output_error(method, opts):
    weights, X = small_model(1)
    W = weights["fc.weight"]
    err = [output_error(W, vq.compress(weights, method=method, calibration={"fc.weight": X},
                                       refit_rounds=r, **opts)["fc.weight"].decompress(), X)
           for r in (1, 3)]
    assert err[1] <= err[0] * (1 + 1e-9)  # the best round is kept; round 1 is the same
    with pytest.raises(InputError, match="refit_rounds"):
        vq.compress(weights, method=method, calibration={"fc.weight": X}, refit_rounds=0,
                    **opts)
