"""Tables stored by row groups: the most used rows (calibration.RowCounts) with one
setting, the others with another (policy option hot_rows)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vqcompress as vq
from vqcompress import calibration, container, nn
from vqcompress.errors import FormatError, InputError
from vqcompress.nn import Recorder

COLD = "t.weight#cold=method:pq,bits:6,block_size:8"
HOT = "t.weight=method:kmeans,bits:5,hot_rows:40"


def table(rows=300, dim=32, seed=0):
    return np.random.default_rng(seed).laplace(size=(rows, dim)).astype(np.float32)


def zipf_counts(rows=300, seed=0):
    ids = np.random.default_rng(seed).zipf(1.3, 5000) - 1
    return calibration.RowCounts().add(ids[ids < rows])


def test_row_counts_match_bincount_and_grow():
    c = calibration.RowCounts()
    c.add(np.array([[3, 1], [3, 0]])).add(np.array([7, 3], dtype=np.uint16))
    np.testing.assert_array_equal(c.counts, [1, 1, 0, 3, 0, 0, 0, 1])
    np.testing.assert_array_equal(c.for_rows(10, name="t")[8:], [0, 0])
    with pytest.raises(InputError, match="has 5"):
        c.for_rows(5, name="t")
    for bad in (np.array([0.5]), np.array([-1, 2])):
        with pytest.raises(InputError, match="ids"):
            calibration.RowCounts().add(bad)
    with pytest.raises(InputError, match="non-negative integers"):
        calibration.RowCounts(np.array([1.0, 2.0]))


def test_recorder_counts_ids_and_the_file_keeps_them(tmp_path):
    emb = nn.LUTEmbedding(vq.compress({"e.weight": table(50, 8)}, min_elements=0)["e.weight"])
    rec = Recorder()
    layer = rec.wrap({"e.weight": emb})["e.weight"]
    layer(np.array([[1, 2, 2]]))
    layer(np.array([49]))
    counts = rec.stats["e.weight"]
    assert isinstance(counts, calibration.RowCounts)
    np.testing.assert_array_equal(counts.for_rows(50, name="e")[[1, 2, 49, 0]], [1, 2, 1, 0])
    path = str(tmp_path / "c.safetensors")
    calibration.save(path, rec.stats)
    back = calibration.load(path)["e.weight"]
    np.testing.assert_array_equal(back.counts, counts.counts)


def ranked(counts):
    """Oracle for calibration.rank_rows: a sort on (-count, -looked-up rows among rows
    i-128 .. i+127, row)."""
    near = [np.count_nonzero(counts[max(0, i - 128): i + 128]) for i in range(counts.size)]
    return np.array(sorted(range(counts.size), key=lambda i: (-counts[i], -near[i], i)))


def test_rank_rows_orders_by_count_then_by_neighbours_then_by_row():
    # rows 600-699 looked up, row 10 too: among the never-seen rows, those near 600-699
    # come before those near row 10, which come before the rest (lower row first)
    counts = np.zeros(1000, np.int64)
    counts[600:700] = 1
    counts[650] = 5
    counts[10] = 2
    order = calibration.rank_rows(counts)
    np.testing.assert_array_equal(order, ranked(counts))
    assert order[0] == 650 and order[1] == 10 and set(order[2:101]) == set(range(600, 700)) - {650}
    assert order[101] == 572 and order[-1] == 999  # 572: the first to see all of 600-699
    for seed in range(5):
        c = np.random.default_rng(seed).poisson(0.3, size=700)
        np.testing.assert_array_equal(calibration.rank_rows(c), ranked(c))


def _compressed(W, counts, policy=(COLD, HOT), **kw):
    return vq.compress({"t.weight": W}, policy=list(policy),
                       calibration={"t.weight": counts}, **kw)


def test_hot_rows_are_the_most_used_and_each_member_is_its_rows_compressed_alone():
    W, counts = table(), zipf_counts()
    t = _compressed(W, counts)["t.weight"]
    assert t.method == "rows"
    n = counts.for_rows(300, name="t")
    hot = np.sort(ranked(n)[:40])
    np.testing.assert_array_equal(np.flatnonzero(t.groups == 0), hot)
    cold = np.setdiff1d(np.arange(300), hot)
    # oracle: each member is exactly what compressing its rows on their own gives
    alone_hot = vq.compress({"x": W[hot]}, method="kmeans", bits=5, min_elements=0)["x"]
    alone_cold = vq.compress({"x": W[cold]}, method="pq", bits=6, block_size=8,
                             min_elements=0)["x"]
    dense = t.decompress()
    np.testing.assert_array_equal(dense[hot], alone_hot.decompress())
    np.testing.assert_array_equal(dense[cold], alone_cold.decompress())
    err = ((dense - W) ** 2).sum(1)
    assert err[hot].mean() < 0.2 * err[cold].mean()
    assert vq.CompressedModel({"t.weight": t}).report()["tensors"][0]["setting"] == \
        "kmeans 5 | pq 6x8"


def test_round_trip_layers_and_honest_size(tmp_path):
    W, counts = table(), zipf_counts()
    b = np.random.default_rng(1).normal(size=300).astype(np.float32)
    model = vq.compress({"t.weight": W, "t.bias": b}, policy=[COLD, HOT],
                        calibration={"t.weight": counts})
    path = str(tmp_path / "m.vqz")
    size = model.save(path)
    assert size == container.file_size(model.tensors)
    back = vq.load(path)
    dense = model.decompress()["t.weight"]
    np.testing.assert_array_equal(back.decompress()["t.weight"], dense)
    assert back["t.weight"].nbytes == model["t.weight"].nbytes
    # a table: only the rows looked up
    emb = nn.load(path, embeddings=("t.*",))["t.weight"]
    ids = np.array([[0, 299, 5], [5, 5, 17]])
    np.testing.assert_array_equal(emb(ids), dense[ids])
    # a linear layer: every member computes its own output rows
    lin = nn.load(path, embeddings=())["t.weight"]
    for batch in (1, 3, 64):
        x = np.random.default_rng(batch).normal(size=(batch, 32)).astype(np.float32)
        ref = x.astype(np.float64) @ dense.T.astype(np.float64) + b
        np.testing.assert_allclose(lin(x), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_array_equal(lin.dense_weight(), dense)


def test_members_warnings_name_the_member():
    W = np.tile(np.float32([1, 2, 3, 4]), (300, 8))  # 4 distinct values, 1 distinct block
    with pytest.warns(UserWarning) as said:
        t = vq.compress({"t.weight": W}, policy=[COLD, HOT],
                        calibration={"t.weight": zipf_counts()})["t.weight"]
    text = [str(w.message) for w in said]
    assert any("'t.weight#hot': W: 4 distinct values, fewer than the 32" in m for m in text)
    assert any("'t.weight#cold': W: 1040 blocks of 8 hold 1 distinct vector, fewer than "
               "the 64" in m for m in text)
    np.testing.assert_array_equal(t.decompress(), W)


@settings(max_examples=15, deadline=None)
@given(rows=st.integers(2, 60), hot=st.integers(1, 70), seed=st.integers(0, 2**16),
       cold=st.sampled_from(["method:kmeans,bits:2", "skip", "method:uniform,bits:3"]))
def test_any_split_round_trips(tmp_path_factory, rows, hot, seed, cold):
    W = table(rows, 8, seed)
    counts = calibration.RowCounts(np.random.default_rng(seed).integers(0, 5, rows))
    model = _compressed(W, counts, policy=[f"t.weight#cold={cold}",
                                           f"t.weight=method:kmeans,bits:3,hot_rows:{hot}"],
                        min_elements=0)
    path = str(tmp_path_factory.mktemp("rows") / "m.vqz")
    model.save(path)
    back = vq.load(path)["t.weight"]
    assert back.method == model["t.weight"].method
    np.testing.assert_array_equal(back.decompress(), model["t.weight"].decompress())
    assert back.decompress().shape == (rows, 8)


def test_hot_rows_errors():
    W = table(40, 8)
    with pytest.raises(InputError, match="hot_rows needs the table's row counts"):
        vq.compress({"t.weight": W}, policy=[HOT])
    with pytest.raises(InputError, match="has 40"):
        _compressed(W, calibration.RowCounts(np.ones(41, np.int64)))
    with pytest.raises(InputError, match="hot_rows"):
        _compressed(W, zipf_counts(40), policy=[COLD, "t.weight=hot_rows:0"])
    with pytest.raises(InputError, match="hot_rows"):
        vq.compress({"t.weight": W}, target_bits_per_weight=3,
                    candidates=["method:kmeans,bits:3,hot_rows:4"])


def test_row_counts_without_hot_rows_are_unused():
    W = table(40, 8)
    a = vq.compress({"t.weight": W}, min_elements=0)["t.weight"].decompress()
    b = vq.compress({"t.weight": W}, min_elements=0,
                    calibration={"t.weight": zipf_counts(40)})["t.weight"].decompress()
    np.testing.assert_array_equal(a, b)


def test_reader_rejects_inconsistent_row_groups():
    from vqcompress.coding import streams
    from vqcompress.pipeline import CompressedTensor

    t = _compressed(table(), zipf_counts())["t.weight"]
    parts = dict(container.tensor_parts(t))
    rec = container.tensor_record(t, parts)

    def load(rec, parts):
        rec = {**rec, "crc": container.crc32(parts)}
        return container._from_parts(rec, parts, CompressedTensor, "t.weight", 1 << 30)

    assert np.array_equal(load(rec, parts).decompress(), t.decompress())
    more_hot = t.groups.copy()
    more_hot[np.flatnonzero(more_hot)[0]] = 0  # 41 rows claimed by a 40-row member
    bad = [
        (rec, {**parts, "groups": streams.encode_stream(more_hot, 1, t.coding)}, "rows"),
        ({**rec, "members": rec["members"][:1]}, parts, "two members"),
        (rec, {k: v for k, v in parts.items() if k != "groups"}, "'groups'"),
        (rec, {**parts, "2.codes": parts["0.codes"]}, "belong to no member"),
        ({**rec, "members": [rec, rec["members"][1]]}, parts, "cannot itself"),
    ]
    for r, p, match in bad:
        with pytest.raises(FormatError, match=match):
            load(r, p)


def test_cli_hot_rows_from_a_calibration_file(tmp_path):
    from vqcompress.cli import main

    W, counts = table(), zipf_counts()
    src, cal, out = (str(tmp_path / n) for n in ("w.safetensors", "c.safetensors", "m.vqz"))
    vq.io.save_weights(src, {"t.weight": W})
    calibration.save(cal, {"t.weight": counts})
    assert main(["compress", src, out, "--calibration", cal, "--policy", COLD,
                 "--policy", HOT, "--json"]) == 0
    np.testing.assert_array_equal(vq.load(out)["t.weight"].decompress(),
                                  _compressed(W, counts)["t.weight"].decompress())
