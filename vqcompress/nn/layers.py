"""Layers that compute from codes: LUTLinear and LUTEmbedding.

``LUTLinear`` computes y = x @ W.T + b without the dense W:
- product / residual quantization: per call, a table of partial dot products of each
  input block with every codeword (one small matrix product per stage), then per output
  row a sum of table entries picked by the codes; from BATCH_LOOKUP_FROM inputs on, each
  table entry holds the products of 8 inputs, so one vector add per code read serves
  them all.  On layers with few output rows per table entry (blocks of 8, up to 4
  stages), below CODEWORD_BATCH_UNTIL inputs no tables: each row's codewords are loaded
  and multiplied with the input block by block ("codewords", CODEWORD_ROWS_PER_ENTRY);
- scalar (k-means) codes: per output row, its codes decoded in registers (16 or 32 at a
  time) and multiplied into running sums with the input; at batch 1 no decoded row is
  stored, above it one row at a time, in L1, serves every input.  Codes of at most 16
  entries are held two to a byte (``pack_nibbles``: 4 bits per weight held, not 8) and
  decoded from the packed bytes;
- pruned codes, held as compressed sparse rows where that takes fewer bytes than every
  code (few weights kept): per output row, a gather over its kept entries (pruned
  weights are absent, so a NaN input reaches only the rows that keep a weight on it,
  where a dense product would multiply it by zero and spread it to every row); held as
  every code, pruned ones 0.0, as k-means codes;
- a tensor stored by row groups (``hot_rows``): one layer per member, each computing
  its own output rows;
- for large batches (from ``crossover`` rows of input on) the lookup loses to BLAS on
  layers with few output rows per table entry, and k-means codes from batch 8: the layer then
  decodes ``tile_rows`` rows of W at a time (never all of them) into a buffer that every
  layer called from the same thread shares, and multiplies with BLAS.
"""
from __future__ import annotations

import glob
import threading

import numba
import numpy as np

from .. import rotation
from .._kernels import lut
from .._kernels.simd import LANES
from ..errors import InputError

# Batch size from which the tiled BLAS path is used, per kind, in steps of (from this many
# output rows per table entry, this batch).  A layer's rows per table entry are
# out_features / (K * stages) for product and residual codes: how many rows share the
# work of each table entry the lookup builds (its tables grow with the inputs times
# K * stages, BLAS's work with the inputs times the rows); K for k-means and sparse codes.
# Measured by benchmarks/lut_bench.py with the batch-major lookup, four runs
# (docs/benchmarks.md): PQ with 4 or more rows per entry (1536x384, 4096x4096, 11008x4096
# at 8x256) never ran tiled faster up to batch 64; below that (384x384, 384x1536) tiled
# from 4-64.  RQ at 3 to 21 rows per entry (1536x384, 4096x4096, 11008x4096 at 2x8x256)
# tiled from 32-64 (not up to 64 in one run), below 1 row per entry (384x384, 384x1536)
# from 4 (32 in one run) against the batch-major lookup, from 8 against the codewords
# (lut_bench.py --quick, two runs), which these layers now run below 8.  k-means, its
# codes decoded in registers (lut.scalar_dot), from 8 on the MiniLM shapes (8 or 16 on
# the others; runs T-V in docs/benchmarks.md), where its earlier kernel, bins per
# codeword, lost from batch 1.
# Pruned layers are held as sparse rows only where that takes fewer bytes than every code
# (below about a fifth of the weights kept, a tenth for codes held two to a byte;
# LUTLinear's ``sparse``), and those keep their gather, whose work scales with the kept
# weights: with 10% kept it beat the tiled path up to batch 64 on three of four shapes
# (from 64 on 4096x4096), while with 30% kept the tiled path won from batch 2
# (benchmarks/bench_kernel_parts.py --part 6, one run).
# Pruned layers held as every code run as k-means layers.
CROSSOVER = {"pq": ((0, 16), (4, 1 << 30)), "rq": ((0, 8), (2, 32)), "kmeans": ((0, 8),),
             "sparse": ((0, 1 << 30),), "uniform": ((0, 1),), "raw": ((0, 1),),
             "rows": ((0, 1 << 30),)}  # rows: each member follows its own kind's

