"""The .vqz container: a valid safetensors file holding every tensor's parts.

Parts are named ``<tensor>/<part>``: ``codes`` (the code stream, its entropy-coder table
first; see ``coding.streams``), ``index`` (sparse tensors: the relative indices, coded the
same way), ``codebook``, ``scales``, ``zero_points`` (bit-packed), ``signs`` (Hadamard
rotation), or ``raw`` for tensors kept as they were.  A tensor stored by row groups
(method ``rows``) has ``groups`` (each row's member, a 1-bit stream coded the same way)
and its members' parts as ``<g>.<part>``; its record lists the members' records.  ``__metadata__`` holds ``format`` ("vqz"), ``version`` and, as one JSON
string under ``vqz``, a record per tensor: method, shape, source dtype, the quantizer
parameters decoding depends on, how each stream is coded, and one CRC-32 over the tensor's
parts.  Everything else (the quantizer's learned layout) follows from the shape, so it is
not stored.  The reader checks every length, shape, dtype, code range and checksum before
any kernel sees the data.
"""
from __future__ import annotations

import base64
import json
import os
import zlib

import numpy as np

from . import _safetensors as st
from . import rotation
from .coding import streams
from .coding.bitpack import code_dtype
from .coding.sparse import sparse_decode, sparse_encode
from .errors import FormatError, VQCompressError
from .quantizers import KMeansQuantizer, ProductQuantizer, ResidualQuantizer, UniformQuantizer

FORMAT = "vqz"
VERSION = "2"
QUANTIZERS = {"kmeans": KMeansQuantizer, "pq": ProductQuantizer, "rq": ResidualQuantizer,
              "uniform": UniformQuantizer}


def crc32(parts: dict) -> str:
    """CRC-32 of a tensor's parts, taken in sorted part-name order."""
    crc = 0
    for k in sorted(parts):
        crc = zlib.crc32(np.ascontiguousarray(parts[k]).tobytes(), crc)
    return f"{crc & 0xFFFFFFFF:08x}"


def tensor_parts(t) -> dict:
    """{part: ndarray} exactly as written for CompressedTensor ``t`` (computed once, unless
    compress or the reader already set them with ``set_parts``).

    Dense: the code stream coded as ``t.coding`` says ('codes').  Sparse (``t.index_bits``
    set): the nonzero codes and fillers ('codes') and their relative indices ('index',
    coded as ``t.index_coding``).  Then the quantizer's own arrays.
    """
    if t._parts is None:
        if t.method == "raw":
            t._parts = {"raw": t.raw}
        elif t.method == "rows":
            t._parts = {"groups": streams.encode_stream(t.groups, 1, t.coding)}
            for g, m in enumerate(t.members):
                t._parts.update({f"{g}.{k}": v for k, v in tensor_parts(m).items()})
        elif t.index_bits:
            n_bits = t.quantizer.n_bits
            entry, rel = sparse_encode(t.codes, t.index_bits)
            t.info["entries"] = int(entry.shape[0])
            set_parts(t, streams.encode_stream(entry, n_bits, t.coding),
                      streams.encode_stream(rel, t.index_bits, t.index_coding))
        else:
            set_parts(t, streams.encode_stream(t.codes, t.quantizer.n_bits, t.coding))
    return t._parts


def set_parts(t, code_stream: np.ndarray, index_stream: np.ndarray | None = None) -> None:
    """Record the coded streams of quantized tensor ``t`` (as ``streams.encode_stream``
    returns them) with its quantizer's arrays as its parts, so nothing is coded twice."""
    parts = {"codes": code_stream}
    if index_stream is not None:
        parts["index"] = index_stream
    if t.signs is not None:
        parts["signs"] = t.signs
    t._parts = {**parts, **t.quantizer.to_parts()[1]}


def tensor_record(t, parts: dict) -> dict:
    """The JSON record of one tensor in the file's metadata."""
    rec = {"method": t.method, "shape": list(t.shape), "dtype": t.dtype, "crc": crc32(parts)}
    if t.method == "rows":
        rec["coding"] = {"groups": t.coding}
        rec["members"] = [tensor_record(m, tensor_parts(m)) for m in t.members]
    elif t.method != "raw":
        meta, _ = t.quantizer.to_parts()
        if meta != t.quantizer.state_for_shape(t.shape):
            raise VQCompressError(f"tensor {t.name!r}: its quantizer was fitted on shape "
                                  f"{tuple(meta['shape_'])}, not {tuple(t.shape)}")
        rec["params"] = t.quantizer.decode_params()
        rec["coding"] = {"codes": t.coding}
        if t.index_bits:
            rec["coding"]["index"] = t.index_coding
            rec["sparse"] = {"index_bits": t.index_bits, "entries": t.info["entries"]}
        if t.signs is not None:
            rec["hadamard"] = True
    if t.info.get("sqnr_db") is not None:
        rec["sqnr_db"] = t.info["sqnr_db"]
    return rec


