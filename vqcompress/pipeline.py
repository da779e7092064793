"""compress(): weight file in, CompressedModel out; CompressedModel.save() writes a .vqz.

Per tensor: float tensors of rank >= 2 with at least ``min_elements`` weights are
quantized; everything else (biases, norms, integer buffers) is stored raw and round-trips
bit for bit, as does any tensor whose compressed form would not be smaller or that has
fewer distinct values than its codebook has entries (with a warning).  NaN or infinite
weights stop the run with an error naming the tensor, before anything is written.
"""
from __future__ import annotations

import os
import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np

from . import calibration as calib
from . import container, output_aware, rotation
from . import prune as prune_mod
from ._safetensors import bf16_to_f32
from ._validation import as_float_array, check_choice, check_int
from .coding import streams
from .coding.sparse import sparse_encode
from .errors import FormatError, InputError, TooFewValuesError, VQCompressError
from .io import open_weights
from .policy import parse_policy, parse_spec, plan_for

METHODS = tuple(container.QUANTIZERS)


@dataclass(repr=False)
class CompressedTensor:
    """One tensor as stored: raw, or a fitted quantizer plus its (unpacked) codes."""

    name: str
    shape: tuple
    dtype: str                   # dtype in the source file ('bfloat16' included)
    method: str                  # 'raw' or one of METHODS
    quantizer: object = None
    codes: np.ndarray | None = None
    raw: np.ndarray | None = None
    coding: str = "none"         # how the code stream is stored: none, huffman or rans
    index_bits: int | None = None  # set: sparse storage with relative indices of this width
    index_coding: str = "none"   # how the relative-index stream is stored
    signs: np.ndarray | None = None  # set: the codes hold W R (vqcompress.rotation)
    groups: np.ndarray | None = None  # method 'rows': the member each row is stored in
    members: list | None = None       # method 'rows': CompressedTensors of those rows
    info: dict = field(default_factory=dict)
    _parts: dict | None = field(default=None, init=False, repr=False)  # cache of the parts

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """Bytes of this tensor's parts in the file (header share not included)."""
        return sum(int(v.nbytes) for v in container.tensor_parts(self).values())

    @property
    def bits_per_weight(self) -> float:
        return self.nbytes * 8 / max(self.size, 1)

    def decompress(self) -> np.ndarray:
        """The dense tensor: raw tensors bit for bit in their dtype; quantized ones as
        float32 (float16 / float64 sources are returned in their own dtype).  numpy has no
        bfloat16: bfloat16 tensors come back as float32 (raw ones with exactly their
        values; ``save_weights(..., bf16=...)`` writes them back as bfloat16)."""
        if self.method == "raw":
            return bf16_to_f32(self.raw) if self.dtype == "bfloat16" else self.raw
        if self.method == "rows":
            dense = np.empty(self.shape, dtype=np.float32)
            for g, m in enumerate(self.members):
                dense[self.groups == g] = m.decompress()
            return dense.astype(self.dtype) if self.dtype in ("float16", "float64") else dense
        dense = self.quantizer.decode(self.codes)
        if self.signs is not None:
            dense = rotation.unrotate(dense.reshape(self.shape[0], -1), self.signs)
        dense = dense.reshape(self.shape)
        if self.dtype in ("float16", "float64"):
            return dense.astype(self.dtype)
        return dense

    @classmethod
    def from_codes(cls, name: str, quantizer, codes, *, dtype: str = "float32",
                   entropy: str = "auto", reference=None, signs=None) -> CompressedTensor:
        """A quantized tensor from a fitted quantizer and its codes, however they were found
        (another library's, say, put into our quantizer's attributes).

        ``dtype`` is the source dtype recorded; ``entropy`` picks the code stream's coding
        as ``compress`` does; with ``reference`` (the original weights) the tensor records
        its SQNR.  With ``signs`` (``rotation.random_signs``) the codes hold W R, the
        weight with its inputs rotated.  Codes are checked against the codebook and the
        fitted shape.
        """
        from .quantizers._base import check_codes, code_dtype

        check_choice(entropy, name=f"tensor {name!r}: entropy",
                     choices=streams.CODINGS + ("auto",))
        quantizer._check_fitted()
        method = next((m for m, c in container.QUANTIZERS.items() if type(quantizer) is c),
                      None)
        if method is None:
            raise InputError(f"tensor {name!r}: {type(quantizer).__name__} is not one of "
                             f"vqcompress's quantizers")
        codes = check_codes(codes, n_entries=1 << quantizer.n_bits, name=f"{name} codes",
                            shape=quantizer.code_shape()).astype(code_dtype(quantizer.n_bits))
        coding, stream = streams.choose(codes, quantizer.n_bits, entropy)
        t = cls(name, tuple(quantizer.shape_), dtype, method, quantizer=quantizer,
                codes=codes, coding=coding)
        if signs is not None:
            n_in = int(np.prod(t.shape[1:]))
            if len(t.shape) < 2:
                raise InputError(f"tensor {name!r}: a rotation needs rank 2 or more")
            t.signs = rotation.check_signs(np.asarray(signs), n_in, name=f"tensor {name!r}")
        container.set_parts(t, stream)
        t.info["codes"] = {"coding": coding, **streams.stats(codes, quantizer.n_bits, stream)}
        if reference is not None:
            t.info["sqnr_db"] = _sqnr_db(np.asarray(reference, np.float32), t.decompress())
        return t

    def set_coding(self, codes: str, index: str | None = None) -> None:
        """Store the code stream (and a sparse tensor's index stream) with another coding:
        'none', 'huffman' or 'rans'.  The streams are re-coded when next needed."""
        for which, value in (("codes", codes), ("index", index)):
            if value is not None and value not in streams.CODINGS:
                raise InputError(f"tensor {self.name!r}: {which} coding must be one of "
                                 f"{list(streams.CODINGS)}, got {value!r}")
        if self.method == "raw":
            return
        if self.method == "rows":
            for m in self.members:
                m.set_coding(codes, index)
        self.coding = codes
        if self.index_bits and index is not None:
            self.index_coding = index
        self._parts = None

    def set_codebook(self, codebook) -> None:
        """Replace a kmeans tensor's shared values, keeping its codes: what centroid
        fine-tuning (Deep Compression, section 3.3) produces.

        ``codebook`` has the tensor's 2**n_bits entries; it is stored in the codebook dtype,
        and with a zero codeword (sparse tensors) entry 0 must stay 0.0.  Entries are
        re-sorted (codes remapped) so the codebook stays ordered.  The SQNR measured at
        compression no longer applies and is dropped.
        """
        if self.method != "kmeans":
            raise InputError(f"tensor {self.name!r}: set_codebook needs a kmeans tensor, "
                             f"not {self.method!r}")
        q = self.quantizer
        book = as_float_array(codebook, name=f"{self.name} codebook", ndim=1)
        if book.shape != q.codebook_.shape:
            raise InputError(f"tensor {self.name!r}: codebook has {book.shape[0]} entries, "
                             f"expected {q.codebook_.shape[0]}")
        book = book.astype(q.codebook_.dtype)
        if not np.isfinite(book).all():
            raise InputError(f"tensor {self.name!r}: codebook has values out of the range "
                             f"of {book.dtype}")
        start = 1 if q.zero_codeword else 0
        if start and book[0] != 0:
            raise InputError(f"tensor {self.name!r}: entry 0 is the zero codeword and must "
                             f"stay 0.0")
        order = np.concatenate([np.arange(start), start + np.argsort(book[start:],
                                                                     kind="stable")])
        remap = np.empty_like(order)
        remap[order] = np.arange(order.size)
        q.codebook_ = book[order]
        self.codes = remap[self.codes].astype(self.codes.dtype)
        self.info.pop("sqnr_db", None)
        self._parts = None

    def __repr__(self):
        return (f"CompressedTensor({self.name!r}, shape={self.shape}, method={self.method!r}, "
                f"{self.bits_per_weight:.3f} bits/weight, {self.nbytes} bytes)")


