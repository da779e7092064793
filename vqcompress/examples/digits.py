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
          masks: dict | None = None, init: dict | None = None, teacher: dict | None = None,
          temperature: float = 4.0, augment: bool = False, cosine: bool = False,
          step_hook=None) -> dict:
    """SGD with momentum on cross-entropy.

    masks : {name: bool array} keep pruned weights at zero, so the loop also serves
        iterative prune-and-retrain.
    init : start from these weights (else He-initialised from ``seed``).
    teacher : weights of a model to distil from: the targets become its softened outputs
        (``temperature``), as in Hinton et al. 2015.  Retraining a pruned or quantized
        model against the original generalises better than against the 1,347 hard labels.
    augment : add the training images shifted by one pixel in each direction (5x data;
        the teacher labels them).
    cosine : decay the learning rate to 0 along a half cosine.
    step_hook : called as ``step_hook(w, grads)`` instead of the plain update, for
        training something other than the weights themselves (the shared centroids of a
        quantized model); it must update ``w`` in place.
    """
    Xtr, ytr, _, _ = load_data()
    if augment:
        Xtr, ytr = shifted(Xtr), np.tile(ytr, 5)
    targets = np.eye(10, dtype=np.float32)[ytr] if teacher is None else \
        softmax(forward(teacher, Xtr) / temperature)
    T = 1.0 if teacher is None else float(temperature)
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
    steps = epochs * -(-len(ytr) // batch)
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(ytr))
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            grads = _gradients(w, Xtr[idx], targets[idx], T)
            rate = lr * 0.5 * (1 + np.cos(np.pi * step / steps)) if cosine else lr
            step += 1
            if step_hook is not None:
                step_hook(w, grads, rate)
                continue
            for k in w:
                vel[k] = 0.9 * vel[k] - rate * grads[k]
                w[k] += vel[k]
                if masks and k in masks:
                    w[k] *= masks[k]
    return w


def shifted(X: np.ndarray) -> np.ndarray:
    """X and its four one-pixel shifts (up, down, left, right; vacated pixels are 0)."""
    imgs = X.reshape(-1, 8, 8)
    out = [X]
    for axis, step in ((1, 1), (1, -1), (2, 1), (2, -1)):
        s = np.roll(imgs, step, axis=axis)
        edge = 0 if step == 1 else -1
        if axis == 1:
            s[:, edge, :] = 0
        else:
            s[:, :, edge] = 0
        out.append(s.reshape(len(X), 64))
    return np.concatenate(out)


def softmax(z: np.ndarray) -> np.ndarray:
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def _gradients(w, X, targets, T=1.0):
    """Gradients of the cross-entropy between softmax(logits / T) and ``targets``
    (one-hot or a teacher's probabilities), scaled by T^2 as in distillation."""
    acts = [X]
    h = X
    for i, name in enumerate(LAYERS):
        h = h @ w[f"{name}.weight"].T + w[f"{name}.bias"]
        if i < len(LAYERS) - 1:
            h = np.maximum(h, 0.0)
            acts.append(h)
    delta = (softmax(h / T) - targets) / len(X) * T
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
