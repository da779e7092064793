"""all-MiniLM-L6-v2 end to end: compressed with our CLI, run from the .vqz file through
``vqcompress.nn`` layers, compared with the float32 model on the shipped corpus; beside it,
in the same run, faiss PQ / RQ codebooks (stored in the same file format), uniform group
quantization as GGUF does it (fixed-rate codes, float16 scales) and zstd.

    python benchmarks/bench_minilm.py [--sentences 1000] [--out docs/minilm] [--only NAME ...]

Every size is the written file's, over all 22.7 M values of the model (bits per weight =
file bytes * 8 / values).  Quality: mean and 5th-percentile cosine similarity of the
sentence embeddings to the float32 model's, and top-10 nearest-neighbour overlap over the
corpus.  Writes results.json and cosine_vs_size.png to --out and prints markdown tables:
one per bit budget, the smallest file reaching each cosine, where the error comes from,
and compression and inference times.
"""
import _harness  # noqa: F401  (first: pins thread counts before numba, BLAS, faiss start)

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from _harness import best_of, header, minilm_safetensors, table

import vqcompress as vq
from vqcompress import sequential
from vqcompress.examples import minilm
from vqcompress.pipeline import worker_pool

ENTROPY_NOTE = "entropy coding: auto (the smallest of packed, Huffman, rANS per stream)"

# Our settings: one method for every matrix ...
OURS = {
    "kmeans 3": ["--method", "kmeans", "--bits", "3"],
    "kmeans 4": ["--method", "kmeans", "--bits", "4"],
    "kmeans 5": ["--method", "kmeans", "--bits", "5"],
    "pq 8x8 (1 bit)": ["--method", "pq", "--bits", "8", "--block-size", "8"],
    "pq 4x8 (2 bits)": ["--method", "pq", "--bits", "8", "--block-size", "4"],
    "rq 8x8x2 (2 bits)": ["--method", "rq", "--bits", "8", "--block-size", "8", "--stages", "2"],
}


def _mixed(default_bits, word, qk, value, attn_out, ffn_in, pos=None):
    """... and per-tensor rules that spend the bits where the attribution table (below)
    finds the error: most on the value and feed-forward input projections, fewest on the
    word-embedding table and the query/key projections.  ``word`` is a policy spec; the
    others are k-means bit widths; the default covers the feed-forward output and pooler."""
    rules = [f"*word_embeddings*={word}",
             f"*position_embeddings*=method:kmeans,bits:{pos or qk}",
             f"*.self.query.weight=method:kmeans,bits:{qk}",
             f"*.self.key.weight=method:kmeans,bits:{qk}",
             f"*.self.value.weight=method:kmeans,bits:{value}",
             f"*.attention.output.dense.weight=method:kmeans,bits:{attn_out}",
             f"*.intermediate.dense.weight=method:kmeans,bits:{ffn_in}"]
    return ["--method", "kmeans", "--bits", str(default_bits)] + \
        [a for r in rules for a in ("--policy", r)]


RQ3 = "method:rq,bits:8,block_size:8,stages:3"
RQ2 = "method:rq,bits:8,block_size:8,stages:2"
MIXED = {  # chosen by the error-per-bit of each group measured one group at a time
    "mixed 4.25": _mixed(6, RQ3, qk=5, value=7, attn_out=7, ffn_in=6, pos=5),
    "mixed 4": _mixed(5, RQ3, qk=5, value=6, attn_out=5, ffn_in=6),
    "mixed 3": _mixed(4, RQ2, qk=4, value=5, attn_out=4, ffn_in=5, pos=5),
    "mixed 2": _mixed(3, RQ2, qk=2, value=3, attn_out=3, ffn_in=3),
}

# ... and output-aware settings (issue 8): every encoder matrix quantized for the error of
# its output on calibration inputs recorded from the held-out sentences (disjoint from the
# evaluation ones); the embedding tables, which see token ids, stay data-free.
CALIBRATED = {
    "calibrated kmeans 4": ["--method", "kmeans", "--bits", "4"],
    "calibrated kmeans 4, hadamard": ["--method", "kmeans", "--bits", "4", "--hadamard"],
    "calibrated kmeans 5, word rq 8x8x3": ["--method", "kmeans", "--bits", "5",
                                           "--policy", f"*word_embeddings*={RQ3}"],
    "calibrated kmeans 4, word rq 8x8x2": ["--method", "kmeans", "--bits", "4",
                                           "--policy", f"*word_embeddings*={RQ2}"],
    "calibrated pq 4x8, word pq 8x8": ["--method", "pq", "--bits", "8", "--block-size", "4",
                                       "--policy",
                                       "*word_embeddings*=method:pq,bits:8,block_size:8"],
}