class CompressedModel:
    """{name: CompressedTensor}, with save/decompress/report."""

    def __init__(self, tensors: dict, *, source_bytes: int | None = None,
                 path: str | None = None):
        self.tensors = dict(tensors)
        self.source_bytes = source_bytes
        self.path = path
        self.file_bytes = os.path.getsize(path) if path else None

    def __getitem__(self, name) -> CompressedTensor:
        return self.tensors[name]

    def __iter__(self):
        return iter(self.tensors)

    def __len__(self):
        return len(self.tensors)

    def save(self, path: str, *, force: bool = False, verify: bool = True) -> int:
        """Write the .vqz file atomically; returns (and remembers) its size in bytes.

        With ``verify`` (default) the file is read back through the validating reader and
        every part compared with what was meant to be written; on any difference the file
        is removed and FormatError raised.
        """
        path = os.fspath(path)
        size = container.write(path, self.tensors, force=force)
        if verify:
            try:
                _verify_written(path, self.tensors)
            except BaseException:
                os.unlink(path)
                raise
        self.file_bytes, self.path = size, path
        return size

    def verify(self) -> None:
        """Decode every tensor to dense and check shape and finiteness (FormatError)."""
        for name, t in self.tensors.items():
            dense = t.decompress()
            if tuple(dense.shape) != tuple(t.shape):
                raise FormatError(f"tensor {name!r}: decodes to {dense.shape}, not {t.shape}")
            if dense.dtype.kind == "f" and not np.isfinite(dense).all():
                raise FormatError(f"tensor {name!r}: decodes to non-finite values")

    def decompress(self) -> dict:
        """{name: dense ndarray} for every tensor."""
        return {n: t.decompress() for n, t in self.tensors.items()}

    def bf16_names(self) -> list:
        """Tensors whose source dtype was bfloat16 (to write back as such)."""
        return [n for n, t in self.tensors.items() if t.dtype == "bfloat16"]

    def report(self) -> dict:
        """Per-tensor rows and file totals.  Totals come from the real file when the model
        was saved or loaded; bits per weight there counts every byte of the file."""
        rows = []
        shares = container.header_shares(self.tensors)
        for n, t in self.tensors.items():
            head = shares[n]
            nbytes = t.nbytes
            rows.append({"name": n, "shape": list(t.shape), "method": t.method,
                         "bits": getattr(t.quantizer, "n_bits", None),
                         "coding": t.coding if t.method != "raw" else None,
                         "codes_stream": t.info.get("codes"),
                         "index_stream": t.info.get("index"),
                         "sparsity": t.info.get("sparsity") if t.index_bits else None,
                         "raw_reason": t.info.get("raw_reason"),
                         "bytes": nbytes, "header_bytes": head,
                         "bits_per_weight": (nbytes + head) * 8 / max(t.size, 1),
                         "sqnr_db": t.info.get("sqnr_db"),
                         "setting": _setting(t),
                         "output_sqnr_db": _output_sqnr(t.info.get("calibration")),
                         "allocated": "allocation" in t.info})
        n_weights = sum(t.size for t in self.tensors.values())
        totals = {"tensors": len(rows), "weights": n_weights,
                  "source_bytes": self.source_bytes, "file_bytes": self.file_bytes}
        if self.file_bytes:
            totals["bits_per_weight"] = self.file_bytes * 8 / max(n_weights, 1)
            if self.source_bytes:
                totals["ratio"] = self.source_bytes / self.file_bytes
        return {"tensors": rows, "totals": totals}

    def __repr__(self):
        size = f"{self.file_bytes} bytes" if self.file_bytes else "not saved"
        return f"CompressedModel({len(self)} tensors, {size})"


