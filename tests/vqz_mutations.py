"""Valid .vqz files of every kind and mutations of them, for the fuzz test and campaign.

Many mutations re-compute the part checksums afterwards, so that the checks behind the
CRC (shapes, tables, code ranges, index bounds, stream ends) are what has to hold.
"""
from __future__ import annotations

import json
import os
import random
import struct
import tempfile
import time
import tracemalloc

import numpy as np

import vqcompress as vq
from vqcompress import FormatError


def base_files() -> list[bytes]:
    """Small valid files covering every method, coding and storage kind."""
    r = np.random.default_rng(0)
    W = r.laplace(size=(24, 40)).astype(np.float32)
    conv = r.normal(size=(8, 3, 3, 3)).astype(np.float32)
    mixed = {"w": W, "b": r.normal(size=24).astype(np.float32),
             "h": r.normal(size=(16, 16)).astype(np.float16), "ids": np.arange(6)[None]}
    runs = [
        (mixed, dict(method="kmeans", bits=3, entropy="none")),
        (mixed, dict(method="kmeans", bits=4, entropy="huffman")),
        (mixed, dict(method="kmeans", bits=4, entropy="rans")),
        ({"w": W, "c": conv}, dict(method="pq", bits=4, block_size=4)),
        ({"w": W}, dict(method="rq", bits=3, block_size=4, stages=2, beam_size=2)),
        ({"w": W}, dict(method="uniform", bits=3, group_size=8)),
        ({"w": W}, dict(method="uniform", bits=4, group_size="channel")),
        ({"w": W, "c": conv}, dict(method="kmeans", bits=4, prune=0.8, entropy="none")),
        ({"w": W}, dict(method="kmeans", bits=4, prune=0.9, index_bits=3, entropy="huffman")),
        ({"w": W}, dict(method="kmeans", bits=4, prune=0.7, entropy="rans")),
        ({"w": W, "c": conv}, dict(method="kmeans", bits=3, hadamard=True)),
        ({"w": W}, dict(method="pq", bits=4, block_size=4, hadamard=True)),
        ({"w": W}, dict(method="kmeans", bits=3, entropy="rans",
                        policy=["w#cold=method:pq,bits:4,block_size:4", "w=hot_rows:6"],
                        calibration={"w": vq.calibration.RowCounts(np.arange(24))})),
    ]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (weights, opts) in enumerate(runs):
            p = os.path.join(tmp, f"{i}.vqz")
            vq.compress(weights, min_elements=16, random_state=0, **opts).save(p)
            with open(p, "rb") as f:
                out.append(f.read())
    return out


# --- helpers over the layout ---------------------------------------------------------


def split(data: bytes):
    (n,) = struct.unpack("<Q", data[:8])
    head = json.loads(data[8:8 + n])
    return head, data[8 + n:]


def join(head: dict, body: bytes) -> bytes:
    raw = json.dumps(head).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def get_records(head: dict) -> dict:
    """The tensor records of a split header (deflated base-85 JSON in the metadata)."""
    return json.loads(vq.container.unpack_records(head["__metadata__"]["vqz"], "test"))


def set_records(head: dict, records) -> None:
    head["__metadata__"]["vqz"] = vq.container.pack_records(records)


def fix_crcs(head: dict, body: bytes) -> None:
    """Recompute every tensor's recorded checksum from the (possibly edited) body, with
    the writer's own function."""
    try:
        records = get_records(head)
    except Exception:
        return
    for name, rec in records.items() if isinstance(records, dict) else []:
        if not isinstance(rec, dict):
            continue
        parts = {}
        try:
            for k in (k for k in head if k.rpartition("/")[0] == name):
                a, b = head[k]["data_offsets"]
                parts[k] = np.frombuffer(body[a:b], np.uint8)
        except Exception:
            continue
        rec["crc"] = vq.container.crc32(parts)
    set_records(head, records)


def _tensor_entries(head):
    return [k for k in head if k != "__metadata__"]


# --- mutators ------------------------------------------------------------------------


def flip_bits(data, rng):
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def truncate(data, rng):
    return data[:rng.randrange(len(data))]


def extend(data, rng):
    return data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))


def body_bytes_fixed(data, rng):
    head, body = split(data)
    b = bytearray(body)
    for _ in range(rng.randint(1, 6)):
        if b:
            b[rng.randrange(len(b))] = rng.randrange(256)
    fix_crcs(head, bytes(b))
    return join(head, bytes(b))


def swap_parts(data, rng):
    head, body = split(data)
    names = _tensor_entries(head)
    a, b = rng.sample(names, 2) if len(names) > 1 else (names[0], names[0])
    head[a]["data_offsets"], head[b]["data_offsets"] = head[b]["data_offsets"], head[a]["data_offsets"]
    if rng.random() < 0.5:
        head[a]["shape"], head[b]["shape"] = head[b]["shape"], head[a]["shape"]
        head[a]["dtype"], head[b]["dtype"] = head[b]["dtype"], head[a]["dtype"]
    if rng.random() < 0.7:
        fix_crcs(head, body)
    return join(head, body)