def _layout(tensors: dict) -> tuple[dict, dict]:
    """(arrays, metadata) of the safetensors file that holds ``tensors``."""
    arrays, records = {}, {}
    for name, t in tensors.items():
        parts = tensor_parts(t)
        for k, v in parts.items():
            arrays[f"{name}/{k}"] = v
        records[name] = tensor_record(t, parts)
    return arrays, {"format": FORMAT, "version": VERSION, FORMAT: pack_records(records)}


def write(path: str, tensors: dict, *, force: bool = False) -> int:
    """Write {name: CompressedTensor} to ``path`` atomically; returns the file size."""
    return st.write(path, *_layout(tensors), force=force)


def file_size(tensors: dict) -> int:
    """The exact size in bytes of the file ``write`` would produce, without writing it."""
    arrays, meta = _layout(tensors)
    head, _ = st.encode(arrays, meta, data=False)
    return 8 + len(head) + sum(int(np.asarray(a).nbytes) for a in arrays.values())


# The records are JSON, deflated and written in base 85 (whose alphabet needs no escaping
# inside the header's JSON string): a third of their plain size, which matters for small
# models, where the header is a good part of the file.  ``vqcompress inspect`` shows them.
MAX_RECORDS_BYTES = 64 << 20


def pack_records(records: dict) -> str:
    text = json.dumps(records, separators=(",", ":")).encode()
    return base64.b85encode(zlib.compress(text, 9)).decode("ascii")


def unpack_records(packed, path: str) -> bytes:
    """The records' JSON text; FormatError if it does not decode or inflates past
    MAX_RECORDS_BYTES (a deflate bomb)."""
    try:
        blob = base64.b85decode(packed)
        inflate = zlib.decompressobj()
        text = inflate.decompress(blob, MAX_RECORDS_BYTES)
    except (ValueError, TypeError, zlib.error):
        raise FormatError(f"{path}: tensor records are not deflated base-85 text") from None
    if not inflate.eof:
        raise FormatError(f"{path}: tensor records are truncated or larger than "
                          f"{MAX_RECORDS_BYTES} bytes")
    return text


def header_shares(tensors: dict) -> dict:
    """{name: bytes of the file header attributable to that tensor}: its part entries, and
    its share of the packed records in proportion to its record's plain length (deflate
    works on all records together).  The shared prefix and padding are not attributed."""
    entries, plain, records = {}, {}, {}
    for name, t in tensors.items():
        parts = tensor_parts(t)
        entries[name] = len(json.dumps(
            {f"{name}/{k}": {"dtype": st.CODES[np.dtype(v.dtype)], "shape": list(v.shape),
                             "data_offsets": [0, v.nbytes]} for k, v in parts.items()},
            separators=(",", ":")))
        records[name] = tensor_record(t, parts)
        plain[name] = len(json.dumps({name: records[name]}, separators=(",", ":")))
    packed = len(pack_records(records)) if records else 0
    total = max(sum(plain.values()), 1)
    return {n: entries[n] + round(packed * plain[n] / total) for n in tensors}


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
            records = json.loads(unpack_records(meta.get(FORMAT, ""), path),
                                 object_pairs_hook=st._no_duplicates)
            assert isinstance(records, dict)
        except (json.JSONDecodeError, AssertionError, RecursionError):
            raise FormatError(f"{path}: tensor records are not a JSON object") from None
        except st._Duplicate as exc:
            raise FormatError(f"{path}: tensor {exc.args[0]!r} is recorded twice") from None
        owned = {}  # part entries by the tensor they belong to
        for key in entries:
            name, _, part = key.rpartition("/")
            if name not in records or not part:
                raise FormatError(f"{path}: stored part {key!r} belongs to no tensor record")
            owned.setdefault(name, {})[part] = entries[key]
        out = {}
        for name, rec in records.items():
            try:
                out[name] = _read_tensor(f, rec, owned.get(name, {}), data_start,
                                         CompressedTensor, name, size)
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


def _rows_from_parts(rec, parts, shape, CompressedTensor, name, file_size):
    """A tensor stored by row groups: each row's member, then the members themselves,
    each holding exactly its rows."""
    members = rec["members"]
    if not isinstance(members, list) or len(members) != 2 or len(shape) < 1:
        raise FormatError("row groups need two members and a tensor of rank >= 1")
    if "groups" not in parts:
        raise FormatError("row groups without their 'groups' part")
    coding = rec["coding"]["groups"]
    groups = streams.decode_stream(parts["groups"], 1, shape[0], coding).astype(np.uint8)
    out, seen = [], {"groups"}
    for g, mrec in enumerate(members):
        prefix = f"{g}."
        sub = {k[len(prefix):]: v for k, v in parts.items() if k.startswith(prefix)}
        seen.update(prefix + k for k in sub)
        m = _from_parts(mrec, sub, CompressedTensor, f"{name}#{g}", file_size, member=True)
        rows = int(np.count_nonzero(groups == g))
        if m.shape != (rows, *shape[1:]):
            raise FormatError(f"member {g} has shape {m.shape}, but {rows} rows of shape "
                              f"{shape[1:]} are stored in it")
        out.append(m)
    if seen != set(parts):
        raise FormatError(f"parts {sorted(set(parts) - seen)} belong to no member")
    info = {"groups": {"coding": coding, **streams.stats(groups, 1, parts["groups"])}}
    if isinstance(rec.get("sqnr_db"), (int, float)):
        info["sqnr_db"] = rec["sqnr_db"]
    t = CompressedTensor(name, shape, rec["dtype"], "rows", coding=coding, groups=groups,
                         members=out, info=info)
    t._parts = parts  # exactly the file's parts
    return t