# Below this many output rows per table entry (out_features / (K * stages)), a PQ/RQ
# layer with blocks of 8 and at most 4 stages computes calls of fewer than
# CODEWORD_BATCH_UNTIL inputs from its codewords (lut.codeword_rows: one 8-lane load and
# multiply-add per row, block and stage, no tables) instead of the tables' lookup (K *
# stages * 8 multiply-adds of tables per block, then one scalar read and add per row,
# block and stage): the tables pay only when enough rows share them.  Measured at batch
# 1 inside Numba by benchmarks/bench_kernel_parts.py --part 3, two runs: on 384x384 and
# 384x1536 (0.75 rows per entry RQ 2x8x256, 1.5 PQ 8x256) the codewords took 0.71-0.88
# of the lookup's time, on 1536x384 (3 RQ, 6 PQ) 1.05-1.19 and on 4096x4096 (8, 16)
# 1.18-1.40.  In scratch A/Bs at batch 2 and 3 the codewords won on the same 384-row
# layers; at batch 3 on the larger ones too (the tables of three inputs outgrow L1), at
# batch 2 not: one threshold for every batch.
CODEWORD_ROWS_PER_ENTRY = 2
# Such a layer runs the codewords below this batch, and the batch-major lookup from it
# (unless it runs tiled): in the six lut_bench.py runs of the codewords' session the
# batch-major lookup beat the codewords from 8 on 384x384 PQ, from 16 or later on
# 384x1536 PQ and on both RQ layers.
CODEWORD_BATCH_UNTIL = 8

# From this batch on, the PQ/RQ lookup builds its tables batch-major (lut.lookup_batch: a
# table entry holds BATCH inputs, one vector add per code read), below it one table per
# input (lut.lookup).  Measured by benchmarks/lut_bench.py, four runs: from 4 on 384x384
# PQ (8 once), 1536x384 and the LLM-sized shapes (2 twice), from 8 on 384x1536 and on
# 384x384 RQ (4 once).
BATCH_LOOKUP_FROM = 4


def default_crossover(kind: str, rows_per_entry: float) -> int:
    """The batch size from which a ``kind`` layer with ``rows_per_entry`` output rows per
    table entry runs tiled."""
    return [batch for start, batch in CROSSOVER[kind] if rows_per_entry >= start][-1]


# The kinds with a lookup kernel; the others always run tiled (or are raw, or row groups).
LOOKUP_KINDS = ("pq", "rq", "kmeans", "sparse")
# Rows of W the tiled path decodes at a time: at least TILE_ROWS, more while a tile holds
# at most TILE_FLOATS weights, and fewer than the layer has.  At batch 64 in
# benchmarks/bench_kernel_parts.py (part 5, three runs), 768-row tiles beat 256 on
# 1536x384 in eight rows of nine (PQ, RQ, k-means; by 6-17%), 256 to 768 rows ran within
# 7% of each other on 4096x4096, and 128 rows were slower everywhere.
TILE_ROWS = 256
TILE_FLOATS = 768 * 384


