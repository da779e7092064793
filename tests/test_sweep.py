"""sweep(), its reports and plot, the demo (reduced), and the pieces the recipe adds:
centroid codebooks, explicit rules for vectors, the digits training loop."""
import json
import os
import sys

import numpy as np
import pytest

import vqcompress as vq
from vqcompress import InputError, report
from vqcompress.cli import main as cli
from vqcompress.evaluate import best_ratio, expand_grid, sweep
from vqcompress.examples import digits

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small():
    r = np.random.default_rng(0)
    return {"a.weight": r.laplace(size=(32, 48)).astype(np.float32),
            "a.bias": r.normal(size=32).astype(np.float32)}


def _score(weights):  # higher is better: minus the weight error against the original
    return -float(np.abs(weights["a.weight"]).sum())


def test_expand_grid_takes_the_product_of_lists():
    pts = expand_grid([{"method": "kmeans", "bits": [2, 3]}, {"method": "pq", "bits": 8,
                                                               "block_size": [2, 4]}])
    assert pts == [{"method": "kmeans", "bits": 2}, {"method": "kmeans", "bits": 3},
                   {"method": "pq", "bits": 8, "block_size": 2},
                   {"method": "pq", "bits": 8, "block_size": 4}]
    with pytest.raises(InputError):
        expand_grid(5)


def test_sweep_rows_come_from_real_files(small, tmp_path):
    seen = []
    res = sweep(small, lambda w: seen.append(w) or 1.0,
                {"method": "kmeans", "bits": [2, 4], "min_elements": 0},
                out_dir=str(tmp_path))
    rows = res["rows"]
    assert len(rows) == 2 + 4  # the grid, then uniform at 8, 4, 3, 2 bits
    assert [r["bits"] for r in rows[2:]] == [8, 4, 3, 2]
    source = sum(v.nbytes for v in small.values())
    assert res["source_bytes"] == source
    for r in rows:
        size = os.path.getsize(tmp_path / f"point{r['point']:03d}.vqz")
        assert r["file_bytes"] == size
        assert r["ratio"] == pytest.approx(source / size, rel=1e-4)
        assert r["bits_per_weight"] == pytest.approx(size * 8 / (32 * 48 + 32), rel=1e-4)
        assert r["metric"] == 1.0 and r["error"] is None
    # evaluate saw the decompressed model of each point, then the original first
    assert len(seen) == 1 + len(rows)
    np.testing.assert_array_equal(seen[0]["a.weight"], small["a.weight"])


def test_a_failing_evaluation_is_reported_and_the_sweep_goes_on(small):
    calls = []

    def evaluate(w):
        calls.append(1)
        if len(calls) == 3:  # the original, point 0, then point 1 fails
            raise RuntimeError("boom")
        return 0.5

    res = sweep(small, evaluate, {"method": "kmeans", "bits": [2, 3, 4]}, baseline=False)
    errors = [r["error"] for r in res["rows"]]
    assert errors[0] is None and errors[2] is None
    assert "grid point 1" in errors[1] and "bits': 3" in errors[1] and "boom" in errors[1]
    assert res["rows"][1]["metric"] is None and res["rows"][2]["metric"] == 0.5


def test_a_bad_point_is_reported_too(small):
    res = sweep(small, _score, [{"method": "nope"}, {"method": "kmeans", "bits": 3}],
                baseline=False)
    assert "compress failed at grid point 0" in res["rows"][0]["error"]
    assert res["rows"][1]["error"] is None


def test_best_ratio_respects_the_loss():
    rows = [{"ratio": 5, "metric": 0.99}, {"ratio": 9, "metric": 0.97},
            {"ratio": 20, "metric": None}]
    assert best_ratio(rows, 0.995, 0.01)["ratio"] == 5
    assert best_ratio(rows, 0.995, 0.03)["ratio"] == 9
    assert best_ratio(rows, 1.5, 0.01) is None


def test_reports_csv_json_png(small, tmp_path):
    pytest.importorskip("matplotlib")
    res = sweep(small, _score, {"method": "kmeans", "bits": [2, 3]})
    paths = report.write_all(res, str(tmp_path), marks=[(10.0, -1.0, "mark")])
    with open(paths["png"], "rb") as f:
        assert f.read(8) == PNG_MAGIC
    lines = open(paths["csv"]).read().splitlines()
    assert len(lines) == 1 + len(res["rows"]) and lines[0].startswith("point,method,bits")
    assert json.load(open(paths["json"]))["reference"] == res["reference"]
    table = report.sweep_table(res)
    assert table.count("\n") == len(res["rows"]) + 2


