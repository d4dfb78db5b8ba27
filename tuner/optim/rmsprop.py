"""RMSProp, optionally centered and with momentum (torch.optim.RMSprop)."""

from dataclasses import dataclass

import numpy as np

from tuner.errors import check_range
from tuner.optim.base import check_bool, like, moment_, nonzero, square_moment_


@dataclass(slots=True)
class RMSpropState:
    """Square average ``v``, gradient average ``a`` (centered), momentum buffer ``b``, scratch."""

    square_avg: np.ndarray
    grad_avg: np.ndarray | None
    buf: np.ndarray | None
    scratch: np.ndarray
    t: int = 0


@dataclass(frozen=True, slots=True)
class RMSprop:
    """RMSProp as torch.optim.RMSprop computes it (weight decay: ``transforms.WeightDecay``, coupled).

    v = alpha * v + (1 - alpha) * g * g
    centered: a = alpha * a + (1 - alpha) * g;  d = sqrt(v - a * a) + eps
    else:     d = sqrt(v) + eps
    momentum > 0: b = momentum * b + g / d;  p = p - lr * b
    else:         p = p - lr * g / d
    """

    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    centered: bool = False

    def __post_init__(self) -> None:
        check_range("alpha", self.alpha, 0.0, 1.0, high_open=True)
        check_range("eps", self.eps, 0.0)
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_bool("centered", self.centered)

    def init(self, params: np.ndarray) -> RMSpropState:
        return RMSpropState(
            square_avg=np.zeros_like(params),
            grad_avg=np.zeros_like(params) if self.centered else None,
            buf=np.zeros_like(params) if nonzero(self.momentum) else None,
            scratch=np.empty_like(params),
        )

    def update(self, params: np.ndarray, grad: np.ndarray, lr: "float | np.ndarray", state: RMSpropState) -> None:
        g = grad
        tmp = state.scratch
        v = state.square_avg
        square_moment_(v, g, self.alpha, tmp)
        if self.centered:
            a = state.grad_avg
            moment_(a, g, self.alpha, tmp)
            np.multiply(a, a, out=tmp)
            np.subtract(v, tmp, out=tmp)
            np.sqrt(tmp, out=tmp)
        else:
            np.sqrt(v, out=tmp)
        tmp += like(self.eps, tmp)
        np.divide(g, tmp, out=tmp)
        state.t += 1
        if nonzero(self.momentum):
            b = state.buf
            b *= like(self.momentum, b)
            b += tmp
            np.multiply(b, like(lr, b), out=tmp)
        else:
            tmp *= like(lr, tmp)
        params -= tmp