def _setting(t) -> str | None:
    """A tensor's setting in short: kmeans 4, pq 8x2 (bits x block), rq 8x8x2 (bits x block
    x stages), uniform 4; '+h' when its inputs are rotated."""
    if t.method == "rows":
        return " | ".join(_setting(m) or m.method for m in t.members)
    q = t.quantizer
    if q is None:
        return None
    text = {"pq": lambda: f"pq {q.n_bits}x{q.block_size}",
            "rq": lambda: f"rq {q.n_bits}x{q.block_size}x{q.n_stages}"}.get(
        t.method, lambda: f"{t.method} {q.n_bits}")()
    return text + ("+h" if t.signs is not None else "")


def _output_sqnr(calibrated) -> float | None:
    err = (calibrated or {}).get("output_error")
    return round(float(-10 * np.log10(err)), 3) if err else None


def _verify_written(path, tensors) -> None:
    back = container.read(path)
    if set(back) != set(tensors):
        raise FormatError(f"{path}: verification failed: tensor names differ")
    for name, t in tensors.items():
        a, b = container.tensor_parts(t), container.tensor_parts(back[name])
        if set(a) != set(b) or any(a[k].dtype != b[k].dtype or not np.array_equal(a[k], b[k])
                                   for k in a):
            raise FormatError(f"{path}: verification failed for tensor {name!r}")


def load(path: str) -> CompressedModel:
    """Read and validate a .vqz file."""
    path = os.fspath(path)
    return CompressedModel(container.read(path), path=path)


