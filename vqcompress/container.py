"""The .vqz container: a valid safetensors file holding every tensor's parts.

Parts are named ``<tensor>/<part>``: ``codes`` (the code stream: bit-packed, or Huffman
with ``codes.lengths``, or rANS with ``codes.freq``), ``codebook``, ``scales``,
``zero_points`` (bit-packed), or ``raw`` for tensors kept as they were.
``__metadata__`` holds ``format`` ("vqz"), ``version`` and, as one JSON string under
``vqz``, each tensor's method, the quantizer parameters decoding depends on and its learned
scalars, shape, source dtype and the CRC-32 of each part.  The reader checks every length, shape, dtype, code
range and checksum before any kernel sees the data.
"""
from __future__ import annotations

import json
import os
import zlib

import numpy as np

from . import _safetensors as st
from .coding import streams
from .coding.bitpack import code_dtype
from .coding.sparse import sparse_decode, sparse_encode
from .errors import FormatError, VQCompressError
from .quantizers import KMeansQuantizer, ProductQuantizer, ResidualQuantizer, UniformQuantizer

FORMAT = "vqz"
VERSION = "1"
QUANTIZERS = {"kmeans": KMeansQuantizer, "pq": ProductQuantizer, "rq": ResidualQuantizer,
              "uniform": UniformQuantizer}


def crc32(arr: np.ndarray) -> str:
    return f"{zlib.crc32(np.ascontiguousarray(arr).tobytes()) & 0xFFFFFFFF:08x}"


def tensor_parts(t) -> dict:
    """{part: ndarray} exactly as written for CompressedTensor ``t`` (computed once, unless
    compress or the reader already set them with ``set_parts``).

    Dense: the code stream coded as ``t.coding`` says ('codes' plus its table part).
    Sparse (``t.index_bits`` set): the nonzero codes and fillers ('codes'), their relative
    indices ('index', coded as ``t.index_coding``) and the entries per row ('rows').
    Then the quantizer's own arrays.
    """
    if t._parts is None:
        if t.method == "raw":
            t._parts = {"raw": t.raw}
        elif t.index_bits:
            n_bits = t.quantizer.n_bits
            entry, rel, rows = sparse_encode(t.codes.reshape(t.codes.shape[0], -1),
                                             t.index_bits)
            set_parts(t, streams.encode_stream(entry, n_bits, t.coding),
                      streams.encode_stream(rel, t.index_bits, t.index_coding), rows)
        else:
            set_parts(t, streams.encode_stream(t.codes, t.quantizer.n_bits, t.coding))
    return t._parts


def set_parts(t, code_parts: dict, index_parts: dict | None = None, rows=None) -> None:
    """Record the coded streams of quantized tensor ``t`` (as ``streams.encode_stream``
    returns them) with its quantizer's arrays as its parts, so nothing is coded twice."""
    parts = _prefixed("codes", code_parts)
    if index_parts is not None:
        parts.update(_prefixed("index", index_parts))
        parts["rows"] = rows
    t._parts = {**parts, **t.quantizer.to_parts()[1]}


def _prefixed(name, coded: dict) -> dict:
    return {name + k: v for k, v in coded.items()}


def _stream_parts(parts: dict, name: str) -> dict:
    """The parts of one coded stream ('codes', 'codes.lengths', ...) keyed by suffix."""
    return {k[len(name):]: v for k, v in parts.items()
            if k == name or k.startswith(name + ".")}


def tensor_record(t, parts: dict) -> dict:
    """The JSON record of one tensor in the file's metadata."""
    rec = {"method": t.method, "shape": list(t.shape), "dtype": t.dtype,
           "parts": {k: crc32(v) for k, v in parts.items()}}
    if t.method != "raw":
        meta, _ = t.quantizer.to_parts()
        rec["params"] = t.quantizer.decode_params()
        rec["state"] = meta
        rec["coding"] = {"codes": t.coding}
        if t.index_bits:
            rec["coding"]["index"] = t.index_coding
            rec["sparse"] = {"index_bits": t.index_bits}
    if t.info.get("sqnr_db") is not None:
        rec["sqnr_db"] = t.info["sqnr_db"]
    return rec


