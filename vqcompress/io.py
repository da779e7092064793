"""Weight files in: .npy, .npz (never with pickle) and .safetensors (F16, BF16, F32, F64).

``open_weights`` returns a read-only mapping that loads one tensor at a time, so large
files are never held in memory whole.  The file's real format is checked against its
extension by its first bytes.
"""
from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping

import numpy as np

from . import _safetensors as st
from ._safetensors import write as _write_safetensors
from .errors import FormatError, InputError

FORMATS = (".npy", ".npz", ".safetensors")


def sniff(path: str) -> str:
    """The format of ``path`` by its first bytes, checked against its extension."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS + (".vqz",):
        raise InputError(f"{path}: unknown extension {ext!r}; expected one of {FORMATS}")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    actual = ".npy" if head.startswith(b"\x93NUMPY") else ".npz" if head.startswith(b"PK") \
        else ".safetensors" if len(head) == 8 else None
    if ext == ".vqz" and actual == ".safetensors":
        return ".vqz"
    if actual != ext:
        raise FormatError(f"{path}: the extension says {ext} but the content is "
                          f"{actual or 'unrecognised'}")
    return ext


class WeightsFile(Mapping):
    """Read-only {name: ndarray} view of a weight file; tensors load on access."""

    def __init__(self, path: str):
        self.path = path
        self.format = sniff(path)
        self.size = os.path.getsize(path)
        if self.format == ".npy":
            self._names = [os.path.splitext(os.path.basename(path))[0]]
        elif self.format == ".npz":
            try:
                with zipfile.ZipFile(path) as z:
                    self._names = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
            except zipfile.BadZipFile as exc:
                raise FormatError(f"{path}: not a readable .npz ({exc})") from None
        else:
            with open(path, "rb") as f:
                self._entries, self.metadata, self._data_start = st.read_header(
                    f, self.size, what=path)
            self._names = list(self._entries)
        if len(set(self._names)) != len(self._names):
            raise FormatError(f"{path}: duplicate tensor names")

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        try:
            if self.format == ".npy":
                return np.load(self.path, mmap_mode="r", allow_pickle=False)
            if self.format == ".npz":
                with np.load(self.path, allow_pickle=False) as z:
                    return z[name]
        except ValueError as exc:  # pickled object arrays and malformed members
            raise FormatError(f"{self.path}: tensor {name!r} cannot be read without pickle "
                              f"or is malformed ({exc})") from None
        with open(self.path, "rb") as f:
            return st.read_array(f, self._entries[name], self._data_start)

    def stored(self, name: str) -> np.ndarray:
        """The tensor exactly as stored: bfloat16 as its uint16 bit patterns."""
        if self.format == ".safetensors" and self._entries[name].dtype == "BF16":
            with open(self.path, "rb") as f:
                return st.read_array(f, self._entries[name], self._data_start, bf16_bits=True)
        return self[name]

    def _header(self, name: str) -> tuple[tuple, str]:
        """(shape, dtype as stored) from the file's header, without reading the data."""
        if self.format == ".safetensors":
            e = self._entries[name]
            return e.shape, "bfloat16" if e.dtype == "BF16" else str(st.DTYPES[e.dtype])
        z = None
        try:
            if self.format == ".npy":
                f = open(self.path, "rb")
            else:
                z = zipfile.ZipFile(self.path)
                f = z.open(name + ".npy")
            with f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
        except (ValueError, OSError, KeyError, zipfile.BadZipFile) as exc:
            raise FormatError(f"{self.path}: tensor {name!r} has a malformed header "
                              f"({exc})") from None
        finally:
            if z is not None:
                z.close()
        return tuple(shape), str(dtype)

    def shape(self, name: str) -> tuple:
        """The tensor's shape, from the header (no data is read)."""
        return self._header(name)[0]

    def source_dtype(self, name: str) -> str:
        """The dtype as stored in the file ('bfloat16' for BF16, which reads as float32),
        from the header (no data is read)."""
        return self._header(name)[1]

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)


def open_weights(path: str) -> WeightsFile:
    """Open a .npy, .npz or .safetensors weight file for lazy, per-tensor reading."""
    return WeightsFile(os.fspath(path))


def save_weights(path: str, arrays: dict, *, force: bool = False, bf16=()) -> int:
    """Write {name: ndarray} as .safetensors or .npz (atomically); returns the size.

    Names in ``bf16`` are written as bfloat16 (.safetensors only; float values are rounded
    to nearest, uint16 arrays taken as bit patterns)."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".safetensors":
        return _write_safetensors(path, arrays, {}, force=force, bf16=frozenset(bf16))
    if ext != ".npz":
        raise InputError(f"{path}: can write .safetensors or .npz, not {ext!r}")
    if os.path.exists(path) and not force:
        raise InputError(f"{path}: exists; pass force=True (--force) to overwrite")
    tmp = path + ".tmp.npz"
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return os.path.getsize(path)