# ... and each tensor's setting chosen under a whole-file budget (--target-bpw), among
# scalar and 2- and 4-dimensional vector codes, with each tensor's error weighted by its
# measured sensitivity (allocate.measure_sensitivity on 200 held-out sentences).
ALLOC_CANDIDATES = ["method:kmeans,bits:2", "method:kmeans,bits:3", "method:kmeans,bits:4",
                    "method:kmeans,bits:5", "method:kmeans,bits:6", "method:pq,block_size:2,bits:6",
                    "method:pq,block_size:2,bits:8", "method:pq,block_size:4,bits:8"]
ALLOCATED = {
    f"allocated {b:g}, word {word}": ["--target-bpw", str(b), "--policy",
                                      f"*word_embeddings*={spec}"] +
    [a for c in ALLOC_CANDIDATES for a in ("--candidate", c)]
    for b, word, spec in ((3.0, "rq 8x8x2", RQ2), (2.0, "pq 8x8", "method:pq,bits:8,block_size:8"))}
ALLOCATED.update({f"{k}, hadamard": v + ["--hadamard"] for k, v in ALLOCATED.items()})

# ... and the word table split by how often the held-out sentences look its rows up
# (policy option hot_rows): the most used rows at k-means bits, the rest at PQ.
WORD = "embeddings.word_embeddings.weight"


def _hot(n, hot_bits, cold_block, cold_bits=8):
    return ["--policy", f"{WORD}#cold=method:pq,bits:{cold_bits},block_size:{cold_block}",
            "--policy", f"{WORD}=method:kmeans,bits:{hot_bits},hot_rows:{n}"]


CALIBRATED["calibrated kmeans 4, word hot 2000 kmeans 4 / pq 8x8"] = \
    ["--method", "kmeans", "--bits", "4"] + _hot(2000, 4, 8)
ALLOCATED.update({
    f"allocated {b:g}, word hot {n} kmeans {hb} / pq {cb}x{cbits}, hadamard":
    ["--target-bpw", str(b), "--hadamard"] + _hot(n, hb, cb, cbits) +
    [a for c in ALLOC_CANDIDATES for a in ("--candidate", c)]
    for b, n, hb, cb, cbits in ((3.0, 4000, 5, 8, 10), (3.0, 4000, 5, 8, 8), (2.0, 2000, 4, 8, 8))})


def _hot_rules(n, hot_bits, cold_block, cold_bits=8):
    return _hot(n, hot_bits, cold_block, cold_bits)[1::2]


# ... and two of those rows quantized again, matrix group by matrix group in the order the
# model uses them, each for the float model's output on the inputs it sees with the groups
# before it already quantized (vqcompress.sequential; the same held-out sentences), moved
# 0.6 of the way to the weight that reproduces the float output there, with two rounds of
# assignment and refit.  Run through the Python API: the second pass runs the model,
# which the CLI cannot.
SECOND_PASS = {"correction": 0.6, "refit_rounds": 2}
SEQUENTIAL = {
    f"allocated {b:g}, word hot {n} kmeans {hb} / pq {cb}x{cbits}, hadamard, sequential":
    {"target_bits_per_weight": b, "hadamard": True, "policy": _hot_rules(n, hb, cb, cbits),
     "candidates": ALLOC_CANDIDATES}
    for b, n, hb, cb, cbits in ((3.0, 4000, 5, 8, 10), (2.0, 2000, 4, 8, 8))}

