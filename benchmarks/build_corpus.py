"""Build the offline sentence corpus for the MiniLM benchmarks from the Python standard
library's docstrings (installed with every Python; no download).

Docstrings of modules, classes and functions are read with ``ast`` (nothing is imported),
split into sentences, and kept when they read as plain English prose: 8 to 40 words, a
capital first letter and a final full stop, no code (``>>>``, brackets, ``=``, ``_``,
backslashes).  Case-insensitive duplicates are dropped, the survivors sorted and a fixed
seed draws the sample.  The result ships as ``vqcompress/examples/data/sentences.txt`` so
every machine evaluates on the same sentences whatever its Python version:

    python benchmarks/build_corpus.py [--n 2000] [--seed 0]
"""
from __future__ import annotations

import argparse
import ast
import os
import random
import re
import sysconfig

OUT = os.path.join(os.path.dirname(__file__), "..", "vqcompress", "examples", "data",
                   "sentences.txt")
SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
CODE = re.compile(r">>>|[\[\]{}()=_\\|<>*`#@$%^~]|\.\.|https?:|\w\.\w")
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def docstrings(root: str):
    """Every module, class and function docstring under ``root``, files in sorted order."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("test", "tests", "idlelib", "site-packages",
                                                       "__pycache__", "lib2to3"))
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            try:
                with open(os.path.join(folder, f), encoding="utf-8") as fh:
                    tree = ast.parse(fh.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                     ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc:
                        yield doc


def sentences(doc: str):
    """Prose sentences of one docstring: paragraphs joined, split at sentence ends."""
    for para in re.split(r"\n\s*\n", doc):
        lines = [ln.strip() for ln in para.splitlines()]
        if any(ln.startswith(("-", "*", ":", ">>>")) or ln.endswith(":") for ln in lines):
            continue  # lists, fields and examples, not prose
        for s in SPLIT.split(" ".join(lines)):
            s = s.strip()
            words = s.split()
            if not (8 <= len(words) <= 40 and s[0].isupper() and s.endswith(".")):
                continue
            if CODE.search(s) or len(WORD.findall(s)) < 0.9 * len(words):
                continue
            yield s


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    seen, pool = set(), []
    for doc in docstrings(sysconfig.get_paths()["stdlib"]):
        for s in sentences(doc):
            key = " ".join(s.lower().split())
            if key not in seen:
                seen.add(key)
                pool.append(s)
    pool.sort()
    picked = random.Random(args.seed).sample(pool, args.n)
    with open(OUT, "w", encoding="utf-8") as fh:
        fh.write("\n".join(picked) + "\n")
    print(f"{len(pool)} distinct prose sentences; wrote {args.n} to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
