"""compress -> .vqz -> load: round trips, sizes from real files, corrupt files, the CLI."""
import json
import os
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import vqcompress as vq
import vqz_mutations
from vqcompress import FormatError, InputError
from vqcompress.cli import main as cli
from vqcompress.coding import pack, unpack
from vqcompress.examples.digits import WEIGHTS as EXAMPLE

METHOD_BITS = [("kmeans", 4), ("pq", 8), ("rq", 4), ("uniform", 4)]


@pytest.fixture(scope="module")
def weights():
    r = np.random.default_rng(0)
    return {"enc.weight": r.normal(size=(200, 48)).astype(np.float32),
            "enc.bias": r.normal(size=200).astype(np.float32),
            "half.weight": r.normal(size=(64, 40)).astype(np.float16),
            "position_ids": np.arange(12, dtype=np.int64)[None, :]}


def _entries(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        head = json.loads(f.read(n))
    head.pop("__metadata__")
    return head


@pytest.mark.parametrize("method, bits", METHOD_BITS)
def test_file_round_trip_is_bit_exact(tmp_path, weights, method, bits):
    model = vq.compress(weights, method=method, bits=bits)
    path = tmp_path / "m.vqz"
    size = model.save(path)
    assert size == os.path.getsize(path)
    back = vq.load(path)
    a, b = model.decompress(), back.decompress()
    for name in weights:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name
    # uncompressed tensors come back bit for bit, in their dtype
    for name in ("enc.bias", "position_ids"):
        assert b[name].dtype == weights[name].dtype and np.array_equal(b[name], weights[name])
    assert b["half.weight"].dtype == np.float16
    for name, t in model.tensors.items():
        if t.method != "raw":
            np.testing.assert_array_equal(back[name].codes, t.codes)
            np.testing.assert_array_equal(back[name].quantizer.decode(t.codes),
                                          t.quantizer.decode(t.codes))


def test_file_is_valid_safetensors(tmp_path, weights):
    from safetensors.numpy import load_file
    path = tmp_path / "m.vqz"
    vq.compress(weights, method="pq", bits=6).save(path)
    names = set(load_file(str(path)))
    assert {"enc.weight/codes", "enc.weight/codebook", "enc.bias/raw",
            "position_ids/raw"} <= names


@pytest.mark.parametrize("method, bits", METHOD_BITS)
def test_accounted_sizes_match_the_file(tmp_path, weights, method, bits):
    model = vq.compress(weights, method=method, bits=bits)
    path = tmp_path / "m.vqz"
    model.save(path)
    entries = _entries(path)
    for name, t in model.tensors.items():
        stored = sum(e["data_offsets"][1] - e["data_offsets"][0]
                     for k, e in entries.items() if k.startswith(name + "/"))
        assert stored == t.nbytes
        if t.method != "raw" and t.coding == "none":  # fixed width: the quantizer's accounting
            assert t.quantizer.nbytes_breakdown()["total"] == stored
    rep = model.report()
    attributed = sum(r["bytes"] + r["header_bytes"] for r in rep["tensors"])
    # only the 8-byte length, format/version keys, JSON punctuation and padding are shared
    assert 0 <= rep["totals"]["file_bytes"] - attributed < 160
    assert rep["totals"]["bits_per_weight"] == rep["totals"]["file_bytes"] * 8 / sum(
        np.asarray(v).size for v in weights.values())


@pytest.mark.parametrize("entropy", ["none", "huffman", "rans"])
def test_each_entropy_coding_round_trips(tmp_path, weights, entropy):
    model = vq.compress(weights, method="kmeans", bits=4, entropy=entropy)
    assert model["enc.weight"].coding == entropy
    path = tmp_path / f"{entropy}.vqz"
    model.save(path)
    back = vq.load(path)
    assert back["enc.weight"].coding == entropy
    np.testing.assert_array_equal(back["enc.weight"].codes, model["enc.weight"].codes)
    if entropy == "none":
        q = model["enc.weight"].quantizer
        assert model["enc.weight"].nbytes == q.nbytes_breakdown()["total"]


def test_auto_entropy_picks_the_smallest(weights):
    sizes = {e: vq.compress(weights, method="kmeans", bits=4, entropy=e)["enc.weight"].nbytes
             for e in ("none", "huffman", "rans", "auto")}
    assert sizes["auto"] == min(sizes["none"], sizes["huffman"], sizes["rans"])
    t = vq.compress(weights, method="kmeans", bits=4)["enc.weight"]
    stream = t.info["codes"]
    assert stream["coded_bits"] >= stream["entropy_bits"] * 0.99  # no coder beats entropy
    with pytest.raises(InputError, match="entropy"):
        vq.compress(weights, entropy="zstd")


def test_same_seed_same_bytes(tmp_path, weights):
    for method, bits in METHOD_BITS:
        a, b = tmp_path / f"a{method}.vqz", tmp_path / f"b{method}.vqz"
        vq.compress(weights, method=method, bits=bits, random_state=3).save(a)
        vq.compress(weights, method=method, bits=bits, random_state=3).save(b)
        assert a.read_bytes() == b.read_bytes(), method


def test_nan_names_the_tensor(weights):
    bad = dict(weights)
    bad["enc.weight"] = weights["enc.weight"].copy()
    bad["enc.weight"][3, 4] = np.nan
    with pytest.raises(InputError, match="enc.weight.*NaN"):
        vq.compress(bad)


def test_unprofitable_and_constant_tensors_stay_raw():
    w = {"small": np.linspace(-1, 1, 400).astype(np.float16).reshape(20, 20),
         "const": np.ones((40, 40), np.float32),
         "mat": np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)}
    with pytest.warns(UserWarning, match="'const': W: 1 distinct value, fewer than the 256 "
                                         "codewords.*stored raw"):
        model = vq.compress(w, method="kmeans", bits=8, min_elements=16)
    # 400 one-byte codes + a 512-byte codebook outweigh 800 bytes of float16
    assert model["small"].method == "raw"
    assert model["const"].method == "raw"
    assert model["mat"].method == "kmeans"
    np.testing.assert_array_equal(model.decompress()["small"], w["small"])


