"""The safetensors layout, read and written by hand.

We parse the header ourselves because (1) the numpy binding cannot read bfloat16 and
(2) a reader of files from strangers must check every offset, dtype and shape before any
byte is interpreted.  Layout: an 8-byte little-endian header length N, N bytes of JSON
({name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}), then the data buffer.
"""
from __future__ import annotations

import json
import math
import os
import struct
import tempfile

import numpy as np

from .errors import FormatError, InputError

DTYPES = {"BOOL": np.dtype(np.bool_), "U8": np.dtype(np.uint8), "I8": np.dtype(np.int8),
          "U16": np.dtype(np.uint16), "I16": np.dtype(np.int16), "F16": np.dtype(np.float16),
          "BF16": np.dtype(np.uint16), "U32": np.dtype(np.uint32), "I32": np.dtype(np.int32),
          "F32": np.dtype(np.float32), "U64": np.dtype(np.uint64), "I64": np.dtype(np.int64),
          "F64": np.dtype(np.float64)}
CODES = {np.dtype(np.bool_): "BOOL", np.dtype(np.uint8): "U8", np.dtype(np.int8): "I8",
         np.dtype(np.uint16): "U16", np.dtype(np.int16): "I16", np.dtype(np.float16): "F16",
         np.dtype(np.uint32): "U32", np.dtype(np.int32): "I32", np.dtype(np.float32): "F32",
         np.dtype(np.uint64): "U64", np.dtype(np.int64): "I64", np.dtype(np.float64): "F64"}
MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's limit


class Entry:
    """One tensor's place in the file: dtype code, shape and byte range in the buffer."""

    __slots__ = ("dtype", "shape", "begin", "end")

    def __init__(self, dtype: str, shape: tuple, begin: int, end: int):
        self.dtype, self.shape, self.begin, self.end = dtype, shape, begin, end


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs):
    """json object hook: a key given twice is an error (json.loads would keep the last)."""
    out = {}
    for k, v in pairs:
        if k in out:
            raise _Duplicate(k)
        out[k] = v
    return out


def read_header(f, file_size: int, *, what: str) -> tuple[dict, dict, int]:
    """Parse and validate the header of an open binary file.

    Returns (entries {name: Entry}, metadata {str: str}, data_start).  Every entry is
    checked: a known dtype, a shape of non-negative ints whose byte size equals its range,
    a range inside the buffer; ranges may not overlap.
    """
    if file_size < 8:
        raise FormatError(f"{what}: {file_size} bytes is too short for a safetensors header")
    f.seek(0)
    (n,) = struct.unpack("<Q", f.read(8))
    if n > MAX_HEADER or n > file_size - 8:
        raise FormatError(f"{what}: header claims {n} bytes but the file has {file_size}")
    raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise FormatError(f"{what}: header is not valid JSON ({exc})") from None
    except _Duplicate as exc:
        raise FormatError(f"{what}: header names {exc.args[0]!r} twice") from None
    if not isinstance(header, dict):
        raise FormatError(f"{what}: header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in meta.items()):
        raise FormatError(f"{what}: __metadata__ must map strings to strings")
    data_start = 8 + n
    buf_size = file_size - data_start
    entries = {}
    for name, e in header.items():
        try:
            dtype, shape, (begin, end) = e["dtype"], e["shape"], e["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise FormatError(f"{what}: tensor {name!r} has a malformed header entry") from None
        if dtype not in DTYPES:
            raise FormatError(f"{what}: tensor {name!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise FormatError(f"{what}: tensor {name!r} has invalid shape {shape!r}")
        if not all(isinstance(o, int) and not isinstance(o, bool) for o in (begin, end)) or \
                not 0 <= begin <= end <= buf_size:
            raise FormatError(f"{what}: tensor {name!r} has byte range {begin}..{end} "
                              f"outside the {buf_size}-byte buffer")
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize
        if nbytes != end - begin:
            raise FormatError(f"{what}: tensor {name!r} of shape {shape} {dtype} needs "
                              f"{nbytes} bytes but its range holds {end - begin}")
        entries[name] = Entry(dtype, tuple(shape), begin, end)
    spans = sorted((e.begin, e.end) for e in entries.values() if e.end > e.begin)
    for (_, e0), (b1, _) in zip(spans, spans[1:]):
        if b1 < e0:
            raise FormatError(f"{what}: tensor byte ranges overlap")
    return entries, meta, data_start


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) as float32 values (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 (nearest, ties to even), as uint16 bit patterns."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(x)
    out = rounded.astype(np.uint16)
    out[nan] = 0x7FC0
    return out


def read_array(f, entry: Entry, data_start: int, *, bf16_bits: bool = False) -> np.ndarray:
    """Read one validated entry into memory.  bfloat16 is widened to float32, or returned as
    its uint16 bit patterns when ``bf16_bits``."""
    f.seek(data_start + entry.begin)
    raw = f.read(entry.end - entry.begin)
    if len(raw) != entry.end - entry.begin:
        raise FormatError("file truncated while reading tensor data")
    arr = np.frombuffer(raw, dtype=DTYPES[entry.dtype].newbyteorder("<")).reshape(entry.shape)
    if entry.dtype == "BF16" and not bf16_bits:
        return bf16_to_f32(arr)
    return arr.astype(arr.dtype.newbyteorder("="), copy=True)


def _default_mode() -> int:
    """The permissions a plain open() would give a new file: 0666 less the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def encode(arrays: dict, metadata: dict, *, bf16: frozenset = frozenset(),
           data: bool = True) -> tuple[bytes, list]:
    """(header, blobs): the header as written (padded so the data starts 8-byte aligned,
    as the reference writer) and each array's little-endian bytes (none when not
    ``data``: the header alone, to know a file's size before writing it)."""
    header, offset, blobs = {}, 0, []
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        code = None
        if name in bf16:
            arr = arr if arr.dtype == np.uint16 else f32_to_bf16(arr)
            code = "BF16"
        if arr.dtype not in CODES:
            raise InputError(f"{name}: dtype {arr.dtype} cannot be stored in safetensors")
        nbytes = arr.nbytes
        if data:
            blobs.append(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
        header[name] = {"dtype": code or CODES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = metadata
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return head + b" " * ((-len(head)) % 8), blobs


def write(path: str, arrays: dict, metadata: dict, *, force: bool = False,
          bf16: frozenset = frozenset()) -> int:
    """Write ``arrays`` ({name: ndarray}) and string ``metadata`` atomically.

    Names in ``bf16`` are stored as BF16: uint16 arrays as the bit patterns they are,
    float arrays rounded to nearest (ties to even).
    The data goes to a temporary file in the destination folder, is flushed to disk and
    renamed over ``path`` only when complete: an interrupted write leaves no partial file.
    Refuses an existing ``path`` unless ``force``.  Returns the file size in bytes.
    """
    if os.path.exists(path) and not force:
        raise InputError(f"{path}: exists; pass force=True (--force) to overwrite")
    head, blobs = encode(arrays, metadata, bf16=bf16)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".vqz-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(head)))
            f.write(head)
            for blob in blobs:
                f.write(blob)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), _default_mode())  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return os.path.getsize(path)
