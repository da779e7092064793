"""Element-wise activations for the numpy model examples: scipy's erf is ~20x slower
than this on the (tokens, 1536) feed-forward activations of a BERT layer."""
import math

from numba import njit, prange


@njit(cache=True, parallel=True)
def gelu_(x):  # pragma: no cover - compiled
    """Exact GELU, x * Phi(x) = x/2 (1 + erf(x / sqrt 2)), in place on a 1-D float32 array."""
    c = 1.0 / math.sqrt(2.0)
    for i in prange(x.shape[0]):
        v = x[i]
        x[i] = 0.5 * v * (1.0 + math.erf(v * c))
