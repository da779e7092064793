"""vqcompress command line: compress, inspect, decompress, sweep, demo."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings

from . import __version__
from .allocate import DEFAULT_CANDIDATES
from .errors import VQCompressError
from .pipeline import METHODS, compress, load, worker_pool
from .policy import OPTIONS


def _zstd_ratio(path: str) -> float | None:
    """Original bytes / zstd (level 3) bytes of the input file: the baseline to beat."""
    try:
        import zstandard
    except ImportError:
        return None
    with open(path, "rb") as f:
        data = f.read()
    return len(data) / len(zstandard.ZstdCompressor(level=3).compress(data))


def _table(report: dict) -> str:
    lines = [f"{'tensor':<44} {'shape':>12} {'setting':>13} {'sparse':>6} "
             f"{'codes: coding bits/H':>21} {'index: coding bits/H':>21} "
             f"{'bits/w':>7} {'bytes':>10} {'SQNR dB / why raw':>8} {'output SQNR':>11}"]
    allocated = False
    for r in report["tensors"]:
        shape = "x".join(str(s) for s in r["shape"]) or "scalar"
        sq = "" if r["sqnr_db"] is None else f"{r['sqnr_db']:.2f}"
        streams_ = [f"{st['coding']:>7} {st['coded_bits']:6.3f}/{st['entropy_bits']:.3f}"
                    if st else "" for st in (r.get("codes_stream"), r.get("index_stream"))]
        sparse = "" if r.get("sparsity") is None else f"{100 * r['sparsity']:.0f}%"
        if r.get("raw_reason"):
            sq = r["raw_reason"]
        setting = (r.get("setting") or r["method"]) + ("*" if r.get("allocated") else "")
        allocated = allocated or r.get("allocated")
        out = "" if r.get("output_sqnr_db") is None else f"{r['output_sqnr_db']:.2f}"
        lines.append(f"{r['name'][:44]:<44} {shape:>12} {setting:>13} {sparse:>6} "
                     f"{streams_[0]:>21} {streams_[1]:>21} "
                     f"{r['bits_per_weight']:>7.3f} {r['bytes'] + r['header_bytes']:>10} {sq:>8} "
                     f"{out:>11}")
    t = report["totals"]
    lines.append("")
    if allocated:
        lines.append("* setting chosen by the --target-bpw allocation; output SQNR: on the "
                     "calibration inputs")
    lines.append(f"weights: {t['weights']:,} in {t['tensors']} tensors")
    if t.get("source_bytes"):
        lines.append(f"input:   {t['source_bytes']:,} bytes")
    if t.get("file_bytes"):
        lines.append(f"output:  {t['file_bytes']:,} bytes, {t['bits_per_weight']:.3f} bits/weight "
                     "(every byte of the file)")
    if t.get("ratio"):
        lines.append(f"ratio:   {t['ratio']:.2f}x")
    if t.get("zstd_ratio"):
        lines.append(f"zstd -3 on the input: {t['zstd_ratio']:.2f}x (baseline)")
    return "\n".join(lines)


def _progress(total: int, enabled: bool):
    """A tqdm bar weighted by tensor size, or nothing."""
    if not enabled:
        return None, lambda: None
    try:
        from tqdm import tqdm
    except ImportError:
        return None, lambda: None
    bar = tqdm(total=total, unit="w", unit_scale=True, file=sys.stderr, leave=False)
    state = {"last": 0}

    def step(name, n):
        bar.update(state["last"])
        state["last"] = n
        bar.set_postfix_str(name[-40:])

    return step, bar.close


def _sensitivity(path):
    if path is None:
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise VQCompressError(f"{path}: cannot read sensitivities ({exc})") from None
    if not isinstance(data, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            for v in data.values()):
        raise VQCompressError(f"{path}: expected a JSON object of non-negative numbers")
    return data


def cmd_compress(args) -> int:
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        raise VQCompressError("output must not be the input file")
    if os.path.exists(args.output) and not args.force:
        raise VQCompressError(f"{args.output}: exists; pass --force to overwrite")
    from .io import open_weights
    show = not args.json and sys.stderr.isatty()
    src = open_weights(args.input) if show else None  # sizes from the header, not the data
    total = sum(math.prod(src.shape(n)) for n in src) if show else 0
    step, close = _progress(total, show)
    pool = worker_pool(args.jobs)
    try:
        model = compress(args.input, method=args.method, bits=args.bits, policy=args.policy,
                         executor=pool,
                         block_size=args.block_size, stages=args.stages, beam_size=args.beam,
                         group_size=_group(args.group_size), symmetric=args.symmetric,
                         hadamard=args.hadamard, entropy_lambda=args.entropy_lambda,
                         codebook_dtype=args.codebook_dtype,
                         entropy=args.entropy, prune=args.prune, index_bits=args.index_bits,
                         min_elements=args.min_elements, random_state=args.seed,
                         calibration=args.calibration, correction=args.correction,
                         refit_rounds=args.refit_rounds,
                         target_bits_per_weight=args.target_bpw,
                         candidates=args.candidate, sensitivity=_sensitivity(args.sensitivity),
                         progress=step)
    finally:
        close()
        if pool is not None:
            pool.shutdown()
    model.save(args.output, force=args.force, verify=not args.no_verify)
    report = model.report()
    report["totals"]["zstd_ratio"] = _zstd_ratio(args.input)
    report["totals"]["output"] = args.output
    print(json.dumps(report, indent=1) if args.json else _table(report))
    return 0


def cmd_inspect(args) -> int:
    model = load(args.file)  # checks every length, shape, table and checksum
    if args.verify:
        model.verify()       # and decodes every tensor to dense
    report = model.report()
    print(json.dumps(report, indent=1) if args.json else _table(report))
    return 0


def cmd_decompress(args) -> int:
    from .io import save_weights
    model = load(args.input)
    n = save_weights(args.output, model.decompress(), force=args.force,
                     bf16=model.bf16_names() if args.output.endswith(".safetensors") else ())
    print(f"wrote {args.output}: {len(model)} tensors, {n:,} bytes")
    return 0


def _parse_grid(specs) -> list[dict]:
    """'key:v1|v2,key:v' specs (one per --grid) as compress option dicts with lists."""
    from .errors import InputError
    from .policy import parse_spec
    grid = []
    for spec in specs:
        point = {}
        for pair in filter(None, (p.strip() for p in spec.split(","))):
            if ":" not in pair:
                raise InputError(f"--grid {spec!r}: {pair!r} is not key:value[|value...]")
            key, values = (x.strip() for x in pair.split(":", 1))
            point[key] = [parse_spec({key: v}, where=f"--grid {spec!r}")[key]
                          for v in values.split("|")]
        grid.append(point)
    return grid


def _load_eval(target: str):
    """'module:function' (or 'path/to/file.py:function') as a callable."""
    import importlib
    import importlib.util

    from .errors import InputError
    module, _, func = target.rpartition(":")
    if not module or not func:
        raise InputError(f"--eval {target!r}: expected module:function")
    try:
        if module.endswith(".py"):
            spec = importlib.util.spec_from_file_location("_vqcompress_eval", module)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(module)
        return getattr(mod, func)
    except (ImportError, AttributeError, OSError) as exc:
        raise InputError(f"--eval {target!r}: {exc}") from None


def cmd_sweep(args) -> int:
    from . import report
    from .evaluate import sweep
    evaluate = _load_eval(args.eval)
    grid = _parse_grid(args.grid or ["method:kmeans,bits:2|3|4|5|6"])
    tick = None if args.json else (lambda i, n, p: print(f"[{i + 1}/{n}] {p}", flush=True))
    result = sweep(args.input, evaluate, grid, baseline=not args.no_baseline,
                   layers=args.layers, out_dir=os.path.join(args.out, "files"), progress=tick)
    paths = report.write_all(result, args.out, metric_name=args.metric_name,
                             title=os.path.basename(args.input))
    if args.json:
        print(json.dumps({**result, "files": paths}, indent=1, default=str))
    else:
        print(report.sweep_table(result, args.metric_name))
        if paths.get("png_note"):
            print(f"no plot: {paths['png_note']}")
        print("wrote " + ", ".join(v for k, v in paths.items() if v and k != "png_note"))
        for r in result["rows"]:
            if r["error"]:
                print(f"vqcompress: {r['error']}", file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    from .examples import demo
    log = (lambda *a: None) if args.json else (lambda m: print(m, flush=True))
    result = demo.run(args.out, quick=args.quick, log=log)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print()
        print(demo.tables(result))
    return 0


def _group(value: str):
    return value if value in ("tensor", "channel") else int(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vqcompress", description="Vector-quantization "
                                "compression of neural-network weights.")
    p.add_argument("--version", action="version", version=f"vqcompress {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compress", help="compress a .npz/.npy/.safetensors weight file to .vqz")
    c.add_argument("input", help="weight file: .npz, .npy or .safetensors")
    c.add_argument("output", help="the .vqz file to write")
    c.add_argument("--method", choices=METHODS, default="kmeans",
                   help="kmeans: scalar weight sharing; pq: product quantization; rq: "
                        "residual quantization; uniform: affine baseline (default kmeans)")
    c.add_argument("--bits", type=int, default=4,
                   help="bits per code: per weight for kmeans/uniform, per block for pq, "
                        "per block and stage for rq (default 4)")
    c.add_argument("--block-size", type=int, default=8, help="pq/rq block length (default 8)")
    c.add_argument("--stages", type=int, default=2, help="rq stages (default 2)")
    c.add_argument("--beam", type=int, default=8, help="rq beam size (default 8)")
    c.add_argument("--group-size", default="channel",
                   help="uniform: 'tensor', 'channel' or an integer group length")
    c.add_argument("--symmetric", action="store_true",
                   help="uniform: one signed float16 scale per group, no zero point (as "
                        "GGUF Q4_0); default affine with a zero point per group")
    c.add_argument("--hadamard", action="store_true",
                   help="rotate each quantized tensor's inputs by a randomized Hadamard "
                        "transform before quantizing (incoherence processing; one bit per "
                        "input stored)")
    c.add_argument("--entropy-lambda", type=float, default=0.0, metavar="LAMBDA",
                   help="kmeans: entropy-constrained assignment, codes chosen by squared "
                        "error / mean square + LAMBDA x code length (0, the default: "
                        "nearest codeword); larger is smaller once entropy coded")
    c.add_argument("--codebook-dtype", choices=("float16", "float32"), default="float16")
    c.add_argument("--entropy", choices=("auto", "none", "huffman", "rans"), default="auto",
                   help="how code streams are stored: packed at their bit width, Huffman or "
                        "rANS; auto keeps the smallest per stream (default)")
    c.add_argument("--prune", type=float, default=None, metavar="SPARSITY",
                   help="magnitude-prune each compressed tensor to this fraction of zeros and "
                        "store it sparse (kmeans only; Deep Compression)")
    c.add_argument("--index-bits", type=int, default=None,
                   help="relative index width for sparse storage (default 5 for linear "
                        "layers, 8 for convolutions)")
    c.add_argument("--policy", action="append", metavar="PATTERN=SPEC",
                   help="per-tensor rule, repeatable, first match wins: a glob on the tensor "
                        "name and 'skip' or key:value pairs, e.g. '*.bias=skip' or "
                        f"'*embeddings*=method:kmeans,bits:3' (keys: {', '.join(OPTIONS)}); "
                        "1-D tensors are quantized only when a rule names them")
    c.add_argument("--calibration", metavar="FILE",
                   help="calibration statistics (a .safetensors file from "
                        "vqcompress.calibration.save): the 2-D tensors it names are "
                        "quantized for the error of their output on those inputs")
    c.add_argument("--correction", type=float, default=0.5, metavar="C",
                   help="for statistics recorded with reference inputs (a partly quantized "
                        "model's beside the original's): how far, 0 to 1, the target moves "
                        "toward the weight that reproduces the original output (default 0.5)")
    c.add_argument("--refit-rounds", type=int, default=1, metavar="N",
                   help="calibrated tensors: rounds of GPTQ-style assignment and "
                        "least-squares codebook refit, the best kept (default 1)")
    c.add_argument("--target-bpw", type=float, default=None, metavar="B",
                   help="choose each tensor's setting (among --candidate specs) for the least "
                        "total relative error with the whole file at most B bits per weight; "
                        "tensors a --policy rule names keep their rule")
    c.add_argument("--candidate", action="append", metavar="SPEC",
                   help="a setting the --target-bpw allocation may pick, repeatable, as a "
                        f"policy spec (default: {', '.join(DEFAULT_CANDIDATES)})")
    c.add_argument("--sensitivity", metavar="FILE.json",
                   help="{tensor name: weight} for the allocation (from "
                        "vqcompress.allocate.measure_sensitivity); default 1 each")
    c.add_argument("--jobs", type=int, default=1,
                   help="compress tensors in N worker processes (default 1)")
    c.add_argument("--min-elements", type=int, default=1024,
                   help="tensors smaller than this are stored raw (default 1024)")
    c.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.add_argument("--force", action="store_true", help="overwrite an existing output")
    c.add_argument("--no-verify", action="store_true",
                   help="skip reading the written file back to check it")
    c.set_defaults(func=cmd_compress)

    i = sub.add_parser("inspect", help="validate a .vqz file and show its tensors and sizes")
    i.add_argument("file")
    i.add_argument("--json", action="store_true")
    i.add_argument("--verify", action="store_true",
                   help="also decode every tensor to dense (exit 2 on any fault)")
    i.set_defaults(func=cmd_inspect)

    d = sub.add_parser("decompress", help="write a .vqz file back as dense .safetensors/.npz")
    d.add_argument("input")
    d.add_argument("output")
    d.add_argument("--force", action="store_true")
    d.set_defaults(func=cmd_decompress)

    w = sub.add_parser("sweep", help="compress over a grid of settings and score each with "
                                     "your evaluation function")
    w.add_argument("input", help="weight file: .npz, .npy or .safetensors")
    w.add_argument("--eval", required=True, metavar="MODULE:FUNCTION",
                   help="function called with {name: array} (or the nn layers, with "
                        "--layers) returning the metric, higher is better; a module or a "
                        ".py file path")
    w.add_argument("--grid", action="append", metavar="SPEC",
                   help="repeatable: compress options with '|' between values to try, e.g. "
                        "'method:kmeans,bits:2|3|4' or 'method:pq,bits:8,block_size:4|8' "
                        "(default: kmeans at 2-6 bits)")
    w.add_argument("--out", default="vqcompress-sweep",
                   help="folder for sweep.csv, sweep.json, sweep.png and the files")
    w.add_argument("--layers", action="store_true",
                   help="evaluate lookup-table layers instead of decompressed arrays")
    w.add_argument("--no-baseline", action="store_true",
                   help="leave out uniform quantization at 8/4/3/2 bits")
    w.add_argument("--metric-name", default="metric")
    w.add_argument("--json", action="store_true", help="print the results as JSON")
    w.set_defaults(func=cmd_sweep)

    m = sub.add_parser("demo", help="Deep Compression of the bundled digits MLP, tables, "
                                    "sweep and plot")
    m.add_argument("--out", default="vqcompress-demo", help="output folder "
                   "(default ./vqcompress-demo)")
    m.add_argument("--quick", action="store_true",
                   help="fewer pruning rounds and epochs, a smaller sweep (for tests)")
    m.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    m.set_defaults(func=cmd_demo)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning as one line for a command's user (not Python's file, line and source)."""
    print(f"vqcompress: warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return args.func(args)
        except (VQCompressError, OSError) as exc:
            print(f"vqcompress: error: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