def _read_tensor(f, rec, entries, data_start, CompressedTensor, name, file_size):
    parts = {part: st.read_array(f, entry, data_start) for part, entry in entries.items()}
    return _from_parts(rec, parts, CompressedTensor, name, file_size)


def _from_parts(rec, parts, CompressedTensor, name, file_size, *, member=False):
    """The CompressedTensor of record ``rec`` from its parts, every one checked."""
    method = rec["method"]
    shape = tuple(rec["shape"])
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise FormatError(f"invalid shape {rec['shape']!r}")
    if int(np.prod(shape, dtype=object)) > MAX_WEIGHTS_PER_FILE_BYTE * file_size:
        raise FormatError(f"shape {shape} claims more weights than a {file_size}-byte file "
                          f"can hold")
    if method == "rows" and member:
        raise FormatError("a row group's member cannot itself be split by rows")
    if crc32(parts) != rec["crc"]:
        raise FormatError("checksum mismatch")
    if method == "rows":
        return _rows_from_parts(rec, parts, shape, CompressedTensor, name, file_size)
    if method == "raw":
        if set(parts) != {"raw"}:
            raise FormatError(f"parts {sorted(parts)} instead of ['raw']")
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
    sparse = rec.get("sparse")
    stream_parts = ("codes", "index") if sparse is not None else ("codes",)
    hadamard = rec.get("hadamard", False)
    if hadamard is not False and (hadamard is not True or sparse is not None or
                                  len(shape) < 2 or "signs" not in parts):
        raise FormatError("a Hadamard rotation needs a dense tensor of rank >= 2 and its "
                          "signs")
    if hadamard:
        stream_parts += ("signs",)
    arrays = {k: v for k, v in parts.items() if k not in stream_parts}
    q = cls.from_parts(params, None, arrays, shape=shape)
    if not set(stream_parts) <= set(parts) or set(arrays) != set(q.to_parts()[1]):
        raise FormatError(f"parts {sorted(parts)} do not match a {method} tensor")
    code_shape = q.code_shape()
    n_codes = int(np.prod(code_shape))
    info = {"sqnr_db": rec["sqnr_db"]} if isinstance(rec.get("sqnr_db"), (int, float)) else {}
    if sparse is None:
        codes = streams.decode_stream(parts["codes"], n_bits, n_codes, coding)
        info["codes"] = {"coding": coding, **streams.stats(codes, n_bits, parts["codes"])}
        codes = codes.astype(code_dtype(n_bits), copy=False).reshape(code_shape)
        signs = rotation.check_signs(parts["signs"], int(np.prod(shape[1:])),
                                     name="signs") if hadamard else None
        t = CompressedTensor(name, shape, rec["dtype"], method, quantizer=q, codes=codes,
                             coding=coding, signs=signs, info=info)
        t._parts = parts  # exactly the file's parts
        return t
    index_bits = sparse.get("index_bits")
    if not isinstance(index_bits, int) or not 1 <= index_bits <= 16:
        raise FormatError(f"index_bits {index_bits!r} out of range")
    if method != "kmeans" or not q.zero_codeword:
        raise FormatError("sparse storage needs a kmeans codebook with a zero codeword")
    n = sparse.get("entries")
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= n_codes:
        # every entry, filler or not, advances at least one position
        raise FormatError(f"sparse entries {n!r}: not a count up to {n_codes}")
    index_coding = rec["coding"].get("index", "none")
    entry = streams.decode_stream(parts["codes"], n_bits, n, coding)
    rel = streams.decode_stream(parts["index"], index_bits, n, index_coding)
    matrix = sparse_decode(entry, rel, n_codes, code_dtype(n_bits))
    info["codes"] = {"coding": coding, **streams.stats(entry, n_bits, parts["codes"])}
    info["index"] = {"coding": index_coding, **streams.stats(rel, index_bits, parts["index"])}
    info["sparsity"] = round(float(np.mean(matrix == 0)), 6)
    info["entries"] = n
    t = CompressedTensor(name, shape, rec["dtype"], method, quantizer=q,
                         codes=matrix.reshape(code_shape), coding=coding,
                         index_bits=index_bits, index_coding=index_coding, info=info)
    t._parts = parts  # exactly the file's parts
    return t
