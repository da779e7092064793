"""Tables and plots of sweep results: CSV, JSON, a PNG (matplotlib, optional) and a
plain-text table for the terminal."""
from __future__ import annotations

import csv
import json
import os

from .errors import VQCompressError

COLUMNS = ("point", "method", "bits", "block_size", "prune", "file_bytes", "ratio",
           "bits_per_weight", "metric", "seconds", "error")


def _columns(rows) -> list:
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    return [c for c in COLUMNS if any(c in r for r in rows)] + extra


def write_csv(rows, path: str) -> str:
    cols = _columns(rows)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c) for c in cols})
    return path


def write_json(result: dict, path: str) -> str:
    with open(path, "w") as f:
        json.dump(result, f, indent=1, default=str)
        f.write("\n")
    return path


def label(row) -> str:
    """A series name: the method, with its block size or pruning when set."""
    parts = [row["method"]]
    if row.get("block_size") is not None and row["method"] in ("pq", "rq"):
        parts.append(f"d{row['block_size']}")
    if row.get("prune") is not None:
        parts.append(f"{row['bits']}b pruned")
    return " ".join(parts)


def _point_label(row) -> str:
    return f"{row['prune']:g}" if row.get("prune") is not None else f"{row['bits']}b"


def plot(result: dict, path: str, *, metric_name: str = "metric", title: str = "",
         marks=()) -> str:
    """Metric against compression ratio, one line per method (series), the uncompressed
    metric as a dashed reference line, uniform quantization drawn as the baseline;
    ``marks`` are extra (ratio, metric, label) points drawn as stars."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise VQCompressError("plotting needs matplotlib: pip install 'vqcompress[plot]'") \
            from None
    series = {}
    for r in result["rows"]:
        if r["metric"] is not None:
            series.setdefault(label(r), []).append((r["ratio"], r["metric"], _point_label(r)))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name, pts in series.items():
        pts.sort()
        style = dict(color="0.45", linestyle=":", marker="s") if name == "uniform" else \
            dict(marker="o")
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name, **style)
        for x, y, b in pts:
            ax.annotate(b, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    for x, y, name in marks:
        ax.plot([x], [y], marker="*", markersize=14, linestyle="none", label=name)
    ax.axhline(result["reference"], color="k", linestyle="--", linewidth=1,
               label="uncompressed")
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio (float32 bytes / .vqz file bytes)")
    ax.set_ylabel(metric_name)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def text_table(headers, rows) -> str:
    """A plain table, right-aligned numbers, for the terminal and markdown-ish docs."""
    cells = [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(str(h)), *(len(c[i]) for c in cells)) if cells else len(str(h))
              for i, h in enumerate(headers)]
    line = "  ".join(str(h).rjust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.0f}"
    return str(v)


def sweep_table(result: dict, metric_name: str = "metric") -> str:
    """The sweep as the terminal shows it, best ratio first within each series."""
    rows = sorted(result["rows"], key=lambda r: (label(r), -(r["ratio"] or 0)))
    body = [(label(r), r["bits"], r["file_bytes"], r["ratio"], r["bits_per_weight"],
             r["metric"], r["error"] and r["error"][:60]) for r in rows]
    head = text_table(("series", "bits", "bytes", "ratio", "bits/w", metric_name, "error"),
                      body)
    return f"uncompressed {metric_name}: {result['reference']:.4f}\n{head}"


def write_all(result: dict, out_dir: str, *, stem: str = "sweep", metric_name="metric",
              title: str = "", marks=()) -> dict:
    """CSV, JSON and (when matplotlib is installed) PNG; returns their paths (the PNG's is
    None with a note when matplotlib is missing)."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"csv": write_csv(result["rows"], os.path.join(out_dir, f"{stem}.csv")),
             "json": write_json(result, os.path.join(out_dir, f"{stem}.json"))}
    try:
        paths["png"] = plot(result, os.path.join(out_dir, f"{stem}.png"),
                            metric_name=metric_name, title=title, marks=marks)
    except VQCompressError as exc:
        paths["png"] = None
        paths["png_note"] = str(exc)
    return paths