# --- corrupt files -----------------------------------------------------------------


@pytest.fixture
def vqz(tmp_path, weights):
    path = tmp_path / "good.vqz"
    vq.compress(weights, method="kmeans", bits=4).save(path)
    return path


def test_truncated_file(vqz, tmp_path):
    data = vqz.read_bytes()
    for cut in (0, 5, 8, 40, len(data) // 2, len(data) - 1):
        p = tmp_path / f"cut{cut}.vqz"
        p.write_bytes(data[:cut])
        with pytest.raises(FormatError):
            vq.load(p)


def test_flipped_byte_fails_checksum(vqz, tmp_path):
    data = bytearray(vqz.read_bytes())
    data[-100] ^= 0x10
    p = tmp_path / "flip.vqz"
    p.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="checksum"):
        vq.load(p)


def test_absurd_shape_is_rejected_without_allocating(vqz, tmp_path):
    data = vqz.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    head = json.loads(data[8:8 + n])
    head["enc.bias/raw"]["shape"] = [10**12]
    raw = json.dumps(head).encode()
    p = tmp_path / "huge.vqz"
    p.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    with pytest.raises(FormatError, match="needs"):
        vq.load(p)


def test_header_length_beyond_file(vqz, tmp_path):
    data = vqz.read_bytes()
    p = tmp_path / "len.vqz"
    p.write_bytes(struct.pack("<Q", 2**40) + data[8:])
    with pytest.raises(FormatError, match="header claims"):
        vq.load(p)


def test_plain_safetensors_is_not_vqz(tmp_path, weights):
    from vqcompress.io import save_weights
    p = tmp_path / "plain.safetensors"
    save_weights(p, {"a": weights["enc.bias"]})
    with pytest.raises(FormatError, match="not a .vqz"):
        vq.load(p)


# --- readers ---------------------------------------------------------------------


def test_readers_npy_npz_safetensors(tmp_path, weights):
    from vqcompress.io import open_weights, save_weights
    np.save(tmp_path / "w.npy", weights["enc.weight"])
    np.savez(tmp_path / "w.npz", **weights)
    save_weights(tmp_path / "w.safetensors", weights)
    assert np.array_equal(open_weights(tmp_path / "w.npy")["w"], weights["enc.weight"])
    for ext in ("npz", "safetensors"):
        f = open_weights(tmp_path / f"w.{ext}")
        assert set(f) == set(weights)
        for k, v in weights.items():
            assert f[k].dtype == v.dtype and np.array_equal(f[k], v)


def test_bfloat16_safetensors(tmp_path):
    from vqcompress import _safetensors as st
    x = np.array([1.0, -2.5, 3.140625, 0.0], dtype=np.float32)
    bits = (x.view(np.uint32) >> 16).astype(np.uint16)
    p = tmp_path / "b.safetensors"
    st.write(str(p), {"w": bits}, {})
    data = p.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    head = data[8:8 + n].replace(b'"U16"', b'"BF16"')
    p.write_bytes(struct.pack("<Q", len(head)) + head + data[8 + n:])
    from vqcompress.io import open_weights
    f = open_weights(p)
    np.testing.assert_array_equal(f["w"], x)
    assert f.source_dtype("w") == "bfloat16"