def default_tile_rows(out_features: int, in_features: int) -> int:
    """Rows of W a layer's tiled path decodes at a time (see TILE_FLOATS)."""
    rows = max(TILE_ROWS, TILE_FLOATS // max(1, in_features))
    if rows < out_features:
        return rows
    return TILE_ROWS if TILE_ROWS < out_features else max(1, -(-out_features // 2))


_scratch = threading.local()


def _tile_buffer(rows: int, cols: int) -> np.ndarray:
    """The calling thread's tile buffer as a (rows, cols) float32 array.  One per thread,
    shared by every layer (a call is done with it when it returns), grown to the largest
    tile asked for: a model's layers hold their codes, not one tile each."""
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.size < rows * cols:
        buf = _scratch.buf = np.empty(rows * cols, dtype=np.float32)
    return buf[: rows * cols].reshape(rows, cols)


def tile_buffer_nbytes() -> int:
    """Bytes of the calling thread's tile buffer (0 before its first tiled call)."""
    buf = getattr(_scratch, "buf", None)
    return 0 if buf is None else int(buf.nbytes)


# Below this many multiply-or-gathers a call runs the serial kernels: a second thread did
# not pay there, even with TBB starting a region in 2 us (benchmarks/bench_kernel_parts.py;
# the results are the same either way).
PARALLEL_WORK = 1 << 18


def _l1_data_bytes(root: str = "/sys/devices/system/cpu/cpu0/cache",
                   default: int = 32 * 1024) -> int:
    """The first CPU's level-1 data cache in bytes, as Linux reports it (else ``default``)."""
    for d in sorted(glob.glob(f"{root}/index*")):
        try:
            with open(f"{d}/level") as f_level, open(f"{d}/type") as f_type, \
                    open(f"{d}/size") as f_size:
                if f_level.read().strip() == "1" and f_type.read().strip() == "Data":
                    size = f_size.read().strip().upper()
                    return int(size[:-1]) * 1024 if size.endswith("K") else int(size)
        except (OSError, ValueError):
            continue
    return default


# The lookup takes as many code positions at a time as keep their tables (at batch 1) within
# this many bytes (half of the L1 data cache: 24 KiB on the 48 KiB of the Xeon the kernels
# were first tuned on, 16 KiB on a Zen 3's 32 KiB), over all rows, before moving on.
L1_TABLE_BYTES = _l1_data_bytes() // 2


def chunk_codes(codes: np.ndarray, chunk: int) -> np.ndarray:
    """(rows, P) codes -> (ceil(P / chunk), ceil(rows / LANES), chunk, LANES): position chunk
    c, row block r holds the codes of rows LANES*r .. LANES*r + LANES-1 side by side at
    positions chunk*c .. chunk*c + chunk-1 (extra rows and positions get code 0, never
    read).  The lookup reads one chunk of positions for every row before the next, so each
    chunk is one contiguous run: with positions inner for whole rows instead, a large
    layer's pass over a chunk would touch a new page for every row block.  The row
    decoder reaches a row's positions across chunks through a table of offsets."""
    rows, P = codes.shape
    nr, nc = -(-rows // LANES), -(-P // chunk)
    out = np.zeros((nr * LANES, nc * chunk), dtype=codes.dtype)
    out[:rows, :P] = codes
    return np.ascontiguousarray(out.reshape(nr, LANES, nc, chunk).transpose(2, 0, 3, 1))


def pack_nibbles(codes: np.ndarray) -> np.ndarray:
    """(rows, n) codes below 16 -> (rows, n // 64 * 32 + n % 64) uint8, two codes to a byte
    (lut.NIBBLE_GROUP): in each group of 64, code i in the low four bits of byte i and code
    i + 32 in the high four, so that one 32-byte load and a shift or a mask give 32 codes
    in order; the last n % 64 codes a byte each."""
    rows, n = codes.shape
    g, half = lut.NIBBLE_GROUP, lut.NIBBLE_GROUP // 2
    whole = n // g * g
    grouped = codes[:, :whole].astype(np.uint8).reshape(rows, -1, 2, half)
    packed = (grouped[:, :, 0] | (grouped[:, :, 1] << 4)).reshape(rows, -1)
    return np.ascontiguousarray(np.concatenate([packed, codes[:, whole:].astype(np.uint8)], 1))


_FLOAT32 = np.dtype(np.float32)


def _aligned(a: np.ndarray, align: int = 64) -> np.ndarray:
    """A C-contiguous copy of ``a`` whose data starts on an ``align``-byte boundary (a view
    into a buffer up to ``align`` bytes longer): 8-float codewords then never straddle a
    cache line, which made lut.codeword_rows faster than at 16 bytes past one (scratch)."""
    buf = np.empty(a.nbytes + align, dtype=np.uint8)
    start = -buf.ctypes.data % align
    out = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def _as_input(x, n_in: int, name: str) -> tuple[np.ndarray, tuple | None]:
    """(x as C-contiguous float32 (B, n_in), its leading shape or None when x was already
    that) or InputError."""
    if (type(x) is np.ndarray and x.dtype is _FLOAT32 and x.ndim == 2
            and x.shape[1] == n_in and x.flags.c_contiguous):
        return x, None  # already what the kernels take (most calls: 1.3 us saved)
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise InputError(f"{name}: input dtype {x.dtype} is not floating point")
    if x.ndim == 0 or x.shape[-1] != n_in:
        raise InputError(f"{name}: input has last dimension {x.shape[-1] if x.ndim else None},"
                         f" expected {n_in}")
    lead = x.shape[:-1]
    return np.ascontiguousarray(x.reshape(-1, n_in), dtype=np.float32), lead


def _csr_nbytes(codes: np.ndarray) -> int:
    """Bytes of (rows, n) codes held as compressed sparse rows of their nonzero codes, as
    LUTLinear holds them: 8-byte row starts, 4-byte column indices and the codes."""
    return (codes.shape[0] + 1) * 8 + int(np.count_nonzero(codes)) * (4 + codes.itemsize)


def _packs_nibbles(entries: int) -> bool:
    """Whether LUTLinear holds k-means codes of ``entries`` codewords two to a byte
    (pack_nibbles): at most 16, so that a code fits in four bits."""
    return entries <= 16


def _kmeans_codes_nbytes(codes: np.ndarray, entries: int) -> int:
    """Bytes of (rows, n) codes of ``entries`` codewords held as every code, as LUTLinear
    holds k-means codes (pack_nibbles' width where they are packed)."""
    if not _packs_nibbles(entries):
        return int(codes.nbytes)
    rows, n = codes.shape
    return rows * (n // lut.NIBBLE_GROUP * (lut.NIBBLE_GROUP // 2) + n % lut.NIBBLE_GROUP)


class LUTLinear:
    """y = x @ W.T + b from a compressed weight (a CompressedTensor of rank 2).

    Parameters
    ----------
    tensor : CompressedTensor, the weight (out_features, in_features)
    bias : ndarray of shape (out_features,), optional
    crossover : int, optional, batch size from which the tiled BLAS path runs
    tile_rows : int, optional, rows of W decoded at a time on that path (by default
        ``default_tile_rows``)
    sparse : bool, optional, for a pruned weight: hold its kept codes as compressed sparse
        rows (True) or every code, pruned ones as code 0 for 0.0, as a k-means layer does
        (False).  By default, whichever holds fewer bytes: the rows' column indices take 4
        bytes per kept weight, so below about one weight kept in five (in ten for codes
        of at most 16 entries, held two to a byte).  A NaN input then
        reaches only the rows that keep a weight on it; with every code it reaches every
        row, as in ``x @ dense_weight().T``.
    """

    def __init__(self, tensor, bias=None, *, crossover: int | None = None,
                 tile_rows: int | None = None, sparse: bool | None = None):
        if len(tensor.shape) != 2:
            raise InputError(f"{tensor.name}: LUTLinear needs a 2-D weight, got {tensor.shape}")
        self.name = tensor.name
        self.out_features, self.in_features = (int(s) for s in tensor.shape)
        self.method = tensor.method
        self.kind = tensor.method
        if tensor.index_bits:
            codes = tensor.codes.reshape(self.out_features, -1)
            if sparse is None:
                entries = len(tensor.quantizer.codebook_)
                sparse = _csr_nbytes(codes) < _kmeans_codes_nbytes(codes, entries)
            if sparse:
                self.kind = "sparse"
        self.bias = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
        if self.bias is not None and self.bias.shape != (self.out_features,):
            raise InputError(f"{self.name}: bias shape {self.bias.shape}, expected "
                             f"({self.out_features},)")
        # what the lookup kernels start their sums from (length 0: zeros)
        self._bias_arg = np.zeros(0, np.float32) if self.bias is None else self.bias
        self.tile_rows = int(default_tile_rows(self.out_features, self.in_features)
                             if tile_rows is None else tile_rows)
        self.quantizer = tensor.quantizer
        self.signs = tensor.signs  # Hadamard rotation of the inputs (vqcompress.rotation)
        if self.kind == "rows":
            self.members = [LUTLinear(m, crossover=crossover, tile_rows=tile_rows,
                                      sparse=sparse) for m in tensor.members]
            self.groups = tensor.groups
            # row -> its index inside its member
            self.local = np.empty(self.out_features, dtype=np.int32)
            self.member_rows = []
            for g in range(len(self.members)):
                rows = np.flatnonzero(self.groups == g).astype(np.int32)
                self.local[rows] = np.arange(rows.size, dtype=np.int32)
                self.member_rows.append(rows)
        elif self.kind == "raw":
            self.weight = np.ascontiguousarray(tensor.decompress(), dtype=np.float32)
        elif self.kind in ("pq", "rq"):
            q = self.quantizer
            codes = tensor.codes.reshape(self.out_features, -1)
            self.books = _aligned(np.asarray(q.codebooks_, dtype=np.float32))
            n_books, K, d = self.books.shape
            self.n_blocks = q.n_blocks_
            self.stages = codes.shape[1] // self.n_blocks  # M codes per block
            self.per_block = n_books == self.n_blocks and self.stages == 1 and self.n_blocks > 1
            # the codebooks transposed, (n_books, d, Kp), as the table kernel reads them: Kp
            # is K rounded up to a multiple of LANES with zero codewords, never picked (the
            # kernel builds LANES entries at a time).  Codebooks are small, so holding this
            # twin costs little; nbytes counts it.
            Kp = -(-K // LANES) * LANES
            self.books_t = np.zeros((n_books, d, Kp), dtype=np.float32)
            self.books_t[:, :, :K] = np.transpose(self.books, (0, 2, 1))
            # positions per chunk: their tables (Kp floats each) fill L1_TABLE_BYTES at batch
            # 1; whole blocks, so that a block's stages share a chunk
            chunk = max(1, L1_TABLE_BYTES // (Kp * 4) // self.stages) * self.stages
            self.codes = chunk_codes(codes, chunk)
            self._codewords = (d == 8 and self.stages <= 4 and self.out_features
                               < CODEWORD_ROWS_PER_ENTRY * K * self.stages)
        elif self.kind == "kmeans":
            self.codebook = np.ascontiguousarray(self.quantizer.codebook_, dtype=np.float32)
            codes = tensor.codes.reshape(self.out_features, -1)
            # up to 16 entries: two codes to a byte (half the bytes to hold and to read;
            # the kernels decode the packed bytes in place)
            self.codes = (pack_nibbles(codes) if _packs_nibbles(self.codebook.shape[0])
                          else np.ascontiguousarray(codes))
        elif self.kind == "sparse":
            dense_codes = tensor.codes.reshape(self.out_features, -1)
            rows, cols = np.nonzero(dense_codes)
            # unsigned, so that the gather's indexing has no negative-index wraparound
            self.row_ptr = np.concatenate([[0], np.cumsum(np.bincount(
                rows, minlength=self.out_features))]).astype(np.uint64)
            self.cols = cols.astype(np.uint32)
            self.codes = np.ascontiguousarray(dense_codes[rows, cols])
            self.codebook = np.ascontiguousarray(self.quantizer.codebook_, dtype=np.float32)
        else:  # uniform: decoded tile by tile
            self.codes = np.ascontiguousarray(tensor.codes.reshape(self.out_features, -1))
        self.n_weights = self.out_features * self.in_features
        if crossover is None:
            if self.kind in ("pq", "rq"):
                entries = self.books.shape[1] * self.stages
            elif self.kind in ("kmeans", "sparse"):
                entries = self.codebook.shape[0]
            else:
                entries = 1
            crossover = default_crossover(self.kind, self.out_features / entries)
        self.crossover = int(crossover)

    # -- sizes ----------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes this layer holds: codes, codebooks (and sparse columns, bias).  Never the
        dense matrix (raw layers hold their weight, which is what they are); the tiled
        path's buffer belongs to the calling thread, shared by all layers
        (``tile_buffer_nbytes``)."""
        arrays = [getattr(self, a, None) for a in
                  ("weight", "codes", "books", "books_t", "codebook", "row_ptr", "cols",
                   "bias", "signs")]
        total = sum(a.nbytes for a in arrays if a is not None)
        if self.kind in ("pq", "rq"):  # the codebooks' buffer, alignment slack included
            total += self.books.base.nbytes - self.books.nbytes
        if self.kind == "rows":
            total += sum(m.nbytes for m in self.members) + self.groups.nbytes + \
                self.local.nbytes + sum(r.nbytes for r in self.member_rows)
        if self.quantizer is not None and self.kind == "uniform":
            total += sum(v.nbytes for v in self.quantizer.to_parts()[1].values())
        return int(total)

    @property
    def bits_per_weight(self) -> float:
        return self.nbytes * 8 / self.n_weights

    # -- compute ----------------------------------------------------------------------
    def __call__(self, x) -> np.ndarray:
        x2, lead = _as_input(x, self.in_features, self.name)
        if self.signs is not None:  # the codes hold W R: y = (x R)(W R)^T
            x2 = rotation.rotate(x2, self.signs)
        path = self.path(x2.shape[0])
        if path != "tiled":
            y = self._lookup(x2, path)  # its sums start from the bias
        else:
            if self.kind == "raw":
                y = x2 @ self.weight.T
            elif self.kind == "rows":
                y = np.empty((x2.shape[0], self.out_features), dtype=np.float32)
                for m, rows in zip(self.members, self.member_rows):
                    y[:, rows] = m(x2)
            else:
                y = self._tiled(x2)
            if self.bias is not None:
                y += self.bias
        return y if lead is None else y.reshape(*lead, self.out_features)

    def path(self, batch: int) -> str:
        """What a call with ``batch`` inputs runs: "lookup" (a table per input, or the
        k-means and sparse kernels), "codewords" (PQ/RQ from the codewords, no tables),
        "batch lookup" (PQ/RQ tables batch-major) or "tiled" (BLAS on decoded tiles; raw
        and row-group layers, which have no lookup of their own, say "tiled" too)."""
        if self.kind not in LOOKUP_KINDS or batch >= self.crossover:
            return "tiled"
        return self._lookup_path(batch)

    def _lookup_path(self, batch: int) -> str:
        """The lookup kernel for ``batch`` inputs, whatever the crossover."""
        if self.kind not in ("pq", "rq"):
            return "lookup"
        if self._codewords and batch < CODEWORD_BATCH_UNTIL:
            return "codewords"
        return "batch lookup" if batch >= BATCH_LOOKUP_FROM else "lookup"

    def _lookup(self, x2, path=None):
        """x2 @ W.T + bias by the lookup kernels, whose sums start from the bias; for PQ/RQ
        by ``path`` ("lookup", "codewords" or "batch lookup"; by default the one
        ``path`` picks below the crossover)."""
        B = x2.shape[0]
        if path is None:
            path = self._lookup_path(B)
        # the batch-major kernel's work is that of whole blocks of BATCH inputs
        work = -(-B // lut.BATCH) * lut.BATCH if path == "batch lookup" else B
        # k-means codes may be packed two to a byte: their work is one per weight
        per_input = self.n_weights if self.kind == "kmeans" else self.codes.size
        par = work * per_input >= PARALLEL_WORK
        bias = self._bias_arg
        if self.kind in ("pq", "rq"):  # rows come in blocks of LANES, padded
            # asked only when needed: a call to it costs more than a small kernel's dispatch
            tasks = numba.get_num_threads() if par else 1
            # the per-input table kernel reads the codebooks transposed, the others as they are
            books = self.books_t if path == "lookup" else self.books
            args = (x2, books, self.per_block, self.stages, self.codes, bias)
            if path == "batch lookup":
                y = (lut.lookup_batch_parallel(*args, tasks) if par else lut.lookup_batch(*args))
            elif path == "codewords":
                y = (lut.codeword_rows_parallel(*args, tasks) if par
                     else lut.codeword_rows(*args))
            else:
                y = (lut.lookup_parallel(*args, min(self.codes.shape[1], tasks))
                     if par else lut.lookup(*args))
            return y if y.shape[1] == self.out_features else y[:, :self.out_features]
        if self.kind == "kmeans":
            return (lut.scalar_dot_parallel if par else lut.scalar_dot)(
                x2, self.codes, self.codebook, bias)
        return (lut.sparse_gather_parallel if par else lut.sparse_gather)(
            x2, self.row_ptr, self.cols, self.codes, self.codebook, bias)

    def _tiled(self, x2):
        """x2 @ W.T a tile of rows of W at a time: each tile decoded into the thread's
        tile buffer by a serial kernel (BLAS holds the cores; a parallel decode between its
        calls made the whole slower), then multiplied as tile @ x2.T into contiguous rows
        of y.T, which BLAS does faster than into a column slice of y.  x2.T goes to BLAS
        as a view.  A contiguous copy makes each tile's product faster, but copying a wide
        x2.T is slow: at batch 64, with the view, the layer ran 10-12% faster on 384x1536,
        and on 384x384 between 1% faster and 7% slower (benchmarks/bench_kernel_parts.py)."""
        out_t = np.empty((self.out_features, x2.shape[0]), dtype=np.float32)
        buf = _tile_buffer(min(self.tile_rows, self.out_features), self.in_features)
        x_t = x2.T
        for r0 in range(0, self.out_features, self.tile_rows):
            r1 = min(r0 + self.tile_rows, self.out_features)
            tile = buf[: r1 - r0]
            self._decode_into(slice(r0, r1), tile, parallel=False)
            np.matmul(tile, x_t, out=out_t[r0:r1])
        return out_t.T

    def _decode_into(self, rows, out, parallel=None) -> None:
        """Dense rows ``rows`` (a slice or index array) of W into ``out`` (n, in_features),
        by the parallel kernels when ``parallel`` (by default: when the work is large)."""
        par = out.size >= PARALLEL_WORK if parallel is None else parallel
        if self.kind in ("pq", "rq"):
            idx = (np.arange(*rows.indices(self.out_features), dtype=np.int64)
                   if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64))
            (lut.decode_block_rows_parallel if par else lut.decode_block_rows)(
                self.codes, self.books, self.stages, idx, self.in_features, out)
        elif self.kind == "kmeans":
            (lut.decode_scalar_rows_parallel if par else lut.decode_scalar_rows)(
                self.codes[rows], self.codebook, out)
        elif self.kind == "raw":
            out[...] = self.weight[rows]
        elif self.kind == "sparse":
            lut.decode_sparse_rows(self.row_ptr, self.cols, self.codes, self.codebook,
                                   np.arange(self.out_features, dtype=np.int64)[rows], out)
        else:
            out[...] = self.quantizer.decode_rows(self.codes[rows], rows)

    def _decode_rows(self, rows) -> np.ndarray:
        """Rows of W itself (rotated back when the codes hold W R)."""
        idx = np.arange(self.out_features)[rows]
        out = np.empty((idx.size, self.in_features), dtype=np.float32)
        if self.kind == "rows":
            for g, m in enumerate(self.members):
                sel = self.groups[idx] == g
                if sel.any():
                    out[sel] = m._decode_rows(self.local[idx[sel]])
            return out
        self._decode_into(rows, out)
        return out if self.signs is None else rotation.unrotate(out, self.signs)

    def dense_weight(self) -> np.ndarray:
        """The dense float32 weight (out_features, in_features), for checking."""
        return self._decode_rows(slice(0, self.out_features))

    def __repr__(self):
        return (f"LUTLinear({self.name!r}, {self.in_features} -> {self.out_features}, "
                f"{self.kind}, {self.bits_per_weight:.3f} bits/weight held, "
                f"{self.nbytes} bytes)")


class LUTEmbedding:
    """Rows of a compressed (vocab, dim) table, decoding only the rows looked up."""

    def __init__(self, tensor):
        if len(tensor.shape) != 2:
            raise InputError(f"{tensor.name}: LUTEmbedding needs a 2-D table, got {tensor.shape}")
        self.linear = LUTLinear(tensor, crossover=1 << 30)
        self.name = tensor.name
        self.num_embeddings, self.embedding_dim = (int(s) for s in tensor.shape)

    @property
    def nbytes(self) -> int:
        return self.linear.nbytes

    @property
    def bits_per_weight(self) -> float:
        return self.linear.bits_per_weight

    def __call__(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise InputError(f"{self.name}: ids dtype {ids.dtype} is not an integer type")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise InputError(f"{self.name}: ids must lie in [0, {self.num_embeddings})")
        flat = ids.reshape(-1).astype(np.int64)
        uniq, inverse = np.unique(flat, return_inverse=True)
        rows = self.linear._decode_rows(uniq)
        return rows[inverse].reshape(*ids.shape, self.embedding_dim)

    def dense_weight(self) -> np.ndarray:
        return self.linear.dense_weight()

    def __repr__(self):
        return (f"LUTEmbedding({self.name!r}, {self.num_embeddings} x {self.embedding_dim}, "
                f"{self.linear.kind}, {self.nbytes} bytes)")
