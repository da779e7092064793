"""Per-tensor policies and parallel compression."""
import concurrent.futures as cf
import multiprocessing as mp

import numpy as np
import pytest

import vqcompress as vq
from vqcompress import InputError
from vqcompress.examples.digits import WEIGHTS as EXAMPLE
from vqcompress.policy import parse_policy, parse_rule, plan_for


def test_parse_rules():
    assert parse_rule("*.bias=skip") == ("*.bias", {"skip": True})
    assert parse_rule(" enc.*.weight = method:pq, bits:8,block_size:4 ") == (
        "enc.*.weight", {"method": "pq", "bits": 8, "block_size": 4})
    assert parse_rule("x=group_size:32,prune:0.5") == ("x", {"group_size": 32, "prune": 0.5})
    assert parse_rule("x=symmetric:false") == ("x", {"symmetric": False})
    assert parse_rule("x=symmetric:True") == ("x", {"symmetric": True})
    assert parse_policy({"a*": "skip", "b": {"bits": 3}}) == [("a*", {"skip": True}),
                                                              ("b", {"bits": 3})]


@pytest.mark.parametrize("bad, match", [
    ("nopattern", "PATTERN=SPEC"), ("=skip", "empty pattern"), ("x=bitz:3", "unknown option"),
    ("x=bits:three", "not a int"), ("x=symmetric:maybe", "not a bool"), ("x=bits", "key:value"),
    ("x=group_size:row", "group_size"),
])
def test_bad_rules(bad, match):
    with pytest.raises(InputError, match=match):
        parse_rule(bad)


def test_first_matching_rule_wins():
    rules = parse_policy(["fc1.*=bits:2", "fc*=bits:6", "*=skip"])
    d = {"bits": 4, "method": "kmeans"}
    assert plan_for("fc1.weight", rules, d)["bits"] == 2
    assert plan_for("fc2.weight", rules, d)["bits"] == 6
    assert plan_for("other", rules, d)["skip"] is True


def test_compress_follows_the_policy():
    model = vq.compress(EXAMPLE, method="kmeans", bits=4, min_elements=500, policy=[
        "fc1.weight=method:pq,bits:6,block_size:4",
        "fc2.weight=prune:0.8,bits:5",
        "fc3.*=skip"])
    assert model["fc1.weight"].method == "pq" and model["fc1.weight"].quantizer.n_bits == 6
    assert model["fc2.weight"].index_bits == 5 and model["fc2.weight"].quantizer.n_bits == 5
    assert model["fc3.weight"].method == "raw"
    with pytest.raises(InputError, match="fc1.weight.*prune"):
        vq.compress(EXAMPLE, policy=["fc1.weight=method:pq,prune:0.5"])


def test_process_pool_gives_the_same_file(tmp_path, monkeypatch):
    # a cold numba cache shared by workers started at the same moment
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba-cache"))
    opts = dict(method="kmeans", bits=4, min_elements=500, policy=["fc2.weight=prune:0.7"])
    serial = tmp_path / "serial.vqz"
    vq.compress(EXAMPLE, **opts).save(serial)
    with cf.ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        parallel = tmp_path / "parallel.vqz"
        vq.compress(EXAMPLE, executor=pool, **opts).save(parallel)
    assert serial.read_bytes() == parallel.read_bytes()


def test_warnings_from_worker_processes_reach_the_caller(tmp_path):
    src = tmp_path / "w.npz"
    np.savez(src, const=np.ones((40, 40), np.float32),
             mat=np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32))
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool, \
            pytest.warns(UserWarning, match="'const': W: 1 distinct value, .*stored raw"):
        model = vq.compress(str(src), executor=pool, method="kmeans", bits=4,
                            min_elements=16)
    assert model["const"].method == "raw" and model["mat"].method == "kmeans"


def test_executor_needs_a_path():
    with cf.ThreadPoolExecutor(1) as pool, pytest.raises(InputError, match="path"):
        vq.compress({"w": np.ones((40, 40), np.float32)}, executor=pool)


def test_same_file_for_any_numba_thread_count(tmp_path):
    """Byte-identical output across runs and NUMBA_NUM_THREADS (each a fresh process)."""
    import os
    import subprocess
    import sys
    outs = []
    for threads in ("1", "2", "2"):
        out = tmp_path / f"t{threads}-{len(outs)}.vqz"
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        subprocess.run([sys.executable, "-m", "vqcompress", "compress", EXAMPLE, str(out),
                        "--method", "pq", "--bits", "6", "--block-size", "4",
                        "--policy", "fc2.weight=method:kmeans,prune:0.6", "--json"],
                       env=env, check=True, capture_output=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]


def test_symmetric_uniform_is_gguf_q4_0_sized(tmp_path):
    """4-bit codes plus one float16 scale per 32 weights, no zero points: 4.5 bits/weight
    fixed-rate, and the grid is symmetric (the largest magnitude lands on -8 * scale)."""
    from vqcompress.cli import main as cli
    W = np.random.default_rng(2).normal(size=(64, 96)).astype(np.float32)
    m = vq.compress({"w": W}, method="uniform", bits=4, group_size=32, symmetric=True,
                    entropy="none")
    assert m["w"].nbytes * 8 / W.size == 4.5
    assert "zero_points" not in vq.container.tensor_parts(m["w"])
    np.save(tmp_path / "w.npy", W)
    cli(["compress", str(tmp_path / "w.npy"), str(tmp_path / "w.vqz"), "--method", "uniform",
         "--bits", "4", "--group-size", "32", "--symmetric", "--entropy", "none", "--json"])
    back = vq.load(tmp_path / "w.vqz")
    t = next(iter(back.tensors.values()))
    assert t.quantizer.symmetric
    np.testing.assert_array_equal(t.decompress(), m["w"].decompress())
