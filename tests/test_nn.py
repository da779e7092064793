"""Layers that compute from codes, against x @ dense_weight().T + b in float64."""
import threading

import numpy as np
import pytest

import vqcompress as vq
from vqcompress import FormatError, InputError, nn
from vqcompress._kernels import lut as nn_lut
from vqcompress.examples.digits import forward, load_data, load_weights

SETTINGS = {
    "pq": dict(method="pq", bits=6, block_size=4),
    "pq8": dict(method="pq", bits=8, block_size=8),
    "rq": dict(method="rq", bits=4, block_size=4, stages=2),
    "kmeans": dict(method="kmeans", bits=4),
    "sparse": dict(method="kmeans", bits=5, prune=0.9),  # 10% kept: held as sparse rows
    "uniform": dict(method="uniform", bits=4, group_size=16),
}


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    """One 37-input layer (not a multiple of any block size) per setting, with a bias."""
    r = np.random.default_rng(0)
    w = {"l.weight": r.normal(size=(300, 37)).astype(np.float32),
         "l.bias": r.normal(size=300).astype(np.float32)}
    out = {}
    for key, opts in SETTINGS.items():
        p = tmp_path_factory.mktemp(key) / "m.vqz"
        vq.compress(w, min_elements=16, **opts).save(p)
        out[key] = nn.load(p)["l.weight"]
    return out


def _ref(layer, x):
    return x.astype(np.float64) @ layer.dense_weight().T.astype(np.float64) + layer.bias


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("key", SETTINGS)
@pytest.mark.parametrize("batch", [1, 2, 7, 64])
@pytest.mark.parametrize("path", ["lookup", "tiled"])
def test_layer_matches_dense(layers, key, batch, path):
    layer = layers[key]
    saved = layer.crossover
    layer.crossover = 1 << 30 if path == "lookup" else 1
    try:
        x = np.random.default_rng(batch).normal(size=(batch, 37)).astype(np.float32)
        y = layer(x)
        assert y.shape == (batch, 300) and y.dtype == np.float32
        assert _rel(y, _ref(layer, x)) < 1e-5
    finally:
        layer.crossover = saved


def test_default_crossover_follows_the_measured_steps(monkeypatch):
    assert nn.default_crossover("pq", 384 / 256) == 16
    assert nn.default_crossover("rq", 384 / 512) == 8
    assert nn.default_crossover("pq", 1536 / 256) == 1 << 30
    assert nn.default_crossover("rq", 4096 / 512) == 32
    assert nn.default_crossover("rq", 1536 / 512) == 32
    assert nn.default_crossover("kmeans", 4096 / 16) == 8
    monkeypatch.setitem(nn.CROSSOVER, "pq", ((0, 16), (2, 8)))
    assert nn.default_crossover("pq", 1.5) == 16
    assert nn.default_crossover("pq", 2) == 8
    w = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)
    layer = nn.LUTLinear(vq.compress({"w": w}, method="pq", bits=4, block_size=8)["w"])
    assert layer.crossover == 8  # 64 rows, 16 codewords: 4 rows per table entry


def test_only_pq_and_rq_look_up_batch_major(layers):
    for key in ("kmeans", "sparse"):
        assert layers[key]._lookup_path(64) == "lookup"
    assert layers["sparse"].path(64) == "lookup"  # sparse layers keep their gather
    assert layers["uniform"].path(1) == "tiled"