FAISS = {  # name: (kind, block, bits per stage, stages), the code sizes of our PQ/RQ rows
    "faiss pq 8x8 (1 bit)": ("pq", 8, 8, 1),
    "faiss pq 4x8 (2 bits)": ("pq", 4, 8, 1),
    "faiss rq 8x8x2 (2 bits)": ("rq", 8, 8, 2),
}
UNIFORM = {  # GGUF-style: fixed-rate codes, one float16 scale per group
    f"uniform q{b}_0 g32 sym": ["--method", "uniform", "--bits", str(b), "--group-size", "32",
                                "--symmetric", "--entropy", "none"] for b in (2, 3, 4, 5)}
UNIFORM.update({
    f"uniform int{b} g64 affine": ["--method", "uniform", "--bits", str(b), "--group-size", "64",
                                   "--entropy", "none"] for b in (2, 3, 4, 5)})
UNIFORM["uniform int4 g64 affine, hadamard"] = UNIFORM["uniform int4 g64 affine"] + ["--hadamard"]
BUDGETS = (4.0, 3.0, 2.0)
TARGETS = (0.99, 0.98, 0.95)


def cli_compress(src, out, opts, jobs):
    cmd = [sys.executable, "-m", "vqcompress", "compress", src, out, "--json", "--force",
           "--jobs", str(jobs), *opts]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()[-500:]}")
    report = json.loads(res.stdout)
    return time.perf_counter() - t0, {**report["totals"], **rate_distortion(report["tensors"])}


ENCODER_MATRIX = re.compile(r"encoder\.layer\.\d+\..*dense\.weight|self\.(query|key|value)\.weight")


def sequential_compress(src, out, kw, calib, sens, jobs, weights, tok):
    """The allocation as ``cli_compress`` runs it, then ``sequential.requantize``; the
    seconds of each pass and the totals of the file written."""
    t0 = time.perf_counter()
    with open(sens) as fh:
        sensitivity = json.load(fh)
    pool = worker_pool(jobs)
    try:
        first = vq.compress(src, calibration=calib, sensitivity=sensitivity, executor=pool,
                            **kw)
    finally:
        if pool is not None:
            pool.shutdown()
    t1 = time.perf_counter()
    rec = minilm.SequentialRecorder(weights, minilm.corpus("heldout"), tokenizer=tok)
    model = sequential.requantize(first, weights, minilm.encoder_groups(), rec,
                                  **kw, **SECOND_PASS)
    model.save(out, force=True)
    report = model.report()
    return (t1 - t0, time.perf_counter() - t1), {**report["totals"],
                                                 **rate_distortion(report["tensors"])}


def file_row(family, name, options, tot, path, n_values, times, quality):
    """A results row for the file at ``path`` (its totals ``tot`` checked against it)."""
    assert tot["file_bytes"] == os.path.getsize(path)
    return {"family": family, "setting": name, "options": options,
            "file bytes": tot["file_bytes"],
            **{k: tot[k] for k in ("encoder bits/weight", "encoder SQNR dB",
                                   "gap to 6.02 dB/bit") if k in tot},
            "bits/weight": tot["file_bytes"] * 8 / n_values, **times, **quality}


def rate_distortion(tensors):
    """Weight-level SQNR of the encoder's linear layers (mean over the 36 matrices, in dB)
    beside their bits per weight (every byte of theirs, header share included) and the
    Gaussian rate-distortion bound at that rate, 6.02 dB per bit: what is left to gain."""
    rows = [t for t in tensors if ENCODER_MATRIX.search(t["name"]) and t["sqnr_db"] is not None]
    if not rows:
        return {}
    n = [np.prod(t["shape"]) for t in rows]
    bits = sum(t["bits_per_weight"] * w for t, w in zip(rows, n)) / sum(n)
    sqnr = float(np.average([t["sqnr_db"] for t in rows], weights=n))
    return {"encoder bits/weight": bits, "encoder SQNR dB": sqnr,
            "gap to 6.02 dB/bit": 6.02 * bits - sqnr}


