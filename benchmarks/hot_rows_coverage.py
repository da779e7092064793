"""How well a table's hot rows, picked from calibration counts, cover tokens not yet seen.

all-MiniLM-L6-v2's word table, its rows counted over the first half of the held-out
sentences; coverage is the share of the second half's tokens whose row is hot.  Rows the
first half never saw are ranked two ways: to the lower row, and by
``calibration.rank_rows`` (by how many of their neighbours were seen).  No timing.

    python benchmarks/hot_rows_coverage.py
"""
import _harness  # noqa: F401  (first: pins thread counts)

import numpy as np

from _harness import header, table
from vqcompress import calibration
from vqcompress.examples import minilm


def main():
    header("Hot rows of the MiniLM word table: coverage of unseen sentences")
    tok = minilm.Tokenizer()
    held = tok(minilm.corpus("heldout"))
    half = len(held) // 2
    counts = calibration.RowCounts().add(np.concatenate(held[:half])).for_rows(
        minilm.BertConfig().vocab_size, name="word table")
    later = np.concatenate(held[half:])
    orders = {"ties to the lower row": np.argsort(-counts, kind="stable"),
              "rank_rows": calibration.rank_rows(counts)}
    rows = []
    for n in (1000, 2000, 3000, 4000, 6000, 8000):
        row = {"hot rows": n}
        for name, order in orders.items():
            hot = np.zeros(counts.size, bool)
            hot[order[:n]] = True
            row[name] = f"{hot[later].mean():.4f}"
        rows.append(row)
    print(f"- counts from {half} sentences ({np.count_nonzero(counts):,} distinct rows seen); "
          f"coverage of the {later.size:,} tokens of the other {len(held) - half}\n")
    table(rows, ["hot rows", *orders])


if __name__ == "__main__":
    main()