def write(path: str, tensors: dict, *, force: bool = False) -> int:
    """Write {name: CompressedTensor} to ``path`` atomically; returns the file size."""
    arrays, records = {}, {}
    for name, t in tensors.items():
        parts = tensor_parts(t)
        for k, v in parts.items():
            arrays[f"{name}/{k}"] = v
        records[name] = tensor_record(t, parts)
    meta = {"format": FORMAT, "version": VERSION, FORMAT: json.dumps(records, separators=(",", ":"))}
    return st.write(path, arrays, meta, force=force)


def header_share(name: str, t, parts: dict) -> int:
    """Bytes of the file header attributable to one tensor: its part entries and its
    metadata record (as serialised; the shared prefix and padding are not attributed)."""
    entries = {f"{name}/{k}": {"dtype": st.CODES[np.dtype(v.dtype)], "shape": list(v.shape),
                               "data_offsets": [0, v.nbytes]} for k, v in parts.items()}
    record = json.dumps({name: tensor_record(t, parts)}, separators=(",", ":"))
    # the record sits inside a JSON string: its quotes are escaped, one extra byte each
    return len(json.dumps(entries, separators=(",", ":"))) + len(record) + record.count('"')


def read(path: str) -> dict:
    """Read and validate a .vqz file; returns {name: CompressedTensor}."""
    from .pipeline import CompressedTensor

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        entries, meta, data_start = st.read_header(f, size, what=path)
        if meta.get("format") != FORMAT:
            raise FormatError(f"{path}: not a .vqz file (metadata format is "
                              f"{meta.get('format')!r})")
        if meta.get("version") != VERSION:
            raise FormatError(f"{path}: .vqz version {meta.get('version')!r} is not supported "
                              f"(this reader knows version {VERSION})")
        try:
            records = json.loads(meta.get(FORMAT, ""), object_pairs_hook=st._no_duplicates)
            assert isinstance(records, dict)
        except (json.JSONDecodeError, AssertionError, RecursionError):
            raise FormatError(f"{path}: tensor records are not a JSON object") from None
        except st._Duplicate as exc:
            raise FormatError(f"{path}: tensor {exc.args[0]!r} is recorded twice") from None
        claimed = {f"{n}/{p}" for n, r in records.items()
                   for p in (r.get("parts", {}) if isinstance(r, dict) else {})}
        if claimed != set(entries):
            raise FormatError(f"{path}: stored parts do not match the tensor records")
        out = {}
        for name, rec in records.items():
            try:
                out[name] = _read_tensor(f, name, rec, entries, data_start, CompressedTensor,
                                         size)
            except VQCompressError as exc:
                if isinstance(exc, FormatError) and str(exc).startswith(path):
                    raise
                raise FormatError(f"{path}: tensor {name!r}: {exc}") from None
            except (KeyError, TypeError, ValueError) as exc:
                raise FormatError(f"{path}: tensor {name!r}: malformed record ({exc})") from None
    return out


# A tensor may decode to at most this many weights per byte of the file: far beyond any real
# ratio (float32 at 1 bit per weight is 32x), but it stops a record that declares 10^12
# codes behind a 4-byte stream (a certain symbol costs rANS no bits) from allocating them.
MAX_WEIGHTS_PER_FILE_BYTE = 1024


