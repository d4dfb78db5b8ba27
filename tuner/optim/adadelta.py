"""Adadelta (torch.optim.Adadelta, whose learning rate defaults to 1.0)."""

from dataclasses import dataclass

import numpy as np

from tuner.errors import check_range
from tuner.optim.base import like


@dataclass(slots=True)
class AdadeltaState:
    """Square averages of gradients ``v`` and of updates ``a``, two scratch buffers, step count."""

    square_avg: np.ndarray
    acc_delta: np.ndarray
    scratch: np.ndarray
    delta: np.ndarray
    t: int = 0


@dataclass(frozen=True, slots=True)
class Adadelta:
    """Adadelta as torch.optim.Adadelta computes it (weight decay: ``transforms.WeightDecay``,
    coupled). torch's default learning rate is 1.0; the update is scaled by it.

    v = rho * v + (1 - rho) * g * g
    delta = sqrt(a + eps) / sqrt(v + eps) * g
    a = rho * a + (1 - rho) * delta * delta
    p = p - lr * delta

    A population (``tuner.optim.population``): rho, eps and lr may be (K, 1) arrays; the same
    elementwise operations then compute each member's row as its lone run, each per-member
    value cast to the parameters' dtype where it meets them (``base.like``).
    """

    rho: float = 0.9
    eps: float = 1e-6

    def __post_init__(self) -> None:
        check_range("rho", self.rho, 0.0, 1.0)
        check_range("eps", self.eps, 0.0)

    def init(self, params: np.ndarray) -> AdadeltaState:
        return AdadeltaState(
            square_avg=np.zeros_like(params),
            acc_delta=np.zeros_like(params),
            scratch=np.empty_like(params),
            delta=np.empty_like(params),
        )

    def update(self, params: np.ndarray, grad: np.ndarray, lr: float, state: AdadeltaState) -> None:
        g = grad
        state.t += 1
        tmp, delta, v, a = state.scratch, state.delta, state.square_avg, state.acc_delta
        rho, one_minus_rho, eps = like(self.rho, v), like(1.0 - self.rho, v), like(self.eps, v)
        v *= rho
        np.multiply(g, g, out=tmp)
        tmp *= one_minus_rho
        v += tmp
        np.add(v, eps, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.add(a, eps, out=delta)
        np.sqrt(delta, out=delta)
        delta /= tmp
        delta *= g
        a *= rho
        np.multiply(delta, delta, out=tmp)
        tmp *= one_minus_rho
        a += tmp
        delta *= like(lr, delta)
        params -= delta