WEIRD = [-1, 0, 1, 2**31, 2**40, 2**63, 2**64 + 5, 10**12, 1.5, "3", None, [], {}, True]


def header_entry_edit(data, rng):
    head, body = split(data)
    name = rng.choice(_tensor_entries(head))
    e = head[name]
    field = rng.choice(["shape", "data_offsets", "dtype"])
    if field == "shape":
        e["shape"] = [rng.choice(WEIRD) if rng.random() < 0.5 else s for s in e["shape"]] or [rng.choice(WEIRD)]
    elif field == "data_offsets":
        e["data_offsets"][rng.randrange(2)] = rng.choice(WEIRD)
    else:
        e["dtype"] = rng.choice(["F32", "F16", "BF16", "U8", "I64", "Q4", 7])
    if rng.random() < 0.7:
        fix_crcs(head, body)
    return join(head, body)


def record_edit(data, rng):
    head, body = split(data)
    records = get_records(head)
    name = rng.choice(list(records))
    rec = records[name]
    choice = rng.randrange(9)
    if choice == 0:
        rec["shape"] = [rng.choice(WEIRD) for _ in range(rng.randint(0, 3))]
    elif choice == 1 and "params" in rec:
        rec["params"][rng.choice(list(rec["params"]))] = rng.choice(WEIRD + ["x", 17, 0, 16])
    elif choice == 2 and "sparse" in rec:
        rec["sparse"]["entries"] = rng.choice(WEIRD + [10**6, 10**12])
    elif choice == 3:
        rec["method"] = rng.choice(["raw", "kmeans", "pq", "rq", "uniform", "zip", 3])
    elif choice == 4:
        rec["coding"] = {"codes": rng.choice(["none", "huffman", "rans", "lzma", None]),
                         "index": rng.choice(["none", "huffman", "rans", 1])}
    elif choice == 5:
        rec["sparse"] = {"index_bits": rng.choice([0, 1, 3, 5, 17, -2, "5", None]),
                         "entries": rng.choice([0, 1, 5, 100, -1, None])}
    elif choice == 6:
        rec.pop(rng.choice(list(rec)))
    elif choice == 7:
        rec["dtype"] = rng.choice(["bfloat16", "float16", "int64", "complex", 5])
    else:
        records[name + "_copy"] = rec
    set_records(head, records)
    if rng.random() < 0.5:
        head["__metadata__"][rng.choice(["format", "version"])] = rng.choice(["vqz", "1", "2", ""])
    return join(head, body)


def bad_tables(data, rng):
    """Entropy tables and sparse streams made invalid, checksums fixed."""
    head, body = split(data)
    b = bytearray(body)
    targets = [k for k in _tensor_entries(head)
               if k.endswith(("/index", "/codes"))]
    if not targets:
        return body_bytes_fixed(data, rng)
    a, e = head[rng.choice(targets)]["data_offsets"]
    fill = rng.choice([0, 1, 0xFF, 17, None])
    for i in range(a, e):
        b[i] = rng.randrange(256) if fill is None else fill
    fix_crcs(head, bytes(b))
    return join(head, bytes(b))


def garbage_header(data, rng):
    head_json = rng.choice([b"{", b"[]", b'{"a": {"dtype": "F32"}}', b"\xff\xfe",
                            b'{"__metadata__": 5}', b"[" * 50000])
    return struct.pack("<Q", len(head_json)) + head_json + data[100:]


MUTATORS = [flip_bits, truncate, extend, body_bytes_fixed, swap_parts, header_entry_edit,
            record_edit, bad_tables, garbage_header]


def mutate(data: bytes, rng: random.Random) -> bytes:
    for _ in range(rng.randint(1, 2)):
        m = rng.choice(MUTATORS)
        try:
            data = m(data, rng)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError,
                UnicodeDecodeError, struct.error, FormatError):  # could not parse its input
            data = flip_bits(data, rng) if data else data
    return data


# --- the property ----------------------------------------------------------------------


def check(data: bytes, path: str, *, max_seconds: float = 1.0) -> str:
    """Load and decode ``data``: returns 'ok' or 'rejected'; raises AssertionError on
    anything else (another exception, a wrong shape, too slow, too much memory)."""
    with open(path, "wb") as f:
        f.write(data)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        model = vq.load(path)
        for name, t in model.tensors.items():
            dense = t.decompress()
            assert tuple(dense.shape) == tuple(t.shape), (name, dense.shape, t.shape)
        outcome = "ok"
    except FormatError:
        outcome = "rejected"
    finally:
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < max_seconds, f"took {elapsed:.2f} s"
    assert peak < max(64 << 20, 200 * len(data)), f"peak memory {peak} for {len(data)} bytes"
    return outcome
