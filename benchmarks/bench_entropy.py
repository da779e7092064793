"""Entropy coding of a skewed 32-symbol code stream: our Huffman and rANS against
dahuffman and constriction, same process, same data.

    python benchmarks/bench_entropy.py [--n 10000000]

Sizes are compared with the Shannon entropy and with an optimal (unlimited) Huffman code.
"""
import _harness  # noqa: F401  (first: pins thread counts before numba, BLAS, faiss start)

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from _harness import best_of, header, table
from naive import huffman_total_bits as optimal_huffman_bits
from vqcompress.coding import huffman, rans


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--peer-n", type=int, default=None,
                    help="symbols for the pure-Python peers (default: --n)")
    args = ap.parse_args()
    n_peer = args.peer_n or args.n
    header(f"Entropy coding, {args.n:,} codes, skewed 32-symbol distribution")
    r = np.random.default_rng(0)
    p = np.exp(-np.arange(32) / 3.0)
    p /= p.sum()
    x = r.choice(32, size=args.n, p=p).astype(np.uint8)
    freqs = np.bincount(x, minlength=32)
    H = huffman.entropy_bits(x, 32)
    opt = optimal_huffman_bits(freqs) / args.n
    huffman.decode(*huffman.encode(x[:1000], 32), 1000, 32)  # compile outside the timings
    rans.decode(*rans.encode(x[:1000], 32), 1000, 32)
    rows = []

    def ours(name, mod):
        te, (tab, stream) = best_of(lambda: mod.encode(x, 32), 3)
        td, back = best_of(lambda: mod.decode(tab, stream, x.size, 32), 3)
        assert np.array_equal(back, x)
        rows.append({"coder": name, "n": args.n, "encode Msym/s": args.n / te / 1e6,
                     "decode Msym/s": args.n / td / 1e6,
                     "bits/sym": (stream.nbytes + tab.nbytes) * 8 / args.n})

    ours("vqcompress huffman (numba)", huffman)
    ours("vqcompress rans (numba)", rans)

    xs = x[:n_peer]
    try:
        from dahuffman import HuffmanCodec
        data = xs.tolist()
        te, (codec, blob) = best_of(lambda: (lambda c: (c, c.encode(data)))(
            HuffmanCodec.from_data(data)), 1)
        td, back = best_of(lambda: codec.decode(blob), 1)
        assert back == data
        rows.append({"coder": "dahuffman", "n": n_peer, "encode Msym/s": n_peer / te / 1e6,
                     "decode Msym/s": n_peer / td / 1e6, "bits/sym": len(blob) * 8 / n_peer})
    except ImportError:
        print("(dahuffman not installed: pip install dahuffman)\n")
    try:
        import constriction
        model = constriction.stream.model.Categorical(p.astype(np.float64), perfect=False)
        sym = x.astype(np.int32)

        def c_enc():
            coder = constriction.stream.stack.AnsCoder()
            coder.encode_reverse(sym, model)
            return coder.get_compressed()

        te, comp = best_of(c_enc, 3)
        td, back = best_of(lambda: constriction.stream.stack.AnsCoder(comp).decode(
            model, args.n), 3)
        assert np.array_equal(back, sym)
        rows.append({"coder": "constriction ANS (model from the true p)", "n": args.n,
                     "encode Msym/s": args.n / te / 1e6, "decode Msym/s": args.n / td / 1e6,
                     "bits/sym": comp.nbytes * 8 / args.n})
        tree = constriction.symbol.huffman.EncoderHuffmanTree(p.astype(np.float64))
        dtree = constriction.symbol.huffman.DecoderHuffmanTree(p.astype(np.float64))
        ys = xs.tolist()

        def h_enc():
            enc = constriction.symbol.QueueEncoder()
            for s in ys:
                enc.encode_symbol(s, tree)
            return enc.get_compressed()

        te, (words, nbits) = best_of(h_enc, 1)

        def h_dec():
            dec = constriction.symbol.QueueDecoder(words)
            return [dec.decode_symbol(dtree) for _ in range(n_peer)]

        td, back = best_of(h_dec, 1)
        assert back == ys
        rows.append({"coder": "constriction Huffman (per-symbol calls)", "n": n_peer,
                     "encode Msym/s": n_peer / te / 1e6, "decode Msym/s": n_peer / td / 1e6,
                     "bits/sym": nbits / n_peer})
    except ImportError:
        print("(constriction not installed: pip install constriction)\n")

    for r_ in rows:
        r_["/ entropy"] = r_["bits/sym"] / H
        r_["/ optimal huffman"] = r_["bits/sym"] / opt
    print(f"entropy {H:.5f} bits/symbol, optimal Huffman {opt:.5f} bits/symbol\n")
    table(rows, ["coder", "n", "encode Msym/s", "decode Msym/s", "bits/sym", "/ entropy",
                 "/ optimal huffman"])
    ours_dec = rows[0]["decode Msym/s"]
    for r_ in rows:
        if r_["coder"] == "dahuffman":
            print(f"huffman decode is {ours_dec / r_['decode Msym/s']:.0f}x dahuffman's")


if __name__ == "__main__":
    main()
