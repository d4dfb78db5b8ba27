"""The heads' row folds (``heads._fold_rows``) against numpy's reductions."""

import numpy as np
import pytest

from tuner.tasks.heads import FEW_CLASSES, CrossEntropy, _fold_rows


@pytest.mark.parametrize("classes", [1, 2, 10, FEW_CLASSES, FEW_CLASSES + 1, 40])
@pytest.mark.parametrize("lead", [(7,), (3, 5)])
def test_a_fold_is_numpy_s_max_exactly_and_its_sum_to_rounding(classes: int, lead: tuple[int, ...]) -> None:
    z = np.random.default_rng(classes).standard_normal((*lead, classes)) * 10.0 ** np.arange(classes) % 7
    z[(0,) * len(lead)][classes // 2] = np.nan  # a NaN row stays NaN, as in numpy
    col = np.empty((*lead, 1))
    _fold_rows(np.maximum, z, col)
    np.testing.assert_array_equal(col, np.max(z, axis=-1, keepdims=True))
    _fold_rows(np.add, z, col)
    np.testing.assert_allclose(col, np.sum(z, axis=-1, keepdims=True), rtol=1e-13)
    assert np.isnan(col[(0,) * len(lead)]).all()
    if classes <= FEW_CLASSES:  # left to right
        np.testing.assert_array_equal(col[..., 0], np.cumsum(z, axis=-1)[..., -1])


@pytest.mark.parametrize("classes", [3, 10, 30])
def test_cross_entropy_is_the_softmax_loss_and_its_gradient(classes: int) -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((8, classes)) * 5
    labels = rng.integers(0, classes, 8)
    t = CrossEntropy.encode(labels, classes, np.dtype(np.float64))
    shifted = z - z.max(axis=1, keepdims=True)
    softmax = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    expected = float(np.mean(-np.log(softmax[np.arange(8), labels])))
    dz = z.copy()
    loss = CrossEntropy.loss_and_dlogits(dz, t, np.empty((8, 1)), np.empty_like(z))
    assert loss == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(dz, (softmax - t) / 8, rtol=1e-12, atol=1e-15)