def test_pickled_npz_is_refused(tmp_path):
    p = tmp_path / "obj.npz"
    np.savez(p, bad=np.array([{"a": 1}], dtype=object))
    from vqcompress.io import open_weights
    with pytest.raises(FormatError, match="pickle"):
        open_weights(p)["bad"]


def test_extension_must_match_content(tmp_path):
    p = tmp_path / "fake.safetensors"
    np.save(tmp_path / "x.npy", np.ones(3))
    p.write_bytes((tmp_path / "x.npy").read_bytes())
    with pytest.raises(FormatError, match="content is .npy"):
        vq.compress(p)


# --- bit packing ------------------------------------------------------------------


@given(st.integers(1, 16), st.lists(st.integers(0, 2**16 - 1), max_size=300))
def test_pack_unpack_round_trip(n_bits, values):
    codes = np.array([v % (1 << n_bits) for v in values], dtype=np.uint16)
    packed = pack(codes, n_bits)
    assert packed.size == (len(values) * n_bits + 7) // 8
    np.testing.assert_array_equal(unpack(packed, n_bits, len(values)), codes)


def test_unpack_rejects_wrong_length():
    with pytest.raises(FormatError):
        unpack(np.zeros(3, np.uint8), 5, 10)


# --- command line -----------------------------------------------------------------