def compress(weights_or_path, *, method: str = "kmeans", bits: int = 4, block_size: int = 8,
             stages: int = 2, beam_size: int = 8, group_size="channel", symmetric: bool = False,
             hadamard: bool = False, entropy_lambda: float = 0.0,
             codebook_dtype: str = "float16", init: str = "optimal", entropy: str = "auto",
             prune: float | None = None, index_bits: int | None = None,
             min_elements: int = 1024, random_state: int | None = 0, policy=None,
             calibration=None, correction: float = 0.5, refit_rounds: int = 1,
             target_bits_per_weight: float | None = None,
             candidates=None, sensitivity=None, executor=None,
             progress=None) -> CompressedModel:
    """Compress every eligible tensor of a weight file or {name: array} mapping.

    Parameters
    ----------
    weights_or_path : str, os.PathLike or mapping of name -> ndarray
    method : {'kmeans', 'pq', 'rq', 'uniform'}
    bits : int, bits per code (per weight for kmeans/uniform; per block for pq; per block
        and stage for rq)
    block_size, stages, beam_size : pq / rq settings
    group_size : uniform grouping ('tensor', 'channel' or an int)
    symmetric : uniform grid: False is affine (an n_bits zero point per group, as GPTQ);
        True is one signed scale per group and no zero point (as GGUF's Q4_0 / Q8_0)
    hadamard : rotate each quantized tensor's input dimension by a randomized Hadamard
        transform first (``vqcompress.rotation``; its signs are stored, one bit per
        input); the nn layers rotate their input instead of the weight back
    codebook_dtype : {'float16', 'float32'} storage of codebooks
    init : kmeans initialisation: 'optimal' (exact 1-D k-means, the default) or one of
        'linear' (Deep Compression's choice), 'density', 'random', 'kmeans++'
    entropy : {'auto', 'none', 'huffman', 'rans'}
        How each code stream is stored: packed at its bit width, Huffman or rANS coded;
        'auto' keeps the smallest per stream (tables included).
    entropy_lambda : float >= 0, kmeans only (other methods ignore it, as they ignore
        ``init``): above 0, entropy-constrained assignment
        (``KMeansQuantizer``, ``vqcompress.ecsq``): fewer bits once entropy coded, at some
        error; larger is smaller.  With a wide codebook (bits 5-6) it sets the rate.
    prune : float in [0, 1), optional
        Magnitude-prune each compressed tensor to this sparsity (0.0 keeps the zeros it
        already has: an already pruned model), then share weights among
        the survivors (method 'kmeans', code 0 reserved for zero) and store them sparse:
        codes and relative indices, each stream coded separately (Deep Compression).
    index_bits : int, optional
        Width of a relative index: default 5 for linear layers and 8 for convolutions (as
        the paper); longer gaps get filler zeros.
    min_elements : smaller tensors are stored raw
    random_state : seed; the same input and seed give the same file
    policy : per-tensor rules (see ``vqcompress.policy``): 'PATTERN=SPEC' strings, (pattern,
        spec) pairs or {pattern: spec}; the first match overrides the options above, and
        'skip' stores a tensor as it is.
    calibration : mapping or path, optional
        Per tensor name, what the layer's inputs look like: a ``calibration.Stats``
        (``vqcompress.nn.Recorder`` collects them while a model runs), activations X
        (n, in_features) or a 1-D importance vector; or the path of a file written by
        ``calibration.save``.  Those 2-D tensors are quantized for the error of their
        output on such inputs (see ``vqcompress.output_aware``; methods kmeans, pq and rq,
        no pruning); the policy option ``calibrate:false`` opts a tensor out.  A table's
        ``calibration.RowCounts`` (how often each row was looked up) serve the policy
        option ``hot_rows:N``: the N most used rows (``calibration.rank_rows``) and the
        others are stored with settings of their own (see ``vqcompress.policy``); without
        it they are unused.
    correction : float in [0, 1], for calibration statistics recorded with reference
        inputs (``calibration.Stats.add(X, reference=R)``: X as the layer sees them in a
        partly quantized model, R in the original): how far the quantizer's target moves
        from W toward the weight that best reproduces the original output on X
        (``Stats.target``); 0 ignores the reference.  See ``vqcompress.sequential``.
    refit_rounds : int >= 1, calibrated tensors: how many times GPTQ-style assignment and
        the least-squares codebook refit alternate (the best round is kept; see
        ``vqcompress.output_aware``).  Each round costs about one more fit.
    target_bits_per_weight : float, optional
        A budget for the whole file (its bytes × 8 / all values).  Every eligible tensor no
        policy rule names is compressed with each of ``candidates`` and the combination
        of least total relative error within the budget is kept (see
        ``vqcompress.allocate``); tensors a rule names keep their rule.
    candidates : specs ('key:value,...' as in a policy) the allocation chooses from;
        default kmeans at 2, 3, 4, 5, 6 and 8 bits.
    sensitivity : {name: weight}, optional: how much each tensor's relative error counts
        in the allocation (default 1 each).
    executor : concurrent.futures.Executor, optional
        Compress tensors in parallel.  Needs a file path: each task carries the path, a
        tensor name and the options, never arrays, so any executor (a process pool, a
        cluster's) can run it.  The result is the same, byte for byte, as without.
    progress : callable(name, n_weights) called before each tensor, or None
    """
    defaults = {"method": method, "bits": bits, "block_size": block_size, "stages": stages,
                "beam_size": beam_size, "group_size": group_size, "symmetric": symmetric,
                "hadamard": hadamard, "entropy_lambda": entropy_lambda,
                "codebook_dtype": codebook_dtype, "init": init, "entropy": entropy,
                "prune": prune,
                "index_bits": index_bits, "min_elements": min_elements, "seed": random_state,
                "correction": correction, "refit_rounds": refit_rounds}
    rules = parse_policy(policy)
    if isinstance(weights_or_path, (str, os.PathLike)):
        path = os.fspath(weights_or_path)
        src = open_weights(path)
        source_bytes = src.size
    else:
        if executor is not None:
            raise InputError("executor needs a weight file path: tasks carry a path and a "
                             "tensor name, not arrays")
        path, src = None, weights_or_path
        source_bytes = sum(np.asarray(v).nbytes for v in src.values())
    plans = {name: plan_for(name, rules, defaults) for name in src}
    for name, opts in plans.items():
        if opts.get("hot_rows") is not None and not opts.get("skip"):
            check_int(opts["hot_rows"], name=f"tensor {name!r}: hot_rows", low=1)
            cold = plan_for(f"{name}#cold", rules, defaults)
            cold.pop("hot_rows", None)
            _check_options(f"{name}#cold", cold)
            opts["cold"] = cold
        _check_options(name, opts)
    stats = _calibration_for(calibration, src, path, plans)
    if target_bits_per_weight is not None:
        out = _allocated(src, path, plans, stats, target_bits_per_weight, candidates,
                         sensitivity or {}, executor, progress)
    else:
        out = _each_compressed(src, path, plans, stats, executor, progress)
    # the tensors' warnings, given here: in the caller's process, whichever path (or
    # worker process) compressed them
    for t in out.values():
        for message in t.info.get("warnings", ()):
            warnings.warn(message, stacklevel=2)
    return CompressedModel(out, source_bytes=source_bytes)


