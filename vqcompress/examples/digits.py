"""A LeNet-300-100-shaped MLP (64-300-100-10) on scikit-learn's bundled digits.

Trained by a small deterministic numpy loop (fixed split, fixed seed), so the shipped
weights can be rebuilt exactly and compressed models can be evaluated offline:

    python -m vqcompress.examples.digits          # retrain and rewrite data/digits_mlp.npz
"""
from __future__ import annotations

import os

import numpy as np

WEIGHTS = os.path.join(os.path.dirname(__file__), "data", "digits_mlp.npz")
LAYERS = ("fc1", "fc2", "fc3")


def load_data(seed: int = 0):
    """(X_train, y_train, X_test, y_test): pixels scaled to [0, 1], a fixed 75/25 split."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(0.75 * len(y))
    tr, te = order[:cut], order[cut:]
    return X[tr], y[tr], X[te], y[te]


def forward(weights: dict, X: np.ndarray) -> np.ndarray:
    """Logits of the MLP; weights are {fcN.weight (out, in), fcN.bias (out,)}."""
    h = X
    for i, name in enumerate(LAYERS):
        h = h @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]
        if i < len(LAYERS) - 1:
            h = np.maximum(h, 0.0)
    return h


def accuracy(weights: dict, X=None, y=None) -> float:
    """Test accuracy (fraction) of ``weights`` on the fixed split."""
    if X is None:
        _, _, X, y = load_data()
    return float(np.mean(forward(weights, X).argmax(axis=1) == y))


def train(epochs: int = 40, seed: int = 0, lr: float = 0.05, batch: int = 32,
          masks: dict | None = None, init: dict | None = None) -> dict:
    """SGD with momentum on cross-entropy.  ``masks`` ({name: bool array}) keep pruned
    weights at zero, so the loop also serves iterative prune-and-retrain."""
    Xtr, ytr, _, _ = load_data()
    rng = np.random.default_rng(seed)
    sizes = (64, 300, 100, 10)
    if init is None:
        w = {}
        for name, n_in, n_out in zip(LAYERS, sizes[:-1], sizes[1:]):
            w[f"{name}.weight"] = (rng.normal(size=(n_out, n_in)) * np.sqrt(2.0 / n_in)).astype(np.float32)
            w[f"{name}.bias"] = np.zeros(n_out, dtype=np.float32)
    else:
        w = {k: v.astype(np.float32).copy() for k, v in init.items()}
    vel = {k: np.zeros_like(v) for k, v in w.items()}
    for _ in range(epochs):
        order = rng.permutation(len(ytr))
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            grads = _gradients(w, Xtr[idx], ytr[idx])
            for k in w:
                vel[k] = 0.9 * vel[k] - lr * grads[k]
                w[k] += vel[k]
                if masks and k in masks:
                    w[k] *= masks[k]
    return w


def _gradients(w, X, y):
    acts = [X]
    h = X
    for i, name in enumerate(LAYERS):
        h = h @ w[f"{name}.weight"].T + w[f"{name}.bias"]
        if i < len(LAYERS) - 1:
            h = np.maximum(h, 0.0)
            acts.append(h)
    p = np.exp(h - h.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    delta = p / len(y)
    grads = {}
    for i in range(len(LAYERS) - 1, -1, -1):
        name = LAYERS[i]
        grads[f"{name}.weight"] = delta.T @ acts[i]
        grads[f"{name}.bias"] = delta.sum(axis=0)
        if i:
            delta = (delta @ w[f"{name}.weight"]) * (acts[i] > 0)
    return grads


def load_weights() -> dict:
    """The shipped trained weights."""
    with np.load(WEIGHTS, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


if __name__ == "__main__":
    weights = train()
    print(f"test accuracy {accuracy(weights):.4f}")
    np.savez(WEIGHTS, **weights)
    print(f"wrote {WEIGHTS}")