def faiss_model(weights, kind, block, bits, stages):
    """Our file with faiss's codebooks and codes for every tensor our PQ/RQ settings
    quantize (rank 2, at least 1,024 values); the rest stored raw as ours are."""
    import faiss

    tensors = {}
    for name, w in weights.items():
        if w.ndim != 2 or w.size < 1024 or w.dtype.kind != "f":
            tensors[name] = vq.CompressedTensor(name, tuple(w.shape), str(w.dtype), "raw",
                                                raw=np.ascontiguousarray(w))
            continue
        W = w.astype(np.float32)
        pad = (-W.shape[1]) % block
        blocks = np.ascontiguousarray(np.pad(W, ((0, 0), (0, pad))).reshape(-1, block))
        if kind == "pq":
            fq = faiss.ProductQuantizer(block, 1, bits)
            q = vq.ProductQuantizer(block_size=block, n_bits=bits, codebook_dtype="float16")
        else:
            fq = faiss.ResidualQuantizer(block, stages, bits)
            fq.max_beam_size = 8  # our beam
            q = vq.ResidualQuantizer(block_size=block, n_bits=bits, n_stages=stages,
                                     codebook_dtype="float16")
        fq.train(blocks)
        packed = fq.compute_codes(blocks)
        codes = _unpack_faiss(packed, bits, stages)
        books = faiss.vector_to_array(fq.codebooks if kind == "rq" else fq.centroids)
        q.codebooks_ = books.reshape(stages, 1 << bits, block).astype(np.float16)
        q.in_features_, q.n_blocks_ = W.shape[1], blocks.shape[0] // W.shape[0]
        q.shape_, q.n_weights_ = W.shape, W.size
        shape = (W.shape[0], q.n_blocks_) if kind == "pq" else (W.shape[0], q.n_blocks_, stages)
        tensors[name] = vq.CompressedTensor.from_codes(name, q, codes.reshape(shape),
                                                       reference=W)
    return vq.CompressedModel(tensors, source_bytes=sum(w.nbytes for w in weights.values()))


def _unpack_faiss(packed, bits, m):
    """faiss writes each vector's m codes as a little-endian bit string (``BitstringWriter``)."""
    bitsarr = np.unpackbits(packed, axis=1, bitorder="little")[:, : m * bits]
    weights = 1 << np.arange(bits)
    return (bitsarr.reshape(len(packed), m, bits) * weights).sum(-1).astype(np.int64)


def sensitivities(weights, stats, tok, n=200):
    """Per tensor: the rise in 1 - mean cosine on ``n`` held-out sentences per unit of its
    relative (calibrated) error, probed with k-means at 3 bits.  A probe of layer i's
    weights reruns the encoder from layer i only, on the hidden states the unchanged
    layers below gave the reference pass (kept per batch: the same bits as a whole pass)."""
    ids = tok(minilm.corpus("heldout")[:n])
    batches = list(minilm.batches(ids, 32))
    dense = minilm.BertEncoder.from_weights(weights)
    ref = np.empty((len(ids), dense.config.hidden_size), np.float32)
    layer_inputs = []
    for sel, padded, mask in batches:
        layer_inputs.append([])
        ref[sel] = dense.embed_ids(padded, mask, inputs=layer_inputs[-1])

    def loss(mix):
        changed = [k for k in mix if mix[k] is not weights[k]]
        layer = re.match(r"encoder\.layer\.(\d+)\.", changed[0]) if len(changed) == 1 else None
        start = int(layer.group(1)) if layer else 0
        enc = minilm.BertEncoder.from_weights(mix)
        emb = np.empty_like(ref)
        for (sel, padded, mask), inputs in zip(batches, layer_inputs):
            emb[sel] = enc.embed_ids(padded, mask, start=start,
                                     x=inputs[start] if start else None)
        return 1 - minilm.similarity_report(ref, emb)["cos_mean"]

    return vq.allocate.measure_sensitivity(weights, loss, calibration=stats)


def evaluate(path_or_model, sentences, tok, ref):
    enc = minilm.BertEncoder.from_vqz(path_or_model)
    t0 = time.perf_counter()
    emb = enc.encode(sentences, tokenizer=tok)
    return {**minilm.similarity_report(ref, emb), "eval s": time.perf_counter() - t0}


# -- where the error comes from --------------------------------------------------------------

GROUPS = {
    "word embeddings": r"word_embeddings",
    "position embeddings": r"position_embeddings",
    "attention query+key": r"self\.(query|key)\.weight",
    "attention value": r"self\.value\.weight",
    "attention output": r"attention\.output\.dense\.weight",
    "feed-forward in": r"intermediate\.dense\.weight",
    "feed-forward out": r"layer\.\d+\.output\.dense\.weight",
    **{f"encoder layer {i}": rf"encoder\.layer\.{i}\..*weight" for i in range(6)},
}