def test_without_matplotlib_the_tables_are_written_with_a_note(small, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    res = sweep(small, _score, {"method": "kmeans", "bits": 2}, baseline=False)
    paths = report.write_all(res, str(tmp_path))
    assert paths["png"] is None and "pip install" in paths["png_note"]
    assert os.path.exists(paths["csv"]) and os.path.exists(paths["json"])
    with pytest.raises(vq.VQCompressError, match="matplotlib"):
        report.plot(res, str(tmp_path / "x.png"))


def test_cli_sweep_with_an_eval_file(small, tmp_path, capsys):
    src = tmp_path / "w.npz"
    np.savez(src, **small)
    ev = tmp_path / "ev.py"
    ev.write_text("def score(w):\n    return float(len(w))\n")
    out = tmp_path / "out"
    assert cli(["sweep", str(src), "--eval", f"{ev}:score", "--grid",
                "method:kmeans,bits:2|3", "--grid", "method:pq,bits:4,block_size:4",
                "--out", str(out), "--no-baseline", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [(r["method"], r["bits"]) for r in res["rows"]] == [("kmeans", 2), ("kmeans", 3),
                                                              ("pq", 4)]
    assert all(r["metric"] == 2.0 for r in res["rows"])
    assert os.path.exists(out / "sweep.csv")
    assert cli(["sweep", str(src), "--eval", "nowhere:fn"]) == 2


def test_set_codebook_keeps_codes_and_order():
    W = np.random.default_rng(3).laplace(size=(16, 40)).astype(np.float32)
    t = vq.compress({"w": W}, method="kmeans", bits=3, prune=0.5, min_elements=0)["w"]
    book = t.quantizer.codebook_.astype(np.float64)
    dense_before = t.decompress()
    new = book.copy()
    new[1], new[2] = book[2] + 0.01, book[1] - 0.01   # swaps order: codes are remapped
    t.set_codebook(new)
    assert np.all(np.diff(t.quantizer.codebook_[1:].astype(np.float64)) >= 0)
    expect = np.where(dense_before == np.float32(book[1]), np.float32(new[1]).astype(np.float16),
                      dense_before)
    expect = np.where(dense_before == np.float32(book[2]), np.float16(new[2]), expect)
    np.testing.assert_allclose(t.decompress(), expect.astype(np.float32))
    bad = new.copy()
    bad[0] = 1.0
    with pytest.raises(InputError, match="zero codeword"):
        t.set_codebook(bad)
    with pytest.raises(InputError, match="entries"):
        t.set_codebook(new[:-1])


def test_vectors_are_quantized_only_when_a_rule_names_them():
    w = {"b": np.random.default_rng(0).normal(size=300).astype(np.float32)}
    assert vq.compress(w, min_elements=0)["b"].method == "raw"
    t = vq.compress(w, policy={"b": "method:kmeans,bits:3,min_elements:0"})["b"]
    assert t.method == "kmeans" and t.codes.shape == (300,)


def test_linear_init_is_available_to_compress():
    W = np.random.default_rng(0).normal(size=(20, 50)).astype(np.float32)
    a = vq.compress({"w": W}, bits=3, init="linear", min_elements=0)["w"]
    b = vq.compress({"w": W}, bits=3, min_elements=0)["w"]
    assert a.quantizer.init == "linear"
    # the exact optimum is never worse than Lloyd from linear init
    err = [float(np.sum((t.decompress() - W) ** 2)) for t in (a, b)]
    assert err[1] <= err[0] * (1 + 1e-3)


def test_distillation_targets_and_shifts():
    X = np.arange(2 * 64, dtype=np.float32).reshape(2, 64)
    S = digits.shifted(X)
    assert S.shape == (10, 64)
    img = S[2].reshape(8, 8)  # shifted down by one row: the top row is vacated
    np.testing.assert_array_equal(img[0], 0)
    np.testing.assert_array_equal(img[1:], X[0].reshape(8, 8)[:-1])
    p = digits.softmax(np.array([[0.0, np.log(3.0)]]))
    np.testing.assert_allclose(p, [[0.25, 0.75]], rtol=1e-6)


def test_demo_quick_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli(["demo", "--quick", "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    # loose floors for the reduced mode (the full demo's figures are in the README)
    assert res["accuracy_before"] > 0.99
    assert res["accuracy_after"] > 0.95
    assert res["ratio"] > 30
    assert res["file_bytes"] == os.path.getsize(res["files"]["vqz"])
    assert res["source_bytes"] / res["file_bytes"] == pytest.approx(res["ratio"])
    s = res["stages"]
    assert 1 < s["pruning_weights_x"] and s["pruning_quantization_x"] < \
        s["pruning_quantization_huffman_x"]
    back = vq.load(res["files"]["vqz"])
    assert digits.accuracy(back.decompress()) == pytest.approx(res["accuracy_after"])
    assert {r["layer"] for r in res["layers"]} == set(digits.load_weights())
    assert os.path.exists(res["files"]["csv"])
    assert res["post_training"]["rows"]


def test_set_coding_recodes_the_streams(tmp_path):
    W = np.random.default_rng(4).laplace(size=(24, 64)).astype(np.float32)
    m = vq.compress({"w": W}, method="kmeans", bits=4, prune=0.8, entropy="huffman",
                    min_elements=0)
    t = m["w"]
    codes = t.codes.copy()
    t.set_coding("none", "rans")
    assert (t.coding, t.index_coding) == ("none", "rans")
    m.save(tmp_path / "r.vqz")
    back = vq.load(tmp_path / "r.vqz")["w"]
    assert (back.coding, back.index_coding) == ("none", "rans")
    np.testing.assert_array_equal(back.codes, codes)
    with pytest.raises(InputError, match="coding"):
        t.set_coding("zip")