def _each_compressed(src, path, plans, stats, executor, progress) -> dict:
    """Every tensor compressed at its plan's setting, serially or as tasks on
    ``executor``, in file order."""
    if executor is None:
        out = {}
        for name in src:
            arr = np.asarray(src[name])
            if progress:
                progress(name, arr.size)
            out[name] = _compress_one(name, src, path, arr, plans[name], stats.get(name))
        return out
    futures = {name: executor.submit(compress_task, path, name, plans[name], stats.get(name))
               for name in src}
    out = {}
    for name, fut in futures.items():  # in file order, whatever order they finish in
        if progress:
            progress(name, int(np.prod(src.shape(name))))
        out[name] = fut.result()
    return out


def worker_pool(jobs: int):
    """A process pool of ``jobs`` workers for ``compress(executor=...)`` (None for 1),
    each with its share of the cores for Numba and for BLAS, so the workers do not
    oversubscribe the machine."""
    if jobs <= 1:
        return None
    import concurrent.futures as cf
    import multiprocessing as mp

    threads = max(1, (os.cpu_count() or 1) // jobs)
    return cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"),
                                  initializer=_worker_init, initargs=(threads,))


def _worker_init(threads: int):
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    # OpenBLAS threads spin while they wait, so workers each with a BLAS pool as wide as
    # the machine slow each other down.
    threadpool_limits(threads)


def compress_task(path: str, name: str, options: dict, stats=None) -> CompressedTensor:
    """One unit of parallel work: read tensor ``name`` from ``path`` and compress it
    (with its calibration ``stats``, if any)."""
    src = open_weights(path)
    return _compress_one(name, src, path, np.asarray(src[name]), options, stats)


