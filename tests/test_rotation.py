"""Incoherence processing: the randomized Hadamard rotation, in files and in the layers."""
import os

import numpy as np
import pytest
import scipy.linalg

import vqcompress as vq
from vqcompress import nn, rotation
from vqcompress.errors import FormatError, InputError


def naive_rotation_matrix(n, packed):
    """R = D B built densely: signs on the diagonal, Sylvester Hadamard blocks / sqrt."""
    b = n & -n
    B = scipy.linalg.block_diag(*[scipy.linalg.hadamard(b) / np.sqrt(b)] * (n // b))
    s = 1 - 2 * np.unpackbits(packed, count=n, bitorder="little").astype(float)
    return np.diag(s) @ B


@pytest.mark.parametrize("n", [1, 7, 64, 96, 384])
def test_rotation_against_dense_matrices(n):
    rng = np.random.default_rng(n)
    packed = rotation.random_signs(n, 0)
    R = naive_rotation_matrix(n, packed)
    np.testing.assert_allclose(R @ R.T, np.eye(n), atol=1e-12)
    X = rng.standard_normal((5, n))
    np.testing.assert_allclose(rotation.rotate(X, packed), X @ R, atol=1e-12)
    np.testing.assert_allclose(rotation.unrotate(X, packed), X @ R.T, atol=1e-12)
    H = X.T @ X
    np.testing.assert_allclose(rotation.rotate_hessian(H, packed), R.T @ H @ R, atol=1e-10)
    x32 = X.astype(np.float32)
    assert rotation.rotate(x32, packed).dtype == np.float32
    np.testing.assert_allclose(rotation.unrotate(rotation.rotate(x32, packed), packed), x32,
                               atol=1e-5)


def test_check_signs():
    good = rotation.random_signs(12, 3)
    assert rotation.check_signs(good, 12, name="s") is good
    with pytest.raises(FormatError, match="past input 12"):
        rotation.check_signs(np.array([0, 0xF0], np.uint8), 12, name="s")
    with pytest.raises(FormatError, match="2 uint8 bytes"):
        rotation.check_signs(np.zeros(3, np.uint8), 12, name="s")


def weights(n_in, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((48, n_in))
    W[rng.random(W.shape) < 0.01] *= 30  # a few outliers: what the rotation spreads out
    return {"fc.weight": W.astype(np.float32), "fc.bias": rng.standard_normal(48).astype(np.float32),
            "embed.weight": rng.standard_normal((40, n_in)).astype(np.float32)}


@pytest.mark.parametrize("n_in", [64, 96, 45])
@pytest.mark.parametrize("method, bits", [("kmeans", 3), ("pq", 6), ("rq", 4), ("uniform", 3)])
def test_layers_compute_with_rotated_codes(tmp_path, n_in, method, bits):
    w = weights(n_in)
    m = vq.compress(w, method=method, bits=bits, block_size=3, hadamard=True, min_elements=100)
    path = str(tmp_path / "m.vqz")
    m.save(path)
    back = vq.load(path)
    t = back["fc.weight"]
    assert t.signs is not None and t.signs.shape == ((n_in + 7) // 8,)
    # the signs are a part of the tensor, counted in its bytes
    assert container_parts(t)["signs"].nbytes == (n_in + 7) // 8
    dense = t.decompress()
    np.testing.assert_array_equal(dense, m["fc.weight"].decompress())
    layers = nn.load(path)
    rng = np.random.default_rng(1)
    for batch in (1, 7, 64):
        x = rng.standard_normal((batch, n_in)).astype(np.float32)
        want = x.astype(np.float64) @ dense.T.astype(np.float64) + w["fc.bias"]
        got = layers["fc.weight"](x)
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    np.testing.assert_allclose(layers["fc.weight"].dense_weight(), dense, atol=1e-5)
    ids = np.array([[0, 5], [39, 5]])
    np.testing.assert_allclose(layers["embed.weight"](ids), back["embed.weight"].decompress()[ids],
                               atol=1e-5)
    # decoded back to the original input space: the error is that of the rotated codes
    assert m["fc.weight"].info["sqnr_db"] > 5


def container_parts(t):
    return vq.container.tensor_parts(t)


def test_rotation_helps_a_scalar_grid_on_outliers():
    w = weights(128)
    plain = vq.compress(w, method="uniform", bits=3, group_size="channel")
    rotated = vq.compress(w, method="uniform", bits=3, group_size="channel", hadamard=True)
    assert rotated["fc.weight"].info["sqnr_db"] > plain["fc.weight"].info["sqnr_db"] + 2


def test_rotation_with_calibration_and_errors(tmp_path):
    w = weights(64)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((500, 64)) * np.linspace(0.1, 4, 64)
    m = vq.compress(w, method="kmeans", bits=3, hadamard=True, calibration={"fc.weight": X})
    plain = vq.compress(w, method="kmeans", bits=3, hadamard=True)

    def out_err(t):
        return np.sum((X @ (w["fc.weight"] - t.decompress()).T) ** 2)

    assert out_err(m["fc.weight"]) < out_err(plain["fc.weight"])
    with pytest.raises(InputError, match="Hadamard"):
        vq.compress(w, prune=0.5, hadamard=True)
    # the same seed gives the same file; the rotation's signs depend on the tensor's name
    a = vq.compress(w, hadamard=True, random_state=5)
    b = vq.compress(w, hadamard=True, random_state=5)
    pa, pb = str(tmp_path / "a.vqz"), str(tmp_path / "b.vqz")
    a.save(pa)
    b.save(pb)
    assert open(pa, "rb").read() == open(pb, "rb").read()
    assert os.path.getsize(pa) == vq.container.file_size(a.tensors)


@pytest.mark.parametrize("edit", ["drop flag", "bad flag", "sparse"])
def test_reader_checks_the_rotation_record(tmp_path, edit):
    import vqz_mutations as mut

    path = str(tmp_path / "m.vqz")
    vq.compress(weights(40), hadamard=True).save(path)
    head, body = mut.split(open(path, "rb").read())
    records = mut.get_records(head)
    rec = records["fc.weight"]
    if edit == "drop flag":
        del rec["hadamard"]  # the signs part is then one part too many
    elif edit == "bad flag":
        rec["hadamard"] = "yes"
    else:
        rec["sparse"] = {"index_bits": 5, "entries": 3}
    mut.set_records(head, records)
    bad = str(tmp_path / "bad.vqz")
    open(bad, "wb").write(mut.join(head, body))
    with pytest.raises(FormatError):
        vq.load(bad)


def test_cli_and_policy_hadamard(tmp_path):
    from vqcompress.cli import main

    src = str(tmp_path / "w.npz")
    vq.io.save_weights(src, weights(64))
    out = str(tmp_path / "m.vqz")
    assert main(["compress", src, out, "--hadamard", "--policy", "embed*=hadamard:false",
                 "--json"]) == 0
    m = vq.load(out)
    assert m["fc.weight"].signs is not None and m["embed.weight"].signs is None
