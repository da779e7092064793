"""Automatic bit allocation under a whole-file budget."""
import itertools
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vqcompress as vq
from vqcompress import allocate
from vqcompress.errors import InputError


def brute_force(points, budget):
    best = None
    names = list(points)
    for combo in itertools.product(*(range(len(points[n])) for n in names)):
        size = sum(points[n][i][0] for n, i in zip(names, combo))
        err = sum(points[n][i][1] for n, i in zip(names, combo))
        if size <= budget and (best is None or err < best):
            best = err
    return best


def test_hull_keeps_the_lower_convex_points():
    pts = [(10, 8.0), (20, 4.0), (30, 3.5), (40, 1.0), (25, 9.0), (50, 1.0)]
    # (30, 3.5) lies above the chord from (20, 4) to (40, 1); (25, 9) and (50, 1) are dominated
    assert allocate.hull(pts) == [0, 1, 3]


def test_choose_on_a_hand_case():
    points = {"a": [(100, 10.0), (200, 2.0), (300, 1.0)],
              "b": [(100, 3.0), (200, 2.5), (300, 2.4)]}
    assert allocate.choose(points, 300) == {"a": 1, "b": 0}  # a's step saves 8 for 100
    assert allocate.choose(points, 400) == {"a": 2, "b": 0}  # then a again (1) over b (0.5)
    assert allocate.choose(points, 199) is None


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.integers(200, 1200))
def test_choose_stays_in_budget_and_is_optimal_on_convex_costs(seed, budget):
    rng = np.random.default_rng(seed)
    points = {}
    for n in "abc":  # convex, falling error curves over rising sizes
        sizes = np.cumsum(rng.integers(20, 100, 5))
        errs = np.cumsum(rng.uniform(0.1, 1, 5)[::-1])[::-1] ** 2
        points[n] = [(int(b), float(e)) for b, e in zip(sizes, errs)]
    chosen = allocate.choose(points, budget)
    best = brute_force(points, budget)
    if best is None:
        assert chosen is None
        return
    assert sum(points[n][i][0] for n, i in chosen.items()) <= budget
    got = sum(points[n][i][1] for n, i in chosen.items())
    # the greedy is the Lagrangian optimum: no more than one hull step from brute force
    step = max(points[n][0][1] - points[n][-1][1] for n in points)
    assert best <= got + 1e-12 and got <= best + step


def model(seed=0):
    rng = np.random.default_rng(seed)
    return {"a.weight": rng.standard_normal((96, 64)).astype(np.float32),
            "b.weight": rng.standard_normal((96, 64)).astype(np.float32),
            "b.bias": rng.standard_normal(96).astype(np.float32),
            "c.weight": rng.laplace(size=(32, 96)).astype(np.float32)}


@pytest.mark.parametrize("target", [2.6, 3.3, 4.5, 7.0])
def test_file_stays_within_the_target(tmp_path, target):
    w = model()
    m = vq.compress(w, target_bits_per_weight=target)
    path = str(tmp_path / "m.vqz")
    size = m.save(path)
    n = sum(x.size for x in w.values())
    assert size * 8 / n <= target
    assert size == os.path.getsize(path) == vq.container.file_size(m.tensors)
    chosen = [t.info["allocation"]["candidate"] for t in m.tensors.values()
              if "allocation" in t.info]
    assert len(chosen) == 3 and m["b.bias"].method == "raw"
    # a looser budget never gives a worse total error
    looser = vq.compress(w, target_bits_per_weight=target + 1)
    err = [sum(t.info["allocation"]["weighted_error"] for t in mm.tensors.values()
               if "allocation" in t.info) for mm in (m, looser)]
    assert err[1] <= err[0]


def test_sensitive_layer_gets_more_bits():
    """y = 10 * (x a^T) + x b^T: errors in a cost 100 times more; measured, then used."""
    w = model()
    rng = np.random.default_rng(1)
    X = rng.standard_normal((256, 64))

    new = []  # per call, the tensors that are new objects (the documented contract)

    def loss(weights):
        new.append([k for k in weights if weights[k] is not w[k]])
        y = 10 * X @ weights["a.weight"].T + X @ weights["b.weight"].T
        ref = 10 * X @ w["a.weight"].T + X @ w["b.weight"].T
        return float(np.mean((y - ref) ** 2))

    sens = allocate.measure_sensitivity(w, loss, names=["a.weight", "b.weight"])
    assert sens["a.weight"] > 50 * sens["b.weight"] > 0
    assert new == [[], ["a.weight"], ["b.weight"]]
    m = vq.compress(w, target_bits_per_weight=4.0, sensitivity=sens,
                    policy=["c.weight=method:kmeans,bits:4"])
    assert m["a.weight"].quantizer.n_bits > m["b.weight"].quantizer.n_bits
    assert "allocation" not in m["c.weight"].info  # a rule names it: kept as ruled
    plain = vq.compress(w, target_bits_per_weight=4.0, policy=["c.weight=method:kmeans,bits:4"])
    assert plain["a.weight"].quantizer.n_bits == plain["b.weight"].quantizer.n_bits


def test_allocation_with_calibration_and_candidates(tmp_path):
    w = model()
    X = np.random.default_rng(2).standard_normal((300, 64)) * np.linspace(0.1, 5, 64)
    cands = ["method:kmeans,bits:3", "method:pq,bits:6,block_size:4", "method:kmeans,bits:5"]
    m = vq.compress(w, target_bits_per_weight=3.5, candidates=cands,
                    calibration={"a.weight": X})
    assert all(t.info["allocation"]["candidate"] in cands for t in m.tensors.values()
               if "allocation" in t.info)
    calibrated = m["a.weight"]
    if calibrated.method != "raw":
        assert "calibration" in calibrated.info


def test_allocation_errors():
    w = model()
    with pytest.raises(InputError, match="already need"):
        vq.compress(w, target_bits_per_weight=0.5)
    for bad in (0, -1, "4", True):
        with pytest.raises(InputError, match="target_bits_per_weight"):
            vq.compress(w, target_bits_per_weight=bad)
    with pytest.raises(InputError, match="skip"):
        vq.compress(w, target_bits_per_weight=4, candidates=["skip"])
    with pytest.raises(InputError, match="unknown option"):
        vq.compress(w, target_bits_per_weight=4, candidates=["colour:red"])
    with pytest.raises(InputError, match="sensitivity names"):
        vq.compress(w, target_bits_per_weight=4, sensitivity={"z.weight": 1.0})


def test_cli_target_bpw(tmp_path):
    import json

    from vqcompress.cli import main

    w = model()
    src = str(tmp_path / "w.npz")
    vq.io.save_weights(src, w)
    sens = str(tmp_path / "s.json")
    json.dump({"a.weight": 5.0}, open(sens, "w"))
    out = str(tmp_path / "m.vqz")
    assert main(["compress", src, out, "--target-bpw", "3.5", "--candidate",
                 "method:kmeans,bits:2", "--candidate", "method:kmeans,bits:4",
                 "--sensitivity", sens, "--json"]) == 0
    n = sum(x.size for x in w.values())
    assert os.path.getsize(out) * 8 / n <= 3.5
    bad = str(tmp_path / "bad.json")
    open(bad, "w").write("[1, 2]")
    assert main(["compress", src, str(tmp_path / "m2.vqz"), "--target-bpw", "3.5",
                 "--sensitivity", bad]) != 0
    assert not os.path.exists(str(tmp_path / "m2.vqz"))