def _allocated(src, path, plans, stats, target, candidates, sensitivity, executor,
               progress) -> dict:
    """Every tensor compressed, the allocatable ones at the candidate setting chosen by
    ``allocate.choose`` for the budget of ``target`` bits per weight over the file."""
    from . import allocate

    if isinstance(target, bool) or not isinstance(target, (int, float)) or \
            not 0 < target < 64:
        raise InputError(f"target_bits_per_weight must be a number in (0, 64), got {target!r}")
    specs = [c if isinstance(c, str) else ",".join(f"{k}:{v}" for k, v in c.items())
             for c in (candidates or allocate.DEFAULT_CANDIDATES)]
    overlays = [parse_spec(c, where=f"candidate {c!r}") for c in specs]
    if not overlays or any(o.get("skip") or "hot_rows" in o for o in overlays):
        raise InputError("candidates: give at least one spec, and no 'skip' or 'hot_rows' "
                         "(a policy rule splits a table)")
    unknown = set(sensitivity) - set(plans)
    if unknown:
        raise InputError(f"sensitivity names tensors not in the weights: {sorted(unknown)[:4]}")
    jobs = []  # (name, options, stats, candidate index or None)
    for name, o in plans.items():
        if _allocatable(name, src, path, o):
            for i, overlay in enumerate(overlays):
                opts = {**o, **overlay}
                _check_options(name, opts)
                jobs.append((name, opts, stats.get(name) if _calibrates(opts) else None, i))
        else:
            jobs.append((name, o, stats.get(name), None))
    if executor is None:
        results = []
        for name, opts, st_, i in jobs:
            arr = np.asarray(src[name])
            if progress and not i:  # once per tensor, however many candidates
                progress(name, arr.size)
            results.append(_compress_one(name, src, path, arr, opts, st_))
    else:
        futures = [executor.submit(compress_task, path, n, o, st_) for n, o, st_, _ in jobs]
        results = [f.result() for f in futures]
    fixed, options, points = {}, {}, {}
    for (name, _, _, i), t in zip(jobs, results):
        if i is None:
            fixed[name] = t
            continue
        if name not in options:
            W = np.asarray(src[name], np.float32)
        options.setdefault(name, []).append(t)
        err = allocate.relative_error(W, t, stats.get(name))
        points.setdefault(name, []).append((t.nbytes, float(sensitivity.get(name, 1.0)) * err))
    n_values = sum(t.size for t in fixed.values()) + sum(v[0].size for v in options.values())
    budget = target * n_values / 8

    def assemble(chosen):
        return {n: fixed[n] if n in fixed else options[n][chosen[n]] for n in plans}

    smallest = {n: allocate.hull(p)[0] for n, p in points.items()}
    overhead = container.file_size(assemble(smallest)) - \
        sum(points[n][i][0] for n, i in smallest.items())
    chosen = allocate.choose(points, budget - overhead)
    while chosen is None or container.file_size(assemble(chosen)) > budget:
        if chosen is None or allocate.step_down(points, chosen) is None:
            least = container.file_size(assemble(smallest)) * 8 / n_values
            raise InputError(f"target_bits_per_weight {target}: the smallest candidates "
                             f"already need {least:.3f} bits per weight")
    out = assemble(chosen)
    for n, i in chosen.items():
        out[n].info["allocation"] = {"candidate": specs[i], "weighted_error": points[n][i][1],
                                     "candidates": len(specs)}
    return out


def _allocatable(name, src, path, o) -> bool:
    """Whether the allocation may choose this tensor's setting: eligible for quantization
    and named by no policy rule."""
    if o.get("ruled"):
        return False
    if path:
        shape, dtype = src.shape(name), src.source_dtype(name)
    else:
        arr = np.asarray(src[name])
        shape, dtype = arr.shape, str(arr.dtype)
    return _raw_reason(o, dtype, shape) is None


def _raw_reason(o, dtype: str, shape) -> str | None:
    """Why options ``o`` store a tensor of this dtype and shape raw, or None: skipped,
    not float, a scalar or a vector no rule names, or too small."""
    kind = "f" if dtype == "bfloat16" else np.dtype(dtype).kind
    return ("policy skip" if o.get("skip") else f"{dtype} dtype" if kind != "f"
            else f"rank {len(shape)}" if len(shape) == 0 or (len(shape) == 1 and not o.get("ruled"))
            else f"under {o['min_elements']} weights" if int(np.prod(shape)) < o["min_elements"]
            else None)


def _calibration_for(calibration, src, path, plans) -> dict:
    """{name: Stats} for the tensors that will be quantized output-aware, validated
    against the tensors' shapes and options before any work starts."""
    if calibration is None:
        calibration = {}
    elif isinstance(calibration, (str, os.PathLike)):
        calibration = calib.load(calibration)
    out = {}
    for name, value in calibration.items():
        if name not in plans:
            raise InputError(f"calibration names tensor {name!r}, which is not in the weights")
        o = plans[name]
        if o.get("skip") or not o.get("calibrate", True):
            continue
        shape = tuple(src.shape(name)) if path else np.shape(src[name])
        if isinstance(value, calib.RowCounts):
            if o.get("hot_rows") is not None:
                out[name] = value.for_rows(shape[0] if shape else 0, name=name)
            continue
        if len(shape) != 2:
            raise InputError(f"tensor {name!r}: calibration needs a 2-D weight, not {shape}")
        if not _calibrates(o):
            raise InputError(f"tensor {name!r}: calibration works with methods kmeans, pq "
                             f"and rq without pruning; opt it out with calibrate:false")
        stats = calib.as_stats(value, name=name, in_features=shape[1])
        if not np.diag(stats.hessian()).any():
            warnings.warn(f"tensor {name!r}: its calibration inputs are all zero; quantized "
                          f"without calibration", stacklevel=3)
            continue
        out[name] = stats
    missing = [n for n, o in plans.items()
               if o.get("hot_rows") is not None and not o.get("skip") and n not in out]
    if missing:
        raise InputError(f"tensor {missing[0]!r}: hot_rows needs the table's row counts "
                         f"(calibration.RowCounts, which nn.Recorder records from ids)")
    return out