def test_l1_size_read_from_sysfs(tmp_path):
    from vqcompress.nn.layers import _l1_data_bytes
    for i, (level, kind, size) in enumerate([("1", "Instruction", "64K"), ("1", "Data", "48K"),
                                             ("2", "Unified", "2048K")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (d / name).write_text(value + "\n")
    assert _l1_data_bytes(str(tmp_path)) == 48 * 1024
    assert _l1_data_bytes(str(tmp_path / "none"), default=12345) == 12345


@pytest.mark.parametrize("key", SETTINGS)
def test_three_d_inputs_and_odd_widths(layers, key):
    layer = layers[key]
    x = np.random.default_rng(5).normal(size=(2, 5, 37)).astype(np.float32)
    y = layer(x)
    assert y.shape == (2, 5, 300)
    assert _rel(y.reshape(10, 300), _ref(layer, x.reshape(10, 37))) < 1e-5


def test_dense_weight_is_the_decompressed_weight(tmp_path):
    r = np.random.default_rng(1)
    w = {"a.weight": r.normal(size=(64, 40)).astype(np.float32)}
    p = tmp_path / "m.vqz"
    vq.compress(w, method="pq", bits=6, block_size=8).save(p)
    np.testing.assert_array_equal(nn.load(p)["a.weight"].dense_weight(),
                                  vq.load(p).decompress()["a.weight"])


@pytest.mark.parametrize("quantizer", [
    vq.ProductQuantizer(8, 5, random_state=0),
    vq.ProductQuantizer(8, 5, codebook_per_block=True, random_state=0),
    vq.ProductQuantizer(4, 5, codebook_per_block=True, random_state=0),
    vq.ResidualQuantizer(8, 4, n_stages=3, random_state=0),
    vq.ResidualQuantizer(8, 4, n_stages=2, random_state=0),
    vq.ResidualQuantizer(8, 3, n_stages=4, random_state=0, max_iter=3),
    vq.ResidualQuantizer(8, 2, n_stages=5, random_state=0, max_iter=3),
    vq.KMeansQuantizer(4),
    vq.KMeansQuantizer(3),
    vq.KMeansQuantizer(5),
    vq.KMeansQuantizer(9),
], ids=["pq8", "pq8-per-block", "pq4-per-block", "rq8x3", "rq8x2", "rq8x4", "rq8x5",
        "kmeans4", "kmeans3", "kmeans5", "kmeans9"])
@pytest.mark.parametrize("n_in", [40, 43, 48])
def test_decoded_rows_are_the_quantizers_decode(quantizer, n_in, monkeypatch):
    """The layer's row decoder (tiled path, dense_weight), serial and parallel, against the
    quantizer's own decode, for shared and per-block codebooks, whole and cropped last
    blocks, residual stages (2-4 in vectors, 5 by the scalar tail's loop), scalar codes in 8 and 16 bits (a codebook of 16 or fewer in a
    register, of 32 in registers 32 codes at a time, larger ones by gathers of 16, and a
    scalar tail); and the lookup path against that independent decode."""
    w = np.random.default_rng(n_in).normal(size=(50, n_in)).astype(np.float32)
    codes = quantizer.fit_encode(w)
    t = vq.CompressedTensor.from_codes("w", quantizer, codes)
    layer = nn.LUTLinear(t)
    want = quantizer.decode(codes)
    np.testing.assert_array_equal(layer.dense_weight(), want)
    monkeypatch.setattr(nn.layers, "PARALLEL_WORK", 1)
    np.testing.assert_array_equal(layer.dense_weight(), want)
    x = np.random.default_rng(1).normal(size=(3, n_in)).astype(np.float32)
    assert _rel(layer(x), x.astype(np.float64) @ want.T.astype(np.float64)) < 1e-5


@pytest.mark.parametrize("key", ["pq", "rq", "kmeans", "sparse"])
def test_mlp_from_vqz_predicts_like_the_dense_model(tmp_path, key):
    p = tmp_path / "mlp.vqz"
    vq.compress(load_weights(), min_elements=500, **SETTINGS[key]).save(p)
    layers = nn.load(p)
    dense = vq.load(p).decompress()
    _, _, X, _ = load_data()
    for batch in (1, 64):
        h = X[:batch]
        for i, name in enumerate(("fc1.weight", "fc2.weight", "fc3.weight")):
            h = layers[name](h)
            h = np.maximum(h, 0) if i < 2 else h
        np.testing.assert_array_equal(h.argmax(1), forward(dense, X[:batch]).argmax(1))


def test_bad_input(layers):
    layer = layers["pq"]
    with pytest.raises(InputError, match="last dimension"):
        layer(np.ones((2, 36), np.float32))
    with pytest.raises(InputError, match="floating point"):
        layer(np.ones((2, 37), np.int64))
    x = np.ones((3, 37), np.float32)
    x[1, 4] = np.nan
    for key in SETTINGS:  # NaN propagates to its rows, no crash
        y = layers[key](x)
        assert np.isfinite(y[[0, 2]]).all()
        if key == "sparse":  # pruned weights are absent: only rows keeping input 4 see it
            touched = layers[key].dense_weight()[:, 4] != 0
            np.testing.assert_array_equal(np.isnan(y[1]), touched)
        else:
            assert np.isnan(y[1]).all()


def test_codes_past_the_codebook_are_rejected_at_load(tmp_path):
    from vqz_mutations import get_records, join, set_records, split
    p = tmp_path / "m.vqz"
    vq.compress({"l.weight": np.random.default_rng(0).normal(size=(64, 32)).astype(
        np.float32)}, method="pq", bits=4, block_size=4).save(p)
    head, body = split(p.read_bytes())
    rec = get_records(head)
    rec["l.weight"]["params"]["n_bits"] = 5  # codes could now reach past 16 codewords
    set_records(head, rec)
    p.write_bytes(join(head, body))
    with pytest.raises(FormatError):
        nn.load(p)


def test_memory_is_codes_codebooks_and_one_tile(tmp_path):
    """A layer holds its codes and codebooks; the tiled path decodes into a buffer of the
    calling thread's, shared by every layer, smaller than any one dense weight."""
    r = np.random.default_rng(2)
    w = {"big.weight": r.normal(size=(1024, 512)).astype(np.float32),
         "small.weight": r.normal(size=(300, 384)).astype(np.float32)}
    p = tmp_path / "m.vqz"
    vq.compress(w, method="pq", bits=8, block_size=8).save(p)
    layers = nn.load(p)
    layer = layers["big.weight"]
    layer(np.ones((1, 512), np.float32))
    books = layer.books.base.nbytes + layer.books_t.nbytes  # the aligned copy's buffer
    assert layer.books.ctypes.data % 64 == 0 and layer.books.base.nbytes == layer.books.nbytes + 64
    assert layer.nbytes == layer.codes.nbytes + books  # lookup: no tile
    layer(np.ones((64, 512), np.float32))  # 4 rows per table entry: a batch-major lookup
    assert layer.nbytes == layer.codes.nbytes + books
    assert [layer.path(b) for b in (1, 3, 4, 64)] == ["lookup"] * 2 + ["batch lookup"] * 2
    assert layers["small.weight"].path(1) == "codewords"  # 300 rows, 256 entries
    assert (layer.tile_rows, layers["small.weight"].tile_rows) == (576, 256)
    seen = []

    def run():  # in a thread of its own, whose buffer starts empty
        seen.append(nn.layers.tile_buffer_nbytes())
        for m in layers.values():
            m.crossover = 1
            m(np.ones((64, m.in_features), np.float32))
        seen.append(nn.layers.tile_buffer_nbytes())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [0, 576 * 512 * 4]  # the larger of the two layers' tiles
    assert seen[1] < 1024 * 512 * 4 / 1.7
    for m in layers.values():
        assert m.nbytes == m.codes.nbytes + m.books.base.nbytes + m.books_t.nbytes


def test_threads_calling_tiled_layers_at_once_get_their_own_buffer(layers):
    """The tile buffer is per thread: two threads running tiled layers at the same time
    (numpy's BLAS lets go of the GIL) each get their own products."""
    layer = layers["kmeans"]
    xs = [np.random.default_rng(s).normal(size=(64, 37)).astype(np.float32) for s in (0, 1)]
    want = [_ref(layer, x) for x in xs]
    bad = []

    def run(i):
        for _ in range(200):
            if _rel(layer._tiled(xs[i]) + layer.bias, want[i]) > 1e-5:
                bad.append(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


def test_tile_rows_follow_the_width_and_stay_under_the_layer():
    assert nn.layers.default_tile_rows(1536, 384) == 768
    assert nn.layers.default_tile_rows(4096, 4096) == 256
    assert nn.layers.default_tile_rows(384, 384) == 256
    assert nn.layers.default_tile_rows(200, 37) == 100
    assert nn.layers.default_tile_rows(1, 8) == 1


@pytest.mark.parametrize("key", ["pq", "kmeans", "uniform", "sparse"])
def test_embedding_decodes_looked_up_rows(tmp_path, key):
    r = np.random.default_rng(3)
    table = r.normal(size=(500, 24)).astype(np.float32)
    p = tmp_path / "e.vqz"
    vq.compress({"tok.embed.weight": table}, min_elements=16, **SETTINGS[key]).save(p)
    emb = nn.load(p)["tok.embed.weight"]
    assert isinstance(emb, nn.LUTEmbedding)
    ids = np.array([[3, 499, 3], [0, 7, 12]])
    out = emb(ids)
    assert out.shape == (2, 3, 24)
    np.testing.assert_allclose(out, emb.dense_weight()[ids], rtol=1e-6, atol=1e-6)
    with pytest.raises(InputError, match="ids"):
        emb(np.array([500]))
    with pytest.raises(InputError, match="integer"):
        emb(np.array([1.0]))


@pytest.mark.parametrize("opts", [dict(method="pq", bits=8, block_size=8),
                                  dict(method="rq", bits=8, block_size=8, stages=3),
                                  dict(method="pq", bits=4, block_size=8)])
def test_lookup_over_many_position_chunks(opts):
    """403 inputs: 51 blocks (the last 3 wide), so several chunks of positions at 256
    codewords, the last one partial; residual stages stay with their block; 16 codewords
    take the narrow table kernel.  Against float64, and the same bits
    whatever the split of rows between tasks."""
    r = np.random.default_rng(7)
    t = vq.compress({"w": r.normal(size=(70, 403)).astype(np.float32)}, **opts)["w"]
    bias = r.normal(size=70).astype(np.float32)
    layer = nn.LUTLinear(t, bias, crossover=1 << 30)
    assert layer.codes.shape[0] > 2 or opts["bits"] == 4  # 16 codewords: one chunk holds all
    w = layer.dense_weight().astype(np.float64)
    for batch in (1, 3):
        x = r.normal(size=(batch, 403)).astype(np.float32)
        y = layer._lookup(x, "lookup")
        assert _rel(y, x.astype(np.float64) @ w.T + bias) < 1e-5
        for tasks in (1, 2, 5):
            out = nn_lut.lookup_parallel(x, layer.books_t, layer.per_block, layer.stages,
                                         layer.codes, bias, tasks)
            np.testing.assert_array_equal(out[:, :70], y)


@pytest.mark.parametrize("method", ["pq", "rq"])
@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_lookup_with_codebooks_narrower_than_a_vector(method, bits):
    """2 to 8 codewords (fewer than the 16 the table kernel builds at a time) and 32 (a
    multiple of 16, not of 64), in both lookups, against float64."""
    r = np.random.default_rng(bits)
    w = r.normal(size=(40, 64)).astype(np.float32)
    t = vq.compress({"w": w}, method=method, bits=bits, block_size=4,
                    **({"stages": 2} if method == "rq" else {}))["w"]
    assert t.quantizer.codebooks_.shape[1] == 1 << bits
    layer = nn.LUTLinear(t, crossover=1 << 30)
    ref = layer.dense_weight().astype(np.float64)
    for batch in (1, 5):
        x = r.normal(size=(batch, 64)).astype(np.float32)
        for path in ("lookup", "batch lookup"):
            y = layer._lookup(x, path)
            assert _rel(y, x.astype(np.float64) @ ref.T) < 1e-5


@pytest.mark.parametrize("quantizer", [
    vq.ProductQuantizer(8, 8, random_state=0, max_iter=3),
    vq.ProductQuantizer(8, 6, codebook_per_block=True, random_state=0, max_iter=3),
    vq.ResidualQuantizer(8, 8, n_stages=3, beam_size=1, random_state=0, max_iter=3),
    vq.ProductQuantizer(4, 4, random_state=0, max_iter=3),
], ids=["pq8", "pq6-per-block", "rq8x3", "pq4"])
def test_batch_major_lookup(quantizer):
    """The lookup whose tables hold 8 inputs per entry: batches that fill no block of 8,
    one, and several plus a part; 403 inputs (several chunks of positions, a cropped last
    block); against float64, the same bits from the serial kernel and from any number of
    tasks, and close to the one-table-per-input lookup."""
    r = np.random.default_rng(3)
    w = r.normal(size=(70, 403)).astype(np.float32)
    t = vq.CompressedTensor.from_codes("w", quantizer, quantizer.fit_encode(w))
    bias = r.normal(size=70).astype(np.float32)
    layer = nn.LUTLinear(t, bias, crossover=1 << 30)
    w = layer.dense_weight().astype(np.float64)
    for batch in (1, 5, 8, 19):
        x = r.normal(size=(batch, 403)).astype(np.float32)
        y = layer._lookup(x, "batch lookup")
        assert _rel(y, x.astype(np.float64) @ w.T + bias) < 1e-5
        assert _rel(y, layer._lookup(x, "lookup")) < 1e-6
        for tasks in (0, 1, 2, 5):
            args = (x, layer.books, layer.per_block, layer.stages, layer.codes, bias)
            out = nn_lut.lookup_batch_parallel(*args, tasks) if tasks else \
                nn_lut.lookup_batch(*args)
            np.testing.assert_array_equal(out[:, :70], y)


@pytest.mark.parametrize("quantizer", [
    vq.ProductQuantizer(8, 8, random_state=0, max_iter=3),
    vq.ProductQuantizer(8, 6, codebook_per_block=True, random_state=0, max_iter=3),
    vq.ProductQuantizer(8, 9, random_state=0, max_iter=2),
    vq.ResidualQuantizer(8, 8, n_stages=2, beam_size=1, random_state=0, max_iter=3),
    vq.ResidualQuantizer(8, 4, n_stages=3, beam_size=1, random_state=0, max_iter=3),
    vq.ResidualQuantizer(8, 9, n_stages=4, beam_size=1, random_state=0, max_iter=2),
], ids=["pq8", "pq6-per-block", "pq9-uint16", "rq8x2", "rq4x3", "rq9x4-uint16"])
def test_codewords_kernel(quantizer):
    """PQ/RQ from the codewords, no tables (few rows per table entry, batch below 8): 403
    inputs (several chunks of positions, a cropped last block), 1 to 4 stages, 8- and
    16-bit codes, a codebook per block; against float64, the same bits from the serial
    kernel and from any number of tasks, close to the tables' lookup; a NaN input reaches
    every row, as in the dense product."""
    r = np.random.default_rng(5)
    w = r.normal(size=(70, 403)).astype(np.float32)
    t = vq.CompressedTensor.from_codes("w", quantizer, quantizer.fit_encode(w))
    bias = r.normal(size=70).astype(np.float32)
    layer = nn.LUTLinear(t, bias)
    assert layer.path(1) == layer.path(3) == "codewords"
    assert layer.books.ctypes.data % 64 == 0
    w = layer.dense_weight().astype(np.float64)
    for batch in (1, 2, 3):
        x = r.normal(size=(batch, 403)).astype(np.float32)
        y = layer(x)
        assert _rel(y, x.astype(np.float64) @ w.T + bias) < 1e-5
        assert _rel(y, layer._lookup(x, "lookup")) < 1e-6
        args = (x, layer.books, layer.per_block, layer.stages, layer.codes, bias)
        np.testing.assert_array_equal(nn_lut.codeword_rows(*args)[:, :70], y)
        for tasks in (1, 2, 5):
            np.testing.assert_array_equal(nn_lut.codeword_rows_parallel(*args, tasks)[:, :70], y)
    x[0, 100] = np.nan
    assert np.isnan(layer(x)[0]).all() and np.isfinite(layer(x)[1:]).all()


def test_codewords_only_where_the_tables_cost_more():
    """Many rows per table entry, blocks other than 8 wide or more than 4 stages: the
    tables' lookup, batch-major from batch 4; the codewords up to batch 7, then the
    batch-major lookup (or tiles, from the crossover)."""
    r = np.random.default_rng(6)

    def layer(out, q):
        w = r.normal(size=(out, 64)).astype(np.float32)
        return nn.LUTLinear(vq.CompressedTensor.from_codes("w", q, q.fit_encode(w)))

    pq = dict(random_state=0, max_iter=1)
    assert layer(31, vq.ProductQuantizer(8, 4, **pq)).path(1) == "codewords"  # 1.9 rows/entry
    assert layer(32, vq.ProductQuantizer(8, 4, **pq)).path(1) == "lookup"  # 2 rows per entry
    assert layer(8, vq.ProductQuantizer(4, 4, **pq)).path(1) == "lookup"  # 4-wide blocks
    rq5 = vq.ResidualQuantizer(8, 2, n_stages=5, beam_size=1, **pq)
    assert layer(8, rq5).path(1) == "lookup"
    assert layer(32, vq.ProductQuantizer(8, 4, **pq)).path(4) == "batch lookup"
    small = layer(8, vq.ProductQuantizer(8, 4, **pq))  # 0.5 rows per entry: tiled from 16
    assert [small.path(b) for b in (7, 8, 16)] == ["codewords", "batch lookup", "tiled"]
    rq = layer(8, vq.ResidualQuantizer(8, 4, n_stages=2, beam_size=1, **pq))  # from 8
    assert [rq.path(b) for b in (7, 8)] == ["codewords", "tiled"]


def test_batch_major_lookup_over_many_rows():
    """More rows than one task takes (ROW_BLOCKS_MAX blocks of 16), so the rows are split
    into ranges even on one thread; a batch of 9 leaves 7 of the second block's 8 lanes
    empty."""
    r = np.random.default_rng(4)
    rows = nn_lut.ROW_BLOCKS_MAX * 16 + 37
    w = r.normal(size=(rows, 16)).astype(np.float32)
    layer = nn.LUTLinear(vq.compress({"w": w}, method="pq", bits=4, block_size=8)["w"])
    x = r.normal(size=(9, 16)).astype(np.float32)
    y = layer._lookup(x, "batch lookup")
    assert _rel(y, x.astype(np.float64) @ layer.dense_weight().T.astype(np.float64)) < 1e-5
    out = nn_lut.lookup_batch(x, layer.books, layer.per_block, layer.stages, layer.codes,
                              np.zeros(0, np.float32))
    np.testing.assert_array_equal(out[:, :rows], y)


def test_chunk_codes_layout():
    codes = np.arange(35 * 5, dtype=np.uint16).reshape(35, 5)  # 35 rows, 5 positions
    c = nn.layers.chunk_codes(codes, 2)
    assert c.shape == (3, 3, 2, 16)
    for o in range(35):
        for p in range(5):
            assert c[p // 2, o // 16, p % 2, o % 16] == codes[o, p]
    assert not c[2, :, 1].any() and not c[:, 2, :, 3:].any()  # padding is code 0


def test_two_stage_rows_across_chunks_of_positions(monkeypatch):
    """Two residual stages of 256 codewords over 203 inputs: 52 code positions, in several
    chunks (each holds whole blocks, so a block's two codes share one), and a cropped last
    block.  The row decoder, serial and parallel, for every row and for rows out of order,
    against the quantizer's decode; the tiled path and the lookup against float64."""
    r = np.random.default_rng(7)
    w = r.normal(size=(37, 203)).astype(np.float32)
    q = vq.ResidualQuantizer(8, 8, n_stages=2, beam_size=1, random_state=0, max_iter=3)
    codes = q.fit_encode(w)
    layer = nn.LUTLinear(vq.CompressedTensor.from_codes("w", q, codes), crossover=1 << 30)
    assert layer.codes.shape[0] > 1  # more than one chunk of positions
    want = q.decode(codes)
    np.testing.assert_array_equal(layer.dense_weight(), want)
    rows = np.array([36, 0, 17, 16, 5])
    np.testing.assert_array_equal(layer._decode_rows(rows), want[rows])
    monkeypatch.setattr(nn.layers, "PARALLEL_WORK", 1)
    np.testing.assert_array_equal(layer.dense_weight(), want)
    x = r.normal(size=(3, 203)).astype(np.float32)
    ref = x.astype(np.float64) @ want.T.astype(np.float64)
    assert _rel(layer._tiled(x), ref) < 1e-5
    assert _rel(layer._lookup(x), ref) < 1e-5


@pytest.mark.parametrize("bits", [3, 4, 5, 9])
def test_scalar_codes_times_inputs_serial_and_parallel_alike(bits):
    """k-means codes (8 entries padded to a register's 16, 16 in registers, 32 in two
    sets of byte planes, 512 by gathers in 16-bit codes) over 203 inputs (12 groups of 16 and a tail of 11), 70 rows
    (a part chunk of rows): the serial and parallel kernels give the same bits, from the
    bias, close to float64; a NaN input reaches every row of its input only."""
    r = np.random.default_rng(bits)
    w = r.normal(size=(70, 203)).astype(np.float32)
    q = vq.KMeansQuantizer(bits)
    layer = nn.LUTLinear(vq.CompressedTensor.from_codes("w", q, q.fit_encode(w)),
                         r.normal(size=70).astype(np.float32))
    assert layer.codes.dtype == (np.uint16 if bits > 8 else np.uint8)
    ref = layer.dense_weight().astype(np.float64)
    for batch in (1, 5):
        x = r.normal(size=(batch, 203)).astype(np.float32)
        args = (x, layer.codes, layer.codebook, layer.bias)
        y = nn_lut.scalar_dot(*args)
        np.testing.assert_array_equal(y, nn_lut.scalar_dot_parallel(*args))
        np.testing.assert_array_equal(y, layer._lookup(x))
        assert _rel(y, x.astype(np.float64) @ ref.T + layer.bias) < 1e-5
        x[-1, 200] = np.nan  # in the tail
        y_nan = layer._lookup(x)
        assert np.isnan(y_nan[-1]).all()
        np.testing.assert_array_equal(y_nan[:-1], y[:-1])


@pytest.mark.parametrize("n_in", [40, 63, 64, 65, 100, 128, 203])
def test_kmeans_codes_of_16_entries_are_held_two_to_a_byte(n_in, monkeypatch):
    """A k-means layer of at most 16 entries holds its codes two to a byte from 64 inputs
    on (each group of 64 in 32 bytes, the last n_in % 64 a byte each), one to a byte
    below; 17 entries or more, one to a byte.  Against the codes themselves: the packed
    bytes unpack to them, the row decoder (serial, parallel) gives codebook[codes], and
    the lookup at batch 1 (whole groups, LANES of the tail, single tail codes) and 3
    (rows decoded, then products) is close to float64."""
    r = np.random.default_rng(n_in)
    w = r.normal(size=(37, n_in)).astype(np.float32)
    for bits in (4, 5):
        q = vq.KMeansQuantizer(bits)
        codes = q.fit_encode(w).reshape(37, n_in)
        layer = nn.LUTLinear(vq.CompressedTensor.from_codes("w", q, codes))
        packed = bits == 4 and n_in >= 64
        width = n_in // 64 * 32 + n_in % 64 if packed else n_in
        assert layer.codes.shape == (37, width) and layer.codes.dtype == np.uint8
        if packed:
            groups = layer.codes[:, : n_in // 64 * 32].reshape(37, -1, 32)
            unpacked = np.concatenate([groups & 15, groups >> 4], 2).reshape(37, -1)
            np.testing.assert_array_equal(
                np.concatenate([unpacked, layer.codes[:, n_in // 64 * 32:]], 1), codes)
        want = q.codebook_[codes].astype(np.float32)
        np.testing.assert_array_equal(layer.dense_weight(), want)
        with monkeypatch.context() as m:
            m.setattr(nn.layers, "PARALLEL_WORK", 1)
            np.testing.assert_array_equal(layer.dense_weight(), want)
        for batch in (1, 3):
            x = r.normal(size=(batch, n_in)).astype(np.float32)
            ref = x.astype(np.float64) @ want.T.astype(np.float64)
            assert _rel(layer._lookup(x), ref) < 1e-5
            assert _rel(layer._tiled(x), ref) < 1e-5


def test_sparse_rows_serial_and_parallel_alike(layers):
    """The pruned layer's gather, one input (a running sum per row) and several (every
    entry's products across the inputs at once), serial and parallel: the same bits, from
    the bias, close to float64; its row decoder (the tiled path's) gives dense_weight's
    rows in any order."""
    layer = layers["sparse"]
    w = layer.dense_weight()
    for batch in (1, 2, 9):
        x = np.random.default_rng(batch).normal(size=(batch, 37)).astype(np.float32)
        args = (x, layer.row_ptr, layer.cols, layer.codes, layer.codebook, layer.bias)
        y = nn_lut.sparse_gather(*args)
        np.testing.assert_array_equal(y, nn_lut.sparse_gather_parallel(*args))
        assert _rel(y, _ref(layer, x)) < 1e-5
    rows = np.array([299, 0, 150, 7], dtype=np.int64)
    out = np.full((4, 37), np.nan, np.float32)
    nn_lut.decode_sparse_rows(layer.row_ptr, layer.cols, layer.codes, layer.codebook, rows, out)
    np.testing.assert_array_equal(out, w[rows])


def test_pruned_layers_hold_whichever_form_is_smaller():
    """30% of the weights kept: every code (1 byte each) is smaller than sparse rows (5
    bytes per kept weight), so the layer runs as k-means codes; 10% kept: sparse rows.
    Either form, asked for, gives the decompressed weight and the same products to float32
    rounding; NaN reaches every row through every code, only the rows keeping the input's
    weight through sparse rows."""
    r = np.random.default_rng(5)
    w = r.normal(size=(60, 50)).astype(np.float32)
    for prune, kind in ((0.7, "kmeans"), (0.9, "sparse")):
        t = vq.compress({"w": w}, method="kmeans", bits=5, prune=prune, min_elements=16)["w"]
        assert nn.LUTLinear(t).kind == kind
        want = t.decompress()
        x = r.normal(size=(3, 50)).astype(np.float32)
        ys = []
        for sparse in (True, False):
            layer = nn.LUTLinear(t, sparse=sparse)
            assert layer.kind == ("sparse" if sparse else "kmeans")
            np.testing.assert_array_equal(layer.dense_weight(), want)
            ys.append(layer(x))
            assert _rel(ys[-1], x.astype(np.float64) @ want.T.astype(np.float64)) < 1e-5
        held = [nn.LUTLinear(t, sparse=s_).nbytes for s_ in (True, False)]
        assert (held[0] < held[1]) == (kind == "sparse")
        x[0, 7] = np.nan
        y_sparse = nn.LUTLinear(t, sparse=True)(x[:1])
        np.testing.assert_array_equal(np.isnan(y_sparse[0]), want[:, 7] != 0)
        assert np.isnan(nn.LUTLinear(t, sparse=False)(x[:1])).all()


def test_pruned_4_bit_codes_compare_sparse_rows_with_packed_codes():
    """With 16 entries every code is held two to a byte: 15% of the weights kept is then
    fewer bytes as every code (half a byte each over 128 inputs) than as sparse rows
    (about 0.75 bytes per weight), where one code per byte would have lost."""
    w = np.random.default_rng(6).normal(size=(40, 128)).astype(np.float32)
    t = vq.compress({"w": w}, method="kmeans", bits=4, prune=0.85, min_elements=16)["w"]
    layer = nn.LUTLinear(t)
    assert layer.kind == "kmeans" and layer.codes.shape == (40, 64)
    assert layer.nbytes < nn.LUTLinear(t, sparse=True).nbytes
    np.testing.assert_array_equal(layer.dense_weight(), t.decompress())