def test_cli_compress_inspect_decompress(tmp_path, capsys):
    out = tmp_path / "digits.vqz"
    assert cli(["compress", EXAMPLE, str(out), "--method", "kmeans", "--bits", "4", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["totals"]["file_bytes"] == os.path.getsize(out)
    assert rep["totals"]["ratio"] > 5
    assert cli(["inspect", str(out)]) == 0
    assert "bits/weight" in capsys.readouterr().out
    dense = tmp_path / "back.npz"
    assert cli(["decompress", str(out), str(dense)]) == 0
    from vqcompress.examples.digits import accuracy
    with np.load(dense) as z:
        assert accuracy({k: z[k] for k in z.files}) > 0.97


def test_cli_refuses_existing_output_and_input_as_output(tmp_path, capsys):
    out = tmp_path / "x.vqz"
    out.write_bytes(b"keep me")
    assert cli(["compress", EXAMPLE, str(out)]) == 2
    assert out.read_bytes() == b"keep me"
    assert "exists" in capsys.readouterr().err
    src = tmp_path / "w.npz"
    src.write_bytes(open(EXAMPLE, "rb").read())
    assert cli(["compress", str(src), str(src), "--force"]) == 2
    assert src.read_bytes() == open(EXAMPLE, "rb").read()


def test_cli_prints_warnings_as_one_line(tmp_path, capsys):
    src = tmp_path / "w.npz"
    np.savez(src, const=np.ones((40, 40), np.float32))
    assert cli(["compress", str(src), str(tmp_path / "w.vqz"), "--min-elements", "16"]) == 0
    err = capsys.readouterr().err
    assert "vqcompress: warning: tensor 'const': W: 1 distinct value, " in err
    assert "UserWarning" not in err and "cli.py" not in err


def test_cli_reports_errors_cleanly(tmp_path, capsys):
    bad = tmp_path / "bad.vqz"
    bad.write_bytes(b"\x01\x00\x00\x00\x00\x00\x00\x00{")
    assert cli(["inspect", str(bad)]) == 2
    assert "error" in capsys.readouterr().err


def test_interrupted_write_leaves_nothing(tmp_path, weights, monkeypatch):
    from vqcompress import _safetensors as st
    model = vq.compress(weights, method="kmeans", bits=3)
    calls = {"n": 0}
    real = os.fsync

    def failing_fsync(fd):
        calls["n"] += 1
        raise OSError("disk full")

    monkeypatch.setattr(st.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        model.save(tmp_path / "x.vqz")
    monkeypatch.setattr(st.os, "fsync", real)
    assert calls["n"] == 1 and list(tmp_path.iterdir()) == []


# --- Deep Compression: pruning + weight sharing + sparse relative indices ------------


def test_deep_compression_table_2_accounting(tmp_path):
    """LeNet-300-100 pruned to the paper's densities (8%, 9%, 26%), 6-bit weights, 5-bit
    relative indices, filler zeros counted: the paper reports 3.1% of the original."""
    r = np.random.default_rng(0)
    layers = {"ip1.weight": ((300, 784), 0.08), "ip2.weight": ((100, 300), 0.09),
              "ip3.weight": ((10, 100), 0.26)}
    tensors = {}
    for name, (shape, density) in layers.items():
        W = r.normal(size=shape).astype(np.float32)
        m = vq.compress({name: W}, method="kmeans", bits=6, prune=1 - density, index_bits=5,
                        entropy="none", min_elements=0)
        t = m[name]
        assert t.index_bits == 5 and abs(t.info["sparsity"] - (1 - density)) < 1e-3
        assert t.info["fillers"] > 0 or density > 0.2
        tensors[name] = t
    model = vq.CompressedModel(tensors)
    original = sum(np.prod(s) * 4 for s, _ in layers.values())
    accounted = sum(t.nbytes for t in tensors.values())
    assert 0.028 <= accounted / original <= 0.034, accounted / original
    path = tmp_path / "lenet.vqz"
    size = model.save(path)
    with open(path, "rb") as f:
        header = 8 + struct.unpack("<Q", f.read(8))[0]
    assert size == accounted + header
    back = vq.load(path)
    for name, t in tensors.items():
        np.testing.assert_array_equal(back[name].codes, t.codes)
        assert np.mean(back[name].decompress() == 0) == pytest.approx(t.info["sparsity"])


def test_filler_zeros_bridge_long_gaps():
    W = np.zeros((2, 100), np.float32)
    W[0, [3, 90]] = [1.0, -2.0]   # a gap of 87 needs two fillers at 5 bits (span 32)
    W[1, 99] = 3.0
    W[1, 10] = 0.5
    m = vq.compress({"w": W}, method="kmeans", bits=2, prune=0.0, index_bits=5,
                    entropy="none", min_elements=0)
    t = m["w"]
    # gaps run across rows: 87 to position 90 = 32+32+23, then 89 from 110 to 199
    assert t.info["fillers"] == 2 + 2
    np.testing.assert_array_equal(t.decompress() != 0, W != 0)


def test_sparse_corrupt_index_stream_is_rejected(tmp_path):
    W = np.random.default_rng(1).normal(size=(20, 64)).astype(np.float32)
    m = vq.compress({"w": W}, method="kmeans", bits=4, prune=0.8, entropy="none",
                    min_elements=0)
    path = tmp_path / "s.vqz"
    m.save(path)
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    head = json.loads(data[8:8 + n])
    a, b = head["w/index"]["data_offsets"]
    body = bytearray(data[8 + n:])
    body[a:b] = b"\xff" * (b - a)   # every gap maximal: the positions overrun the end
    vqz_mutations.fix_crcs(head, bytes(body))
    bad = tmp_path / "bad.vqz"
    bad.write_bytes(vqz_mutations.join(head, bytes(body)))
    with pytest.raises(FormatError, match="past the end of the tensor"):
        vq.load(bad)


def test_prune_needs_kmeans(weights):
    with pytest.raises(InputError, match="prune"):
        vq.compress(weights, method="pq", prune=0.5)


def test_bfloat16_model_round_trips_as_bfloat16(tmp_path):
    from vqcompress import _safetensors as st
    from vqcompress.io import open_weights
    r = np.random.default_rng(0)
    w = r.normal(size=(64, 64)).astype(np.float32)
    b = r.normal(size=64).astype(np.float32)
    src = tmp_path / "m.safetensors"
    st.write(str(src), {"w": st.f32_to_bf16(w), "b": st.f32_to_bf16(b)}, {},
             bf16=frozenset({"w", "b"}))
    model = vq.compress(src, method="kmeans", bits=4)
    assert model["b"].method == "raw" and model["b"].raw.dtype == np.uint16  # 2 bytes each
    out = tmp_path / "m.vqz"
    model.save(out)
    assert cli(["decompress", str(out), str(tmp_path / "back.safetensors")]) == 0
    back = open_weights(tmp_path / "back.safetensors")
    assert back.source_dtype("b") == "bfloat16" and back.source_dtype("w") == "bfloat16"
    np.testing.assert_array_equal(back.stored("b"), st.f32_to_bf16(b))  # bit for bit


def test_bf16_rounding_is_nearest_even():
    from vqcompress import _safetensors as st
    x = np.array([1.0, 1.00390625, 1.01171875, -2.5, 3.4e38], dtype=np.float32)
    # 1 + 2^-8 is a tie between 1 and 1 + 2^-7: to even (1.0); 1 + 3*2^-8 rounds up
    np.testing.assert_array_equal(st.bf16_to_f32(st.f32_to_bf16(x))[:4],
                                  [1.0, 1.0, 1.015625, -2.5])


def _edit_record(path, out, edit):
    """Rewrite a .vqz with its tensor records changed by ``edit(records)``."""
    head, body = vqz_mutations.split(path.read_bytes())
    records = vqz_mutations.get_records(head)
    edit(records)
    vqz_mutations.set_records(head, records)
    out.write_bytes(vqz_mutations.join(head, body))
    return out


def test_codes_beyond_the_codebook_are_rejected(vqz, tmp_path):
    # codes are n_bits wide and a codebook must have exactly 2**n_bits entries: claiming
    # 5-bit codes against the stored 16-entry codebook is caught before any lookup
    def widen(records):
        records["enc.weight"]["params"]["n_bits"] = 5
    with pytest.raises(FormatError, match="codebook"):
        vq.load(_edit_record(vqz, tmp_path / "wide.vqz", widen))


def test_record_claiming_a_huge_tensor_is_rejected_fast(vqz, tmp_path):
    import time

    def huge(records):
        records["enc.weight"]["shape"] = [10**6, 10**6]
    path = _edit_record(vqz, tmp_path / "huge.vqz", huge)
    t0 = time.perf_counter()
    with pytest.raises(FormatError, match="more weights than"):
        vq.load(path)
    assert time.perf_counter() - t0 < 1.0


def test_save_verifies_by_reading_back(tmp_path, weights, monkeypatch):
    from vqcompress import container
    model = vq.compress(weights, method="kmeans", bits=4)
    real_write = container.write

    def corrupting_write(path, tensors, force=False):
        size = real_write(path, tensors, force=force)
        with open(path, "r+b") as f:  # a silent bit flip on the way to the disk
            f.seek(size - 3)
            b = f.read(1)
            f.seek(size - 3)
            f.write(bytes([b[0] ^ 1]))
        return size

    monkeypatch.setattr(container, "write", corrupting_write)
    with pytest.raises(FormatError):
        model.save(tmp_path / "v.vqz")
    assert not (tmp_path / "v.vqz").exists()
    model.save(tmp_path / "nv.vqz", verify=False)  # the user asked not to check
    assert (tmp_path / "nv.vqz").exists()


def test_inspect_verify(vqz, tmp_path, capsys):
    assert cli(["inspect", "--verify", str(vqz)]) == 0
    bad = tmp_path / "bad.vqz"
    data = bytearray(vqz.read_bytes())
    data[-50] ^= 0xFF
    bad.write_bytes(bytes(data))
    assert cli(["inspect", "--verify", str(bad)]) == 2
    assert "error" in capsys.readouterr().err


def test_duplicate_names_in_a_header_are_refused(vqz, tmp_path):
    data = vqz.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    head = data[8:8 + n].decode()
    first = head.index('"enc.bias/raw"')
    entry_end = head.index("}", first) + 1
    dup = head[:entry_end] + "," + head[first:entry_end] + head[entry_end:]
    raw = dup.encode()
    p = tmp_path / "dup.vqz"
    p.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    with pytest.raises(FormatError, match="twice"):
        vq.load(p)


def test_written_files_get_the_usual_permissions(tmp_path, weights):
    path = tmp_path / "m.vqz"
    vq.compress(weights).save(path)
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~mask


def test_from_codes_stores_another_librarys_codebook(tmp_path):
    """faiss trains and encodes; our file stores its codebook and codes; decoding the file
    gives faiss's own reconstruction."""
    faiss = pytest.importorskip("faiss")
    W = np.random.default_rng(7).normal(size=(64, 40)).astype(np.float32)
    fpq = faiss.ProductQuantizer(8, 1, 6)
    blocks = np.ascontiguousarray(W.reshape(-1, 8))
    fpq.train(blocks)
    codes = fpq.compute_codes(blocks)  # one byte per block for 6 bits
    q = vq.ProductQuantizer(block_size=8, n_bits=6, codebook_dtype="float32")
    q.codebooks_ = faiss.vector_to_array(fpq.centroids).reshape(1, 64, 8)
    q.in_features_, q.n_blocks_, q.shape_, q.n_weights_ = 40, 5, W.shape, W.size
    t = vq.CompressedTensor.from_codes("w", q, codes.reshape(64, 5), reference=W)
    assert t.method == "pq" and t.info["sqnr_db"] > 0
    vq.CompressedModel({"w": t}).save(tmp_path / "f.vqz")
    back = vq.load(tmp_path / "f.vqz")["w"].decompress()
    np.testing.assert_array_equal(back, fpq.decode(codes).reshape(W.shape))
    with pytest.raises(InputError, match="w codes"):
        vq.CompressedTensor.from_codes("w", q, np.full((64, 5), 64, np.uint8))
    with pytest.raises(InputError, match="expected shape"):
        vq.CompressedTensor.from_codes("w", q, codes)