def _calibrates(o) -> bool:
    """Whether options ``o`` can use calibration (output_aware's kinds, unpruned)."""
    return o["method"] in ("kmeans", "pq", "rq") and o["prune"] is None


def _check_options(name, o):
    where = f"tensor {name!r}"
    if o.get("skip"):
        return
    if o["method"] not in METHODS:
        raise InputError(f"{where}: method must be one of {list(METHODS)}, got {o['method']!r}")
    if o["entropy"] not in streams.CODINGS + ("auto",):
        raise InputError(f"{where}: entropy must be one of "
                         f"{list(streams.CODINGS) + ['auto']}, got {o['entropy']!r}")
    if o["prune"] is not None:
        if o["method"] != "kmeans":
            raise InputError(f"{where}: prune works with method='kmeans' (sparse storage of "
                             f"scalar codes)")
        prune_mod._check_fraction(o["prune"], "prune")
    if o["index_bits"] is not None:
        check_int(o["index_bits"], name="index_bits", low=1, high=16)
    if o.get("entropy_lambda") and o["method"] == "kmeans" and o["prune"] is not None:
        raise InputError(f"{where}: entropy_lambda does not combine with prune (sparse "
                         f"codes reserve code 0)")
    if o.get("hadamard") and o["prune"] is not None:
        raise InputError(f"{where}: a Hadamard rotation would undo the pruning (rotated "
                         f"weights are dense); use one or the other")
    check_int(o.get("refit_rounds", 1), name=f"{where}: refit_rounds", low=1)
    prune_mod._check_fraction(o.get("correction", 0.0), f"{where}: correction",
                              high_open=False)


def _quantizer(o, sparse):
    q = container.QUANTIZERS[o["method"]]
    if o["method"] == "kmeans":
        return q(n_bits=o["bits"], init=o["init"], codebook_dtype=o["codebook_dtype"],
                 zero_codeword=sparse, random_state=o["seed"],
                 entropy_lambda=o.get("entropy_lambda") or 0.0)
    if o["method"] == "pq":
        return q(block_size=o["block_size"], n_bits=o["bits"], codebook_dtype=o["codebook_dtype"],
                 random_state=o["seed"])
    if o["method"] == "rq":
        return q(block_size=o["block_size"], n_bits=o["bits"], n_stages=o["stages"],
                 beam_size=o["beam_size"], codebook_dtype=o["codebook_dtype"],
                 random_state=o["seed"])
    return q(n_bits=o["bits"], group_size=o["group_size"], symmetric=bool(o["symmetric"]))


