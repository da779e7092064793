"""``vqcompress demo``: Deep Compression on the bundled digits MLP, and a post-training
sweep that shows what the same pipeline reaches without data or retraining."""
from __future__ import annotations

import os
import time

from .. import report
from ..evaluate import best_ratio, sweep
from . import deep_compression, digits

# post-training (no data, no retraining) settings the sweep compares; uniform quantization
# at 8/4/3/2 bits is added by sweep() as the baseline
POST_TRAINING_GRID = [
    {"method": "kmeans", "bits": [2, 3, 4, 5, 6], "min_elements": 0},
    {"method": "pq", "bits": 8, "block_size": [2, 4], "min_elements": 0},
    {"method": "kmeans", "bits": 5, "prune": [0.5, 0.7, 0.8, 0.9], "min_elements": 0},
]


def run(out_dir: str, *, quick: bool = False, log=print) -> dict:
    """The recipe, then the sweep; writes everything to ``out_dir`` and returns the
    figures as one JSON-able dict."""
    t0 = time.perf_counter()
    result = deep_compression.run(out_dir, quick=quick, log=log)
    log("post-training sweep (no data, no retraining)")
    X_test, y_test = digits.load_data()[2:]

    def accuracy(weights):
        return digits.accuracy(weights, X_test, y_test)

    grid = POST_TRAINING_GRID[:1] if quick else POST_TRAINING_GRID
    swept = sweep(digits.load_weights(), accuracy, grid,
                  out_dir=os.path.join(out_dir, "sweep_files"),
                  progress=lambda i, n, p: log(f"  {i + 1}/{n} {p}"))
    mark = (result["ratio"], result["accuracy_after"],
            "Deep Compression (pruned, retrained, shared, Huffman)")
    paths = report.write_all(swept, out_dir, stem="sweep", metric_name="test accuracy",
                             title="digits MLP 64-300-100-10", marks=[mark])
    best = best_ratio(swept["rows"], swept["reference"], 0.01)
    result["post_training"] = {
        **swept, "best_at_1_point_loss": None if best is None else
        {k: best.get(k) for k in ("method", "bits", "block_size", "prune", "ratio",
                                  "file_bytes", "metric")}}
    result["files"].update(paths)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result


def tables(result: dict) -> str:
    """Tables 1 and 2 in the paper's shape, the stage breakdown and the sweep."""
    r = result
    t1 = report.text_table(
        ("model", "test error %", "parameters", "bytes", "compress rate"),
        [("reference (float32)", 100 * (1 - r["accuracy_before"]), r["weights"],
          r["source_bytes"], "1x"),
         ("compressed (.vqz)", 100 * (1 - r["accuracy_after"]), r["weights_kept"],
          r["file_bytes"], f"{r['ratio']:.1f}x")])
    t2 = report.text_table(
        ("layer", "weights", "kept %", "wbits P+Q", "wbits +H", "ibits P+Q", "ibits +H",
         "% orig P+Q", "% orig +H"),
        [(row["layer"], row["weights"], row["kept_pct"], row["weight_bits"],
          row["weight_bits_huffman"], row["index_bits"], row["index_bits_huffman"],
          row["pct_of_original"], row["pct_of_original_huffman"]) for row in r["layers"]])
    s = r["stages"]
    best = r["post_training"]["best_at_1_point_loss"]
    lines = [
        "Table 1: the digits MLP 64-300-100-10 before and after Deep Compression",
        t1, "",
        "Table 2: per layer (P = pruning, Q = quantization, H = Huffman; bytes from the real "
        "files, header share included)",
        t2, "",
        f"stages: pruning {s['pruning_weights_x']:.1f}x fewer weights; pruning + "
        f"quantization {s['pruning_quantization_x']:.1f}x smaller; + Huffman "
        f"{s['pruning_quantization_huffman_x']:.1f}x smaller",
        f"accuracy {100 * r['accuracy_before']:.2f}% -> {100 * r['accuracy_after']:.2f}% "
        f"({r['accuracy_loss_points']:.2f} points lost); {r['file_bytes']:,} bytes, "
        f"{r['ratio']:.1f}x smaller than float32, {r['bits_per_weight']:.3f} bits/weight",
        "",
        "post-training sweep (no data, no retraining):",
        report.sweep_table(r["post_training"], "accuracy"),
        "best ratio within 1 point without retraining: " + (
            "none" if best is None else
            f"{best['method']} {best['bits']} bits"
            + (f" prune {best['prune']}" if best.get("prune") is not None else "")
            + (f" block {best['block_size']}" if best.get("block_size") else "")
            + f": {best['ratio']:.1f}x at {100 * best['metric']:.2f}%"),
        "",
        "files: " + ", ".join(f"{k}={v}" for k, v in r["files"].items()),
        f"done in {r['seconds']:.1f} s",
    ]
    return "\n".join(lines)
