"""Sequential quantization (vqcompress.sequential) and the statistics it rests on: Stats
with reference inputs against numpy, Stats.target against least squares, the pipeline's
``correction`` option, requantize on a two-layer linear model, and the BERT recorder
against the plain one."""
import os

import numpy as np
import pytest

import vqcompress as vq
from vqcompress import InputError, calibration, sequential
from vqcompress.examples import minilm


def _pair(rng, n=3000, d=12, noise=0.3):
    """Anisotropic inputs R and a perturbed copy X (a quantized model's view of them)."""
    R = rng.standard_normal((n, d)) * np.geomspace(3, 0.1, d)
    return R + noise * rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.3, R


def test_stats_with_reference_accumulate_xtx_and_xtr_in_float64():
    rng = np.random.default_rng(0)
    X, R = _pair(rng, 2600)
    s = calibration.Stats(12)
    for a, b in ((0, 1), (1, 1500), (1500, 2600)):
        s.add(X[a:b].astype(np.float32), reference=R[a:b].astype(np.float32))
    X32, R32 = X.astype(np.float32).astype(np.float64), R.astype(np.float32).astype(np.float64)
    assert s.count == 2600
    np.testing.assert_allclose(s.xtx, X32.T @ X32, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(s.xtr, X32.T @ R32, rtol=1e-12, atol=1e-9)
    assert "with reference" in repr(s)
    assert calibration.Stats(12).add(X).xtr is None


def test_stats_reference_errors():
    X = np.ones((4, 3))
    with pytest.raises(InputError, match="every time or never"):
        calibration.Stats(3).add(X).add(X, reference=X)
    with pytest.raises(InputError, match="every time or never"):
        calibration.Stats(3).add(X, reference=X).add(X)
    with pytest.raises(InputError, match="diagonal"):
        calibration.Stats(3, diagonal=True).add(X, reference=X)
    with pytest.raises(InputError, match="reference shape"):
        calibration.Stats(3).add(X, reference=np.ones((3, 3)))
    with pytest.raises(InputError, match="NaN"):
        calibration.Stats(3).add(X, reference=np.full((4, 3), np.nan))
    with pytest.raises(InputError, match="square like"):
        calibration.Stats.from_xtx(np.eye(3), 4, xtr=np.ones((3, 2)))


def test_an_empty_add_with_a_reference_commits_to_nothing():
    X = np.ones((4, 3))
    s = calibration.Stats(3).add(np.ones((0, 3)), reference=np.ones((0, 3))).add(X)
    assert s.xtr is None and s.count == 4
    np.testing.assert_array_equal(s.xtx, X.T @ X)


def test_target_is_least_squares_toward_the_reference_output():
    rng = np.random.default_rng(1)
    X, R = _pair(rng)
    W = rng.standard_normal((5, 12))
    s = calibration.Stats(12).add(X, reference=R)
    best = np.linalg.lstsq(X, R @ W.T, rcond=None)[0].T  # argmin ||X Ŵᵀ - R Wᵀ||
    np.testing.assert_allclose(s.target(W, 1.0, damp=0.0), best, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(s.target(W, 0.5, damp=0.0), (W + best) / 2, rtol=1e-7,
                               atol=1e-9)
    assert s.target(W, 0.0) is W
    # with the reference equal to the inputs, damping or not, the target is W itself
    same = calibration.Stats(12).add(X, reference=X)
    np.testing.assert_allclose(same.target(W, 1.0), W, rtol=1e-12, atol=1e-12)


def test_save_load_keeps_the_reference(tmp_path):
    rng = np.random.default_rng(2)
    X, R = _pair(rng, 50, 4)
    stats = {"a.weight": calibration.Stats(4).add(X, reference=R),
             "b.weight": calibration.Stats(4).add(X)}
    path = str(tmp_path / "cal.safetensors")
    calibration.save(path, stats)
    back = calibration.load(path)
    np.testing.assert_array_equal(back["a.weight"].xtr, stats["a.weight"].xtr)
    np.testing.assert_array_equal(back["a.weight"].xtx, stats["a.weight"].xtx)
    assert back["b.weight"].xtr is None


def _output_error(W_hat, W, X, R):
    return float(np.sum((X @ W_hat.T - R @ W.T) ** 2))


@pytest.mark.parametrize("method", ["kmeans", "pq"])
def test_correction_moves_the_output_toward_the_reference(method):
    rng = np.random.default_rng(3)
    X, R = _pair(rng, 4000, 16, noise=0.6)
    W = rng.standard_normal((24, 16)).astype(np.float32)
    s = calibration.Stats(16).add(X, reference=R)
    opts = dict(method=method, bits=3 if method == "kmeans" else 6, block_size=2)
    err = {}
    for c in (0.0, 1.0):
        m = vq.compress({"w": W}, calibration={"w": s}, correction=c, min_elements=0, **opts)
        err[c] = _output_error(m.tensors["w"].decompress(), W, X, R)
    plain = vq.compress({"w": W}, calibration={"w": calibration.Stats(16).add(X)},
                        min_elements=0, **opts)
    # correction 0 ignores the reference: the same codes as without one
    np.testing.assert_array_equal(plain.tensors["w"].decompress(),
                                  vq.compress({"w": W}, calibration={"w": s}, correction=0.0,
                                              min_elements=0, **opts).tensors["w"].decompress())
    assert err[1.0] < 0.8 * err[0.0]
    with pytest.raises(InputError, match="correction"):
        vq.compress({"w": W}, calibration={"w": s}, correction=1.5, min_elements=0)


def _two_layer(rng, d_in=24, hidden=32, out=16):
    W1 = rng.standard_normal((hidden, d_in)).astype(np.float32)
    W2 = rng.standard_normal((out, hidden)).astype(np.float32)
    X0 = (rng.standard_normal((3000, d_in)) * np.geomspace(4, 0.05, d_in)).astype(np.float32)
    return {"l1.weight": W1, "l2.weight": W2}, X0


def _record(X0, weights):
    def record(current, names):
        X = X0 if names == ["l1.weight"] else X0 @ current["l1.weight"].T
        R = X0 if names == ["l1.weight"] else X0 @ weights["l1.weight"].T
        return {n: calibration.Stats(X.shape[1]).add(X, reference=R) for n in names}
    return record


def test_requantize_lowers_the_models_output_error_and_keeps_settings():
    rng = np.random.default_rng(4)
    weights, X0 = _two_layer(rng)
    stats = {n: calibration.Stats(w.shape[1]).add(X0 if n == "l1.weight" else
                                                   X0 @ weights["l1.weight"].T)
             for n, w in weights.items()}
    opts = dict(method="kmeans", bits=2, min_elements=0)
    first = vq.compress(weights, calibration=stats, **opts)
    again = sequential.requantize(first, weights, [["l1.weight"], ["l2.weight"]],
                                  _record(X0, weights), correction=1.0, **opts)

    def out_err(m):
        d = m.decompress()
        return float(np.sum((X0 @ d["l1.weight"].T @ d["l2.weight"].T
                             - X0 @ weights["l1.weight"].T @ weights["l2.weight"].T) ** 2))
    assert out_err(again) < 0.9 * out_err(first)
    for n in weights:
        assert again.tensors[n].method == "kmeans" and again.tensors[n].quantizer.n_bits == 2


def test_requantize_keeps_an_allocations_choices_and_its_budget(tmp_path):
    rng = np.random.default_rng(5)
    weights, X0 = _two_layer(rng, 64, 128, 96)
    stats = {n: calibration.Stats(w.shape[1]).add(X0 if n == "l1.weight" else
                                                   X0 @ weights["l1.weight"].T)
             for n, w in weights.items()}
    opts = dict(target_bits_per_weight=4.0, min_elements=0,
                candidates=["method:kmeans,bits:2", "method:kmeans,bits:4",
                            "method:pq,block_size:2,bits:6"])
    first = vq.compress(weights, calibration=stats, **opts)
    again = sequential.requantize(first, weights, [["l1.weight"], ["l2.weight"]],
                                  _record(X0, weights), **opts)
    for n in weights:
        a, b = first.tensors[n], again.tensors[n]
        assert (a.method, a.quantizer.n_bits) == (b.method, b.quantizer.n_bits)
    n_values = sum(w.size for w in weights.values())
    first_bytes = first.save(str(tmp_path / "first.vqz"))
    assert again.save(str(tmp_path / "again.vqz")) * 8 <= 4.0 * n_values
    # a budget the new codes cannot meet sends tensors back to the first pass's codes
    tight = {**opts, "target_bits_per_weight": first_bytes * 8 / n_values}
    kept = sequential.requantize(first, weights, [["l1.weight"], ["l2.weight"]],
                                 _record(X0, weights), **tight)
    assert kept.save(str(tmp_path / "kept.vqz")) <= first_bytes


@pytest.mark.parametrize("policy", ["l1.weight=method:kmeans,bits:3",
                                    {"l1.weight": "method:kmeans,bits:3"},
                                    [("l1.weight", {"method": "kmeans", "bits": 3})]])
def test_requantize_takes_the_policy_in_every_form(policy):
    rng = np.random.default_rng(9)
    weights, X0 = _two_layer(rng)
    opts = dict(method="kmeans", bits=2, min_elements=0, policy=policy)
    first = vq.compress(weights, **opts)
    again = sequential.requantize(first, weights, [["l1.weight"], ["l2.weight"]],
                                  _record(X0, weights), **opts)
    assert [again.tensors[n].quantizer.n_bits for n in ("l1.weight", "l2.weight")] == [3, 2]


def test_requantize_errors():
    rng = np.random.default_rng(6)
    weights, X0 = _two_layer(rng)
    first = vq.compress(weights, method="kmeans", bits=2, min_elements=0)
    with pytest.raises(InputError, match="not in the model"):
        sequential.requantize(first, weights, [["nope"]], _record(X0, weights))
    with pytest.raises(InputError, match="more than one group"):
        sequential.requantize(first, weights, [["l1.weight"], ["l1.weight"]],
                              _record(X0, weights))
    with pytest.raises(InputError, match="reference"):
        sequential.requantize(first, weights, [["l1.weight"]],
                              lambda cur, names: {n: calibration.Stats(24).add(X0)
                                                  for n in names})


TINY = minilm.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=64,
                         max_position_embeddings=40)


def test_bert_recorder_matches_the_plain_recorder():
    weights = minilm.random_bert(TINY, seed=3, std=0.2)
    rng = np.random.default_rng(7)
    words = [" ".join(f"w{int(i)}" for i in rng.integers(0, 50, rng.integers(3, 12)))
             for _ in range(20)]
    tok = _ToyTokenizer()
    rec = minilm.SequentialRecorder(weights, words, tokenizer=tok, config=TINY, batch_size=8)
    plain = minilm.calibration_stats(minilm.BertEncoder.from_weights(weights, TINY), words,
                                     tokenizer=tok)
    quant = {**weights, "embeddings.word_embeddings.weight":
             weights["embeddings.word_embeddings.weight"] * 0.9}
    for group in minilm.encoder_groups(TINY):
        got = rec(weights, group)  # the model as it is: X = R, and the plain statistics
        for n in group:
            np.testing.assert_allclose(got[n].xtx, plain[n].xtx, rtol=1e-5, atol=1e-3)
            np.testing.assert_allclose(got[n].xtr, got[n].xtx, rtol=1e-12)
    rec = minilm.SequentialRecorder(weights, words, tokenizer=tok, config=TINY, batch_size=8)
    got = rec(quant, minilm.encoder_groups(TINY)[0])  # a changed table: X moves, R does not
    n = minilm.encoder_groups(TINY)[0][0]
    assert not np.allclose(got[n].xtx, plain[n].xtx)
    back = calibration.Stats.from_xtx(got[n].xtx, got[n].count, xtr=got[n].xtr)
    assert back.count == plain[n].count


def test_hidden_states_from_a_given_state():
    weights = minilm.random_bert(TINY, seed=3, std=0.2)
    enc = minilm.BertEncoder.from_weights(weights, TINY)
    ids, mask = minilm.pad(_ToyTokenizer()(["w1 w2 w3", "w4 w5"]))
    x0 = enc.hidden_states(ids, mask, stop=0)  # the embeddings' output
    np.testing.assert_array_equal(enc.hidden_states(ids, mask, x=x0),
                                  enc.hidden_states(ids, mask))
    with pytest.raises(InputError, match="needs x"):
        enc.hidden_states(ids, mask, start=1)


class _ToyTokenizer:
    """Ids from 'w<k>' words (no tokenizer files needed): [CLS] = 1, then k + 2."""

    def __call__(self, sentences):
        return [np.array([1] + [int(w[1:]) + 2 for w in s.split()], np.int64)
                for s in sentences]


def test_cli_reads_references_from_the_calibration_file(tmp_path):
    from vqcompress.cli import main

    rng = np.random.default_rng(8)
    X, R = _pair(rng, 2000, 16, noise=0.6)
    W = rng.standard_normal((64, 16)).astype(np.float32)
    src = str(tmp_path / "w.safetensors")
    vq.io.save_weights(src, {"w": W})
    cal = str(tmp_path / "cal.safetensors")
    s = calibration.Stats(16).add(X, reference=R)
    calibration.save(cal, {"w": s})
    out = str(tmp_path / "m.vqz")
    assert main(["compress", src, out, "--method", "kmeans", "--bits", "3", "--calibration",
                 cal, "--correction", "0.8", "--json"]) == 0
    direct = vq.compress({"w": W}, method="kmeans", bits=3, calibration={"w": s},
                         correction=0.8)
    np.testing.assert_array_equal(vq.load(out)["w"].decompress(), direct["w"].decompress())
    assert main(["compress", src, str(tmp_path / "bad.vqz"), "--calibration", cal,
                 "--correction", "2"]) != 0
    assert not os.path.exists(tmp_path / "bad.vqz")
