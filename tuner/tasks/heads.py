"""Loss heads: turn a batch of logits into a mean loss and, in place, its gradient.

Each head's ``loss_and_dlogits(z, t, col, scratch)`` returns the mean loss over the batch
and overwrites ``z`` with dL/dz; ``col`` (B, 1) and ``scratch`` (shaped as z) are buffers. ``t`` holds the targets
in the head's own encoding (``encode``).

``loss_and_dlogits_many(z, t, col, scratch, picked, total, losses)`` does the same for a population:
``z`` (K, B, C) holds each member's logits on the shared batch, ``col`` (K, B, 1) and ``scratch`` are
buffers, ``picked`` and ``total`` (K,) sums in the task's dtype, and ``losses`` (K,) receives each
member's mean loss; row k gets the bits the lone method gives for ``z[k]`` (the same element-wise
operations, each member's sums over its own rows: BLAS dots as ``np.vdot``, pairwise sums as ``sum``).
``predict`` takes logits with or without the population axis.
"""

import numpy as np

from tuner.tasks.base import row_dots

FEW_CLASSES = 16
"""Up to this many classes, a row's max and sum over its logits are folded column by column (C
element-wise operations over all rows) rather than by numpy's reduction, which pays a call per
row of C values: 0.1 ms a step for a population of 64 x 32 rows of 10 classes. The lone and the
population methods share the rule (``_fold_rows``), so their bits agree either way."""


def _fold_rows(ufunc: np.ufunc, z: np.ndarray, col: np.ndarray) -> None:
    """col[..., 0] = ``ufunc`` (np.maximum, np.add) folded over z's last axis: left to right up to
    FEW_CLASSES classes, else ``ufunc.reduce`` (numpy's pairwise sum for np.add)."""
    if z.shape[-1] > FEW_CLASSES:
        ufunc.reduce(z, axis=-1, keepdims=True, out=col)
        return
    out = col[..., 0]
    np.copyto(out, z[..., 0])
    for c in range(1, z.shape[-1]):
        ufunc(out, z[..., c], out=out)


class CrossEntropy:
    """Softmax cross-entropy: L = mean(logsumexp(z) - z_y); dL/dz = (softmax(z) - onehot(y)) / B."""

    @staticmethod
    def out_dim(n_classes: int) -> int:
        return n_classes

    @staticmethod
    def encode(y: np.ndarray, n_classes: int, dtype: np.dtype) -> np.ndarray:
        return np.eye(n_classes, dtype=dtype)[y]

    @staticmethod
    def loss_and_dlogits(z: np.ndarray, t: np.ndarray, col: np.ndarray, scratch: np.ndarray) -> float:
        _fold_rows(np.maximum, z, col)
        z -= col
        picked = float(np.vdot(t, z))
        np.exp(z, out=z)
        _fold_rows(np.add, z, col)
        z /= col
        np.log(col, out=col)
        batch = z.shape[0]
        z -= t
        z *= 1.0 / batch
        return (float(col.sum()) - picked) / batch

    @staticmethod
    def loss_and_dlogits_many(z: np.ndarray, t: np.ndarray, col: np.ndarray, scratch: np.ndarray,
                              picked: np.ndarray, total: np.ndarray, losses: np.ndarray) -> None:
        members, batch = z.shape[:2]
        _fold_rows(np.maximum, z, col)
        z -= col
        row_dots(z.reshape(members, -1), t.reshape(-1), picked)
        np.exp(z, out=z)
        _fold_rows(np.add, z, col)
        z /= col
        np.log(col, out=col)
        z -= t
        z *= 1.0 / batch
        np.sum(col.reshape(members, batch), axis=1, out=total)
        np.subtract(total, picked, out=losses, dtype=np.float64)
        losses /= batch

    @staticmethod
    def predict(z: np.ndarray) -> np.ndarray:
        return np.argmax(z, axis=-1)


class Logistic:
    """Binary logistic loss on one logit: L = mean(log(1 + e^z) - y z); dL/dz = (sigmoid(z) - y) / B."""

    @staticmethod
    def out_dim(n_classes: int) -> int:
        return 1

    @staticmethod
    def encode(y: np.ndarray, n_classes: int, dtype: np.dtype) -> np.ndarray:
        return y.astype(dtype).reshape(-1, 1)

    @staticmethod
    def loss_and_dlogits(z: np.ndarray, t: np.ndarray, col: np.ndarray, scratch: np.ndarray) -> float:
        from scipy.special import expit  # here, not with the registry: reading commands do not import scipy

        picked = float(np.vdot(t, z))
        np.logaddexp(0.0, z, out=col)
        batch = z.shape[0]
        loss = (float(col.sum()) - picked) / batch
        expit(z, out=z)
        z -= t
        z *= 1.0 / batch
        return loss

    @staticmethod
    def loss_and_dlogits_many(z: np.ndarray, t: np.ndarray, col: np.ndarray, scratch: np.ndarray,
                              picked: np.ndarray, total: np.ndarray, losses: np.ndarray) -> None:
        from scipy.special import expit

        members, batch = z.shape[:2]
        row_dots(z.reshape(members, batch), t.reshape(batch), picked)
        np.logaddexp(0.0, z, out=col)
        np.sum(col.reshape(members, batch), axis=1, out=total)
        np.subtract(total, picked, out=losses, dtype=np.float64)
        losses /= batch
        expit(z, out=z)
        z -= t
        z *= 1.0 / batch

    @staticmethod
    def predict(z: np.ndarray) -> np.ndarray:
        return (z[..., 0] > 0).astype(np.int64)


class MulticlassHinge:
    """Weston-Watkins multiclass hinge: L = mean sum_{j != y} max(0, 1 + z_j - z_y).

    dL/dz_j = [margin_j > 0] / B for j != y, and dL/dz_y = -(number of positive margins) / B.
    """

    @staticmethod
    def out_dim(n_classes: int) -> int:
        return n_classes

    encode = CrossEntropy.encode
    predict = CrossEntropy.predict

    @staticmethod
    def loss_and_dlogits(z: np.ndarray, t: np.ndarray, col: np.ndarray, scratch: np.ndarray) -> float:
        margins = scratch
        np.multiply(z, t, out=margins)
        np.sum(margins, axis=1, keepdims=True, out=col)  # z_y
        np.subtract(z, col, out=margins)
        margins += 1.0
        margins -= t  # margin 0 at j = y
        np.maximum(margins, 0.0, out=margins)
        batch = z.shape[0]
        loss = float(margins.sum()) / batch
        np.greater(margins, 0.0, out=z, casting="unsafe")
        np.sum(z, axis=1, keepdims=True, out=col)
        np.multiply(t, col, out=margins)
        z -= margins
        z *= 1.0 / batch
        return loss

    @staticmethod
    def loss_and_dlogits_many(z: np.ndarray, t: np.ndarray, col: np.ndarray, scratch: np.ndarray,
                              picked: np.ndarray, total: np.ndarray, losses: np.ndarray) -> None:
        members, batch = z.shape[:2]
        margins = scratch
        np.multiply(z, t, out=margins)
        np.sum(margins, axis=2, keepdims=True, out=col)  # z_y
        np.subtract(z, col, out=margins)
        margins += 1.0
        margins -= t
        np.maximum(margins, 0.0, out=margins)
        np.sum(margins.reshape(members, -1), axis=1, out=total)
        np.divide(total, batch, out=losses, dtype=np.float64)
        np.greater(margins, 0.0, out=z, casting="unsafe")
        np.sum(z, axis=2, keepdims=True, out=col)
        np.multiply(t, col, out=margins)
        z -= margins
        z *= 1.0 / batch