def _compress_one(name, src, path, arr, o, stats=None) -> CompressedTensor:
    """One tensor with options ``o`` (a plan from the policy; validated) and, for output-
    aware quantization, its calibration ``stats``.  ``src`` is the WeightsFile when
    ``path`` is set (for the source dtype and the stored bits)."""
    shape = tuple(arr.shape)
    src_dtype = src.source_dtype(name) if path else str(arr.dtype)
    stored = src.stored(name) if path and src_dtype == "bfloat16" else arr
    raw = CompressedTensor(name, shape, src_dtype, "raw", raw=np.ascontiguousarray(stored))
    reason = _raw_reason(o, str(arr.dtype), arr.shape)
    if reason:
        raw.info["raw_reason"] = reason
        return raw
    if o.get("hot_rows") is not None:
        return _row_groups(name, arr, o, stats, raw)
    W = arr.astype(np.float32)
    sparse = o["prune"] is not None
    q = _quantizer(o, sparse)
    calibrated = {}
    signs = None
    # with reference inputs, aim at the original model's output (calibration.Stats.target)
    Wt = stats.target(W, o.get("correction", 0.0)) if stats is not None else W
    if o.get("hadamard"):
        seed = None if o["seed"] is None else [o["seed"], zlib.crc32(name.encode())]
        signs = rotation.random_signs(int(np.prod(shape[1:])), seed)
        Wr = rotation.rotate(Wt.reshape(shape[0], -1), signs)
        if stats is not None:
            stats = calib.Stats.from_xtx(rotation.rotate_hessian(stats.hessian(), signs)
                                         * stats.count, stats.count)
    else:
        Wr = Wt
    try:
        target = W * prune_mod.magnitude_mask(W, o["prune"]) if sparse else Wr.reshape(shape)
        if stats is not None:
            codes, calibrated = output_aware.fit_encode(q, Wr, stats,
                                                        rounds=o.get("refit_rounds", 1))
        else:
            codes = q.fit_encode(target)
    except TooFewValuesError as exc:
        raw.info["raw_reason"] = "too few distinct values"
        raw.info["warnings"] = [f"tensor {name!r}: {exc}; stored raw"]
        return raw
    except VQCompressError as exc:
        raise type(exc)(f"tensor {name!r}: {exc}") from None
    if sparse:
        t = _sparse_tensor(name, shape, src_dtype, q, codes, o["entropy"],
                           o["index_bits"] or (8 if arr.ndim == 4 else 5))
    else:
        t = CompressedTensor.from_codes(name, q, codes, dtype=src_dtype, entropy=o["entropy"],
                                        signs=signs)
    t.info["sqnr_db"] = _sqnr_db(W, t.decompress())
    if calibrated:
        t.info["calibration"] = calibrated
    t.info["sparsity"] = round(float(np.mean(codes == 0)), 6) if sparse else None
    if t.nbytes < raw.nbytes or sparse:
        return t
    raw.info["raw_reason"] = "no gain"
    return raw


def _row_groups(name, arr, o, counts, raw) -> CompressedTensor:
    """Tensor ``name`` stored in two members: its ``o['hot_rows']`` most used rows (in
    the order of ``calibration.rank_rows``) with options ``o``, the others with
    ``o['cold']``.  One bit per row, entropy coded, says which member holds it."""
    hot = {k: v for k, v in o.items() if k not in ("hot_rows", "cold")}
    n = arr.shape[0]
    if o["hot_rows"] >= n:
        return _compress_one(name, {}, None, arr, hot)
    groups = np.ones(n, dtype=np.uint8)
    groups[calib.rank_rows(counts)[: o["hot_rows"]]] = 0
    members = [_compress_one(f"{name}#{part}", {}, None, np.ascontiguousarray(arr[groups == g]),
                             opts) for g, (part, opts) in enumerate((("hot", hot),
                                                                      ("cold", o["cold"])))]
    coding, stream = streams.choose(groups, 1, o["entropy"])
    t = CompressedTensor(name, tuple(arr.shape), raw.dtype, "rows", coding=coding,
                         groups=groups, members=members)
    t.info["groups"] = {"coding": coding, **streams.stats(groups, 1, stream)}
    t.info["sqnr_db"] = _sqnr_db(arr, t.decompress())
    said = [w for m in members for w in m.info.get("warnings", ())]
    if said:  # the members' warnings, whichever of t and raw is kept
        t.info["warnings"] = raw.info["warnings"] = said
    if t.nbytes < raw.nbytes:
        return t
    raw.info["raw_reason"] = "no gain"
    return raw


def _sqnr_db(W, dense) -> float | None:
    """10 log10(signal / error) in dB, None when either is zero."""
    W = np.asarray(W, np.float64).reshape(-1)
    err = float(np.sum((np.asarray(dense, np.float64).reshape(-1) - W) ** 2))
    signal = float(np.sum(W ** 2))
    return round(float(10 * np.log10(signal / err)), 3) if err > 0 and signal > 0 else None


def _sparse_tensor(name, shape, src_dtype, q, codes, entropy, index_bits):
    """A kmeans tensor stored sparse; each stream gets its own (or the best) coding."""
    entry, rel = sparse_encode(codes, index_bits)
    coding, code_stream = streams.choose(entry, q.n_bits, entropy)
    index_coding, index_stream = streams.choose(rel, index_bits, entropy)
    t = CompressedTensor(name, shape, src_dtype, "kmeans", quantizer=q, codes=codes,
                         coding=coding, index_bits=index_bits, index_coding=index_coding)
    container.set_parts(t, code_stream, index_stream)
    t.info["codes"] = {"coding": coding, **streams.stats(entry, q.n_bits, code_stream)}
    t.info["index"] = {"coding": index_coding, **streams.stats(rel, index_bits, index_stream)}
    t.info["entries"] = int(entry.shape[0])
    t.info["fillers"] = int(np.count_nonzero(entry == 0))
    return t