def attribution(weights, quantized, sentences, tok, ref, label):
    """1 - mean cosine with one group of tensors quantized (``quantized``: decoded
    tensors of one setting) and the rest float32; then all encoder matrices quantized
    but their 1% of rows with the largest squared error kept in float32 (outlier rows)."""
    rows = []

    def loss(mix):
        emb = minilm.BertEncoder.from_weights(mix).encode(sentences, tokenizer=tok)
        return 1 - minilm.similarity_report(ref, emb)["cos_mean"]

    for group, pat in GROUPS.items():
        names = [k for k in weights if re.search(pat, k) and weights[k].ndim == 2]
        mix = {k: quantized[k] if k in names else v for k, v in weights.items()}
        rows.append({"setting": label, "quantized alone": group,
                     "weights": sum(weights[k].size for k in names), "1 - cos": loss(mix)})
    enc_names = [k for k in weights if k.startswith("encoder.") and weights[k].ndim == 2]
    full = {k: quantized[k] if k in enc_names else v for k, v in weights.items()}
    patched = dict(full)
    for k in enc_names:
        err = ((quantized[k] - weights[k]) ** 2).sum(axis=1)
        keep = np.argsort(-err)[: max(1, len(err) // 100)]
        patched[k] = quantized[k].copy()
        patched[k][keep] = weights[k][keep]
    n_enc = sum(weights[k].size for k in enc_names)
    rows.append({"setting": label, "quantized alone": "all encoder matrices",
                 "weights": n_enc, "1 - cos": loss(full)})
    rows.append({"setting": label, "quantized alone": "all encoder, worst 1% rows float32",
                 "weights": n_enc, "1 - cos": loss(patched)})
    return rows


# -- inference time ------------------------------------------------------------------------

def inference_times(path, weights, sentences, tok):
    """Seconds per sentence (batch 1) and per batch of 32, dense float32 vs from the file."""
    encoders = {"dense float32": minilm.BertEncoder.from_weights(weights),
                "from .vqz": minilm.BertEncoder.from_vqz(path)}
    one = sentences[:16]
    batch = sentences[:32]
    out = {}
    for label, enc in encoders.items():
        enc.encode(one[:2], tokenizer=tok)  # compile and warm
        t1, _ = best_of(lambda: [enc.encode([s], tokenizer=tok) for s in one], 3)
        t32, _ = best_of(lambda: enc.encode(batch, batch_size=32, tokenizer=tok), 3)
        out[label] = (t1 / len(one), t32)
    return out


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: pip install matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    families = {}
    for r in rows:
        if r.get("cos_mean") is not None:
            families.setdefault(r["family"], []).append(r)
    styles = {"ours": "o-", "ours mixed": "*", "ours calibrated": "P", "ours allocated": "X-",
              "ours sequential": "^-",
              "faiss": "s",
              "uniform": "v:", "zstd": "D"}
    for fam, rs in families.items():
        rs = sorted(rs, key=lambda r: r["file bytes"])
        ax.plot([r["file bytes"] / 1e6 for r in rs], [r["cos_mean"] for r in rs],
                styles.get(fam.split(" (")[0], "x"), label=fam, markersize=7)
    ax.set_xscale("log")
    ax.set_xlabel("file size (MB, every byte of the file)")
    ax.set_ylabel("mean cosine to float32 embeddings")
    ax.set_ylim(max(0.5, min(r["cos_mean"] for r in rows if r.get("cos_mean")) - 0.02), 1.002)
    for t in TARGETS:
        ax.axhline(t, color="grey", lw=0.5)
    ax.set_title("all-MiniLM-L6-v2 (22.7 M weights): quality against file size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--out", default="minilm-results")
    ap.add_argument("--only", nargs="*", help="run only the settings whose names contain these")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-attribution", action="store_true")
    ap.add_argument("--merge", action="append", default=[], metavar="RESULTS.json",
                    help="add the rows of an earlier run's results.json to the tables and "
                         "the plot (sizes and cosines are deterministic; times are that run's)")
    args = ap.parse_args()
    header("all-MiniLM-L6-v2 end to end: compressed, run from the file, against the peers")
    os.makedirs(args.out, exist_ok=True)
    src = minilm_safetensors()
    weights = minilm.load_weights()
    n_values = sum(w.size for w in weights.values())
    sentences = minilm.corpus()[: args.sentences]
    tok = minilm.Tokenizer()
    dense = minilm.BertEncoder.from_weights(weights)
    ref = dense.encode(sentences, tokenizer=tok)
    print(f"- {len(sentences)} sentences, {n_values:,} values "
          f"({os.path.getsize(src):,} bytes of safetensors); {ENTROPY_NOTE} for ours and "
          f"faiss's codes; uniform rows fixed-rate as GGUF stores them\n")

    def wanted(name):
        return not args.only or any(o in name for o in args.only)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.vqz")
        keep = {}
        calib = os.path.join(tmp, "calibration.safetensors")
        sens = os.path.join(tmp, "sensitivity.json")
        if any(wanted(n) for n in {**CALIBRATED, **ALLOCATED, **SEQUENTIAL}):
            t0 = time.perf_counter()
            stats = minilm.calibration_stats(dense, minilm.corpus("heldout"), tokenizer=tok)
            vq.calibration.save(calib, stats)
            n_xtx = sum(isinstance(v, vq.calibration.Stats) for v in stats.values())
            seen = np.count_nonzero(stats[WORD].counts)
            print(f"- calibration: {n_xtx} matrices' XᵀX over "
                  f"{stats['encoder.layer.0.attention.self.query.weight'].count:,} tokens of "
                  f"the {len(minilm.corpus('heldout')):,} held-out sentences ({seen:,} "
                  f"distinct tokens counted for the word table's hot rows), "
                  f"{time.perf_counter() - t0:.0f} s\n", flush=True)
        if any(wanted(n) for n in {**ALLOCATED, **SEQUENTIAL}):
            t0 = time.perf_counter()
            json.dump(sensitivities(weights, stats, tok), open(sens, "w"))
            print(f"- sensitivities: {time.perf_counter() - t0:.0f} s\n", flush=True)
        for family, settings in (("ours", OURS), ("ours mixed", MIXED),
                                 ("ours calibrated", CALIBRATED),
                                 ("ours allocated", ALLOCATED), ("uniform", UNIFORM)):
            for name, opts in settings.items():
                if not wanted(name):
                    continue
                if family in ("ours calibrated", "ours allocated"):
                    opts = opts + ["--calibration", calib]
                if family == "ours allocated":
                    opts = opts + ["--sensitivity", sens]
                secs, tot = cli_compress(src, path, opts, args.jobs)
                shown = " ".join({calib: "CALIBRATION", sens: "SENSITIVITY"}.get(o, o)
                                 for o in opts)
                row = file_row(family, name, shown, tot, path, n_values,
                               {"compress s": secs}, evaluate(path, sentences, tok, ref))
                rows.append(row)
                print(f"  {name}: {row['bits/weight']:.3f} bits/weight, cos "
                      f"{row['cos_mean']:.4f} ({secs:.0f} s)", flush=True)
                if name in ("kmeans 4", "pq 8x8 (1 bit)"):
                    keep[name] = os.path.join(tmp, f"{len(keep)}.vqz")
                    os.replace(path, keep[name])
        for name, kw in SEQUENTIAL.items():
            if not wanted(name):
                continue
            (first_s, second_s), tot = sequential_compress(src, path, kw, calib, sens,
                                                           args.jobs, weights, tok)
            row = file_row("ours sequential", name, f"{kw!r}, then {SECOND_PASS!r}", tot, path,
                           n_values, {"compress s": first_s + second_s, "first pass s": first_s,
                                      "second pass s": second_s},
                           evaluate(path, sentences, tok, ref))
            rows.append(row)
            print(f"  {name}: {row['bits/weight']:.3f} bits/weight, cos "
                  f"{row['cos_mean']:.4f} ({first_s:.0f} + {second_s:.0f} s)", flush=True)
        for name, spec in FAISS.items():
            if not wanted(name):
                continue
            t0 = time.perf_counter()
            model = faiss_model(weights, *spec)
            secs = time.perf_counter() - t0
            size = model.save(path, force=True)
            row = {"family": "faiss", "setting": name, "options": str(spec),
                   "file bytes": size, "bits/weight": size * 8 / n_values, "compress s": secs,
                   **evaluate(path, sentences, tok, ref)}
            rows.append(row)
            print(f"  {name}: {row['bits/weight']:.3f} bits/weight, cos {row['cos_mean']:.4f}",
                  flush=True)
        if wanted("zstd"):
            _, tot = cli_compress(src, path, ["--method", "uniform", "--bits", "8"], args.jobs)
            zb = os.path.getsize(src) / tot["zstd_ratio"]
            rows.append({"family": "zstd", "setting": "zstd -3 on the float32 file",
                         "file bytes": int(round(zb)), "bits/weight": zb * 8 / n_values,
                         "cos_mean": 1.0, "cos_p5": 1.0, "top10_overlap": 1.0})
        times = {n: inference_times(p, weights, sentences, tok) for n, p in keep.items()}
        attr = []
        if not args.no_attribution and "kmeans 4" in keep:
            q = vq.load(keep["kmeans 4"]).decompress()
            attr = attribution(weights, q, sentences, tok, ref, "kmeans 4")

    for path in args.merge:
        with open(path) as fh:
            rows += [r for r in json.load(fh)["rows"]
                     if r["setting"] not in {x["setting"] for x in rows}]
    cols = ["setting", "bits/weight", "file bytes", "cos_mean", "cos_p5", "top10_overlap",
            "compress s"]
    for b in BUDGETS:
        band = [r for r in rows if abs(r["bits/weight"] - b) <= 0.6]
        print(f"### About {b:g} bits per weight (within 0.6)\n")
        table(sorted(band, key=lambda r: r["bits/weight"]), cols)
    print("### All rows\n")
    table(sorted(rows, key=lambda r: r["bits/weight"]), ["family"] + cols)
    seq = [r for r in rows if r["family"] == "ours sequential"]
    if seq:
        print("### Quantized again in order (sequential): the two passes' times\n")
        table(seq, ["setting", "bits/weight", "file bytes", "cos_mean", "cos_p5",
                    "top10_overlap", "first pass s", "second pass s"])
    print("### Encoder linear layers: weight SQNR against the Gaussian bound (6.02 dB/bit)\n")
    rd = [r for r in rows if "encoder SQNR dB" in r]
    table(sorted(rd, key=lambda r: r["encoder bits/weight"]),
          ["setting", "encoder bits/weight", "encoder SQNR dB", "gap to 6.02 dB/bit",
           "cos_mean"])
    print("### Smallest file reaching each mean cosine\n")
    best = []
    for t in TARGETS:
        ok = [r for r in rows if r["cos_mean"] >= t]
        r = min(ok, key=lambda r: r["file bytes"]) if ok else None
        best.append({"mean cosine >=": t, "setting": r["setting"] if r else "none",
                     "file bytes": r["file bytes"] if r else "",
                     "bits/weight": r["bits/weight"] if r else ""})
    table(best, ["mean cosine >=", "setting", "file bytes", "bits/weight"])
    if attr:
        print("### Where the error comes from (one group quantized, the rest float32)\n")
        table(attr, ["setting", "quantized alone", "weights", "1 - cos"])
    if times:
        print("### numpy inference: dense float32 vs computed from the .vqz file\n")
        trows = []
        for n, t in times.items():
            d, c = t["dense float32"], t["from .vqz"]
            trows.append({"file": n, "batch 1 ms/sentence dense": d[0] * 1e3,
                          "batch 1 ms/sentence vqz": c[0] * 1e3, "ratio b1": c[0] / d[0],
                          "batch 32 s dense": d[1], "batch 32 s vqz": c[1],
                          "ratio b32": c[1] / d[1]})
        table(trows, list(trows[0]))
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump({"rows": rows, "attribution": attr, "best": best,
                   "times": {n: {k: list(v) for k, v in t.items()} for n, t in times.items()}},
                  fh, indent=1)
    plot(rows, os.path.join(args.out, "cosine_vs_size.png"))


if __name__ == "__main__":
    main()
