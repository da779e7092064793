"""Pruning masks and schedules: hand-computed cases."""
import numpy as np
import pytest

from vqcompress import InputError
from vqcompress.prune import (
    centroid_gradients,
    cubic_sparsity,
    global_magnitude_masks,
    magnitude_mask,
    nm_mask,
    structured_mask,
    threshold_mask,
)


def test_magnitude_mask_hand_computed():
    W = np.array([[0.1, -3.0, 0.5], [2.0, -0.2, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(magnitude_mask(W, 0.5),
                                  [[False, True, True], [True, False, False]])
    assert magnitude_mask(W, 0.0).all()


@pytest.mark.parametrize("s", [0.0, 0.1, 0.5, 0.92])
def test_magnitude_mask_exact_count(rng, s):
    W = rng.normal(size=(37, 29)).astype(np.float32)
    m = magnitude_mask(W, s)
    assert (~m).sum() == round(s * W.size)
    assert np.abs(W[m]).min() >= np.abs(W[~m]).max() if (~m).any() else True


def test_threshold_mask_is_han_rule(rng):
    W = rng.normal(size=(50, 50)).astype(np.float32)
    m = threshold_mask(W, 1.5)
    np.testing.assert_array_equal(m, np.abs(W) > 1.5 * W.astype(np.float64).std())


def test_global_masks_share_one_threshold(rng):
    w = {"small": rng.normal(size=(20, 20)) * 0.01, "big": rng.normal(size=(20, 20))}
    masks = global_magnitude_masks(w, 0.5)
    assert (~masks["small"]).sum() + (~masks["big"]).sum() == 400
    assert (~masks["small"]).sum() > (~masks["big"]).sum()
    kept = min(np.abs(w[k][masks[k]]).min() for k in w)
    cut = max(np.abs(w[k][~masks[k]]).max() for k in w)
    assert kept >= cut


def test_structured_mask_prunes_weakest_rows():
    W = np.array([[1, 1], [0.1, 0.1], [5, 0], [0, 0.2]], dtype=np.float32)
    m = structured_mask(W, 0.5)
    np.testing.assert_array_equal(m.all(axis=1), [True, False, True, False])
    np.testing.assert_array_equal(m.any(axis=1), m.all(axis=1))


def test_two_four_pattern(rng):
    W = rng.normal(size=(8, 16)).astype(np.float32)
    m = nm_mask(W, 2, 4)
    assert (m.reshape(8, 4, 4).sum(-1) == 2).all()
    g = np.abs(W).reshape(8, 4, 4)
    kept_min = np.where(m.reshape(8, 4, 4), g, np.inf).min(-1)
    pruned_max = np.where(~m.reshape(8, 4, 4), g, -np.inf).max(-1)
    assert (kept_min >= pruned_max).all()
    with pytest.raises(InputError, match="multiple"):
        nm_mask(W[:, :15])


def test_cubic_schedule_endpoints_and_shape():
    kw = dict(begin_step=100, end_step=1100)
    assert cubic_sparsity(0, 0.9, **kw) == 0.0
    assert cubic_sparsity(100, 0.9, **kw) == 0.0
    assert cubic_sparsity(1100, 0.9, **kw) == pytest.approx(0.9)
    assert cubic_sparsity(5000, 0.9, **kw) == pytest.approx(0.9)
    # half way: s_f (1 - 0.5**3) = 0.9 * 0.875
    assert cubic_sparsity(600, 0.9, **kw) == pytest.approx(0.7875)
    steps = [cubic_sparsity(t, 0.9, **kw) for t in range(100, 1101, 100)]
    assert all(b >= a for a, b in zip(steps, steps[1:]))


def test_centroid_gradients_hand_computed():
    codes = np.array([[0, 1, 1], [2, 0, 1]])
    grad = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_allclose(centroid_gradients(codes, grad, 3), [6.0, 11.0, 4.0])
    mask = np.array([[True, False, True], [True, True, True]])
    np.testing.assert_allclose(centroid_gradients(codes, grad, 3, mask), [6.0, 9.0, 4.0])
    blocks = np.arange(12.0).reshape(2, 3, 2)  # PQ: per block gradients of length 2
    np.testing.assert_allclose(centroid_gradients(codes, blocks, 3),
                               [[0 + 8, 1 + 9], [2 + 4 + 10, 3 + 5 + 11], [6, 7]])


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "half", True])
def test_bad_sparsity(rng, bad):
    with pytest.raises(InputError, match="sparsity"):
        magnitude_mask(rng.normal(size=(4, 4)), bad)