def _read_tensor(f, name, rec, entries, data_start, CompressedTensor, file_size):
    method = rec["method"]
    shape = tuple(rec["shape"])
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise FormatError(f"invalid shape {rec['shape']!r}")
    if int(np.prod(shape, dtype=object)) > MAX_WEIGHTS_PER_FILE_BYTE * file_size:
        raise FormatError(f"shape {shape} claims more weights than a {file_size}-byte file "
                          f"can hold")
    parts = {}
    for part, crc in rec["parts"].items():
        arr = st.read_array(f, entries[f"{name}/{part}"], data_start)
        if crc32(arr) != crc:
            raise FormatError(f"checksum mismatch in part {part!r}")
        parts[part] = arr
    if method == "raw":
        raw = parts["raw"]
        if raw.shape != shape:
            raise FormatError(f"raw part has shape {raw.shape}, record says {shape}")
        if rec["dtype"] == "bfloat16" and raw.dtype != np.uint16:
            raise FormatError("a raw bfloat16 tensor must be stored as uint16 bit patterns")
        t = CompressedTensor(name, shape, rec["dtype"], "raw", raw=raw)
        t._parts = parts  # exactly the file's parts
        return t
    if method not in QUANTIZERS:
        raise FormatError(f"unknown method {method!r}")
    cls = QUANTIZERS[method]
    params = rec["params"]
    n_bits = params.get("n_bits") if isinstance(params, dict) else None
    if not isinstance(n_bits, int) or not 1 <= n_bits <= 16:
        raise FormatError(f"n_bits {n_bits!r} out of range")
    coding = rec.get("coding", {}).get("codes", "none")
    code_parts = _stream_parts(parts, "codes")
    index_parts = _stream_parts(parts, "index")
    arrays = {k: v for k, v in parts.items() if not (k.startswith("codes") or
                                                      k.startswith("index") or k == "rows")}
    q = cls.from_parts(params, rec["state"], arrays)
    if tuple(q.shape_) != shape or int(np.prod(shape)) != q.n_weights_:
        raise FormatError(f"quantizer state shape {q.shape_} does not match {shape}")
    code_shape = q.code_shape()
    info = {"sqnr_db": rec["sqnr_db"]} if isinstance(rec.get("sqnr_db"), (int, float)) else {}
    sparse = rec.get("sparse")
    if sparse is None:
        codes = streams.decode_stream(code_parts, n_bits, int(np.prod(code_shape)), coding)
        info["codes"] = {"coding": coding, **streams.stats(codes, n_bits, code_parts)}
        codes = codes.astype(code_dtype(n_bits), copy=False).reshape(code_shape)
        t = CompressedTensor(name, shape, rec["dtype"], method, quantizer=q, codes=codes,
                             coding=coding, info=info)
        t._parts = parts  # exactly the file's parts
        return t
    index_bits = sparse.get("index_bits")
    if not isinstance(index_bits, int) or not 1 <= index_bits <= 16:
        raise FormatError(f"index_bits {index_bits!r} out of range")
    if method != "kmeans" or not q.zero_codeword:
        raise FormatError("sparse storage needs a kmeans codebook with a zero codeword")
    rows = parts.get("rows")
    if rows is None or rows.dtype != np.uint32 or rows.shape != (code_shape[0],):
        raise FormatError("sparse rows: missing or malformed")
    n = int(rows.sum(dtype=np.int64))
    n_cells = int(np.prod(code_shape))
    if n > 2 * n_cells + code_shape[0]:  # each entry, filler or not, advances >= 1 column
        raise FormatError("sparse rows: more entries than the matrix can hold")
    index_coding = rec["coding"].get("index", "none")
    entry = streams.decode_stream(code_parts, n_bits, n, coding)
    rel = streams.decode_stream(index_parts, index_bits, n, index_coding)
    matrix = sparse_decode(entry, rel, rows, (code_shape[0], n_cells // code_shape[0]),
                           code_dtype(n_bits))
    info["codes"] = {"coding": coding, **streams.stats(entry, n_bits, code_parts)}
    info["index"] = {"coding": index_coding, **streams.stats(rel, index_bits, index_parts)}
    info["sparsity"] = round(float(np.mean(matrix == 0)), 6)
    t = CompressedTensor(name, shape, rec["dtype"], method, quantizer=q,
                         codes=matrix.reshape(code_shape), coding=coding,
                         index_bits=index_bits, index_coding=index_coding, info=info)
    t._parts = parts  # exactly the file's parts
    return t
